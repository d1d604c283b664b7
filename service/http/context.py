"""What a handler reads off its request: the caller, the actor to record, the base URL of
locations, and the request's database connection.

The connection is held for the shortest span (docs/security.md): authentication takes one for the
token lookup and the rate-limit lease and gives it back before the body is read, so a client that
sends its body slowly holds no connection; the handler calls `connection(request)` after
`read_json_object`, which acquires one then. A request without a body keeps the connection it
authenticated on (one pool checkout for a read). A request never holds two connections at once:
`connection()` inside `connection()` is the same one, so a full pool cannot deadlock. Waiting for
a connection is bounded (`pool_timeout_s`): beyond it the answer is 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from aiohttp import web

from projections.domain.actor import Actor
from service.app.preconditions import Target
from service.http.keys import CONNECTION, POOL, PRINCIPAL, REQUEST_ID, SETTINGS
from service.scim.errors import ScimError

SCIM_PREFIX = "/scim/v2"
POOL_BUSY_RETRY_AFTER_S = 1


async def acquire(app: web.Application) -> asyncpg.Connection:
    """A pool connection within `pool_timeout_s`, else a SCIM 503 with Retry-After."""
    pool = app[POOL]
    if pool.get_idle_size():
        # one is free: no wait, nothing to time (pool.acquire(timeout=) would cost a task)
        free: asyncpg.Connection = await pool.acquire()
        return free
    limit = app[SETTINGS].pool_timeout_s
    try:
        async with asyncio.timeout(limit):  # waiting for one, or connecting a new one
            conn: asyncpg.Connection = await pool.acquire()
    except TimeoutError as e:
        raise ScimError(
            f"no database connection within {limit:g} s (every connection is busy, or the "
            f"database does not answer); retry after {POOL_BUSY_RETRY_AFTER_S} s",
            status=503, headers={"Retry-After": str(POOL_BUSY_RETRY_AFTER_S)},
        ) from e
    return conn


async def release(app: web.Application, conn: asyncpg.Connection) -> None:
    await app[POOL].release(conn)


@asynccontextmanager
async def connection(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    """The request's connection: the one it holds, else one acquired now (and released at the
    end of the block). Call it after the body is read."""
    conn = request.get(CONNECTION)
    if conn is not None:
        yield conn
        return
    conn = await acquire(request.app)
    request[CONNECTION] = conn
    try:
        yield conn
    finally:
        del request[CONNECTION]
        await release(request.app, conn)


def base_url(request: web.Request) -> str:
    """The SCIM base URL for `Location` and `meta.location`: SCIMLEDGER_PUBLIC_URL when set, else
    from the Host, which the trusted_host middleware has checked against the names served."""
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
