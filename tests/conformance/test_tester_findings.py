"""What scim2-tester found wrong with the server, each fixed and pinned by its own test.

- PATCH `remove` of `active` kept the old value; RFC 7644 3.5.2.2 says the attribute is then
  unassigned (this service provider defines an unassigned `active` as active, as on create).
- Group members carried a `display` made up from the user's current name; RFC 7643 4.2 says the
  sub-attributes of members are immutable, and 8.7.1 defines value, $ref and type only.
- A query at the server root answered 404 "no such endpoint"; RFC 7644 3.4.2 makes root queries
  optional, and 3.12 gives 501 for an operation the server does not support.
"""

from __future__ import annotations

import uuid

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.support import CORE_GROUP, CORE_USER, ERROR_SCHEMA, SEARCH_REQUEST, body_of, patch


async def test_patch_remove_active_leaves_it_unassigned_and_the_user_active(
    client: TestClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """RFC 7644 3.5.2.2: a removed single-valued attribute is unassigned; RFC 7643 4.1.1 leaves
    the meaning of `active` to the service provider: unassigned means active, as on create."""
    h = tenant.headers
    r = await client.post("/scim/v2/Users", json={"schemas": [CORE_USER], "userName": "rm-active", "active": False}, headers=h)
    assert r.status == 201, await r.text()
    user_id = (await body_of(r))["id"]

    r = await client.patch(f"/scim/v2/Users/{user_id}", json=patch({"op": "remove", "path": "active"}), headers=h)
    assert r.status == 200, await r.text()
    assert "active" not in await body_of(r)
    r = await client.get(f"/scim/v2/Users/{user_id}", headers=h)
    assert "active" not in await body_of(r)

    r = await client.get('/scim/v2/Users?filter=active eq true and userName eq "rm-active"', headers=h)
    assert (await body_of(r))["totalResults"] == 1
    async with pool.acquire() as conn:
        types = [row["type"] for row in await conn.fetch(
            "SELECT type FROM events WHERE tenant_id = $1 AND stream_id = $2 ORDER BY version",
            tenant.id, uuid.UUID(user_id))]
    assert types == ["user.created", "user.reactivated", "user.updated"]


async def test_group_members_carry_value_ref_and_type_only(client: TestClient, tenant: Tenant) -> None:
    """RFC 7643 4.2 (members' sub-attributes are immutable) and 8.7.1 (value, $ref, type): no
    server-made `display`; a `display` sent by the client is ignored."""
    h = tenant.headers
    r = await client.post("/scim/v2/Users", json={"schemas": [CORE_USER], "userName": "babs", "displayName": "Babs Jensen"}, headers=h)
    user_id = (await body_of(r))["id"]
    r = await client.post("/scim/v2/Groups", json={
        "schemas": [CORE_GROUP], "displayName": "Tour Guides",
        "members": [{"value": user_id, "display": "Babs"}]}, headers=h)
    assert r.status == 201, await r.text()
    group = await body_of(r)
    expected = [{"value": user_id, "$ref": f"{client.make_url('/scim/v2/Users/')}{user_id}", "type": "User"}]
    assert group["members"] == expected
    r = await client.get(f"/scim/v2/Groups/{group['id']}", headers=h)
    assert (await body_of(r))["members"] == expected

    r = await client.get(f"/scim/v2/Schemas/{CORE_GROUP}", headers=h)
    members = next(a for a in (await body_of(r))["attributes"] if a["name"] == "members")
    assert [s["name"] for s in members["subAttributes"]] == ["value", "$ref", "type"]


async def test_query_at_the_server_root_is_not_implemented(client: TestClient, tenant: Tenant) -> None:
    """RFC 7644 3.4.2 (root queries MAY be supported), 3.4.3 (POST /.search) and 3.12 (501)."""
    for method, path, body in (
        ("POST", "/scim/v2/.search", {"schemas": [SEARCH_REQUEST]}),
        ("GET", '/scim/v2?filter=userName eq "x"', None),
        ("GET", "/scim/v2/", None),
    ):
        r = await client.request(method, path, json=body, headers=tenant.headers)
        assert r.status == 501, (method, path, r.status)
        error = await body_of(r)
        assert error["schemas"] == [ERROR_SCHEMA] and error["status"] == "501"


async def test_query_at_the_server_root_needs_a_token(client: TestClient) -> None:
    """RFC 7644 2 (authentication): the root answers 401 before saying anything else."""
    r = await client.post("/scim/v2/.search", json={})
    assert r.status == 401
