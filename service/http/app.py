"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from service.app.paging import PageCursors
from service.http import metrics
from service.http.followers import followers_ctx, notify_followers
from service.http.keys import DSN, PAGE_CURSORS, POOL, SETTINGS
from service.http.metrics import EVENT_COUNTS, EventCounts
from service.http.middleware import authentication, errors, request_context
from service.http.routes import add_routes
from service.runtime.config import Settings
from service.runtime.database import create_pool


async def _pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[POOL] = await create_pool(app[DSN], min_size=settings.pool_min, max_size=settings.pool_max)
    yield
    await app[POOL].close()


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
    app[EVENT_COUNTS] = EventCounts()
    add_routes(app.router)
    return app
