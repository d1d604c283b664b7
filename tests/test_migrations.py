"""Migrations: ordered, recorded, and safe when several workers start at once."""

from __future__ import annotations

import asyncio

import asyncpg

from eventstore.migrate import migration_files
from service.runtime.database import MIGRATION_PACKAGES, migrate, pending_migrations
from tests.conftest import PostgresServer, with_database


async def test_concurrent_migrators_apply_each_migration_once(postgres: PostgresServer) -> None:
    name = "scimledger_empty_migrate"
    admin = await asyncpg.connect(postgres.admin_dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = with_database(postgres.admin_dsn, name)
        conns = [await asyncpg.connect(dsn) for _ in range(4)]
        results = await asyncio.gather(*(migrate(c) for c in conns))
        expected = [n for n, _ in migration_files(MIGRATION_PACKAGES)]
        applied = [n for r in results for n in r]
        assert sorted(applied) == expected  # each applied exactly once, by one of them
        assert await pending_migrations(conns[0]) == []
        rows = await conns[0].fetch("SELECT name FROM schema_migrations ORDER BY name")
        assert [r["name"] for r in rows] == expected
        for c in conns:
            await c.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
