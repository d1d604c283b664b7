"""What the console's Directory shows (docs/console.md): the tenant's users and groups found
through the SCIM list machinery, a user's or group's page, and its timeline from the audit trail.

Searching builds a SCIM filter (service.scim.query.parse_query) and calls the list use cases, so
the console reads exactly what /Users and /Groups serve, through the same column whitelist and
paging (the walk continuation: the next page of a search reads `ordinal > last`, not OFFSET). The
exact match (the default) compares userName, email and displayName, each served by an index;
"starts with" compares prefixes of userName, email, displayName, given and family name, which
scans the tenant's users.

A group's members are the users matching `groups.value eq "<id>"`, paged the same way: a group of
100,000 members is read one page at a time, never loaded whole.

The timeline is the target's audit history folded with the domain's folds
(projections.domain.folds), so each event shows the attributes it changed with their values
before and after. Users' streams are short; the fold reads at most `TIMELINE_MAX` events.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from projections.domain.errors import ResourceNotFound
from projections.domain.events import (
    GroupMembersAdded,
    GroupMembersRemoved,
    UserDeleted,
    decode_event,
)
from projections.domain.folds import GroupRow, UserRow, apply_group, apply_user
from projections.followers import audit as trail
from projections.followers.audit import AuditEntry
from service.app import groups as group_cases
from service.app import users as user_cases
from service.app.listing import Page
from service.app.paging import PageCursors
from service.app.preconditions import parse_id
from service.scim.query import parse_query
from service.scim.schema import GROUP_RESOURCE, USER_RESOURCE

PAGE_SIZE = 25
MEMBER_PAGE_SIZE = 100
TIMELINE_MAX = 5000
STATUSES = ("all", "active", "inactive")
MATCHES = ("exact", "prefix")
HIDDEN = frozenset({"schemas"})  # protocol bookkeeping, not an attribute a person changes


def _literal(text: str) -> str:
    """A SCIM filter string literal (JSON string syntax, RFC 7644 3.4.2.2)."""
    return json.dumps(text, ensure_ascii=False)


def user_filter(q: str, status: str = "all", match: str = "exact", group_id: uuid.UUID | None = None) -> str:
    """The SCIM filter of a Directory search."""
    parts: list[str] = []
    q = q.strip()
    if q:
        v = _literal(q)
        if match == "prefix":
            parts.append(f"(userName sw {v} or emails.value sw {v} or displayName sw {v} "
                         f"or name.givenName sw {v} or name.familyName sw {v})")
        else:
            parts.append(f"(userName eq {v} or emails.value eq {v} or displayName eq {v})")
    if status == "active":
        parts.append("active eq true")
    elif status == "inactive":
        parts.append("active eq false")
    if group_id is not None:
        parts.append(f'groups.value eq "{group_id}"')
    return " and ".join(parts)


def group_filter(q: str, match: str = "exact") -> str:
    q = q.strip()
    if not q:
        return ""
    return f"displayName {'sw' if match == 'prefix' else 'eq'} {_literal(q)}"


@dataclass(frozen=True, slots=True)
class Found:
    """One page of a search: its rows, the total, and where it starts (1-based)."""

    total: int
    start: int
    rows: list[Any]
    count: int

    @property
    def next_start(self) -> int | None:
        nxt = self.start + len(self.rows)
        return nxt if nxt <= self.total and self.rows else None

    @property
    def previous_start(self) -> int | None:
        return max(1, self.start - self.count) if self.start > 1 else None


def _params(flt: str, start: int, count: int) -> dict[str, Any]:
    params: dict[str, Any] = {"startIndex": start, "count": count}
    if flt:
        params["filter"] = flt
    return params


async def search_users(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, cursors: PageCursors, *, q: str = "",
    status: str = "all", match: str = "exact", start: int = 1, count: int = PAGE_SIZE,
    group_id: uuid.UUID | None = None,
) -> Found:
    query = parse_query(_params(user_filter(q, status, match, group_id), start, count), USER_RESOURCE,
                        default_count=count, max_count=count)
    page = await user_cases.list_users(conn, tenant_id, query, cursors)
    return Found(page.total, query.start_index, page.rows, count)


async def search_groups(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, cursors: PageCursors, *, q: str = "",
    match: str = "exact", start: int = 1, count: int = PAGE_SIZE,
) -> Found:
    query = parse_query(_params(group_filter(q, match), start, count), GROUP_RESOURCE,
                        default_count=count, max_count=count)
    page: Page[GroupRow] = await group_cases.list_groups(conn, tenant_id, query, cursors)
    return Found(page.total, query.start_index, page.rows, count)


# --- one user or group ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class UserPage:
    id: uuid.UUID
    row: UserRow | None  # None: deleted (its history stays)
    groups: list[tuple[uuid.UUID, str]]
    name: str | None  # the userName, the deleted user's last one too


async def _gone(conn: asyncpg.Connection, tenant_id: uuid.UUID, kind: str, raw_id: str) -> tuple[uuid.UUID, str | None]:
    """A deleted user or group of this tenant: its id and last name; else ResourceNotFound."""
    target_id = parse_id(raw_id)
    if target_id is None or await trail.target_type(conn, tenant_id, target_id) != kind:
        raise ResourceNotFound(f"{kind.capitalize()} {raw_id} not found")
    return target_id, await _last_name(conn, tenant_id, target_id)


async def user_page(conn: asyncpg.Connection, tenant_id: uuid.UUID, raw_id: str) -> UserPage:
    """The user and its groups; a deleted user of this tenant answers with its name only."""
    try:
        state = await user_cases.get_user(conn, tenant_id, raw_id)
    except ResourceNotFound:
        user_id, name = await _gone(conn, tenant_id, "user", raw_id)
        return UserPage(user_id, None, [], name)
    return UserPage(state.row.id, state.row, list(state.groups), state.row.user_name)


@dataclass(frozen=True, slots=True)
class GroupPage:
    id: uuid.UUID
    row: GroupRow | None
    name: str | None


async def group_page(conn: asyncpg.Connection, tenant_id: uuid.UUID, raw_id: str) -> GroupPage:
    try:
        row = await group_cases.get_group(conn, tenant_id, raw_id)
    except ResourceNotFound:
        group_id, name = await _gone(conn, tenant_id, "group", raw_id)
        return GroupPage(group_id, None, name)
    return GroupPage(row.id, row, row.display_name)


async def _last_name(conn: asyncpg.Connection, tenant_id: uuid.UUID, target_id: uuid.UUID) -> str | None:
    entries = await trail.history(conn, tenant_id, target_id, limit=TIMELINE_MAX)
    return entries[-1].target_name if entries else None


# --- the timeline ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Change:
    attribute: str
    before: str | None
    after: str | None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    entry: AuditEntry
    changes: list[Change]
    members_added: list[str]
    members_removed: list[str]

    @property
    def at(self) -> dt.datetime:
        return self.entry.recorded_at


def _show(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _flat(resource: dict[str, Any] | None) -> dict[str, Any]:
    """Top-level attributes, complex ones one level down (name.givenName), the rest as JSON."""
    out: dict[str, Any] = {}
    for key, value in (resource or {}).items():
        if isinstance(value, dict) and not key.startswith("urn:"):
            for sub, v in value.items():
                out[f"{key}.{sub}"] = v
        else:
            out[key] = value
    return out


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Change]:
    """The attributes that differ between two states, in a stable order."""
    a, b = _flat(before), _flat(after)
    return [
        Change(key, _show(a.get(key)), _show(b.get(key)))
        for key in sorted(a.keys() | b.keys(), key=lambda k: (k != "userName", k != "active", k.lower()))
        if a.get(key) != b.get(key) and key not in HIDDEN
    ]


async def timeline(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, target_id: uuid.UUID, kind: str, *, limit: int = 200
) -> tuple[list[TimelineEntry], int]:
    """The newest `limit` events of a user's or group's history, newest first, each with what it
    changed; and how many events the history has (at most TIMELINE_MAX are read)."""
    apply = apply_user if kind == "user" else apply_group
    state: UserRow | GroupRow | None = None
    kept: deque[TimelineEntry] = deque(maxlen=limit)
    total = 0
    after = 0
    while total < TIMELINE_MAX:
        entries = await trail.history(conn, tenant_id, target_id, after=after, limit=min(1000, TIMELINE_MAX - total))
        for e in entries:
            total += 1
            changes: list[Change] = []
            added: list[str] = []
            removed: list[str] = []
            if e.data is not None:
                event = decode_event(e.data)
                try:
                    new = apply(state, event, tenant_id=tenant_id, stream_id=target_id,  # type: ignore[arg-type]
                                version=state.version + 1 if state else 1, position=e.position,
                                recorded_at=e.recorded_at)
                except ValueError:
                    new = state
                if not isinstance(event, UserDeleted):
                    changes = diff(state.resource if state else None, new.resource if new else None)
                state = new
                if isinstance(event, GroupMembersAdded):
                    added = event.members
                elif isinstance(event, GroupMembersRemoved):
                    removed = event.members
            kept.append(TimelineEntry(e, changes, added, removed))
        if len(entries) < 1000:
            break
        after = entries[-1].position
    return list(reversed(kept)), total
