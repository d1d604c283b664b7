"""The folds: what each event does to a view row. Pure functions, no I/O.

`apply_user`, `apply_group` and `apply_members` are the one definition of what an event does to
the users, groups and membership views. The inline write path (projections/views), the state as
of a moment (projections/followers/audit.py) and `projections rebuild` all fold with them, so a
rebuild yields the same rows the write path wrote. `target_name` is the audit trail's fold of a
target's name.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from projections.domain.events import (
    AnyEvent,
    Event,
    GroupCreated,
    GroupDeleted,
    GroupMembersAdded,
    GroupMembersRemoved,
    GroupUpdated,
    UserCreated,
    UserDeactivated,
    UserDeleted,
    UserErased,
    UserReactivated,
    UserUpdated,
    event_type,
)


@dataclass(frozen=True, slots=True)
class ViewRow:
    """What a row of the users and of the groups view holds: the stored resource, the stream's
    version, and the creation ordinal (the global position of the stream's first event)."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    ordinal: int
    resource: dict[str, Any]
    version: int
    created: dt.datetime
    last_modified: dt.datetime

    @property
    def external_id(self) -> str | None:
        return self.resource.get("externalId")


@dataclass(frozen=True, slots=True)
class UserRow(ViewRow):
    """A row of the users view."""

    @property
    def user_name(self) -> str:
        return str(self.resource["userName"])

    @property
    def active(self) -> bool:
        return bool(self.resource.get("active", True))

    @property
    def display_name(self) -> str | None:
        return self.resource.get("displayName")


@dataclass(frozen=True, slots=True)
class GroupRow(ViewRow):
    """A row of the groups view (its members are rows of the membership view)."""

    @property
    def display_name(self) -> str:
        return str(self.resource.get("displayName", ""))


# a user's groups: (group id, displayName), ordered by displayName
Groups = list[tuple[uuid.UUID, str]]


def apply_user(
    row: UserRow | None,
    event: AnyEvent | Event,
    *,
    tenant_id: uuid.UUID,
    stream_id: uuid.UUID,
    version: int,
    position: int,
    recorded_at: dt.datetime,
) -> UserRow | None:
    """The user after `event` (None once deleted)."""
    if isinstance(event, UserCreated):
        resource = dict(event.resource)
        resource.setdefault("active", True)
        return UserRow(tenant_id, stream_id, position, resource, version, recorded_at, recorded_at)
    if isinstance(event, UserErased):
        return None  # erased after a deletion, or instead of one
    if row is None:
        raise ValueError(f"{event_type(event)} before user.created in stream {stream_id}")
    if isinstance(event, UserUpdated):
        resource = {k: v for k, v in row.resource.items() if k not in event.removed}
        resource.update(event.set)
    elif isinstance(event, UserDeactivated):
        resource = {**row.resource, "active": False}
    elif isinstance(event, UserReactivated):
        resource = {**row.resource, "active": True}
    elif isinstance(event, UserDeleted):
        return None
    else:
        raise ValueError(f"not a user event: {event_type(event)}")
    # direct construction: dataclasses.replace costs twice as much, and rebuilds fold every event
    return UserRow(row.tenant_id, row.id, row.ordinal, resource, version, row.created, recorded_at)


def apply_group(
    row: GroupRow | None,
    event: AnyEvent | Event,
    *,
    tenant_id: uuid.UUID,
    stream_id: uuid.UUID,
    version: int,
    position: int,
    recorded_at: dt.datetime,
) -> GroupRow | None:
    """The group after `event` (None once deleted). Member events only move the version."""
    if isinstance(event, GroupCreated):
        return GroupRow(tenant_id, stream_id, position, dict(event.resource), version, recorded_at, recorded_at)
    if row is None:
        raise ValueError(f"{event_type(event)} before group.created in stream {stream_id}")
    if isinstance(event, GroupDeleted):
        return None
    resource = row.resource
    if isinstance(event, GroupUpdated):
        resource = {k: v for k, v in resource.items() if k not in event.removed}
        resource.update(event.set)
    elif not isinstance(event, GroupMembersAdded | GroupMembersRemoved):
        raise ValueError(f"not a group event: {event_type(event)}")
    # direct construction: dataclasses.replace costs twice as much, and rebuilds fold every event
    return GroupRow(row.tenant_id, row.id, row.ordinal, resource, version, row.created, recorded_at)


def apply_members(members: set[str], event: AnyEvent | Event) -> set[str]:
    """The member ids after `event`."""
    if isinstance(event, GroupMembersAdded):
        return members | set(event.members)
    if isinstance(event, GroupMembersRemoved):
        return members - set(event.members)
    if isinstance(event, GroupDeleted):
        return set()
    return members


R = TypeVar("R", bound=ViewRow)


class Apply(Protocol[R]):
    """`apply_user` or `apply_group`."""

    def __call__(
        self, row: R | None, event: AnyEvent | Event, *, tenant_id: uuid.UUID, stream_id: uuid.UUID,
        version: int, position: int, recorded_at: dt.datetime,
    ) -> R | None: ...


def fold_write(
    apply: Apply[R], current: R | None, events: Sequence[Event], *, tenant_id: uuid.UUID, stream_id: uuid.UUID
) -> R:
    """The row a write's new events make of `current`, for the write path: versions follow
    `current`'s; the ordinal and timestamps are placeholders the database sets in the same
    statement. A write cannot delete (ValueError): deletions have their own statement."""
    expected = current.version if current else 0
    position = current.ordinal if current else 0
    now = dt.datetime.now(dt.UTC)
    row = current
    for i, event in enumerate(events, start=1):
        row = apply(row, event, tenant_id=tenant_id, stream_id=stream_id, version=expected + i,
                    position=position, recorded_at=now)
    if row is None:
        raise ValueError("write() cannot delete; use delete()")
    return row


def member_changes(events: Sequence[Event]) -> tuple[set[str], set[str]]:
    """(member ids added, member ids removed) by a group's new events, the later event winning."""
    added: set[str] = set()
    removed: set[str] = set()
    for event in events:
        if isinstance(event, GroupMembersAdded):
            added |= set(event.members)
            removed -= set(event.members)
        elif isinstance(event, GroupMembersRemoved):
            removed |= set(event.members)
            added -= set(event.members)
    return added, removed


def target_name(previous: str | None, event: AnyEvent) -> str | None:
    """A target's name after `event` (the audit trail's): userName for users, displayName for
    groups."""
    if isinstance(event, UserCreated):
        return _str(event.resource.get("userName")) or previous
    if isinstance(event, GroupCreated):
        return _str(event.resource.get("displayName")) or previous
    if isinstance(event, UserUpdated):
        return _str(event.set.get("userName")) or previous
    if isinstance(event, GroupUpdated):
        return _str(event.set.get("displayName")) or previous
    if isinstance(event, UserDeactivated | UserReactivated | UserDeleted):
        return event.user_name or None  # "" once erased (projections/domain/personal.py)
    if isinstance(event, UserErased):
        return None
    if isinstance(event, GroupDeleted):
        return event.display_name
    return previous


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
