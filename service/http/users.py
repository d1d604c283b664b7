"""SCIM /Users (RFC 7643 4.1, RFC 7644 3.3 to 3.7): parse the request, call the use case in
service.app.users, render the answer with its ETag. Reads come from the inline view, so a GET
right after a write sees it (read-your-writes).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service.app import users
from service.http.context import base_url, connection, request_actor, write_target
from service.http.keys import PAGE_CURSORS, PRINCIPAL
from service.http.wire import attribute_params, list_query, read_json_object, scim_response
from service.scim.projection import project
from service.scim.query import ListQuery, list_response
from service.scim.render import etag, not_modified, render_user
from service.scim.schema import USER_RESOURCE


def _respond(request: web.Request, state: users.UserState, status: int = 200) -> web.Response:
    attributes, excluded = attribute_params(request, USER_RESOURCE)
    full = render_user(state.row, base_url(request), state.groups)
    body: dict[str, Any] = project(full, USER_RESOURCE, attributes=attributes, excluded=excluded)
    headers = {"ETag": etag(state.row.version)}
    if status == 201:
        headers["Location"] = full["meta"]["location"]
    return scim_response(body, status=status, headers=headers)


async def create_user(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    async with connection(request) as conn:
        row = await users.create_user(conn, request[PRINCIPAL].tenant, body, request_actor(request))
    return _respond(request, users.UserState(row, []), status=201)  # a new user is in no group


async def get_user(request: web.Request) -> web.StreamResponse:
    async with connection(request) as conn:
        state = await users.get_user(conn, request[PRINCIPAL].tenant_id, request.match_info["id"])
    if not_modified(request.headers.get("If-None-Match"), state.row.version):
        return web.Response(status=304, headers={"ETag": etag(state.row.version)})
    return _respond(request, state)


async def replace_user(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    async with connection(request) as conn:
        state = await users.replace_user(conn, write_target(request), body)
    return _respond(request, state)


async def patch_user(request: web.Request) -> web.Response:
    """PATCH answers 200 with the resource."""
    body = await read_json_object(request)
    async with connection(request) as conn:
        state = await users.patch_user(conn, write_target(request), body)
    return _respond(request, state)


async def delete_user(request: web.Request) -> web.Response:
    async with connection(request) as conn:
        await users.delete_user(conn, write_target(request))
    return web.Response(status=204)


async def _list(request: web.Request, query: ListQuery) -> web.Response:
    async with connection(request) as conn:
        page = await users.list_users(conn, request[PRINCIPAL].tenant_id, query, request.app[PAGE_CURSORS])
    base = base_url(request)
    resources = [
        project(render_user(r, base, page.groups.get(r.id, [])), USER_RESOURCE,
                attributes=query.attributes, excluded=query.excluded)
        for r in page.rows
    ]
    return scim_response(list_response(resources, page.total, query.start_index))


async def list_users(request: web.Request) -> web.Response:
    return await _list(request, list_query(request, request.query, USER_RESOURCE))


async def search_users(request: web.Request) -> web.Response:
    """POST /Users/.search (RFC 7644 3.4.3)."""
    return await _list(request, list_query(request, await read_json_object(request), USER_RESOURCE))
