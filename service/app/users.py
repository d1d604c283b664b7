"""Use cases on users: create, read, replace, patch, deactivate, reactivate, delete, list.

One function per operation, each one atomic unit on the connection it is given (a single
statement, or one transaction where several are needed). The HTTP handlers and the CLI call
these and nothing below them. What lives here is policy:

- the seat limit: an activation (a create of an active user, a reactivation) is refused when the
  tenant's active users fill its seats; checks are serialised per tenant by an advisory lock;
- re-deciding on a concurrent change: a write without If-Match that loses the optimistic
  concurrency check reads the new state and decides again (up to WRITE_RETRIES times); with
  If-Match the client asked for exactly that version, so it gets the refusal;
- a deleted user leaves its groups in the same transaction (service.app.groups), including a
  group a concurrent PATCH adds it to: the add locks the user's row (FOR KEY SHARE), the
  deletion of the row waits for it, and a deletion that finds the user joined a group meanwhile
  starts over, so no deleted user stays a member and `user.deleted` lists every group it left.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from eventstore.store import WrongExpectedVersion
from projections.domain import decide
from projections.domain.actor import Actor
from projections.domain.errors import (
    ConcurrentChange,
    ResourceNotFound,
    SeatLimitReached,
)
from projections.domain.events import Event
from projections.domain.folds import Groups, UserRow
from projections.views import users as users_view
from service.app import groups as group_cases
from service.app.columns import USERS_TARGET
from service.app.listing import Page, find_page
from service.app.paging import PageCursors
from service.app.preconditions import Target, check_version, parse_id
from service.app.storage import check_room
from service.app.tenancy import Tenant
from service.scim.patch import apply_patch
from service.scim.projection import wants
from service.scim.query import ListQuery
from service.scim.resource import check_bounds, normalize
from service.scim.schema import USER_RESOURCE

WRITE_RETRIES = 5  # re-decide on a concurrent change when the client sent no If-Match

Change = Callable[[dict[str, Any]], tuple[dict[str, Any], bool]]  # resource -> (new, password_set)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UserState:
    """A user as a use case answers it: the view row and its groups (id, displayName)."""

    row: UserRow
    groups: Groups
    key: bytes | None = None  # the subject's data key, read with the row for a write


async def _check_seats(conn: asyncpg.Connection, tenant: Tenant) -> None:
    """Seat limit: active users of the tenant (a deactivated user frees its seat). Serialised per
    tenant by an advisory lock held to the end of the caller's transaction, and only for tenants
    that have a limit, so unlimited tenants' writers never wait on each other."""
    assert tenant.seats is not None
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('seats:' || $1::uuid::text, 0))", tenant.id
    )
    active = await users_view.count_active(conn, tenant.id)
    if active >= tenant.seats:
        raise SeatLimitReached(
            f"seat limit reached: the tenant has {tenant.seats} seats and {active} active users; "
            "deactivate a user or raise the limit"
        )


async def _write(
    conn: asyncpg.Connection,
    tenant: Tenant,
    user_id: uuid.UUID,
    current: UserRow | None,
    events: list[Event],
    actor: Actor,
    key: bytes | None,
) -> UserRow:
    """Append and project, enforcing the seat limit when the events take a seat. `key`: the
    subject's data key (None for a new subject: the view makes one)."""
    metadata = actor.metadata()
    if tenant.seats is not None and decide.activates(events):
        async with conn.transaction():
            await _check_seats(conn, tenant)
            return await users_view.write(conn, tenant.id, user_id, current, events, metadata, key)
    return await users_view.write(conn, tenant.id, user_id, current, events, metadata, key)


async def create_user(conn: asyncpg.Connection, tenant: Tenant, body: dict[str, Any], actor: Actor) -> UserRow:
    """POST /Users (RFC 7644 3.3) and `scimledger user create`."""
    normalized = normalize(body, USER_RESOURCE)
    await check_room(conn, tenant.id, "users")  # the tenant's storage bound (service/app/storage.py)
    events = decide.create_user(normalized.resource, password_set=normalized.password is not None)
    return await _write(conn, tenant, uuid.uuid4(), None, events, actor, None)


async def get_user(conn: asyncpg.Connection, tenant_id: uuid.UUID, raw_id: str, *, for_write: bool = False) -> UserState:
    """The user and its groups (one statement), with the subject's data key `for_write`; or
    ResourceNotFound."""
    user_id = parse_id(raw_id)
    found = await users_view.get_with_groups(conn, tenant_id, user_id, with_key=for_write) if user_id else None
    if found is None:
        raise ResourceNotFound(f"User {raw_id} not found")
    return UserState(*found)


class _JoinedMeanwhile(Exception):
    """A member add committed while a deletion waited for its lock on the user: start over."""


async def _re_deciding(target: Target, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run `attempt` (decide from the current state, write) again when a concurrent change beat
    it: a lost optimistic-concurrency race is re-decided on the new state unless the client sent
    If-Match (then it is the client's refusal, 412); up to WRITE_RETRIES times."""
    for n in range(WRITE_RETRIES):
        try:
            return await attempt()
        except WrongExpectedVersion:
            if target.if_match is not None or n == WRITE_RETRIES - 1:
                raise
        except _JoinedMeanwhile:
            continue
    raise ConcurrentChange("the resource kept changing; read it and retry")


async def _update(conn: asyncpg.Connection, target: Target, change: Change) -> UserState:
    """Shared by PUT and PATCH: decide from the current state, write, re-decide on a concurrent
    change when the client sent no If-Match."""

    async def attempt() -> UserState:
        current = await get_user(conn, target.tenant.id, target.raw_id, for_write=True)
        check_version(target.if_match, current.row.version)
        new, password_set = change(current.row.resource)
        events = decide.update_user(current.row.resource, new, password_set=password_set)
        if not events:
            return UserState(current.row, current.groups)
        row = await _write(conn, target.tenant, current.row.id, current.row, events, target.actor, current.key)
        return UserState(row, current.groups)

    return await _re_deciding(target, attempt)


async def replace_user(conn: asyncpg.Connection, target: Target, body: dict[str, Any]) -> UserState:
    """PUT (RFC 7644 3.5.1): the body replaces the resource; readOnly attributes are ignored,
    unknown attributes ignored, `active` omitted keeps the current status."""
    normalized = normalize(body, USER_RESOURCE)

    def change(current: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        new = dict(normalized.resource)
        if "active" not in new:
            new["active"] = current.get("active", True)
        return new, normalized.password is not None

    return await _update(conn, target, change)


async def patch_user(conn: asyncpg.Connection, target: Target, body: dict[str, Any]) -> UserState:
    """PATCH (RFC 7644 3.5.2)."""

    def change(current: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        result = apply_patch(current, body, USER_RESOURCE)
        check_bounds(result.resource, USER_RESOURCE)  # the patched resource within the input bounds
        # a `remove` of `active` leaves it unassigned (RFC 7644 3.5.2.2); decide.update_user
        # takes unassigned as active, the default of a create
        return result.resource, result.password is not None

    return await _update(conn, target, change)


async def find_user(conn: asyncpg.Connection, tenant_id: uuid.UUID, who: str) -> UserRow | None:
    """A user by id or by userName (case-insensitive), as an operator names one."""
    user_id = parse_id(who)
    if user_id is not None:
        row = await users_view.get(conn, tenant_id, user_id)
        if row is not None:
            return row
    return await users_view.get_by_user_name(conn, tenant_id, who)


async def set_active(
    conn: asyncpg.Connection, tenant: Tenant, who: str, active: bool, actor: Actor
) -> tuple[UserRow, bool]:
    """Deactivate (never delete) or reactivate a user named by id or userName; returns the row
    and whether anything changed (a user already in that state is left alone)."""
    current = await find_user(conn, tenant.id, who)
    if current is None:
        raise ResourceNotFound(f"no user {who!r} in tenant {tenant.name}")
    events = decide.update_user(current.resource, {**current.resource, "active": active})
    if not events:
        return current, False
    key = await users_view.key_of(conn, tenant.id, current.id)
    return await _write(conn, tenant, current.id, current, events, actor, key), True


async def delete_user(conn: asyncpg.Connection, target: Target) -> None:
    """DELETE (RFC 7644 3.6): a soft delete. The user leaves SCIM (404 afterwards, its userName
    is free again) and every group (group.members_removed with reason user.deleted on each group
    stream), and its whole history stays in the log. Re-decided like PUT and PATCH when a
    concurrent change beats it (no If-Match), and started over when a concurrent member add made
    the user join a group while the deletion waited for that add's lock on the user."""
    metadata = target.actor.metadata()

    async def attempt() -> None:
        async with conn.transaction():
            current = await get_user(conn, target.tenant.id, target.raw_id, for_write=True)
            check_version(target.if_match, current.row.version)
            group_ids = await group_cases.remove_member_everywhere(conn, target.tenant.id, current.row.id, metadata)
            event = decide.delete_user(current.row.resource, [str(g) for g in group_ids])
            await users_view.delete(conn, current.row, event, metadata, current.key)  # waits for member adds
            if await group_cases.is_member_anywhere(conn, target.tenant.id, current.row.id):
                raise _JoinedMeanwhile  # rolls the whole deletion back

    await _re_deciding(target, attempt)


@dataclass(frozen=True, slots=True)
class UserPage:
    total: int
    rows: list[UserRow]
    groups: dict[uuid.UUID, Groups]


async def list_users(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, query: ListQuery, cursors: PageCursors
) -> UserPage:
    """GET /Users and POST /Users/.search (RFC 7644 3.4.2, 3.4.3): one page, with the groups of
    its users when the response carries them."""
    page: Page[UserRow] = await find_page(conn, tenant_id, query, USERS_TARGET, users_view.search, "u.ordinal", cursors)
    groups: dict[uuid.UUID, Groups] = {}
    if page.rows and wants("groups", query.attributes, query.excluded, USER_RESOURCE):
        groups = await users_view.groups_of(conn, tenant_id, [r.id for r in page.rows])
    return UserPage(page.total, page.rows, groups)


async def all_users(conn: asyncpg.Connection, tenant_id: uuid.UUID, *, batch: int = 1000) -> AsyncIterator[list[UserRow]]:
    """Every user of the tenant in creation order, a batch at a time (`scimledger user list`)."""
    offset = 0
    while True:
        _, rows = await users_view.search(conn, tenant_id, offset=offset, limit=batch)
        if rows:
            yield rows
        if len(rows) < batch:
            return
        offset += len(rows)
