"""Follower tables that point at events by primary key: their rows joined with the log.

A follower table (the audit trail, the seal chain) keeps an event's (tenant, position) and not
its payload. Reading such rows with their events is done here, by functions that take the
follower's own query (over its own table only) and the names of its (tenant, position) columns
as identifiers, validated, and add the join with `events` by primary key.

Why this and not "the follower reads its rows, then asks the event store for the events at those
positions": the join stays ONE statement. An audit search page is one round trip (two would
double the latency of a hot HTTP read), seal verification stays one pass of one cursor over a
join in seal order, and "an event of the log that no seal row names" is an anti-join, which
split in two would need every sealed position of a tenant held in memory. The follower's SQL
names only its table; the only SQL on `events` stays in this package. Values always travel as
parameters; the follower's query and the identifiers come from code.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterable, Sequence
from typing import Any, NamedTuple

import asyncpg

from eventstore.store import Checkpoint

EVENT_COLUMNS = frozenset({
    "tenant_id", "global_position", "transaction_id", "stream_type", "stream_id", "version",
    "type", "data", "metadata", "recorded_at",
})
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def identifier(name: str) -> str:
    """`name` if it is a plain lower-case SQL identifier, else ValueError."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


class WithEvents:
    """A query over a follower's table (selecting `tenant_column` and `position_column`), its
    rows each joined with `event_columns` of the event at that (tenant, position), NULL where the
    event is gone, in `order_by` order: one statement. Build it once where the query is fixed.
    Put a LIMIT inside `rows_sql` for a page: the join then runs on the page only, never on the
    tenant's log up to a late cursor."""

    def __init__(
        self, rows_sql: str, event_columns: Sequence[str], *, tenant_column: str = "tenant_id",
        position_column: str = "position", order_by: str = "position",
    ) -> None:
        unknown = [c for c in event_columns if c not in EVENT_COLUMNS]
        if unknown:
            raise ValueError(f"not columns of events: {unknown}")
        selected = ", ".join(f"e.{c}" for c in event_columns)
        tenant, position = identifier(tenant_column), identifier(position_column)
        self.sql = f"""SELECT p.*, {selected} FROM (
{rows_sql}
) p
LEFT JOIN events e ON e.tenant_id = p.{tenant} AND e.global_position = p.{position}
ORDER BY p.{identifier(order_by)}"""

    async def fetch(self, conn: asyncpg.Connection, *params: Any) -> list[asyncpg.Record]:
        return list(await conn.fetch(self.sql, *params))

    def cursor(self, conn: asyncpg.Connection, *params: Any, prefetch: int = 1000) -> AsyncIterable[asyncpg.Record]:
        """Through a server-side cursor: bounded memory; needs an open transaction."""
        cursor: AsyncIterable[asyncpg.Record] = conn.cursor(self.sql, *params, prefetch=prefetch)
        return cursor


async def first_unreferenced(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, upto: Checkpoint, *, table: str, **columns: str
) -> int | None:
    """The lowest position of the tenant's events at or before the checkpoint `upto` that no row
    of `table` names (None: every one is named). `columns`: as for `unreferenced`."""
    return (await unreferenced(conn, tenant_id, upto, table=table, **columns)).behind


class Unreferenced(NamedTuple):
    """The tenant's events that no row of a follower's table names."""

    behind: int | None  # the lowest position among those at or before the checkpoint
    lowest: int | None  # the lowest position among all of them
    after: int  # how many lie after the checkpoint


async def unreferenced(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    upto: Checkpoint,
    *,
    table: str,
    tenant_column: str = "tenant_id",
    position_column: str = "position",
) -> Unreferenced:
    """The tenant's events that no row of `table` names, relative to the checkpoint `upto`
    (see Unreferenced): one pass over the tenant's events."""
    t, tc, pc = identifier(table), identifier(tenant_column), identifier(position_column)
    record = await conn.fetchrow(
        f"""SELECT min(e.global_position) FILTER (
                       WHERE (e.transaction_id, e.global_position) <= ($2::text::xid8, $3)) AS behind,
                   min(e.global_position) AS lowest,
                   count(*) FILTER (WHERE (e.transaction_id, e.global_position) > ($2::text::xid8, $3)) AS after
            FROM events e
            WHERE e.tenant_id = $1
              AND NOT EXISTS (SELECT 1 FROM {t} s WHERE s.{tc} = e.tenant_id AND s.{pc} = e.global_position)""",
        tenant_id, str(upto[0]), upto[1],
    )
    assert record is not None
    return Unreferenced(record["behind"], record["lowest"], int(record["after"]))
