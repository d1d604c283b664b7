"""Statistics of the log for status, metrics and followers: head, counts, lag.

Each is one statement on an index of `events`: the checkpoint comparisons use the
(transaction_id, global_position) index a follower reads along, so the cost is the events after
the checkpoint, not the whole log.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from eventstore.store import Checkpoint


async def head_position(conn: asyncpg.Connection) -> int:
    """The highest global position in the log (0 when it is empty)."""
    return int(await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events"))


async def count_events(conn: asyncpg.Connection, stream_types: Sequence[str] | None = None) -> int:
    """Events in the log, of every stream or of the streams of these types."""
    if stream_types is None:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    return int(await conn.fetchval(
        "SELECT count(*) FROM events WHERE stream_type = any($1::text[])", list(stream_types)
    ))


async def lag_after(conn: asyncpg.Connection, after: Checkpoint) -> tuple[int, float]:
    """(events after `after`, seconds since the oldest of them was recorded; 0 when none)."""
    record = await conn.fetchrow(
        """SELECT count(*) AS n,
                  coalesce(extract(epoch FROM now() - min(recorded_at)), 0)::float8 AS seconds
           FROM events WHERE (transaction_id, global_position) > ($1::text::xid8, $2)""",
        str(after[0]), after[1],
    )
    assert record is not None
    return int(record["n"]), max(0.0, float(record["seconds"]))


async def count_after(conn: asyncpg.Connection, tenant_id: uuid.UUID, after: Checkpoint) -> int:
    """A tenant's events after the checkpoint `after`."""
    return int(await conn.fetchval(
        """SELECT count(*) FROM events
           WHERE (transaction_id, global_position) > ($2::text::xid8, $3) AND tenant_id = $1""",
        tenant_id, str(after[0]), after[1],
    ))


async def counts_by_type_below_xmin(
    conn: asyncpg.Connection, from_transaction: int
) -> tuple[int | None, dict[str, int]]:
    """Events by type of the transactions in [from_transaction, the snapshot's xmin), and that
    xmin: every transaction below it has finished, so a caller that counts each such range once,
    moving the bound to the xmin returned, counts every committed event exactly once."""
    rows = await conn.fetch(
        """WITH b AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS upper)
           SELECT b.upper::text::bigint AS upper, e.type, count(e.type) AS n
           FROM b LEFT JOIN events e
             ON e.transaction_id >= $1::text::xid8 AND e.transaction_id < b.upper
           GROUP BY b.upper, e.type""",
        str(from_transaction),
    )
    counts = {r["type"]: int(r["n"]) for r in rows if r["type"] is not None}
    return (int(rows[0]["upper"]) if rows else None), counts
