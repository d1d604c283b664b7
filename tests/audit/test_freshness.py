"""The auditor always knows how fresh an answer is (issue 12, item 2; service/app/freshness.py,
docs/audit.md "Freshness"): every /audit/v1 answer says up to which position of the log it is
complete, and a follower that is down or far behind gives a 503 with Retry-After, never a silent,
incomplete 200. Also item 10: a lag question costs a bounded count, however far behind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from eventstore.stats import LAG_CAP, PENDING_SQL
from projections.followers import runner as follower
from projections.followers.audit import AuditProjection
from service.http.app import create_app
from service.runtime.config import Settings
from tests.conftest import Tenant, make_tenant
from tests.support import ERROR_SCHEMA, caught_up, metric, new_user, token_headers


async def _auditor(pool: asyncpg.Pool, tenant: Tenant) -> dict[str, str]:
    _, headers = await token_headers(pool, tenant.id, "compliance", "audit")
    return headers


async def test_every_audit_answer_says_up_to_which_position_it_is_complete(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """Events, histories, exports, states as of a moment and the seal's verification each carry
    Audit-Complete-Through (and, in a JSON body that is not a SCIM resource, completeThrough and
    complete); the position covers the newest event, and grows with the log (positions are
    global, so another tenant's writes move it too)."""
    auditor = await _auditor(pool, tenant)
    r = await client.post("/scim/v2/Users", json=new_user("ada@example.com"), headers=tenant.headers)
    user_id = (await r.json(content_type=None))["id"]
    r = await client.post("/scim/v2/Groups", json={"displayName": "admins"}, headers=tenant.headers)
    group_id = (await r.json(content_type=None))["id"]
    await caught_up(pool, "audit", "seal")

    r = await client.get("/audit/v1/events", headers=auditor)
    body = await r.json()
    newest = body["events"][-1]["position"]
    assert body["complete"] is True and "incompleteReason" not in body
    assert body["completeThrough"] == newest  # at rest: the last position handed out
    assert r.headers["Audit-Complete-Through"] == str(body["completeThrough"]) and r.headers["Audit-Complete"] == "true"

    for path in (f"/audit/v1/users/{user_id}/history", f"/audit/v1/groups/{group_id}/history", "/audit/v1/verify"):
        r = await client.get(path, headers=auditor)
        body = await r.json()
        assert r.status == 200 and body["complete"] is True and body["completeThrough"] >= newest, (path, body)
        assert r.headers["Audit-Complete-Through"] == str(body["completeThrough"])
    r = await client.get("/audit/v1/events/export", params={"format": "csv"}, headers=auditor)
    assert r.status == 200 and int(r.headers["Audit-Complete-Through"]) >= newest
    assert r.headers["Audit-Complete"] == "true"
    for path in (f"/audit/v1/users/{user_id}", f"/audit/v1/groups/{group_id}"):
        r = await client.get(path, headers=auditor)
        assert r.status == 200 and int(r.headers["Audit-Complete-Through"]) >= newest
        assert "completeThrough" not in await r.json()  # a SCIM resource stays one

    other = await make_tenant(pool, "other")
    await client.post("/scim/v2/Users", json=new_user("zed@example.com"), headers=other.headers)
    await caught_up(pool, "audit")
    later = await (await client.get("/audit/v1/events", headers=auditor)).json()
    assert later["completeThrough"] == newest + 1  # beyond this tenant's last event


async def _refused(client: TestClient, path: str, headers: dict[str, str], retry_after: str) -> str:
    r = await client.get(path, headers=headers)
    assert r.status == 503, (path, r.status, await r.text())
    assert r.headers["Retry-After"] == retry_after and r.headers["Audit-Complete"] == "false"
    body = await r.json(content_type=None)
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "503"
    return str(body["detail"])


AUDIT_VIEW_PATHS = ("/audit/v1/events", "/audit/v1/events/export?format=jsonl")


async def test_a_stopped_or_failed_follower_gives_503_with_retry_after_never_a_silent_200(
    client: TestClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """Item 1 saw `200 {"events": []}` from a failed follower. Now every read of the audit view
    (search, export, history) is refused with 503 and Retry-After while the follower is stopped
    or failed, before an export starts its stream; the seal's verification still answers (a
    stopped seal must not hide a break) and says it is incomplete."""
    auditor = await _auditor(pool, tenant)
    r = await client.post("/scim/v2/Users", json=new_user("ada@example.com"), headers=tenant.headers)
    user_id = (await r.json(content_type=None))["id"]
    await caught_up(pool, "audit", "seal")
    paths = (*AUDIT_VIEW_PATHS, f"/audit/v1/users/{user_id}/history")
    async with pool.acquire() as conn:
        await follower.set_state(conn, "audit", follower.STOPPED)
        for path in paths:
            assert "stopped" in await _refused(client, path, auditor, "10")
        await conn.execute(
            "UPDATE projection_checkpoints SET state = 'failed', error = 'secret detail of another tenant' WHERE name = 'audit'"
        )
        for path in paths:
            detail = await _refused(client, path, auditor, "60")
            assert "stopped on an error" in detail and "secret" not in detail
        r = await client.get(f"/audit/v1/users/{user_id}", headers=auditor)
        assert r.status == 200  # folded from the log itself, not from the audit view

        await follower.set_state(conn, "seal", follower.STOPPED)
        r = await client.get("/audit/v1/verify", headers=auditor)
        body = await r.json()
        assert r.status == 200 and body["ok"] is True and body["complete"] is False
        assert "stopped" in body["incompleteReason"] and r.headers["Audit-Complete"] == "false"

        await follower.set_state(conn, "audit", follower.RUNNING)
        await follower.set_state(conn, "seal", follower.RUNNING)
    for path in paths:
        assert (await client.get(path, headers=auditor)).status == 200


def _rows_read(node: dict[str, Any]) -> int:
    """The most rows any scan of `events` in a plan returned."""
    own = node["Actual Rows"] if node.get("Relation Name") == "events" else 0
    return max([own, *(_rows_read(child) for child in node.get("Plans", []))])


@pytest.fixture
async def quiet_client(dsn: str, aiohttp_client) -> AsyncIterator[TestClient]:
    """The app without follower runners: nothing applies the log unless the test does."""
    settings = Settings(log_json=True, default_rate_limit=1_000_000.0, run_followers=False)
    yield await aiohttp_client(create_app(settings, dsn))


async def test_a_follower_far_behind_gives_503_and_a_small_lag_an_exact_position(
    quiet_client: TestClient, pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """With no runner applying the log: a fresh pending event is a normal lag, so the answer is
    given, complete through just before that event (never past it); once the oldest pending
    event is older than MAX_LAG_SECONDS, or more events wait than are counted, the answer is
    refused (503, Retry-After 5). A catch-up brings it back."""
    auditor = await _auditor(pool, tenant)
    async with pool.acquire() as conn:
        await follower.catch_up(conn, AuditProjection())
        r = await quiet_client.post("/scim/v2/Users", json=new_user("ada@example.com"), headers=tenant.headers)
        assert r.status == 201
        pending = await conn.fetchval("SELECT max(global_position) FROM events")
        body = await (await quiet_client.get("/audit/v1/events", headers=auditor)).json()
        assert body["events"] == [] and body["complete"] is True and body["completeThrough"] == pending - 1

        await conn.execute(
            """INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata, recorded_at)
               VALUES ($1, 'user', $2, 1, 'user.created', '{"type": "user.created", "resource": {"userName": "old"}}',
                       '{}', now() - interval '1 minute')""",
            tenant.id, uuid.uuid4(),
        )
        assert "behind the log" in await _refused(quiet_client, "/audit/v1/events", auditor, "5")
        assert await follower.catch_up(conn, AuditProjection()) == follower.RUNNING
        body = await (await quiet_client.get("/audit/v1/events", headers=auditor)).json()
        assert len(body["events"]) == 2 and body["complete"] is True

        # more waiting events than a lag question counts: refused, and counted only up to the cap
        await conn.execute(
            """INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
               SELECT $1, 'user', gen_random_uuid(), 1, 'user.created',
                      '{"type": "user.created", "resource": {"userName": "bulk"}}', '{}'
               FROM generate_series(1, $2)""",
            tenant.id, LAG_CAP + 50,
        )
        for path in AUDIT_VIEW_PATHS:
            assert f"{LAG_CAP}+ events" in await _refused(quiet_client, path, auditor, "5")
        assert (await follower.lag(conn, "audit")).events == LAG_CAP
        # and the question read at most LAG_CAP + 1 index entries, not the 10,050 waiting (with
        # statistics, as autovacuum keeps them; without, a table this small is scanned whole)
        await conn.execute("ANALYZE events")
        checkpoint = await follower.load_checkpoint(conn, "audit")
        assert checkpoint is not None
        [plan] = await conn.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {PENDING_SQL}",
            str(checkpoint.checkpoint[0]), checkpoint.checkpoint[1], LAG_CAP + 1, tenant.id,
        )
        assert _rows_read(plan["Plan"]) <= LAG_CAP + 1
    text = await (await quiet_client.get("/metrics")).text()
    assert metric(text, "scimledger_projection_lag_events", projection="audit") == LAG_CAP
