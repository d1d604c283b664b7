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


async def test_cli_reports_dead_letters_and_a_failed_projection_instead_of_hiding_them(
    dsn: str, pool: asyncpg.Pool
) -> None:
    """The CLI answers from the same view as the API: an event the audit could not apply is
    named on stderr (and by `projections dead-letters`), and so is a follower that has failed."""
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
    assert "the audit projection has 1 dead-lettered event(s)" in result.stderr
    listed = await asyncio.to_thread(cli, "projections", "dead-letters", "audit", env=env)
    [line] = [ln for ln in listed.stdout.splitlines()[1:] if ln.strip()]
    assert line.split()[:3] == [str(bad), str(tenant_id), "user.created"]
    assert "resource" in line  # the error names what is missing
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE projection_checkpoints SET state = 'failed', error = 'boom', failed_position = $1 WHERE name = 'audit'",
            bad,
        )
    result = await asyncio.to_thread(cli, "audit", "events", "--tenant", "acme", env=env)
    assert f"the audit projection is failed at position {bad}: boom" in result.stderr
