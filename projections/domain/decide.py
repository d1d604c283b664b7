"""decide: current state + request -> events. Pure functions, no I/O.

The write path calls these, then appends what they return together with the inline views in one
transaction. An empty list means "nothing changed": no event is written.
"""

from __future__ import annotations

from typing import Any

import msgspec

from projections.domain import events as vocabulary
from projections.domain.events import Event


class Changes(msgspec.Struct, frozen=True):
    """What changed between two stored resources, at top-level granularity (an extension is one
    top-level key): the attributes set to new values and the attributes removed."""

    set: dict[str, Any]
    removed: list[str]

    def apply_to(self, old: dict[str, Any]) -> dict[str, Any]:
        """`old` with these changes: `changes_between(old, new).apply_to(old) == new`."""
        out = {k: v for k, v in old.items() if k not in set(self.removed)}
        out.update(self.set)
        return out


def changes_between(old: dict[str, Any], new: dict[str, Any]) -> Changes:
    return Changes(
        set={k: v for k, v in new.items() if k not in old or old[k] != v},
        removed=[k for k in old if k not in new],
    )


def create_user(resource: dict[str, Any], *, password_set: bool = False) -> list[Event]:
    """user.created; a user created without `active` is active (RFC 7643 4.1.1 leaves the
    default to the service provider; both IdPs send it)."""
    resource = dict(resource)
    resource["active"] = bool(resource.get("active", True))
    return [vocabulary.UserCreated(resource=resource, password_set=password_set)]


def update_user(current: dict[str, Any], new: dict[str, Any], *, password_set: bool = False) -> list[Event]:
    """The events that turn `current` into `new` (PUT or PATCH).

    A name change and active=false in one request give user.updated and user.deactivated
    together. A replacement that omits `active` keeps the current status: deactivation is an
    explicit act (active false), never a side effect of a missing attribute.

    A PATCH `remove` of `active` (`active` in `current`, not in `new`) leaves the attribute
    unassigned (RFC 7644 3.5.2.2), which this service provider defines as active, the default of
    a create (RFC 7643 4.1.1 leaves the meaning of `active` to it).
    """
    was_active = bool(current.get("active", True))
    unassigned = "active" in current and "active" not in new
    now_active = True if unassigned else bool(new.get("active", was_active))
    before = {k: v for k, v in current.items() if k != "active"}
    after = {k: v for k, v in new.items() if k != "active"}
    changes = changes_between(before, after)
    removed = changes.removed + (["active"] if unassigned else [])
    updated: list[Event] = []
    if changes.set or removed or password_set:
        updated.append(vocabulary.UserUpdated(set=changes.set, removed=removed, password_set=password_set))
    status: list[Event] = []
    user_name = str(new.get("userName") or current.get("userName"))
    if was_active and not now_active:
        status.append(vocabulary.UserDeactivated(user_name=user_name))
    elif now_active and not was_active:
        status.append(vocabulary.UserReactivated(user_name=user_name))
    # the fold must end with `active` unassigned when it was removed, so the status event first
    return status + updated if unassigned else updated + status


def delete_user(current: dict[str, Any], groups: list[str]) -> vocabulary.UserDeleted:
    return vocabulary.UserDeleted(user_name=str(current["userName"]), groups=groups)


def activates(events: list[Event]) -> bool:
    """Whether these events take a seat (a new active user or a reactivation)."""
    return any(
        isinstance(e, vocabulary.UserReactivated) or (isinstance(e, vocabulary.UserCreated) and e.resource.get("active", True))
        for e in events
    )


def create_group(resource: dict[str, Any]) -> list[Event]:
    return [vocabulary.GroupCreated(resource=dict(resource))]


def update_group(current: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    changes = changes_between(current, new)
    if changes.set or changes.removed:
        return [vocabulary.GroupUpdated(set=changes.set, removed=changes.removed)]
    return []


def delete_group(current: dict[str, Any]) -> vocabulary.GroupDeleted:
    return vocabulary.GroupDeleted(display_name=str(current.get("displayName", "")))
