"""Middleware, outermost first: request context + canonical log line, errors, authentication
(which ends with the tenant's rate limit: a throttled request never reaches a handler).

Errors are mapped to RFC 7644 section 3.12 bodies here and only here. A 500 never carries a
traceback to the client; it is logged with the request id.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
import structlog
from aiohttp import web

from eventstore.store import WrongExpectedVersion
from projections.domain.errors import DomainError
from service.app.ratelimit import Limit, limiter_for
from service.app.tenancy import Principal, authenticate
from service.http.errors import to_scim
from service.http.keys import CONNECTION, POOL, PRINCIPAL, REQUEST_ID, SETTINGS
from service.http.wire import scim_response
from service.scim.errors import (
    Forbidden,
    NotFound,
    PayloadTooLarge,
    ScimError,
    TooManyRequests,
    Unauthorized,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("scimledger.http")

REQUEST_ID_HEADER = "X-Request-Id"
PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics")
SCOPE_BY_PREFIX = (("/scim/v2", "scim"), ("/audit/v1", "audit"))


def _new_request_ids() -> Iterator[str]:
    """Unique request ids without a random-number syscall per request: a random per-process
    prefix and a counter, 32 hex digits like a UUID's. Ids only need to be unique (they
    correlate log lines and events), not unpredictable."""
    prefix = uuid.uuid4().hex[:16]
    return (f"{prefix}{n:016x}" for n in itertools.count(1))


_request_ids = _new_request_ids()


def _reseed_request_ids() -> None:
    global _request_ids
    _request_ids = _new_request_ids()


os.register_at_fork(after_in_child=_reseed_request_ids)  # a forked worker gets its own prefix


def _request_id(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    # accept a caller's id only if it is short and printable, so it is safe to log and echo
    if 0 < len(given) <= 128 and given.isprintable() and given.isascii():
        return given
    return next(_request_ids)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = _request_id(request)
    request[REQUEST_ID] = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    finally:
        principal = request.get(PRINCIPAL)
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            tenant=str(principal.tenant_id) if principal else None,
            token_label=principal.label if principal else None,
        )


def error_response(error: ScimError) -> web.Response:
    headers = dict(error.headers)
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="scimledger"')
    return scim_response(error.to_body(), status=error.status, headers=headers)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (ScimError, DomainError, WrongExpectedVersion) as e:
        mapped = to_scim(e)
        if mapped is not None:
            return error_response(mapped)
        log.exception("request.failed", method=request.method, path=request.path)
        return error_response(ScimError(
            f"internal error; quote request id {request.get(REQUEST_ID)} to the operator", status=500
        ))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        if e.status == 404:
            return error_response(NotFound(f"no such endpoint: {request.method} {request.path}"))
        if e.status == 405:
            allowed = e.headers.get("Allow", "")
            return error_response(
                ScimError(
                    f"method {request.method} is not allowed here; allowed: {allowed}",
                    status=405,
                    headers={"Allow": allowed},
                )
            )
        if e.status == 413:
            return error_response(PayloadTooLarge("request body too large"))
        return error_response(ScimError(e.reason or "request refused", status=e.status))
    except Exception:
        log.exception("request.failed", method=request.method, path=request.path)
        return error_response(
            ScimError(
                f"internal error; quote request id {request.get(REQUEST_ID)} to the operator",
                status=500,
            )
        )


def required_scope(path: str) -> str | None:
    for prefix, scope in SCOPE_BY_PREFIX:
        if path == prefix or path.startswith(prefix + "/"):
            return scope
    return None


@web.middleware
async def authentication(request: web.Request, handler: Handler) -> web.StreamResponse:
    scope = required_scope(request.path)
    if scope is None:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    kind, _, secret = header.partition(" ")
    if kind.lower() != "bearer" or not secret.strip():
        raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    # one connection for the whole request (service/connection.py)
    async with request.app[POOL].acquire() as conn:
        principal = await authenticate(conn, secret.strip())
        if principal is None:
            raise Unauthorized("the bearer token is not valid (unknown, revoked or expired)")
        request[PRINCIPAL] = principal
        structlog.contextvars.bind_contextvars(
            tenant=str(principal.tenant_id), token_label=principal.label
        )
        if principal.scope != scope:
            raise Forbidden(
                f"a token with scope {principal.scope!r} cannot reach {scope!r} endpoints"
            )
        await rate_limit(request, principal, conn)
        request[CONNECTION] = conn
        try:
            return await handler(request)
        finally:
            del request[CONNECTION]


async def rate_limit(request: web.Request, principal: Principal, conn: asyncpg.Connection) -> None:
    """The tenant's token bucket (service/ratelimit.py): over the limit, 429 with Retry-After
    before any handler runs, so a throttled request changes nothing (RFC 6585 section 4)."""
    rate = principal.rate_limit or request.app[SETTINGS].default_rate_limit
    wait = await limiter_for(request.app).admit(
        conn, principal.tenant_id, Limit.of(rate)
    )
    if wait is not None:
        raise TooManyRequests(
            f"rate limit of {rate:g} requests per second for this tenant exceeded; "
            f"retry after {wait} s",
            headers={"Retry-After": str(wait)},
        )
