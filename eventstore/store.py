"""Append to and read from the event log.

`append` relies on the UNIQUE (tenant_id, stream_id, version) constraint for optimistic
concurrency, and on a guard in the INSERT itself so an `expected_version` ahead of the stream
cannot leave a hole. `append_with` is the same INSERT with the caller's view statement in one
statement (the inline views' write path). Driver errors are translated here, once, into
`WrongExpectedVersion`. The statistics of the log are in `eventstore.stats`, the bulk reads of
rebuilds in `eventstore.scan`, and the joins of follower tables with the log in
`eventstore.references`: no SQL on `events` lives outside this package.

Reading the whole log without gaps: a sequence value is taken at INSERT but becomes visible at
COMMIT, so position order is not commit order and a reader that follows `global_position >
checkpoint` can skip a transaction that commits late with a lower position. Every row carries the
id of the transaction that wrote it; `read_all` only returns rows of transactions older than the
oldest transaction still running (`pg_snapshot_xmin`), so every transaction it returns rows of is
finished, and one whose id is below xmin can never appear later. Ordering by (transaction_id,
global_position) then gives a stable order in which nothing can be inserted behind a reader's
checkpoint. No global lock is taken on the write path, so concurrent commits share a WAL flush.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import asyncpg

from eventstore.shredding import KEY_COLUMNS, WrappedKey

# A checkpoint in the global log: (transaction id, global position). (0, 0) is the beginning.
Checkpoint = tuple[int, int]
BEGINNING: Checkpoint = (0, 0)


class WrongExpectedVersion(Exception):
    """The stream is not at the version the writer decided from."""

    def __init__(self, stream_id: uuid.UUID, expected: int) -> None:
        super().__init__(f"stream {stream_id} is not at version {expected}")
        self.stream_id = stream_id
        self.expected = expected


class NewEvent(NamedTuple):
    """An event to append: its type and payload (the caller's vocabulary; the store knows none)."""

    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    tenant_id: uuid.UUID
    global_position: int
    transaction_id: int
    stream_type: str
    stream_id: uuid.UUID
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: dt.datetime

    @property
    def checkpoint(self) -> Checkpoint:
        return (self.transaction_id, self.global_position)


# The one INSERT into the log, used by `append` and as the `ev` CTE of `append_with`. Parameters:
# $1 tenant_id, $2 stream_type, $3 stream_id, $4 expected version, $5 types text[], $6 data
# jsonb[], $7 metadata jsonb. The guard (the WHERE) inserts nothing unless the stream is at $4, so
# an expected version ahead of the stream cannot leave a hole; one behind it that was committed
# before the statement is refused the same way, and one committed concurrently hits
# UNIQUE (tenant_id, stream_id, version).
_INSERT = """INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
SELECT $1, $2, $3, $4 + e.ord, e.type, e.data, $7
FROM unnest($5::text[], $6::jsonb[]) WITH ORDINALITY AS e(type, data, ord)
WHERE coalesce((SELECT max(version) FROM events WHERE tenant_id = $1 AND stream_id = $3), 0) = $4
RETURNING global_position, version"""

EVENTS_VERSION_CONSTRAINT = "events_tenant_id_stream_id_version_key"

_COLUMNS = """tenant_id, global_position, transaction_id::text::bigint AS transaction_id, stream_type,
stream_id, version, type, data, metadata, recorded_at"""


async def append(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    stream_type: str,
    stream_id: uuid.UUID,
    expected_version: int,
    events: Sequence[NewEvent],
    metadata: Mapping[str, Any],
) -> int:
    """Append `events` to a stream at `expected_version`; returns the stream's new version.

    Raises WrongExpectedVersion if the stream has moved (or is behind `expected_version`). Call it
    inside the caller's transaction: the append commits together with the inline views.
    """
    if not events:
        return expected_version
    params = _params(tenant_id, stream_type, stream_id, expected_version, events, metadata)
    rows = await _execute(conn.fetch, _INSERT, params, stream_id, expected_version)
    if len(rows) != len(events):
        raise WrongExpectedVersion(stream_id, expected_version)
    return expected_version + len(events)


async def append_with(
    conn: asyncpg.Connection,
    stream_type: str,
    view_sql: str,
    tenant_id: uuid.UUID,
    stream_id: uuid.UUID,
    expected_version: int,
    events: Sequence[NewEvent],
    metadata: Mapping[str, Any],
    *view_params: Any,
    stream_key: WrappedKey | None = None,
) -> asyncpg.Record:
    """Append `events` and run the caller's view statement, in ONE statement (one round trip,
    atomic without BEGIN/COMMIT); returns the first row the view statement returns.

    The statement is `WITH ev AS (<the guarded INSERT> RETURNING global_position, version)
    <view_sql>`. The contract for `view_sql`:

    - it is one INSERT / UPDATE / DELETE (or SELECT) that acts only when `ev` holds rows
      (`... WHERE EXISTS (SELECT 1 FROM ev)`, or `FROM ev`), so when the guard refuses the
      append, the view changes nothing either;
    - when it acts it RETURNs at least one row (a DELETE returns, say, its key);
    - its parameters: $1 tenant_id, $2 stream_type, $3 stream_id, $4 expected version,
      $5 event types, $6 event data, $7 metadata, then `view_params` from $8; it may read
      `ev.global_position` and `ev.version` of the new events.

    No row back means nothing was appended: the stream is not at `expected_version` (ahead or
    behind), raised as WrongExpectedVersion, as is the events unique violation of a concurrent
    writer. Any other unique violation (the view's own, e.g. a unique index on the view) is
    re-raised as it is, for the caller to name. Event types and payloads come from the caller
    (`NewEvent`): the event store knows no vocabulary. `events` must not be empty (ValueError: a
    write that changes nothing has nothing to append and no statement to run).

    `stream_key`: the stream's new data key (eventstore/shredding.py), stored in the same
    statement when the events are appended: a subject's first sealed write.
    """
    if not events:
        raise ValueError("append_with needs at least one event")
    params = [*_params(tenant_id, stream_type, stream_id, expected_version, events, metadata), *view_params]
    sql = _with_view(view_sql)
    if stream_key is not None:
        sql = _with_key(view_sql, len(params))
        params += [stream_key.kek_id, stream_key.wrapped]
    record = await _execute(conn.fetchrow, sql, params, stream_id, expected_version)
    if record is None:
        raise WrongExpectedVersion(stream_id, expected_version)
    return record


_statements: dict[str, str] = {}


def _with_view(view_sql: str) -> str:
    """`WITH ev AS (...) <view_sql>`, built once per view statement (asyncpg caches the prepared
    statement by its text)."""
    statement = _statements.get(view_sql)
    if statement is None:
        statement = _statements[view_sql] = f"WITH ev AS (\n{_INSERT}\n)\n{view_sql}"
    return statement


def _with_key(view_sql: str, before: int) -> str:
    """`_with_view` with the stream key's INSERT as a second CTE (parameters after the view's)."""
    cache_key = f"{before}\n{view_sql}"
    statement = _statements.get(cache_key)
    if statement is None:
        key = (f"k AS (INSERT INTO {KEY_COLUMNS}\n"
               f"SELECT $1, $3, ${before + 1}, ${before + 2} WHERE EXISTS (SELECT 1 FROM ev))")
        statement = _statements[cache_key] = f"WITH ev AS (\n{_INSERT}\n), {key}\n{view_sql}"
    return statement


def _params(tenant_id: uuid.UUID, stream_type: str, stream_id: uuid.UUID, expected_version: int,
            events: Sequence[NewEvent], metadata: Mapping[str, Any]) -> list[Any]:
    """$1 to $7 of `_INSERT`."""
    return [tenant_id, stream_type, stream_id, expected_version,
            [e.type for e in events], [e.data for e in events], metadata]


async def _execute(run: Any, sql: str, params: list[Any], stream_id: uuid.UUID, expected_version: int) -> Any:
    """Run an appending statement; the one place the events unique violation becomes
    WrongExpectedVersion (any other unique violation goes up as it is)."""
    try:
        return await run(sql, *params)
    except asyncpg.UniqueViolationError as e:
        if e.constraint_name == EVENTS_VERSION_CONSTRAINT:
            raise WrongExpectedVersion(stream_id, expected_version) from e
        raise


def _recorded(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(**dict(row.items()))


async def read_stream(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    stream_id: uuid.UUID,
    *,
    after_version: int = 0,
    until: dt.datetime | None = None,
) -> list[RecordedEvent]:
    """A stream's events in version order, optionally only those recorded at or before `until`."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM events
            WHERE tenant_id = $1 AND stream_id = $2 AND version > $3
              AND ($4::timestamptz IS NULL OR recorded_at <= $4)
            ORDER BY version""",
        tenant_id,
        stream_id,
        after_version,
        until,
    )
    return [_recorded(r) for r in rows]


# ORDER BY names the table's columns: a bare `transaction_id` would be the output alias (the
# bigint cast), which cannot use the (transaction_id, global_position) index, so every batch
# would sort the whole rest of the log.
READ_ALL = f"""SELECT {_COLUMNS} FROM events
    WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY events.transaction_id, events.global_position
    LIMIT $3"""


async def read_all(
    conn: asyncpg.Connection, *, after: Checkpoint = BEGINNING, limit: int = 1000
) -> list[RecordedEvent]:
    """The next committed events of the whole log after `after`, gap-free (see module doc)."""
    rows = await conn.fetch(READ_ALL, str(after[0]), after[1], limit)
    return [_recorded(r) for r in rows]


async def read_tenant_since(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, since: dt.datetime, *, after: Checkpoint,
    upto: Checkpoint, limit: int = 1000,
) -> list[RecordedEvent]:
    """One tenant's events recorded at or after `since`, in the gap-free order of `read_all`,
    after the checkpoint `after` and up to `upto` (a follower's checkpoint): a page of a replay
    of the log from a moment. Page on by passing the last event's checkpoint as `after`."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM events
            WHERE (transaction_id, global_position) > ($2::text::xid8, $3)
              AND (transaction_id, global_position) <= ($4::text::xid8, $5)
              AND tenant_id = $1 AND recorded_at >= $6
            ORDER BY events.transaction_id, events.global_position
            LIMIT $7""",
        tenant_id, str(after[0]), after[1], str(upto[0]), upto[1], since, limit,
    )
    return [_recorded(r) for r in rows]


async def stream_version(conn: asyncpg.Connection, tenant_id: uuid.UUID, stream_id: uuid.UUID) -> int:
    version = await conn.fetchval(
        "SELECT coalesce(max(version), 0) FROM events WHERE tenant_id = $1 AND stream_id = $2",
        tenant_id,
        stream_id,
    )
    return int(version)


async def stream_type_of(conn: asyncpg.Connection, tenant_id: uuid.UUID, stream_id: uuid.UUID) -> str | None:
    """The type of a stream in the log (its first event's), or None if the tenant has none."""
    value = await conn.fetchval(
        "SELECT stream_type FROM events WHERE tenant_id = $1 AND stream_id = $2 ORDER BY version LIMIT 1",
        tenant_id, stream_id,
    )
    return None if value is None else str(value)
