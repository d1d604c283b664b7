"""/.search is POST only (RFC 7644 3.4.3): GET answers 405 with Allow and a SCIM error body."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant


@pytest.mark.parametrize("resource", ["Users", "Groups"])
async def test_get_on_search_is_405(client: TestClient, tenant: Tenant, resource: str) -> None:
    r = await client.get(f"/scim/v2/{resource}/.search", headers=tenant.headers)
    assert r.status == 405 and r.headers["Allow"] == "POST"
    body = await r.json(content_type=None)
    assert body["status"] == "405" and "POST" in body["detail"]
