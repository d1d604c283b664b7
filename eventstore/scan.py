"""Bulk reads of the log by stream type, in stream order: what a rebuild folds.

Both reads return the events of whole streams in (tenant_id, stream_id, version) order, with the
payload as its JSON text (the fold decodes it with a typed decoder, much faster than through
dicts). `open_stream_cursor` reads everything visible in the caller's snapshot; `read_delta` the
events of transactions committed since an earlier snapshot.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import NamedTuple

import asyncpg


class StreamEvent(NamedTuple):
    """One event of a stream, as a fold needs it (the columns of the reads below, in order)."""

    tenant_id: uuid.UUID
    stream_type: str
    stream_id: uuid.UUID
    version: int
    global_position: int
    recorded_at: dt.datetime
    data: str  # the payload's JSON text, decoded by the fold


stream_event = StreamEvent._make  # from a row of the reads below, at C speed

_COLUMNS = "tenant_id, stream_type, stream_id, version, global_position, recorded_at, data::text"
_BULK = f"""SELECT {_COLUMNS} FROM events WHERE stream_type = any($1::text[])
            ORDER BY tenant_id, stream_id, version"""
# events of transactions not visible in the snapshot $1 (committed since), as the current
# statement sees them; transaction_id >= xmin($1) lets the (transaction_id, position) index in
_DELTA = f"""SELECT {_COLUMNS} FROM events
             WHERE transaction_id >= pg_snapshot_xmin($1::text::pg_snapshot)
               AND NOT pg_visible_in_snapshot(transaction_id, $1::text::pg_snapshot)
               AND stream_type = any($2::text[])
             ORDER BY tenant_id, stream_id, version"""


async def current_snapshot(conn: asyncpg.Connection) -> str:
    """The snapshot of the caller's transaction, as text for `read_delta` later."""
    return str(await conn.fetchval("SELECT pg_current_snapshot()::text"))


async def open_stream_cursor(conn: asyncpg.Connection, stream_types: Sequence[str]) -> asyncpg.cursor.Cursor:
    """A server-side cursor over every event of these stream types visible to the caller's
    transaction (which must be open), rows in `StreamEvent` column order."""
    return await conn.cursor(_BULK, list(stream_types))


async def read_delta(conn: asyncpg.Connection, since: str, stream_types: Sequence[str]) -> list[StreamEvent]:
    """The events of these stream types visible to `conn` now and not in the snapshot `since`."""
    return [stream_event(r) for r in await conn.fetch(_DELTA, since, list(stream_types))]


async def streams_of_type(conn: asyncpg.Connection, stream_type: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Every (tenant, stream) of this type in the log."""
    rows = await conn.fetch(
        "SELECT DISTINCT tenant_id, stream_id FROM events WHERE stream_type = $1", stream_type
    )
    return [(r["tenant_id"], r["stream_id"]) for r in rows]

