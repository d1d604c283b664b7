"""Tenant isolation (docs/tenancy.md; RFC 7644 section 7.5.2 on not revealing information): with
its own token, tenant B can neither see nor change tenant A's users and groups through any
endpoint. Every refusal is what B would get for an id that exists nowhere (404, never 403, and
the same body), so existence does not leak; A's data and log are unchanged afterwards.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant, make_tenant
from tests.support import CORE_GROUP, CORE_USER, SEARCH_REQUEST, patch

USER_NAME = "shared.name@example.com"


class World:
    def __init__(self, client: TestClient, pool: asyncpg.Pool, a: Tenant, b: Tenant) -> None:
        self.client, self.pool, self.a, self.b = client, pool, a, b
        self.user_id = self.group_id = ""

    async def call(self, tenant: Tenant, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        resp = await self.client.request(method, path, headers=tenant.headers, json=body)
        text = await resp.text()
        return resp.status, (await resp.json(content_type=None)) if text else None

    async def snapshot(self) -> tuple[Any, ...]:
        """Everything of A's: its user and group as A reads them, and its stream of events."""
        _, user = await self.call(self.a, "GET", f"/scim/v2/Users/{self.user_id}")
        _, group = await self.call(self.a, "GET", f"/scim/v2/Groups/{self.group_id}")
        async with self.pool.acquire() as conn:
            events = await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", self.a.id)
        return user, group, events


@pytest.fixture
async def world(client: TestClient, pool: asyncpg.Pool) -> World:
    w = World(client, pool, await make_tenant(pool, "tenant-a"), await make_tenant(pool, "tenant-b"))
    status, user = await w.call(w.a, "POST", "/scim/v2/Users", {
        "schemas": [CORE_USER], "userName": USER_NAME, "externalId": "ext-1",
        "emails": [{"value": USER_NAME, "type": "work", "primary": True}]})
    assert status == 201
    status, group = await w.call(w.a, "POST", "/scim/v2/Groups", {
        "schemas": [CORE_GROUP], "displayName": "Engineering", "members": [{"value": user["id"]}]})
    assert status == 201
    w.user_id, w.group_id = user["id"], group["id"]
    return w


def _patch(path: str, value: Any, op: str = "replace") -> dict[str, Any]:
    return patch({"op": op, "path": path, "value": value})


def _requests(kind: str, resource_id: str) -> list[tuple[str, str, Any]]:
    if kind == "Users":
        put = {"schemas": [CORE_USER], "userName": "taken@example.com", "active": False}
        patch = _patch("active", False)
    else:
        put = {"schemas": [CORE_GROUP], "displayName": "Stolen", "members": []}
        patch = _patch("members", None, op="remove")
    path = f"/scim/v2/{kind}/{resource_id}"
    return [("GET", path, None), ("PUT", path, put), ("PATCH", path, patch), ("DELETE", path, None)]


def _same_refusal(mine: Any, nowhere: Any, real_id: str, fake_id: str) -> bool:
    return str(mine).replace(real_id, "ID") == str(nowhere).replace(fake_id, "ID")


@pytest.mark.parametrize("kind", ["Users", "Groups"])
async def test_b_cannot_read_or_change_a_resource_by_id(world: World, kind: str) -> None:
    """GET, PUT, PATCH and DELETE on A's id with B's token: 404 like an unknown id."""
    real_id = world.user_id if kind == "Users" else world.group_id
    fake_id = str(uuid.uuid4())
    before = await world.snapshot()
    for (method, path, body), (_, fake_path, _) in zip(
        _requests(kind, real_id), _requests(kind, fake_id), strict=True
    ):
        status, answer = await world.call(world.b, method, path, body)
        fake_status, fake_answer = await world.call(world.b, method, fake_path, body)
        assert status == 404, (method, path, status, answer)
        assert fake_status == 404 and _same_refusal(answer, fake_answer, real_id, fake_id), (answer, fake_answer)
    assert await world.snapshot() == before


@pytest.mark.parametrize("query", [
    "", f'?filter=userName eq "{USER_NAME}"', '?filter=externalId eq "ext-1"', "?filter=id eq \"{uid}\"",
    f'?filter=emails[value eq "{USER_NAME}"]', '?filter=groups.value eq "{gid}"', "?filter=userName pr",
])
async def test_b_lists_and_filters_see_nothing_of_a(world: World, query: str) -> None:
    query = query.replace("{uid}", world.user_id).replace("{gid}", world.group_id)
    status, page = await world.call(world.b, "GET", f"/scim/v2/Users{query}")
    assert status == 200 and page["totalResults"] == 0 and page["Resources"] == [], query


async def test_b_group_lists_and_searches_see_nothing_of_a(world: World) -> None:
    for path, body in (
        ("/scim/v2/Groups", None),
        (f'/scim/v2/Groups?filter=members.value eq "{world.user_id}"', None),
        ('/scim/v2/Groups?filter=displayName eq "Engineering"', None),
    ):
        status, page = await world.call(world.b, "GET", path, body)
        assert status == 200 and page["totalResults"] == 0, path
    for kind, flt in (("Users", f'userName eq "{USER_NAME}"'), ("Groups", 'displayName eq "Engineering"'),
                      ("Users", f'id eq "{world.user_id}"')):
        status, page = await world.call(world.b, "POST", f"/scim/v2/{kind}/.search",
                                        {"schemas": [SEARCH_REQUEST], "filter": flt})
        assert status == 200 and page["totalResults"] == 0, (kind, flt)


async def test_b_cannot_make_a_user_of_a_member_of_its_group(world: World) -> None:
    """A's user id in B's group (POST, PUT, PATCH add) is treated exactly as an unknown id is:
    skipped and recorded (docs/decisions.md), never a member, and A sees nothing of it."""
    before = await world.snapshot()
    fake_id = str(uuid.uuid4())
    status, b_group = await world.call(world.b, "POST", "/scim/v2/Groups", {"schemas": [CORE_GROUP], "displayName": "B"})
    assert status == 201
    b_path = f"/scim/v2/Groups/{b_group['id']}"

    def attempts(member: str) -> list[tuple[str, str, Any]]:
        return [
            ("POST", "/scim/v2/Groups", {"schemas": [CORE_GROUP], "displayName": "B2", "members": [{"value": member}]}),
            ("PUT", b_path, {"schemas": [CORE_GROUP], "displayName": "B", "members": [{"value": member}]}),
            ("PATCH", b_path, _patch("members", [{"value": member}], op="add")),
        ]

    for (method, path, body), (_, _, fake_body) in zip(attempts(world.user_id), attempts(fake_id), strict=True):
        status, answer = await world.call(world.b, method, path, body)
        fake_status, fake_answer = await world.call(world.b, method, path, fake_body)
        assert status in (200, 201, 204) and status == fake_status, (method, status, answer)
        for given in (answer, fake_answer):  # PATCH answers 204 without a body
            assert given is None or not given.get("members"), given
    _, members = await world.call(world.b, "GET", b_path)
    assert not members.get("members")
    async with world.pool.acquire() as conn:
        skipped = await conn.fetch(
            "SELECT data->'skipped' AS s FROM events WHERE tenant_id = $1 AND data ? 'skipped' ORDER BY global_position",
            world.b.id)
    assert [row["s"] for row in skipped] == [[world.user_id], [fake_id]] * 3
    assert await world.snapshot() == before


async def test_the_same_user_name_may_exist_in_two_tenants(world: World) -> None:
    status, b_user = await world.call(world.b, "POST", "/scim/v2/Users", {"schemas": [CORE_USER], "userName": USER_NAME})
    assert status == 201 and b_user["id"] != world.user_id
    _, a_page = await world.call(world.a, "GET", f'/scim/v2/Users?filter=userName eq "{USER_NAME}"')
    _, b_page = await world.call(world.b, "GET", f'/scim/v2/Users?filter=userName eq "{USER_NAME}"')
    assert [r["id"] for r in a_page["Resources"]] == [world.user_id]
    assert [r["id"] for r in b_page["Resources"]] == [b_user["id"]]
    # B deleting its user leaves A's alone
    assert (await world.call(world.b, "DELETE", f"/scim/v2/Users/{b_user['id']}"))[0] == 204
    status, a_user = await world.call(world.a, "GET", f"/scim/v2/Users/{world.user_id}")
    assert status == 200 and a_user["userName"] == USER_NAME
