"""Who is calling and in which tenant: the principal a credential stands for (a bearer token or
an OAuth access token), resolved on every request, and the hash credentials are stored as."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

SCOPES = ("scim", "audit", "events")


@dataclass(frozen=True, slots=True)
class Tenant:
    """The tenant a use case acts in, with the limits its policy needs."""

    id: uuid.UUID
    name: str
    seats: int | None
    rate_limit: float | None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved from the bearer token on every request."""

    tenant_id: uuid.UUID
    tenant_name: str
    token_id: uuid.UUID
    label: str
    scope: str
    seats: int | None
    rate_limit: float | None
    tenant_disabled: bool = False  # `tenant disable`: authenticated, but refused (403)
    expires_in_s: float | None = None  # the token's time left at the lookup (None: no expiry)

    @property
    def tenant(self) -> Tenant:
        return Tenant(self.tenant_id, self.tenant_name, self.seats, self.rate_limit)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()
