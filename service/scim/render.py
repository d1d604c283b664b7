"""From stored resources to SCIM representations (RFC 7643 3.1 `meta`, 4.1.2 `groups`, 4.2
`members`) and the version tags of RFC 7644 3.14. Pure: the caller gives the base URL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from service.scim.schema import CORE_GROUP, CORE_USER, ENTERPRISE_USER


class StoredResource(Protocol):
    """A row of the users or groups view: what a representation is built from."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def resource(self) -> dict[str, Any]: ...
    @property
    def version(self) -> int: ...
    @property
    def created(self) -> dt.datetime: ...
    @property
    def last_modified(self) -> dt.datetime: ...


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def etag(version: int) -> str:
    return f'W/"{version}"'


def if_match_allows(header: str | None, version: int) -> bool:
    """If-Match (RFC 7644 3.14, RFC 7232 3.1): absent or `*` or naming the current version."""
    if header is None:
        return True
    wanted = [t.strip() for t in header.split(",")]
    current = etag(version)
    return "*" in wanted or current in wanted or current.removeprefix("W/") in wanted


def not_modified(header: str | None, version: int) -> bool:
    """If-None-Match with the current version: the client's copy is current (304)."""
    if header is None:
        return False
    return if_match_allows(header, version)


def meta(resource_type: str, location: str, version: int, created: dt.datetime, modified: dt.datetime) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "created": timestamp(created),
        "lastModified": timestamp(modified),
        "location": location,
        "version": etag(version),
    }


def _body(schemas: list[str], row: StoredResource) -> dict[str, Any]:
    out: dict[str, Any] = {"schemas": schemas, "id": str(row.id)}
    for key, value in row.resource.items():
        if key != "schemas":
            out[key] = value
    return out


def render_user(row: StoredResource, base: str, groups: Iterable[tuple[uuid.UUID, str]] | None) -> dict[str, Any]:
    """The user; `groups` None leaves the attribute out (as-of answers: memberships live in the
    groups' streams)."""
    schemas = [CORE_USER]
    if ENTERPRISE_USER in row.resource:
        schemas.append(ENTERPRISE_USER)
    out = _body(schemas, row)
    if groups is not None:
        out["groups"] = [
            {"value": str(gid), "$ref": f"{base}/Groups/{gid}", "display": name, "type": "direct"}
            for gid, name in groups
        ]
    out["meta"] = meta("User", f"{base}/Users/{row.id}", row.version, row.created, row.last_modified)
    return out


def render_group(row: StoredResource, base: str) -> dict[str, Any]:
    """The group without `members` (they are streamed separately)."""
    out = _body([CORE_GROUP], row)
    out["meta"] = meta("Group", f"{base}/Groups/{row.id}", row.version, row.created, row.last_modified)
    return out


def member_json(member_id: uuid.UUID | str, base: str) -> dict[str, Any]:
    """value, $ref and type: the sub-attributes of RFC 7643 8.7.1. No server-made `display`:
    members' sub-attributes are immutable (RFC 7643 4.2), a user's live name is not."""
    return {"value": str(member_id), "$ref": f"{base}/Users/{member_id}", "type": "User"}


def render_group_with_members(row: StoredResource, members: Iterable[str], base: str) -> dict[str, Any]:
    """The group with its whole member list (as-of answers, which are bounded by one stream)."""
    body = render_group(row, base)
    body["members"] = [member_json(m, base) for m in sorted(members)]
    return body
