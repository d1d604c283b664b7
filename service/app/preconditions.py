"""What every use case on one resource checks first: that the id can name a resource, and that
the version the client holds is the current one (If-Match, RFC 7644 3.14)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from projections.domain.actor import Actor
from projections.domain.errors import VersionMismatch
from service.app.tenancy import Tenant
from service.scim.render import etag, if_match_allows


def parse_id(raw: str) -> uuid.UUID | None:
    """A resource id from a URL or a command line; anything that is not a UUID simply matches
    nothing (404)."""
    if len(raw) > 64:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def check_version(if_match: str | None, version: int) -> None:
    """A stale If-Match refuses the write (412): the client decided from another version."""
    if not if_match_allows(if_match, version):
        raise VersionMismatch(f"If-Match {if_match} does not match the current version {etag(version)}")


@dataclass(frozen=True, slots=True)
class Target:
    """The one resource a write aims at: its tenant, its id as the client gave it, the version
    the client holds (If-Match, None when it sent none), and who acts."""

    tenant: Tenant
    raw_id: str
    if_match: str | None
    actor: Actor
