"""The per-tenant storage bound (issue 12 item 8, service/app/storage.py): a tenant holds at most
`max_users` users and `max_groups` groups; a create beyond is 403 with a SCIM body naming the
limit (RFC 7644 3.12) and appends nothing; the check does not count the tenant's rows on every
create; the CLI sets the bound.
"""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp.test_utils import TestClient

from service.app import tenancy
from tests.conftest import Tenant, make_tenant
from tests.support import CORE_GROUP, ERROR_SCHEMA, cli, env_for, new_user


async def _events(pool: asyncpg.Pool, tenant: Tenant) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", tenant.id))


async def _create(client: TestClient, tenant: Tenant, kind: str, i: int) -> tuple[int, dict[str, object]]:
    body = new_user(f"u{i}@example.com") if kind == "Users" else {"schemas": [CORE_GROUP], "displayName": f"g{i}"}
    resp = await client.post(f"/scim/v2/{kind}", json=body, headers=tenant.headers)
    return resp.status, await resp.json(content_type=None)


async def test_creates_beyond_the_tenant_bound_are_403_and_change_nothing(client: TestClient, pool: asyncpg.Pool) -> None:
    """With max_users 3 and max_groups 2 the fourth user and the third group are refused with a
    detail naming the limit; another tenant is not affected; after a deletion and the recount
    interval there is room again."""
    acme = await make_tenant(pool, "acme")
    other = await make_tenant(pool, "other")
    async with pool.acquire() as conn:
        await tenancy.update_tenant(conn, acme.id, max_users=3, max_groups=2)
    users = [await _create(client, acme, "Users", i) for i in range(3)]
    groups = [await _create(client, acme, "Groups", i) for i in range(2)]
    assert [s for s, _ in users + groups] == [201] * 5
    before = await _events(pool, acme)
    for kind, detail in (("Users", "its limit of 3 users"), ("Groups", "its limit of 2 groups")):
        for attempt in range(3):
            status, body = await _create(client, acme, kind, 10 + attempt)
            assert status == 403 and body["schemas"] == [ERROR_SCHEMA] and detail in body["detail"], body
    assert await _events(pool, acme) == before
    assert (await _create(client, other, "Users", 99))[0] == 201

    resp = await client.delete(f"/scim/v2/Users/{users[0][1]['id']}", headers=acme.headers)
    assert resp.status == 204
    async with pool.acquire() as conn:  # as if the recount interval had passed
        await conn.execute("UPDATE tenant_usage SET users_counted_at = now() - interval '1 hour'")
    assert (await _create(client, acme, "Users", 20))[0] == 201
    assert (await _create(client, acme, "Users", 21))[0] == 403


async def test_a_create_below_the_bound_does_not_count_the_tenants_rows(client: TestClient, pool: asyncpg.Pool) -> None:
    """The check is cheap: below its bound a create only raises the stored upper bound. Proof: a
    bound that (falsely) says 0 lets creates through past the real count, which a count would
    have refused; once the bound reaches the limit the rows are counted and it is corrected."""
    acme = await make_tenant(pool, "acme")
    async with pool.acquire() as conn:
        await tenancy.update_tenant(conn, acme.id, max_users=4)
    assert [(await _create(client, acme, "Users", i))[0] for i in range(4)] == [201] * 4
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT users_bound FROM tenant_usage WHERE tenant_id = $1", acme.id) == 4
        await conn.execute("UPDATE tenant_usage SET users_bound = 0, users_counted_at = NULL WHERE tenant_id = $1", acme.id)
    assert [(await _create(client, acme, "Users", 10 + i))[0] for i in range(4)] == [201] * 4  # not counted
    status, body = await _create(client, acme, "Users", 20)  # the bound reached 4: counted (up to 4)
    assert status == 403 and "its limit of 4 users" in body["detail"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1", acme.id) == 8
        assert await conn.fetchval("SELECT users_bound FROM tenant_usage WHERE tenant_id = $1", acme.id) == 4


async def test_concurrent_creates_do_not_pass_the_bound(client: TestClient, pool: asyncpg.Pool) -> None:
    """Twenty creates at once on a fresh tenant with a bound of 5: the first counts (under the
    row lock, so the others wait and then see its bound), the rest raise the bound atomically or
    are refused by it: exactly 5 land."""
    acme = await make_tenant(pool, "acme")
    async with pool.acquire() as conn:
        await tenancy.update_tenant(conn, acme.id, max_users=5)
    results = await asyncio.gather(*(_create(client, acme, "Users", i) for i in range(20)))
    created = sum(1 for status, _ in results if status == 201)
    assert {status for status, _ in results} <= {201, 403}
    assert created == 5, results


async def test_the_cli_sets_the_bounds(dsn: str, pool: asyncpg.Pool) -> None:
    """`tenant create` takes SCIMLEDGER_MAX_USERS_PER_TENANT / _GROUPS_ (or --max-users and
    --max-groups); `tenant update --max-users/--max-groups` changes them; bad values exit 2."""
    env = {**env_for(dsn), "SCIMLEDGER_MAX_USERS_PER_TENANT": "250", "SCIMLEDGER_MAX_GROUPS_PER_TENANT": "25"}
    await asyncio.to_thread(cli, "tenant", "create", "acme", env=env)
    await asyncio.to_thread(cli, "tenant", "create", "beta", "--max-users", "7", env=env)
    updated = await asyncio.to_thread(cli, "tenant", "update", "acme", "--max-groups", "3", env=env)
    assert "max groups 3" in updated.stderr
    for bad in ("-1", "1e3", "²", "9" * 20):
        result = await asyncio.to_thread(cli, "tenant", "update", "acme", "--max-users", bad, env=env, check=False)
        assert result.returncode == 2 and "storage bound" in result.stderr, bad
    async with pool.acquire() as conn:
        rows = {r["name"]: (r["max_users"], r["max_groups"])
                for r in await conn.fetch("SELECT name, max_users, max_groups FROM tenants")}
    assert rows == {"acme": (250, 3), "beta": (7, 25)}


async def test_tenants_default_to_generous_bounds(pool: asyncpg.Pool) -> None:
    """A tenant created without bounds (or existing before migration 0012) gets 1,000,000 users
    and 100,000 groups, the defaults of Settings."""
    from service.runtime.config import Settings

    acme = await make_tenant(pool, "acme")
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT max_users, max_groups FROM tenants WHERE id = $1", acme.id)
    settings = Settings()
    assert (row["max_users"], row["max_groups"]) == (settings.max_users_per_tenant, settings.max_groups_per_tenant)
    assert (settings.max_users_per_tenant, settings.max_groups_per_tenant) == (1_000_000, 100_000)
