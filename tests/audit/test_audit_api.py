"""The /audit/v1 surface: paging, exports, bad parameters, scope and tenant isolation
(issue 6 "Auditor HTTP API"; errors as RFC 7644 3.12 bodies; DESIGN.md "Tenancy and security")."""

from __future__ import annotations

import csv
import io
import json

import asyncpg
from aiohttp.test_utils import TestClient

from service.app.audit import decode_cursor, encode_cursor
from tests.conftest import make_tenant
from tests.support import (
    CORE_GROUP,
    ERROR_SCHEMA,
    caught_up,
    deactivate_okta,
    new_user,
    token_headers,
)


async def _users(client: TestClient, headers: dict[str, str], n: int, prefix: str = "u") -> list[str]:
    ids = []
    for i in range(n):
        r = await client.post("/scim/v2/Users", json=new_user(f"{prefix}{i}@example.com"), headers=headers)
        assert r.status == 201
        ids.append((await r.json(content_type=None))["id"])
    return ids


async def test_cursor_pages_cover_every_event_once_in_order(client: TestClient, pool: asyncpg.Pool) -> None:
    acme = await make_tenant(pool, "acme")
    _, auditor = await token_headers(pool, acme.id, "compliance", "audit")
    await _users(client, acme.headers, 7)
    await caught_up(pool, "audit")
    seen: list[int] = []
    params = {"limit": "3"}
    pages = 0
    while True:
        r = await client.get("/audit/v1/events", params=params, headers=auditor)
        body = await r.json()
        seen += [e["position"] for e in body["events"]]
        pages += 1
        if body["next"] is None:
            break
        params = {"limit": "3", "cursor": body["next"]}
    assert pages == 3 and len(seen) == 7 and seen == sorted(set(seen))


async def test_filters_by_type_list_and_time_range(client: TestClient, pool: asyncpg.Pool) -> None:
    acme = await make_tenant(pool, "acme")
    _, auditor = await token_headers(pool, acme.id, "compliance", "audit")
    ids = await _users(client, acme.headers, 2)
    await client.patch(f"/scim/v2/Users/{ids[0]}", json=deactivate_okta(), headers=acme.headers)
    await client.delete(f"/scim/v2/Users/{ids[1]}", headers=acme.headers)
    await caught_up(pool, "audit")
    r = await client.get("/audit/v1/events", params={"type": "user.deactivated,user.deleted"}, headers=auditor)
    events = (await r.json())["events"]
    assert [e["type"] for e in events] == ["user.deactivated", "user.deleted"]
    cut = events[1]["recordedAt"]
    r = await client.get("/audit/v1/events", params={"until": cut}, headers=auditor)
    assert [e["type"] for e in (await r.json())["events"]] == ["user.created", "user.created", "user.deactivated"]
    r = await client.get("/audit/v1/events", params={"since": cut}, headers=auditor)
    assert [e["type"] for e in (await r.json())["events"]] == ["user.deleted"]


async def test_exports_stream_the_same_events_as_csv_and_json_lines(client: TestClient, pool: asyncpg.Pool) -> None:
    acme = await make_tenant(pool, "acme")
    _, auditor = await token_headers(pool, acme.id, "compliance", "audit")
    await _users(client, acme.headers, 5)
    await caught_up(pool, "audit")
    r = await client.get("/audit/v1/events", params={"limit": "1000"}, headers=auditor)
    events = (await r.json())["events"]

    r = await client.get("/audit/v1/events/export", params={"format": "jsonl"}, headers=auditor)
    assert r.status == 200 and r.headers["Transfer-Encoding"] == "chunked"
    assert r.headers["Content-Type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in (await r.text()).splitlines()] == events

    r = await client.get("/audit/v1/events/export", params={"format": "csv", "type": "user.created"},
                         headers=auditor)
    assert r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await r.text())))
    assert [int(row["position"]) for row in rows] == [e["position"] for e in events]
    assert rows[0]["targetName"] == "u0@example.com" and rows[0]["actorLabel"] == "okta"
    assert json.loads(rows[0]["data"]) == events[0]["data"]


async def test_bad_parameters_get_400_with_a_scim_error_body(client: TestClient, pool: asyncpg.Pool) -> None:
    acme = await make_tenant(pool, "acme")
    _, auditor = await token_headers(pool, acme.id, "compliance", "audit")
    uid = (await _users(client, acme.headers, 1))[0]
    cases = [
        ("/audit/v1/events", {"type": "user.exploded"}),
        ("/audit/v1/events", {"since": "last tuesday"}),
        ("/audit/v1/events", {"since": "2024-03-02", "until": "2024-03-01"}),
        ("/audit/v1/events", {"limit": "0"}),
        ("/audit/v1/events", {"limit": "1001"}),
        ("/audit/v1/events", {"cursor": "not-a-cursor"}),
        ("/audit/v1/events", {"targt": "alice"}),
        ("/audit/v1/events", {"target": " "}),
        ("/audit/v1/events/export", {"format": "xml"}),
        ("/audit/v1/events/export", {"limit": "10"}),
        (f"/audit/v1/users/{uid}", {"asOf": "yesterday"}),
        (f"/audit/v1/users/{uid}/history", {"limit": "-1"}),
    ]
    for path, params in cases:
        r = await client.get(path, params=params, headers=auditor)
        body = await r.json(content_type=None)
        assert r.status == 400, (path, params)
        assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "400" and body["scimType"] == "invalidValue"
    r = await client.get("/audit/v1/events?type=user.created&type=user.deleted", headers=auditor)
    assert r.status == 400


def test_cursor_round_trip_is_opaque_and_checked() -> None:
    assert decode_cursor(encode_cursor(12345)) == 12345
    assert "12345" not in encode_cursor(12345)


async def test_scim_tokens_cannot_read_the_audit_trail(client: TestClient, pool: asyncpg.Pool) -> None:
    acme = await make_tenant(pool, "acme")
    r = await client.get("/audit/v1/events", headers=acme.headers)
    assert r.status == 403 and (await r.json(content_type=None))["schemas"] == [ERROR_SCHEMA]
    r = await client.get("/audit/v1/events")
    assert r.status == 401


async def test_an_auditor_of_one_tenant_sees_nothing_of_another(client: TestClient, pool: asyncpg.Pool) -> None:
    """Tenant B's audit token: no events of A, 404 for A's ids (as for ids that never existed)."""
    a = await make_tenant(pool, "tenant-a")
    b = await make_tenant(pool, "tenant-b")
    _, auditor_a = await token_headers(pool, a.id, "compliance", "audit")
    _, auditor_b = await token_headers(pool, b.id, "compliance", "audit")
    [user] = await _users(client, a.headers, 1, prefix="alice")
    r = await client.post("/scim/v2/Groups", json={"schemas": [CORE_GROUP], "displayName": "A team",
                                                   "members": [{"value": user}]}, headers=a.headers)
    group = (await r.json(content_type=None))["id"]
    await client.patch(f"/scim/v2/Users/{user}", json=deactivate_okta(), headers=a.headers)
    await caught_up(pool, "audit", "seal")

    r = await client.get("/audit/v1/events", headers=auditor_a)  # control: A sees its own
    assert len((await r.json())["events"]) == 4  # created, group created + members added, deactivated
    for params in ({}, {"target": user}, {"target": "alice0@example.com"}, {"target": group},
                   {"actor": "okta"}, {"actor": str(a.token_id)}):
        r = await client.get("/audit/v1/events", params=params, headers=auditor_b)
        assert (await r.json())["events"] == [], params
        r = await client.get("/audit/v1/events/export", params=params, headers=auditor_b)
        assert await r.text() == "", params
    for path in (f"/audit/v1/users/{user}", f"/audit/v1/users/{user}/history",
                 f"/audit/v1/groups/{group}", f"/audit/v1/groups/{group}/history"):
        r = await client.get(path, headers=auditor_b)
        assert r.status == 404, path
        assert (await r.json(content_type=None))["schemas"] == [ERROR_SCHEMA]
        r = await client.get(path, headers=auditor_a)
        assert r.status == 200, path
    r = await client.get("/audit/v1/verify", headers=auditor_b)
    assert (await r.json())["sealed"] == 0
    r = await client.get("/audit/v1/verify", headers=auditor_a)
    assert (await r.json())["sealed"] == 4


async def test_writes_wake_the_followers_through_the_commit_notifier(client: TestClient, pool: asyncpg.Pool) -> None:
    """A successful SCIM write pokes the debounced NOTIFY (service/followers.py); the audit row
    is there well under a second later (issue 6: lag well under a second at rest)."""
    from service.http.followers import COMMIT_NOTIFIER

    acme = await make_tenant(pool, "acme")
    await caught_up(pool, "audit")
    notifier = client.app[COMMIT_NOTIFIER]
    sent = notifier.sent
    await _users(client, acme.headers, 1)
    waited = await caught_up(pool, "audit")
    assert notifier.sent > sent
    assert waited < 1.0
