"""The OAuth 2.0 token endpoint (RFC 6749 4.4, client credentials; RFC 7523 2.2, JWT client
authentication) and the authorization server metadata (RFC 8414).

    POST /oauth2/token        application/x-www-form-urlencoded; grant_type=client_credentials
    GET  /.well-known/oauth-authorization-server

Client authentication: client_secret_basic (RFC 6749 2.3.1: the id and secret form-urlencoded,
then Basic), client_secret_post, or private_key_jwt (client_assertion_type and
client_assertion). A request using more than one is refused (RFC 6749 2.3). Errors are RFC 6749
5.2 bodies: `invalid_client` answers 401 with `WWW-Authenticate`. Every answer carries
`Cache-Control: no-store`. Attempts are throttled per source address and per client id before
any secret is looked at, so guessing costs the guesser, not the database.
"""

from __future__ import annotations

import base64
import binascii
import uuid
import weakref
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web
from multidict import MultiDictProxy

from service.app import oauth
from service.app.federation import (
    ALGORITHMS,
    ASSERTION_TYPE,
    InvalidAssertion,
    authenticate_assertion,
)
from service.app.jwks import JwksCache
from service.app.principal import SCOPES
from service.app.ratelimit import Limit, RateLimiter
from service.http.context import connection
from service.http.keys import SETTINGS
from service.http.wire import json_response

TOKEN_PATH = "/oauth2/token"
METADATA_PATH = "/.well-known/oauth-authorization-server"
FORM = "application/x-www-form-urlencoded"
PER_SOURCE = Limit(rate=2.0, burst=20.0)  # token requests per second from one address
PER_CLIENT = Limit(rate=1.0, burst=10.0)  # ... and for one client id
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_THROTTLE_NAMESPACE = uuid.UUID("5c1ed6e0-0a17-4a5e-9f1b-6f61a7a0c0de")


class TokenError(Exception):
    """An RFC 6749 5.2 error response."""

    def __init__(self, error: str, description: str, *, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status
        self.headers = headers or {}


def _error(e: TokenError) -> web.Response:
    response = json_response({"error": e.error, "error_description": e.description}, status=e.status)
    response.headers.update(NO_STORE)
    response.headers.update(e.headers)
    return response


def invalid_client(description: str) -> TokenError:
    return TokenError("invalid_client", description, status=401,
                      headers={"WWW-Authenticate": 'Basic realm="scimledger", charset="UTF-8"'})


def root_url(request: web.Request) -> str:
    configured = request.app[SETTINGS].public_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(client id, secret) of an `Authorization: Basic` header, each form-urlencoded first
    (RFC 6749 2.3.1); None when the header is not Basic."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as e:
        raise invalid_client("the Basic credentials are not base64 of client_id:client_secret") from e
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise invalid_client("the Basic credentials are not client_id:client_secret")
    return unquote_plus(client_id), unquote_plus(secret)


def single_params(form: MultiDictProxy[Any]) -> dict[str, str]:
    """RFC 6749 3.2: a parameter sent more than once is an invalid request."""
    out: dict[str, str] = {}
    for key in form:
        values = form.getall(key)
        if len(values) != 1 or not isinstance(values[0], str):
            raise TokenError("invalid_request", f"parameter {key!r} must be sent once, as text")
        out[key] = values[0]
    return out


def check_scope(requested: str | None, granted: str) -> None:
    """An optional `scope` must ask for no more than the client has (RFC 6749 3.3)."""
    if requested is None or not requested.strip():
        return
    unknown = [s for s in requested.split() if s != granted]
    if unknown:
        raise TokenError("invalid_scope", f"this client has scope {granted!r}; not {', '.join(unknown)}")


_LIMITERS: weakref.WeakKeyDictionary[web.Application, RateLimiter] = weakref.WeakKeyDictionary()


async def _throttle(request: web.Request, conn: Any, client_key: str | None) -> None:
    limiter = _LIMITERS.setdefault(request.app, RateLimiter())
    keys = [(f"source:{request.remote}", PER_SOURCE)]
    if client_key:
        keys.append((f"client:{client_key[:200]}", PER_CLIENT))
    for key, limit in keys:
        wait = await limiter.admit(conn, uuid.uuid5(_THROTTLE_NAMESPACE, key), limit)
        if wait is not None:
            raise TokenError("invalid_request", f"too many token requests; retry after {wait} s",
                             status=429, headers={"Retry-After": str(wait)})


async def token(request: web.Request) -> web.Response:
    try:
        return await _token(request)
    except TokenError as e:
        return _error(e)


async def _token(request: web.Request) -> web.Response:
    if request.content_type != FORM:
        raise TokenError("invalid_request", f"the token request must be {FORM} (RFC 6749 4.4.2)")
    params = single_params(await request.post())
    basic = basic_credentials(request.headers.get("Authorization", ""))
    assertion = params.get("client_assertion")
    methods = [m for m, used in (("client_secret_basic", basic is not None),
                                 ("client_secret_post", "client_secret" in params),
                                 ("private_key_jwt", assertion is not None or "client_assertion_type" in params)) if used]
    if len(methods) > 1:
        raise TokenError("invalid_request", f"one client authentication method only, not {' and '.join(methods)}")
    client_key = basic[0] if basic else params.get("client_id")
    async with connection(request) as conn:
        await _throttle(request, conn, client_key)
        grant = params.get("grant_type")
        if grant is None:
            raise TokenError("invalid_request", "grant_type is required")
        if grant != "client_credentials":
            raise TokenError("unsupported_grant_type", "only grant_type=client_credentials is supported")
        client: oauth.AuthenticatedClient | None
        if not methods:
            raise invalid_client("client authentication is required (Basic, client_secret or client_assertion)")
        if methods == ["private_key_jwt"]:
            if params.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
                raise TokenError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE} with a client_assertion")
            root = root_url(request)
            try:
                client = await authenticate_assertion(
                    conn, assertion, {root + TOKEN_PATH, root}, request.app[JWKS_CACHE],
                    client_id=params.get("client_id"),
                )
            except InvalidAssertion as e:
                raise invalid_client(str(e)) from e
        else:
            client_id, secret = basic if basic else (params.get("client_id", ""), params["client_secret"])
            if basic and params.get("client_id") not in (None, client_id):
                raise TokenError("invalid_request", "client_id differs from the Basic credentials")
            client = await oauth.client_by_secret(conn, client_id, secret)
            if client is None:
                raise invalid_client("unknown client, or the secret is wrong, revoked or expired")
        check_scope(params.get("scope"), client.scope)
        issued = await oauth.issue_access_token(conn, client, request.app[SETTINGS].oauth_token_ttl_s)
    response = json_response({
        "access_token": issued.value, "token_type": "Bearer", "expires_in": issued.expires_in, "scope": issued.scope,
    })
    response.headers.update(NO_STORE)
    return response


async def metadata(request: web.Request) -> web.Response:
    """RFC 8414 2: what a client needs to know to get a token here."""
    root = root_url(request)
    return json_response({
        "issuer": root,
        "token_endpoint": root + TOKEN_PATH,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "scopes_supported": list(SCOPES),
        "response_types_supported": [],
        "service_documentation": root + "/scim/v2/ServiceProviderConfig",
    })


JWKS_CACHE = web.AppKey("jwks_cache", JwksCache)


def setup(app: web.Application) -> None:
    """The per-worker key cache of federated issuers; a token lifetime out of range stops the
    start (Entra accepts 60 to 360 minutes)."""
    ttl = app[SETTINGS].oauth_token_ttl_s
    if not oauth.MIN_TOKEN_TTL_S <= ttl <= oauth.MAX_TOKEN_TTL_S:
        raise ValueError(f"SCIMLEDGER_OAUTH_TOKEN_TTL must be {oauth.MIN_TOKEN_TTL_S} to {oauth.MAX_TOKEN_TTL_S} s, not {ttl}")
    app[JWKS_CACHE] = JwksCache()
