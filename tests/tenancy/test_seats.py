"""Seat limits (docs/tenancy.md): a tenant's seats count its active users. A create or a
reactivation beyond the limit gets 403 with an RFC 7644 3.12 body that says so and changes
nothing; deactivating frees a seat; concurrent creates never exceed the limit.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant, make_tenant
from tests.support import CORE_USER, ERROR_SCHEMA, cli, env_for, patch


def user(name: str, active: bool = True) -> dict[str, Any]:
    return {"schemas": [CORE_USER], "userName": name, "active": active}


def set_active(active: bool) -> dict[str, Any]:
    return patch({"op": "replace", "path": "active", "value": active})


async def counts(pool: asyncpg.Pool, tenant: Tenant) -> tuple[int, int]:
    """(events, active users) of the tenant."""
    async with pool.acquire() as conn:
        events = await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", tenant.id)
        active = await conn.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1 AND active", tenant.id)
    return int(events), int(active)


async def assert_seat_refusal(resp: Any) -> None:
    assert resp.status == 403
    body = await resp.json(content_type=None)
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "403"
    assert "seat limit" in body["detail"]


async def create(client: TestClient, tenant: Tenant, name: str, active: bool = True) -> Any:
    return await client.post("/scim/v2/Users", headers=tenant.headers, json=user(name, active))


async def test_create_beyond_the_limit_is_refused_and_changes_nothing(client: TestClient, pool: asyncpg.Pool) -> None:
    tenant = await make_tenant(pool, "two-seats", seats=2)
    for name in ("a@x.com", "b@x.com"):
        assert (await create(client, tenant, name)).status == 201
    before = await counts(pool, tenant)
    await assert_seat_refusal(await create(client, tenant, "c@x.com"))
    assert await counts(pool, tenant) == before == (before[0], 2)
    # an inactive user takes no seat, so it can still be created
    assert (await create(client, tenant, "d@x.com", active=False)).status == 201


async def test_deactivating_frees_a_seat(client: TestClient, pool: asyncpg.Pool) -> None:
    tenant = await make_tenant(pool, "one-seat", seats=1)
    first = await (await create(client, tenant, "a@x.com")).json(content_type=None)
    await assert_seat_refusal(await create(client, tenant, "b@x.com"))
    resp = await client.patch(f"/scim/v2/Users/{first['id']}", headers=tenant.headers, json=set_active(False))
    assert resp.status == 200
    assert (await create(client, tenant, "b@x.com")).status == 201


async def test_reactivation_by_patch_beyond_the_limit_is_refused(client: TestClient, pool: asyncpg.Pool) -> None:
    tenant = await make_tenant(pool, "one-seat", seats=1)
    idle = await (await create(client, tenant, "idle@x.com", active=False)).json(content_type=None)
    assert (await create(client, tenant, "busy@x.com")).status == 201
    before = await counts(pool, tenant)
    resp = await client.patch(f"/scim/v2/Users/{idle['id']}", headers=tenant.headers, json=set_active(True))
    await assert_seat_refusal(resp)
    assert await counts(pool, tenant) == before
    # Entra's form: a path-less Replace with the boolean as a string
    resp = await client.patch(f"/scim/v2/Users/{idle['id']}", headers=tenant.headers, json=patch(
        {"op": "Replace", "value": {"active": "True"}}))
    await assert_seat_refusal(resp)
    assert await counts(pool, tenant) == before


async def test_reactivation_by_put_beyond_the_limit_is_refused(client: TestClient, pool: asyncpg.Pool) -> None:
    tenant = await make_tenant(pool, "one-seat", seats=1)
    idle = await (await create(client, tenant, "idle@x.com", active=False)).json(content_type=None)
    assert (await create(client, tenant, "busy@x.com")).status == 201
    before = await counts(pool, tenant)
    resp = await client.put(f"/scim/v2/Users/{idle['id']}", headers=tenant.headers, json=user("idle@x.com", True))
    await assert_seat_refusal(resp)
    assert await counts(pool, tenant) == before
    # an update that keeps the user inactive needs no seat
    resp = await client.put(f"/scim/v2/Users/{idle['id']}", headers=tenant.headers,
                            json={**user("idle@x.com", False), "title": "still idle"})
    assert resp.status == 200


async def test_concurrent_creates_never_exceed_the_limit(client: TestClient, pool: asyncpg.Pool) -> None:
    tenant = await make_tenant(pool, "three-seats", seats=3)
    responses = await asyncio.gather(*(create(client, tenant, f"u{i}@x.com") for i in range(12)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] * 3 + [403] * 9
    assert (await counts(pool, tenant))[1] == 3


async def test_other_tenants_seats_are_their_own(client: TestClient, pool: asyncpg.Pool) -> None:
    full = await make_tenant(pool, "full", seats=0)
    free = await make_tenant(pool, "free")
    await assert_seat_refusal(await create(client, full, "a@x.com"))
    assert (await create(client, free, "a@x.com")).status == 201


async def test_cli_user_create_on_a_full_tenant_fails_clearly(dsn: str, pool: asyncpg.Pool) -> None:
    tenant = await make_tenant(pool, "full", seats=1)
    env = env_for(dsn)
    await asyncio.to_thread(cli, "user", "create", "--tenant", "full", "a@x.com", env=env)
    refused = await asyncio.to_thread(cli, "user", "create", "--tenant", "full", "b@x.com", env=env, check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "seat limit reached" in refused.stderr and "1 seats" in refused.stderr
    assert (await counts(pool, tenant))[1] == 1
    # raising the limit from the CLI lets the next create through
    await asyncio.to_thread(cli, "tenant", "update", "full", "--seats", "none", env=env)
    await asyncio.to_thread(cli, "user", "create", "--tenant", "full", "b@x.com", env=env)
    assert (await counts(pool, tenant))[1] == 2
