"""One page of a view: the shared query behind /Users and /Groups lists, and the pieces of table
I/O the users and groups views share (row decoding, `search`, events as the store appends them)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import asyncpg

from eventstore.store import NewEvent
from projections.domain.events import Event, encode_event, event_type

T = TypeVar("T")


def qualified(alias: str, columns: str) -> str:
    """"a, b" as "x.a, x.b"."""
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def row_reader(row_type: Callable[..., T]) -> Callable[[asyncpg.Record], T]:
    """A record of a view's columns as its row type (the columns are the fields)."""

    def read(record: asyncpg.Record) -> T:
        return row_type(**dict(record.items()))

    return read


async def page(
    conn: asyncpg.Connection,
    *,
    table: str,
    alias: str,
    columns: str,
    tenant_id: uuid.UUID,
    where: str,
    params: list[Any],
    order_by: str,
    offset: int,
    limit: int,
    after_ordinal: int | None,
    known_total: int | None = None,
) -> tuple[int, list[asyncpg.Record]]:
    """(total matching, one page of records). `table`, `alias`, `columns`, `where` and `order_by`
    come from code and the schema whitelist; values only ever travel as parameters ($2...).

    A continued walk (`after_ordinal`, see service/app/paging.py) reads an index range instead of
    skipping `offset` rows. The total is counted only when the page cannot tell it: a first page
    shorter than `limit` holds every match (the common IdP lookup, `userName eq`, costs one
    statement), and a continued walk passes the total counted at its start (`known_total`).
    """
    n = len(params)
    records: list[asyncpg.Record] = []
    if limit > 0:
        continued = f"AND {alias}.ordinal > ${n + 4}" if after_ordinal is not None else ""
        tail = [0, limit, after_ordinal] if after_ordinal is not None else [offset, limit]
        records = list(await conn.fetch(
            f"""SELECT {qualified(alias, columns)} FROM {table} {alias}
                WHERE {alias}.tenant_id = $1 AND ({where}) {continued}
                ORDER BY {order_by}, {alias}.ordinal OFFSET ${n + 2} LIMIT ${n + 3}""",
            tenant_id, *params, *tail,
        ))
    if offset == 0 and after_ordinal is None and len(records) < limit:
        return len(records), records
    if known_total is not None:
        return known_total, records
    total = await conn.fetchval(
        f"SELECT count(*) FROM {table} {alias} WHERE {alias}.tenant_id = $1 AND ({where})",
        tenant_id, *params,
    )
    return int(total), records


class ViewSearch(Generic[T]):
    """A view's `search`: (total matching, one page of rows), the rows made by `read`, ordered by
    `order_by` (default: the creation ordinal) and then the ordinal; see `page`."""

    def __init__(self, table: str, alias: str, columns: str, read: Callable[[asyncpg.Record], T]) -> None:
        self.table, self.alias, self.columns, self.read = table, alias, columns, read

    async def __call__(
        self,
        conn: asyncpg.Connection,
        tenant_id: uuid.UUID,
        *,
        where: str = "TRUE",
        params: list[Any] | None = None,
        order_by: str | None = None,
        offset: int = 0,
        limit: int = 100,
        after_ordinal: int | None = None,
        known_total: int | None = None,
    ) -> tuple[int, list[T]]:
        total, records = await page(
            conn, table=self.table, alias=self.alias, columns=self.columns, tenant_id=tenant_id,
            where=where, params=params or [], order_by=order_by or f"{self.alias}.ordinal",
            offset=offset, limit=limit, after_ordinal=after_ordinal, known_total=known_total,
        )
        return total, [self.read(r) for r in records]


def new_events(events: Sequence[Event]) -> list[NewEvent]:
    """Events of the vocabulary as the event store appends them: type tag and payload."""
    return [NewEvent(event_type(e), encode_event(e)) for e in events]
