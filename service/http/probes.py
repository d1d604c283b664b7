"""Probes for orchestrators: /healthz (the process is up) and /readyz (the database is reachable
and migrated, so this worker can take traffic). Neither needs a token."""

from __future__ import annotations

from aiohttp import web

from service.http.keys import POOL
from service.http.wire import json_response
from service.runtime.database import pending_migrations

RETRY = {"Retry-After": "5"}


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        async with request.app[POOL].acquire(timeout=2) as conn:
            missing = await pending_migrations(conn)
    except Exception as e:  # any failure to reach the database means not ready
        return json_response({"status": "unavailable", "error": type(e).__name__}, status=503,
                             headers=RETRY)
    if missing:
        return json_response({"status": "migrations pending", "pending": missing}, status=503,
                             headers=RETRY)
    return json_response({"status": "ready"})
