"""OAuth 2.0 clients of a tenant and the access tokens they get (RFC 6749 4.4, RFC 7523 2.2).

A client is an IdP connection, like a bearer token: a label (the actor in the audit trail) and a
scope. It authenticates at the token endpoint either with a secret (client_secret_basic or
client_secret_post; several active secrets per client, each with an expiry, so a secret rotates
without downtime) or, when federated, with a JWT signed by a trusted issuer (private_key_jwt,
workload identity federation: the issuer's keys come from a JWKS URL or a file).

Secrets and access tokens are 32 random bytes from `secrets`, shown once and stored as SHA-256
hashes, looked up by hash like bearer tokens (service/app/tenancy.py explains why a fast hash is
right for high-entropy secrets). An access token is checked against its client and secret on
every request, so revoking either refuses it at once on every worker.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets as random_secrets
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from projections.domain.errors import DomainError
from service.app.names import check_name
from service.app.principal import SCOPES, Principal, hash_secret

CLIENT_SECRET_PREFIX = "scimledger_cs_"
ACCESS_TOKEN_PREFIX = "scimledger_at_"
DEFAULT_SECRET_DAYS = 365
MAX_SECRET_DAYS = 3 * 365
MIN_TOKEN_TTL_S = 3600  # Entra's validator accepts 60 to 360 minutes
MAX_TOKEN_TTL_S = 6 * 3600


class ClientNotFound(DomainError):
    """No such OAuth client (or it is revoked already)."""


class SecretNotFound(DomainError):
    """No such secret of that client (or it is revoked already)."""


class InvalidClientSetting(DomainError):
    """A client setting out of its range (secret lifetime, scope, issuer...)."""


@dataclass(frozen=True, slots=True)
class SecretInfo:
    id: uuid.UUID
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A client as `client list` shows it: never a secret (nor its hash)."""

    id: uuid.UUID
    label: str
    scope: str
    kind: str
    issuer: str | None
    subject: str | None
    jwks_url: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    secrets: list[SecretInfo]


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    expires_in: int
    scope: str


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    """A client that proved who it is at the token endpoint."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    scope: str
    secret_id: uuid.UUID | None  # None: a federated client


def new_secret(prefix: str) -> str:
    return prefix + random_secrets.token_urlsafe(32)


def secret_days(days: int | None) -> int:
    days = DEFAULT_SECRET_DAYS if days is None else days
    if not 1 <= days <= MAX_SECRET_DAYS:
        raise InvalidClientSetting(f"a secret lives from 1 to {MAX_SECRET_DAYS} days, not {days}")
    return days


def check_label(label: str) -> str:
    """A client's label, trimmed, with the rules of token labels."""
    try:
        return check_name(label, "a client label")
    except ValueError as e:
        raise InvalidClientSetting(str(e)) from None


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InvalidClientSetting(f"scope must be one of {', '.join(SCOPES)}")
    return scope


# --- clients (the operator's CLI) ----------------------------------------------------------------

async def _insert_secret(conn: asyncpg.Connection, tenant_id: uuid.UUID, client_id: uuid.UUID, days: int) -> tuple[uuid.UUID, str]:
    secret_id = uuid.uuid4()
    secret = new_secret(CLIENT_SECRET_PREFIX)
    await conn.execute(
        """INSERT INTO oauth_client_secrets (tenant_id, client_id, id, secret_hash, expires_at)
           VALUES ($1, $2, $3, $4, now() + make_interval(days => $5))""",
        tenant_id, client_id, secret_id, hash_secret(secret), days,
    )
    return secret_id, secret


async def create_client(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, label: str, scope: str = "scim", days: int | None = None
) -> tuple[uuid.UUID, str]:
    """A client authenticating with a secret; returns (client id, the secret, shown once)."""
    check_scope(scope)
    label = check_label(label)
    days = secret_days(days)
    client_id = uuid.uuid4()
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO oauth_clients (tenant_id, id, label, scope, kind) VALUES ($1, $2, $3, $4, 'secret')",
            tenant_id, client_id, label, scope,
        )
        _, secret = await _insert_secret(conn, tenant_id, client_id, days)
    return client_id, secret


async def federate_client(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, label: str, *, issuer: str, subject: str,
    jwks_url: str | None, jwks: dict[str, Any] | None, scope: str = "scim", audience: str | None = None,
) -> uuid.UUID:
    """A client that authenticates with JWTs of a trusted issuer (RFC 7523 2.2)."""
    check_scope(scope)
    label = check_label(label)
    if not issuer.strip() or not subject.strip():
        raise InvalidClientSetting("a federated client needs an issuer and a subject")
    if (jwks_url is None) == (jwks is None):
        raise InvalidClientSetting("give the issuer's keys as a JWKS URL or a JWKS file (one of them)")
    if jwks_url is not None and not jwks_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise InvalidClientSetting("the JWKS URL must be https (http only on the loopback address)")
    client_id = uuid.uuid4()
    try:
        await conn.execute(
            """INSERT INTO oauth_clients (tenant_id, id, label, scope, kind, issuer, subject, jwks_url, jwks, audience)
               VALUES ($1, $2, $3, $4, 'federated', $5, $6, $7, $8, $9)""",
            tenant_id, client_id, label, scope, issuer, subject, jwks_url, jwks, audience,
        )
    except asyncpg.UniqueViolationError as e:
        raise InvalidClientSetting(f"an active client already trusts issuer {issuer!r} for subject {subject!r}") from e
    return client_id


async def _client_tenant(conn: asyncpg.Connection, client_id: uuid.UUID, *, kind: str | None = None) -> uuid.UUID:
    row = await conn.fetchrow(
        "SELECT tenant_id, kind FROM oauth_clients WHERE id = $1 AND revoked_at IS NULL", client_id
    )
    if row is None or (kind is not None and row["kind"] != kind):
        raise ClientNotFound(f"no active OAuth client {client_id}" + (f" with {kind}s" if kind else ""))
    return row["tenant_id"]


async def add_secret(conn: asyncpg.Connection, client_id: uuid.UUID, days: int | None = None) -> tuple[uuid.UUID, str]:
    """Another active secret for a client (rotation without downtime)."""
    days = secret_days(days)
    tenant_id = await _client_tenant(conn, client_id, kind="secret")
    return await _insert_secret(conn, tenant_id, client_id, days)


async def revoke_secret(conn: asyncpg.Connection, client_id: uuid.UUID, secret_id: uuid.UUID) -> None:
    status = await conn.execute(
        "UPDATE oauth_client_secrets SET revoked_at = now() WHERE client_id = $1 AND id = $2 AND revoked_at IS NULL",
        client_id, secret_id,
    )
    if status == "UPDATE 0":
        raise SecretNotFound(f"no active secret {secret_id} of client {client_id}")


async def revoke_client(conn: asyncpg.Connection, client_id: uuid.UUID) -> None:
    status = await conn.execute(
        "UPDATE oauth_clients SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", client_id
    )
    if status == "UPDATE 0":
        raise ClientNotFound(f"no active OAuth client {client_id} (unknown or already revoked)")


async def list_clients(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> list[ClientInfo]:
    clients = await conn.fetch(
        """SELECT id, label, scope, kind, issuer, subject, jwks_url, created_at, revoked_at
           FROM oauth_clients WHERE tenant_id = $1 ORDER BY created_at, id""",
        tenant_id,
    )
    rows = await conn.fetch(
        """SELECT client_id, id, created_at, expires_at, revoked_at FROM oauth_client_secrets
           WHERE tenant_id = $1 ORDER BY created_at, id""",
        tenant_id,
    )
    by_client: dict[uuid.UUID, list[SecretInfo]] = {}
    for r in rows:
        by_client.setdefault(r["client_id"], []).append(
            SecretInfo(r["id"], r["created_at"], r["expires_at"], r["revoked_at"])
        )
    return [ClientInfo(**dict(c), secrets=by_client.get(c["id"], [])) for c in clients]


async def secrets_expiring(conn: asyncpg.Connection, within: dt.timedelta) -> int:
    """Active secrets of active clients that expire within `within` (the metrics' warning)."""
    return int(await conn.fetchval(
        """SELECT count(*) FROM oauth_client_secrets s
           JOIN oauth_clients c ON c.tenant_id = s.tenant_id AND c.id = s.client_id
           WHERE s.revoked_at IS NULL AND c.revoked_at IS NULL
             AND s.expires_at > now() AND s.expires_at <= now() + $1::interval""",
        within,
    ))


# --- the token endpoint ---------------------------------------------------------------------------

async def client_by_secret(conn: asyncpg.Connection, client_id: str, secret: str) -> AuthenticatedClient | None:
    """The client if `secret` is one of its active, unexpired secrets (client_secret_basic/post)."""
    try:
        cid = uuid.UUID(client_id)
    except ValueError:
        return None
    digest = hash_secret(secret)
    row = await conn.fetchrow(
        """SELECT c.tenant_id, c.id, c.scope, s.id AS secret_id, s.secret_hash
           FROM oauth_client_secrets s
           JOIN oauth_clients c ON c.tenant_id = s.tenant_id AND c.id = s.client_id
           JOIN tenants t ON t.id = c.tenant_id
           WHERE s.secret_hash = $1 AND c.id = $2 AND c.kind = 'secret'
             AND s.revoked_at IS NULL AND s.expires_at > now() AND c.revoked_at IS NULL
             AND t.disabled_at IS NULL""",
        digest, cid,
    )
    if row is None or not hmac.compare_digest(row["secret_hash"], digest):
        return None
    return AuthenticatedClient(row["tenant_id"], row["id"], row["scope"], row["secret_id"])


@dataclass(frozen=True, slots=True)
class FederatedClient:
    tenant_id: uuid.UUID
    id: uuid.UUID
    scope: str
    issuer: str
    subject: str
    jwks_url: str | None
    jwks: dict[str, Any] | None
    audience: str | None


async def federated_client(conn: asyncpg.Connection, issuer: str, subject: str) -> FederatedClient | None:
    row = await conn.fetchrow(
        """SELECT c.tenant_id, c.id, c.scope, c.issuer, c.subject, c.jwks_url, c.jwks, c.audience
           FROM oauth_clients c JOIN tenants t ON t.id = c.tenant_id
           WHERE c.kind = 'federated' AND c.revoked_at IS NULL AND c.issuer = $1 AND c.subject = $2
             AND t.disabled_at IS NULL""",
        issuer, subject,
    )
    return FederatedClient(**dict(row)) if row else None


async def use_jti(conn: asyncpg.Connection, client: FederatedClient, jti: str, expires_at: dt.datetime) -> bool:
    """Record an assertion's jti; False when it was used before (a replay, RFC 7523 3)."""
    await conn.execute(
        "DELETE FROM oauth_assertion_jtis WHERE tenant_id = $1 AND client_id = $2 AND expires_at < now()",
        client.tenant_id, client.id,
    )
    status = await conn.execute(
        """INSERT INTO oauth_assertion_jtis (tenant_id, client_id, jti, expires_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING""",
        client.tenant_id, client.id, jti, expires_at,
    )
    return status == "INSERT 0 1"


async def issue_access_token(conn: asyncpg.Connection, client: AuthenticatedClient, ttl_s: int) -> AccessToken:
    """A new opaque access token for the client; expired ones of the client are dropped."""
    if not MIN_TOKEN_TTL_S <= ttl_s <= MAX_TOKEN_TTL_S:
        raise InvalidClientSetting(f"access tokens live from {MIN_TOKEN_TTL_S} to {MAX_TOKEN_TTL_S} s")
    value = new_secret(ACCESS_TOKEN_PREFIX)
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM oauth_access_tokens WHERE tenant_id = $1 AND client_id = $2 AND expires_at < now()",
            client.tenant_id, client.id,
        )
        await conn.execute(
            """INSERT INTO oauth_access_tokens (tenant_id, id, client_id, secret_id, token_hash, scope, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))""",
            client.tenant_id, uuid.uuid4(), client.id, client.secret_id, hash_secret(value), client.scope,
            float(ttl_s),
        )
    return AccessToken(value, ttl_s, client.scope)


_AUTHENTICATE = """
SELECT a.token_hash, c.tenant_id, c.id, c.label, a.scope, t.name, t.seats, t.rate_limit,
       t.disabled_at IS NOT NULL AS tenant_disabled
FROM oauth_access_tokens a
JOIN oauth_clients c ON c.tenant_id = a.tenant_id AND c.id = a.client_id
JOIN tenants t ON t.id = c.tenant_id
LEFT JOIN oauth_client_secrets s
       ON s.tenant_id = a.tenant_id AND s.client_id = a.client_id AND s.id = a.secret_id
WHERE a.token_hash = $1 AND a.expires_at > now() AND c.revoked_at IS NULL
  AND (a.secret_id IS NULL OR (s.revoked_at IS NULL AND s.expires_at > now()))
"""


async def authenticate_access_token(conn: asyncpg.Connection, value: str) -> Principal | None:
    """The principal an access token stands for, or None (unknown, expired, or its client or
    secret revoked). The principal's token id is the client id: every access token of one
    client is the same IdP connection in the audit trail."""
    digest = hash_secret(value)
    row = await conn.fetchrow(_AUTHENTICATE, digest)
    if row is None or not hmac.compare_digest(row["token_hash"], digest):
        return None
    return Principal(
        tenant_id=row["tenant_id"], tenant_name=row["name"], token_id=row["id"], label=row["label"],
        scope=row["scope"], seats=row["seats"], rate_limit=row["rate_limit"],
        tenant_disabled=row["tenant_disabled"],
    )

