"""A scripted Okta provisioning session over real HTTP, as Okta's SCIM 2.0 guide documents it.

Okta: connection test `GET /Users?startIndex=1&count=2`; existence check by `userName eq` before
create (200 + empty ListResponse when absent); create with `password` and `groups: []` sent as
`application/json`; PUT for profile updates; deactivation by a path-less PATCH replace (and by
PUT for PUT-only apps); reactivation; import walks pages of 100 by startIndex. Okta never DELETEs
users. RFC 7644 3.3 (create), 3.4.2 (filter, paging), 3.5.1 (PUT), 3.5.2 (PATCH).
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.support import CORE_USER, LIST_RESPONSE, body_of, deactivate_okta, okta_headers, patch


def okta_user(user_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "schemas": [CORE_USER],
        "userName": user_name,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": "Ada Lovelace",
        "locale": "en-US",
        "externalId": "00u1a2b3c4",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
        **extra,
    }


async def test_okta_user_lifecycle(client: TestClient, tenant: Tenant) -> None:
    h = okta_headers(tenant.secret)

    # 1. Test connection: a page of two, a valid ListResponse even when empty
    r = await client.get("/scim/v2/Users?startIndex=1&count=2", headers=h)
    assert r.status == 200
    body = await body_of(r)
    assert body["schemas"] == [LIST_RESPONSE] and body["totalResults"] == 0 and body["Resources"] == []
    assert body["startIndex"] == 1 and body["itemsPerPage"] == 0

    # 2. Existence check before create: 200 with an empty list
    r = await client.get(
        '/scim/v2/Users?filter=userName eq "ada@example.com"&startIndex=1&count=100', headers=h
    )
    assert r.status == 200 and (await body_of(r))["totalResults"] == 0

    # 3. Create
    r = await client.post("/scim/v2/Users", json=okta_user("ada@example.com"), headers=h)
    assert r.status == 201, await r.text()
    assert r.content_type == "application/scim+json"
    user = await body_of(r)
    uid = user["id"]
    assert user["active"] is True and "password" not in user and user.get("groups", []) == []
    assert user["meta"]["resourceType"] == "User"
    assert user["meta"]["location"].endswith(f"/scim/v2/Users/{uid}")
    assert r.headers["Location"] == user["meta"]["location"]

    # 4. The same userName in another case is a duplicate: 409 uniqueness
    r = await client.post("/scim/v2/Users", json=okta_user("ADA@Example.COM"), headers=h)
    assert r.status == 409
    err = await body_of(r)
    assert err["scimType"] == "uniqueness" and err["status"] == "409"

    # the existence check now finds the user, case-insensitively
    r = await client.get('/scim/v2/Users?filter=userName eq "ADA@EXAMPLE.COM"', headers=h)
    found = await body_of(r)
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == uid

    # 5. GET by id
    r = await client.get(f"/scim/v2/Users/{uid}", headers=h)
    assert r.status == 200 and (await body_of(r))["userName"] == "ada@example.com"

    # 6. PUT profile update (Okta sends the whole user, with id and no meta)
    put = okta_user("ada@example.com", id=uid, title="Analyst")
    put["name"]["familyName"] = "King"
    r = await client.put(f"/scim/v2/Users/{uid}", json=put, headers=h)
    assert r.status == 200, await r.text()
    updated = await body_of(r)
    assert updated["name"]["familyName"] == "King" and updated["title"] == "Analyst"
    assert updated["meta"]["version"] == 'W/"2"'

    # 7. Deactivate with a path-less PATCH replace
    r = await client.patch(f"/scim/v2/Users/{uid}", json=deactivate_okta(), headers=h)
    assert r.status == 200
    assert (await body_of(r))["active"] is False
    # the inactive user stays readable and filterable
    r = await client.get('/scim/v2/Users?filter=active eq false', headers=h)
    assert [u["id"] for u in (await body_of(r))["Resources"]] == [uid]

    # 8. Reactivate, then deactivate the PUT-only way
    r = await client.patch(f"/scim/v2/Users/{uid}", json=patch({"op": "replace", "value": {"active": True}}), headers=h)
    assert (await body_of(r))["active"] is True
    r = await client.put(f"/scim/v2/Users/{uid}", json=okta_user("ada@example.com", active=False), headers=h)
    assert r.status == 200 and (await body_of(r))["active"] is False
    r = await client.get(f"/scim/v2/Users/{uid}", headers=h)
    assert (await body_of(r))["active"] is False


async def test_okta_import_walks_every_user_once(client: TestClient, tenant: Tenant) -> None:
    """Import: pages of 100 by startIndex (RFC 7644 3.4.2.4), each user exactly once."""
    h = okta_headers(tenant.secret)
    created = set()
    for i in range(250):
        r = await client.post("/scim/v2/Users", json=okta_user(f"user{i:03}@example.com", externalId=f"x{i}"), headers=h)
        assert r.status == 201
        created.add((await body_of(r))["id"])
    seen: list[str] = []
    start = 1
    while True:
        r = await client.get(f"/scim/v2/Users?startIndex={start}&count=100", headers=h)
        page = await body_of(r)
        assert page["totalResults"] == 250 and page["startIndex"] == start
        seen += [u["id"] for u in page["Resources"]]
        if page["itemsPerPage"] < 100:
            break
        start += 100
    assert len(seen) == 250 and set(seen) == created
    assert start == 201
