"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from . import discovery, groups, users
from .appkeys import DSN, POOL, SETTINGS
from .config import Settings
from .database import create_pool, pending_migrations
from .middleware import authentication, errors, request_context
from .wire import json_response


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
        middlewares=[request_context, errors, authentication],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[DSN] = dsn
    app.cleanup_ctx.append(_pool)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    discovery.add_routes(app.router)
    users.add_routes(app.router)
    groups.add_routes(app.router)
    return app
