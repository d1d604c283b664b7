"""Use cases on groups: create, read, replace, patch, delete, list, and the members of each.

Members are Users only: a member of type "Group" (a nested group) is refused with invalidValue
by the protocol layer. Neither Okta nor Entra pushes nested groups, and flattening them would
make the audit trail's "who was in this group" ambiguous (docs/decisions.md).

Writers of one group are serialised by a row lock on the group (SELECT ... FOR UPDATE), so
concurrent PATCHes adding different members all land without retries. Member resolution is
policy and lives here: every id added must be an existing User of the tenant, and stays one to
the end of the transaction (its row is locked FOR KEY SHARE, so a concurrent DELETE of that
user waits for the add and then removes the new membership too: service.app.users).

An id that is no User of the tenant (deleted on the app's side, never provisioned, not an id
at all) is skipped, not refused: the known members are applied and the skipped ids recorded on
the `group.members_added` event (and logged). IdPs treat a 400 as final, so one stale id would
otherwise lose the whole push; and a `replace` whose ids are all unknown changes nothing, so
unknown ids never empty a group (docs/decisions.md).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import structlog

from projections.domain import decide
from projections.domain.actor import Actor
from projections.domain.errors import ResourceNotFound
from projections.domain.events import Event, GroupMembersAdded, GroupMembersRemoved
from projections.domain.folds import GroupRow
from projections.domain.members import (
    MemberOp,
    decide_members,
    ids_named,
    known_only,
    needs_full_list,
    parsed_or_none,
)
from projections.views import groups as groups_view
from service.app.columns import GROUPS_TARGET
from service.app.listing import Page, find_page
from service.app.paging import PageCursors
from service.app.preconditions import Target, check_version, parse_id
from service.app.storage import check_room
from service.scim.patch import MemberOp as PatchMemberOp
from service.scim.patch import apply_patch
from service.scim.query import ListQuery
from service.scim.resource import check_bounds, normalize
from service.scim.schema import GROUP_RESOURCE

log = structlog.get_logger("scimledger.groups")
# skipped ids recorded on one event at most; a request names at most MAX_PATCH_VALUES ids, and
# each is bounded in length by the protocol layer, so the event stays bounded either way
MAX_SKIPPED_RECORDED = 1_000


async def get_group(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, raw_id: str, *, for_update: bool = False
) -> GroupRow:
    group_id = parse_id(raw_id)
    row = await groups_view.get(conn, tenant_id, group_id, for_update=for_update) if group_id else None
    if row is None:
        raise ResourceNotFound(f"Group {raw_id} not found")
    return row


async def _locked(conn: asyncpg.Connection, target: Target) -> GroupRow:
    """The group a write aims at, locked for update, at the version the client holds."""
    current = await get_group(conn, target.tenant.id, target.raw_id, for_update=True)
    check_version(target.if_match, current.version)
    return current


async def _member_events(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, group_id: uuid.UUID | None, ops: Sequence[MemberOp]
) -> list[Event]:
    """Validate the ids added (each an existing User of the tenant, locked as such to the end of
    the transaction) and decide the net change. Only ids that are not members yet are looked up
    and locked: under the group's row lock its members are stable, and a member's deletion
    removes its membership under that lock too, so a present member is an existing user."""
    if not ops:
        return []
    named = ids_named(ops)
    if all(op.kind in ("add", "replace") for op in ops):
        to_add = named  # the same ids: a push of thousands of members is parsed once less
    else:
        to_add = {m for op in ops if op.kind in ("add", "replace") for v in op.values
                  if (m := parsed_or_none(v)) is not None}
    present: set[uuid.UUID] = set()
    full: set[uuid.UUID] | None = None
    if group_id is not None:
        if needs_full_list(ops):
            full = await groups_view.all_member_ids(conn, tenant_id, group_id)
        elif named:
            present = await groups_view.present_members(conn, tenant_id, group_id, list(named))
    elif needs_full_list(ops):
        full = set()
    joining = to_add - (full if full is not None else present)
    unknown = joining - await groups_view.existing_users(conn, tenant_id, list(joining)) if joining else set()
    applicable, skipped = known_only(ops, unknown)
    change = decide_members(applicable, present, full)
    events: list[Event] = []
    if change.removed:
        events.append(GroupMembersRemoved(members=[str(m) for m in change.removed]))
    if change.added or skipped:
        events.append(GroupMembersAdded(members=[str(m) for m in change.added], skipped=skipped[:MAX_SKIPPED_RECORDED]))
    if skipped:
        log.warning("group.members_skipped", tenant_id=str(tenant_id), group_id=str(group_id) if group_id else None,
                    count=len(skipped), ids=skipped[:10])
    return events


def _members_to_op(members: list[dict[str, Any]] | None, kind: str) -> list[MemberOp]:
    if members is None:
        return []
    return [PatchMemberOp(kind, [str(m["value"]) for m in members])]  # type: ignore[arg-type]


async def create_group(conn: asyncpg.Connection, tenant_id: uuid.UUID, body: dict[str, Any], actor: Actor) -> GroupRow:
    """POST /Groups (RFC 7644 3.3), with its initial members."""
    normalized = normalize(body, GROUP_RESOURCE)
    await check_room(conn, tenant_id, "groups")  # the tenant's storage bound (service/app/storage.py)
    async with conn.transaction():
        events = decide.create_group(normalized.resource)
        events += await _member_events(conn, tenant_id, None, _members_to_op(normalized.members, "add"))
        return await groups_view.write(conn, tenant_id, uuid.uuid4(), None, events, actor.metadata())


async def replace_group(conn: asyncpg.Connection, target: Target, body: dict[str, Any]) -> GroupRow:
    """PUT: displayName/externalId replaced; `members` given replaces the list, `members`
    absent leaves it as it is (Okta's PUT for a rename carries no members)."""
    normalized = normalize(body, GROUP_RESOURCE)
    async with conn.transaction():
        current = await _locked(conn, target)
        events = decide.update_group(current.resource, normalized.resource)
        events += await _member_events(conn, target.tenant.id, current.id, _members_to_op(normalized.members, "replace"))
        if not events:
            return current
        return await groups_view.write(conn, target.tenant.id, current.id, current, events, target.actor.metadata())


async def patch_group(conn: asyncpg.Connection, target: Target, body: dict[str, Any]) -> GroupRow:
    """PATCH (RFC 7644 3.5.2): attribute operations and member operations, in one transaction."""
    async with conn.transaction():
        current = await _locked(conn, target)
        result = apply_patch(current.resource, body, GROUP_RESOURCE)
        check_bounds(result.resource, GROUP_RESOURCE)  # the patched resource within the input bounds
        events = decide.update_group(current.resource, result.resource)
        events += await _member_events(conn, target.tenant.id, current.id, result.member_ops)
        if not events:
            return current
        return await groups_view.write(conn, target.tenant.id, current.id, current, events, target.actor.metadata())


async def delete_group(conn: asyncpg.Connection, target: Target) -> None:
    async with conn.transaction():
        current = await _locked(conn, target)
        await groups_view.delete(conn, current, decide.delete_group(current.resource), target.actor.metadata())


async def remove_member_everywhere(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, member_id: uuid.UUID, metadata: dict[str, Any],
    *, reason: str = "user.deleted",
) -> list[uuid.UUID]:
    """A deleted (or erased) user leaves every group: group.members_removed with that reason on
    each group's stream, in the caller's transaction. Returns the group ids."""
    left = await groups_view.groups_with_member(conn, tenant_id, member_id)
    for row in left:
        event = GroupMembersRemoved(members=[str(member_id)], reason=reason)
        await groups_view.write(conn, tenant_id, row.id, row, [event], metadata)
    return [row.id for row in left]


async def is_member_anywhere(conn: asyncpg.Connection, tenant_id: uuid.UUID, member_id: uuid.UUID) -> bool:
    """Whether `member_id` is a member of any group (a deletion's check after it locked the user)."""
    return await groups_view.is_member_anywhere(conn, tenant_id, member_id)


async def member_batches(conn: asyncpg.Connection, row: GroupRow) -> AsyncIterator[list[uuid.UUID]]:
    """The group's member ids in batches from a server-side cursor inside a transaction, so a
    group of 100,000 members is never held in memory at once."""
    async with conn.transaction():
        async for batch in groups_view.members(conn, row.tenant_id, row.id):
            yield [r["member_id"] for r in batch]


async def list_groups(conn: asyncpg.Connection, tenant_id: uuid.UUID, query: ListQuery, cursors: PageCursors) -> Page[GroupRow]:
    """GET /Groups and POST /Groups/.search (RFC 7644 3.4.2, 3.4.3): one page of groups."""
    return await find_page(conn, tenant_id, query, GROUPS_TARGET, groups_view.search, "g.ordinal", cursors)

