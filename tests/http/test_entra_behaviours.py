"""Microsoft Entra ID's documented provisioning behaviours ("Known issues and resolutions with
SCIM 2.0 protocol compliance", the `aadOptscim062020` flag; "Customize application attributes";
"How provisioning works") and the leniency real pushes need, over real HTTP.

Each test names the RFC 7643/7644 section it reads and where Entra departs from it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.support import CORE_GROUP, ENTERPRISE_USER, body_of, entra_headers, new_user, patch

BASE = "/scim/v2"
ROLE = json.dumps({"id": "06b07648-ecfe-589f-9d2f-6325724a46ee", "value": "25", "displayName": "Editor"})


async def create(client: TestClient, tenant: Tenant, user_name: str, **extra: Any) -> dict[str, Any]:
    r = await client.post(f"{BASE}/Users", headers=entra_headers(tenant.secret), json=new_user(user_name, **extra))
    assert r.status == 201, await r.text()
    return await body_of(r)


async def patched(client: TestClient, tenant: Tenant, user_id: str, *ops: dict[str, Any]) -> dict[str, Any]:
    r = await client.patch(f"{BASE}/Users/{user_id}", headers=entra_headers(tenant.secret), json=patch(*ops))
    assert r.status in (200, 204), await r.text()
    r = await client.get(f"{BASE}/Users/{user_id}", headers=entra_headers(tenant.secret))
    assert r.status == 200
    return await body_of(r)


async def test_roles_from_app_role_assignments(client: TestClient, tenant: Tenant) -> None:
    """RFC 7643 4.1.2 `roles` (multi-valued: value, display, type, primary). Entra creates with
    `"roles": []` and assigns the app role with Add/Replace on `roles[primary eq "True"].value`
    whose value is the role as a stringified JSON object (SingleAppRoleAssignment). The value is
    stored as given, returned, discoverable in /Schemas and filterable on `roles.value`; a
    `replace` of `roles` replaces the whole list (RFC 7644 3.5.2.3)."""
    user = await create(client, tenant, "roles@contoso.example", roles=[])
    assert "roles" not in user
    after = await patched(client, tenant, user["id"],
                          {"op": "Add", "path": 'roles[primary eq "True"].value', "value": ROLE})
    assert after["roles"] == [{"primary": True, "value": ROLE}]
    after = await patched(client, tenant, user["id"],
                          {"op": "Replace", "path": 'roles[primary eq "True"].value', "value": "26"},
                          {"op": "Add", "path": "roles", "value": [{"value": "viewer", "type": "app"}]})
    assert after["roles"] == [{"primary": True, "value": "26"}, {"value": "viewer", "type": "app"}]
    after = await patched(client, tenant, user["id"],
                          {"op": "Replace", "path": "roles", "value": [{"value": "owner", "primary": "True"}]})
    assert after["roles"] == [{"value": "owner", "primary": True}]  # the ones not sent are gone

    r = await client.get(f"{BASE}/Users", headers=entra_headers(tenant.secret),
                         params={"filter": 'roles.value eq "owner"'})
    assert [u["id"] for u in (await body_of(r))["Resources"]] == [user["id"]]
    r = await client.get(f"{BASE}/Users", headers=entra_headers(tenant.secret),
                         params={"filter": 'roles[primary eq true and value eq "owner"]'})
    assert [u["id"] for u in (await body_of(r))["Resources"]] == [user["id"]]
    r = await client.get(f"{BASE}/Users", headers=entra_headers(tenant.secret),
                         params={"filter": 'roles[value eq "26"]'})
    assert (await body_of(r))["totalResults"] == 0

    r = await client.get(f"{BASE}/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", headers=entra_headers(tenant.secret))
    roles = next(a for a in (await body_of(r))["attributes"] if a["name"] == "roles")
    assert {s["name"] for s in roles["subAttributes"]} >= {"value", "display", "type", "primary"}


async def test_empty_string_and_null_clear_an_attribute(client: TestClient, tenant: Tenant) -> None:
    """Entra's null update: `replace` with "" or null on an optional attribute clears it, and GET
    no longer shows it (RFC 7644 3.5.2: null is unassigned; Entra sends "" for an emptied source
    attribute). A value of a multi-valued attribute whose `value` is cleared goes with it; a
    required attribute still refuses both (RFC 7643 2.2)."""
    for value in ("", None):
        user = await create(client, tenant, f"nulls-{value is None}@contoso.example", title="Engineer",
                            nickName="Babs", name={"givenName": "Barbara", "familyName": "Liskov"},
                            emails=[{"type": "work", "value": "b@contoso.example", "primary": True},
                                    {"type": "home", "value": "b@home.example"}],
                            **{ENTERPRISE_USER: {"department": "Research"}})
        after = await patched(client, tenant, user["id"],
                              {"op": "Replace", "path": "title", "value": value},
                              {"op": "Replace", "path": "name.givenName", "value": value},
                              {"op": "Replace", "path": 'emails[type eq "home"].value', "value": value},
                              {"op": "Replace", "path": f"{ENTERPRISE_USER}:department", "value": value},
                              {"op": "Replace", "value": {"nickName": value}})
        assert "title" not in after and "nickName" not in after, after
        assert after["name"] == {"familyName": "Liskov"}
        assert after["emails"] == [{"type": "work", "value": "b@contoso.example", "primary": True}]
        assert ENTERPRISE_USER not in after
        r = await client.patch(f"{BASE}/Users/{user['id']}", headers=entra_headers(tenant.secret),
                               json=patch({"op": "Replace", "path": "userName", "value": value}))
        assert r.status == 400 and (await body_of(r))["scimType"] == "mutability"
    # POST and PUT read "" the same way: not stored
    user = await create(client, tenant, "blank@contoso.example", title="", name={"givenName": ""})
    assert "title" not in user and "name" not in user


async def test_removing_the_manager(client: TestClient, tenant: Tenant) -> None:
    """Entra removes the manager with `replace` of `manager` and "" or null (its known-issues
    page); afterwards GET shows no manager at all, not `{"value": ""}`."""
    boss = await create(client, tenant, "boss@contoso.example")
    for value in ("", None, {"value": ""}):
        user = await create(client, tenant, f"report-{uuid.uuid4().hex[:6]}@contoso.example",
                            **{ENTERPRISE_USER: {"manager": {"value": boss["id"]}, "department": "R&D"}})
        assert user[ENTERPRISE_USER]["manager"]["value"] == boss["id"]
        after = await patched(client, tenant, user["id"],
                              {"op": "Replace", "path": f"{ENTERPRISE_USER}:manager", "value": value})
        assert after[ENTERPRISE_USER] == {"department": "R&D"}, (value, after)


async def test_filter_on_a_value_path_with_a_sub_attribute(client: TestClient, tenant: Tenant) -> None:
    """An admin can make `emails[type eq "work"].value` the matching attribute, so Entra filters
    `emails[type eq "work"].value eq "x"`: read as the valuePath filter
    `emails[type eq "work" and value eq "x"]` (RFC 7644 3.4.2.2)."""
    user = await create(client, tenant, "vp@contoso.example", emails=[
        {"type": "work", "value": "vp.work@contoso.example"}, {"type": "home", "value": "vp.home@contoso.example"}])
    for flt, found in (('emails[type eq "work"].value eq "vp.work@contoso.example"', True),
                       ('emails[type eq "home"].value eq "vp.work@contoso.example"', False),
                       ('emails[type eq "work"].value eq "VP.WORK@contoso.example"', True),  # caseExact false
                       ('emails[type eq "work"].value sw "vp.w"', True)):
        r = await client.get(f"{BASE}/Users", headers=entra_headers(tenant.secret), params={"filter": flt})
        assert r.status == 200, await r.text()
        ids = [u["id"] for u in (await body_of(r))["Resources"]]
        assert ids == ([user["id"]] if found else []), flt
    r = await client.get(f"{BASE}/Users", headers=entra_headers(tenant.secret),
                         params={"filter": 'emails[type eq "work"].value'})
    assert r.status == 400 and (await body_of(r))["scimType"] == "invalidFilter"


async def test_resource_paths_are_case_insensitive_and_take_a_trailing_slash(client: TestClient, tenant: Tenant) -> None:
    """Entra and others send `/scim/v2/users` and `/scim/v2/Users/`. RFC 7644 3.2 names the
    endpoints, and resource type names are case-insensitive in practice; the base path's prefix
    stays exact."""
    headers = entra_headers(tenant.secret)
    r = await client.post(f"{BASE}/users", headers=headers, json=new_user("lower@contoso.example"))
    assert r.status == 201, await r.text()
    user_id = (await body_of(r))["id"]
    assert r.headers["Location"].endswith(f"/scim/v2/Users/{user_id}")
    for path in (f"{BASE}/USERS/{user_id}", f"{BASE}/Users/{user_id}/", f"{BASE}/users/{user_id}"):
        r = await client.get(path, headers=headers)
        assert r.status == 200, path
    r = await client.get(f"{BASE}/Users/", headers=headers)
    assert r.status == 200 and (await body_of(r))["totalResults"] >= 1
    r = await client.get(f"{BASE}/groups", headers=headers)
    assert r.status == 200
    r = await client.get(f"{BASE}/serviceproviderconfig", headers=headers)
    assert r.status == 200
    r = await client.get(f"{BASE}/Users", headers={})
    assert r.status == 401


async def test_unknown_members_are_skipped_and_recorded(client: TestClient, tenant: Tenant, pool: asyncpg.Pool) -> None:
    """A group push naming ids the app does not know (deleted on the app's side, never
    provisioned) applies the known members and skips the others, recorded on the event; a
    `replace` never wipes members because some ids are unknown. RFC 7644 3.5.2 lets a service
    provider decide what it accepts; a 400 would lose the whole push (IdPs treat it as final)."""
    headers = entra_headers(tenant.secret)
    a = await create(client, tenant, "m-a@contoso.example")
    b = await create(client, tenant, "m-b@contoso.example")
    ghost, junk = str(uuid.uuid4()), "not-a-uuid"
    r = await client.post(f"{BASE}/Groups", headers=headers, json={
        "schemas": [CORE_GROUP], "displayName": "Skips", "members": [{"value": a["id"]}, {"value": ghost}]})
    assert r.status == 201, await r.text()
    group = await body_of(r)
    assert [m["value"] for m in group["members"]] == [a["id"]]
    r = await client.patch(f"{BASE}/Groups/{group['id']}", headers=headers, json=patch(
        {"op": "Add", "path": "members", "value": [{"value": b["id"]}, {"value": junk}]}))
    assert r.status in (200, 204), await r.text()
    r = await client.patch(f"{BASE}/Groups/{group['id']}", headers=headers, json=patch(
        {"op": "Replace", "path": "members", "value": [{"value": b["id"]}, {"value": ghost}]}))
    assert r.status in (200, 204), await r.text()
    r = await client.get(f"{BASE}/Groups/{group['id']}", headers=headers)
    assert [m["value"] for m in (await body_of(r))["members"]] == [b["id"]]
    # a replace naming only unknown ids changes nothing rather than emptying the group
    r = await client.patch(f"{BASE}/Groups/{group['id']}", headers=headers, json=patch(
        {"op": "Replace", "path": "members", "value": [{"value": ghost}]}))
    assert r.status in (200, 204), await r.text()
    r = await client.get(f"{BASE}/Groups/{group['id']}", headers=headers)
    assert [m["value"] for m in (await body_of(r))["members"]] == [b["id"]]

    skipped = await pool.fetch(
        "SELECT data->'skipped' AS skipped FROM events WHERE stream_id = $1 AND data ? 'skipped' ORDER BY version",
        uuid.UUID(group["id"]))
    recorded = [row["skipped"] for row in skipped]
    assert recorded == [[ghost], [junk], [ghost], [ghost]], recorded
