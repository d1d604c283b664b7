"""Signing in and out of the console. The token travels only in the sign-in form's POST body:
never in a URL, never logged, never echoed back into a page."""

from __future__ import annotations

import datetime as dt

import structlog
from aiohttp import web

from service.app import console_sessions
from service.http.console.keys import CONSOLE_SETTINGS, DB, SESSION
from service.http.console.render import render
from service.http.console.security import (
    PREFIX,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SIGN_IN_PURPOSE,
    check_form,
    clear_cookie,
    set_cookie,
    sign_in_secret,
)
from service.http.keys import POOL

log = structlog.get_logger("scimledger.console")

HOME = {"admin": f"{PREFIX}/directory", "auditor": f"{PREFIX}/audit"}
SIGN_IN_COOKIE_AGE = 3600


def _duration(span: dt.timedelta) -> str:
    minutes = round(span.total_seconds() / 60)
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'' if hours == 1 else 's'}"
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


def _form(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    secret = sign_in_secret(request)
    settings = request.config_dict[CONSOLE_SETTINGS]
    response = render(request, "sign_in.html", {
        "csrf": console_sessions.csrf_token(secret, SIGN_IN_PURPOSE), "error": error,
        "lifetime": _duration(settings.session_lifetime), "idle": _duration(settings.session_idle),
    }, status=status)
    set_cookie(request, response, SIGN_IN_COOKIE, secret, SIGN_IN_COOKIE_AGE)
    return response


async def sign_in_page(request: web.Request) -> web.Response:
    return _form(request)


async def sign_in(request: web.Request) -> web.Response:
    form = await check_form(request, request.cookies.get(SIGN_IN_COOKIE, ""), SIGN_IN_PURPOSE)
    token = form.get("token", "").strip()
    if not token:
        return _form(request, error="Paste a token to sign in.", status=400)
    settings = request.config_dict[CONSOLE_SETTINGS]
    async with request.config_dict[POOL].acquire() as conn:
        signed = await console_sessions.sign_in(conn, token, lifetime=settings.session_lifetime)
    if signed is None:
        log.info("console.sign_in_refused")
        return _form(request, error="That token is not valid: unknown, revoked or expired.", status=401)
    session_id, session = signed
    log.info("console.signed_in", tenant=str(session.principal.tenant_id), token_label=session.principal.label,
             role=session.role)
    response = web.HTTPSeeOther(HOME[session.role])
    set_cookie(request, response, SESSION_COOKIE, session_id, int(settings.session_lifetime.total_seconds()))
    clear_cookie(request, response, SIGN_IN_COOKIE)
    raise response


async def sign_out(request: web.Request) -> web.Response:
    """POST, behind the session and its CSRF check (security.page)."""
    await console_sessions.sign_out(request[DB], request.cookies.get(SESSION_COOKIE, ""))
    session = request[SESSION]
    log.info("console.signed_out", tenant=str(session.principal.tenant_id), token_label=session.principal.label)
    response = web.HTTPSeeOther(f"{PREFIX}/sign-in")
    clear_cookie(request, response, SESSION_COOKIE)
    raise response


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(HOME[request[SESSION].role])
