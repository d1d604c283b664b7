"""Per-tenant rate limits (docs/tenancy.md; RFC 6585 section 4 for 429, RFC 9110 section 10.2.3
for Retry-After; RFC 7644 section 3.12 for the error body).

A tenant over its limit gets 429 with an integer Retry-After and a SCIM error body, before any
handler runs, so nothing changes; the limit holds for the tenant across workers (shared bucket in
PostgreSQL); other tenants are unaffected; a throttled request spends no token.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from service.app import ratelimit, tenancy
from service.app.ratelimit import Limit, LocalBucket, RateLimiter, retry_after
from service.http.app import create_app
from service.runtime.config import Settings
from tests.conftest import Tenant, make_tenant
from tests.support import CORE_USER, ERROR_SCHEMA

SPC = "/scim/v2/ServiceProviderConfig"


async def limited_tenant(pool: asyncpg.Pool, name: str, rate: float) -> Tenant:
    tenant = await make_tenant(pool, name)
    async with pool.acquire() as conn:
        await tenancy.update_tenant(conn, tenant.id, rate_limit=rate)
    return tenant


async def count_events(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM events"))


# --- the pure parts ---------------------------------------------------------------------------

def test_burst_is_two_seconds_of_rate_and_lease_is_a_tenth_of_a_second_capped() -> None:
    assert Limit.of(50).burst == 100 and Limit.of(50).lease_size == 5
    assert Limit.of(0.2).burst == 1 and Limit.of(0.2).lease_size == 1
    assert Limit.of(10_000).lease_size == ratelimit.LEASE_MAX


@pytest.mark.parametrize(("wait", "header"), [(0.0, 1), (0.01, 1), (1.0, 1), (1.2, 2), (59.5, 60)])
def test_retry_after_is_whole_seconds_at_least_one(wait: float, header: int) -> None:
    assert retry_after(wait) == header


def test_leased_tokens_die_after_their_ttl() -> None:
    bucket = LocalBucket()
    bucket.add(3, now=100.0)
    assert bucket.take(100.1) and bucket.take(100.2)
    assert not bucket.take(100.0 + ratelimit.LEASE_TTL + 0.01)
    assert bucket.tokens == 0


# --- over HTTP --------------------------------------------------------------------------------

async def test_over_the_limit_gives_429_with_retry_after_and_scim_body(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    """rate 1/s, burst 2: the third request at once is throttled."""
    tenant = await limited_tenant(pool, "slow", 1.0)
    assert (await client.get(SPC, headers=tenant.headers)).status == 200
    assert (await client.get(SPC, headers=tenant.headers)).status == 200
    resp = await client.get(SPC, headers=tenant.headers)
    assert resp.status == 429
    assert resp.content_type == "application/scim+json"
    assert resp.headers["Retry-After"].isdigit() and int(resp.headers["Retry-After"]) >= 1
    body = await resp.json(content_type=None)
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "429" and "rate limit" in body["detail"]


async def test_a_throttled_write_changes_nothing_and_is_logged_as_429(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    tenant = await limited_tenant(pool, "slow", 0.5)  # burst 1
    assert (await client.get(SPC, headers=tenant.headers)).status == 200
    before = await count_events(pool)
    with capture_logs() as logs:
        resp = await client.post("/scim/v2/Users", headers=tenant.headers,
                                 json={"schemas": [CORE_USER], "userName": "x@example.com"})
    assert resp.status == 429
    assert await count_events(pool) == before
    lines = [e for e in logs if e["event"] == "request"]
    assert lines and lines[-1]["status"] == 429 and lines[-1]["tenant"] == str(tenant.id)
    assert not [e for e in logs if e.get("log_level") in ("error", "exception") or "exc_info" in e]


async def test_throttled_requests_spend_no_tokens(client: TestClient, pool: asyncpg.Pool) -> None:
    """A client that keeps retrying while throttled is admitted as soon as the bucket refills."""
    tenant = await limited_tenant(pool, "retrier", 4.0)  # burst 8, a token every 0.25 s
    statuses = [(await client.get(SPC, headers=tenant.headers)).status for _ in range(8)]
    assert statuses == [200] * 8
    throttled = [(await client.get(SPC, headers=tenant.headers)).status for _ in range(30)]
    assert set(throttled) == {429}
    await asyncio.sleep(1.1)  # >= 4 tokens refilled, whatever the 30 throttled requests did
    assert (await client.get(SPC, headers=tenant.headers)).status == 200


async def test_one_tenant_throttled_leaves_others_alone(client: TestClient, pool: asyncpg.Pool) -> None:
    noisy = await limited_tenant(pool, "noisy", 0.5)
    quiet = await make_tenant(pool, "quiet")
    await client.get(SPC, headers=noisy.headers)
    assert (await client.get(SPC, headers=noisy.headers)).status == 429
    assert (await client.get(SPC, headers=quiet.headers)).status == 200


async def test_default_rate_applies_to_tenants_without_their_own(
    dsn: str, pool: asyncpg.Pool, aiohttp_client
) -> None:
    client = await aiohttp_client(create_app(Settings(log_json=True, default_rate_limit=0.5), dsn))
    tenant = await make_tenant(pool, "defaulted")
    assert (await client.get(SPC, headers=tenant.headers)).status == 200
    assert (await client.get(SPC, headers=tenant.headers)).status == 429
    async with pool.acquire() as conn:  # `tenant update --rate-limit` takes effect at once
        await tenancy.update_tenant(conn, tenant.id, rate_limit=1000.0)
    await asyncio.sleep(0.05)  # the shared bucket refills at the new rate
    assert (await client.get(SPC, headers=tenant.headers)).status == 200


async def test_the_limit_holds_for_the_tenant_across_workers(
    dsn: str, pool: asyncpg.Pool, aiohttp_client
) -> None:
    """Two apps = two workers, each with its own local leases, one shared bucket: together they
    admit no more than burst + rate * elapsed + one lease each."""
    settings = Settings(log_json=True, default_rate_limit=1_000_000.0)
    workers: list[TestClient] = [await aiohttp_client(create_app(settings, dsn)) for _ in range(2)]
    rate = 5.0
    tenant = await limited_tenant(pool, "shared", rate)
    limit = Limit.of(rate)
    started = time.monotonic()
    statuses = []
    for i in range(60):
        statuses.append((await workers[i % 2].get(SPC, headers=tenant.headers)).status)
    elapsed = time.monotonic() - started
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}
    assert admitted <= limit.burst + rate * elapsed + 2 * limit.lease_size, (admitted, elapsed)
    assert admitted >= limit.burst  # and the burst is really available


async def test_leases_make_one_round_trip_per_batch(pool: asyncpg.Pool) -> None:
    """At 1000 req/s a lease is 16 tokens: 160 admissions cost 10 round trips."""
    limiter = RateLimiter()
    tenant_id = uuid.uuid4()
    limit = Limit.of(1000.0)
    async with pool.acquire() as conn:
        results = [await limiter.admit(conn, tenant_id, limit) for _ in range(160)]
    assert results == [None] * 160
    assert limiter.leases == 160 // limit.lease_size


async def test_shared_bucket_never_grants_more_than_its_burst(pool: asyncpg.Pool) -> None:
    """rate_lease under concurrency: 20 callers at once, burst 10, near-zero refill."""
    tenant_id = uuid.uuid4()

    async def lease() -> int:
        async with pool.acquire() as conn:
            return int(await conn.fetchval("SELECT granted FROM rate_lease($1, 0.001, 10, 3)", tenant_id))

    granted = await asyncio.gather(*(lease() for _ in range(20)))
    assert sum(granted) == 10


async def test_rate_limit_runs_after_authentication(client: TestClient, pool: asyncpg.Pool) -> None:
    """An unauthenticated caller gets 401, never a 429 on somebody's bucket."""
    await limited_tenant(pool, "slow", 0.5)
    for _ in range(3):
        assert (await client.get(SPC, headers={"Authorization": "Bearer nope"})).status == 401


def test_limiters_are_per_application() -> None:
    a, b = web.Application(), web.Application()
    assert ratelimit.limiter_for(a) is ratelimit.limiter_for(a)
    assert ratelimit.limiter_for(a) is not ratelimit.limiter_for(b)
