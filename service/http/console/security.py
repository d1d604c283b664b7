"""The console's rules for every request (docs/console.md):

- security headers on every answer, static files and downloads included: a strict
  Content-Security-Policy (only this origin's scripts, styles and images, no inline script, no
  framing), nosniff, no referrer, no caching of pages;
- the session: the cookie (HttpOnly, SameSite=Strict, Path=/console, Secure over https or when
  SCIMLEDGER_PUBLIC_URL is https) names a server-side session, looked up on every request with
  its token's state (service.app.console_sessions); no session -> the sign-in page;
- the role: a page names the roles that may see it; another role gets 403;
- CSRF: every POST carries the session's token in a hidden field, compared in constant time,
  and a foreign Origin is refused; the sign-in form, before any session, is bound the same way to
  a random cookie of its own;
- errors as pages: a domain or protocol error is rendered as an HTML page with its status.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from projections.domain.errors import DomainError
from service.app import console_sessions
from service.http.console.keys import CONSOLE_SETTINGS, DB, FORM, SESSION
from service.http.console.render import render
from service.http.errors import to_scim
from service.http.keys import POOL, REQUEST_ID, SETTINGS
from service.scim.errors import ScimError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = structlog.get_logger("scimledger.console")

PREFIX = "/console"
SESSION_COOKIE = "scimledger_console"
SIGN_IN_COOKIE = "scimledger_console_signin"
SIGN_IN_PURPOSE = "console sign-in"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on form POSTs,
    # which the Origin check must refuse; other sites still get no referrer at all
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare of the console app: every answer, streamed ones included."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith(PREFIX + "/static/"):
        response.headers["Cache-Control"] = "no-store"


def is_secure(request: web.Request) -> bool:
    public = request.config_dict[SETTINGS].public_url or ""
    return request.secure or public.lower().startswith("https://")


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=PREFIX, httponly=True, samesite="Strict",
        secure=is_secure(request),
    )


def clear_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=PREFIX, secure=is_secure(request), httponly=True, samesite="Strict")


def sign_in_secret(request: web.Request) -> str:
    """The random value the sign-in form's CSRF token is bound to (its own cookie)."""
    return request.cookies.get(SIGN_IN_COOKIE, "") or secrets.token_urlsafe(32)


def same_origin(request: web.Request) -> bool:
    """A POST's Origin (when the browser sends one) is this service's."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = {f"{request.scheme}://{request.host}"}
    public = request.config_dict[SETTINGS].public_url
    if public:
        parts = urlsplit(public)
        allowed.add(f"{parts.scheme}://{parts.netloc}")
    return origin in allowed


class Refused(Exception):
    """A console refusal rendered as a page: status and the sentence shown."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


async def check_form(request: web.Request, secret: str, purpose: str) -> dict[str, str]:
    """The POSTed form, after the Origin and CSRF checks (403 otherwise)."""
    if not same_origin(request):
        raise Refused(403, "This form was sent from another site; it was refused.")
    form = await request.post()
    given = form.get("csrf")
    if not secret or not isinstance(given, str) or not console_sessions.csrf_matches(secret, given, purpose):
        raise Refused(403, "The form's security token is missing or stale. Reload the page and try again.")
    return {k: v for k, v in form.items() if isinstance(v, str)}


def page(roles: Iterable[str], handler: Handler) -> Handler:
    """A handler behind a live session of one of `roles`, with one pooled connection for the
    request (the session lookup and the page's reads share it)."""
    allowed = frozenset(roles)

    async def guarded(request: web.Request) -> web.StreamResponse:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        async with request.config_dict[POOL].acquire() as conn:
            session = await console_sessions.lookup(
                conn, cookie, idle=request.config_dict[CONSOLE_SETTINGS].session_idle
            ) if cookie else None
            if session is None:
                if request.method in ("GET", "HEAD"):
                    response = web.HTTPSeeOther(f"{PREFIX}/sign-in")
                    if cookie:
                        clear_cookie(request, response, SESSION_COOKIE)
                    raise response
                raise Refused(401, "Your session has ended. Sign in again.")
            request[SESSION] = session
            if session.role not in allowed:
                raise Refused(403, f"This page is not part of the {session.role}'s view.")
            if request.method == "POST":
                request[FORM] = await check_form(request, cookie, "console form")
            request[DB] = conn
            try:
                return await handler(request)
            finally:
                del request[DB]

    return guarded


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals and errors of console routes as HTML pages (not SCIM bodies)."""
    try:
        return await handler(request)
    except Refused as e:
        return render(request, "error.html", {"status": e.status, "detail": e.detail}, status=e.status)
    except (ScimError, DomainError) as e:
        mapped = to_scim(e)
        if mapped is None:
            raise
        return render(request, "error.html", {"status": mapped.status, "detail": mapped.detail},
                      status=mapped.status)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        detail = "No such page." if e.status == 404 else (e.reason or "Refused.")
        return render(request, "error.html", {"status": e.status, "detail": detail}, status=e.status)
    except Exception:
        log.exception("console.failed", method=request.method, path=request.path)
        detail = f"Something went wrong; quote request id {request.get(REQUEST_ID)} to the operator."
        return render(request, "error.html", {"status": 500, "detail": detail}, status=500)
