"""Middleware, outermost first: request context + canonical log line, errors, trusted Host,
authentication (which ends with the tenant's rate limit and its share of the worker: a throttled
request never reaches a handler).

Errors are mapped to RFC 7644 section 3.12 bodies here and only here. A 500 never carries a
traceback to the client, nor to the log: it is logged as one line with the request id, the
exception's type, its (redacted) message and the code location it came from. A database that
cannot be reached is a 503 with Retry-After (one `database.unavailable` line), and a client that
went away mid-request is `request.aborted` at info, answered with nothing (status 499 in the
request line and the metrics).

Connections (docs/security.md, "No tenant can take the shared resources"): authentication takes a
pool connection for the token lookup and the rate-limit lease. If the request's body is still
arriving then, it gives it back, and the handler takes its own after reading the body
(service/http/context.py, `connection`); a request without a body, or whose body has arrived
(most SCIM bodies come with their head), keeps it: no wait on the client happens while it is
held, and the request costs one pool checkout as before. Each tenant may have at most
`tenant_request_cap` requests in flight per worker (4/5 of the pool by default: a request holds
at most one connection, so the rest of the pool stays free for other tenants) and
`tenant_exports` exports: over the cap a request waits up to pool_timeout_s for a slot, holding
no connection, an export not at all, then 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType

import asyncpg
import structlog
from aiohttp import web

from eventstore.store import WrongExpectedVersion
from projections.domain.errors import DomainError
from service.app.ratelimit import Limit, limiter_for
from service.app.tenancy import Principal
from service.http.context import acquire, release
from service.http.errors import to_scim
from service.http.keys import CONNECTION, PRINCIPAL, REQUEST_ID, SETTINGS, TOKEN_CACHE
from service.http.metrics import AUTH_FAILURES
from service.http.wire import scim_response
from service.runtime.config import Settings
from service.runtime.database import unavailable
from service.runtime.logs import forget_secrets, mask_in_logs, redact_text
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
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # a caller's id is kept only if it matches
PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics")
SCOPE_BY_PREFIX = (("/scim/v2", "scim"), ("/audit/v1", "audit"), ("/events/v1", "events"))
LONG_POLL_PREFIX = "/events/v1/"  # RFC 8936 long polls wait holding no connection
EXPORT_PATH = "/audit/v1/events/export"
DATABASE_RETRY_AFTER_S = 5  # Retry-After of a 503 while the database is unreachable
ABORTED = 499  # the status logged (and counted) for a request whose client went away


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
    """The caller's X-Request-Id if it matches REQUEST_ID_PATTERN (safe to log, echo and store in
    the audit trail), else a new one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    if REQUEST_ID_PATTERN.fullmatch(given):
        return given
    return next(_request_ids)


@dataclass
class Admission:
    """One worker's edge policy: the Host names it serves and how many requests (and exports)
    each tenant has in flight."""

    hosts: frozenset[str] | None  # None: any Host
    request_cap: int
    export_cap: int
    queue_s: float  # how long a request over its tenant's cap waits for a slot (pool_timeout_s)
    requests: dict[uuid.UUID, asyncio.Semaphore] = field(default_factory=dict)
    exports: dict[uuid.UUID, asyncio.Semaphore] = field(default_factory=dict)
    # which tenant a token authenticated as before (the secret's salted 64-bit hash -> tenant):
    # routing for admission only, so a known token waits for its tenant's slot holding nothing;
    # every request is still authenticated against the database, and a wrong guess (a hash
    # collision) is only a slot taken in the wrong tenant's share, put right after the lookup
    tenants_seen: dict[int, uuid.UUID] = field(default_factory=dict)

    def tenant_seen(self, secret: str) -> uuid.UUID | None:
        return self.tenants_seen.get(hash(secret))

    def seen(self, secret: str, tenant: uuid.UUID) -> None:
        key = hash(secret)
        if key not in self.tenants_seen:
            if len(self.tenants_seen) >= TOKENS_SEEN_MAX:
                del self.tenants_seen[next(iter(self.tenants_seen))]  # the oldest
            self.tenants_seen[key] = tenant

    @classmethod
    def of(cls, settings: Settings) -> Admission:
        return cls(settings.allowed_host_names(), settings.tenant_request_cap, settings.tenant_exports,
                   settings.pool_timeout_s)

    def _slot(self, table: dict[uuid.UUID, asyncio.Semaphore], tenant: uuid.UUID, cap: int) -> asyncio.Semaphore:
        slot = table.get(tenant)
        if slot is None:
            slot = table[tenant] = asyncio.Semaphore(cap)
        return slot

    def request_slot(self, tenant: uuid.UUID) -> asyncio.Semaphore:
        return self._slot(self.requests, tenant, self.request_cap)

    def export_slot(self, tenant: uuid.UUID) -> asyncio.Semaphore:
        return self._slot(self.exports, tenant, self.export_cap)


ADMISSION = web.AppKey("admission", Admission)
TOKENS_SEEN_MAX = 10_000


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = _request_id(request)
    request[REQUEST_ID] = request_id
    forget_secrets()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if status != ABORTED:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except asyncio.CancelledError:
        status = ABORTED
        raise
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


async def _send_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send `response`, then close the connection at once: for a 408, whose body never came,
    rather than linger reading the rest of it (RFC 9110 15.5.9: the server closes)."""
    response.force_close()
    response.headers[REQUEST_ID_HEADER] = request[REQUEST_ID]
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


def _client_gone(request: web.Request, error: BaseException) -> bool:
    """The client closed the connection: a write or read failed on a transport that is gone."""
    transport = request.transport
    return isinstance(error, (ConnectionError, web.RequestPayloadError)) and (
        transport is None or transport.is_closing()
    )


def _origin(traceback: TracebackType | None) -> str | None:
    """Where an exception was raised, as `file:line function`: code, never data. The innermost
    frame of this repository's code (not of a library it called), else the innermost."""
    frames = []
    while traceback is not None:
        frames.append(traceback)
        traceback = traceback.tb_next
    ours = [f for f in frames if _ours(f.tb_frame.f_code.co_filename)]
    if not (ours or frames):
        return None
    where = (ours or frames)[-1]
    code = where.tb_frame.f_code
    return f"{os.path.relpath(code.co_filename, _REPOSITORY)}:{where.tb_lineno} {code.co_name}"


_REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep


def _ours(filename: str) -> bool:
    return filename.startswith(_REPOSITORY) and "site-packages" not in filename


def _failure(request: web.Request, error: BaseException) -> web.Response:
    """A 500: one log line (request id from the context, type, redacted message, origin), no
    traceback and no local variables; the client gets the request id to quote."""
    log.error(
        "request.failed",
        method=request.method,
        path=request.path,
        error_type=type(error).__name__,
        error=redact_text(str(error))[:500],
        origin=_origin(error.__traceback__),
    )
    return error_response(ScimError(
        f"internal error; quote request id {request.get(REQUEST_ID)} to the operator", status=500
    ))


def database_unavailable(request: web.Request, error: BaseException) -> web.Response:
    """A 503 with Retry-After for a database that cannot be reached (or a statement cut off by
    statement_timeout), logged as one line."""
    if isinstance(error, asyncpg.QueryCanceledError):
        limit = request.app[SETTINGS].statement_timeout_s
        log.warning("database.statement_timeout", method=request.method, path=request.path,
                    limit_s=limit)
        return error_response(ScimError(
            f"the request needed more than the statement timeout of {limit:g} s "
            "(SCIMLEDGER_STATEMENT_TIMEOUT_SECONDS) in the database; narrow it or retry later",
            status=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
        ))
    log.warning("database.unavailable", method=request.method, path=request.path,
                error_type=type(error).__name__, error=redact_text(str(error))[:200])
    return error_response(ScimError(
        f"the database is unavailable; retry after {DATABASE_RETRY_AFTER_S} s",
        status=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    ))


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except asyncio.CancelledError:
        log.info("request.aborted", method=request.method, path=request.path, reason="cancelled")
        raise
    except (ScimError, DomainError, WrongExpectedVersion) as e:
        mapped = to_scim(e)
        if mapped is None:
            return _failure(request, e)
        if mapped.status == 408:
            return await _send_and_close(request, error_response(mapped))
        return error_response(mapped)
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
    except Exception as e:
        if _client_gone(request, e):
            log.info("request.aborted", method=request.method, path=request.path,
                     reason=type(e).__name__)
            response = web.Response(status=ABORTED)  # never sent: nobody is listening
            response.force_close()
            return response
        if unavailable(e) or isinstance(e, asyncpg.QueryCanceledError):
            return database_unavailable(request, e)
        return _failure(request, e)


def _host_name(host: str) -> str:
    """The name part of a Host header value (RFC 9110 7.2): without the port, brackets kept off
    an IPv6 literal, lower-cased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@web.middleware
async def trusted_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a Host this service was not configured for (421, RFC 9110 15.5.20), so the Host a
    client sends is never reflected into `Location` or `meta.location` unchecked. The probes and
    /metrics are exempt: orchestrators and scrapers call them by the pod's address."""
    names = request.app[ADMISSION].hosts
    if names is None or request.path in PUBLIC_PATHS:
        return await handler(request)
    host = request.headers.get("Host")
    if not host:
        raise ScimError("a Host header is required (RFC 9112 3.2)", status=400)
    if _host_name(host) not in names:
        raise ScimError(
            "this server does not serve that host name; use the SCIM base URL your operator "
            "gave you (names served: SCIMLEDGER_ALLOWED_HOSTS or SCIMLEDGER_PUBLIC_URL)",
            status=421,
        )
    return await handler(request)


def required_scope(path: str) -> str | None:
    for prefix, scope in SCOPE_BY_PREFIX:
        if path == prefix or path.startswith(prefix + "/"):
            return scope
    return None


def _bearer(request: web.Request) -> str:
    kind, _, secret = request.headers.get("Authorization", "").partition(" ")
    if kind.lower() != "bearer" or not secret.strip():
        AUTH_FAILURES.labels("missing").inc()
        raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    mask_in_logs(secret.strip())  # whatever it looks like, it never appears in a log line
    return secret.strip()


async def _admit(request: web.Request, conn: asyncpg.Connection, secret: str, scope: str) -> Principal:
    """The token lookup, the scope and the tenant's rate limit, on `conn`."""
    principal = await request.app[TOKEN_CACHE].authenticate(conn, secret)  # service/app/token_cache.py
    if principal is None:
        AUTH_FAILURES.labels("invalid").inc()
        raise Unauthorized("the bearer token is not valid (unknown, revoked or expired)")
    request[PRINCIPAL] = principal
    structlog.contextvars.bind_contextvars(
        tenant=str(principal.tenant_id), token_label=principal.label
    )
    if principal.tenant_disabled:
        # authenticated, not permitted: 403 (RFC 7644 3.12), so the IdP shows an operator's
        # decision rather than asking for a new credential; docs/tenancy.md
        AUTH_FAILURES.labels("tenant_disabled").inc()
        raise Forbidden("this tenant is disabled; its operator can enable it again")
    if principal.scope != scope:
        AUTH_FAILURES.labels("scope").inc()
        raise Forbidden(
            f"a token with scope {principal.scope!r} cannot reach {scope!r} endpoints"
        )
    await rate_limit(request, principal, conn)
    return principal


@web.middleware
async def authentication(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Token, scope, rate limit and the tenant's share of the worker, with a connection held
    only while the database is used. A token seen before names its tenant, so the request
    waits for its tenant's slot first, holding nothing; a token not seen yet takes the slot
    after the lookup, giving the connection back if it has to wait. Either way, a body still
    arriving after the lookup is read with no connection held (the handler takes one after)."""
    scope = required_scope(request.path)
    if scope is None:
        return await handler(request)
    secret = _bearer(request)
    admission = request.app[ADMISSION]
    export = request.path == EXPORT_PATH
    taken: list[asyncio.Semaphore] = []
    conn: asyncpg.Connection | None = None
    try:
        tenant = admission.tenant_seen(secret)
        if tenant is not None:
            await _share(admission, tenant, export, taken)
        conn = await acquire(request.app)
        principal = await _admit(request, conn, secret, scope)
        late = tenant != principal.tenant_id  # its share is still to take
        if late:
            for held in taken:  # a hash collision: that was another tenant's share
                held.release()
            taken.clear()
            admission.seen(secret, principal.tenant_id)
        if (not request.content.is_eof() or (late and admission.request_slot(principal.tenant_id).locked())
                or request.path.startswith(LONG_POLL_PREFIX)):
            # never hold a connection while waiting: for a body still arriving, or for a slot
            await release(request.app, conn)
            conn = None
        if late:
            await _share(admission, principal.tenant_id, export, taken)
    except BaseException:
        for held in taken:
            held.release()
        if conn is not None:
            await release(request.app, conn)
        raise
    try:
        return await _handle(request, handler, conn)
    finally:
        for held in taken:
            held.release()


async def _share(admission: Admission, tenant: uuid.UUID, export: bool, taken: list[asyncio.Semaphore]) -> None:
    """The tenant's export slot (if an export: no wait) and request slot (a wait of up to
    queue_s), appended to `taken`; else 429."""
    if export:
        slot = admission.export_slot(tenant)
        await _take(slot, 0.0, "exports", admission.export_cap, "SCIMLEDGER_TENANT_EXPORTS")
        taken.append(slot)
    slot = admission.request_slot(tenant)
    await _take(slot, admission.queue_s, "requests", admission.request_cap, "SCIMLEDGER_TENANT_CONCURRENCY")
    taken.append(slot)


async def _handle(request: web.Request, handler: Handler, conn: asyncpg.Connection | None) -> web.StreamResponse:
    """Run the handler; a connection kept from authentication is the request's (and released
    after), else the handler acquires one when it needs it."""
    if conn is None:
        return await handler(request)
    request[CONNECTION] = conn
    try:
        return await handler(request)
    finally:
        del request[CONNECTION]
        await release(request.app, conn)


async def _take(slot: asyncio.Semaphore, wait_s: float, what: str, cap: int, setting: str) -> None:
    """A slot of the tenant's share of this worker, waiting up to `wait_s`; else 429."""
    if not slot.locked():
        await slot.acquire()  # free: returns without suspending
        return
    if wait_s > 0:
        try:
            async with asyncio.timeout(wait_s):
                await slot.acquire()
            return
        except TimeoutError:
            pass
    raise TooManyRequests(
        f"this tenant already has {cap} {what} in progress on this server ({setting}); "
        "retry after 1 s",
        headers={"Retry-After": "1"},
    )


async def rate_limit(request: web.Request, principal: Principal, conn: asyncpg.Connection) -> None:
    """The tenant's token bucket (service/app/ratelimit.py): over the limit, 429 with Retry-After
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
