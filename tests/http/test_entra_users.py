"""A scripted Microsoft Entra ID provisioning session over real HTTP.

Entra's documented exchanges (its SCIM reference and "known issues"): test connection with a
filter on a random userName; create with the enterprise extension; PATCH with capitalised ops and
booleans as strings ("False"); paths like `emails[type eq "work"].value`, `name.familyName` and
enterprise URN paths; path-less values with dotted and URN keys; manager as a bare id; disable,
enable, DELETE, and re-create with the same userName. RFC 7644 3.5.2 (PATCH), 3.6 (DELETE).
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.support import CORE_USER, ENTERPRISE_USER, body_of, entra_headers, patch


def entra_user(user_name: str, external_id: str, manager: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemas": [CORE_USER, ENTERPRISE_USER],
        "externalId": external_id,
        "userName": user_name,
        "active": True,
        "displayName": "Grace Hopper",
        "emails": [{"primary": True, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Grace Hopper", "familyName": "Hopper", "givenName": "Grace"},
        "roles": [],
        ENTERPRISE_USER: {"employeeNumber": "1701", "department": "Navy"},
    }
    if manager:
        body[ENTERPRISE_USER]["manager"] = {"value": manager}
    return body


async def test_entra_user_lifecycle(client: TestClient, tenant: Tenant) -> None:
    h = entra_headers(tenant.secret)

    # Test connection: a filter on a random userName answers 200 with an empty list
    r = await client.get(f'/scim/v2/Users?filter=userName eq "{uuid.uuid4()}"', headers=h)
    assert r.status == 200 and (await body_of(r))["totalResults"] == 0

    # a manager, then the user with the enterprise extension
    r = await client.post("/scim/v2/Users", json=entra_user("boss@contoso.com", "boss"), headers=h)
    assert r.status == 201
    boss_id = (await body_of(r))["id"]
    r = await client.post("/scim/v2/Users", json=entra_user("grace@contoso.com", "grace", boss_id), headers=h)
    assert r.status == 201, await r.text()
    user = await body_of(r)
    uid = user["id"]
    assert ENTERPRISE_USER in user["schemas"]
    assert user[ENTERPRISE_USER]["employeeNumber"] == "1701"
    assert user[ENTERPRISE_USER]["manager"]["value"] == boss_id

    # Entra's match by externalId
    r = await client.get('/scim/v2/Users?filter=externalId eq "grace"', headers=h)
    assert [u["id"] for u in (await body_of(r))["Resources"]] == [uid]

    # capitalised ops, filtered email path, dotted name path, URN path, string boolean leniency
    r = await client.patch(f"/scim/v2/Users/{uid}", json=patch(
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "grace.hopper@contoso.com"},
        {"op": "Replace", "path": "name.familyName", "value": "Murray Hopper"},
        {"op": "Add", "path": f"{ENTERPRISE_USER}:department", "value": "Research"},
        {"op": "Replace", "path": f"{ENTERPRISE_USER}:manager", "value": boss_id},
    ), headers=h)
    assert r.status == 200, await r.text()
    user = await body_of(r)
    assert user["emails"] == [{"primary": True, "type": "work", "value": "grace.hopper@contoso.com"}]
    assert user["name"]["familyName"] == "Murray Hopper"
    assert user[ENTERPRISE_USER]["department"] == "Research"
    assert user[ENTERPRISE_USER]["manager"]["value"] == boss_id

    # path-less value with dotted and URN keys, stray keys in the operation
    r = await client.patch(f"/scim/v2/Users/{uid}", json=patch(
        {"op": "Add", "id": "stray", "value": {
            "name.givenName": "Grace B.", f"{ENTERPRISE_USER}:employeeNumber": "1702", "title": "RADM"}},
    ), headers=h)
    assert r.status == 200, await r.text()
    user = await body_of(r)
    assert user["name"]["givenName"] == "Grace B." and user["title"] == "RADM"
    assert user[ENTERPRISE_USER]["employeeNumber"] == "1702"

    # a filtered email path on a user without that email creates the element
    r = await client.patch(f"/scim/v2/Users/{uid}", json=patch(
        {"op": "Add", "path": 'emails[type eq "home"].value', "value": "grace@home.example"},
    ), headers=h)
    assert {"type": "home", "value": "grace@home.example"} in (await body_of(r))["emails"]

    # disable with a string boolean; the user stays readable and keeps its attributes
    r = await client.patch(f"/scim/v2/Users/{uid}", json=patch(
        {"op": "Replace", "path": "active", "value": "False"}), headers=h)
    assert r.status == 200 and (await body_of(r))["active"] is False
    r = await client.get(f"/scim/v2/Users/{uid}", headers=h)
    assert r.status == 200 and (await body_of(r))["active"] is False
    # enable, path-less
    r = await client.patch(f"/scim/v2/Users/{uid}", json=patch(
        {"op": "Replace", "value": {"active": "True"}}), headers=h)
    assert (await body_of(r))["active"] is True

    # delete: 204, then 404, and the userName is free again
    r = await client.delete(f"/scim/v2/Users/{uid}", headers=h)
    assert r.status == 204
    r = await client.get(f"/scim/v2/Users/{uid}", headers=h)
    assert r.status == 404 and (await body_of(r))["status"] == "404"
    r = await client.get('/scim/v2/Users?filter=userName eq "grace@contoso.com"', headers=h)
    assert (await body_of(r))["totalResults"] == 0
    r = await client.post("/scim/v2/Users", json=entra_user("grace@contoso.com", "grace"), headers=h)
    assert r.status == 201
    assert (await body_of(r))["id"] != uid


async def test_patch_with_a_bad_target_changes_nothing(client: TestClient, tenant: Tenant) -> None:
    """RFC 7644 3.5.2: the PATCH is atomic; a remove whose filter matches nothing is 400
    noTarget and no operation of the request is applied."""
    h = entra_headers(tenant.secret)
    r = await client.post("/scim/v2/Users", json=entra_user("ada@contoso.com", "ada"), headers=h)
    uid = (await body_of(r))["id"]
    r = await client.patch(f"/scim/v2/Users/{uid}", json=patch(
        {"op": "Replace", "path": "title", "value": "Countess"},
        {"op": "Remove", "path": 'emails[type eq "fax"]'},
    ), headers=h)
    assert r.status == 400 and (await body_of(r))["scimType"] == "noTarget"
    r = await client.get(f"/scim/v2/Users/{uid}", headers=h)
    user = await body_of(r)
    assert "title" not in user and user["meta"]["version"] == 'W/"1"'


async def test_readonly_and_immutable_changes_are_refused(client: TestClient, tenant: Tenant) -> None:
    """RFC 7644 3.5.2: modifying a readOnly attribute gives 400 mutability."""
    h = entra_headers(tenant.secret)
    r = await client.post("/scim/v2/Users", json=entra_user("alan@contoso.com", "alan"), headers=h)
    uid = (await body_of(r))["id"]
    r = await client.patch(f"/scim/v2/Users/{uid}", json=patch(
        {"op": "replace", "path": "groups", "value": [{"value": str(uuid.uuid4())}]}), headers=h)
    assert r.status == 400 and (await body_of(r))["scimType"] == "mutability"
