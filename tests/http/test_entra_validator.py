"""A scripted session of Microsoft Entra's SCIM validation suite (the app gallery's Logic App):
its direct SCIM tests and its credential tests, request shapes and pass criteria as the
validator's workflow sends and checks them.

Schema discoverability, null update (verbose and batched), user and group create and update,
user and group pagination with the startIndex checks, manager set/change/remove, credential
validation through /oauth2/token with a client made by the CLI (expires_in from 3,600 to
21,600 s), and the generic workload identity federation exchange.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from service.app.federation import ASSERTION_TYPE
from tests.conftest import Tenant
from tests.support import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE_USER,
    PATCH_OP,
    bearer,
    cli,
    entra_headers,
    env_for,
)

BASE = "/scim/v2"

# Entra's default target attribute list for a SCIM app's User (the "Edit attribute list"),
# as the validator compares it; id and externalId are exempt.
ENTRA_USER_TARGETS = [
    "userName", "active", "displayName", "title", "preferredLanguage", "nickName", "userType", "locale", "timezone",
    "name.givenName", "name.familyName", "name.formatted", "name.honorificPrefix", "name.honorificSuffix",
    *[f'emails[type eq "{t}"].value' for t in ("work", "home", "other")],
    *[f'phoneNumbers[type eq "{t}"].value' for t in ("work", "mobile", "fax", "home", "other", "pager")],
    *[f'addresses[type eq "{t}"].{s}' for t in ("work", "home", "other")
      for s in ("formatted", "streetAddress", "locality", "region", "postalCode", "country")],
    *[f'roles[primary eq "True"].{s}' for s in ("display", "type", "value")],
    *[f"{ENTERPRISE_USER}:{a}" for a in ("employeeNumber", "department", "manager", "costCenter", "organization", "division")],
    "externalId",
]
ENTRA_GROUP_TARGETS = ["displayName", "members", "externalId"]


def flatten(schema: dict[str, Any]) -> list[str]:
    """The validator's flattening of one core schema into attribute names."""
    names: list[str] = []
    for attr in schema["attributes"]:
        name, subs = attr["name"], attr.get("subAttributes") or []
        if name in ("manager", "members"):
            names.append(name)
        elif attr["type"] == "complex" and attr.get("multiValued"):
            type_sub = next((s for s in subs if s["name"] == "type"), None)
            canonical = (type_sub or {}).get("canonicalValues") or []
            if canonical:
                names += [f'{name}[type eq "{cv}"].{s["name"]}' for cv in canonical for s in subs
                          if s["name"] not in ("type", "primary")]
            else:
                names += [f'{name}[primary eq "True"].{s["name"]}' for s in subs if s["name"] != "primary"]
        elif attr["type"] == "complex":
            names += [f'{name}.{s["name"]}' for s in subs if s["type"] not in ("complex", "reference")]
        elif attr["type"] != "reference":
            names.append(name)
    return names


def discoverable(resources: list[dict[str, Any]], core: str, suffixes: tuple[str, ...]) -> set[str]:
    names: list[str] = []
    for schema in resources:
        if schema["id"] == core:
            names += flatten(schema)
        elif schema["id"].lower().endswith(suffixes):
            names += [f"{schema['id']}:{a['name']}" for a in schema["attributes"]]
    return {n.lower() for n in names}


def patch_body(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(ops)}


async def create_user(client: TestClient, tenant: Tenant, user_name: str, **extra: Any) -> dict[str, Any]:
    body = {"schemas": [CORE_USER, ENTERPRISE_USER], "userName": user_name, "active": True,
            "displayName": "User1", "title": "Software Engineer", "preferredLanguage": "en-US",
            "name": {"givenName": "User1 Given", "familyName": "User", "formatted": "User1 Given"},
            "emails": [{"type": "work", "primary": True, "value": f"{user_name}"}],
            "phoneNumbers": [{"type": "work", "primary": True, "value": "+1-555-0100"},
                             {"type": "mobile", "primary": False, "value": "+1-555-0101"}],
            "addresses": [{"type": "work", "primary": True, "streetAddress": "123 Test Street", "locality": "Seattle",
                           "region": "WA", "postalCode": "98101", "country": "US"}],
            ENTERPRISE_USER: {"department": "Research", "employeeNumber": "E12345"}, **extra}
    resp = await client.post(f"{BASE}/Users", json=body, headers=entra_headers(tenant.secret))
    assert resp.status in (200, 201), await resp.text()
    created = await resp.json()
    assert created["id"] and created["userName"] == user_name  # byte-identical round trip
    return created


async def get(client: TestClient, tenant: Tenant, path: str) -> dict[str, Any]:
    resp = await client.get(f"{BASE}{path}", headers=entra_headers(tenant.secret))
    assert resp.status in (200, 204), await resp.text()
    return await resp.json()


async def send_patch(client: TestClient, tenant: Tenant, path: str, *ops: dict[str, Any]) -> None:
    resp = await client.patch(f"{BASE}{path}", json=patch_body(*ops), headers=entra_headers(tenant.secret))
    assert resp.status in (200, 204), await resp.text()


def read(body: dict[str, Any], path: str) -> Any:
    """How the validator reads a target back: URN paths, dotted paths, bracket paths."""
    if path.startswith("urn:"):
        urn, _, attr = path.rpartition(":")
        return (body.get(urn) or {}).get(attr)
    if "[" in path:
        name, _, rest = path.partition("[")
        wanted = rest.split('"')[1].lower()
        sub = rest.split("].")[1]
        element = next((e for e in body.get(name) or [] if str(e.get("type", "")).lower() == wanted), None)
        return None if element is None else element.get(sub)
    if "." in path:
        a, b = path.split(".", 1)
        return (body.get(a) or {}).get(b)
    return body.get(path)


async def test_schema_discoverability(client: TestClient, tenant: Tenant) -> None:
    """Test 15: GET /Schemas, flattened; every target attribute but id is discoverable, matched
    case-insensitively (externalId too: docs/decisions.md)."""
    body = await get(client, tenant, "/Schemas")
    assert body["Resources"]
    users = discoverable(body["Resources"], CORE_USER, ("user", "users"))
    groups = discoverable(body["Resources"], CORE_GROUP, ("group", "groups"))
    assert [t for t in ENTRA_USER_TARGETS if t.lower() not in users] == []
    assert [t for t in ENTRA_GROUP_TARGETS if t.lower() not in groups] == []


NULL_TARGETS = ["displayName", "title", "preferredLanguage", "name.givenName", "name.familyName",
                f"{ENTERPRISE_USER}:department", f"{ENTERPRISE_USER}:employeeNumber"]
BRACKET_TARGETS = ['emails[type eq "work"].value', 'phoneNumbers[type eq "mobile"].value',
                   'addresses[type eq "work"].locality']


@pytest.mark.parametrize("verbose", [True, False], ids=["one-op-per-path", "batched-no-path"])
async def test_null_update(client: TestClient, tenant: Tenant, verbose: bool) -> None:
    """Test 16: replace with "" empties the attributes; replace with null leaves them absent or
    null (a stored "" fails phase 2). Both PATCH forms the validator may send."""
    user = await create_user(client, tenant, f"scnull{uuid.uuid4().hex[:8]}@contoso.example")
    for value in ("", None):
        if verbose:
            ops = [{"op": "replace", "path": p, "value": value} for p in NULL_TARGETS + BRACKET_TARGETS]
        else:
            ops = [{"op": "replace", "path": p, "value": value} for p in BRACKET_TARGETS]
            ops.append({"op": "replace", "value": {p: value for p in NULL_TARGETS}})
        await send_patch(client, tenant, f"/Users/{user['id']}", *ops)
        after = await get(client, tenant, f"/Users/{user['id']}")
        for path in NULL_TARGETS + (BRACKET_TARGETS if value == "" else []):
            assert read(after, path) in ("", None) if value == "" else read(after, path) is None, (value, path, after)


async def test_user_update(client: TestClient, tenant: Tenant) -> None:
    """Test 18: one replace per single-valued writable attribute, values like upd-<hex> (no
    email or phone validation), a bracket replace that matches nothing creates the element."""
    user = await create_user(client, tenant, f"lasupduser{uuid.uuid4().hex[:8]}@contoso.example")
    values = {
        "userName": f"upd-{uuid.uuid4().hex[:8]}", "displayName": "Updated SCIM User", "title": "Senior Engineer",
        "name.givenName": "UpdatedFirst", "preferredLanguage": "en-GB", "timezone": "Europe/London",
        'emails[type eq "work"].value': f"upd-{uuid.uuid4().hex[:8]}",
        'phoneNumbers[type eq "fax"].value': f"upd-{uuid.uuid4().hex[:8]}",
        'roles[primary eq "True"].value': "TestRole",
        f"{ENTERPRISE_USER}:department": f"upd-{uuid.uuid4().hex[:8]}",
        "externalId": f"upd-{uuid.uuid4().hex[:8]}",
    }
    await send_patch(client, tenant, f"/Users/{user['id']}", *[{"op": "replace", "path": p, "value": v} for p, v in values.items()])
    after = await get(client, tenant, f"/Users/{user['id']}")
    for path, value in values.items():
        if "[" in path:
            parent = path.split("[")[0]
            assert value in str(after.get(parent)), (path, after.get(parent))
        else:
            assert str(read(after, path)) == value, (path, after)


async def test_group_create_and_update(client: TestClient, tenant: Tenant) -> None:
    """Tests 19 and 20: POST /Groups echoes displayName exactly; PATCH replace displayName."""
    name = f"LASCDirectGroup-{uuid.uuid4().hex[:8]}"
    resp = await client.post(f"{BASE}/Groups", json={"schemas": [CORE_GROUP], "displayName": name,
                                                     "externalId": str(uuid.uuid4())}, headers=entra_headers(tenant.secret))
    assert resp.status in (200, 201)
    group = await resp.json()
    assert group["id"] and group["displayName"] == name
    new = f"upd-{uuid.uuid4().hex[:8]}"
    await send_patch(client, tenant, f"/Groups/{group['id']}", {"op": "replace", "path": "displayName", "value": new})
    assert str((await get(client, tenant, f"/Groups/{group['id']}"))["displayName"]) == new


@pytest.mark.parametrize("resource", ["Users", "Groups"])
async def test_pagination(client: TestClient, tenant: Tenant, resource: str) -> None:
    """Tests 23 and 24: at least 11 resources, pages of count=5 walked by startIndex; every page
    is exactly 200 and echoes startIndex as an integer page*5+1; full pages hold 5."""
    for i in range(11):
        if resource == "Users":
            await create_user(client, tenant, f"paguser{i}{uuid.uuid4().hex[:6]}@contoso.example")
        else:
            r = await client.post(f"{BASE}/Groups", json={"schemas": [CORE_GROUP], "displayName": f"PagGroup {i}"},
                                  headers=entra_headers(tenant.secret))
            assert r.status == 201
    url, page, pages = f"{BASE}/{resource}?startIndex=1&count=5", 0, 0
    while url and page < 10:
        resp = await client.get(url, headers=entra_headers(tenant.secret))
        assert resp.status == 200
        body = await resp.json()
        assert type(body["startIndex"]) is int and body["startIndex"] == page * 5 + 1
        got = len(body["Resources"])
        if body["startIndex"] + 5 - 1 <= body["totalResults"]:
            assert got == 5
        pages += 1
        page += 1
        nxt = body["startIndex"] + got
        url = f"{BASE}/{resource}?startIndex={nxt}&count=5" if got and nxt <= body["totalResults"] else ""
    assert pages >= 2


@pytest.mark.parametrize("verbose", [True, False], ids=["one-op-per-path", "batched-no-path"])
async def test_manager_set_change_remove(client: TestClient, tenant: Tenant, verbose: bool) -> None:
    """Test 25: Add the manager ({"value": id}), replace URN:manager.value, remove; after the
    remove the manager is absent (or its value empty)."""
    user = await create_user(client, tenant, f"scmgr-user-{uuid.uuid4().hex[:8]}@contoso.example")
    boss = await create_user(client, tenant, f"scmgr-mgr-{uuid.uuid4().hex[:8]}@contoso.example")
    boss2 = await create_user(client, tenant, f"scmgr-mgr2-{uuid.uuid4().hex[:8]}@contoso.example")
    path = f"/Users/{user['id']}"
    manager_attr = f"{ENTERPRISE_USER}:manager"
    if verbose:
        await send_patch(client, tenant, path, {"op": "Add", "path": manager_attr, "value": {"value": boss["id"]}})
    else:
        await send_patch(client, tenant, path, {"op": "Add", "value": {manager_attr: {"value": boss["id"]}}})
    assert (await get(client, tenant, path))[ENTERPRISE_USER]["manager"]["value"] == boss["id"]
    if verbose:
        await send_patch(client, tenant, path, {"op": "replace", "path": f"{manager_attr}.value", "value": boss2["id"]})
    else:
        await send_patch(client, tenant, path, {"op": "replace", "value": {manager_attr: {"value": boss2["id"]}}})
    assert (await get(client, tenant, path))[ENTERPRISE_USER]["manager"]["value"] == boss2["id"]
    await send_patch(client, tenant, path, {"op": "remove", "path": manager_attr})
    after = await get(client, tenant, path)
    manager = (after.get(ENTERPRISE_USER) or {}).get("manager")
    assert manager is None or (manager.get("value") in ("", None) and manager != {})


async def test_validate_credentials(dsn: str, client: TestClient) -> None:
    """Test 21: client_secret_post with a client made by the CLI; expires_in a number of 60 to
    360 minutes; the token reaches GET /Users?startIndex=1&count=1."""
    env = env_for(dsn)
    cli("tenant", "create", "gallery", env=env)
    client_id, secret = cli("client", "create", "--tenant", "gallery", "--label", "entra", env=env).stdout.splitlines()
    resp = await client.post("/oauth2/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                    "client_secret": secret})
    assert 200 <= resp.status < 300
    body = await resp.json()
    assert body["access_token"]
    assert isinstance(body["expires_in"], int) and 60 <= body["expires_in"] // 60 <= 360
    users = await client.get(f"{BASE}/Users?startIndex=1&count=1", headers=bearer(body["access_token"]))
    assert 200 <= users.status < 300


async def test_federated_identity(dsn: str, client: TestClient, tmp_path: Any) -> None:
    """Test 22, generic flow: the validator's own Entra token as client_assertion with client_id
    and baseAddress, no scope; 2xx with an access_token."""
    import json

    tid = str(uuid.uuid4())
    issuer, subject, app = f"https://login.microsoftonline.com/{tid}/v2.0", str(uuid.uuid4()), f"api://{uuid.uuid4()}"
    key = RSAKey.generate_key(2048, parameters={"kid": "entra", "alg": "RS256"})
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    env = env_for(dsn)
    cli("tenant", "create", "gallery", env=env)
    client_id = cli("client", "federate", "--tenant", "gallery", "--label", "entra-wif", "--issuer", issuer,
                    "--subject", subject, "--jwks-file", str(tmp_path / "keys.json"), "--audience", app,
                    env=env).stdout.strip()
    now = int(time.time())
    entra_token = jwt.encode({"alg": "RS256", "kid": "entra"}, {
        "iss": issuer, "sub": subject, "aud": app, "tid": tid, "ver": "2.0", "oid": subject,
        "iat": now, "nbf": now, "exp": now + 3600, "jti": uuid.uuid4().hex, "uti": uuid.uuid4().hex,
    }, key)
    resp = await client.post("/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_assertion": entra_token,
        "client_assertion_type": ASSERTION_TYPE, "baseAddress": "https://app.example/scim/v2",
    })
    assert 200 <= resp.status < 300, await resp.text()
    assert (await resp.json())["access_token"]
