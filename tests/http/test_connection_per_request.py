"""One pooled connection per request (service/connection.py): with a pool of two connections,
forty concurrent requests (writes, lookups, group PATCHes) all complete, and none leaves a
transaction open on a connection it returns."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from aiohttp import web

from service.http.app import create_app
from service.runtime.config import Settings
from tests.conftest import Tenant
from tests.support import CORE_GROUP, CORE_USER, patch


@pytest.fixture
def app(settings: Settings, dsn: str) -> web.Application:
    return create_app(replace(settings, pool_min=1, pool_max=2), dsn)


async def test_a_tiny_pool_serves_many_concurrent_requests(client, tenant: Tenant) -> None:
    r = await client.post("/scim/v2/Groups", json={"schemas": [CORE_GROUP], "displayName": "G"}, headers=tenant.headers)
    gid = (await r.json(content_type=None))["id"]

    async def one(i: int) -> list[int]:
        r = await client.post("/scim/v2/Users", json={"schemas": [CORE_USER], "userName": f"c{i}@x.example"},
                              headers=tenant.headers)
        uid = (await r.json(content_type=None))["id"]
        s1 = r.status
        r = await client.get(f'/scim/v2/Users?filter=userName eq "c{i}@x.example"', headers=tenant.headers)
        s2 = r.status
        r = await client.patch(f"/scim/v2/Groups/{gid}", json=patch(
            {"op": "add", "path": "members", "value": [{"value": uid}]}), headers=tenant.headers)
        return [s1, s2, r.status]

    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(40))), timeout=60)
    assert results == [[201, 200, 204]] * 40
    r = await client.get(f"/scim/v2/Groups/{gid}", headers=tenant.headers)
    assert len((await r.json(content_type=None))["members"]) == 40
