"""Shadow tables and their DDL: an empty copy of a live table, the live table's indexes and
constraints rebuilt on it after the bulk load, and the swap into place.

An index is copied from its `pg_get_indexdef` text, renamed (the shadow's names carry `SHADOW`
until the swap renames them back); a PRIMARY KEY or UNIQUE constraint is attached to its index
with ADD CONSTRAINT ... USING INDEX.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg

from projections.rebuild.common import RebuildError

SHADOW = "__shadow"  # suffix of an inline view's shadow table and of its indexes

_INDEX_DEF = re.compile(r"^CREATE (UNIQUE )?INDEX (\S+) ON (?:ONLY )?(\S+) (USING .*)$")


@dataclass(frozen=True, slots=True)
class IndexDef:
    """A live index: its name, pg_get_indexdef, and the constraint it backs (if any)."""

    name: str
    definition: str
    constraint: str | None = None  # "PRIMARY KEY" or "UNIQUE"


def index_sql(index: IndexDef, table: str, name: str) -> list[str]:
    """The statements that give `table` the same index as `index`, called `name` (and the
    constraint it backs, attached to it: ADD CONSTRAINT ... USING INDEX)."""
    m = _INDEX_DEF.match(index.definition)
    if m is None:
        raise RebuildError(f"cannot read index definition: {index.definition}")
    unique, _, _, rest = m.groups()
    statements = [f"CREATE {unique or ''}INDEX {name} ON {table} {rest}"]
    if index.constraint:
        statements.append(f"ALTER TABLE {table} ADD CONSTRAINT {name} {index.constraint} USING INDEX {name}")
    return statements


def shadow_name(name: str) -> str:
    shadowed = name + SHADOW
    if len(shadowed) > 63:
        raise RebuildError(f"index name {name!r} too long to shadow")
    return shadowed


@dataclass
class ShadowTable:
    live: str
    columns: tuple[str, ...]
    indexes: list[IndexDef] = field(default_factory=list)

    @property
    def shadow(self) -> str:
        return self.live + SHADOW


async def table_columns(conn: asyncpg.Connection, table: str) -> tuple[str, ...]:
    rows = await conn.fetch(
        """SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0
           AND NOT attisdropped ORDER BY attnum""",
        table,
    )
    return tuple(r["attname"] for r in rows)


async def _check_swappable(conn: asyncpg.Connection, table: str) -> None:
    """Refuse tables a drop-and-rename would break: referenced by foreign keys, used by views,
    or carrying triggers (none of the views has any; this keeps it that way loudly)."""
    blockers = await conn.fetch(
        """SELECT 'foreign key ' || conname AS what FROM pg_constraint
           WHERE confrelid = $1::regclass AND contype = 'f'
           UNION ALL
           SELECT DISTINCT 'view ' || v.oid::regclass::text FROM pg_depend d
           JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
           WHERE d.refobjid = $1::regclass AND v.oid <> $1::regclass
           UNION ALL
           SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal""",
        table,
    )
    if blockers:
        raise RebuildError(f"{table} cannot be swapped: " + ", ".join(r["what"] for r in blockers))


async def prepare_shadow(conn: asyncpg.Connection, table: str, *, schema: str | None = None) -> ShadowTable:
    """Create an empty shadow of `table` (columns, defaults, NOT NULL and CHECKs, no indexes)
    and remember the live table's index definitions for after the bulk load."""
    await _check_swappable(conn, table)
    shadow = ShadowTable(table, await table_columns(conn, table))
    for r in await conn.fetch(
        """SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def, k.contype::text AS contype
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid
           WHERE i.indrelid = $1::regclass ORDER BY i.indisprimary DESC, c.relname""",
        table,
    ):
        if r["contype"] not in (None, "p", "u"):
            raise RebuildError(f"{table}: cannot shadow the constraint behind index {r['name']}")
        kind = {"p": "PRIMARY KEY", "u": "UNIQUE"}.get(r["contype"])
        shadow.indexes.append(IndexDef(r["name"], r["def"], kind))
    target = f"{schema}.{table}" if schema else shadow.shadow
    await conn.execute(f"DROP TABLE IF EXISTS {target}")
    await conn.execute(
        f"""CREATE TABLE {target} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS
            INCLUDING GENERATED INCLUDING STORAGE)"""
    )
    return shadow


async def drop_shadows(conn: asyncpg.Connection, shadows: Iterable[ShadowTable]) -> None:
    for s in shadows:
        await conn.execute(f"DROP TABLE IF EXISTS {s.shadow}")


async def swap_table(conn: asyncpg.Connection, shadow: ShadowTable) -> None:
    """The shadow in place of the live table, its indexes under the live names."""
    await conn.execute(f"DROP TABLE {shadow.live}")
    await conn.execute(f"ALTER TABLE {shadow.shadow} RENAME TO {shadow.live}")
    for index in shadow.indexes:
        await conn.execute(f"ALTER INDEX {shadow_name(index.name)} RENAME TO {index.name}")
