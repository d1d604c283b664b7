"""Smoke: the Users endpoints end to end (RFC 7644 3.3, 3.4.1, 3.5.1, 3.5.2, 3.6)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.support import CORE_USER, deactivate_okta


async def test_user_crud_roundtrip(client: TestClient, tenant: Tenant) -> None:
    h = tenant.headers
    r = await client.post("/scim/v2/Users", json={
        "schemas": [CORE_USER],
        "userName": "bjensen@example.com", "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": True}],
        "password": "t1meMa$heen", "active": True,
    }, headers=h)
    assert r.status == 201, await r.text()
    body = await r.json(content_type=None)
    uid = body["id"]
    assert "password" not in body
    assert body["meta"]["version"] == 'W/"1"' and r.headers["ETag"] == 'W/"1"'
    r = await client.get(f"/scim/v2/Users/{uid}", headers=h)
    assert r.status == 200
    r = await client.get('/scim/v2/Users?filter=userName eq "BJENSEN@example.com"', headers=h)
    body = await r.json(content_type=None)
    assert body["totalResults"] == 1, body
    r = await client.patch(f"/scim/v2/Users/{uid}", json=deactivate_okta(), headers=h)
    assert r.status == 200, await r.text()
    assert (await r.json(content_type=None))["active"] is False
    r = await client.delete(f"/scim/v2/Users/{uid}", headers=h)
    assert r.status == 204
    r = await client.get(f"/scim/v2/Users/{uid}", headers=h)
    assert r.status == 404
