"""The audit CLI answers without `serve`: it runs the follower catch-up itself, under the same
lock a runner would take (docs/audit.md, CLI "Catch-up"; issue 6 "CLI, same answers")."""

from __future__ import annotations

import asyncio
import json

import asyncpg

from projections.followers import runner as follower
from tests.support import cli, env_for


async def test_cli_catches_the_followers_up_itself_when_serve_is_not_running(dsn: str, pool: asyncpg.Pool) -> None:
    env = env_for(dsn)
    await asyncio.to_thread(cli, "tenant", "create", "acme", env=env)
    await asyncio.to_thread(cli, "user", "create", "--tenant", "acme", "dora@example.com", env=env)
    await asyncio.to_thread(cli, "user", "deactivate", "--tenant", "acme", "dora@example.com", env=env)
    async with pool.acquire() as conn:
        assert (await follower.lag(conn, "audit")).events == 2  # nobody has followed the log yet

    result = await asyncio.to_thread(
        cli, "audit", "events", "--tenant", "acme", "--type", "user.deactivated", "--format", "jsonl", env=env
    )
    [event] = [json.loads(line) for line in result.stdout.splitlines()]
    assert event["target"]["userName"] == "dora@example.com" and event["actor"]["kind"] == "cli"
    verified = await asyncio.to_thread(cli, "audit", "verify", "--tenant", "acme", "--format", "json", env=env)
    report = json.loads(verified.stdout)
    assert report["ok"] is True and report["sealed"] == 2 and report["unsealed"] == 0
    async with pool.acquire() as conn:
        assert (await follower.lag(conn, "audit")).events == 0
        assert (await follower.lag(conn, "seal")).events == 0


async def test_cli_reports_a_failed_projection_instead_of_hiding_it(dsn: str, pool: asyncpg.Pool) -> None:
    env = env_for(dsn)
    await asyncio.to_thread(cli, "tenant", "create", "acme", env=env)
    async with pool.acquire() as conn:
        tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE name = 'acme'")
        bad = await conn.fetchval(
            """INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
               VALUES ($1, 'user', gen_random_uuid(), 1, 'user.created', '{"type": "user.created"}', '{}')
               RETURNING global_position""",
            tenant_id,
        )
    result = await asyncio.to_thread(cli, "audit", "events", "--tenant", "acme", env=env)
    assert f"the audit projection is failed at position {bad}" in result.stderr
    assert "resource" in result.stderr  # the error names what is missing
