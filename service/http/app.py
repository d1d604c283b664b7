"""The aiohttp application factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import structlog
from aiohttp import web

from service.app.paging import PageCursors
from service.app.token_cache import TokenCache
from service.http import console, metrics, oauth
from service.http.events import streams_ctx
from service.http.followers import followers_ctx, notify_followers
from service.http.keys import DSN, PAGE_CURSORS, POOL, SETTINGS, STANDBY, TOKEN_CACHE
from service.http.metrics import EVENT_COUNTS, EventCounts
from service.http.middleware import (
    ADMISSION,
    Admission,
    authentication,
    errors,
    request_context,
    trusted_host,
)
from service.http.routes import add_routes
from service.runtime.config import Settings
from service.runtime.database import create_pool, unavailable
from service.runtime.keys import load_master_keys
from service.runtime.replica import CHECK_TIMEOUT_S, Standby

log = structlog.get_logger("scimledger.http")


async def _pool(app: web.Application) -> AsyncIterator[None]:
    """The serving pool: statement_timeout and idle_in_transaction_session_timeout on every
    connection, connects bounded by pool_timeout_s. A database that cannot be reached at start
    leaves a pool that connects on demand: requests get 503 and /readyz 503 until it answers,
    rather than a worker that dies at start."""
    settings = app[SETTINGS]

    async def pool(min_size: int) -> asyncpg.Pool:
        return await create_pool(
            app[DSN], min_size=min_size, max_size=settings.pool_max,
            statement_timeout_s=settings.statement_timeout_s,
            idle_in_transaction_timeout_s=settings.idle_in_transaction_timeout_s,
            connect_timeout_s=settings.pool_timeout_s,
        )

    try:
        app[POOL] = await pool(settings.pool_min)
    except Exception as e:
        if not unavailable(e):
            raise
        log.warning("database.unavailable", during="start", error_type=type(e).__name__, error=str(e)[:200])
        app[POOL] = await pool(0)
    yield
    await app[POOL].close()


async def _standby(app: web.Application) -> AsyncIterator[None]:
    """The hot standby's pool and its lag check, when SCIMLEDGER_REPLICA_URL is set: the pool
    connects on demand, so a standby that is down at start only sends every read to the primary."""
    settings = app[SETTINGS]
    if not settings.replica_url:
        yield
        return
    pool = await create_pool(
        settings.replica_url, min_size=0, max_size=settings.pool_max,
        statement_timeout_s=settings.statement_timeout_s,
        idle_in_transaction_timeout_s=settings.idle_in_transaction_timeout_s,
        connect_timeout_s=CHECK_TIMEOUT_S,  # a standby that is slow to answer is bypassed, not awaited
    )
    standby = app[STANDBY] = Standby(pool, app[POOL], settings.replica_max_lag_s)
    checking = asyncio.create_task(standby.run())
    yield
    checking.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await checking
    await pool.close()


async def _token_cache(app: web.Application) -> AsyncIterator[None]:
    """The token cache's listener, on a connection of its own (LISTEN holds it)."""
    cache = app[TOKEN_CACHE] = TokenCache()
    listening = asyncio.create_task(cache.listen(lambda: asyncpg.connect(app[DSN])))
    yield
    listening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listening


def create_app(settings: Settings, dsn: str) -> web.Application:
    app = web.Application(
        # metrics outermost: it sees the final status of every request, errors included
        middlewares=[metrics.metrics_middleware, request_context, errors, trusted_host, authentication,
                     notify_followers],
        client_max_size=settings.max_body_bytes,
        # long request lines reach the SCIM layer, which answers an absurd filter with a SCIM
        # 400 invalidFilter instead of the HTTP parser's plain-text 400 at 8 KiB
        handler_args={"max_line_size": 65536, "max_field_size": 65536,
                      "keepalive_timeout": settings.keepalive_timeout_s},
    )
    app[SETTINGS] = settings
    load_master_keys(settings)  # the subjects' data keys unwrap with it (docs/privacy.md)
    app[ADMISSION] = Admission.of(settings)
    app[DSN] = dsn
    app[PAGE_CURSORS] = PageCursors()
    app.cleanup_ctx.append(_pool)
    app.cleanup_ctx.append(_token_cache)
    app.cleanup_ctx.append(_standby)  # after the pool: its lag check reads the primary's position
    app.cleanup_ctx.append(followers_ctx)  # after the pool: stops before it closes
    app.cleanup_ctx.append(streams_ctx)  # security-event streams (docs/events.md)
    app[EVENT_COUNTS] = EventCounts()
    add_routes(app)
    oauth.setup(app)
    console.setup(app)  # the web console and its request-log hook (docs/console.md)
    return app
