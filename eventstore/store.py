"""Append to and read from the event log.

`append` relies on the UNIQUE (tenant_id, stream_id, version) constraint for optimistic
concurrency, and on a guard in the INSERT itself so an `expected_version` ahead of the stream
cannot leave a hole. Driver errors are translated here, once, into `WrongExpectedVersion`.

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
from typing import Any

import asyncpg

# A checkpoint in the global log: (transaction id, global position). (0, 0) is the beginning.
Checkpoint = tuple[int, int]
BEGINNING: Checkpoint = (0, 0)


class WrongExpectedVersion(Exception):
    """The stream is not at the version the writer decided from."""

    def __init__(self, stream_id: uuid.UUID, expected: int) -> None:
        super().__init__(f"stream {stream_id} is not at version {expected}")
        self.stream_id = stream_id
        self.expected = expected


@dataclass(frozen=True, slots=True)
class NewEvent:
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


_APPEND = """
INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
SELECT $1, $2, $3, $4 + e.ord, e.type, e.data, $7
FROM unnest($5::text[], $6::jsonb[]) WITH ORDINALITY AS e(type, data, ord)
WHERE coalesce((SELECT max(version) FROM events WHERE tenant_id = $1 AND stream_id = $3), 0) = $4
RETURNING global_position, recorded_at
"""

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
    try:
        rows = await conn.fetch(
            _APPEND,
            tenant_id,
            stream_type,
            stream_id,
            expected_version,
            [e.type for e in events],
            [e.data for e in events],
            metadata,
        )
    except asyncpg.UniqueViolationError as e:
        raise WrongExpectedVersion(stream_id, expected_version) from e
    if len(rows) != len(events):
        raise WrongExpectedVersion(stream_id, expected_version)
    return expected_version + len(events)


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


async def stream_version(conn: asyncpg.Connection, tenant_id: uuid.UUID, stream_id: uuid.UUID) -> int:
    version = await conn.fetchval(
        "SELECT coalesce(max(version), 0) FROM events WHERE tenant_id = $1 AND stream_id = $2",
        tenant_id,
        stream_id,
    )
    return int(version)


# The events INSERT as a CTE, for writers that append and update their inline view in one
# statement (one round trip, atomic without BEGIN/COMMIT). Parameters: $1 tenant_id, $2 stream_id,
# $3 expected version, $4 types text[], $5 data jsonb[], $6 metadata jsonb; the stream type is
# bound by the caller's SQL as a literal. A stale expected version hits the unique constraint
# (translate with `translate_unique_violation`); callers read the expected version from their
# view row, which is written in the same transactions as the log, so it is never ahead.
def append_cte(stream_type: str) -> str:
    assert stream_type.isidentifier()
    return f"""ev AS (
    INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
    SELECT $1, '{stream_type}', $2, $3 + e.ord, e.type, e.data, $6
    FROM unnest($4::text[], $5::jsonb[]) WITH ORDINALITY AS e(type, data, ord)
    RETURNING global_position
)"""


EVENTS_VERSION_CONSTRAINT = "events_tenant_id_stream_id_version_key"


def translate_unique_violation(
    error: asyncpg.UniqueViolationError, stream_id: uuid.UUID, expected: int
) -> Exception:
    """The typed error for a unique violation raised by an append statement."""
    if error.constraint_name == EVENTS_VERSION_CONSTRAINT:
        return WrongExpectedVersion(stream_id, expected)
    return error
