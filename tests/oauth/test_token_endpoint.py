"""The token endpoint, client credentials with a secret (RFC 6749 4.4), over real HTTP.

Each error of RFC 6749 5.2 the endpoint can give has its own test; rotation keeps two secrets
valid at once; revoking a secret or a client refuses its access tokens on the next request.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any
from urllib.parse import quote_plus

import asyncpg
from aiohttp.test_utils import TestClient

from service.app import oauth
from tests.conftest import Tenant
from tests.support import bearer

TOKEN = "/oauth2/token"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GRANT = {"grant_type": "client_credentials"}


async def make_client(pool: asyncpg.Pool, tenant: Tenant, *, scope: str = "scim") -> tuple[str, str]:
    async with pool.acquire() as conn:
        client_id, secret = await oauth.create_client(conn, tenant.id, "entra-prod", scope)
    return str(client_id), secret


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def token_request(client: TestClient, data: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    resp = await client.post(TOKEN, data=data, headers=headers or {})
    return resp.status, await resp.json(), resp.headers


async def test_client_secret_basic_gets_a_token_that_reaches_scim(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """RFC 6749 4.4.2/4.4.3 and 2.3.1: Basic authentication, a Bearer token with expires_in,
    no-store; the token works on /scim/v2 (Entra's Validate_Credentials_Test)."""
    client_id, secret = await make_client(pool, tenant)
    status, body, headers = await token_request(client, GRANT, basic(client_id, secret))
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["scope"] == "scim"
    assert 3600 <= body["expires_in"] <= 21600
    assert headers["Cache-Control"] == "no-store"
    users = await client.get("/scim/v2/Users?startIndex=1&count=1", headers=bearer(body["access_token"]))
    assert users.status == 200


async def test_client_secret_post_gets_a_token(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """RFC 6749 2.3.1: the credentials in the form body."""
    client_id, secret = await make_client(pool, tenant)
    status, body, _ = await token_request(client, {**GRANT, "client_id": client_id, "client_secret": secret})
    assert status == 200 and body["access_token"].startswith(oauth.ACCESS_TOKEN_PREFIX)


async def test_a_wrong_secret_is_invalid_client_with_www_authenticate(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """RFC 6749 5.2: invalid_client answers 401 with WWW-Authenticate when Basic was used."""
    client_id, _ = await make_client(pool, tenant)
    status, body, headers = await token_request(client, GRANT, basic(client_id, "scimledger_cs_wrong"))
    assert status == 401 and body["error"] == "invalid_client"
    assert headers["WWW-Authenticate"].startswith("Basic")
    assert headers["Cache-Control"] == "no-store"


async def test_no_client_authentication_is_invalid_client(client: TestClient) -> None:
    status, body, _ = await token_request(client, GRANT)
    assert status == 401 and body["error"] == "invalid_client"


async def test_an_unknown_client_id_is_invalid_client(client: TestClient) -> None:
    status, body, _ = await token_request(client, GRANT, basic(str(uuid.uuid4()), "scimledger_cs_x"))
    assert status == 401 and body["error"] == "invalid_client"


async def test_a_missing_grant_type_is_invalid_request(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    client_id, secret = await make_client(pool, tenant)
    status, body, _ = await token_request(client, {}, basic(client_id, secret))
    assert status == 400 and body["error"] == "invalid_request"


async def test_another_grant_type_is_unsupported_grant_type(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    client_id, secret = await make_client(pool, tenant)
    status, body, _ = await token_request(client, {"grant_type": "password"}, basic(client_id, secret))
    assert status == 400 and body["error"] == "unsupported_grant_type"


async def test_a_scope_the_client_lacks_is_invalid_scope(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """RFC 6749 3.3 and 5.2: a scope beyond the client's is refused; its own scope is fine."""
    client_id, secret = await make_client(pool, tenant)
    status, body, _ = await token_request(client, {**GRANT, "scope": "audit"}, basic(client_id, secret))
    assert status == 400 and body["error"] == "invalid_scope"
    status, body, _ = await token_request(client, {**GRANT, "scope": "scim"}, basic(client_id, secret))
    assert status == 200 and body["scope"] == "scim"


async def test_two_authentication_methods_are_invalid_request(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """RFC 6749 2.3: a client MUST NOT use more than one authentication method per request."""
    client_id, secret = await make_client(pool, tenant)
    status, body, _ = await token_request(client, {**GRANT, "client_id": client_id, "client_secret": secret},
                                          basic(client_id, secret))
    assert status == 400 and body["error"] == "invalid_request"


async def test_a_repeated_parameter_is_invalid_request(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """RFC 6749 3.2: parameters MUST NOT be included more than once."""
    client_id, secret = await make_client(pool, tenant)
    resp = await client.post(TOKEN, data="grant_type=client_credentials&grant_type=client_credentials",
                             headers={**FORM, **basic(client_id, secret)})
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"


async def test_a_json_body_is_invalid_request(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """RFC 6749 4.4.2: the request is application/x-www-form-urlencoded."""
    client_id, secret = await make_client(pool, tenant)
    resp = await client.post(TOKEN, json=GRANT, headers=basic(client_id, secret))
    assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"


async def test_rotation_keeps_two_secrets_valid_then_revoking_one_refuses_its_tokens(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """Several active secrets per client: the old and the new both work during the rotation; a
    revoked secret gets no token and its access tokens are refused at once."""
    client_id, old = await make_client(pool, tenant)
    async with pool.acquire() as conn:
        new_id, new = await oauth.add_secret(conn, uuid.UUID(client_id))
    tokens = {}
    for name, secret in (("old", old), ("new", new)):
        status, body, _ = await token_request(client, GRANT, basic(client_id, secret))
        assert status == 200, (name, body)
        tokens[name] = body["access_token"]
    async with pool.acquire() as conn:
        old_id = next(s.id for c in await oauth.list_clients(conn, tenant.id) for s in c.secrets if s.id != new_id)
        await oauth.revoke_secret(conn, uuid.UUID(client_id), old_id)
    refused = await client.get("/scim/v2/Users", headers=bearer(tokens["old"]))
    assert refused.status == 401
    assert (await client.get("/scim/v2/Users", headers=bearer(tokens["new"]))).status == 200
    status, body, _ = await token_request(client, GRANT, basic(client_id, old))
    assert status == 401 and body["error"] == "invalid_client"


async def test_revoking_the_client_refuses_its_access_tokens_at_once(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    client_id, secret = await make_client(pool, tenant)
    _, body, _ = await token_request(client, GRANT, basic(client_id, secret))
    assert (await client.get("/scim/v2/Users", headers=bearer(body["access_token"]))).status == 200
    async with pool.acquire() as conn:
        await oauth.revoke_client(conn, uuid.UUID(client_id))
    assert (await client.get("/scim/v2/Users", headers=bearer(body["access_token"]))).status == 401


async def test_an_audit_client_reaches_audit_and_not_scim(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """The scope of the client is the scope of its tokens, as for bearer tokens."""
    client_id, secret = await make_client(pool, tenant, scope="audit")
    _, body, _ = await token_request(client, GRANT, basic(client_id, secret))
    assert (await client.get("/audit/v1/events", headers=bearer(body["access_token"]))).status == 200
    assert (await client.get("/scim/v2/Users", headers=bearer(body["access_token"]))).status == 403


async def test_the_audit_trail_names_the_oauth_client(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """The actor of a write made with an access token is the client: its id and label."""
    client_id, secret = await make_client(pool, tenant)
    _, body, _ = await token_request(client, GRANT, basic(client_id, secret))
    created = await client.post("/scim/v2/Users", json={"userName": "oauth@example.com"},
                                headers={**bearer(body["access_token"]), "Content-Type": "application/scim+json"})
    assert created.status == 201
    async with pool.acquire() as conn:
        actor = await conn.fetchval(
            "SELECT metadata->'actor' FROM events WHERE tenant_id = $1 ORDER BY global_position DESC LIMIT 1", tenant.id
        )
    assert actor["tokenId"] == client_id and actor["label"] == "entra-prod"


async def test_token_requests_are_throttled_per_client(client: TestClient, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """Guessing a secret costs the guesser: after the burst, 429 with Retry-After before any
    secret is checked."""
    client_id, _ = await make_client(pool, tenant)
    statuses = []
    for _ in range(15):
        status, _, headers = await token_request(client, GRANT, basic(client_id, "scimledger_cs_guess"))
        statuses.append(status)
        if status == 429:
            assert int(headers["Retry-After"]) >= 1
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}


async def test_metadata_names_the_token_endpoint(client: TestClient) -> None:
    """RFC 8414 2 and 3: issuer, token_endpoint and the supported methods."""
    resp = await client.get("/.well-known/oauth-authorization-server")
    body = await resp.json()
    assert resp.status == 200
    assert body["token_endpoint"] == body["issuer"] + "/oauth2/token"
    assert body["grant_types_supported"] == ["client_credentials"]
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= set(body["token_endpoint_auth_methods_supported"])
