"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from service.app.paging import PageCursors
from service.http import audit as audit_api
from service.http import discovery, groups, metrics, users
from service.http.keys import DSN, PAGE_CURSORS, POOL, SETTINGS
from service.http.middleware import authentication, errors, request_context
from service.http.wire import json_response
from service.runtime.config import Settings
from service.runtime.database import create_pool, pending_migrations
from service.runtime.followers import followers_ctx, notify_followers


async def _pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[POOL] = await create_pool(app[DSN], min_size=settings.pool_min, max_size=settings.pool_max)
    yield
    await app[POOL].close()


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        async with request.app[POOL].acquire(timeout=2) as conn:
            missing = await pending_migrations(conn)
    except Exception as e:  # any failure to reach the database means not ready
        return json_response({"status": "unavailable", "error": type(e).__name__}, status=503)
    if missing:
        return json_response({"status": "migrations pending", "pending": missing}, status=503)
    return json_response({"status": "ready"})


def create_app(settings: Settings, dsn: str) -> web.Application:
    app = web.Application(
        # metrics outermost: it sees the final status of every request, errors included
        middlewares=[metrics.metrics_middleware, request_context, errors, authentication, notify_followers],
        client_max_size=settings.max_body_bytes,
        # long request lines reach the SCIM layer, which answers an absurd filter with a SCIM
        # 400 invalidFilter instead of the HTTP parser's plain-text 400 at 8 KiB
        handler_args={"max_line_size": 65536, "max_field_size": 65536},
    )
    app[SETTINGS] = settings
    app[DSN] = dsn
    app[PAGE_CURSORS] = PageCursors()
    app.cleanup_ctx.append(_pool)
    app.cleanup_ctx.append(followers_ctx)  # after the pool: stops before it closes
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    metrics.add_routes(app)
    discovery.add_routes(app.router)
    users.add_routes(app.router)
    groups.add_routes(app.router)
    audit_api.add_routes(app.router)
    return app
