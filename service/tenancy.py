"""Tenants and their bearer tokens.

A token secret is 32 random bytes (256 bits) from `secrets`, shown once, stored only as its
SHA-256 hash. Looking a secret up by its hash in a unique index is a constant-time comparison in
effect (the attacker never sees a partial match); we still compare the hashes with
`hmac.compare_digest` after the lookup. A high-entropy secret needs no slow password hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

SCOPES = ("scim", "audit")
SECRET_PREFIX = "scimledger_"


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


class TenantNotFound(Exception):
    pass


class TenantExists(Exception):
    pass


class TokenNotFound(Exception):
    pass


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


async def create_tenant(
    conn: asyncpg.Connection, name: str, *, seats: int | None = None, rate_limit: float | None = None
) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    try:
        await conn.execute(
            "INSERT INTO tenants (id, name, seats, rate_limit) VALUES ($1, $2, $3, $4)",
            tenant_id, name, seats, rate_limit,
        )
    except asyncpg.UniqueViolationError as e:
        raise TenantExists(name) from e
    return tenant_id


async def tenant_id_by_name(conn: asyncpg.Connection, name: str) -> uuid.UUID:
    """A tenant by name, or by id when `name` is one."""
    row = await conn.fetchrow(
        "SELECT id FROM tenants WHERE name = $1 OR id::text = $1", name
    )
    if row is None:
        raise TenantNotFound(name)
    return row["id"]


async def issue_token(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, label: str, scope: str = "scim"
) -> tuple[uuid.UUID, str]:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    token_id = uuid.uuid4()
    secret = new_secret()
    await conn.execute(
        "INSERT INTO tokens (tenant_id, id, label, scope, secret_hash) VALUES ($1, $2, $3, $4, $5)",
        tenant_id, token_id, label, scope, hash_secret(secret),
    )
    return token_id, secret


async def revoke_token(conn: asyncpg.Connection, token_id: uuid.UUID) -> None:
    status = await conn.execute(
        "UPDATE tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", token_id
    )
    if status == "UPDATE 0":
        raise TokenNotFound(str(token_id))


_AUTHENTICATE = """
WITH found AS (
    SELECT k.tenant_id, k.id, k.label, k.scope, k.secret_hash, k.last_used_at,
           t.name, t.seats, t.rate_limit
    FROM tokens k JOIN tenants t ON t.id = k.tenant_id
    WHERE k.secret_hash = $1 AND k.revoked_at IS NULL
      AND (k.expires_at IS NULL OR k.expires_at > now())
), touched AS (
    -- last-used is kept to the minute: one write per token per minute, not per request
    UPDATE tokens SET last_used_at = now()
    FROM found
    WHERE tokens.tenant_id = found.tenant_id AND tokens.id = found.id
      AND (found.last_used_at IS NULL OR found.last_used_at < now() - interval '1 minute')
)
SELECT * FROM found
"""


async def authenticate(conn: asyncpg.Connection, secret: str) -> Principal | None:
    """The principal a bearer secret stands for, or None (unknown, revoked or expired)."""
    digest = hash_secret(secret)
    row = await conn.fetchrow(_AUTHENTICATE, digest)
    if row is None or not hmac.compare_digest(row["secret_hash"], digest):
        return None
    return Principal(
        tenant_id=row["tenant_id"],
        tenant_name=row["name"],
        token_id=row["id"],
        label=row["label"],
        scope=row["scope"],
        seats=row["seats"],
        rate_limit=row["rate_limit"],
    )


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
