"""Who deactivated whom, through which IdP connection: the audit API and the CLI name the actor.

Issue 6 "Done when": two tokens labelled "okta" and "entra" deactivate two users; the API and the
CLI both name the right actor (label, token id, client User-Agent, request id) for each.
RFC 7644 3.5.2 (PATCH active false), DESIGN.md "Events" (metadata is the actor).
"""

from __future__ import annotations

import asyncio
import json

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import make_tenant
from tests.support import (
    ENTRA_CLIENT,
    OKTA_CLIENT,
    auth_headers,
    caught_up,
    cli,
    deactivate_entra,
    deactivate_okta,
    env_for,
    new_user,
    token_headers,
)


async def test_api_and_cli_name_the_connection_that_deactivated_each_user(
    client: TestClient, pool: asyncpg.Pool, dsn: str
) -> None:
    acme = await make_tenant(pool, "acme", label="okta")
    okta = auth_headers(acme.secret, client=OKTA_CLIENT)
    entra_id, entra = await token_headers(pool, acme.id, "entra", "scim", client=ENTRA_CLIENT)
    _, auditor = await token_headers(pool, acme.id, "compliance", "audit")

    r = await client.post("/scim/v2/Users", json=new_user("alice@example.com"), headers=okta)
    alice = (await r.json(content_type=None))["id"]
    r = await client.post("/scim/v2/Users", json=new_user("bob@example.com"), headers=entra)
    bob = (await r.json(content_type=None))["id"]

    r = await client.patch(f"/scim/v2/Users/{alice}", json=deactivate_okta(),
                           headers={**okta, "X-Request-Id": "okta-req-1"})
    assert r.status == 200 and (await r.json(content_type=None))["active"] is False
    r = await client.patch(f"/scim/v2/Users/{bob}", json=deactivate_entra(),
                           headers={**entra, "X-Request-Id": "entra-req-1"})
    assert r.status == 200 and (await r.json(content_type=None))["active"] is False
    await caught_up(pool, "audit")

    expected = {
        "alice@example.com": (alice, {"tokenId": str(acme.token_id), "label": "okta",
                                      "client": "Okta SCIM Client 1.0.0", "requestId": "okta-req-1"}),
        "bob@example.com": (bob, {"tokenId": str(entra_id), "label": "entra",
                                  "client": "Azure-AD-Provisioning", "requestId": "entra-req-1"}),
    }
    api_answers = {}
    for user_name, (user_id, actor) in expected.items():
        # the target by userName, and by id: the same single event
        for target in (user_name, user_id):
            r = await client.get("/audit/v1/events", params={"type": "user.deactivated", "target": target},
                                 headers=auditor)
            assert r.status == 200, await r.text()
            body = await r.json()
            assert body["next"] is None
            [event] = body["events"]
            assert event["type"] == "user.deactivated"
            assert event["target"] == {"type": "user", "id": user_id, "userName": user_name}
            assert {k: event["actor"][k] for k in actor} == actor
            assert event["actor"]["ip"] == "127.0.0.1"
            assert event["data"] == {"type": "user.deactivated", "user_name": user_name}
        api_answers[user_name] = event

    # the CLI answers the same question with the same event
    env = env_for(dsn)
    for user_name in expected:
        result = await asyncio.to_thread(
            cli, "audit", "events", "--tenant", "acme", "--type", "user.deactivated",
            "--target", user_name, "--format", "jsonl", env=env,
        )
        [line] = result.stdout.splitlines()
        assert json.loads(line) == api_answers[user_name]
    table = await asyncio.to_thread(
        cli, "audit", "events", "--tenant", "acme", "--type", "user.deactivated", env=env
    )
    rows = table.stdout.splitlines()[1:]
    assert len(rows) == 2
    assert "alice@example.com" in rows[0] and f"okta ({acme.token_id})" in rows[0] and "okta-req-1" in rows[0]
    assert "bob@example.com" in rows[1] and f"entra ({entra_id})" in rows[1] and "entra-req-1" in rows[1]


async def test_actor_filter_matches_a_label_or_a_token_id(client: TestClient, pool: asyncpg.Pool) -> None:
    """`actor` takes a token label or a token id (issue 6, auditor API)."""
    acme = await make_tenant(pool, "acme", label="okta")
    entra_id, entra = await token_headers(pool, acme.id, "entra", "scim")
    _, auditor = await token_headers(pool, acme.id, "compliance", "audit")
    await client.post("/scim/v2/Users", json=new_user("a@example.com"), headers=acme.headers)
    await client.post("/scim/v2/Users", json=new_user("b@example.com"), headers=entra)
    await client.post("/scim/v2/Users", json=new_user("c@example.com"), headers=entra)
    await caught_up(pool, "audit")
    for actor, names in (("okta", ["a@example.com"]), ("entra", ["b@example.com", "c@example.com"]),
                         (str(entra_id), ["b@example.com", "c@example.com"]), ("nobody", [])):
        r = await client.get("/audit/v1/events", params={"actor": actor}, headers=auditor)
        events = (await r.json())["events"]
        assert [e["target"]["userName"] for e in events] == names, actor


async def test_cli_changes_name_the_operating_system_user(client: TestClient, pool: asyncpg.Pool, dsn: str) -> None:
    """Changes made through the CLI name "cli" and the OS user (issue 6, Actor on every event)."""
    acme = await make_tenant(pool, "acme")
    _, auditor = await token_headers(pool, acme.id, "compliance", "audit")
    env = env_for(dsn)
    await asyncio.to_thread(cli, "user", "create", "--tenant", "acme", "carol@example.com", env=env)
    await asyncio.to_thread(cli, "user", "deactivate", "--tenant", "acme", "carol@example.com", env=env)
    await caught_up(pool, "audit")
    r = await client.get("/audit/v1/events", params={"target": "carol@example.com", "type": "user.deactivated"},
                         headers=auditor)
    [event] = (await r.json())["events"]
    assert event["actor"]["kind"] == "cli" and event["actor"]["label"] == "cli"
    assert event["actor"]["osUser"] and event["actor"]["client"] == "scimledger user deactivate"
