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
) -> tuple[int, list[asyncpg.Record]]:
    """(total matching, one page of records). `table`, `alias`, `columns`, `where` and `order_by`
    come from code and the schema whitelist; values only ever travel as parameters ($2...).
    A continued walk (`after_ordinal`, see service/paging.py) reads an index range instead of
    skipping `offset` rows."""
    n = len(params)
    total = await conn.fetchval(
        f"SELECT count(*) FROM {table} {alias} WHERE {alias}.tenant_id = $1 AND ({where})",
        tenant_id, *params,
    )
    if limit <= 0 or total == 0:
        return int(total), []
    continued = f"AND {alias}.ordinal > ${n + 4}" if after_ordinal is not None else ""
    tail = [0, limit, after_ordinal] if after_ordinal is not None else [offset, limit]
    selected = ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))
    records = await conn.fetch(
        f"""SELECT {selected} FROM {table} {alias}
            WHERE {alias}.tenant_id = $1 AND ({where}) {continued}
            ORDER BY {order_by}, {alias}.ordinal OFFSET ${n + 2} LIMIT ${n + 3}""",
        tenant_id, *params, *tail,
    )
    return int(total), list(records)
