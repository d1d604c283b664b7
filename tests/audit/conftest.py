"""Helpers for the audit tests: tokens of a tenant, and waiting for a follower to catch up."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from projections.followers import runner as follower
from service.app import tenancy
from tests.conftest import SCIM

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


async def token_headers(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, label: str, scope: str, *, client: str | None = None
) -> tuple[uuid.UUID, dict[str, str]]:
    """A new token of the tenant: (token id, request headers carrying it)."""
    async with pool.acquire() as conn:
        token_id, secret = await tenancy.issue_token(conn, tenant_id, label, scope)
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": SCIM}
    if client:
        headers["User-Agent"] = client
    return token_id, headers


async def caught_up(pool: asyncpg.Pool, *names: str, within: float = 10.0) -> float:
    """Wait until every named follower has applied every committed event; seconds waited."""
    started = time.monotonic()
    async with pool.acquire() as conn:
        while True:
            lags = [await follower.lag(conn, n) for n in names]
            rows = [await follower.load_checkpoint(conn, n) for n in names]
            assert all(r is None or r.state == follower.RUNNING for r in rows), rows
            if all(lag.events == 0 for lag in lags) and all(r is not None for r in rows):
                return time.monotonic() - started
            if time.monotonic() - started > within:
                raise AssertionError(f"followers {names} still behind after {within}s: {lags}")
            await asyncio.sleep(0.02)


def new_user(user_name: str, **extra: object) -> dict[str, object]:
    return {"schemas": [USER], "userName": user_name, "active": True, **extra}


def deactivate_okta() -> dict[str, object]:
    """Okta's path-less replace (DESIGN.md, Interoperability)."""
    return {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}


def deactivate_entra() -> dict[str, object]:
    """Entra's capitalised op with a boolean as a string."""
    return {"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}
