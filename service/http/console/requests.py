"""The hook that feeds the request log (service/app/request_log.py): a middleware that summarises
every /scim/v2 request of an authenticated connection once its answer is known, and the
cleanup context that runs the log's flusher. The summary is queued in memory (no I/O on the
request's path); the flusher writes it in batches.

The middleware is registered outermost (console.setup), so it sees the final status of every
request, refusals mapped by the error middleware included, and the principal and request id the
inner middleware set on the request. A request without a valid token names no tenant, so it
cannot be shown to one: those are in the canonical log lines only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import msgspec
import structlog
from aiohttp import web

from service.app.request_log import RequestLog, RequestSummary, clean_detail
from service.http.console.keys import CONSOLE_SETTINGS, REQUEST_LOG
from service.http.keys import POOL, PRINCIPAL, REQUEST_ID
from service.http.observe import Handler, observed
from service.http.routes import canonical_endpoint

log = structlog.get_logger("scimledger.console")

PREFIX = "/scim/v2"
_decode = msgspec.json.Decoder().decode


def resource_of(path: str, location: str | None = None) -> tuple[str | None, str | None]:
    """(resource type, id) a /scim/v2 path aims at; a create's id from its Location."""
    parts = [p for p in path[len(PREFIX):].split("/") if p]
    kind = (canonical_endpoint(parts[0]) or parts[0][:64]) if parts else None
    ident = parts[1][:64] if len(parts) > 1 and parts[1] != ".search" else None
    if ident is None and location:
        ident = location.rstrip("/").rsplit("/", 1)[-1][:64] or None
    return kind, ident


def error_of(response: web.StreamResponse | None) -> tuple[str | None, str | None]:
    """(scimType, detail) of an RFC 7644 3.12 error body."""
    body = getattr(response, "body", None)
    if not isinstance(body, bytes) or not body:
        return None, None
    try:
        parsed = _decode(body)
    except msgspec.DecodeError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    scim_type, detail = parsed.get("scimType"), parsed.get("detail")
    return (str(scim_type)[:64] if scim_type else None), clean_detail(str(detail) if detail else None)


@web.middleware
async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
        return await handler(request)

    def done(response: web.StreamResponse | None, status: int, seconds: float) -> None:
        principal = request.get(PRINCIPAL)
        requests_log = request.app.get(REQUEST_LOG)
        if principal is not None and requests_log is not None:
            location = response.headers.get("Location") if response is not None and status == 201 else None
            kind, ident = resource_of(request.path, location)
            scim_type, detail = error_of(response) if status >= 400 else (None, None)
            flt = request.query.get("filter")
            requests_log.record(RequestSummary(
                tenant_id=principal.tenant_id, at=dt.datetime.now(dt.UTC), token_id=principal.token_id,
                token_label=principal.label, client=request.headers.get("User-Agent", "")[:200] or None,
                ip=request.remote, request_id=request.get(REQUEST_ID), method=request.method,
                path=request.path[:300], resource_type=kind, resource_id=ident,
                filter=flt[:300] if flt else None, status=status, scim_type=scim_type, detail=detail,
                duration_ms=round(seconds * 1000, 2),
            ))

    return await observed(request, handler, done)


async def request_log_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the worker's request log and its flusher task; what is queued at shutdown is
    written before the pool closes (this context is entered after the pool's)."""
    requests_log = RequestLog(app[CONSOLE_SETTINGS].request_log)
    app[REQUEST_LOG] = requests_log
    pool = app[POOL]

    def failed(error: BaseException) -> None:
        log.warning("request_log.flush_failed", error=repr(error), dropped=requests_log.dropped)

    task = asyncio.create_task(requests_log.run(pool.acquire, on_error=failed), name="request-log")
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    try:
        async with pool.acquire() as conn:
            await requests_log.drain(conn)
    except Exception as e:  # shutting down: say so, never fail the shutdown over the log
        failed(e)
