"""The app's own admin surface: `scimledger user ...` appends the same events as SCIM, with the
CLI and the operating-system user as the actor, and an IdP import (GET /Users) finds the users."""

from __future__ import annotations

import asyncio
import getpass
import uuid

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.support import cli, env_for


async def test_user_created_in_the_app_is_imported_and_deactivated_with_the_cli_as_actor(
    client: TestClient, tenant: Tenant, dsn: str, pool: asyncpg.Pool
) -> None:
    env = env_for(dsn)
    created = await asyncio.to_thread(
        cli, "user", "create", "--tenant", tenant.name, "lin@example.com",
        "--given", "Lin", "--family", "Ma", "--email", "lin@example.com", env=env)
    uid = str(uuid.UUID(created.stdout.strip()))

    r = await client.get("/scim/v2/Users?startIndex=1&count=100", headers=tenant.headers)
    users = (await r.json(content_type=None))["Resources"]
    assert [(u["id"], u["userName"], u["name"]["givenName"], u["active"]) for u in users] == [
        (uid, "lin@example.com", "Lin", True)]

    await asyncio.to_thread(cli, "user", "deactivate", "--tenant", tenant.name, "LIN@example.com", env=env)
    r = await client.get(f"/scim/v2/Users/{uid}", headers=tenant.headers)
    assert (await r.json(content_type=None))["active"] is False
    listing = await asyncio.to_thread(cli, "user", "list", "--tenant", tenant.name, env=env)
    assert f"{uid}  no      lin@example.com" in listing.stdout

    await asyncio.to_thread(cli, "user", "reactivate", "--tenant", tenant.name, uid, env=env)
    r = await client.get(f"/scim/v2/Users/{uid}", headers=tenant.headers)
    assert (await r.json(content_type=None))["active"] is True

    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type, metadata FROM events WHERE tenant_id = $1 ORDER BY global_position", tenant.id)
    assert [r["type"] for r in rows] == ["user.created", "user.deactivated", "user.reactivated"]
    for r in rows:
        actor = r["metadata"]["actor"]
        assert actor["kind"] == "cli" and actor["label"] == "cli"
        assert actor["osUser"] == getpass.getuser()
    assert rows[1]["metadata"]["actor"]["client"] == "scimledger user deactivate"


async def test_user_create_duplicate_and_unknown_user_fail_cleanly(tenant: Tenant, dsn: str) -> None:
    env = env_for(dsn)
    await asyncio.to_thread(cli, "user", "create", "--tenant", tenant.name, "dup@example.com", env=env)
    again = await asyncio.to_thread(cli, "user", "create", "--tenant", tenant.name, "DUP@example.com", env=env, check=False)
    assert again.returncode == 1 and again.stdout == "" and "already taken" in again.stderr
    missing = await asyncio.to_thread(cli, "user", "deactivate", "--tenant", tenant.name, "nobody", env=env, check=False)
    assert missing.returncode == 1 and "no user" in missing.stderr
    for command in (("user", "list"), ("user", "create", "x@example.com")):
        nowhere = await asyncio.to_thread(cli, *command[:2], "--tenant", "nope", *command[2:], env=env, check=False)
        assert nowhere.returncode == 1 and nowhere.stdout == ""
        assert "no tenant 'nope'" in nowhere.stderr and "Traceback" not in nowhere.stderr
