"""Versioning with ETags (RFC 7644 3.14; RFC 7232 3.1 and 3.2): every response carries
`ETag: W/"<version>"`; If-Match with a stale version is 412 and changes nothing; If-None-Match
with the current version is 304."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.support import CORE_GROUP, CORE_USER, PATCH_OP

BODIES = {
    "Users": {"schemas": [CORE_USER], "userName": "etag@example.com"},
    "Groups": {"schemas": [CORE_GROUP], "displayName": "Etag"},
}


@pytest.mark.parametrize("resource", ["Users", "Groups"])
async def test_stale_if_match_is_412_and_changes_nothing(client: TestClient, tenant: Tenant, resource: str) -> None:
    h = tenant.headers
    r = await client.post(f"/scim/v2/{resource}", json=BODIES[resource], headers=h)
    rid = (await r.json(content_type=None))["id"]
    assert r.headers["ETag"] == 'W/"1"'
    title = {"Users": "title", "Groups": "displayName"}[resource]
    patch = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": title, "value": "v2"}]}
    r = await client.patch(f"/scim/v2/{resource}/{rid}", json=patch, headers={**h, "If-Match": 'W/"1"'})
    assert r.status in (200, 204) and r.headers["ETag"] == 'W/"2"'

    stale = {**h, "If-Match": 'W/"1"'}
    patch["Operations"][0]["value"] = "v3"
    for method, body in (("PATCH", patch), ("PUT", BODIES[resource]), ("DELETE", None)):
        r = await client.request(method, f"/scim/v2/{resource}/{rid}", json=body, headers=stale)
        assert r.status == 412, (method, await r.text())
        assert (await r.json(content_type=None))["status"] == "412"
    r = await client.get(f"/scim/v2/{resource}/{rid}", headers=h)
    current = await r.json(content_type=None)
    assert current["meta"]["version"] == 'W/"2"' and current.get(title) == "v2"

    r = await client.get(f"/scim/v2/{resource}/{rid}", headers={**h, "If-None-Match": 'W/"2"'})
    assert r.status == 304 and r.headers["ETag"] == 'W/"2"'
    r = await client.get(f"/scim/v2/{resource}/{rid}", headers={**h, "If-None-Match": 'W/"1"'})
    assert r.status == 200
    r = await client.delete(f"/scim/v2/{resource}/{rid}", headers={**h, "If-Match": "*"})
    assert r.status == 204
