"""Per-tenant storage bounds: at most `tenants.max_users` users and `tenants.max_groups` groups
live in one tenant (issue 12, item 8), so no tenant can fill the database the others share.

Checked on every create, cheaply: counting a million rows per create is not an option, so
`tenant_usage` keeps an upper bound of each count. A create adds one to the bound in the same
statement that compares it with the limit (one indexed UPDATE, the common case). Only when the
bound has reached the limit (or was never set) are the tenant's rows counted, with `LIMIT` the
limit, and the bound set to that count; at the limit a recount happens at most once every
RECOUNT_SECONDS, so a tenant that keeps creating at its bound costs a few indexed statements per
request, not a count. Deletes do not lower the bound; the next recount does. The slow path holds
the tenant's `tenant_usage` row lock, so concurrent creates take turns there and each sees the
bound the one before it left.

Exactness: the bound only grows between recounts (creates that then fail, on a duplicate userName
say, raise it too), so a tenant below its limit is refused only after a recount says it is at it,
and for at most RECOUNT_SECONDS after deletions made room. A recount sees committed rows only, so
it can pass the limit by the creates that had taken room but not yet committed: at most the
creates of the tenant in flight at once. The seat limit (service/app/users.py) is the exact
limit; this one guards storage.

Refused: 403 with a SCIM error body (RFC 7644 3.12), the same answer as the seat limit, whose
error class it extends, so both error tables (HTTP and CLI) answer it without a new entry.
"""

from __future__ import annotations

import uuid

import asyncpg

from projections.domain.errors import SeatLimitReached

RECOUNT_SECONDS = 10

# kind -> (view table, limit column of tenants, the columns of tenant_usage)
_KINDS = {
    "users": ("users", "max_users", "users_bound", "users_counted_at"),
    "groups": ("groups", "max_groups", "groups_bound", "groups_counted_at"),
}


class StorageLimitReached(SeatLimitReached):
    """A create beyond the tenant's storage bound (max_users or max_groups): 403, like seats."""


def _statements(kind: str) -> tuple[str, str, str, str, str]:
    table, limit, bound, counted_at = _KINDS[kind]
    take = f"""
        UPDATE tenant_usage u SET {bound} = u.{bound} + 1
        FROM tenants t
        WHERE u.tenant_id = $1 AND t.id = $1 AND u.{bound} < t.{limit}
        RETURNING u.{bound}"""
    ensure = """
        INSERT INTO tenant_usage (tenant_id) SELECT id FROM tenants WHERE id = $1
        ON CONFLICT (tenant_id) DO NOTHING"""
    locked = f"""
        SELECT t.{limit} AS cap, u.{bound} AS bound,
               coalesce(u.{counted_at} > now() - make_interval(secs => {RECOUNT_SECONDS}), false) AS fresh
        FROM tenant_usage u JOIN tenants t ON t.id = u.tenant_id
        WHERE u.tenant_id = $1
        FOR UPDATE OF u"""
    count = f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE tenant_id = $1 LIMIT $2) s"
    store = f"UPDATE tenant_usage SET {bound} = $2, {counted_at} = CASE WHEN $3 THEN now() ELSE {counted_at} END WHERE tenant_id = $1"
    return take, ensure, locked, count, store


_SQL = {kind: _statements(kind) for kind in _KINDS}


async def check_room(conn: asyncpg.Connection, tenant_id: uuid.UUID, kind: str) -> None:
    """Take room for one more `kind` ("users" or "groups") in the tenant, or raise
    StorageLimitReached naming the limit. Call it outside the create's transaction: the bound's
    row lock is then held for one statement, not for the whole create."""
    take, ensure, locked, count_rows, store = _SQL[kind]
    if await conn.fetchval(take, tenant_id) is not None:
        return
    # Slow path, serialised per tenant by the row lock: a waiter sees the bound the one before
    # it left, so concurrent first creates do not all count the same rows and all pass.
    async with conn.transaction():
        await conn.execute(ensure, tenant_id)
        row = await conn.fetchrow(locked, tenant_id)
        if row is None:  # no such tenant: the create itself will say so
            return
        cap, bound = int(row["cap"]), row["bound"]
        if bound is not None and bound < cap:
            await conn.execute(store, tenant_id, bound + 1, False)
            return
        count = bound
        if not row["fresh"] or bound is None:
            count = int(await conn.fetchval(count_rows, tenant_id, cap))
            await conn.execute(store, tenant_id, count + 1 if count < cap else count, True)
    if count < cap:
        return
    raise StorageLimitReached(
        f"storage limit reached: the tenant holds its limit of {cap} {kind}; "
        f"delete some, or raise the limit (scimledger tenant update --max-{kind})"
    )
