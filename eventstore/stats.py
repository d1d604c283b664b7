"""Statistics of the log for status, metrics and followers: head, counts, lag.

Each is one statement on an index of `events`: the checkpoint comparisons use the
(transaction_id, global_position) index a follower reads along, so the cost is the events after
the checkpoint, not the whole log. What a scrape or an auditor's request asks about a follower
(`lag_after`, `pending_after`) is bounded further: it walks at most `LAG_CAP` + 1 entries of that
index, however far behind a failed or stopped follower is; beyond the cap it says "more".
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from eventstore.store import Checkpoint

# the most events after a checkpoint that a lag or freshness question counts (see module doc)
LAG_CAP = 10_000


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


@dataclass(frozen=True, slots=True)
class Pending:
    """The committed events after a checkpoint, counted up to a cap."""

    events: int  # how many (at most the cap)
    capped: bool  # there are more than the cap: `events` is a lower bound
    seconds: float  # since the oldest of those counted was recorded (0 when none)
    tenant_first: int | None  # the lowest position among them of the tenant asked about
    bound: int  # the highest position handed out so far (0 on an empty log)


# The highest position handed out: it bounds every position committed so far (aborted and
# still-open transactions hold some below it too). One read of the sequence, not of the log.
_BOUND = "coalesce(pg_sequence_last_value(pg_get_serial_sequence('events', 'global_position')::regclass), 0)"

# The first $3 events in the follower's (transaction id, position) order after the checkpoint:
# an index range scan that stops after $3 rows.
PENDING_SQL = f"""SELECT count(*) AS n,
       coalesce(extract(epoch FROM now() - min(s.recorded_at)), 0)::float8 AS seconds,
       min(s.global_position) FILTER (WHERE s.tenant_id = $4) AS tenant_first,
       {_BOUND} AS bound
FROM (SELECT tenant_id, global_position, recorded_at FROM events
      WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
      ORDER BY events.transaction_id, events.global_position LIMIT $3) s"""


async def pending_after(
    conn: asyncpg.Connection, after: Checkpoint, *, tenant_id: uuid.UUID | None = None, cap: int = LAG_CAP
) -> Pending:
    """What a follower at checkpoint `after` has still to apply: counted up to `cap`, the age of
    the oldest, the first position of `tenant_id` among them, and the log's position bound."""
    record = await conn.fetchrow(PENDING_SQL, str(after[0]), after[1], cap + 1, tenant_id)
    assert record is not None
    n = int(record["n"])
    return Pending(
        events=min(n, cap), capped=n > cap, seconds=max(0.0, float(record["seconds"])),
        tenant_first=record["tenant_first"], bound=int(record["bound"]),
    )


async def position_bound(conn: asyncpg.Connection) -> int:
    """The highest global position handed out so far (0 on an empty log): every committed event
    lies at or below it. Constant cost, unlike `head_position`."""
    return int(await conn.fetchval(f"SELECT {_BOUND}"))


async def lag_after(conn: asyncpg.Connection, after: Checkpoint, *, cap: int = LAG_CAP) -> tuple[int, float]:
    """(events after `after`, counted up to `cap`; seconds since the oldest of them was
    recorded, 0 when none). Bounded: a follower far behind costs `cap` index entries, not the
    rest of the log."""
    pending = await pending_after(conn, after, cap=cap)
    return pending.events, pending.seconds


@dataclass(frozen=True, slots=True)
class EventKey:
    """Where an event is, without its payload: what a follower needs to step over an event the
    codec cannot decode (a number out of range in an old event's JSON, say)."""

    tenant_id: uuid.UUID
    transaction_id: int
    global_position: int
    stream_id: uuid.UUID
    type: str

    @property
    def checkpoint(self) -> Checkpoint:
        return (self.transaction_id, self.global_position)


async def next_key(conn: asyncpg.Connection, after: Checkpoint) -> EventKey | None:
    """The key of the event `read_all(after=after, limit=1)` would return (same order, same
    visibility rule), read without decoding its payload."""
    record = await conn.fetchrow(
        """SELECT tenant_id, transaction_id::text::bigint AS transaction_id, global_position,
                  stream_id, left(type, 200) AS type
           FROM events
           WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
             AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
           ORDER BY events.transaction_id, events.global_position LIMIT 1""",
        str(after[0]), after[1],
    )
    return None if record is None else EventKey(**dict(record.items()))


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


async def head_checkpoint(conn: asyncpg.Connection) -> Checkpoint:
    """The checkpoint of the last committed event a gap-free reader can see now (the
    beginning on an empty log): a reader that starts after it gets every event committed
    later, and none committed before. One backward step along the follower index."""
    record = await conn.fetchrow(
        """SELECT transaction_id::text::bigint AS tx, global_position FROM events
           WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
           ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1"""
    )
    return (0, 0) if record is None else (int(record["tx"]), int(record["global_position"]))
