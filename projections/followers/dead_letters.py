"""Dead letters: the events a follower could not apply (table `projection_dead_letters`).

The runner (projections/followers/runner.py) records an event here, in the same transaction as
the checkpoint that steps over it, and goes on with the rest of the log. What a dead letter
means depends on the projection's isolation:

- EVENT (audit): that one event is missing from the view; everything else is applied.
- TENANT (seal): the tenant's chain stops at its first dead letter, because a hash chain cannot
  skip a link; the tenant's later events are not sealed (`audit verify` reports them as
  unsealed, never as a break), and every other tenant's chain goes on.

Either way the tenant's trail is incomplete from that position on, and says so: the auditor's
API (service/app/freshness.py), `projections status`, `/metrics` and the runbook's alert. A
rebuild replays the whole log and records the dead letters anew.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

from eventstore.references import WithEvents
from eventstore.store import Checkpoint

TABLE = "projection_dead_letters"
EVENT, TENANT = "event", "tenant"  # a projection's isolation (see the module doc)
COUNT_CAP = 10_000  # status and metrics count at most this many per projection


@dataclass(frozen=True, slots=True)
class DeadLetter:
    projection: str
    tenant_id: uuid.UUID
    position: int
    error: str
    failed_at: dt.datetime
    type: str | None  # the event's, None if the event is gone
    stream_id: uuid.UUID | None


async def record(
    conn: asyncpg.Connection, projection: str, tenant_id: uuid.UUID, checkpoint: Checkpoint, error: str
) -> None:
    """Record that `projection` could not apply the event at `checkpoint` (in the caller's
    transaction; unqualified, so a rebuild's search_path sends it to its shadow table)."""
    await conn.execute(
        f"""INSERT INTO {TABLE} (projection, tenant_id, position, tx, error)
            VALUES ($1, $2, $3, $4::text::xid8, $5) ON CONFLICT DO NOTHING""",
        projection, tenant_id, checkpoint[1], str(checkpoint[0]), error,
    )


async def blocked_tenants(conn: asyncpg.Connection, projection: str, tenants: set[uuid.UUID]) -> set[uuid.UUID]:
    """The tenants among `tenants` that have a dead letter of `projection`."""
    rows = await conn.fetch(
        f"""SELECT DISTINCT tenant_id FROM {TABLE}
            WHERE projection = $1 AND tenant_id = any($2::uuid[])""",
        projection, list(tenants),
    )
    return {r["tenant_id"] for r in rows}


@dataclass(frozen=True, slots=True)
class TenantDeadLetters:
    count: int  # up to COUNT_CAP
    lowest: int | None  # the lowest position among them
    first: Checkpoint | None  # the first in the follower's (transaction id, position) order


async def of_tenant(conn: asyncpg.Connection, projection: str, tenant_id: uuid.UUID) -> TenantDeadLetters:
    """`projection`'s dead letters of one tenant: how many, the lowest position, the first."""
    record = await conn.fetchrow(
        f"""SELECT (SELECT count(*) FROM (SELECT 1 FROM {TABLE} WHERE projection = $1 AND tenant_id = $2
                                          LIMIT $3) c) AS n,
                   (SELECT min(position) FROM {TABLE} WHERE projection = $1 AND tenant_id = $2) AS lowest,
                   (SELECT ARRAY[tx::text::bigint, position] FROM {TABLE}
                    WHERE projection = $1 AND tenant_id = $2 ORDER BY tx, position LIMIT 1) AS first""",
        projection, tenant_id, COUNT_CAP,
    )
    assert record is not None
    first = record["first"]
    return TenantDeadLetters(
        int(record["n"]), record["lowest"], (int(first[0]), int(first[1])) if first else None
    )


async def counts(conn: asyncpg.Connection, projections: list[str]) -> dict[str, int]:
    """Dead letters per projection, each counted up to COUNT_CAP (bounded per scrape)."""
    out: dict[str, int] = {}
    for name in projections:
        out[name] = int(await conn.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} WHERE projection = $1 LIMIT $2) c", name, COUNT_CAP
        ))
    return out


_LIST = WithEvents(
    f"""SELECT projection, tenant_id, position, tx::text::bigint AS tx, error, failed_at FROM {TABLE}
        WHERE projection = $1 AND ($2::uuid IS NULL OR tenant_id = $2)
        ORDER BY tx, position LIMIT $3""",
    ("type", "stream_id"),
    order_by="position",
)


async def listing(
    conn: asyncpg.Connection, projection: str, *, tenant_id: uuid.UUID | None = None, limit: int = 100
) -> list[DeadLetter]:
    """The first `limit` dead letters of `projection` (of one tenant, if given) in the
    follower's order, shown by position, each with its event's type and stream."""
    return [
        DeadLetter(r["projection"], r["tenant_id"], r["position"], r["error"], r["failed_at"], r["type"], r["stream_id"])
        for r in await _LIST.fetch(conn, projection, tenant_id, limit)
    ]


async def clear(conn: asyncpg.Connection, projection: str, *, schema: str | None = None) -> None:
    """Forget `projection`'s dead letters (a restart replays the log and records them anew)."""
    table = f"{schema}.{TABLE}" if schema else TABLE
    await conn.execute(f"DELETE FROM {table} WHERE projection = $1", projection)
