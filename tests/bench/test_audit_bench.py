"""Audit speed (docs/benchmarks.md, "Audit"): a million events in one tenant, then "who
deactivated X", a user's history and an as-of read over real HTTP; the audit and seal followers'
catch-up rate; verify and a full export; the follower lag at rest.

Issue 6 "Speed": who-deactivated and history under 50 ms with a million events in the tenant.
Run by `make bench` (SCIMLEDGER_BENCH_AUDIT_USERS sets the size; 10 events per user, default
100,000 users = 1,000,000 events).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import resource
import statistics
import time
import uuid

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from projections.followers import runner as follower
from projections.followers import seal
from projections.followers.audit import AuditProjection
from projections.followers.seal import SealProjection
from service.runtime.config import Settings
from tests.conftest import make_tenant
from tests.support import caught_up, new_user

pytestmark = pytest.mark.bench

EVENTS_PER_USER = 10  # created, 8 updates, deactivated

# A user's 10 events are spread over the whole log (ordered by version, then user), the worst
# case for reading one user's story; actors alternate between an "okta" and an "entra" token;
# recorded_at is spread one event per 10 ms back from now.
SEED = """
INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata, recorded_at)
SELECT $1, 'user', md5('bench-user-' || i)::uuid, v,
       CASE v WHEN 1 THEN 'user.created' WHEN 10 THEN 'user.deactivated' ELSE 'user.updated' END,
       CASE v
         WHEN 1 THEN jsonb_build_object('type', 'user.created', 'resource', jsonb_build_object(
              'userName', format('user%s@bench.example', i), 'displayName', format('User %s', i),
              'active', true, 'externalId', format('ext-%s', i)))
         WHEN 10 THEN jsonb_build_object('type', 'user.deactivated', 'user_name', format('user%s@bench.example', i))
         ELSE jsonb_build_object('type', 'user.updated', 'set', jsonb_build_object(
              'displayName', format('User %s (v%s)', i, v)))
       END,
       jsonb_build_object('actor', jsonb_build_object(
           'kind', 'token', 'tokenId', CASE WHEN i % 2 = 0 THEN $3 ELSE $4 END,
           'label', CASE WHEN i % 2 = 0 THEN 'okta' ELSE 'entra' END, 'scope', 'scim',
           'client', CASE WHEN i % 2 = 0 THEN 'Okta SCIM Client 1.0.0' ELSE 'Azure-AD-Provisioning' END,
           'ip', '10.0.0.' || (i % 250), 'requestId', md5(i || '-' || v))),
       now() - ($2::int * 10 - ((v - 1) * $2::int + i)) * interval '10 milliseconds'
FROM generate_series(1, 10) v, generate_series(1, $2::int) i
ORDER BY v, i
"""


def user_id(i: int) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(f"bench-user-{i}".encode()).hexdigest())


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(len(ms) * 0.99) - 1)]
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms (n={len(ms)})"


@pytest.fixture
def settings() -> Settings:
    # the million-event test runs the followers itself, to time them
    return Settings(log_json=True, default_rate_limit=1_000_000.0, run_followers=False)


async def _timed(client: TestClient, headers: dict[str, str], paths: list[tuple[str, dict[str, str]]]) -> list[float]:
    samples = []
    for path, params in paths:
        started = time.perf_counter()
        r = await client.get(path, params=params, headers=headers)
        body = await r.read()
        samples.append(time.perf_counter() - started)
        assert r.status == 200, body[:300]
    return samples


async def test_audit_queries_over_a_million_events(client: TestClient, pool: asyncpg.Pool) -> None:
    users = int(os.environ.get("SCIMLEDGER_BENCH_AUDIT_USERS", "100000"))
    tenant = await make_tenant(pool, "bench", label="okta", scope="audit")
    auditor = tenant.headers
    async with pool.acquire() as conn:
        started = time.perf_counter()
        await conn.execute(SEED, tenant.id, users, str(uuid.uuid4()), str(uuid.uuid4()))
        await conn.execute("VACUUM ANALYZE events")
        total = users * EVENTS_PER_USER
        print(f"\nseeded {total:,} events in one tenant in {time.perf_counter() - started:.1f}s")
        for projection in (AuditProjection(), SealProjection()):
            started = time.perf_counter()
            assert await follower.catch_up(conn, projection, batch_size=5000) == follower.RUNNING
            took = time.perf_counter() - started
            print(f"{projection.name} follower catch-up: {total:,} events in {took:.1f}s "
                  f"({total / took:,.0f} events/s)")
        for table in ("audit_events", "audit_targets", "audit_target_names", "audit_seals"):
            await conn.execute(f"VACUUM ANALYZE {table}")
        assert await conn.fetchval("SELECT count(*) FROM audit_events WHERE tenant_id = $1", tenant.id) == total

    rng = random.Random(42)
    picks = [rng.randint(1, users) for _ in range(300)]
    await _timed(client, auditor, [("/audit/v1/events", {"type": "user.deactivated", "target": "user1@bench.example"})] * 20)  # warm-up

    who = await _timed(client, auditor, [
        ("/audit/v1/events", {"type": "user.deactivated", "target": f"user{i}@bench.example"}) for i in picks])
    print(f'"who deactivated X" by userName (GET /audit/v1/events?type=user.deactivated&target=<userName>): {percentiles(who)}')
    who_id = await _timed(client, auditor, [
        ("/audit/v1/events", {"type": "user.deactivated", "target": str(user_id(i))}) for i in picks])
    print(f'"who deactivated X" by id: {percentiles(who_id)}')
    history = await _timed(client, auditor, [(f"/audit/v1/users/{user_id(i)}/history", {}) for i in picks])
    print(f"user history, 10 events (GET /audit/v1/users/<id>/history): {percentiles(history)}")
    as_of = await _timed(client, auditor, [(f"/audit/v1/users/{user_id(i)}", {}) for i in picks])
    print(f"state as of now, folded from the stream (GET /audit/v1/users/<id>): {percentiles(as_of)}")
    by_actor = await _timed(client, auditor, [("/audit/v1/events", {"actor": "entra", "limit": "100"})] * 100)
    print(f"first page of 100 by actor label (GET /audit/v1/events?actor=entra): {percentiles(by_actor)}")

    async with pool.acquire() as conn:
        started = time.perf_counter()
        report = await seal.verify(conn, tenant.id)
        took = time.perf_counter() - started
    assert report.ok and report.sealed == total
    print(f"verify (recompute the chain): {total:,} events in {took:.1f}s ({total / took:,.0f} events/s)")

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    lines = 0
    r = await client.get("/audit/v1/events/export", params={"format": "jsonl"}, headers=auditor)
    async for _line in r.content:
        lines += 1
    took = time.perf_counter() - started
    rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert lines == total
    print(f"export JSONL: {total:,} events in {took:.1f}s ({total / took:,.0f} events/s), "
          f"peak RSS growth of the test process (server + client) {rss_growth:.0f} MiB")

    for samples in (who, who_id, history):
        assert statistics.median(samples) < 0.050


async def test_follower_lag_at_rest(pool: asyncpg.Pool, dsn: str, aiohttp_client) -> None:
    """From a write's response to its audit row, one write at a time on an idle service."""
    from service.http.app import create_app

    client = await aiohttp_client(create_app(Settings(log_json=True, default_rate_limit=1_000_000.0), dsn))
    tenant = await make_tenant(pool, "rest")
    await caught_up(pool, "audit")
    samples = []
    async with pool.acquire() as conn:
        for i in range(100):
            r = await client.post("/scim/v2/Users", json=new_user(f"u{i}@example.com"), headers=tenant.headers)
            assert r.status == 201
            uid = uuid.UUID((await r.json(content_type=None))["id"])
            started = time.perf_counter()
            while True:
                if await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM audit_events WHERE tenant_id = $1 AND stream_id = $2)",
                    tenant.id, uid,
                ):
                    break
                await asyncio.sleep(0.001)
            samples.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)  # at rest between writes
    print(f"\naudit follower lag at rest (write response -> audit row visible): {percentiles(samples)}")
    assert statistics.median(samples) < 1.0
