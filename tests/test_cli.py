"""The CLI names other tools rely on: ids and secrets alone on stdout, the rest on stderr."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from service.app import tenancy
from tests.support import cli, env_for


async def test_tenant_create_and_token_issue_print_only_the_value(dsn: str) -> None:
    env = env_for(dsn)
    created = await asyncio.to_thread(cli, "tenant", "create", "acme", env=env)
    tenant_id = uuid.UUID(created.stdout.strip())  # the id alone
    issued = await asyncio.to_thread(
        cli, "token", "issue", "--tenant", "acme", "--label", "okta", "--scope", "scim", env=env
    )
    secret = issued.stdout.strip()
    assert "\n" not in secret and secret.startswith(tenancy.SECRET_PREFIX)
    assert "shown once" in issued.stderr
    conn = await asyncpg.connect(dsn)
    try:
        from eventstore.codecs import init_connection

        await init_connection(conn)
        principal = await tenancy.authenticate(conn, secret)
    finally:
        await conn.close()
    assert principal is not None
    assert (principal.tenant_id, principal.label, principal.scope) == (tenant_id, "okta", "scim")


async def test_duplicate_tenant_and_unknown_tenant_fail_cleanly(dsn: str) -> None:
    env = env_for(dsn)
    await asyncio.to_thread(cli, "tenant", "create", "acme", env=env)
    again = await asyncio.to_thread(cli, "tenant", "create", "acme", env=env, check=False)
    assert again.returncode == 1 and again.stdout == "" and "already exists" in again.stderr
    missing = await asyncio.to_thread(
        cli, "token", "issue", "--tenant", "nope", "--label", "x", env=env, check=False
    )
    assert missing.returncode == 1 and missing.stdout == "" and "no tenant" in missing.stderr


async def test_db_dsn_prints_the_dsn_in_use(dsn: str) -> None:
    result = await asyncio.to_thread(cli, "db", "dsn", env=env_for(dsn))
    assert result.stdout.strip() == dsn


async def test_migrate_on_a_migrated_database_says_nothing_to_apply(dsn: str) -> None:
    result = await asyncio.to_thread(cli, "migrate", env=env_for(dsn))
    assert result.stdout == ""
    assert any(line.startswith("nothing to apply") for line in result.stderr.splitlines()), result.stderr
