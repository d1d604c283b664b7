"""The Host header and X-Request-Id are client input (issue 12, item 10): without
SCIMLEDGER_PUBLIC_URL the Host was reflected into `Location` and `meta.location` unchecked, and a
client-chosen X-Request-Id went into the audit trail as sent. A Host that is not one of the names
served is refused with a SCIM 421; a request id is kept only if it matches a safe pattern.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from service.http.app import create_app
from service.runtime.config import Settings
from service.server.serve import warn_about_hosts
from tests.conftest import Tenant
from tests.support import ERROR_SCHEMA, new_user


async def client_for(settings: Settings, dsn: str, aiohttp_client: Any) -> Any:
    return await aiohttp_client(create_app(replace(settings, run_followers=False), dsn))


async def test_a_host_not_served_is_421_and_never_reflected(
    settings: Settings, dsn: str, tenant: Tenant, aiohttp_client: Any
) -> None:
    """Bound to loopback without SCIMLEDGER_PUBLIC_URL, only the loopback names are served: any
    other Host is a SCIM 421 (RFC 9110 15.5.20, RFC 7644 3.12) and creates nothing, so it can
    never reach `Location` or `meta.location`; a loopback Host is reflected as before."""
    client = await client_for(settings, dsn, aiohttp_client)
    for host in ("evil.example", "evil.example:443", "127.0.0.1.evil.example", "[::2]:80"):
        resp = await client.post("/scim/v2/Users", json=new_user("a@x.example"),
                                 headers={**tenant.headers, "Host": host})
        body = await resp.json(content_type=None)
        assert resp.status == 421, (host, body)
        assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "421"
        assert "Location" not in resp.headers
    for host in ("localhost:8080", "LOCALHOST", "127.0.0.1:1", "[::1]:8080"):
        resp = await client.get("/scim/v2/Users", headers={**tenant.headers, "Host": host})
        assert resp.status == 200, host
    resp = await client.post("/scim/v2/Users", json=new_user("a@x.example"),
                             headers={**tenant.headers, "Host": "localhost:9999"})
    assert resp.status == 201
    assert resp.headers["Location"].startswith("http://localhost:9999/scim/v2/Users/")
    assert (await resp.json(content_type=None))["meta"]["location"] == resp.headers["Location"]


async def test_with_a_public_url_only_its_host_is_served_and_probes_take_any(
    settings: Settings, dsn: str, tenant: Tenant, aiohttp_client: Any
) -> None:
    """With SCIMLEDGER_PUBLIC_URL, its host is the one served (Location comes from the URL);
    /healthz, /readyz and /metrics answer whatever the Host, since orchestrators call them by
    the pod's address."""
    client = await client_for(replace(settings, public_url="https://scim.example.com"), dsn, aiohttp_client)
    resp = await client.get("/scim/v2/Users", headers={**tenant.headers, "Host": "127.0.0.1"})
    assert resp.status == 421
    resp = await client.post("/scim/v2/Users", json=new_user("a@x.example"),
                             headers={**tenant.headers, "Host": "Scim.Example.com"})
    assert resp.status == 201 and resp.headers["Location"].startswith("https://scim.example.com/scim/v2/")
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path, headers={"Host": "10.1.2.3:8080"})).status == 200, path


async def test_allowed_hosts_setting_names_the_hosts_served(
    settings: Settings, dsn: str, tenant: Tenant, aiohttp_client: Any
) -> None:
    """SCIMLEDGER_ALLOWED_HOSTS lists the names served; `*` serves any Host."""
    client = await client_for(replace(settings, allowed_hosts=("scim.internal", "scim.example.com")), dsn,
                              aiohttp_client)
    assert (await client.get("/scim/v2/Users", headers={**tenant.headers, "Host": "scim.internal:8080"})).status == 200
    assert (await client.get("/scim/v2/Users", headers={**tenant.headers, "Host": "localhost"})).status == 421
    anything = await client_for(replace(settings, allowed_hosts=("*",)), dsn, aiohttp_client)
    assert (await anything.get("/scim/v2/Users", headers={**tenant.headers, "Host": "whatever"})).status == 200


@pytest.mark.parametrize("given", ["a b", "x" * 65, "<script>", "id\u00e9", "a\tb", "a;b", "../x", ""])
async def test_an_unsafe_request_id_is_replaced_by_a_server_id(
    given: str, settings: Settings, dsn: str, tenant: Tenant, pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    """A client's X-Request-Id is echoed, logged and stored in the audit trail only if it matches
    ^[A-Za-z0-9._:-]{1,64}$; anything else is replaced by a server-generated id, which is what
    the response and the event's metadata carry."""
    client = await client_for(settings, dsn, aiohttp_client)
    resp = await client.post("/scim/v2/Users", json=new_user("a@x.example"),
                             headers={**tenant.headers, "X-Request-Id": given.encode().decode("latin-1")})
    assert resp.status == 201
    used = resp.headers["X-Request-Id"]
    assert used != given and len(used) == 32 and int(used, 16) >= 0
    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT metadata->'actor'->>'requestId' FROM events WHERE tenant_id = $1", tenant.id)
    assert stored == used


async def test_a_safe_request_id_is_kept(settings: Settings, dsn: str, tenant: Tenant, pool: asyncpg.Pool,
                                         aiohttp_client: Any) -> None:
    client = await client_for(settings, dsn, aiohttp_client)
    for given in ("okta-req-1", "A.b_c:d-1", "x" * 64):
        resp = await client.get("/scim/v2/Users", headers={**tenant.headers, "X-Request-Id": given})
        assert resp.headers["X-Request-Id"] == given


def test_serve_warns_when_bound_beyond_loopback_without_a_public_url() -> None:
    """`serve` on a non-loopback address without SCIMLEDGER_PUBLIC_URL warns at start (and says
    when any Host is accepted); on loopback or with a public URL it does not."""
    with capture_logs() as logs:
        warn_about_hosts(Settings(host="0.0.0.0"))
        warn_about_hosts(Settings(host="0.0.0.0", allowed_hosts=("scim.internal",)))
        warn_about_hosts(Settings(host="127.0.0.1"))
        warn_about_hosts(Settings(host="0.0.0.0", public_url="https://scim.example.com"))
    assert [(e["event"], e["allowed_hosts"]) for e in logs] == [
        ("serve.public_url_unset", "any"), ("serve.public_url_unset", ["scim.internal"])]
    assert all(e["log_level"] == "warning" for e in logs)
