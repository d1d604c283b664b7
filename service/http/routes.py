"""Every route of the service, in one table: method, path, handler.

Resource paths are the RFC 7644 3.2 endpoints under /scim/v2, the auditor's read-only API under
/audit/v1, and the unauthenticated probes. Scopes are decided by prefix in the authentication
middleware (service/http/middleware.py).

The SCIM endpoints are matched leniently, as real IdPs need: the endpoint's name in any case
(`/scim/v2/users`) and with a trailing slash (`/scim/v2/Users/`, `/scim/v2/Users/{id}/`). The
`/scim/v2` prefix stays exact (the scope check reads it). `lenient` turns a template into an
aiohttp pattern doing that; `TEMPLATES` maps each registered resource back to its template,
which metrics and the request log use as its name.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.http import audit, discovery, events, groups, metrics, oauth, probes, users
from service.http.keys import TEMPLATES
from service.scim.errors import ScimError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def search_needs_post(request: web.Request) -> web.Response:
    """`/.search` is POST only (RFC 7644 3.4.3); without this route a GET would be read as a
    request for a resource whose id is ".search"."""
    raise ScimError("/.search takes POST with a SearchRequest body (RFC 7644 3.4.3)", status=405,
                    headers={"Allow": "POST"})


def resource_routes(
    prefix: str, create: Handler, listing: Handler, search: Handler,
    get: Handler, replace: Handler, patch: Handler, delete: Handler,
) -> tuple[tuple[str, str, Handler], ...]:
    """The endpoints of one resource type (RFC 7644 3.2)."""
    return (
        ("POST", prefix, create),
        ("GET", prefix, listing),
        ("GET", f"{prefix}/.search", search_needs_post),
        ("POST", f"{prefix}/.search", search),
        ("GET", f"{prefix}/{{id}}", get),
        ("PUT", f"{prefix}/{{id}}", replace),
        ("PATCH", f"{prefix}/{{id}}", patch),
        ("DELETE", f"{prefix}/{{id}}", delete),
    )


SCIM = "/scim/v2"
AUDIT = "/audit/v1"
ENDPOINTS = ("ServiceProviderConfig", "ResourceTypes", "Schemas", "Users", "Groups")  # RFC 7644 3.2

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/healthz", probes.healthz),
    ("GET", "/readyz", probes.readyz),
    ("GET", "/metrics", metrics.metrics_handler),
    # OAuth 2.0 (RFC 6749 4.4, RFC 7523, RFC 8414)
    ("POST", oauth.TOKEN_PATH, oauth.token),
    ("GET", oauth.METADATA_PATH, oauth.metadata),
    # discovery (RFC 7644 4)
    ("GET", SCIM, discovery.search_root),
    ("GET", f"{SCIM}/", discovery.search_root),
    ("POST", f"{SCIM}/.search", discovery.search_root),
    ("GET", f"{SCIM}/ServiceProviderConfig", discovery.get_service_provider_config),
    ("GET", f"{SCIM}/ResourceTypes", discovery.list_resource_types),
    ("GET", f"{SCIM}/ResourceTypes/{{id}}", discovery.get_resource_type),
    ("GET", f"{SCIM}/Schemas", discovery.list_schemas),
    ("GET", f"{SCIM}/Schemas/{{id}}", discovery.get_schema),
    # users and groups (RFC 7644 3.3 to 3.6)
    *resource_routes(f"{SCIM}/Users", users.create_user, users.list_users, users.search_users,
                     users.get_user, users.replace_user, users.patch_user, users.delete_user),
    *resource_routes(f"{SCIM}/Groups", groups.create_group, groups.list_groups, groups.search_groups,
                     groups.get_group, groups.replace_group, groups.patch_group, groups.delete_group),
    # the auditor's API
    ("GET", f"{AUDIT}/events", audit.list_events),
    ("GET", f"{AUDIT}/events/export", audit.export_events),
    ("GET", f"{AUDIT}/users/{{id}}/history", audit.user_history),
    ("GET", f"{AUDIT}/groups/{{id}}/history", audit.group_history),
    ("GET", f"{AUDIT}/users/{{id}}", audit.user_state),
    ("GET", f"{AUDIT}/groups/{{id}}", audit.group_state),
    ("GET", f"{AUDIT}/verify", audit.verify),
    # the app's security-event streams (RFC 8936 poll; the SET signing keys)
    ("POST", events.POLL_PATH, events.poll),
    ("GET", events.JWKS_PATH, events.jwks),
)


def lenient(template: str) -> str:
    """`/scim/v2/Users/{id}` -> `/scim/v2/{_endpoint:(?i:Users)}/{id}{_slash:/?}`: the endpoint's
    name case-insensitive, an optional trailing slash. Other paths come back unchanged."""
    head, _, rest = template.partition(f"{SCIM}/")
    endpoint, slash, tail = rest.partition("/")
    if head or endpoint not in ENDPOINTS:
        return template
    return f"{SCIM}/{{_endpoint:(?i:{re.escape(endpoint)})}}{slash}{tail}{{_slash:/?}}"


def canonical_endpoint(name: str) -> str | None:
    """The RFC 7644 3.2 spelling of an endpoint name given in any case; None when unknown."""
    return next((e for e in ENDPOINTS if e.lower() == name.lower()), None)


def add_routes(app: web.Application) -> None:
    templates: dict[web.AbstractResource, str] = {}
    for method, path, handler in ROUTES:
        if method == "GET":
            route = app.router.add_get(lenient(path), handler)  # and HEAD, as for every GET route
        else:
            route = app.router.add_route(method, lenient(path), handler)
        templates[route.resource] = path  # type: ignore[index]
    app[TEMPLATES] = templates
