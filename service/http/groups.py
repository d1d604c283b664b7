"""SCIM /Groups (RFC 7643 4.2, RFC 7644 3.3 to 3.7): parse the request, call the use case in
service.app.groups, render the answer. A group's members are streamed in chunks as the view's
cursor yields them, so a group of 100,000 members is never built in memory at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from service.app import groups
from service.http.context import base_url, connection, request_actor, write_target
from service.http.keys import PAGE_CURSORS, PRINCIPAL
from service.http.wire import (
    SCIM_CONTENT_TYPE,
    attribute_params,
    list_query,
    read_json_object,
    scim_response,
)
from service.scim.projection import AttrRef, project, wants
from service.scim.query import ListQuery, list_response
from service.scim.render import etag, member_json, not_modified, render_group
from service.scim.schema import GROUP_RESOURCE

_encode = msgspec.json.Encoder().encode


async def _pieces(
    conn: asyncpg.Connection,
    row: groups.GroupRow,
    base: str,
    attributes: list[AttrRef] | None,
    excluded: list[AttrRef] | None,
) -> AsyncIterator[bytes]:
    """The group's JSON in pieces: members are encoded batch by batch."""
    head = _encode(project(render_group(row, base), GROUP_RESOURCE, attributes=attributes, excluded=excluded))
    if not wants("members", attributes, excluded, GROUP_RESOURCE):
        yield head
        return
    yield head[:-1] + b',"members":['
    first = True
    async for batch in groups.member_batches(conn, row):
        elements = [member_json(m, base) for m in batch]
        reduced = project({"members": elements}, GROUP_RESOURCE, attributes=attributes, excluded=excluded)
        chunk = _encode(reduced.get("members", []))[1:-1]
        if chunk:
            yield chunk if first else b"," + chunk
            first = False
    yield b"]}"


async def _stream_group(
    request: web.Request, conn: asyncpg.Connection, row: groups.GroupRow, *, status: int = 200
) -> web.StreamResponse:
    """Send a group, its member list in chunks as the cursor yields them."""
    attributes, excluded = attribute_params(request, GROUP_RESOURCE)
    base = base_url(request)
    response = web.StreamResponse(status=status, headers={"ETag": etag(row.version)})
    response.content_type = SCIM_CONTENT_TYPE
    response.charset = "utf-8"
    if status == 201:
        response.headers["Location"] = f"{base}/Groups/{row.id}"
    await response.prepare(request)
    async for piece in _pieces(conn, row, base, attributes, excluded):
        await response.write(piece)
    await response.write_eof()
    return response


async def create_group(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    async with connection(request) as conn:
        row = await groups.create_group(conn, request[PRINCIPAL].tenant_id, body, request_actor(request))
        return await _stream_group(request, conn, row, status=201)


async def get_group(request: web.Request) -> web.StreamResponse:
    async with connection(request) as conn:
        row = await groups.get_group(conn, request[PRINCIPAL].tenant_id, request.match_info["id"])
        if not_modified(request.headers.get("If-None-Match"), row.version):
            return web.Response(status=304, headers={"ETag": etag(row.version)})
        return await _stream_group(request, conn, row)


async def replace_group(request: web.Request) -> web.StreamResponse:
    body = await read_json_object(request)
    async with connection(request) as conn:
        row = await groups.replace_group(conn, write_target(request), body)
        return await _stream_group(request, conn, row)


async def patch_group(request: web.Request) -> web.StreamResponse:
    """PATCH: 204 No Content (a member list can be huge; Entra's documented exchange), or 200
    with the group when the request names `attributes` or `excludedAttributes`."""
    body = await read_json_object(request)
    async with connection(request) as conn:
        row = await groups.patch_group(conn, write_target(request), body)
        if attribute_params(request, GROUP_RESOURCE) == (None, None):
            return web.Response(status=204, headers={"ETag": etag(row.version)})
        return await _stream_group(request, conn, row)


async def delete_group(request: web.Request) -> web.Response:
    async with connection(request) as conn:
        await groups.delete_group(conn, write_target(request))
    return web.Response(status=204)


async def _list(request: web.Request, query: ListQuery) -> web.Response:
    base = base_url(request)
    async with connection(request) as conn:
        page = await groups.list_groups(conn, request[PRINCIPAL].tenant_id, query, request.app[PAGE_CURSORS])
        resources: list[Any] = []
        with_members = wants("members", query.attributes, query.excluded, GROUP_RESOURCE)
        for row in page.rows:
            if with_members:
                pieces = [p async for p in _pieces(conn, row, base, query.attributes, query.excluded)]
                resources.append(msgspec.Raw(b"".join(pieces)))
            else:
                resources.append(project(render_group(row, base), GROUP_RESOURCE,
                                         attributes=query.attributes, excluded=query.excluded))
    return scim_response(list_response(resources, page.total, query.start_index))


async def list_groups(request: web.Request) -> web.Response:
    return await _list(request, list_query(request, request.query, GROUP_RESOURCE))


async def search_groups(request: web.Request) -> web.Response:
    return await _list(request, list_query(request, await read_json_object(request), GROUP_RESOURCE))
