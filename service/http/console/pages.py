"""The Directory: users and groups, a user's page and a group's page, each with its timeline."""

from __future__ import annotations

from aiohttp import web

from service.app import directory
from service.http.console.keys import DB, SESSION
from service.http.console.render import render
from service.http.keys import PAGE_CURSORS


def choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str:
    value = request.query.get(name, allowed[0])
    return value if value in allowed else allowed[0]


def start_index(request: web.Request, name: str = "start") -> int:
    raw = request.query.get(name, "1")
    return max(1, min(int(raw), 10**9)) if raw.isdigit() else 1


async def directory_page(request: web.Request) -> web.Response:
    tenant_id = request[SESSION].principal.tenant_id
    kind = choice(request, "kind", ("users", "groups"))
    q = request.query.get("q", "")[:256]
    status = choice(request, "status", directory.STATUSES)
    match = choice(request, "match", directory.MATCHES)
    cursors = request.config_dict[PAGE_CURSORS]
    start = start_index(request)
    if kind == "users":
        found = await directory.search_users(request[DB], tenant_id, cursors, q=q, status=status, match=match, start=start)
    else:
        found = await directory.search_groups(request[DB], tenant_id, cursors, q=q, match=match, start=start)
    params = {"kind": kind, "q": q, "status": status if kind == "users" else "", "match": match}
    return render(request, "directory.html", {
        "kind": kind, "q": q, "status": status, "match": match, "found": found, "params": params,
        "nav": "directory",
    })


async def user_page(request: web.Request) -> web.Response:
    tenant_id = request[SESSION].principal.tenant_id
    user = await directory.user_page(request[DB], tenant_id, request.match_info["id"])
    events, total = await directory.timeline(request[DB], tenant_id, user.id, "user")
    return render(request, "user.html", {"user": user, "events": events, "total": total, "nav": "directory"})


async def group_page(request: web.Request) -> web.Response:
    tenant_id = request[SESSION].principal.tenant_id
    group = await directory.group_page(request[DB], tenant_id, request.match_info["id"])
    members = None
    if group.row is not None:
        members = await directory.search_users(
            request[DB], tenant_id, request.config_dict[PAGE_CURSORS], start=start_index(request),
            count=directory.MEMBER_PAGE_SIZE, group_id=group.id,
        )
    events, total = await directory.timeline(request[DB], tenant_id, group.id, "group", limit=50)
    return render(request, "group.html", {
        "group": group, "members": members, "events": events, "total": total, "nav": "directory",
    })

