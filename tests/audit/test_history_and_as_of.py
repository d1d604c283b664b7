"""A user's whole story, and the state of a user or group as of a moment (issue 6).

As-of folds one stream's events with the same `apply` as the inline views (projections/users.py,
groups.py); history reads the audit view. RFC 7643 4.1 (User), 4.2 (Group members).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import make_tenant
from tests.support import (
    CORE_GROUP,
    ERROR_SCHEMA,
    caught_up,
    cli,
    deactivate_okta,
    env_for,
    new_user,
    patch,
    token_headers,
)


def rename(display_name: str) -> dict[str, object]:
    return patch({"op": "replace", "path": "displayName", "value": display_name})


def just_before(timestamp: str) -> str:
    moment = dt.datetime.fromisoformat(timestamp) - dt.timedelta(microseconds=1)
    return moment.isoformat()


async def test_as_of_returns_the_old_value_after_a_change(client: TestClient, pool: asyncpg.Pool, dsn: str) -> None:
    acme = await make_tenant(pool, "acme")
    _, auditor = await token_headers(pool, acme.id, "compliance", "audit")
    r = await client.post("/scim/v2/Users", json=new_user("alice@example.com", displayName="Alice Old"),
                          headers=acme.headers)
    alice = (await r.json(content_type=None))["id"]
    await asyncio.sleep(0.01)
    await client.patch(f"/scim/v2/Users/{alice}", json=rename("Alice New"), headers=acme.headers)
    await client.patch(f"/scim/v2/Users/{alice}", json=deactivate_okta(), headers=acme.headers)
    await caught_up(pool, "audit")

    r = await client.get(f"/audit/v1/users/{alice}/history", headers=auditor)
    assert r.status == 200
    history = (await r.json())["events"]
    assert [e["type"] for e in history] == ["user.created", "user.updated", "user.deactivated"]
    created_at, renamed_at = history[0]["recordedAt"], history[1]["recordedAt"]
    assert created_at < renamed_at

    async def as_of(moment: str) -> tuple[int, dict[str, object]]:
        r = await client.get(f"/audit/v1/users/{alice}", params={"asOf": moment}, headers=auditor)
        return r.status, await r.json(content_type=None)

    status, old = await as_of(created_at)  # the moment of the first event: exactly as created
    assert status == 200 and old["displayName"] == "Alice Old" and old["active"] is True
    assert old["meta"]["version"] == 'W/"1"' and old["id"] == alice
    status, old = await as_of(just_before(renamed_at))
    assert status == 200 and old["displayName"] == "Alice Old"
    status, new = await as_of(renamed_at)
    assert status == 200 and new["displayName"] == "Alice New" and new["active"] is True
    r = await client.get(f"/audit/v1/users/{alice}", headers=auditor)  # no asOf: now
    now = await r.json()
    assert now["displayName"] == "Alice New" and now["active"] is False and now["meta"]["version"] == 'W/"3"'
    status, body = await as_of(just_before(created_at))
    assert status == 404 and body["schemas"] == [ERROR_SCHEMA] and "did not exist" in body["detail"]

    # the CLI gives the same state, by userName
    result = await asyncio.to_thread(
        cli, "audit", "state", "--tenant", "acme", "alice@example.com", "--as-of", just_before(renamed_at),
        env=env_for(dsn),
    )
    cli_state = json.loads(result.stdout)
    assert cli_state["displayName"] == "Alice Old" and cli_state["id"] == alice
    assert {k: v for k, v in cli_state.items() if k != "meta"} == {
        k: v for k, v in old.items() if k != "meta"
    }


async def test_group_as_of_has_the_members_of_then(client: TestClient, pool: asyncpg.Pool) -> None:
    acme = await make_tenant(pool, "acme")
    _, auditor = await token_headers(pool, acme.id, "compliance", "audit")
    ids = []
    for name in ("a@example.com", "b@example.com"):
        r = await client.post("/scim/v2/Users", json=new_user(name), headers=acme.headers)
        ids.append((await r.json(content_type=None))["id"])
    r = await client.post("/scim/v2/Groups", json={
        "schemas": [CORE_GROUP], "displayName": "Engineering", "members": [{"value": i} for i in ids]},
        headers=acme.headers)
    assert r.status == 201, await r.text()
    group = (await r.json(content_type=None))["id"]
    await asyncio.sleep(0.01)
    r = await client.patch(f"/scim/v2/Groups/{group}", json=patch(
        {"op": "remove", "path": f'members[value eq "{ids[0]}"]'},
        {"op": "replace", "path": "displayName", "value": "Platform"}), headers=acme.headers)
    assert r.status in (200, 204), await r.text()
    await caught_up(pool, "audit")
    r = await client.get(f"/audit/v1/groups/{group}/history", headers=auditor)
    history = (await r.json())["events"]
    assert history[0]["target"]["displayName"] == "Engineering"
    assert history[-1]["target"]["displayName"] == "Platform"
    changed_at = history[-1]["recordedAt"]

    r = await client.get(f"/audit/v1/groups/{group}", params={"asOf": just_before(changed_at)}, headers=auditor)
    before = await r.json()
    assert before["displayName"] == "Engineering"
    assert sorted(m["value"] for m in before["members"]) == sorted(ids)
    r = await client.get(f"/audit/v1/groups/{group}", params={"asOf": changed_at}, headers=auditor)
    after = await r.json()
    assert after["displayName"] == "Platform" and [m["value"] for m in after["members"]] == [ids[1]]
    # a user id is not a group (and the reverse): 404, as for ids that never existed
    r = await client.get(f"/audit/v1/groups/{ids[0]}", headers=auditor)
    assert r.status == 404
    r = await client.get(f"/audit/v1/users/{group}/history", headers=auditor)
    assert r.status == 404


async def test_target_finds_a_user_by_any_name_it_had_even_after_deletion(
    client: TestClient, pool: asyncpg.Pool, dsn: str
) -> None:
    """`target` accepts a userName, including users since renamed and deleted (issue 6)."""
    acme = await make_tenant(pool, "acme")
    _, auditor = await token_headers(pool, acme.id, "compliance", "audit")
    r = await client.post("/scim/v2/Users", json=new_user("old@example.com"), headers=acme.headers)
    uid = (await r.json(content_type=None))["id"]
    await client.patch(f"/scim/v2/Users/{uid}", json=patch(
        {"op": "replace", "path": "userName", "value": "new@example.com"}), headers=acme.headers)
    r = await client.delete(f"/scim/v2/Users/{uid}", headers=acme.headers)
    assert r.status == 204
    await caught_up(pool, "audit")
    for target in ("old@example.com", "NEW@example.com", uid):
        r = await client.get("/audit/v1/events", params={"target": target}, headers=auditor)
        events = (await r.json())["events"]
        assert [e["type"] for e in events] == ["user.created", "user.updated", "user.deleted"], target
        assert [e["target"]["userName"] for e in events] == ["old@example.com", "new@example.com", "new@example.com"]
    # the deleted user's history stays readable, by id (API) and by a past userName (CLI)
    r = await client.get(f"/audit/v1/users/{uid}/history", headers=auditor)
    assert len((await r.json())["events"]) == 3
    result = await asyncio.to_thread(
        cli, "audit", "history", "--tenant", "acme", "old@example.com", "--format", "jsonl", env=env_for(dsn)
    )
    assert [json.loads(line)["type"] for line in result.stdout.splitlines()] == [
        "user.created", "user.updated", "user.deleted"]
