"""`scimledger tenant ...` and `token ...` (docs/tenancy.md): values for scripts alone on stdout,
the rest on stderr; secrets shown once, never listed; rotation keeps the old secret valid for the
grace period (Settings.token_rotation_grace_s) and no longer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import asyncpg
from aiohttp.test_utils import TestClient

from service.app import tenancy
from tests.conftest import make_tenant
from tests.support import bearer, cli, env_for

SPC = "/scim/v2/ServiceProviderConfig"


async def run(*args: str, dsn: str, check: bool = True, **env: str):
    return await asyncio.to_thread(cli, *args, env={**env_for(dsn), **env}, check=check)


async def test_tenant_create_update_and_list(dsn: str, pool: asyncpg.Pool) -> None:
    created = await run("tenant", "create", "acme", "--seats", "10", "--rate-limit", "20", dsn=dsn)
    tenant_id = uuid.UUID(created.stdout.strip())
    await make_tenant(pool, "other")
    updated = await run("tenant", "update", "acme", "--seats", "none", "--rate-limit", "7.5", dsn=dsn)
    assert updated.stdout == "" and "seats unlimited" in updated.stderr and "7.5/s" in updated.stderr
    listing = (await run("tenant", "list", dsn=dsn)).stdout.splitlines()
    assert listing[0].split()[:4] == ["name", "id", "seats", "active"]
    [acme] = [line for line in listing if line.startswith("acme ")]
    assert acme.split() == ["acme", str(tenant_id), "unlimited", "0", "7.5", "enabled"]
    [other] = [line for line in listing if line.startswith("other ")]
    assert "(default)" in other
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT seats, rate_limit FROM tenants WHERE id = $1", tenant_id)
    assert (row["seats"], row["rate_limit"]) == (None, 7.5)


async def test_cli_refuses_bad_limits_and_unknown_tenants(dsn: str) -> None:
    bad = await run("tenant", "create", "x", "--seats", "-1", dsn=dsn, check=False)
    assert bad.returncode == 2 and bad.stdout == "" and "seats must be >= 0" in bad.stderr
    missing = await run("tenant", "update", "nope", "--seats", "3", dsn=dsn, check=False)
    assert missing.returncode == 1 and missing.stdout == "" and "no tenant 'nope'" in missing.stderr


async def test_token_issue_list_rotate_revoke(dsn: str, pool: asyncpg.Pool, client: TestClient) -> None:
    tenant = await make_tenant(pool, "acme", label="okta")
    issued = await run("token", "issue", "--tenant", "acme", "--label", "entra-prod", "--scope", "audit", dsn=dsn)
    audit_secret = issued.stdout.strip()
    assert audit_secret.startswith(tenancy.SECRET_PREFIX) and "\n" not in audit_secret

    rotated = await run("token", "rotate", str(tenant.token_id), dsn=dsn)
    new_secret = rotated.stdout.strip()
    assert new_secret.startswith(tenancy.SECRET_PREFIX) and "\n" not in new_secret
    assert "stays valid for 86400 s" in rotated.stderr
    # both secrets work during the grace period; the new one has the same label and scope
    assert (await client.get(SPC, headers=bearer(tenant.secret))).status == 200
    assert (await client.get(SPC, headers=bearer(new_secret))).status == 200

    listing = (await run("token", "list", "--tenant", "acme", dsn=dsn)).stdout
    for secret in (tenant.secret, new_secret, audit_secret):
        assert secret not in listing and secret.removeprefix(tenancy.SECRET_PREFIX) not in listing
    lines = listing.splitlines()[1:]
    assert len(lines) == 3
    [old] = [line for line in lines if line.startswith(str(tenant.token_id))]
    assert "rotated, grace until" in old and "replaced by" in old
    [new] = [line for line in lines if "replaced by" not in line and " scim " in line]
    assert new.split()[1] == "okta" and new.endswith("active")

    new_id = new.split()[0]
    revoked = await run("token", "revoke", new_id, dsn=dsn)
    assert revoked.stdout == "" and "revoked" in revoked.stderr
    assert (await client.get(SPC, headers=bearer(new_secret))).status == 401
    again = await run("token", "revoke", new_id, dsn=dsn, check=False)
    assert again.returncode == 1 and "already revoked" in again.stderr


async def test_rotated_secret_expires_after_the_grace_period(pool: asyncpg.Pool, client: TestClient) -> None:
    tenant = await make_tenant(pool, "acme")
    async with pool.acquire() as conn:
        new_id, new_secret = await tenancy.rotate_token(conn, tenant.token_id, dt.timedelta(seconds=0.3))
        tokens = {t.id: t for t in await tenancy.list_tokens(conn, tenant.id)}
    assert tokens[tenant.token_id].replaced_by == new_id
    assert (tokens[new_id].label, tokens[new_id].scope) == ("okta", "scim")
    assert (await client.get(SPC, headers=bearer(tenant.secret))).status == 200
    await asyncio.sleep(0.4)
    assert (await client.get(SPC, headers=bearer(tenant.secret))).status == 401
    assert (await client.get(SPC, headers=bearer(new_secret))).status == 200


async def test_a_token_is_rotated_once(pool: asyncpg.Pool) -> None:
    """Rotating the old token again would fork the chain: rotate its successor instead."""
    tenant = await make_tenant(pool, "acme")
    async with pool.acquire() as conn:
        await tenancy.rotate_token(conn, tenant.token_id, dt.timedelta(hours=1))
        for token_id in (tenant.token_id, uuid.uuid4()):
            try:
                await tenancy.rotate_token(conn, token_id, dt.timedelta(hours=1))
            except (tenancy.TokenNotRotatable, tenancy.TokenNotFound):
                continue
            raise AssertionError(f"{token_id} was rotated")
        assert len(await tenancy.list_tokens(conn, tenant.id)) == 2


def test_grace_period_default_is_a_day() -> None:
    """Time for an admin to paste the new secret into Okta or Entra (docs/tenancy.md)."""
    from service.runtime.config import Settings

    assert Settings().token_rotation_grace_s == 24 * 3600
