"""What a security-event stream says about one event of the log: the claims of its SETs.

Pure: an event of the log in, the claims of its Security Event Tokens (RFC 8417) out, without the
per-delivery claims (iss, aud, iat, the signature), which the deliverer adds when it sends one.

- RFC 9967 (SCIM Profile for SETs): the subject is `sub_id` in the `scim` format, the resource's
  path relative to the SCIM base (`/Users/{id}`) and its `externalId` when it has one (RFC 9967
  2.1; never `sub`). The events: `prov:create`, `prov:put` and `prov:patch` in the `full` form
  (`data`: the resource for create and put, the PatchOp for patch) or the `notice` form
  (`attributes`: the names of what changed), `prov:delete`, `prov:activate`,
  `prov:deactivate`. A membership change is a `prov:patch` of the group (its `members`). PUT and
  PATCH differ by the HTTP method the write path records in the actor; a write without one (the
  CLI) is a patch.
- OpenID CAEP 1.0: a `session-revoked` SET when a user is deactivated or deleted, the signal apps
  already consume to end sessions.

One event gives at most one SET of each kind (PROV_SET, CAEP_SET); its jti is derived from the
stream, the event's global position and the kind, so it is the same on every redelivery
(receivers deduplicate on it, RFC 8417 2.2).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from projections.domain import events as ev

PROV, CAEP = "prov", "caep"  # what a stream may want
EVENT_FAMILIES = (PROV, CAEP)
FULL, NOTICE = "full", "notice"
FORMATS = (FULL, NOTICE)
PROV_SET, CAEP_SET = 0, 1  # the kinds of SET one event can give

_SCIM = "urn:ietf:params:scim:event:prov:"
CREATE_FULL, CREATE_NOTICE = _SCIM + "create:full", _SCIM + "create:notice"
PUT_FULL, PUT_NOTICE = _SCIM + "put:full", _SCIM + "put:notice"
PATCH_FULL, PATCH_NOTICE = _SCIM + "patch:full", _SCIM + "patch:notice"
DELETE, ACTIVATE, DEACTIVATE = _SCIM + "delete", _SCIM + "activate", _SCIM + "deactivate"
SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"

# what /ServiceProviderConfig advertises (RFC 9967 securityEvents.eventUris): every URI a stream
# of this service can carry
SCIM_EVENT_URIS = (CREATE_FULL, CREATE_NOTICE, PUT_FULL, PUT_NOTICE, PATCH_FULL, PATCH_NOTICE,
                   DELETE, ACTIVATE, DEACTIVATE)

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
RESOURCE_PATHS = {"user": "/Users", "group": "/Groups"}
_JTI_NAMESPACE = uuid.UUID("5c1ed6e4-0000-4000-8000-53455473e7a1")


def jti(stream_id: uuid.UUID, position: int, kind: int) -> str:
    """The SET's id: unique per event, stream and kind, the same on every redelivery."""
    return uuid.uuid5(_JTI_NAMESPACE, f"{stream_id}/{position}/{kind}").hex


def subject(stream_type: str, resource_id: uuid.UUID, external_id: Any) -> dict[str, Any]:
    """`sub_id` in the `scim` format (RFC 9967 2.1)."""
    sub: dict[str, Any] = {"format": "scim", "uri": f"{RESOURCE_PATHS[stream_type]}/{resource_id}"}
    if isinstance(external_id, str) and external_id:
        sub["externalId"] = external_id
    return sub


def _patch_op(operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": operations}


def _changes(set_: dict[str, Any], removed: list[str]) -> list[dict[str, Any]]:
    return ([{"op": "replace", "path": k, "value": v} for k, v in set_.items()]
            + [{"op": "remove", "path": k} for k in removed])


def scim_events(
    event: ev.AnyEvent, *, resource_id: uuid.UUID, version: int, method: str | None, form: str,
    resource: dict[str, Any] | None,
) -> dict[str, dict[str, Any]]:
    """The RFC 9967 `events` claim of one event (empty: the event has no SCIM counterpart).
    `resource` is the resource after the event when the caller knows it (a put:full's data)."""
    etag = f'W/"{version}"'
    full = form == FULL
    if isinstance(event, ev.UserCreated | ev.GroupCreated):
        if full:
            return {CREATE_FULL: {"version": etag, "data": {**event.resource, "id": str(resource_id)}}}
        return {CREATE_NOTICE: {"version": etag, "attributes": sorted({*event.resource, "id"})}}
    if isinstance(event, ev.UserUpdated | ev.GroupUpdated):
        changed = sorted({*event.set, *event.removed})
        if (method or "").upper() == "PUT":
            if full:
                data = {**(resource if resource is not None else event.set), "id": str(resource_id)}
                return {PUT_FULL: {"version": etag, "data": data}}
            return {PUT_NOTICE: {"version": etag, "attributes": changed}}
        if full:
            return {PATCH_FULL: {"version": etag, "data": _patch_op(_changes(event.set, event.removed))}}
        return {PATCH_NOTICE: {"version": etag, "attributes": changed}}
    if isinstance(event, ev.GroupMembersAdded | ev.GroupMembersRemoved):
        if not event.members:
            return {}  # only skipped ids (service/app/groups.py): no change to tell
        if full:
            op = "add" if isinstance(event, ev.GroupMembersAdded) else "remove"
            operation = {"op": op, "path": "members", "value": [{"value": m} for m in event.members]}
            return {PATCH_FULL: {"version": etag, "data": _patch_op([operation])}}
        return {PATCH_NOTICE: {"version": etag, "attributes": ["members"]}}
    if isinstance(event, ev.UserDeactivated):
        return {DEACTIVATE: {}}
    if isinstance(event, ev.UserReactivated):
        return {ACTIVATE: {}}
    if isinstance(event, ev.UserDeleted | ev.GroupDeleted):
        return {DELETE: {}}
    return {}


def session_revoked(event: ev.AnyEvent, recorded_at: dt.datetime) -> dict[str, dict[str, Any]]:
    """The CAEP `events` claim for a deactivation or deletion (empty for anything else)."""
    if not isinstance(event, ev.UserDeactivated | ev.UserDeleted):
        return {}
    reason = "deactivated" if isinstance(event, ev.UserDeactivated) else "deleted"
    return {SESSION_REVOKED: {
        "event_timestamp": int(recorded_at.timestamp()),
        "initiating_entity": "admin",
        "reason_admin": {"en": f"The user was {reason} by the identity provider (SCIM provisioning)"},
    }}


def set_claims(
    event: ev.AnyEvent, *, stream_type: str, resource_id: uuid.UUID, version: int, recorded_at: dt.datetime,
    txn: str, method: str | None, form: str, families: frozenset[str] | set[str],
    resource: dict[str, Any] | None, external_id: Any,
) -> list[tuple[int, dict[str, Any]]]:
    """(kind, claims) of every SET a stream wanting `families` in form `form` gets for this
    event: `sub_id`, `txn`, `toe` (the time of the event) and `events`."""
    if stream_type not in RESOURCE_PATHS:
        return []
    common = {"sub_id": subject(stream_type, resource_id, external_id), "txn": txn,
              "toe": int(recorded_at.timestamp())}
    out: list[tuple[int, dict[str, Any]]] = []
    if PROV in families:
        events = scim_events(event, resource_id=resource_id, version=version, method=method, form=form,
                             resource=resource)
        if events:
            out.append((PROV_SET, {**common, "events": events}))
    if CAEP in families:
        events = session_revoked(event, recorded_at)
        if events:
            out.append((CAEP_SET, {**common, "events": events}))
    return out
