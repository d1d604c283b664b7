"""Workload identity federation / private_key_jwt (RFC 7523 2.2 and 3) against a local issuer:
a key made in the test, its JWKS served on 127.0.0.1 by a real HTTP server."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from service.app import oauth
from service.app.federation import ASSERTION_TYPE
from tests.conftest import Tenant
from tests.support import bearer, cli, env_for

ISSUER = "https://login.example.test/tenant-1/v2.0"
SUBJECT = "spn:7f1d0c2e"


@dataclass
class Issuer:
    """A JWKS endpoint on 127.0.0.1 whose key set the test can change (key rotation)."""

    keys: list[Any] = field(default_factory=list)
    fetches: int = 0
    url: str = ""

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in self.keys]}


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    state = Issuer(keys=[ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256"})])

    async def jwks(request: web.Request) -> web.Response:
        state.fetches += 1
        return web.json_response(state.jwks())

    app = web.Application()
    app.router.add_get("/keys", jwks)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/keys"))
    yield state
    await server.close()


async def federated(pool: asyncpg.Pool, tenant: Tenant, issuer: Issuer) -> uuid.UUID:
    async with pool.acquire() as conn:
        return await oauth.federate_client(conn, tenant.id, "entra-wif", issuer=ISSUER, subject=SUBJECT,
                                           jwks_url=issuer.url, jwks=None)


def assertion(key: Any, audience: str, *, alg: str = "ES256", **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "sub": SUBJECT, "aud": audience, "iat": now, "exp": now + 300,
               "jti": uuid.uuid4().hex, **claims}
    return jwt.encode({"alg": alg, "kid": key.kid}, {k: v for k, v in payload.items() if v is not None}, key)


def token_endpoint(client: TestClient) -> str:
    return str(client.make_url("/oauth2/token"))


async def post_assertion(client: TestClient, value: str, **extra: str) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/oauth2/token", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": value, **extra,
    })
    return resp.status, await resp.json()


async def test_a_signed_assertion_gets_a_token_that_reaches_scim(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant, issuer: Issuer
) -> None:
    """RFC 7523 2.2: client_assertion_type jwt-bearer with an assertion signed by the trusted
    issuer's key; aud = the token endpoint."""
    client_id = await federated(pool, tenant, issuer)
    status, body = await post_assertion(client, assertion(issuer.keys[0], token_endpoint(client)),
                                        client_id=str(client_id))
    assert status == 200, body
    assert (await client.get("/scim/v2/Users", headers=bearer(body["access_token"]))).status == 200


async def test_an_entra_style_assertion_with_the_registered_audience(
    dsn: str, client: TestClient, tmp_path: Path
) -> None:
    """Entra's workload identity federation sends its own token as the assertion: aud is the
    application (api://<app id>), registered with `client federate --audience`; client_id and a
    non-standard baseAddress come along and no scope."""
    env = env_for(dsn)
    cli("tenant", "create", "wif", env=env)
    key = RSAKey.generate_key(2048, parameters={"kid": "entra-key", "alg": "RS256"})
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    client_id = cli("client", "federate", "--tenant", "wif", "--label", "entra-wif", "--issuer", ISSUER,
                    "--subject", SUBJECT, "--jwks-file", str(tmp_path / "keys.json"),
                    "--audience", "api://0f3c9b2e-app", env=env).stdout.strip()
    value = assertion(key, "api://0f3c9b2e-app", alg="RS256", tid="tenant-1", ver="2.0")
    status, body = await post_assertion(client, value, client_id=client_id, baseAddress="https://example.test/scim/v2")
    assert status == 200, body
    other = assertion(key, "api://someone-else", alg="RS256")
    assert (await post_assertion(client, other, client_id=client_id))[0] == 401


async def test_a_replayed_assertion_is_refused(client: TestClient, pool: asyncpg.Pool, tenant: Tenant, issuer: Issuer) -> None:
    """RFC 7523 3 item 7: a jti is used once."""
    await federated(pool, tenant, issuer)
    value = assertion(issuer.keys[0], token_endpoint(client))
    assert (await post_assertion(client, value))[0] == 200
    status, body = await post_assertion(client, value)
    assert status == 401 and body["error"] == "invalid_client" and "jti" in body["error_description"]


@pytest.mark.parametrize(("claims", "why"), [
    ({"aud": "https://someone-else.example/token"}, "aud"),
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"exp": int(time.time()) + 86400}, "longer"),
    ({"iss": "https://evil.example/"}, "issuer"),
    ({"sub": "someone-else"}, "subject"),
    ({"jti": None}, "jti"),
    ({"nbf": int(time.time()) + 3600}, "nbf"),
])
async def test_claims_that_do_not_hold_are_invalid_client(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant, issuer: Issuer, claims: dict[str, Any], why: str
) -> None:
    """RFC 7523 3 items 1 to 5: iss, sub, aud, exp, nbf; and a jti to make replay detectable."""
    await federated(pool, tenant, issuer)
    status, body = await post_assertion(client, assertion(issuer.keys[0], token_endpoint(client), **claims))
    assert status == 401 and body["error"] == "invalid_client", (why, body)


async def test_a_key_the_issuer_does_not_publish_is_refused(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant, issuer: Issuer
) -> None:
    """RFC 7523 3 item 9: the signature must verify with the issuer's keys."""
    await federated(pool, tenant, issuer)
    stranger = ECKey.generate_key("P-256", parameters={"kid": "k1"})  # same kid, other key
    status, body = await post_assertion(client, assertion(stranger, token_endpoint(client)))
    assert status == 401 and body["error"] == "invalid_client"


async def test_an_hmac_signature_with_the_public_key_is_refused(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant, issuer: Issuer
) -> None:
    """Algorithm confusion: only asymmetric algorithms are accepted, so the public JWKS can never
    serve as an HMAC secret."""
    await federated(pool, tenant, issuer)
    public = json.dumps(issuer.jwks()["keys"][0]).encode()
    forged = assertion(OctKey.import_key(public, {"kid": "k1"}), token_endpoint(client), alg="HS256")
    status, body = await post_assertion(client, forged)
    assert status == 401 and body["error"] == "invalid_client"


async def test_key_rotation_is_picked_up_on_an_unknown_kid(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant, issuer: Issuer
) -> None:
    """The JWKS is cached; an assertion with a key id the cache lacks refetches it once."""
    await federated(pool, tenant, issuer)
    assert (await post_assertion(client, assertion(issuer.keys[0], token_endpoint(client))))[0] == 200
    assert (await post_assertion(client, assertion(issuer.keys[0], token_endpoint(client))))[0] == 200
    assert issuer.fetches == 1  # cached
    rotated = RSAKey.generate_key(2048, parameters={"kid": "k2", "alg": "RS256"})
    issuer.keys.append(rotated)
    status, body = await post_assertion(client, assertion(rotated, token_endpoint(client), alg="RS256"))
    assert status == 200, body
    assert issuer.fetches == 2


async def test_client_federate_with_a_jwks_file(dsn: str, tmp_path: Path, client: TestClient, pool: asyncpg.Pool) -> None:
    """`scimledger client federate --jwks-file` prints the client id alone; the keys are stored
    with the client, so no URL is fetched."""
    env = env_for(dsn)
    cli("tenant", "create", "fed", env=env)
    key = ECKey.generate_key("P-256", parameters={"kid": "file-key"})
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    result = cli("client", "federate", "--tenant", "fed", "--label", "entra-wif", "--issuer", ISSUER,
                 "--subject", SUBJECT, "--jwks-file", str(jwks_file), env=env)
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and uuid.UUID(lines[0])
    status, body = await post_assertion(client, assertion(key, token_endpoint(client)))
    assert status == 200, body
