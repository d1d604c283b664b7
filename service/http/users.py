"""SCIM /Users (RFC 7643 4.1, RFC 7644 3.3 to 3.7): handlers over the inline users view.

Every write: decide (projections.domain.decide) -> append + view in one statement or transaction ->
respond from the new row, with its ETag. Reads come from the view, read-your-writes.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from eventstore.store import WrongExpectedVersion
from projections.domain import decide as commands
from projections.domain.events import Event
from projections.views import users as users_view
from service.app.actor import request_metadata
from service.app.tenancy import Principal
from service.http import groups as groups_service
from service.http.connection import connection
from service.http.discovery import base_url
from service.http.keys import PRINCIPAL, SETTINGS
from service.http.listing import ListQuery, find_page, list_response, parse_query, search_needs_post
from service.http.rendering import check_if_match, etag, meta, not_modified, parse_id
from service.http.wire import read_json_object, scim_response
from service.scim import filter as scim_filter
from service.scim.errors import Forbidden, NotFound, ScimError, Uniqueness
from service.scim.patch import apply_patch
from service.scim.projection import parse_attribute_list, project, wants
from service.scim.resource import normalize
from service.scim.schema import CORE_USER, ENTERPRISE_USER, USER_RESOURCE

PREFIX = "/scim/v2/Users"
WRITE_RETRIES = 5  # re-decide on a concurrent change when the client sent no If-Match

USERS_TARGET = scim_filter.SqlTarget(
    resource_type=USER_RESOURCE,
    columns={
        "id": scim_filter.Column("u.id", "uuid", case_exact=True),
        "username": scim_filter.Column("u.user_name"),
        "externalid": scim_filter.Column("u.external_id", case_exact=True),
        "displayname": scim_filter.Column("u.display_name"),
        "active": scim_filter.Column("u.active", "boolean"),
        "meta.created": scim_filter.Column("u.created", "dateTime"),
        "meta.lastmodified": scim_filter.Column("u.last_modified", "dateTime"),
    },
    json_column="u.resource",
    relations={
        "groups": scim_filter.Relation(
            exists_sql="SELECT 1 FROM group_members m WHERE m.tenant_id = u.tenant_id AND m.member_id = u.id",
            columns={"value": scim_filter.Column("m.group_id", "uuid", case_exact=True)},
        )
    },
    constants={"meta.resourcetype": "User"},
    value_indexes={"emails.value": "scim_email_values(u.resource)"},
)


class SeatLimitReached(Forbidden):
    pass


def render(row: users_view.UserRow, base: str, groups: list[tuple[uuid.UUID, str]]) -> dict[str, Any]:
    resource = row.resource
    schemas = [CORE_USER]
    if ENTERPRISE_USER in resource:
        schemas.append(ENTERPRISE_USER)
    out: dict[str, Any] = {"schemas": schemas, "id": str(row.id)}
    for key, value in resource.items():
        if key != "schemas":
            out[key] = value
    out["groups"] = [
        {"value": str(gid), "$ref": f"{base}/Groups/{gid}", "display": name, "type": "direct"}
        for gid, name in groups
    ]
    out["meta"] = meta("User", f"{base}/Users/{row.id}", row.version, row.created, row.last_modified)
    return out


def _representation(
    request: web.Request,
    row: users_view.UserRow,
    groups: users_view.Groups,
    attributes: Any = None,
    excluded: Any = None,
) -> dict[str, Any]:
    full = render(row, base_url(request), groups)
    return project(full, USER_RESOURCE, attributes=attributes, excluded=excluded)


def _attribute_params(request: web.Request) -> tuple[Any, Any]:
    q = request.query
    attrs = q.get("attributes")
    excl = q.get("excludedAttributes")
    return (
        parse_attribute_list(attrs, USER_RESOURCE) if attrs else None,
        parse_attribute_list(excl, USER_RESOURCE) if excl else None,
    )


def _respond(
    request: web.Request, row: users_view.UserRow, groups: users_view.Groups, status: int = 200
) -> web.Response:
    attributes, excluded = _attribute_params(request)
    body = _representation(request, row, groups, attributes, excluded)
    headers = {"ETag": etag(row.version)}
    if status == 201:
        headers["Location"] = body.get("meta", {}).get("location") or f"{base_url(request)}/Users/{row.id}"
    return scim_response(body, status=status, headers=headers)


async def _check_seats(conn: asyncpg.Connection, principal: Principal) -> None:
    """Seat limit: active users of the tenant (a deactivated user frees its seat). Serialised per
    tenant by an advisory lock held to the end of the caller's transaction, and only for tenants
    that have a limit, so unlimited tenants' writers never wait on each other."""
    assert principal.seats is not None
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('seats:' || $1::uuid::text, 0))", principal.tenant_id
    )
    active = await users_view.count_active(conn, principal.tenant_id)
    if active >= principal.seats:
        raise SeatLimitReached(
            f"seat limit reached: the tenant has {principal.seats} seats and {active} active users; "
            "deactivate a user or raise the limit"
        )


async def write_user(
    conn: asyncpg.Connection,
    principal: Principal,
    user_id: uuid.UUID,
    current: users_view.UserRow | None,
    events: list[Event],
    metadata: dict[str, Any],
) -> users_view.UserRow:
    """Append and project, enforcing the seat limit when the events take a seat."""
    try:
        if principal.seats is not None and commands.activates(events):
            async with conn.transaction():
                await _check_seats(conn, principal)
                return await users_view.write(conn, principal.tenant_id, user_id, current, events, metadata)
        return await users_view.write(conn, principal.tenant_id, user_id, current, events, metadata)
    except users_view.UserNameTaken as e:
        raise Uniqueness(f"userName {e.args[0]!r} is already taken in this tenant") from e


# --- handlers -------------------------------------------------------------------------------

async def create_user(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    body = await read_json_object(request)
    normalized = normalize(body, USER_RESOURCE)
    events = commands.create_user(normalized.resource, password_set=normalized.password is not None)
    async with connection(request) as conn:
        row = await write_user(conn, principal, uuid.uuid4(), None, events, request_metadata(request))
    return _respond(request, row, [], status=201)  # a user just created is in no group


async def _load(conn: asyncpg.Connection, request: web.Request) -> tuple[users_view.UserRow, users_view.Groups]:
    """The user of the URL and its groups (one statement), or 404."""
    user_id = parse_id(request.match_info["id"])
    found = await users_view.get_with_groups(conn, request[PRINCIPAL].tenant_id, user_id) if user_id else None
    if found is None:
        raise NotFound(f"User {request.match_info['id']} not found")
    return found


async def get_user(request: web.Request) -> web.StreamResponse:
    async with connection(request) as conn:
        row, groups = await _load(conn, request)
    if not_modified(request.headers.get("If-None-Match"), row.version):
        return web.Response(status=304, headers={"ETag": etag(row.version)})
    return _respond(request, row, groups)


async def _update(request: web.Request, change: Any) -> web.Response:
    """Shared by PUT and PATCH: `change(current resource) -> (new resource, password_set)`."""
    principal = request[PRINCIPAL]
    if_match = request.headers.get("If-Match")
    async with connection(request) as conn:
        for attempt in range(WRITE_RETRIES):
            current, groups = await _load(conn, request)
            check_if_match(if_match, current.version)
            new, password_set = change(current.resource)
            events = commands.update_user(current.resource, new, password_set=password_set)
            if not events:
                return _respond(request, current, groups)
            try:
                row = await write_user(conn, principal, current.id, current, events, request_metadata(request))
            except WrongExpectedVersion:
                if if_match is not None or attempt == WRITE_RETRIES - 1:
                    raise
                continue
            return _respond(request, row, groups)
    raise AssertionError("unreachable")


async def replace_user(request: web.Request) -> web.Response:
    """PUT (RFC 7644 3.5.1): the body replaces the resource; readOnly attributes are ignored,
    unknown attributes ignored, `active` omitted keeps the current status."""
    body = await read_json_object(request)
    normalized = normalize(body, USER_RESOURCE)

    def change(current: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        new = dict(normalized.resource)
        if "active" not in new:
            new["active"] = current.get("active", True)
        return new, normalized.password is not None

    return await _update(request, change)


async def patch_user(request: web.Request) -> web.Response:
    """PATCH (RFC 7644 3.5.2): answers 200 with the resource."""
    body = await read_json_object(request)

    def change(current: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        result = apply_patch(current, body, USER_RESOURCE)
        # a `remove` of `active` leaves it unassigned (RFC 7644 3.5.2.2); commands.update_user
        # takes unassigned as active, the default of a create
        return result.resource, result.password is not None

    return await _update(request, change)


async def delete_user(request: web.Request) -> web.Response:
    """DELETE (RFC 7644 3.6): a soft delete. The user leaves SCIM (404 afterwards, its userName
    is free again) and every group (group.members_removed with reason user.deleted on each group
    stream), and its whole history stays in the log."""
    principal = request[PRINCIPAL]
    if_match = request.headers.get("If-Match")
    metadata = request_metadata(request)
    async with connection(request) as conn, conn.transaction():
        current, _ = await _load(conn, request)
        check_if_match(if_match, current.version)
        group_ids = await groups_service.remove_member_everywhere(conn, principal.tenant_id, current.id, metadata)
        event = commands.delete_user(current.resource, [str(g) for g in group_ids])
        await users_view.delete(conn, current, event, metadata)
    return web.Response(status=204)


async def _list(request: web.Request, query: ListQuery) -> web.Response:
    async with connection(request) as conn:
        total, rows = await find_page(request, conn, query, USERS_TARGET, users_view.search, "u.ordinal")
        groups: dict[uuid.UUID, users_view.Groups] = {}
        if rows and wants("groups", query.attributes, query.excluded, USER_RESOURCE):
            groups = await users_view.groups_of(conn, request[PRINCIPAL].tenant_id, [r.id for r in rows])
    base = base_url(request)
    resources = [
        project(render(r, base, groups.get(r.id, [])), USER_RESOURCE,
                attributes=query.attributes, excluded=query.excluded)
        for r in rows
    ]
    return scim_response(list_response(resources, total, query.start_index))


async def list_users(request: web.Request) -> web.Response:
    return await _list(request, parse_query(request.query, USER_RESOURCE, request.app[SETTINGS]))


async def search_users(request: web.Request) -> web.Response:
    """POST /Users/.search (RFC 7644 3.4.3)."""
    body = await read_json_object(request)
    return await _list(request, parse_query(body, USER_RESOURCE, request.app[SETTINGS]))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(PREFIX, create_user)
    router.add_get(PREFIX, list_users)
    router.add_get(f"{PREFIX}/.search", search_needs_post)
    router.add_post(f"{PREFIX}/.search", search_users)
    router.add_get(f"{PREFIX}/{{id}}", get_user)
    router.add_put(f"{PREFIX}/{{id}}", replace_user)
    router.add_patch(f"{PREFIX}/{{id}}", patch_user)
    router.add_delete(f"{PREFIX}/{{id}}", delete_user)


__all__ = ["ScimError", "add_routes"]
