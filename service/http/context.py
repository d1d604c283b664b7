"""What a handler reads off its request: the caller, the actor to record, the base URL of
locations, and the request's database connection.

The connection: an authenticated request takes ONE pooled connection in the authentication
middleware and keeps it to the end: the token lookup, the rate-limit lease and the handler's
statements share it. That is one pool round trip per request instead of two or three, and no
request can hold one connection while waiting for another (which, with every connection taken,
would deadlock the pool).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from aiohttp import web

from projections.domain.actor import Actor
from service.app.preconditions import Target
from service.http.keys import CONNECTION, POOL, PRINCIPAL, REQUEST_ID, SETTINGS

SCIM_PREFIX = "/scim/v2"


@asynccontextmanager
async def connection(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    """The request's connection; routes outside authentication get one from the pool."""
    conn = request.get(CONNECTION)
    if conn is not None:
        yield conn
        return
    async with request.app[POOL].acquire() as pooled:
        yield pooled


def base_url(request: web.Request) -> str:
    """The SCIM base URL for `Location` and `meta.location`: SCIMLEDGER_PUBLIC_URL when set."""
    configured = request.app[SETTINGS].public_url
    if configured:
        return configured.rstrip("/") + SCIM_PREFIX
    return f"{request.scheme}://{request.host}{SCIM_PREFIX}"


def request_actor(request: web.Request) -> Actor:
    """The actor of an HTTP request: token id and label, scope, IdP client, address, request id."""
    principal = request[PRINCIPAL]
    return Actor(
        kind="token",
        token_id=str(principal.token_id),
        label=principal.label,
        scope=principal.scope,
        client=request.headers.get("User-Agent", "")[:512],
        ip=request.remote,
        request_id=request[REQUEST_ID],
    )


def write_target(request: web.Request) -> Target:
    """The resource of the URL a write aims at, with If-Match and the actor."""
    return Target(
        request[PRINCIPAL].tenant, request.match_info["id"], request.headers.get("If-Match"),
        request_actor(request),
    )
