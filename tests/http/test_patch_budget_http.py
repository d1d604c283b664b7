"""Issue 12 item 3 over real HTTP: the PATCH that held the event loop for 20 s is a 400 now.

RFC 7644 3.12 (tooMany: more than the server is willing to process) and 3.5.2 (a PATCH is
atomic: refused, it changes nothing). The cost at the limit, and /healthz while such PATCHes
arrive back to back, are measured by tests/bench/test_patch_budget_bench.py.
"""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from service.scim.budget import WORK_BUDGET
from service.scim.limits import MAX_STORED_VALUES
from service.scim.patch import MAX_PATCH_VALUES
from tests.conftest import Tenant
from tests.support import CORE_GROUP, CORE_USER, ERROR_SCHEMA, body_of, patch

TERMS_45 = " or ".join(f'type eq "t{i}"' for i in range(45)) + " or value pr"


async def test_issue12_item3_reproducer_is_400_too_many_and_changes_nothing(client: TestClient, tenant: Tenant) -> None:
    """40 x `replace emails[type eq "t0" or ... (45 terms) or value pr].display` on a user with
    as many emails as may be stored: 400 tooMany naming the limit; the user keeps its version
    and its emails."""
    emails = [{"value": f"e{i}@example.com", "type": f"t{i % 50}"} for i in range(MAX_STORED_VALUES)]
    r = await client.post("/scim/v2/Users", json={"schemas": [CORE_USER], "userName": "many", "emails": emails},
                          headers=tenant.headers)
    assert r.status == 201, await r.text()
    user = await body_of(r)
    body = patch(*[{"op": "replace", "path": f"emails[{TERMS_45}].display", "value": "d"}] * 40)

    r = await client.patch(f"/scim/v2/Users/{user['id']}", json=body, headers=tenant.headers)

    assert r.status == 400, await r.text()
    error = await body_of(r)
    assert error["schemas"] == [ERROR_SCHEMA] and error["scimType"] == "tooMany"
    assert f"{WORK_BUDGET:,} units" in error["detail"]
    r = await client.get(f"/scim/v2/Users/{user['id']}", headers=tenant.headers)
    after = await body_of(r)
    assert after["meta"]["version"] == user["meta"]["version"]
    assert after["emails"] == user["emails"]


async def test_too_many_values_in_a_group_patch_is_400_too_many(client: TestClient, tenant: Tenant) -> None:
    """A member PATCH carrying more than MAX_PATCH_VALUES values is refused before any id is
    looked up: 400 tooMany naming the limit, and the group is unchanged."""
    r = await client.post("/scim/v2/Groups", json={"schemas": [CORE_GROUP], "displayName": "Big"}, headers=tenant.headers)
    assert r.status == 201
    group = await body_of(r)
    ids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(MAX_PATCH_VALUES // 4 + 1)]
    body = patch(*[{"op": "add", "path": "members", "value": [{"value": i} for i in ids]}] * 2)

    r = await client.patch(f"/scim/v2/Groups/{group['id']}", json=body, headers=tenant.headers)

    assert r.status == 400, await r.text()
    error = await body_of(r)
    assert error["scimType"] == "tooMany" and f"{MAX_PATCH_VALUES:,} values" in error["detail"]
    r = await client.get(f"/scim/v2/Groups/{group['id']}", headers=tenant.headers)
    assert (await body_of(r))["meta"]["version"] == group["meta"]["version"]
