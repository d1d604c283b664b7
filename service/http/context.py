"""What a handler reads off its request: the caller, the actor to record, the base URL of
locations, and the request's database connection.

The connection is held for the shortest span (docs/security.md): authentication takes one for the
token lookup and the rate-limit lease and gives it back before the body is read, so a client that
sends its body slowly holds no connection; the handler calls `connection(request)` after
`read_json_object`, which acquires one then. A request without a body keeps the connection it
authenticated on (one pool checkout for a read). A request never holds two connections at once:
`connection()` inside `connection()` is the same one, so a full pool cannot deadlock. Waiting for
a connection is bounded (`pool_timeout_s`): beyond it the answer is 503 with Retry-After.

Reads that may lag (`may_lag`) are served by the hot standby when one is configured and its last
lag check found it within bound (service/runtime/replica.py, docs/scaling.md); a standby that
cannot be reached at acquire time is bypassed for this request and the next ones, and the read
goes to the primary. Such a read may hold the primary connection it authenticated on and one of
the standby's, never two of one pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from aiohttp import web

from projections.domain.actor import Actor
from service.app.preconditions import Target
from service.http.keys import (
    CONNECTION,
    POOL,
    PRINCIPAL,
    REQUEST_ID,
    SETTINGS,
    STANDBY,
    STANDBY_CONNECTION,
    TEMPLATES,
)
from service.runtime.database import unavailable
from service.scim.errors import ScimError

SCIM_PREFIX = "/scim/v2"
AUDIT_PREFIX = "/audit/v1/"
WALKED_LISTS = frozenset({f"{SCIM_PREFIX}/Users", f"{SCIM_PREFIX}/Groups"})
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


def may_lag(request: web.Request) -> bool:
    """Whether the request's answer may come from a standby a little behind the primary
    (docs/scaling.md): everything under /audit/v1 (the audit API and its exports, which say how
    complete they are), and the pages after the first of a GET list walk of /Users or /Groups
    (`startIndex` > 1: imports). Never a GET by id, a filter's first page, a POST /.search or
    anything that writes: an IdP reads those right after its own write."""
    if request.path.startswith(AUDIT_PREFIX):
        return True
    if request.method != "GET":
        return False
    template = request.config_dict.get(TEMPLATES, {}).get(request.match_info.route.resource)  # type: ignore[arg-type]
    start = request.query.get("startIndex", "")
    return template in WALKED_LISTS and start.isdigit() and int(start) > 1


async def _from_standby(request: web.Request) -> asyncpg.Connection | None:
    """A connection of the standby for this request, or None: no standby, not a read that may
    lag, the last check found it behind, or it cannot be reached now."""
    standby = request.config_dict.get(STANDBY)
    if standby is None or not standby.usable or not may_lag(request):
        return None
    # one turn of the event loop first: a standby that went away has closed its sockets, and the
    # pool replaces a connection it sees closed (a new connect, which then fails and falls back)
    # instead of handing out one whose close is still unread
    await asyncio.sleep(0)
    try:
        conn: asyncpg.Connection = await standby.pool.acquire(timeout=request.config_dict[SETTINGS].pool_timeout_s)
    except Exception as e:
        if not (unavailable(e) or isinstance(e, TimeoutError)):
            raise
        standby.failed(e)
        return None
    return conn


@asynccontextmanager
async def connection(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    """The request's connection: the one it holds, else one acquired now (and released at the
    end of the block): the standby's for a read that may lag, else the primary's. Call it after
    the body is read."""
    conn = request.get(STANDBY_CONNECTION)
    if conn is not None:
        yield conn
        return
    conn = await _from_standby(request)
    if conn is not None:
        request[STANDBY_CONNECTION] = conn
        try:
            yield conn
        finally:
            del request[STANDBY_CONNECTION]
            await request.config_dict[STANDBY].pool.release(conn)
        return
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
        method=request.method,
    )


def write_target(request: web.Request) -> Target:
    """The resource of the URL a write aims at, with If-Match and the actor."""
    return Target(
        request[PRINCIPAL].tenant, request.match_info["id"], request.headers.get("If-Match"),
        request_actor(request),
    )
