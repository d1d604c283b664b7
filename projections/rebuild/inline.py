"""The inline views rebuilt from the log: bulk fold into shadow tables, index, catch up, swap.

The steps (the package doc of projections.rebuild says why each is safe while writers go on):
`prepare` the empty shadows, `bulk_load` every event of one snapshot folded and COPYed in,
`build_indexes`, `catch_up` on the deltas since, then `swap` under a short EXCLUSIVE lock, or for
verify `compare` under one snapshot. The folds are the write path's (projections.domain.folds).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import operator
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from eventstore.scan import (
    StreamEvent,
    current_snapshot,
    open_stream_cursor,
    read_delta,
    stream_event,
)
from eventstore.shredding import Keys, all_keys, keys_for
from eventstore.stats import count_events
from projections import registry
from projections.domain import personal
from projections.domain.events import GroupMembersAdded, GroupMembersRemoved, decode_event_json
from projections.domain.folds import GroupRow, UserRow, apply_group, apply_members, apply_user
from projections.privacy import StreamOpener
from projections.rebuild.codec import BinaryJsonb
from projections.rebuild.common import RebuildError, RebuildLock, RebuildResult, differences
from projections.rebuild.ddl import (
    IndexDef,
    ShadowTable,
    drop_shadows,
    index_sql,
    prepare_shadow,
    shadow_name,
    swap_table,
)
from projections.rebuild.progress import Progress

log = structlog.get_logger("scimledger.rebuild")

FETCH = 20_000  # events per cursor fetch
COPY_BATCH = 20_000  # rows per COPY
SMALL_DELTA = 2_000  # stop catching up outside the lock below this many events

USERS, GROUPS, GROUP_MEMBERS = "users", "groups", "group_members"
INLINE_VIEWS = registry.INLINE_VIEWS  # also the lock order: the writers' order
MEMBER_COLUMNS = ("tenant_id", "group_id", "member_id")


# --- the pure part: folding one stream -------------------------------------------------------

def fold_user(row: UserRow | None, events: Iterable[StreamEvent], keys: Keys) -> UserRow | None:
    """The users-view row after `events` (one stream; None: deleted or erased), by
    projections.domain.folds.apply_user; sealed payloads opened with `keys`."""
    opener: StreamOpener | None = None
    for e in events:
        if opener is None:
            opener = StreamOpener(e.tenant_id, e.stream_id, keys)
        row = apply_user(
            row, opener.decode(e.data, e.version, only=personal.FOLD_OPENS),
            tenant_id=e.tenant_id, stream_id=e.stream_id,
            version=e.version, position=e.global_position, recorded_at=e.recorded_at,
        )
    return row


def fold_group(
    row: GroupRow | None, members: set[str], events: Iterable[StreamEvent]
) -> tuple[GroupRow | None, set[str]]:
    """The groups-view row and the member ids after `events`, by projections.domain.folds
    apply_group and apply_members."""
    for e in events:
        event = decode_event_json(e.data)
        row = apply_group(
            row, event, tenant_id=e.tenant_id, stream_id=e.stream_id,
            version=e.version, position=e.global_position, recorded_at=e.recorded_at,
        )
        members = apply_members(members, event)
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


# --- reading the log (eventstore.scan) -------------------------------------------------------

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
            batch = held + [stream_event(r) for r in records]
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
        return sorted({registry.stream_type(v) for v in self.views})

    def _user_record(self) -> Callable[[UserRow], tuple[Any, ...]]:
        return _record_getter(UserRow, self.shadows[USERS].columns)

    def _group_record(self) -> Callable[[GroupRow], tuple[Any, ...]]:
        return _record_getter(GroupRow, self.shadows[GROUPS].columns)

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
                self.snapshot = await current_snapshot(reader)
                total = await count_events(reader, self.stream_types)
                progress = Progress(",".join(self.views), total, tty=self.tty, stream=self.stream)
                keys = await all_keys(reader)  # in the same snapshot as the events
                cursor = await open_stream_cursor(reader, self.stream_types)
                async for events in whole_streams(cursor):
                    self._fold_into(events, keys, buffers, user_record, group_record, with_members)
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
        keys: Keys,
        buffers: dict[str, list[tuple[Any, ...]]],
        user_record: Callable[[UserRow], tuple[Any, ...]] | None,
        group_record: Callable[[GroupRow], tuple[Any, ...]] | None,
        with_members: bool,
    ) -> None:
        for stream in streams(events):
            if stream[0].stream_type == "user":
                if user_record is None:
                    continue
                user = fold_user(None, stream, keys)
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
                for statement in index_sql(index, shadow.shadow, shadow_name(index.name)):
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
        events = await read_delta(conn, since, self.stream_types)
        if not events:
            return 0
        async with BinaryJsonb(conn):
            await self._apply_streams(conn, events)
        return len(events)

    async def _apply_streams(self, conn: asyncpg.Connection, events: list[StreamEvent]) -> None:
        users_changed: dict[tuple[uuid.UUID, uuid.UUID], UserRow | None] = {}
        group_streams: list[list[StreamEvent]] = []
        user_streams: list[list[StreamEvent]] = []
        for stream in streams(events):
            (user_streams if stream[0].stream_type == "user" else group_streams).append(stream)
        if user_streams and USERS in self.shadows:
            current = await self._current_rows(conn, USERS, UserRow, user_streams)
            keys = await keys_for(conn, [(s[0].tenant_id, s[0].stream_id) for s in user_streams])
            for stream in user_streams:
                key = (stream[0].tenant_id, stream[0].stream_id)
                users_changed[key] = fold_user(current.get(key), stream, keys)
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
        current = await self._current_rows(conn, GROUPS, GroupRow, group_streams)
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
        changed: dict[tuple[uuid.UUID, uuid.UUID], GroupRow | None] = {}
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
                snapshot = await current_snapshot(conn)
                n = await self.apply_delta(conn, self.snapshot)
            self.snapshot = snapshot
            log.info("rebuild.caught_up", views=list(self.views), events=n)
            if n < SMALL_DELTA:
                return

    async def swap(self, *, lock_timeout_s: float = 0.2, attempts: int = 25) -> int:
        """Step 4. Returns the events applied under the lock.

        The lock wait is kept below PostgreSQL's deadlock_timeout (1 s): writers take the view
        tables in two orders (a group write locks its group, then the member users it adds; a
        user delete locks the user, then its groups), so a swap that queued behind one of them
        could close a cycle. It gives up first and retries, and the writer never sees a
        deadlock error."""
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
                            await swap_table(conn, self.shadows[view])
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
        found: list[str] = []
        async with self.pool.acquire() as conn:
            tx = conn.transaction(isolation="repeatable_read")
            await tx.start()
            try:
                await self.apply_delta(conn, self.snapshot)
                for view in self.views:
                    shadow = self.shadows[view]
                    found += await differences(conn, view, shadow.columns, view, shadow.shadow, limit=limit)
            finally:
                await tx.rollback()
        return found


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


# --- entry points ----------------------------------------------------------------------------

def inline_views(names: Sequence[str]) -> tuple[str, ...]:
    """The inline views to rebuild for the names given: groups and group_members come from the
    same streams and are always rebuilt together (projections.registry.rebuilt_together)."""
    return registry.rebuilt_together(tuple(names))


async def rebuild_inline(pool: asyncpg.Pool, views: Sequence[str], *, tty: bool = False, stream: Any = None) -> RebuildResult:
    job = InlineRebuild(pool, tuple(views), tty=tty, stream=stream)
    async with RebuildLock(pool):
        try:
            await job.prepare()
            await job.bulk_load()
            await job.build_indexes()
            await job.catch_up()
            tail = await job.swap()
        except BaseException:
            async with pool.acquire() as conn:
                await drop_shadows(conn, job.shadows.values())
            raise
    return RebuildResult(",".join(views), job.events, job.seconds, tail)


async def verify_inline(pool: asyncpg.Pool, views: Sequence[str], *, tty: bool = False, stream: Any = None) -> list[str]:
    """Rebuild into shadows and compare with the live views. Returns the differences."""
    job = InlineRebuild(pool, tuple(views), tty=tty, stream=stream)
    async with RebuildLock(pool):
        try:
            await job.prepare()
            await job.bulk_load()
            await job.build_indexes(all_indexes=False)
            await job.catch_up()
            return await job.compare()
        finally:
            async with pool.acquire() as conn:
                await drop_shadows(conn, job.shadows.values())

