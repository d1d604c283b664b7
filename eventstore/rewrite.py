"""Rewriting the log into a new form, for a maintenance step that cannot be an append (sealing
payloads written in clear: docs/privacy.md, `scimledger log seal`).

The log refuses UPDATE and DELETE, so a rewrite never edits it: it copies every row, in
position order, through the caller's transform into a new table with the same columns, checks
the copy, and swaps it in, dropping the old table, all in the caller's transaction under an
ACCESS EXCLUSIVE lock (nothing reads or writes the log meanwhile; followers' rows keep pointing
at the same (tenant, position), which the copy keeps, as it keeps each row's transaction id and
time). Indexes, constraints and triggers are recreated from the catalog under their own names,
so the rest of the code (the version constraint's name, the append-only triggers) sees the same
table. The caller re-seals the chain afterwards: its hashes cover the stored bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

SHADOW = "events_rewrite"
BATCH = 2000


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the log as a transform sees it."""

    tenant_id: uuid.UUID
    global_position: int
    stream_type: str
    stream_id: uuid.UUID
    version: int
    type: str
    data: dict[str, Any]


Transform = Callable[[Row], dict[str, Any]]  # the row's new payload


@dataclass(frozen=True, slots=True)
class Rewritten:
    rows: int
    changed: int


_COPY = f"""INSERT INTO {SHADOW} (tenant_id, global_position, transaction_id, stream_type, stream_id,
    version, type, data, metadata, recorded_at)
SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[]::xid8[], $4::text[], $5::uuid[], $6::int[],
    $7::text[], $8::jsonb[], $9::jsonb[], $10::timestamptz[])"""


async def rewrite(conn: asyncpg.Connection, transform: Transform, *, batch: int = BATCH) -> Rewritten:
    """Copy the log through `transform` and swap the copy in (module doc). Call inside a
    transaction; nothing is visible to others before it commits."""
    await conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    await conn.execute(f"CREATE TABLE {SHADOW} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    rows = changed = 0
    after = 0
    while True:
        records = await conn.fetch(
            """SELECT tenant_id, global_position, transaction_id::text AS tx, stream_type, stream_id, version,
                      type, data, metadata, recorded_at
               FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2""",
            after, batch,
        )
        if not records:
            break
        out: list[list[Any]] = [[] for _ in range(10)]
        for r in records:
            data = transform(Row(r["tenant_id"], r["global_position"], r["stream_type"], r["stream_id"],
                                 r["version"], r["type"], r["data"]))
            changed += data != r["data"]
            values: tuple[Any, ...] = (r["tenant_id"], r["global_position"], r["tx"], r["stream_type"],
                                       r["stream_id"], r["version"], r["type"], data, r["metadata"],
                                       r["recorded_at"])
            for column, value in zip(out, values, strict=True):
                column.append(value)
        await conn.execute(_COPY, *out)
        rows += len(records)
        after = records[-1]["global_position"]
    copied = await conn.fetchval(f"SELECT count(*) FROM {SHADOW}")
    total = await conn.fetchval("SELECT count(*) FROM events")
    if copied != total or copied != rows:
        raise RuntimeError(f"the copy holds {copied} rows, the log {total}: nothing swapped")
    await _swap(conn)
    return Rewritten(rows, changed)


async def _swap(conn: asyncpg.Connection) -> None:
    constraints = await conn.fetch(
        """SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
           WHERE conrelid = 'events'::regclass AND contype IN ('p', 'u') ORDER BY contype, conname"""
    )
    backing = {r["conname"] for r in constraints}
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'events'"
    )
    triggers = await conn.fetch(
        """SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger
           WHERE tgrelid = 'events'::regclass AND NOT tgisinternal ORDER BY tgname"""
    )
    head = await conn.fetchval(f"SELECT coalesce(max(global_position), 0) FROM {SHADOW}")
    await conn.execute("DROP TABLE events")
    await conn.execute(f"ALTER TABLE {SHADOW} RENAME TO events")
    await conn.execute("ALTER TABLE events ALTER COLUMN global_position ADD GENERATED ALWAYS AS IDENTITY")
    await conn.execute("SELECT setval(pg_get_serial_sequence('events', 'global_position'), $1, $2)",
                       max(int(head), 1), int(head) > 0)
    for r in constraints:
        await conn.execute(f'ALTER TABLE events ADD CONSTRAINT "{r["conname"]}" {r["def"]}')
    for r in indexes:
        if r["indexname"] not in backing:
            await conn.execute(r["indexdef"])
    for r in triggers:
        await conn.execute(r["def"])

