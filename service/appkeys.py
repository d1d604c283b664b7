"""Typed keys for what the app and each request carry."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from .config import Settings
from .tenancy import Principal

SETTINGS = web.AppKey("settings", Settings)
DSN = web.AppKey("dsn", str)
POOL = web.AppKey("pool", asyncpg.Pool)
PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = web.RequestKey("request_id", str)
