"""Typed keys for what the app and each request carry."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from service.app.paging import PageCursors
from service.app.tenancy import Principal
from service.app.token_cache import TokenCache
from service.runtime.config import Settings
from service.runtime.replica import Standby

SETTINGS = web.AppKey("settings", Settings)
DSN = web.AppKey("dsn", str)
POOL = web.AppKey("pool", asyncpg.Pool)
TOKEN_CACHE = web.AppKey("token_cache", TokenCache)  # service/app/token_cache.py
STANDBY = web.AppKey("standby", Standby)  # only with SCIMLEDGER_REPLICA_URL (docs/scaling.md)
PAGE_CURSORS = web.AppKey("page_cursors", PageCursors)
# each route's resource -> the template it was declared with (`/scim/v2/Users/{id}`), as
# lenient matching registers another pattern (service/http/routes.py)
TEMPLATES = web.AppKey("route_templates", dict[web.AbstractResource, str])
PRINCIPAL = web.RequestKey("principal", Principal)
CONNECTION = web.RequestKey("connection", asyncpg.Connection)
STANDBY_CONNECTION = web.RequestKey("standby_connection", asyncpg.Connection)
REQUEST_ID = web.RequestKey("request_id", str)
