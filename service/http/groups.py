"""SCIM /Groups (RFC 7643 4.2, RFC 7644 3.3 to 3.7) over the groups and membership views.

Members are Users only: a member of type "Group" (a nested group) is refused with 400
invalidValue. Neither Okta nor Entra pushes nested groups, and flattening them would make the
audit trail's "who was in this group" ambiguous (docs/decisions.md).

Writers of one group are serialised by a row lock on the group (SELECT ... FOR UPDATE), so
concurrent PATCHes adding different members all land without retries.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from projections.domain import decide as commands
from projections.domain.events import Event, GroupMembersAdded, GroupMembersRemoved
from projections.domain.members import decide_members, ids_named, member_uuid, needs_full_list
from projections.views import groups as groups_view
from service.app.actor import request_metadata
from service.http.connection import connection
from service.http.discovery import base_url
from service.http.keys import PRINCIPAL, SETTINGS
from service.http.listing import ListQuery, find_page, list_response, parse_query, search_needs_post
from service.http.rendering import check_if_match, etag, meta, not_modified, parse_id
from service.http.wire import SCIM_CONTENT_TYPE, read_json_object, scim_response
from service.scim import filter as scim_filter
from service.scim.errors import InvalidValue, NotFound
from service.scim.patch import MemberOp, apply_patch
from service.scim.projection import AttrRef, parse_attribute_list, project, wants
from service.scim.resource import normalize
from service.scim.schema import CORE_GROUP, GROUP_RESOURCE

PREFIX = "/scim/v2/Groups"
_encode = msgspec.json.Encoder().encode

GROUPS_TARGET = scim_filter.SqlTarget(
    resource_type=GROUP_RESOURCE,
    columns={
        "id": scim_filter.Column("g.id", "uuid", case_exact=True),
        "displayname": scim_filter.Column("g.display_name"),
        "externalid": scim_filter.Column("g.external_id", case_exact=True),
        "meta.created": scim_filter.Column("g.created", "dateTime"),
        "meta.lastmodified": scim_filter.Column("g.last_modified", "dateTime"),
    },
    json_column="g.resource",
    relations={
        "members": scim_filter.Relation(
            exists_sql="SELECT 1 FROM group_members m WHERE m.tenant_id = g.tenant_id AND m.group_id = g.id",
            columns={"value": scim_filter.Column("m.member_id", "uuid", case_exact=True)},
        )
    },
    constants={"meta.resourcetype": "Group"},
)


def render(row: groups_view.GroupRow, base: str) -> dict[str, Any]:
    """The group without `members` (they are streamed separately)."""
    out: dict[str, Any] = {"schemas": [CORE_GROUP], "id": str(row.id)}
    for key, value in row.resource.items():
        if key != "schemas":
            out[key] = value
    out["meta"] = meta("Group", f"{base}/Groups/{row.id}", row.version, row.created, row.last_modified)
    return out


def member_json(member_id: uuid.UUID | str, base: str) -> dict[str, Any]:
    """value, $ref and type: the sub-attributes of RFC 7643 8.7.1. No server-made `display`:
    members' sub-attributes are immutable (RFC 7643 4.2), a user's live name is not."""
    return {"value": str(member_id), "$ref": f"{base}/Users/{member_id}", "type": "User"}


async def _pieces(
    conn: asyncpg.Connection,
    row: groups_view.GroupRow,
    base: str,
    attributes: list[AttrRef] | None,
    excluded: list[AttrRef] | None,
) -> AsyncIterator[bytes]:
    """The group's JSON in pieces: members are encoded batch by batch from a cursor (the caller
    holds a transaction), so a group of 100,000 members is never built in memory at once."""
    head = _encode(project(render(row, base), GROUP_RESOURCE, attributes=attributes, excluded=excluded))
    if not wants("members", attributes, excluded, GROUP_RESOURCE):
        yield head
        return
    yield head[:-1] + b',"members":['
    first = True
    async for batch in groups_view.members(conn, row.tenant_id, row.id):
        elements = [member_json(r["member_id"], base) for r in batch]
        reduced = project({"members": elements}, GROUP_RESOURCE, attributes=attributes, excluded=excluded)
        chunk = _encode(reduced.get("members", []))[1:-1]
        if chunk:
            yield chunk if first else b"," + chunk
            first = False
    yield b"]}"


async def _stream_group(
    request: web.Request,
    conn: asyncpg.Connection,
    row: groups_view.GroupRow,
    *,
    status: int = 200,
    attributes: list[AttrRef] | None = None,
    excluded: list[AttrRef] | None = None,
) -> web.StreamResponse:
    """Send a group, its member list in chunks as the cursor yields them."""
    base = base_url(request)
    response = web.StreamResponse(status=status, headers={"ETag": etag(row.version)})
    response.content_type = SCIM_CONTENT_TYPE
    response.charset = "utf-8"
    if status == 201:
        response.headers["Location"] = f"{base}/Groups/{row.id}"
    await response.prepare(request)
    async with conn.transaction():
        async for piece in _pieces(conn, row, base, attributes, excluded):
            await response.write(piece)
    await response.write_eof()
    return response


def _attribute_params(request: web.Request) -> tuple[list[AttrRef] | None, list[AttrRef] | None]:
    attrs = request.query.get("attributes")
    excl = request.query.get("excludedAttributes")
    return (
        parse_attribute_list(attrs, GROUP_RESOURCE) if attrs else None,
        parse_attribute_list(excl, GROUP_RESOURCE) if excl else None,
    )


async def _member_events(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, group_id: uuid.UUID | None, ops: list[MemberOp]
) -> list[Event]:
    """Validate the ids added (each an existing User of the tenant) and decide the net change."""
    if not ops:
        return []
    named = ids_named(ops)
    to_add = {member_uuid(v) for op in ops if op.kind in ("add", "replace") for v in op.values}
    if to_add:
        known = await groups_view.existing_users(conn, tenant_id, list(to_add))
        unknown = sorted(str(m) for m in to_add - known)
        if unknown:
            raise InvalidValue(f"unknown member id(s): {', '.join(unknown[:10])}"
                               + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
    present: set[uuid.UUID] = set()
    full: set[uuid.UUID] | None = None
    if group_id is not None:
        if needs_full_list(ops):
            full = await groups_view.all_member_ids(conn, tenant_id, group_id)
        elif named:
            present = await groups_view.present_members(conn, tenant_id, group_id, list(named))
    elif needs_full_list(ops):
        full = set()
    change = decide_members(ops, present, full)
    events: list[Event] = []
    if change.removed:
        events.append(GroupMembersRemoved(members=[str(m) for m in change.removed]))
    if change.added:
        events.append(GroupMembersAdded(members=[str(m) for m in change.added]))
    return events


def _members_to_op(members: list[dict[str, Any]] | None, kind: str) -> list[MemberOp]:
    if members is None:
        return []
    return [MemberOp(kind, [str(m["value"]) for m in members])]  # type: ignore[arg-type]


async def create_group(request: web.Request) -> web.StreamResponse:
    principal = request[PRINCIPAL]
    body = await read_json_object(request)
    normalized = normalize(body, GROUP_RESOURCE)
    group_id = uuid.uuid4()
    metadata = request_metadata(request)
    async with connection(request) as conn:
        async with conn.transaction():
            events = commands.create_group(normalized.resource)
            events += await _member_events(conn, principal.tenant_id, None, _members_to_op(normalized.members, "add"))
            row = await groups_view.write(conn, principal.tenant_id, group_id, None, events, metadata)
        attributes, excluded = _attribute_params(request)
        return await _stream_group(request, conn, row, status=201, attributes=attributes, excluded=excluded)


async def _load(conn: asyncpg.Connection, request: web.Request, *, for_update: bool = False) -> groups_view.GroupRow:
    group_id = parse_id(request.match_info["id"])
    row = (
        await groups_view.get(conn, request[PRINCIPAL].tenant_id, group_id, for_update=for_update)
        if group_id else None
    )
    if row is None:
        raise NotFound(f"Group {request.match_info['id']} not found")
    return row


async def get_group(request: web.Request) -> web.StreamResponse:
    async with connection(request) as conn:
        row = await _load(conn, request)
        if not_modified(request.headers.get("If-None-Match"), row.version):
            return web.Response(status=304, headers={"ETag": etag(row.version)})
        attributes, excluded = _attribute_params(request)
        return await _stream_group(request, conn, row, attributes=attributes, excluded=excluded)


async def replace_group(request: web.Request) -> web.StreamResponse:
    """PUT: displayName/externalId replaced; `members` given replaces the list, `members`
    absent leaves it as it is (Okta's PUT for a rename carries no members)."""
    principal = request[PRINCIPAL]
    body = await read_json_object(request)
    normalized = normalize(body, GROUP_RESOURCE)
    metadata = request_metadata(request)
    async with connection(request) as conn:
        async with conn.transaction():
            current = await _load(conn, request, for_update=True)
            check_if_match(request.headers.get("If-Match"), current.version)
            events = commands.update_group(current.resource, normalized.resource)
            events += await _member_events(
                conn, principal.tenant_id, current.id, _members_to_op(normalized.members, "replace")
            )
            row = await groups_view.write(conn, principal.tenant_id, current.id, current, events, metadata) if events else current
        attributes, excluded = _attribute_params(request)
        return await _stream_group(request, conn, row, attributes=attributes, excluded=excluded)


async def patch_group(request: web.Request) -> web.StreamResponse:
    """PATCH: 204 No Content (a member list can be huge; Entra's documented exchange), or 200
    with the group when the request names `attributes` or `excludedAttributes`."""
    principal = request[PRINCIPAL]
    body = await read_json_object(request)
    metadata = request_metadata(request)
    async with connection(request) as conn:
        async with conn.transaction():
            current = await _load(conn, request, for_update=True)
            check_if_match(request.headers.get("If-Match"), current.version)
            result = apply_patch(current.resource, body, GROUP_RESOURCE)
            events = commands.update_group(current.resource, result.resource)
            events += await _member_events(conn, principal.tenant_id, current.id, result.member_ops)
            row = await groups_view.write(conn, principal.tenant_id, current.id, current, events, metadata) if events else current
        attributes, excluded = _attribute_params(request)
        if attributes is None and excluded is None:
            return web.Response(status=204, headers={"ETag": etag(row.version)})
        return await _stream_group(request, conn, row, attributes=attributes, excluded=excluded)


async def delete_group(request: web.Request) -> web.Response:
    async with connection(request) as conn, conn.transaction():
        current = await _load(conn, request, for_update=True)
        check_if_match(request.headers.get("If-Match"), current.version)
        await groups_view.delete(conn, current, commands.delete_group(current.resource), request_metadata(request))
    return web.Response(status=204)


async def remove_member_everywhere(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, member_id: uuid.UUID, metadata: dict[str, Any]
) -> list[uuid.UUID]:
    """A deleted user leaves every group: group.members_removed (reason user.deleted) on each
    group's stream, in the caller's transaction. Returns the group ids."""
    left = await groups_view.groups_with_member(conn, tenant_id, member_id)
    for row in left:
        event = GroupMembersRemoved(members=[str(member_id)], reason="user.deleted")
        await groups_view.write(conn, tenant_id, row.id, row, [event], metadata)
    return [row.id for row in left]


async def _list(request: web.Request, query: ListQuery) -> web.Response:
    base = base_url(request)
    async with connection(request) as conn:
        total, rows = await find_page(request, conn, query, GROUPS_TARGET, groups_view.search, "g.ordinal")
        resources: list[Any] = []
        with_members = wants("members", query.attributes, query.excluded, GROUP_RESOURCE)
        async with conn.transaction():
            for row in rows:
                if with_members:
                    pieces = [p async for p in _pieces(conn, row, base, query.attributes, query.excluded)]
                    resources.append(msgspec.Raw(b"".join(pieces)))
                else:
                    resources.append(project(render(row, base), GROUP_RESOURCE,
                                             attributes=query.attributes, excluded=query.excluded))
    return scim_response(list_response(resources, total, query.start_index))


async def list_groups(request: web.Request) -> web.Response:
    return await _list(request, parse_query(request.query, GROUP_RESOURCE, request.app[SETTINGS]))


async def search_groups(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    return await _list(request, parse_query(body, GROUP_RESOURCE, request.app[SETTINGS]))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(PREFIX, create_group)
    router.add_get(PREFIX, list_groups)
    router.add_get(f"{PREFIX}/.search", search_needs_post)
    router.add_post(f"{PREFIX}/.search", search_groups)
    router.add_get(f"{PREFIX}/{{id}}", get_group)
    router.add_put(f"{PREFIX}/{{id}}", replace_group)
    router.add_patch(f"{PREFIX}/{{id}}", patch_group)
    router.add_delete(f"{PREFIX}/{{id}}", delete_group)
