"""A scripted Okta group push over real HTTP (Okta's SCIM 2.0 guide, "Group operations").

Okta pushes a group with POST /Groups, renames it with a path-less replace whose value carries
`id` and `displayName`, adds members without `type`, removes with `members[value eq "id"]` and
adds in the same PATCH, replaces the member list, and deletes the group. RFC 7644 3.5.2.
"""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.support import CORE_GROUP, body_of, make_users, member_ids, okta_headers, patch


async def test_okta_group_push(client: TestClient, tenant: Tenant) -> None:
    h = okta_headers(tenant.secret)
    a, b, c, d = await make_users(client, tenant, 4)

    r = await client.get('/scim/v2/Groups?filter=displayName eq "Engineering"', headers=h)
    assert r.status == 200 and (await body_of(r))["totalResults"] == 0
    r = await client.post("/scim/v2/Groups", json={"schemas": [CORE_GROUP], "displayName": "Engineering", "members": []}, headers=h)
    assert r.status == 201, await r.text()
    group = await body_of(r)
    gid = group["id"]
    assert group["displayName"] == "Engineering" and group["meta"]["resourceType"] == "Group"

    # rename: path-less replace carrying id and displayName
    r = await client.patch(f"/scim/v2/Groups/{gid}", json=patch(
        {"op": "replace", "value": {"id": gid, "displayName": "Platform Engineering"}}), headers=h)
    assert r.status == 204
    r = await client.get(f"/scim/v2/Groups/{gid}", headers=h)
    assert (await body_of(r))["displayName"] == "Platform Engineering"

    # add members without type
    r = await client.patch(f"/scim/v2/Groups/{gid}", json=patch(
        {"op": "add", "path": "members", "value": [{"value": a, "display": "Member 0"}, {"value": b}]}), headers=h)
    assert r.status == 204
    assert await member_ids(client, tenant, gid) == {a, b}

    # remove by filter and add in one PATCH
    r = await client.patch(f"/scim/v2/Groups/{gid}", json=patch(
        {"op": "remove", "path": f'members[value eq "{a}"]'},
        {"op": "add", "path": "members", "value": [{"value": c}]}), headers=h)
    assert r.status == 204
    assert await member_ids(client, tenant, gid) == {b, c}

    # the user's read-only groups attribute lists the group
    r = await client.get(f"/scim/v2/Users/{b}", headers=h)
    assert (await body_of(r))["groups"] == [{
        "value": gid, "$ref": f"{str(r.url).split('/scim/v2')[0]}/scim/v2/Groups/{gid}",
        "display": "Platform Engineering", "type": "direct"}]

    # replace the member list exactly
    r = await client.patch(f"/scim/v2/Groups/{gid}", json=patch(
        {"op": "replace", "path": "members", "value": [{"value": c}, {"value": d}]}), headers=h)
    assert r.status == 204
    assert await member_ids(client, tenant, gid) == {c, d}

    # adding a member twice and removing an absent one are no-ops (no new version)
    r = await client.get(f"/scim/v2/Groups/{gid}", headers=h)
    version = (await body_of(r))["meta"]["version"]
    r = await client.patch(f"/scim/v2/Groups/{gid}", json=patch(
        {"op": "add", "path": "members", "value": [{"value": c}]},
        {"op": "remove", "path": f'members[value eq "{a}"]'}), headers=h)
    assert r.status == 204 and r.headers["ETag"] == version

    # PATCH answers 200 with the group when the request names attributes
    r = await client.patch(f"/scim/v2/Groups/{gid}?excludedAttributes=members", json=patch(
        {"op": "replace", "path": "displayName", "value": "Platform"}), headers=h)
    assert r.status == 200
    body = await body_of(r)
    assert body["displayName"] == "Platform" and "members" not in body

    # delete
    r = await client.delete(f"/scim/v2/Groups/{gid}", headers=h)
    assert r.status == 204
    r = await client.get(f"/scim/v2/Groups/{gid}", headers=h)
    assert r.status == 404
    r = await client.get(f"/scim/v2/Users/{c}", headers=h)
    assert (await body_of(r)).get("groups", []) == []


async def test_unknown_member_is_skipped_and_the_rest_applied(client: TestClient, tenant: Tenant) -> None:
    """An unknown member id is skipped (docs/decisions.md: Okta does not retry a 400, so it would
    lose the whole push); the other operations of the PATCH land, the known member joins."""
    (a,) = await make_users(client, tenant, 1)
    r = await client.post("/scim/v2/Groups", json={"schemas": [CORE_GROUP], "displayName": "Ops"}, headers=tenant.headers)
    gid = (await body_of(r))["id"]
    ghost = "0b2a0b2a-0000-4000-8000-000000000000"
    r = await client.patch(f"/scim/v2/Groups/{gid}", json=patch(
        {"op": "replace", "path": "displayName", "value": "Renamed"},
        {"op": "add", "path": "members", "value": [{"value": a}, {"value": ghost}]}), headers=tenant.headers)
    assert r.status == 204, await r.text()
    r = await client.get(f"/scim/v2/Groups/{gid}", headers=tenant.headers)
    group = await body_of(r)
    assert group["displayName"] == "Renamed" and [m["value"] for m in group["members"]] == [a]


async def test_nested_groups_are_refused(client: TestClient, tenant: Tenant) -> None:
    """Members are Users only (docs/decisions.md); a Group member is 400 invalidValue."""
    r = await client.post("/scim/v2/Groups", json={"schemas": [CORE_GROUP], "displayName": "Inner"}, headers=tenant.headers)
    inner = (await body_of(r))["id"]
    r = await client.post("/scim/v2/Groups", json={"schemas": [CORE_GROUP], "displayName": "Outer",
                                                   "members": [{"value": inner, "type": "Group"}]}, headers=tenant.headers)
    assert r.status == 400 and (await body_of(r))["scimType"] == "invalidValue"
    r = await client.get('/scim/v2/Groups?filter=displayName eq "Outer"', headers=tenant.headers)
    assert (await body_of(r))["totalResults"] == 0
