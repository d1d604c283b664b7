"""From view rows to SCIM representations: meta, location, ETag, groups, members."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from service.scim.errors import PreconditionFailed


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def etag(version: int) -> str:
    return f'W/"{version}"'


def meta(resource_type: str, location: str, version: int, created: dt.datetime, modified: dt.datetime) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "created": timestamp(created),
        "lastModified": timestamp(modified),
        "location": location,
        "version": etag(version),
    }


def check_if_match(header: str | None, version: int) -> None:
    """If-Match (RFC 7644 3.14, RFC 7232 3.1): a stale version gives 412."""
    if header is None:
        return
    wanted = [t.strip() for t in header.split(",")]
    if "*" in wanted:
        return
    current = etag(version)
    if current not in wanted and current.removeprefix("W/") not in wanted:
        raise PreconditionFailed(
            f"If-Match {header} does not match the current version {current}", scim_type=None
        )


def not_modified(header: str | None, version: int) -> bool:
    """If-None-Match with the current version: the client's copy is current (304)."""
    if header is None:
        return False
    wanted = [t.strip() for t in header.split(",")]
    current = etag(version)
    return "*" in wanted or current in wanted or current.removeprefix("W/") in wanted


def parse_id(raw: str) -> uuid.UUID | None:
    """A resource id from the URL; anything that is not a UUID simply matches nothing (404)."""
    if len(raw) > 64:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None
