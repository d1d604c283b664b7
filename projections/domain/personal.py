"""Which parts of which event are personal data (docs/privacy.md): the split that sealing needs.

A user's stream is the subject's: its userName, names, emails, phone numbers, addresses,
externalId, title, manager and every other attribute value are personal data, sealed under the
subject's key before append (projections/privacy.py, eventstore/shredding.py). What the audit
trail needs to answer "who deactivated whom, when, through which connection" stays in clear:
the event's type, ids, versions, times, the `active` flag, the names of the attributes that
changed, the groups a deleted user left, and the actor metadata (in the row, not the payload).
Groups' payloads (displayName, externalId, member ids) are not sealed: a group is no person.

`split` gives the part that stays in clear (the whole payload is what gets sealed, so opening is
one decryption and one typed decode); `erased(clear)` is the payload of an erased subject: its
personal parts gone, `erased: true`, and placeholders where the vocabulary needs a value, so
every reader decodes it.
"""

from __future__ import annotations

from typing import Any

# what the users-view fold reads of a payload beyond its clear part: a rebuild opens only these
# (a status event's fold needs only its type, which is in clear)
FOLD_OPENS = frozenset({"user.created", "user.updated"})
CLEAR_RESOURCE = ("schemas", "active")  # kept in clear inside a sealed user.created resource
CLEAR_SET = ("active",)
ERASED = "erased"

_WHOLE_NAME = ("user.deactivated", "user.reactivated", "user.deleted")


def split(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(clear part, personal part) of a payload; None when it holds no personal data."""
    kind = data.get("type")
    if kind == "user.created":
        resource = data.get("resource") or {}
        clear = {k: v for k, v in resource.items() if k in CLEAR_RESOURCE}
        return {**data, "resource": clear}, {"resource": {k: v for k, v in resource.items() if k not in CLEAR_RESOURCE}}
    if kind == "user.updated":
        changed = data.get("set") or {}
        clear = {k: v for k, v in changed.items() if k in CLEAR_SET}
        return {**data, "set": clear}, {"set": {k: v for k, v in changed.items() if k not in CLEAR_SET}}
    if kind in _WHOLE_NAME:
        return {k: v for k, v in data.items() if k != "user_name"}, {"user_name": data.get("user_name", "")}
    return data, None


def erased(clear: dict[str, Any]) -> dict[str, Any]:
    """The payload of an erased subject, from the part of it that stayed in clear."""
    out = {**clear, ERASED: True}
    if clear.get("type") in _WHOLE_NAME:
        out["user_name"] = ""
    return out


def is_erased(data: dict[str, Any]) -> bool:
    return bool(data.get(ERASED))
