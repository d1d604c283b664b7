"""One page of a view: the shared query behind /Users and /Groups lists."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


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

    A continued walk (`after_ordinal`, see service/paging.py) reads an index range instead of
    skipping `offset` rows. The total is counted only when the page cannot tell it: a first page
    shorter than `limit` holds every match (the common IdP lookup, `userName eq`, costs one
    statement), and a continued walk passes the total counted at its start (`known_total`).
    """
    n = len(params)
    records: list[asyncpg.Record] = []
    if limit > 0:
        continued = f"AND {alias}.ordinal > ${n + 4}" if after_ordinal is not None else ""
        tail = [0, limit, after_ordinal] if after_ordinal is not None else [offset, limit]
        selected = ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))
        records = list(await conn.fetch(
            f"""SELECT {selected} FROM {table} {alias}
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
