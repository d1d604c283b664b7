"""Client authentication with a signed JWT (RFC 7523 2.2 and 3; private_key_jwt, workload
identity federation): which client an assertion names, and whether it holds.

The assertion's issuer and subject name the client (registered with `client federate`); its
signature must verify with the issuer's keys (joserfc; asymmetric algorithms only, so a public
JWKS can never be used as an HMAC secret); `aud` must name this server's token endpoint or its
issuer identifier (RFC 7523 3), or the audience registered with the client (Entra's workload
identity federation puts its application, `api://<app id>`, there); `exp` must lie in the future and at most MAX_LIFETIME_S ahead; `nbf` and `iat`
must not lie in the future (LEEWAY_S of clock skew); `jti` is single-use.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import asyncpg
from joserfc import jws, jwt
from joserfc.errors import JoseError

from service.app import oauth
from service.app.jwks import JwksCache, JwksUnavailable, parse_key_set

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_S = 60
MAX_LIFETIME_S = 3600
MAX_ASSERTION_BYTES = 16 * 1024


class InvalidAssertion(Exception):
    """The assertion does not authenticate a client (RFC 6749 5.2 invalid_client)."""


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if len(assertion) > MAX_ASSERTION_BYTES:
        raise InvalidAssertion(f"client_assertion exceeds {MAX_ASSERTION_BYTES} bytes")
    try:
        obj = jws.extract_compact(assertion.encode())  # parsed, not verified: it names the client
        header = obj.headers()
        claims = json.loads(obj.payload)
    except (JoseError, ValueError, UnicodeDecodeError) as e:
        raise InvalidAssertion("client_assertion is not a compact JWS") from e
    if not isinstance(claims, dict):
        raise InvalidAssertion("client_assertion's payload is not a JSON object")
    return header, claims


def check_claims(claims: dict[str, Any], client: oauth.FederatedClient, audiences: set[str], now: float) -> None:
    """RFC 7523 3, items 1 to 7, for a verified assertion (pure)."""
    if claims.get("iss") != client.issuer or claims.get("sub") != client.subject:
        raise InvalidAssertion("iss and sub must be the registered issuer and subject")
    aud = claims.get("aud")
    auds = set(aud) if isinstance(aud, list) else {aud}
    if client.audience:
        audiences = audiences | {client.audience}
    if not auds & audiences:
        raise InvalidAssertion(f"aud must name this token endpoint ({', '.join(sorted(audiences))})")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise InvalidAssertion("exp is required (a NumericDate)")
    if exp <= now - LEEWAY_S:
        raise InvalidAssertion("the assertion has expired")
    if exp > now + MAX_LIFETIME_S + LEEWAY_S:
        raise InvalidAssertion(f"the assertion lives longer than {MAX_LIFETIME_S} s")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (not isinstance(value, int | float) or value > now + LEEWAY_S):
            raise InvalidAssertion(f"{name} lies in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise InvalidAssertion("jti is required (a string of at most 256 characters)")


async def authenticate_assertion(
    conn: asyncpg.Connection, assertion: str, audiences: set[str], cache: JwksCache, *, client_id: str | None
) -> oauth.AuthenticatedClient:
    header, claims = _unverified(assertion)
    issuer, subject = claims.get("iss"), claims.get("sub")
    if not isinstance(issuer, str) or not isinstance(subject, str):
        raise InvalidAssertion("iss and sub are required")
    client = await oauth.federated_client(conn, issuer, subject)
    if client is None:
        raise InvalidAssertion("no client trusts this issuer and subject")
    if client_id is not None and client_id != str(client.id):
        raise InvalidAssertion("client_id does not match the assertion's client")
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    try:
        keys = parse_key_set(client.jwks) if client.jwks is not None else await cache.keys(str(client.jwks_url), kid=kid)
    except JwksUnavailable as e:
        raise InvalidAssertion(f"the issuer's keys are not available: {e}") from e
    try:
        jwt.decode(assertion, keys, algorithms=list(ALGORITHMS))
    except (JoseError, ValueError) as e:
        raise InvalidAssertion("the assertion's signature does not verify with the issuer's keys") from e
    now = time.time()
    check_claims(claims, client, audiences, now)
    expires = dt.datetime.fromtimestamp(float(claims["exp"]), dt.UTC)
    if not await oauth.use_jti(conn, client, str(claims["jti"]), expires):
        raise InvalidAssertion("the assertion was used before (jti)")
    return oauth.AuthenticatedClient(client.tenant_id, client.id, client.scope, None)
