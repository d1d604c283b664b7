"""The web console under /console/ (docs/console.md): server-rendered pages for tenant admins
(a `scim` token: Directory, user and group pages, the provisioning log) and auditors (an `audit`
token: the trail, its exports, the seal), signed in by pasting a token.

Mounted by `setup(app)` in service/http/app.py as a sub-application, so its middleware (HTML
error pages) and response headers (CSP and the rest, security.py) apply to its routes only.
`setup` also registers the request-log hook (requests.py) as the outermost middleware of the
service and its flusher as a cleanup context (after the pool's, so it drains before the pool
closes).

The console's routes are here, one table like service/http/routes.py, with the roles each page
admits; every one but the sign-in page is behind a session (security.page).
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from service.http.console import pages, provisioning, signin, trail
from service.http.console.keys import CONSOLE_SETTINGS, TEMPLATES
from service.http.console.render import environment
from service.http.console.requests import log_requests, request_log_ctx
from service.http.console.security import PREFIX, Handler, error_pages, page, security_headers
from service.http.console.settings import ConsoleSettings

ADMIN, AUDITOR = ("admin",), ("auditor",)
BOTH = ADMIN + AUDITOR

# method, path under /console, handler, roles (None: no session needed)
ROUTES: tuple[tuple[str, str, Handler, tuple[str, ...] | None], ...] = (
    ("GET", "/", signin.home, BOTH),
    ("GET", "/sign-in", signin.sign_in_page, None),
    ("POST", "/sign-in", signin.sign_in, None),
    ("POST", "/sign-out", signin.sign_out, BOTH),
    ("GET", "/directory", pages.directory_page, ADMIN),
    ("GET", "/users/{id}", pages.user_page, BOTH),
    ("GET", "/groups/{id}", pages.group_page, BOTH),
    ("GET", "/provisioning", provisioning.provisioning_page, ADMIN),
    ("GET", "/audit", trail.audit_page, AUDITOR),
    ("GET", "/audit/export", trail.export, AUDITOR),
    ("GET", "/audit/seal", trail.seal_page, AUDITOR),
)


def console_app() -> web.Application:
    console = web.Application(middlewares=[error_pages])
    console.on_response_prepare.append(security_headers)
    for method, path, handler, roles in ROUTES:
        guarded = handler if roles is None else page(roles, handler)
        if method == "GET":
            console.router.add_get(path, guarded)
        else:
            console.router.add_route(method, path, guarded)
    static = resources.files("service.http.console") / "static"
    console.router.add_static("/static/", str(static), append_version=False)
    return console


async def _slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(f"{PREFIX}/")


def setup(app: web.Application, settings: ConsoleSettings | None = None) -> None:
    """Mount the console and the request-log hook on the service's app (before it starts)."""
    settings = settings or ConsoleSettings.from_env()
    app[CONSOLE_SETTINGS] = settings
    app[TEMPLATES] = environment()
    app.middlewares.insert(0, log_requests)
    app.cleanup_ctx.append(request_log_ctx)
    if settings.enabled:
        app.router.add_get(PREFIX, _slash)
        app.add_subapp(PREFIX, console_app())
