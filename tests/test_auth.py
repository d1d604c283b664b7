"""Bearer-token authentication (RFC 7644 section 2; RFC 6750 section 3 for WWW-Authenticate)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.app import tenancy
from tests.conftest import Tenant, make_tenant
from tests.support import ERROR_SCHEMA

URL = "/scim/v2/ServiceProviderConfig"


async def assert_401(resp) -> None:
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.content_type == "application/scim+json"
    body = await resp.json(content_type=None)
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == "401"
    assert body["detail"]


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not-a-token", "Bearer scimledger_x"],
)
async def test_missing_or_wrong_token_gives_scim_401(client: TestClient, tenant: Tenant, header) -> None:
    headers = {} if header is None else {"Authorization": header}
    await assert_401(await client.get(URL, headers=headers))


async def test_valid_token_passes_and_scheme_is_case_insensitive(client: TestClient, tenant: Tenant) -> None:
    resp = await client.get(URL, headers={"Authorization": f"bearer {tenant.secret}"})
    assert resp.status == 200


async def test_revoked_token_is_refused_at_once(client: TestClient, tenant: Tenant, pool: asyncpg.Pool) -> None:
    """A revoked token is refused from the moment the revocation's NOTIFY reaches the worker's
    token cache (service/app/token_cache.py): within one second at the very most, while the
    token was served from the cache just before."""
    assert (await client.get(URL, headers=tenant.headers)).status == 200
    assert (await client.get(URL, headers=tenant.headers)).status == 200  # now cached
    async with pool.acquire() as conn:
        await tenancy.revoke_token(conn, tenant.token_id)
    deadline = time.monotonic() + 1.0
    while (resp := await client.get(URL, headers=tenant.headers)).status == 200:
        assert time.monotonic() < deadline, "the revoked token is still served after 1 s"
        await asyncio.sleep(0.005)
    await assert_401(resp)


async def test_secrets_are_stored_only_as_hashes(pool: asyncpg.Pool, tenant: Tenant) -> None:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM tokens")
    flat = repr([dict(r) for r in rows])
    assert tenant.secret not in flat
    assert tenant.secret.removeprefix(tenancy.SECRET_PREFIX) not in flat
    assert rows[0]["secret_hash"] == tenancy.hash_secret(tenant.secret)


async def test_audit_token_cannot_reach_scim_endpoints(client: TestClient, pool: asyncpg.Pool) -> None:
    auditor = await make_tenant(pool, "audited", label="auditor", scope="audit")
    resp = await client.get(URL, headers=auditor.headers)
    assert resp.status == 403
    body = await resp.json(content_type=None)
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "403"


async def test_health_endpoints_need_no_token(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ready"


async def test_response_carries_request_id(client: TestClient, tenant: Tenant) -> None:
    resp = await client.get(URL, headers={**tenant.headers, "X-Request-Id": "req-123"})
    assert resp.headers["X-Request-Id"] == "req-123"
    resp = await client.get(URL, headers=tenant.headers)
    assert len(resp.headers["X-Request-Id"]) == 32


async def test_scim_token_cannot_reach_audit_endpoints(client: TestClient, tenant: Tenant) -> None:
    """Scopes (docs/tenancy.md): a provisioning token reads no audit log, whatever the route."""
    for path in ("/audit/v1", "/audit/v1/events", "/audit/v1/anything"):
        resp = await client.get(path, headers=tenant.headers)
        assert resp.status == 403, path
        body = await resp.json(content_type=None)
        assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "403" and "scope" in body["detail"]


async def test_audit_token_reaches_audit_endpoints_only(client: TestClient, pool: asyncpg.Pool) -> None:
    auditor = await make_tenant(pool, "audited", label="auditor", scope="audit")
    for path in ("/scim/v2/Users", "/scim/v2/Groups"):
        resp = await client.post(path, headers=auditor.headers, json={})
        assert resp.status == 403, path
    resp = await client.get("/audit/v1/events", headers=auditor.headers)
    assert resp.status not in (401, 403)  # past authentication and scope (200, or 404 if no route)
    assert (await client.get("/audit/v1/events")).status == 401
