"""What the rate limit costs per request (figures in docs/tenancy.md).

    .venv/bin/pytest -q -p no:cacheprovider -m bench -s tests/tenancy/test_bench_ratelimit.py

Measures, on the test PostgreSQL: a bare `SELECT 1` round trip (the floor), one `rate_lease`
call, and the mean cost of `RateLimiter.admit` per request for lease sizes 1, 5 and 16.
"""

from __future__ import annotations

import statistics
import time
import uuid

import asyncpg
import pytest

from service.app.ratelimit import Limit, RateLimiter

N = 3000


async def _per_call_us(fn, n: int = N) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.mean(samples), statistics.median(samples)


@pytest.mark.bench
async def test_rate_limit_overhead_per_request(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant_id = uuid.uuid4()

        async def select_one() -> None:
            await conn.fetchval("SELECT 1")

        async def lease() -> None:
            await conn.fetchrow("SELECT granted, wait_s FROM rate_lease($1, 1e9, 1e9, 1)", tenant_id)

        print(f"\nSELECT 1 round trip:      mean {(await _per_call_us(select_one))[0]:7.1f} us")
        print(f"rate_lease round trip:    mean {(await _per_call_us(lease))[0]:7.1f} us")

    for rate in (10.0, 50.0, 1000.0):
        limit = Limit(rate=rate, burst=1e9)  # a bucket that never runs dry: the cost alone
        limiter = RateLimiter()
        tenant_id = uuid.uuid4()

        async def admit(limiter: RateLimiter = limiter, tenant_id: uuid.UUID = tenant_id,
                        limit: Limit = limit) -> None:
            assert await limiter.admit(conn, tenant_id, limit) is None

        mean, median = await _per_call_us(admit)
        print(f"admit, lease {limit.lease_size:2d} tokens:   mean {mean:7.1f} us, median {median:5.1f} us, "
              f"{limiter.leases} round trips for {N} requests")
