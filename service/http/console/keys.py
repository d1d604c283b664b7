"""Typed keys of the console: on the main app (settings, the request log) and on its requests."""

from __future__ import annotations

import asyncpg
import jinja2
from aiohttp import web

from service.app.console_sessions import ConsoleSession
from service.app.request_log import RequestLog
from service.http.console.settings import ConsoleSettings

CONSOLE_SETTINGS = web.AppKey("console_settings", ConsoleSettings)
REQUEST_LOG = web.AppKey("request_log", RequestLog)
TEMPLATES = web.AppKey("console_templates", jinja2.Environment)
SESSION = web.RequestKey("console_session", ConsoleSession)
DB = web.RequestKey("console_connection", asyncpg.Connection)
FORM = web.RequestKey("console_form", dict[str, str])
