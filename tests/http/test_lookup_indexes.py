"""The attributes IdPs match on are served by indexes (issue: "a lookup stays logarithmic at a
million users"): userName, externalId, displayName and the email values, through the SQL the
filter translator really produces (RFC 7644 3.4.2.2 filters)."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.app.columns import USERS_TARGET
from service.scim.filter import parse_filter, to_sql
from tests.conftest import Tenant
from tests.support import CORE_USER


@pytest.mark.parametrize(("text", "index"), [
    ('userName eq "Ada@Example.com"', "users_user_name"),
    ('externalId eq "ext-7"', "users_external_id"),
    ('displayName eq "ada lovelace"', "users_display_name"),
    ('emails.value eq "ADA@work.example"', "users_email_values"),
    ('emails[type eq "work" and value eq "ada@work.example"]', "users_email_values"),
])
async def test_lookup_filter_uses_its_index_and_finds_the_user(
    client: TestClient, tenant: Tenant, pool: asyncpg.Pool, text: str, index: str
) -> None:
    for i in range(30):
        r = await client.post("/scim/v2/Users", json={
            "schemas": [CORE_USER], "userName": "ada@example.com" if i == 7 else f"u{i}@example.com",
            "externalId": f"ext-{i}", "displayName": "Ada Lovelace" if i == 7 else f"User {i}",
            "emails": [{"value": "ada@work.example" if i == 7 else f"u{i}@work.example", "type": "work"},
                       {"value": f"home{i}@example.org", "type": "home"}],
        }, headers=tenant.headers)
        assert r.status == 201
    async with pool.acquire() as conn:
        # a tenant-sized table, so that the planner's choice means what it would at scale: bulk
        # rows shaped like the view's (the 30 above went through HTTP and are the ones we look up)
        await conn.execute("""
            INSERT INTO users (tenant_id, id, ordinal, user_name, external_id, display_name, active,
                               resource, version, created, last_modified)
            SELECT $1, gen_random_uuid(), 1000 + n, 'bulk' || n || '@example.com', 'bulk-' || n,
                   'Bulk ' || n, true,
                   jsonb_build_object('userName', 'bulk' || n || '@example.com', 'emails',
                       jsonb_build_array(jsonb_build_object('value', 'bulk' || n || '@work.example', 'type', 'work'))),
                   1, now(), now()
            FROM generate_series(1, 20000) AS n""", tenant.id)
        await conn.execute("ANALYZE users")
    where, params = to_sql(parse_filter(text), USERS_TARGET, first_param=2)
    sql = f"SELECT u.user_name FROM users u WHERE u.tenant_id = $1 AND ({where})"
    async with pool.acquire() as conn, conn.transaction():
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", tenant.id, *params))
        found = [r[0] for r in await conn.fetch(sql, tenant.id, *params)]
    assert index in plan, plan
    assert found == ["ada@example.com"]
