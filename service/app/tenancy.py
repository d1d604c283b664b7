"""Tenants and their bearer tokens.

A token secret is 32 random bytes (256 bits) from `secrets`, shown once, stored only as its
SHA-256 hash. Looking a secret up by its hash in a unique index is a constant-time comparison in
effect (the attacker never sees a partial match); we still compare the hashes with
`hmac.compare_digest` after the lookup. A high-entropy secret needs no slow password hash.
"""

from __future__ import annotations

import datetime as dt
import enum
import hmac
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from projections.domain.errors import TenantExists, TenantNotFound, TokenNotFound, TokenNotRotatable
from service.app import oauth
from service.app.names import check_name, check_tenant_name
from service.app.principal import SCOPES, Principal, Tenant, hash_secret

SECRET_PREFIX = "scimledger_"
class Unchanged(enum.Enum):
    """`update_tenant` leaves a setting as it is (None clears it)."""

    KEEP = "keep"


KEEP = Unchanged.KEEP


@dataclass(frozen=True, slots=True)
class TenantSummary:
    """A tenant as `tenant list` shows it."""

    id: uuid.UUID
    name: str
    seats: int | None
    active_users: int
    rate_limit: float | None
    created_at: dt.datetime
    disabled_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as `token list` shows it: never the secret (nor its hash)."""

    id: uuid.UUID
    label: str
    scope: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    expires_at: dt.datetime | None
    replaced_by: uuid.UUID | None

    def state(self, now: dt.datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None:
            return "expired" if self.expires_at <= now else "rotated, grace"
        return "active"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


async def create_tenant(
    conn: asyncpg.Connection, name: str, *, seats: int | None = None, rate_limit: float | None = None,
    max_users: int | None = None, max_groups: int | None = None,
) -> uuid.UUID:
    """A new tenant; max_users/max_groups None take the columns' defaults (migration 0012)."""
    tenant_id = uuid.uuid4()
    name = check_tenant_name(name)
    values: dict[str, object] = {"id": tenant_id, "name": name,
                                 "seats": seats, "rate_limit": rate_limit}
    values.update({k: v for k, v in (("max_users", max_users), ("max_groups", max_groups)) if v is not None})
    try:
        await conn.execute(
            f"INSERT INTO tenants ({', '.join(values)}) VALUES ({', '.join(f'${i}' for i in range(1, len(values) + 1))})",
            *values.values(),
        )
    except asyncpg.UniqueViolationError as e:
        raise TenantExists(f"a tenant named {name!r} already exists") from e
    return tenant_id


async def get_tenant(conn: asyncpg.Connection, name: str) -> Tenant:
    """A tenant by name (trimmed), or by id when `name` is one."""
    name = name.strip()
    row = await conn.fetchrow(
        "SELECT id, name, seats, rate_limit FROM tenants WHERE name = $1 OR id::text = $1", name
    )
    if row is None:
        raise TenantNotFound(f"no tenant {name!r}", name)
    return Tenant(row["id"], row["name"], row["seats"], row["rate_limit"])


async def tenant_names(conn: asyncpg.Connection) -> list[str]:
    return [r["name"] for r in await conn.fetch("SELECT name FROM tenants ORDER BY name")]


async def rename_tenant(conn: asyncpg.Connection, tenant_id: uuid.UUID, new_name: str) -> None:
    """A tenant's new name. Events, views and tokens reference the tenant by id, so nothing
    else changes; commands and the console use the new name from now on."""
    new_name = check_tenant_name(new_name)
    try:
        await conn.execute("UPDATE tenants SET name = $2 WHERE id = $1", tenant_id, new_name)
    except asyncpg.UniqueViolationError as e:
        raise TenantExists(f"a tenant named {new_name!r} already exists") from e


async def set_tenant_disabled(conn: asyncpg.Connection, tenant_id: uuid.UUID, disabled: bool) -> bool:
    """Disable a tenant (every token, OAuth client and console session of it refused from the
    next request; its data kept) or enable it again. False when it already was so."""
    status = await conn.execute(
        "UPDATE tenants SET disabled_at = CASE WHEN $2 THEN now() END "
        "WHERE id = $1 AND (disabled_at IS NOT NULL) <> $2",
        tenant_id, disabled,
    )
    return status != "UPDATE 0"


async def tenant_id_by_name(conn: asyncpg.Connection, name: str) -> uuid.UUID:
    return (await get_tenant(conn, name)).id


async def issue_token(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, label: str, scope: str = "scim"
) -> tuple[uuid.UUID, str]:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    label = check_name(label, "a token label")
    token_id = uuid.uuid4()
    secret = new_secret()
    await conn.execute(
        "INSERT INTO tokens (tenant_id, id, label, scope, secret_hash) VALUES ($1, $2, $3, $4, $5)",
        tenant_id, token_id, label, scope, hash_secret(secret),
    )
    return token_id, secret


async def list_tenants(conn: asyncpg.Connection) -> list[TenantSummary]:
    rows = await conn.fetch(
        """
        SELECT t.id, t.name, t.seats, t.rate_limit, t.created_at, t.disabled_at,
               (SELECT count(*) FROM users u WHERE u.tenant_id = t.id AND u.active) AS active_users
        FROM tenants t ORDER BY t.name
        """
    )
    return [
        TenantSummary(r["id"], r["name"], r["seats"], int(r["active_users"]), r["rate_limit"], r["created_at"],
                      r["disabled_at"])
        for r in rows
    ]


async def update_tenant(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    seats: int | Unchanged | None = KEEP,
    rate_limit: float | Unchanged | None = KEEP,
    max_users: int | Unchanged = KEEP,
    max_groups: int | Unchanged = KEEP,
) -> None:
    """Change a tenant's seat limit, rate limit and/or storage bounds; None clears a limit (no
    seat limit, the default rate). Takes effect on the next request: every request reads the
    tenant row."""
    sets: list[str] = []
    params: list[object] = [tenant_id]
    changes = (("seats", seats), ("rate_limit", rate_limit), ("max_users", max_users), ("max_groups", max_groups))
    for column, value in changes:
        if value is not KEEP:
            params.append(value)
            sets.append(f"{column} = ${len(params)}")
    if not sets:
        return
    status = await conn.execute(f"UPDATE tenants SET {', '.join(sets)} WHERE id = $1", *params)
    if status == "UPDATE 0":
        raise TenantNotFound(f"no tenant {str(tenant_id)!r}")


async def list_tokens(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> list[TokenInfo]:
    rows = await conn.fetch(
        """
        SELECT id, label, scope, created_at, last_used_at, revoked_at, expires_at, replaced_by
        FROM tokens WHERE tenant_id = $1 ORDER BY created_at, id
        """,
        tenant_id,
    )
    return [TokenInfo(**dict(r)) for r in rows]


async def rotate_token(
    conn: asyncpg.Connection, token_id: uuid.UUID, grace: dt.timedelta
) -> tuple[uuid.UUID, str]:
    """A new secret with the same tenant, label and scope; the old one keeps working for `grace`
    (time for the admin to paste the new secret into the IdP), then expires."""
    async with conn.transaction():
        old = await conn.fetchrow(
            "SELECT tenant_id, label, scope, revoked_at, expires_at FROM tokens WHERE id = $1 FOR UPDATE",
            token_id,
        )
        if old is None:
            raise TokenNotFound(f"no token {token_id}")
        if old["revoked_at"] is not None or old["expires_at"] is not None:
            raise TokenNotRotatable(
                f"token {token_id} is revoked, expired or already rotated; "
                "rotate the token that replaced it, or issue a new one"
            )
        new_id, secret = await issue_token(conn, old["tenant_id"], old["label"], old["scope"])
        await conn.execute(
            "UPDATE tokens SET expires_at = now() + $2::interval, replaced_by = $3 "
            "WHERE tenant_id = $1 AND id = $4",
            old["tenant_id"], grace, new_id, token_id,
        )
    return new_id, secret


async def revoke_token(conn: asyncpg.Connection, token_id: uuid.UUID) -> None:
    status = await conn.execute(
        "UPDATE tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", token_id
    )
    if status == "UPDATE 0":
        raise TokenNotFound(f"no active token {token_id} (unknown or already revoked)")


_AUTHENTICATE = """
WITH found AS (
    SELECT k.tenant_id, k.id, k.label, k.scope, k.secret_hash, k.last_used_at,
           t.name, t.seats, t.rate_limit, t.disabled_at IS NOT NULL AS tenant_disabled,
           extract(epoch FROM k.expires_at - now())::float8 AS expires_in_s
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
    """The principal a bearer secret stands for, or None (unknown, revoked or expired): a
    token issued with `token issue`, or an OAuth access token from /oauth2/token (told apart by
    its prefix, so either costs one statement)."""
    if secret.startswith(oauth.ACCESS_TOKEN_PREFIX):
        return await oauth.authenticate_access_token(conn, secret)
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
        tenant_disabled=row["tenant_disabled"],
        expires_in_s=row["expires_in_s"],
    )


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
