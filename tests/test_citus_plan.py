"""The schema is ready to be distributed by tenant (docs/scaling.md, "Citus plan").

Two checks over the migrated schema and the real request path:

- every table's primary key starts with `tenant_id`, the distribution column, so that each
  unique constraint can be enforced on one shard; the global tables are listed with the reason
  each one may be global;
- every statement a scripted IdP session sends (users, groups, members, lists, filters, the audit
  API) reads tenant tables only through a predicate on `tenant_id`: each statement is captured
  from the app's pool and planned with `EXPLAIN (GENERIC_PLAN)`, and every scan of a tenant table
  in the plan must carry a condition on `tenant_id` (an index condition, a filter, or a join
  condition on it). A statement with such a scan is routable to one shard.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service.app import tenancy
from service.http.keys import POOL
from service.runtime.config import Settings
from tests.conftest import Tenant
from tests.support import CORE_GROUP, auth_headers, deactivate_okta, new_user, patch

# tables without tenant_id first in their primary key, and why each may stay global (in Citus: a
# reference table, replicated to every node, or a table of the coordinator alone)
GLOBAL_TABLES = {
    "tenants": "the tenant itself: `id` is the tenant id; distributed on it, co-located with the rest",
    "schema_migrations": "which migrations ran: one row per migration, for the whole database",
    "projection_checkpoints": "one position per follower over the whole log, which is global",
    "projection_dead_letters": "an operator's queue per projection across tenants, keyed "
                               "(projection, tenant_id, position); small, read by the CLI only",
    "set_signing_keys": "the service's keys signing security events for every tenant (by kid)",
    "console_sessions": "a console sign-in found by its cookie's hash before any tenant is known",
}

# tables the request path reads by something other than tenant_id, and why: authentication finds
# the tenant from the credential
CROSS_TENANT_READS = {
    "tokens": "authentication: a bearer token is looked up by its hash, which names the tenant "
              "(in Citus: a reference table of hashes -> tenant, docs/scaling.md)",
    "oauth_access_tokens": "authentication of an OAuth access token, by its hash",
}
# statements (by a fragment of their text) of the request path that read the whole log, and why
CROSS_TENANT_STATEMENTS = {
    "pg_get_serial_sequence('events', 'global_position')":
        "the audit API's freshness (service/app/freshness.py): how far the audit follower, which "
        "reads the whole log, is behind it; under Citus one follower position per shard",
}

PRIMARY_KEYS = """
SELECT c.relname AS name,
       (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i
          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE i.indrelid = c.oid AND i.indisprimary) AS key,
       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
               AND NOT a.attisdropped) AS has_tenant
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""


async def test_every_primary_key_starts_with_tenant_id(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(PRIMARY_KEYS)
    assert rows, "no tables: migrations did not run"
    wrong = {r["name"]: r["key"] for r in rows if r["name"] not in GLOBAL_TABLES and (r["key"] or [None])[0] != "tenant_id"}
    assert not wrong, f"primary keys not led by tenant_id (distribute them, or justify in GLOBAL_TABLES): {wrong}"
    stale = set(GLOBAL_TABLES) - {r["name"] for r in rows}
    assert not stale, f"GLOBAL_TABLES names tables that no longer exist: {stale}"


@pytest.fixture
def settings() -> Settings:
    # a fixed pool, so that every connection a request can get carries the statement logger
    return Settings(log_json=True, default_rate_limit=1e6, pool_min=3, pool_max=3, run_followers=False)


CONDITIONS = ("Index Cond", "Filter", "Recheck Cond", "Join Filter", "Hash Cond", "Merge Cond", "TID Cond")


def _conditions(node: dict[str, Any]) -> str:
    return " ".join(str(node.get(k, "")) for k in CONDITIONS)


def unrouted_scans(plan: dict[str, Any], tenant_tables: set[str], above: str = "") -> list[str]:
    """Scans of a tenant table in the plan with no condition on tenant_id, on the scan itself or
    on a join above it (a hash join's condition sits on the join node)."""
    here = above + " " + _conditions(plan)
    missing = []
    table = plan.get("Relation Name")
    if table in tenant_tables and plan["Node Type"] != "ModifyTable" and "tenant_id" not in here:
        missing.append(table)
    for child in plan.get("Plans", []):
        missing += unrouted_scans(child, tenant_tables, here)
    return missing


async def idp_session(client: TestClient, tenant: Tenant, auditor: dict[str, str]) -> None:
    """Okta-shaped traffic over every resource, then the auditor's reads."""
    h = tenant.headers
    ids = []
    for i in range(3):
        resp = await client.post("/scim/v2/Users", headers=h, json=new_user(f"u{i}@example.com", displayName=f"U {i}"))
        assert resp.status == 201, await resp.text()
        ids.append((await resp.json(content_type=None))["id"])
    calls = [
        ("GET", f"/scim/v2/Users/{ids[0]}", None),
        ("GET", "/scim/v2/Users?filter=" + quote('userName eq "u1@example.com"'), None),
        ("GET", "/scim/v2/Users?filter=" + quote('emails[type eq "work"].value co "example"'), None),
        ("GET", "/scim/v2/Users?startIndex=1&count=2", None),
        ("GET", "/scim/v2/Users?startIndex=3&count=2", None),
        ("PATCH", f"/scim/v2/Users/{ids[1]}", deactivate_okta()),
        ("PUT", f"/scim/v2/Users/{ids[2]}", new_user("u2@example.com", displayName="Renamed")),
    ]
    for method, path, body in calls:
        resp = await client.request(method, path, headers=h, json=body)
        assert resp.status == 200, f"{method} {path}: {await resp.text()}"
    resp = await client.post("/scim/v2/Groups", headers=h, json={"schemas": [CORE_GROUP], "displayName": "G"})
    assert resp.status == 201, await resp.text()
    gid = (await resp.json(content_type=None))["id"]
    for op in ({"op": "add", "path": "members", "value": [{"value": ids[0]}, {"value": ids[1]}]},
               {"op": "remove", "path": f'members[value eq "{ids[1]}"]'}):
        resp = await client.patch(f"/scim/v2/Groups/{gid}", headers=h, json=patch(op))
        assert resp.status in (200, 204), await resp.text()
    for path in (f"/scim/v2/Groups/{gid}", "/scim/v2/Groups?startIndex=1&count=10", f"/scim/v2/Users/{ids[0]}"):
        resp = await client.get(path, headers=h)
        assert resp.status == 200, await resp.text()
    resp = await client.delete(f"/scim/v2/Users/{ids[0]}", headers=h)
    assert resp.status == 204, await resp.text()
    for path in (f"/audit/v1/users/{ids[1]}", f"/audit/v1/users/{ids[1]}/history", "/audit/v1/verify"):
        resp = await client.get(path, headers=auditor)
        # the audit view is the follower's, off here (404 or 503): the statements are what counts
        assert resp.status in (200, 404, 503), await resp.text()


EXPLAIN_GENERIC = """
CREATE FUNCTION pg_temp.explain_generic(statement text) RETURNS json LANGUAGE plpgsql AS $f$
DECLARE plan json;
BEGIN
    EXECUTE 'EXPLAIN (GENERIC_PLAN, FORMAT JSON) ' || statement INTO plan;
    RETURN plan;
END $f$
"""


async def test_request_path_statements_read_one_tenant(
    app: web.Application, client: TestClient, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    statements: set[str] = set()
    held = [await app[POOL].acquire() for _ in range(app[POOL].get_max_size())]
    for conn in held:
        conn.add_query_logger(lambda record: statements.add(record.query))
    for conn in held:
        await app[POOL].release(conn)
    async with pool.acquire() as conn:
        _, auditor = await tenancy.issue_token(conn, tenant.id, "auditor", "audit")
    await idp_session(client, tenant, auth_headers(auditor))

    tenant_tables = {r["name"] for r in await pool.fetch(PRIMARY_KEYS) if r["has_tenant"]}
    assert len(statements) > 10, statements
    unrouted: dict[str, list[str]] = {}
    async with pool.acquire() as conn:
        # EXPLAIN (GENERIC_PLAN) plans a statement with unbound $n, but only when it is not sent
        # as an extended-protocol statement (asyncpg's fetch): EXECUTE in PL/pgSQL sends it bare
        await conn.execute(EXPLAIN_GENERIC)
        for sql in statements:
            if not sql.lstrip().upper().startswith(("SELECT", "WITH", "INSERT", "UPDATE", "DELETE")):
                continue  # BEGIN, COMMIT, ROLLBACK, SET LOCAL
            plan = (await conn.fetchval("SELECT pg_temp.explain_generic($1)", sql))[0]["Plan"]  # json codec
            missing = [t for t in unrouted_scans(plan, tenant_tables) if t not in CROSS_TENANT_READS]
            if missing and not any(fragment in sql for fragment in CROSS_TENANT_STATEMENTS):
                unrouted[" ".join(sql.split())[:300]] = missing
    assert not unrouted, f"request-path statements scanning tenant tables without tenant_id: {unrouted}"


async def test_a_statement_that_reads_across_tenants_is_reported(pool: asyncpg.Pool) -> None:
    """What the check above protects: a lookup by id alone scans every tenant's users."""
    async with pool.acquire() as conn:
        await conn.execute(EXPLAIN_GENERIC)
        across = (await conn.fetchval("SELECT pg_temp.explain_generic($1)", "SELECT resource FROM users WHERE id = $1"))[0]["Plan"]
        routed = (await conn.fetchval(
            "SELECT pg_temp.explain_generic($1)", "SELECT resource FROM users WHERE tenant_id = $1 AND id = $2"
        ))[0]["Plan"]
    assert unrouted_scans(across, {"users"}) == ["users"]
    assert unrouted_scans(routed, {"users"}) == []
