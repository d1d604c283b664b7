"""`scimledger tenant rename|disable|enable` (docs/tenancy.md, "Undoing a mistake"): a disabled
tenant's bearer tokens, OAuth clients and console sessions are refused with a SCIM 403 body
(RFC 7644 3.12: authenticated, not permitted) while its data is kept; `enable` undoes it; a
rename keeps the id, the data and the tokens. Names and labels are trimmed and checked.
"""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp.test_utils import TestClient

from service.app import oauth
from service.http import metrics
from tests.conftest import Tenant
from tests.oauth.test_token_endpoint import GRANT, TOKEN, basic
from tests.support import ERROR_SCHEMA, bearer, body_of, cli, env_for, new_user

USERS = "/scim/v2/Users"


async def run(dsn: str, *args: str, check: bool = True):
    return await asyncio.to_thread(cli, *args, env=env_for(dsn), check=check)


async def test_a_disabled_tenant_is_refused_with_403_and_keeps_its_data(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant, dsn: str
) -> None:
    created = await client.post(USERS, json=new_user("ada@example.com"), headers=tenant.headers)
    assert created.status == 201
    async with pool.acquire() as conn:
        client_id, client_secret = await oauth.create_client(conn, tenant.id, "entra-prod")
    got = await client.post(TOKEN, data=GRANT, headers=basic(str(client_id), client_secret))
    access_token = (await got.json())["access_token"]
    refusals = metrics.AUTH_FAILURES.labels("tenant_disabled")._value.get()

    done = await run(dsn, "tenant", "disable", "acme")
    assert done.stdout == "" and "tenant enable acme" in done.stderr

    for secret in (tenant.secret, access_token):
        refused = await client.get(USERS, headers=bearer(secret))
        body = await body_of(refused)
        assert refused.status == 403, body
        assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "403" and "disabled" in body["detail"]
    assert metrics.AUTH_FAILURES.labels("tenant_disabled")._value.get() == refusals + 2
    no_token = await client.post(TOKEN, data=GRANT, headers=basic(str(client_id), client_secret))
    assert no_token.status == 401 and (await no_token.json())["error"] == "invalid_client"
    listing = (await run(dsn, "tenant", "list")).stdout
    assert next(line for line in listing.splitlines() if line.startswith("acme ")).split()[-3] == "disabled"
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1", tenant.id) == 1

    again = await run(dsn, "tenant", "disable", "acme")
    assert "already disabled" in again.stderr
    await run(dsn, "tenant", "enable", "acme")
    listed = await client.get(USERS, headers=tenant.headers)
    assert listed.status == 200 and (await body_of(listed))["totalResults"] == 1
    assert (await client.get(USERS, headers=bearer(access_token))).status == 200


async def test_rename_keeps_the_id_the_data_and_the_tokens(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant, dsn: str
) -> None:
    await run(dsn, "tenant", "create", "globex")
    taken = await run(dsn, "tenant", "rename", "acme", "globex", check=False)
    assert taken.returncode == 1 and "already exists" in taken.stderr
    bad = await run(dsn, "tenant", "rename", "acme", "Acme Corp", check=False)
    assert bad.returncode == 2 and "lower-case" in bad.stderr
    await run(dsn, "tenant", "rename", "acme", "acme-corp")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT name FROM tenants WHERE id = $1", tenant.id) == "acme-corp"
    assert (await client.get(USERS, headers=tenant.headers)).status == 200
    tokens = await run(dsn, "token", "list", "--tenant", "acme-corp")
    assert str(tenant.token_id) in tokens.stdout


async def test_tenant_names_are_trimmed_and_checked(dsn: str) -> None:
    for name in ("", "   ", "Acme", "acme corp", "-acme", "acme\u200b", "x" * 64):
        refused = await run(dsn, "tenant", "create", name, check=False)
        assert refused.returncode == 2 and refused.stdout == "" and "Traceback" not in refused.stderr, name
    await run(dsn, "tenant", "create", "  acme  ")
    look_alike = await run(dsn, "tenant", "create", "acme", check=False)
    assert look_alike.returncode == 1 and "already exists" in look_alike.stderr
    names = (await run(dsn, "tenant", "list")).stdout
    assert "  acme" not in names and any(line.startswith("acme ") for line in names.splitlines())


async def test_token_and_client_labels_are_trimmed_and_bounded(dsn: str, pool: asyncpg.Pool) -> None:
    await run(dsn, "tenant", "create", "acme")
    for label in ("", "   ", "x" * 129, "a\tb"):
        for command in (("token", "issue"), ("client", "create")):
            refused = await run(dsn, *command, "--tenant", "acme", "--label", label, check=False)
            assert refused.returncode == 2 and refused.stdout == "", (command, label, refused.stderr)
    refused = await run(dsn, "token", "issue", "--tenant", "", "--label", "okta", check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    await run(dsn, "token", "issue", "--tenant", "acme", "--label", "  okta  ")
    await run(dsn, "client", "create", "--tenant", "acme", "--label", " entra-prod ")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT label FROM tokens") == "okta"
        assert await conn.fetchval("SELECT label FROM oauth_clients") == "entra-prod"


async def test_an_unknown_tenant_name_suggests_the_closest_and_tenant_list(dsn: str) -> None:
    await run(dsn, "tenant", "create", "acme")
    await run(dsn, "tenant", "create", "globex")
    missing = await run(dsn, "token", "issue", "--tenant", "acem", "--label", "okta", check=False)
    assert missing.returncode == 1 and missing.stdout == ""
    assert "did you mean 'acme'?" in missing.stderr and "scimledger tenant list" in missing.stderr
    far = await run(dsn, "tenant", "disable", "zzzzzz", check=False)
    assert far.returncode == 1 and "did you mean" not in far.stderr and "scimledger tenant list" in far.stderr
