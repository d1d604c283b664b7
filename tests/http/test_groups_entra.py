"""A scripted Microsoft Entra ID group session over real HTTP, and membership invariants.

Entra creates groups with externalId, looks them up with
`GET /Groups?excludedAttributes=members&filter=displayName eq "..."`, adds members with
`$ref: null`, removes with `Remove` + path `members` + a value list (only those members), removes
by filter, renames, and expects a PATCH answered with 204. RFC 7644 3.4.2.5, 3.5.2.
"""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.support import (
    CORE_GROUP,
    CORE_USER,
    body_of,
    entra_headers,
    make_users,
    member_ids,
    patch,
)


async def test_entra_group_session(client: TestClient, tenant: Tenant) -> None:
    h = entra_headers(tenant.secret)
    a, b, c = await make_users(client, tenant, 3)

    r = await client.post("/scim/v2/Groups", json={
        "schemas": [CORE_GROUP], "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": "Sales", "meta": {"resourceType": "Group"}}, headers=h)
    assert r.status == 201
    gid = (await body_of(r))["id"]

    r = await client.get('/scim/v2/Groups?excludedAttributes=members&filter=displayName eq "Sales"', headers=h)
    listing = await body_of(r)
    assert listing["totalResults"] == 1
    assert listing["Resources"][0]["id"] == gid and "members" not in listing["Resources"][0]
    assert listing["Resources"][0]["externalId"] == "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"

    # add with $ref null, capitalised op
    r = await client.patch(f"/scim/v2/Groups/{gid}", json=patch(
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": x} for x in (a, b, c)]}), headers=h)
    assert r.status == 204
    assert await member_ids(client, tenant, gid) == {a, b, c}

    # Remove with a value list removes only those members; never empties the group
    r = await client.patch(f"/scim/v2/Groups/{gid}", json=patch(
        {"op": "Remove", "path": "members", "value": [{"value": a}]}), headers=h)
    assert r.status == 204
    assert await member_ids(client, tenant, gid) == {b, c}

    # remove by filter
    r = await client.patch(f"/scim/v2/Groups/{gid}", json=patch(
        {"op": "Remove", "path": f'members[value eq "{b}"]'}), headers=h)
    assert r.status == 204
    assert await member_ids(client, tenant, gid) == {c}

    # rename
    r = await client.patch(f"/scim/v2/Groups/{gid}", json=patch(
        {"op": "Replace", "path": "displayName", "value": "Sales EMEA"}), headers=h)
    assert r.status == 204

    # a deactivated member stays a member, and its groups still list the group
    r = await client.patch(f"/scim/v2/Users/{c}", json=patch(
        {"op": "Replace", "path": "active", "value": "False"}), headers=h)
    assert r.status == 200 and (await body_of(r))["active"] is False
    assert await member_ids(client, tenant, gid) == {c}
    r = await client.get(f"/scim/v2/Users/{c}", headers=h)
    assert [g["display"] for g in (await body_of(r))["groups"]] == ["Sales EMEA"]
    r = await client.get(f'/scim/v2/Groups?filter=members.value eq "{c}"', headers=h)
    assert [g["id"] for g in (await body_of(r))["Resources"]] == [gid]


async def test_deleted_user_leaves_every_group_and_the_log_says_so(
    client: TestClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """DELETE of a user: it leaves its groups; each group's stream records group.members_removed
    with reason user.deleted, and user.deleted lists the groups (docs/decisions.md)."""
    a, b = await make_users(client, tenant, 2)
    gids = []
    for name in ("One", "Two"):
        r = await client.post("/scim/v2/Groups", json={"schemas": [CORE_GROUP], "displayName": name,
                                                       "members": [{"value": a}, {"value": b}]}, headers=tenant.headers)
        gids.append((await body_of(r))["id"])
    r = await client.delete(f"/scim/v2/Users/{a}", headers=tenant.headers)
    assert r.status == 204
    for gid in gids:
        assert await member_ids(client, tenant, gid) == {b}
    async with pool.acquire() as conn:
        removed = await conn.fetch(
            "SELECT stream_id::text, data FROM events WHERE tenant_id = $1 AND type = 'group.members_removed'",
            tenant.id)
        deleted = await conn.fetchval(
            "SELECT data FROM events WHERE tenant_id = $1 AND type = 'user.deleted'", tenant.id)
    assert sorted(r["stream_id"] for r in removed) == sorted(gids)
    assert all(r["data"] == {"type": "group.members_removed", "members": [a], "reason": "user.deleted"} for r in removed)
    assert sorted(deleted["groups"]) == sorted(gids)


async def test_concurrent_patches_adding_different_members_all_land(client: TestClient, tenant: Tenant) -> None:
    """No lost update: 20 PATCHes at once, each adding a different member to one group."""
    users = await make_users(client, tenant, 20)
    r = await client.post("/scim/v2/Groups", json={"schemas": [CORE_GROUP], "displayName": "Busy"}, headers=tenant.headers)
    gid = (await body_of(r))["id"]

    async def add(member: str) -> int:
        resp = await client.patch(f"/scim/v2/Groups/{gid}", json=patch(
            {"op": "add", "path": "members", "value": [{"value": member}]}), headers=tenant.headers)
        return resp.status

    statuses = await asyncio.gather(*(add(u) for u in users))
    assert statuses == [204] * 20
    assert await member_ids(client, tenant, gid) == set(users)
    r = await client.get(f"/scim/v2/Groups/{gid}", headers=tenant.headers)
    assert (await body_of(r))["meta"]["version"] == 'W/"21"'


async def test_concurrent_user_patches_all_land(client: TestClient, tenant: Tenant) -> None:
    """Concurrent PATCHes of one user without If-Match are re-decided on conflict, none lost."""
    r = await client.post("/scim/v2/Users", json={"schemas": [CORE_USER], "userName": "busy@example.com"}, headers=tenant.headers)
    uid = (await body_of(r))["id"]

    async def add_email(i: int) -> int:
        resp = await client.patch(f"/scim/v2/Users/{uid}", json=patch(
            {"op": "add", "path": "emails", "value": [{"value": f"e{i}@example.com", "type": "other"}]}),
            headers=tenant.headers)
        return resp.status

    statuses = await asyncio.gather(*(add_email(i) for i in range(4)))
    assert statuses == [200] * 4
    r = await client.get(f"/scim/v2/Users/{uid}", headers=tenant.headers)
    assert len((await body_of(r))["emails"]) == 4
