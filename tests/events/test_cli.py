"""`scimledger stream ...` as an operator runs it: the id alone on stdout, header values sealed
at rest and masked in `stream list`, status, replay, delete, key rotation, and `token issue
--scope events`."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg

from service.app import tenancy
from tests.support import cli, env_for

SECRET = "Bearer s3cr3t-receiver-credential"


async def test_stream_commands_from_create_to_delete(dsn: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    env = env_for(dsn, tmp_path / "var")
    async with pool.acquire() as conn:
        await tenancy.create_tenant(conn, "acme")
    created = await asyncio.to_thread(
        cli, "stream", "create", "--tenant", "acme", "--push", "http://127.0.0.1:9/events",
        "--push-header", f"Authorization: {SECRET}", "--events", "prov,caep", "--format", "full", env=env)
    stream_id = uuid.UUID(created.stdout.strip())  # the id, alone
    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT push_headers FROM event_streams WHERE id = $1", stream_id)
    assert SECRET.encode() not in stored and b"s3cr3t" not in stored

    listing = (await asyncio.to_thread(cli, "stream", "list", "--tenant", "acme", env=env)).stdout
    assert str(stream_id) in listing and "Authorization: ****" in listing and "s3cr3t" not in listing
    status = (await asyncio.to_thread(cli, "stream", "status", str(stream_id), env=env)).stdout
    assert "state       enabled" in status and "delivered   0" in status and "prov,caep" in status
    replay = await asyncio.to_thread(cli, "stream", "replay", str(stream_id), "--from", "2020-01-01T00:00:00Z", env=env)
    assert "0 SETs" in replay.stderr

    poll = await asyncio.to_thread(cli, "stream", "create", "--tenant", "acme", "--poll", env=env)
    uuid.UUID(poll.stdout.strip())
    token = await asyncio.to_thread(cli, "token", "issue", "--tenant", "acme", "--label", "app", "--scope", "events", env=env)
    assert token.stdout.strip().startswith(tenancy.SECRET_PREFIX)

    keys = (await asyncio.to_thread(cli, "stream", "keys", env=env)).stdout
    kid = (await asyncio.to_thread(cli, "stream", "rotate-key", "--overlap-hours", "2", env=env)).stdout.strip()
    after = (await asyncio.to_thread(cli, "stream", "keys", env=env)).stdout
    assert kid not in keys and f"{kid}" in after and "published until" in after and "signing" in after
    assert not list((tmp_path / "var").glob("*.pem"))
    assert ((tmp_path / "var" / "set-signing.kek").stat().st_mode & 0o777) == 0o600

    await asyncio.to_thread(cli, "stream", "delete", str(stream_id), env=env)
    gone = await asyncio.to_thread(cli, "stream", "status", str(stream_id), env=env, check=False)
    assert gone.returncode == 1 and "no stream" in gone.stderr


async def test_bad_stream_arguments_are_usage_errors(dsn: str, tmp_path: Path) -> None:
    env = env_for(dsn, tmp_path / "var")
    for args in (
        ["--push", "ftp://x/events"], ["--push", "http://user:pw@x/events"],
        ["--push", "http://x/e", "--push-header", "no colon"], ["--push", "http://x/e", "--push-header", "Host: x"],
        ["--poll", "--events", "prov,nope"], ["--poll", "--push", "http://x/e"], [],
    ):
        result = await asyncio.to_thread(cli, "stream", "create", "--tenant", "acme", *args, env=env, check=False)
        assert result.returncode == 2, (args, result.stderr)
