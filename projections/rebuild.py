"""Rebuild and verify projections from the log: shadow tables, bulk fold, catch-up, swap.

A rebuild never stops the service. The inline views (users, groups, group_members) are rebuilt
like this:

1. Bulk: in one read-only REPEATABLE READ transaction (snapshot S0; read-only, so it takes no
   transaction id and holds back no follower), stream every user/group event through a
   server-side cursor in (tenant_id, stream_id, version) order, fold each stream with the same
   pure `apply` functions the write path uses (projections.views.users.apply, projections.views.groups.apply
   and apply_members), and COPY the resulting rows into fresh shadow tables without indexes,
   on other connections while the cursor keeps reading.
2. Index: build the live tables' indexes and constraints on the shadows (after the load, which
   is several times faster than maintaining them row by row), then ANALYZE.
3. Catch up: apply the delta "events visible now, not visible in the previous snapshot" to the
   shadows, until the delta is small. A snapshot, not a transaction-id bound, marks how far a
   shadow has got: the set of transactions visible in a snapshot is closed under "committed
   before", so a stream is never cut between two of its versions (a transaction id bound can be:
   a writer may take its id before the previous version of a stream it touches is committed).
4. Swap, in one short transaction: LOCK the live tables IN EXCLUSIVE MODE (writers wait, readers
   go on; every writer of these views holds ROW EXCLUSIVE on them from the statement that
   appends its events until it commits, so once the lock is ours every such transaction has
   committed and no new one can start), apply the last delta, drop the live tables and rename
   the shadows (and their indexes) into place. Writers wait for this transaction only; none is
   lost, since whatever committed before the lock is in the last delta and whatever comes after
   the lock writes the new tables.

`verify` runs steps 1 to 3, then in one REPEATABLE READ transaction applies the last delta and
compares the shadows with the live tables (EXCEPT both ways) under the same snapshot: exact,
without any lock, since the live views and the log are committed together.

Follower projections (audit, seal) are rebuilt in a shadow schema: `handle` runs with the
connection's search_path starting at the shadow schema, so its unqualified table names resolve to
the shadow tables; the swap then locks the live tables (waiting for an in-flight batch), replays
the last events, moves the shadow tables into place and sets the checkpoint to the shadow's, in
one transaction. The runner's next batch finds its checkpoint moved and re-reads from the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import operator
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import asyncpg
import msgspec
import structlog

from eventstore.codecs import init_connection
from eventstore.store import BEGINNING, Checkpoint, read_all
from projections.domain.events import GroupMembersAdded, GroupMembersRemoved, decode_event_json
from projections.followers import runner as follower
from projections.followers.runner import Projection
from projections.views import groups as groups_view
from projections.views import users as users_view

log = structlog.get_logger("scimledger.rebuild")

SHADOW = "__shadow"  # suffix of an inline view's shadow table and of its indexes
SHADOW_SCHEMA = "scimledger_shadow"  # where a follower's shadow tables live
REBUILD_LOCK = 0x5C1_4EB1D  # one rebuild or verify at a time (session advisory lock)
FETCH = 20_000  # events per cursor fetch
COPY_BATCH = 20_000  # rows per COPY
SMALL_DELTA = 2_000  # stop catching up outside the lock below this many events

USERS, GROUPS, GROUP_MEMBERS = "users", "groups", "group_members"
INLINE_VIEWS = (USERS, GROUPS, GROUP_MEMBERS)  # also the lock order: the writers' order
STREAM_TYPE = {USERS: "user", GROUPS: "group", GROUP_MEMBERS: "group"}
MEMBER_COLUMNS = ("tenant_id", "group_id", "member_id")


class RebuildError(Exception):
    """A rebuild cannot start or cannot finish (nothing has been swapped)."""


# --- the pure part: folding one stream -------------------------------------------------------

class StreamEvent(NamedTuple):
    """One event of a stream, as the fold needs it."""

    tenant_id: uuid.UUID
    stream_type: str
    stream_id: uuid.UUID
    version: int
    global_position: int
    recorded_at: Any
    data: str  # the payload's JSON text, decoded by the fold


def fold_user(row: users_view.UserRow | None, events: Iterable[StreamEvent]) -> users_view.UserRow | None:
    """The users-view row after `events` (None: deleted), by projections.views.users.apply."""
    for e in events:
        row = users_view.apply(
            row, decode_event_json(e.data), tenant_id=e.tenant_id, stream_id=e.stream_id,
            version=e.version, position=e.global_position, recorded_at=e.recorded_at,
        )
    return row


def fold_group(
    row: groups_view.GroupRow | None, members: set[str], events: Iterable[StreamEvent]
) -> tuple[groups_view.GroupRow | None, set[str]]:
    """The groups-view row and the member ids after `events`, by projections.views.groups.apply and
    apply_members."""
    for e in events:
        event = decode_event_json(e.data)
        row = groups_view.apply(
            row, event, tenant_id=e.tenant_id, stream_id=e.stream_id,
            version=e.version, position=e.global_position, recorded_at=e.recorded_at,
        )
        members = groups_view.apply_members(members, event)
    return row, members


def member_records(tenant_id: uuid.UUID, group_id: uuid.UUID, members: Iterable[str]) -> list[tuple[Any, ...]]:
    return [(tenant_id, group_id, m) for m in members]  # asyncpg encodes uuid from str


def streams(events: Iterable[StreamEvent]) -> Iterable[list[StreamEvent]]:
    """Consecutive events of the same stream, grouped (input ordered by stream, then version)."""
    current: list[StreamEvent] = []
    for e in events:
        if current and (e.stream_id != current[0].stream_id or e.tenant_id != current[0].tenant_id):
            yield current
            current = []
        current.append(e)
    if current:
        yield current


_INDEX_DEF = re.compile(r"^CREATE (UNIQUE )?INDEX (\S+) ON (?:ONLY )?(\S+) (USING .*)$")


@dataclass(frozen=True, slots=True)
class IndexDef:
    """A live index: its name, pg_get_indexdef, and the constraint it backs (if any)."""

    name: str
    definition: str
    constraint: str | None = None  # "PRIMARY KEY" or "UNIQUE"


def index_sql(index: IndexDef, table: str, name: str) -> list[str]:
    """The statements that give `table` the same index as `index`, called `name` (and the
    constraint it backs, attached to it: ADD CONSTRAINT ... USING INDEX)."""
    m = _INDEX_DEF.match(index.definition)
    if m is None:
        raise RebuildError(f"cannot read index definition: {index.definition}")
    unique, _, _, rest = m.groups()
    statements = [f"CREATE {unique or ''}INDEX {name} ON {table} {rest}"]
    if index.constraint:
        statements.append(f"ALTER TABLE {table} ADD CONSTRAINT {name} {index.constraint} USING INDEX {name}")
    return statements


def _shadow_name(name: str) -> str:
    shadowed = name + SHADOW
    if len(shadowed) > 63:
        raise RebuildError(f"index name {name!r} too long to shadow")
    return shadowed


def format_progress(label: str, done: int, total: int, elapsed: float, width: int = 28) -> str:
    """One progress-bar line: bar, counts, events/s and ETA."""
    rate = done / elapsed if elapsed > 0 else 0.0
    fraction = min(1.0, done / total) if total else 1.0
    filled = int(fraction * width)
    eta = (total - done) / rate if rate > 0 and total > done else 0.0
    return (f"{label} [{'#' * filled}{'-' * (width - filled)}] {done:,}/{total:,} events "
            f"{rate:,.0f} ev/s ETA {eta:,.0f}s")


# --- progress --------------------------------------------------------------------------------

class Progress:
    """A progress bar on a TTY, structured log lines (every `every` seconds) otherwise."""

    def __init__(self, label: str, total: int, *, tty: bool, stream: Any = None, every: float = 2.0) -> None:
        self.label = label
        self.total = total
        self.tty = tty
        self.stream = stream
        self.every = every
        self.done = 0
        self.started = time.perf_counter()
        self._last = 0.0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last < (0.1 if self.tty else self.every):
            return
        self._last = now
        self._report(now)

    def _report(self, now: float) -> None:
        elapsed = now - self.started
        if self.tty and self.stream is not None:
            self.stream.write("\r" + format_progress(self.label, self.done, self.total, elapsed))
            self.stream.flush()
        else:
            rate = self.done / elapsed if elapsed > 0 else 0.0
            log.info("rebuild.progress", projection=self.label, events=self.done, total=self.total,
                     events_per_s=round(rate), eta_s=round((self.total - self.done) / rate, 1) if rate else None)

    def finish(self) -> float:
        now = time.perf_counter()
        self._report(now)
        if self.tty and self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()
        return now - self.started


# --- shadow tables ---------------------------------------------------------------------------

@dataclass
class ShadowTable:
    live: str
    columns: tuple[str, ...]
    indexes: list[IndexDef] = field(default_factory=list)

    @property
    def shadow(self) -> str:
        return self.live + SHADOW


async def _columns(conn: asyncpg.Connection, table: str) -> tuple[str, ...]:
    rows = await conn.fetch(
        """SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0
           AND NOT attisdropped ORDER BY attnum""",
        table,
    )
    return tuple(r["attname"] for r in rows)


async def _check_swappable(conn: asyncpg.Connection, table: str) -> None:
    """Refuse tables a drop-and-rename would break: referenced by foreign keys, used by views,
    or carrying triggers (none of the views has any; this keeps it that way loudly)."""
    blockers = await conn.fetch(
        """SELECT 'foreign key ' || conname AS what FROM pg_constraint
           WHERE confrelid = $1::regclass AND contype = 'f'
           UNION ALL
           SELECT DISTINCT 'view ' || v.oid::regclass::text FROM pg_depend d
           JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
           WHERE d.refobjid = $1::regclass AND v.oid <> $1::regclass
           UNION ALL
           SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal""",
        table,
    )
    if blockers:
        raise RebuildError(f"{table} cannot be swapped: " + ", ".join(r["what"] for r in blockers))


async def prepare_shadow(conn: asyncpg.Connection, table: str, *, schema: str | None = None) -> ShadowTable:
    """Create an empty shadow of `table` (columns, defaults, NOT NULL and CHECKs, no indexes)
    and remember the live table's index definitions for after the bulk load."""
    await _check_swappable(conn, table)
    shadow = ShadowTable(table, await _columns(conn, table))
    for r in await conn.fetch(
        """SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def, k.contype::text AS contype
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
           WHERE i.indrelid = $1::regclass ORDER BY i.indisprimary DESC, c.relname""",
        table,
    ):
        if r["contype"] not in (None, "p", "u"):
            raise RebuildError(f"{table}: cannot shadow the constraint behind index {r['name']}")
        kind = {"p": "PRIMARY KEY", "u": "UNIQUE"}.get(r["contype"])
        shadow.indexes.append(IndexDef(r["name"], r["def"], kind))
    target = f"{schema}.{table}" if schema else shadow.shadow
    await conn.execute(f"DROP TABLE IF EXISTS {target}")
    await conn.execute(
        f"""CREATE TABLE {target} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS
            INCLUDING GENERATED INCLUDING STORAGE)"""
    )
    return shadow


async def _drop_shadows(conn: asyncpg.Connection, shadows: Iterable[ShadowTable]) -> None:
    for s in shadows:
        await conn.execute(f"DROP TABLE IF EXISTS {s.shadow}")


# --- COPY needs jsonb in the binary format ---------------------------------------------------

_encode_json = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder().decode


def _jsonb_binary_encode(value: Any) -> bytes:
    return b"\x01" + (value if isinstance(value, bytes) else _encode_json(value))


def _jsonb_binary_decode(data: bytes) -> Any:
    return _decode_json(data[1:])  # version byte 1, then the JSON text


class BinaryJsonb:
    """On `conn`, for the duration: jsonb in the binary wire format (version byte + JSON text),
    which COPY ... FORMAT binary (copy_records_to_table) requires; the pool's codecs after."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def __aenter__(self) -> asyncpg.Connection:
        await self.conn.set_type_codec(
            "jsonb", encoder=_jsonb_binary_encode, decoder=_jsonb_binary_decode,
            schema="pg_catalog", format="binary",
        )
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.reset_type_codec("jsonb", schema="pg_catalog")
        await init_connection(self.conn)


INDEX_BUILDS_AT_ONCE = 3
INDEX_BUILD_MEMORY = "256MB"


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """The bulk fold allocates millions of small objects (rows, dicts, tuples), none of them in
    reference cycles: with the cyclic collector running, its passes over the growing heap cost
    more than the fold itself. Reference counting still frees everything; the collector runs once
    at the end."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


# --- reading the log -------------------------------------------------------------------------

_EVENT_COLUMNS = "tenant_id, stream_type, stream_id, version, global_position, recorded_at, data::text"
_BULK = f"""SELECT {_EVENT_COLUMNS} FROM events WHERE stream_type = any($1::text[])
            ORDER BY tenant_id, stream_id, version"""
# events of transactions not visible in the snapshot $1 (committed since), as the current
# statement sees them; transaction_id >= xmin($1) lets the (transaction_id, position) index in
_DELTA = f"""SELECT {_EVENT_COLUMNS} FROM events
             WHERE transaction_id >= pg_snapshot_xmin($1::text::pg_snapshot)
               AND NOT pg_visible_in_snapshot(transaction_id, $1::text::pg_snapshot)
               AND stream_type = any($2::text[])
             ORDER BY tenant_id, stream_id, version"""


_stream_event = StreamEvent._make  # from a row of _EVENT_COLUMNS, at C speed


async def whole_streams(cursor: asyncpg.cursor.Cursor) -> AsyncIterator[list[StreamEvent]]:
    """Batches of events from a cursor ordered by stream, each ending at a stream's end (the last
    stream of a fetch may go on in the next one: it is held back). The next fetch is in flight
    while the caller folds a batch, so the server produces rows while Python folds."""
    held: list[StreamEvent] = []
    next_fetch = asyncio.ensure_future(cursor.fetch(FETCH))
    try:
        while True:
            records = await next_fetch
            if not records:
                break
            next_fetch = asyncio.ensure_future(cursor.fetch(FETCH))
            batch = held + [_stream_event(r) for r in records]
            last = batch[-1]
            cut = len(batch)
            while cut > 0 and batch[cut - 1].stream_id == last.stream_id and batch[cut - 1].tenant_id == last.tenant_id:
                cut -= 1
            held = batch[cut:]
            if cut:
                yield batch[:cut]
        if held:
            yield held
    finally:
        if not next_fetch.done():
            next_fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await next_fetch


# --- the inline views ------------------------------------------------------------------------

@dataclass
class InlineRebuild:
    """Rebuild (or verify) a set of inline views."""

    pool: asyncpg.Pool
    views: tuple[str, ...]
    tty: bool = False
    stream: Any = None
    shadows: dict[str, ShadowTable] = field(default_factory=dict)
    snapshot: str = ""
    events: int = 0
    seconds: float = 0.0

    @property
    def stream_types(self) -> list[str]:
        return sorted({STREAM_TYPE[v] for v in self.views})

    def _user_record(self) -> Callable[[users_view.UserRow], tuple[Any, ...]]:
        return _record_getter(users_view.UserRow, self.shadows[USERS].columns)

    def _group_record(self) -> Callable[[groups_view.GroupRow], tuple[Any, ...]]:
        return _record_getter(groups_view.GroupRow, self.shadows[GROUPS].columns)

    async def prepare(self) -> None:
        async with self.pool.acquire() as conn:
            for view in self.views:
                self.shadows[view] = await prepare_shadow(conn, view)
        if GROUP_MEMBERS in self.shadows and self.shadows[GROUP_MEMBERS].columns != MEMBER_COLUMNS:
            raise RebuildError(f"group_members has columns {self.shadows[GROUP_MEMBERS].columns}")

    async def bulk_load(self) -> None:
        """Step 1: every event visible in one snapshot, folded and COPYed into the shadows."""
        with _cyclic_gc_paused():
            await self._bulk_load()

    async def _bulk_load(self) -> None:
        user_record = self._user_record() if USERS in self.shadows else None
        group_record = self._group_record() if GROUPS in self.shadows else None
        with_members = GROUP_MEMBERS in self.shadows
        buffers: dict[str, list[tuple[Any, ...]]] = {v: [] for v in self.views}
        copies: dict[str, asyncio.Task[None]] = {}
        writers = {v: await self.pool.acquire() for v in self.views}
        for conn in writers.values():
            await BinaryJsonb(conn).__aenter__()

        async def flush(view: str, final: bool = False) -> None:
            rows = buffers[view]
            if not rows and not final:
                return
            buffers[view] = []
            previous = copies.pop(view, None)
            if previous is not None:
                await previous
            if rows:
                shadow = self.shadows[view]
                copies[view] = asyncio.ensure_future(
                    writers[view].copy_records_to_table(shadow.shadow, records=rows, columns=shadow.columns)
                )

        try:
            async with self.pool.acquire() as reader, reader.transaction(isolation="repeatable_read", readonly=True):
                self.snapshot = await reader.fetchval("SELECT pg_current_snapshot()::text")
                total = await reader.fetchval(
                    "SELECT count(*) FROM events WHERE stream_type = any($1::text[])", self.stream_types
                )
                progress = Progress(",".join(self.views), int(total), tty=self.tty, stream=self.stream)
                cursor = await reader.cursor(_BULK, self.stream_types)
                async for events in whole_streams(cursor):
                    self._fold_into(events, buffers, user_record, group_record, with_members)
                    progress.advance(len(events))
                    for view in self.views:
                        if len(buffers[view]) >= COPY_BATCH:
                            await flush(view)
            for view in self.views:
                await flush(view, final=True)
            for task in copies.values():
                await task
            self.seconds = progress.finish()
            self.events = progress.done
        finally:
            for task in copies.values():
                task.cancel()
            for conn in writers.values():
                await BinaryJsonb(conn).__aexit__()
                await self.pool.release(conn)
        log.info("rebuild.loaded", views=list(self.views), events=self.events,
                 seconds=round(self.seconds, 2),
                 events_per_s=round(self.events / self.seconds) if self.seconds else None)

    @staticmethod
    def _fold_into(
        events: list[StreamEvent],
        buffers: dict[str, list[tuple[Any, ...]]],
        user_record: Callable[[users_view.UserRow], tuple[Any, ...]] | None,
        group_record: Callable[[groups_view.GroupRow], tuple[Any, ...]] | None,
        with_members: bool,
    ) -> None:
        for stream in streams(events):
            if stream[0].stream_type == "user":
                if user_record is None:
                    continue
                user = fold_user(None, stream)
                if user is not None:
                    buffers[USERS].append(user_record(user))
            else:
                group, members = fold_group(None, set(), stream)
                if group is not None:
                    if group_record is not None:
                        buffers[GROUPS].append(group_record(group))
                    if with_members:
                        buffers[GROUP_MEMBERS].extend(member_records(group.tenant_id, group.id, members))

    async def build_indexes(self, *, all_indexes: bool = True) -> None:
        """Step 2: the indexes built side by side, each on its own connection (a few at a time:
        two cores), with room in maintenance_work_mem so each sort stays in memory."""
        side_by_side = asyncio.Semaphore(INDEX_BUILDS_AT_ONCE)

        async def one(shadow: ShadowTable, index: IndexDef) -> None:
            async with side_by_side, self.pool.acquire() as conn, conn.transaction():
                await conn.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
                for statement in index_sql(index, shadow.shadow, _shadow_name(index.name)):
                    await conn.execute(statement)

        async def analyze(shadow: ShadowTable) -> None:
            async with self.pool.acquire() as conn:
                await conn.execute(f"ANALYZE {shadow.shadow}")

        started = time.perf_counter()
        # verify only needs the key of each table, for the catch-up's lookups
        builds = [(s, i) for s in self.shadows.values() for i in (s.indexes if all_indexes else s.indexes[:1])]
        await asyncio.gather(*(one(s, i) for s, i in builds))
        if all_indexes:
            await asyncio.gather(*(analyze(s) for s in self.shadows.values()))
        log.info("rebuild.indexed", views=list(self.views), seconds=round(time.perf_counter() - started, 2))

    async def apply_delta(self, conn: asyncpg.Connection, since: str) -> int:
        """Apply to the shadows the events visible to `conn` now and not in snapshot `since`.
        Returns how many there were. Call inside a transaction."""
        records = await conn.fetch(_DELTA, since, self.stream_types)
        if not records:
            return 0
        async with BinaryJsonb(conn):
            await self._apply_streams(conn, records)
        return len(records)

    async def _apply_streams(self, conn: asyncpg.Connection, records: list[asyncpg.Record]) -> None:
        users_changed: dict[tuple[uuid.UUID, uuid.UUID], users_view.UserRow | None] = {}
        group_streams: list[list[StreamEvent]] = []
        user_streams: list[list[StreamEvent]] = []
        for stream in streams(_stream_event(r) for r in records):
            (user_streams if stream[0].stream_type == "user" else group_streams).append(stream)
        if user_streams and USERS in self.shadows:
            current = await self._current_rows(conn, USERS, users_view.UserRow, user_streams)
            for stream in user_streams:
                key = (stream[0].tenant_id, stream[0].stream_id)
                users_changed[key] = fold_user(current.get(key), stream)
            await self._replace_rows(conn, self.shadows[USERS], users_changed, self._user_record())
        if group_streams and GROUPS in self.shadows:
            await self._apply_group_delta(conn, group_streams)

    async def _current_rows(
        self, conn: asyncpg.Connection, view: str, row_type: Any, stream_list: list[list[StreamEvent]]
    ) -> dict[tuple[uuid.UUID, uuid.UUID], Any]:
        fields = row_type.__dataclass_fields__
        rows = await conn.fetch(
            f"""SELECT {", ".join(fields)} FROM {self.shadows[view].shadow}
                WHERE (tenant_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))""",
            [s[0].tenant_id for s in stream_list], [s[0].stream_id for s in stream_list],
        )
        return {(r["tenant_id"], r["id"]): row_type(**dict(r.items())) for r in rows}

    @staticmethod
    async def _replace_rows(
        conn: asyncpg.Connection, shadow: ShadowTable, changed: dict[tuple[uuid.UUID, uuid.UUID], Any],
        record: Callable[[Any], tuple[Any, ...]],
    ) -> None:
        keys = list(changed)
        await conn.execute(
            f"""DELETE FROM {shadow.shadow}
                WHERE (tenant_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))""",
            [k[0] for k in keys], [k[1] for k in keys],
        )
        rows = [record(r) for r in changed.values() if r is not None]
        if rows:
            await conn.copy_records_to_table(shadow.shadow, records=rows, columns=shadow.columns)

    async def _apply_group_delta(self, conn: asyncpg.Connection, group_streams: list[list[StreamEvent]]) -> None:
        """Groups and memberships (always rebuilt together). A group's members are only read and
        rewritten for the member ids its new events mention: apply_members works element by
        element, so folding that subset gives the same result for it, and a group of 100,000 is
        never loaded whole; a deleted group loses all its membership rows."""
        current = await self._current_rows(conn, GROUPS, groups_view.GroupRow, group_streams)
        members_table = self.shadows[GROUP_MEMBERS].shadow
        mentioned: dict[tuple[uuid.UUID, uuid.UUID], set[str]] = {}
        for stream in group_streams:
            ids: set[str] = set()
            for e in stream:
                event = decode_event_json(e.data)
                if isinstance(event, GroupMembersAdded | GroupMembersRemoved):
                    ids.update(event.members)
            mentioned[(stream[0].tenant_id, stream[0].stream_id)] = ids
        pairs = [(k, m) for k, ids in mentioned.items() for m in ids]
        present: dict[tuple[uuid.UUID, uuid.UUID], set[str]] = {k: set() for k in mentioned}
        if pairs:
            for r in await conn.fetch(
                f"""SELECT tenant_id, group_id, member_id::text AS member_id FROM {members_table}
                    WHERE (tenant_id, group_id, member_id) IN
                          (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]))""",
                *_triples(pairs),
            ):
                present[(r["tenant_id"], r["group_id"])].add(r["member_id"])
        changed: dict[tuple[uuid.UUID, uuid.UUID], groups_view.GroupRow | None] = {}
        after: dict[tuple[uuid.UUID, uuid.UUID], set[str]] = {}
        for stream in group_streams:
            key = (stream[0].tenant_id, stream[0].stream_id)
            changed[key], after[key] = fold_group(current.get(key), present[key], stream)
        await self._replace_rows(conn, self.shadows[GROUPS], changed, self._group_record())
        deleted = [k for k, row in changed.items() if row is None]
        if deleted:
            await conn.execute(
                f"""DELETE FROM {members_table} WHERE (tenant_id, group_id) IN
                    (SELECT * FROM unnest($1::uuid[], $2::uuid[]))""",
                [k[0] for k in deleted], [k[1] for k in deleted],
            )
        live_pairs = [(k, m) for k, m in pairs if changed[k] is not None]
        if live_pairs:
            await conn.execute(
                f"""DELETE FROM {members_table} WHERE (tenant_id, group_id, member_id) IN
                    (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]))""",
                *_triples(live_pairs),
            )
            rows = [(k[0], k[1], uuid.UUID(m)) for k, m in live_pairs if m in after[k]]
            if rows:
                await conn.copy_records_to_table(members_table, records=rows, columns=MEMBER_COLUMNS)

    async def catch_up(self) -> None:
        """Step 3: deltas outside any lock until one is small."""
        for _ in range(20):
            async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
                snapshot = await conn.fetchval("SELECT pg_current_snapshot()::text")
                n = await self.apply_delta(conn, self.snapshot)
            self.snapshot = snapshot
            log.info("rebuild.caught_up", views=list(self.views), events=n)
            if n < SMALL_DELTA:
                return

    async def swap(self, *, lock_timeout_s: float = 3.0, attempts: int = 5) -> int:
        """Step 4. Returns the events applied under the lock."""
        for attempt in range(1, attempts + 1):
            async with self.pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
                        started = time.perf_counter()
                        live = [v for v in INLINE_VIEWS if v in self.shadows]
                        await conn.execute(f"LOCK TABLE {', '.join(live)} IN EXCLUSIVE MODE")
                        n = await self.apply_delta(conn, self.snapshot)
                        for view in live:
                            await _swap_table(conn, self.shadows[view])
                        held = time.perf_counter() - started
                    log.info("rebuild.swapped", views=live, tail_events=n, lock_ms=round(held * 1000, 1))
                    return n
                except asyncpg.LockNotAvailableError:
                    log.warning("rebuild.swap_lock_timeout", attempt=attempt)
            await self.catch_up()
        raise RebuildError(f"could not lock {', '.join(self.views)} within {attempts} attempts")

    async def compare(self, *, limit: int = 20) -> list[str]:
        """Verify's last step: the last delta and EXCEPT both ways under one snapshot. Nothing
        written here survives (the transaction rolls back). Returns the differences found."""
        differences: list[str] = []
        async with self.pool.acquire() as conn:
            tx = conn.transaction(isolation="repeatable_read")
            await tx.start()
            try:
                await self.apply_delta(conn, self.snapshot)
                for view in self.views:
                    shadow = self.shadows[view]
                    cols = ", ".join(shadow.columns)
                    for label, left, right in (
                        ("only in the live view", view, shadow.shadow),
                        ("only in the rebuild", shadow.shadow, view),
                    ):
                        rows = await conn.fetch(
                            f"SELECT {cols} FROM {left} EXCEPT SELECT {cols} FROM {right} LIMIT {limit}"
                        )
                        differences += [f"{view}: {label}: {dict(r.items())}" for r in rows]
            finally:
                await tx.rollback()
        return differences


def _triples(pairs: list[tuple[tuple[uuid.UUID, uuid.UUID], str]]) -> tuple[list[Any], list[Any], list[Any]]:
    return [k[0] for k, _ in pairs], [k[1] for k, _ in pairs], [uuid.UUID(m) for _, m in pairs]


def _record_getter(row_type: Any, columns: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The shadow row of a view row, in the table's column order (every column must be a field or
    property of the row type, so a column the fold cannot fill stops the rebuild up front)."""
    missing = [c for c in columns if not hasattr(row_type, c)]
    if missing:
        raise RebuildError(f"{row_type.__name__} has no value for column(s) {missing}")
    getter = operator.attrgetter(*columns)
    if len(columns) == 1:
        return lambda row: (getter(row),)
    return getter


async def _swap_table(conn: asyncpg.Connection, shadow: ShadowTable) -> None:
    await conn.execute(f"DROP TABLE {shadow.live}")
    await conn.execute(f"ALTER TABLE {shadow.shadow} RENAME TO {shadow.live}")
    for index in shadow.indexes:
        await conn.execute(f"ALTER INDEX {_shadow_name(index.name)} RENAME TO {index.name}")


# --- entry points ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RebuildResult:
    projection: str
    events: int
    seconds: float
    tail_events: int = 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class _RebuildLock:
    """Session advisory lock: one rebuild or verify at a time."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> None:
        self.conn = await self.pool.acquire()
        if not await self.conn.fetchval("SELECT pg_try_advisory_lock($1)", REBUILD_LOCK):
            await self.pool.release(self.conn)
            self.conn = None
            raise RebuildError("another rebuild or verify is running")

    async def __aexit__(self, *exc: object) -> None:
        assert self.conn is not None
        try:
            await self.conn.execute("SELECT pg_advisory_unlock($1)", REBUILD_LOCK)
        finally:
            await self.pool.release(self.conn)


def inline_views(names: Sequence[str]) -> tuple[str, ...]:
    """The inline views to rebuild for the names given: groups and group_members come from the
    same streams and are always rebuilt together."""
    chosen = {n for n in names if n in INLINE_VIEWS}
    if chosen & {GROUPS, GROUP_MEMBERS}:
        chosen |= {GROUPS, GROUP_MEMBERS}
    return tuple(v for v in INLINE_VIEWS if v in chosen)


async def rebuild_inline(pool: asyncpg.Pool, views: Sequence[str], *, tty: bool = False, stream: Any = None) -> RebuildResult:
    job = InlineRebuild(pool, tuple(views), tty=tty, stream=stream)
    async with _RebuildLock(pool):
        try:
            await job.prepare()
            await job.bulk_load()
            await job.build_indexes()
            await job.catch_up()
            tail = await job.swap()
        except BaseException:
            async with pool.acquire() as conn:
                await _drop_shadows(conn, job.shadows.values())
            raise
    return RebuildResult(",".join(views), job.events, job.seconds, tail)


async def verify_inline(pool: asyncpg.Pool, views: Sequence[str], *, tty: bool = False, stream: Any = None) -> list[str]:
    """Rebuild into shadows and compare with the live views. Returns the differences."""
    job = InlineRebuild(pool, tuple(views), tty=tty, stream=stream)
    async with _RebuildLock(pool):
        try:
            await job.prepare()
            await job.bulk_load()
            await job.build_indexes(all_indexes=False)
            await job.catch_up()
            return await job.compare()
        finally:
            async with pool.acquire() as conn:
                await _drop_shadows(conn, job.shadows.values())


# --- follower projections ------------------------------------------------------------------

# the tables each follower writes (what its `reset` empties); a projection may say so itself
# with a `tables` attribute
FOLLOWER_TABLES = {
    "audit": ("audit_events", "audit_targets", "audit_target_names"),
    "seal": ("audit_seals",),
}


def follower_tables(projection: Projection) -> tuple[str, ...]:
    tables = getattr(projection, "tables", None) or FOLLOWER_TABLES.get(projection.name)
    if not tables:
        raise RebuildError(f"no table list for follower {projection.name!r}")
    return tuple(tables)


async def _live_schema(conn: asyncpg.Connection, table: str) -> str:
    return str(await conn.fetchval("SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = $1::regclass", table))


async def _prepare_follower_shadow(conn: asyncpg.Connection, tables: Sequence[str]) -> str:
    """The shadow schema with empty copies of `tables`, indexes included (a follower reads its
    own tables while it applies: ON CONFLICT, the previous hash). Returns the live schema."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE")
    await conn.execute(f"CREATE SCHEMA {SHADOW_SCHEMA}")
    schemas = {await _live_schema(conn, t) for t in tables}
    if len(schemas) != 1:
        raise RebuildError(f"the tables {tables} are not in one schema")
    for table in tables:
        shadow = await prepare_shadow(conn, table, schema=SHADOW_SCHEMA)
        for index in shadow.indexes:
            for statement in index_sql(index, f"{SHADOW_SCHEMA}.{table}", index.name):
                await conn.execute(statement)
    return schemas.pop()


async def rebuild_follower(
    pool: asyncpg.Pool, projection: Projection, *, batch_size: int = 5000,
    tty: bool = False, stream: Any = None,
) -> RebuildResult:
    """Replay the whole log through `projection.handle` into shadow copies of its tables, then
    swap them in together with the checkpoint (see the module doc)."""
    tables = follower_tables(projection)
    async with _RebuildLock(pool), pool.acquire() as conn:
        try:
            live = await _prepare_follower_shadow(conn, tables)
            total = await conn.fetchval("SELECT count(*) FROM events")
            progress = Progress(projection.name, int(total), tty=tty, stream=stream)
            after = await _replay_into_shadow(conn, projection, BEGINNING, batch_size, progress)
            seconds = progress.finish()
            previous = (await follower.ensure_checkpoint(conn, projection.name)).state
            # stop the runner (its batch in flight fails its checkpoint check and rolls back) and
            # hold its advisory lock, so no runner applies anything during the swap
            await follower.set_state(conn, projection.name, follower.STOPPED)
            try:
                await _take_runner_lock(conn, projection.name)
                try:
                    await _swap_follower(conn, projection, tables, live, after, batch_size, previous)
                finally:
                    await follower.unlock(conn, projection.name)
            except BaseException:
                if previous != follower.STOPPED:
                    await _restore_state(conn, projection.name, previous)
                raise
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE")
    log.info("rebuild.swapped", projection=projection.name, events=progress.done)
    return RebuildResult(projection.name, progress.done, seconds)


async def _take_runner_lock(conn: asyncpg.Connection, name: str, *, timeout_s: float = 30.0) -> None:
    """The projection's runner lock; a stopped runner lets go of it within its retry period."""
    deadline = time.monotonic() + timeout_s
    while not await follower.try_lock(conn, name):
        if time.monotonic() > deadline:
            raise RebuildError(f"the {name} runner did not stop within {timeout_s:.0f}s")
        await asyncio.sleep(0.05)


async def _restore_state(conn: asyncpg.Connection, name: str, state: str) -> None:
    await conn.execute("UPDATE projection_checkpoints SET state = $2 WHERE name = $1", name, state)


async def _swap_follower(
    conn: asyncpg.Connection, projection: Projection, tables: Sequence[str], live: str,
    after: Checkpoint, batch_size: int, previous_state: str,
) -> None:
    """One transaction: the last events into the shadows, the shadows into place, the checkpoint
    to the shadows' position and the state back to running (unless an operator had stopped it;
    a failed projection runs again: the replay applied every event, the failed one included)."""
    async with conn.transaction():
        await conn.execute(f"LOCK TABLE {', '.join(f'{live}.{t}' for t in tables)} IN ACCESS EXCLUSIVE MODE")
        after = await _replay_into_shadow(conn, projection, after, batch_size, None)
        for t in tables:
            await conn.execute(f"DROP TABLE {live}.{t}")
            await conn.execute(f"ALTER TABLE {SHADOW_SCHEMA}.{t} SET SCHEMA {live}")
        await conn.execute(
            """UPDATE projection_checkpoints
               SET tx = $2::text::xid8, position = $3, updated_at = now(), state = $4,
                   error = NULL, failed_position = NULL
               WHERE name = $1""",
            projection.name, str(after[0]), after[1],
            follower.STOPPED if previous_state == follower.STOPPED else follower.RUNNING,
        )


async def verify_follower(
    pool: asyncpg.Pool, projection: Projection, *, batch_size: int = 5000, limit: int = 20,
    tty: bool = False, stream: Any = None,
) -> list[str]:
    """Replay into shadow tables up to the live checkpoint and compare (EXCEPT both ways). The
    last stretch and the comparison run with the live tables locked in SHARE mode, so the runner
    waits (reads go on) and the checkpoint cannot move under the comparison."""
    tables = follower_tables(projection)
    differences: list[str] = []
    async with _RebuildLock(pool), pool.acquire() as conn:
        try:
            live = await _prepare_follower_shadow(conn, tables)
            start = await follower.load_checkpoint(conn, projection.name)
            total = await conn.fetchval("SELECT count(*) FROM events")
            progress = Progress(projection.name, int(total), tty=tty, stream=stream)
            after = await _replay_into_shadow(
                conn, projection, BEGINNING, batch_size, progress, until=start.checkpoint if start else BEGINNING
            )
            progress.finish()
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute(f"LOCK TABLE {', '.join(f'{live}.{t}' for t in tables)} IN SHARE MODE")
                current = await follower.load_checkpoint(conn, projection.name)
                until = current.checkpoint if current else BEGINNING
                await _replay_into_shadow(conn, projection, after, batch_size, None, until=until)
                for t in tables:
                    cols = ", ".join(await _columns(conn, f"{live}.{t}"))
                    for label, left, right in (
                        ("only in the live view", f"{live}.{t}", f"{SHADOW_SCHEMA}.{t}"),
                        ("only in the rebuild", f"{SHADOW_SCHEMA}.{t}", f"{live}.{t}"),
                    ):
                        rows = await conn.fetch(
                            f"SELECT {cols} FROM {left} EXCEPT SELECT {cols} FROM {right} LIMIT {limit}"
                        )
                        differences += [f"{projection.name}/{t}: {label}: {dict(r.items())}" for r in rows]
            finally:
                await tx.rollback()
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE")
    return differences


async def _replay_into_shadow(
    conn: asyncpg.Connection, projection: Projection, after: Checkpoint, batch_size: int,
    progress: Progress | None, *, until: Checkpoint | None = None,
) -> Checkpoint:
    """Feed the log after `after` (up to `until` included, if given) to `projection.handle`
    with the shadow schema first on the search_path; returns the new checkpoint."""
    search_path = await conn.fetchval("SHOW search_path")
    while until is None or after < until:
        events = await read_all(conn, after=after, limit=batch_size)
        if until is not None:
            events = [e for e in events if e.checkpoint <= until]
        if not events:
            return after
        async with conn.transaction():
            await conn.execute(f"SET LOCAL search_path = {SHADOW_SCHEMA}, {search_path}")
            await projection.handle(conn, events)
            await conn.execute(f"SET LOCAL search_path = {search_path}")
        after = events[-1].checkpoint
        if progress is not None:
            progress.advance(len(events))
    return after
