"""Ordered SQL migrations, recorded in a table, safe when several workers start at once.

Each package that owns tables keeps a `migrations/` folder of `NNNN_name.sql` files; the numbers
are global, so the folders merge into one order. A transaction-level advisory lock serialises
concurrent migrators: the second one waits, then finds everything applied.
"""

from __future__ import annotations

from importlib import resources

import asyncpg

MIGRATION_LOCK = 0x5C1_4ED6E  # advisory lock key: "scimledger migrations"

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migration_files(packages: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, sql) for every migration of the given packages, in global order."""
    found: dict[str, str] = {}
    for package in packages:
        folder = resources.files(package) / "migrations"
        for entry in folder.iterdir():
            if entry.name.endswith(".sql"):
                if entry.name in found:
                    raise RuntimeError(f"duplicate migration name {entry.name}")
                found[entry.name] = entry.read_text(encoding="utf-8")
    return sorted(found.items())


async def applied(conn: asyncpg.Connection) -> set[str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    rows = await conn.fetch("SELECT name FROM schema_migrations")
    return {r["name"] for r in rows}


async def migrate(conn: asyncpg.Connection, packages: tuple[str, ...]) -> list[str]:
    """Apply every pending migration; returns the names applied by this call."""
    files = migration_files(packages)
    done: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(_CREATE_TABLE)
        already = await applied(conn)
        for name, sql in files:
            if name in already:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            done.append(name)
    return done


async def pending(conn: asyncpg.Connection, packages: tuple[str, ...]) -> list[str]:
    already = await applied(conn)
    return [name for name, _ in migration_files(packages) if name not in already]


