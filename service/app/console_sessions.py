"""Sessions of the web console (docs/console.md): a pasted token exchanged for a session.

The browser keeps a random session id (32 bytes from `secrets`) in a cookie; the table keeps only
its SHA-256, like tokens. The CSRF token of a session is derived from the id (an HMAC keyed with
it), so it is never stored either, and a read of the table yields neither.

A session belongs to the token that signed in. Every lookup joins the token and refuses the
session when the token is revoked or past its expiry (a rotated token's grace), in the one
indexed statement that finds the session: a revocation ends every console session of that token
on its next request. Sessions also end at an absolute expiry and after an idle period; the last
use is written at most once a minute, so browsing costs no write per page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import asyncpg

from service.app.tenancy import Principal, authenticate

ROLES = {"scim": "admin", "audit": "auditor"}  # the token's scope -> the console's view


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in console user: the principal of its token and the console role."""

    principal: Principal
    role: str  # "admin" (a scim token) or "auditor" (an audit token)
    created_at: dt.datetime
    expires_at: dt.datetime
    csrf: str  # the session's CSRF token, for its forms


def _hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


def csrf_token(secret: str, purpose: str = "console form") -> str:
    """The CSRF token bound to a secret (a session id, or the sign-in cookie)."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def csrf_matches(secret: str, given: str, purpose: str = "console form") -> bool:
    return hmac.compare_digest(csrf_token(secret, purpose).encode(), given.encode())


async def sign_in(
    conn: asyncpg.Connection, token: str, *, lifetime: dt.timedelta
) -> tuple[str, ConsoleSession] | None:
    """A new session for a valid token (None: unknown, revoked or expired, its tenant disabled,
    or a scope the console has no view for). Returns the session id for the cookie, shown only here."""
    principal = await authenticate(conn, token.strip())
    if principal is None or principal.scope not in ROLES or principal.tenant_disabled:
        return None
    # a token issued with `token issue` (an OAuth access token lives minutes: not for sessions)
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM tokens WHERE tenant_id = $1 AND id = $2)",
        principal.tenant_id, principal.token_id,
    ):
        return None
    await conn.execute("DELETE FROM console_sessions WHERE expires_at < now()")
    session_id = secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        """INSERT INTO console_sessions (id_hash, tenant_id, token_id, expires_at)
           VALUES ($1, $2, $3, now() + $4::interval) RETURNING created_at, expires_at""",
        _hash(session_id), principal.tenant_id, principal.token_id, lifetime,
    )
    return session_id, ConsoleSession(
        principal, ROLES[principal.scope], row["created_at"], row["expires_at"], csrf_token(session_id)
    )


_LOOKUP = """
WITH found AS (
    SELECT s.id_hash, s.created_at, s.expires_at, s.last_seen_at,
           k.tenant_id, k.id AS token_id, k.label, k.scope, t.name, t.seats, t.rate_limit
    FROM console_sessions s
    JOIN tokens k ON k.tenant_id = s.tenant_id AND k.id = s.token_id
    JOIN tenants t ON t.id = s.tenant_id
    WHERE s.id_hash = $1 AND s.expires_at > now() AND s.last_seen_at > now() - $2::interval
      AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
      AND t.disabled_at IS NULL
), touched AS (
    UPDATE console_sessions c SET last_seen_at = now()
    FROM found
    WHERE c.id_hash = found.id_hash AND found.last_seen_at < now() - interval '1 minute'
)
SELECT * FROM found
"""


async def lookup(conn: asyncpg.Connection, session_id: str, *, idle: dt.timedelta) -> ConsoleSession | None:
    """The live session a cookie names, or None (unknown, signed out, expired, idle too long,
    or its token revoked or expired)."""
    if not session_id or len(session_id) > 128:
        return None
    row = await conn.fetchrow(_LOOKUP, _hash(session_id), idle)
    if row is None or row["scope"] not in ROLES:
        return None
    principal = Principal(
        tenant_id=row["tenant_id"], tenant_name=row["name"], token_id=row["token_id"],
        label=row["label"], scope=row["scope"], seats=row["seats"], rate_limit=row["rate_limit"],
    )
    return ConsoleSession(principal, ROLES[row["scope"]], row["created_at"], row["expires_at"], csrf_token(session_id))


async def sign_out(conn: asyncpg.Connection, session_id: str) -> None:
    await conn.execute("DELETE FROM console_sessions WHERE id_hash = $1", _hash(session_id))

