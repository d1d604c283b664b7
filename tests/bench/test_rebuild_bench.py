"""Rebuild speed (docs/benchmarks.md, "Rebuild"): `projections rebuild` of the inline views over
a large log seeded in bulk, on this machine. Goal: 100,000 events/s or more.

Run by `make bench` (SCIMLEDGER_BENCH_EVENTS sets the size; default about 1,000,000 events).
"""

from __future__ import annotations

import os
import time

import asyncpg
import pytest

from projections.rebuild import INLINE_VIEWS, rebuild_inline, verify_inline
from service.app import tenancy
from tests.ops.bulk_log import seed_log

pytestmark = pytest.mark.bench


async def test_rebuild_inline_views_speed(pool: asyncpg.Pool) -> None:
    target = int(os.environ.get("SCIMLEDGER_BENCH_EVENTS", "1000000"))
    tenants = 4
    # per tenant: users * 3.5 events + groups * (1 + changes) events; 70% users, 30% groups
    users = int(target * 0.7 / tenants / 3.5)
    groups = max(1, int(target * 0.3 / tenants / 76))
    async with pool.acquire() as conn:
        ids = [await tenancy.create_tenant(conn, f"bench{i}") for i in range(tenants)]
        started = time.perf_counter()
        events = await seed_log(conn, ids, users=users, groups=groups, member_changes=75)
        await conn.execute("VACUUM ANALYZE events")
        seeded = time.perf_counter() - started
    print(f"\nseeded {events:,} events in {seeded:.1f}s")

    started = time.perf_counter()
    result = await rebuild_inline(pool, INLINE_VIEWS)
    total = time.perf_counter() - started
    async with pool.acquire() as conn:
        counts = {v: await conn.fetchval(f"SELECT count(*) FROM {v}") for v in INLINE_VIEWS}
    print(f"rebuild: {result.events:,} events; fold+COPY {result.seconds:.2f}s "
          f"({result.events_per_s:,.0f} events/s); end to end with indexes and swap {total:.2f}s "
          f"({result.events / total:,.0f} events/s); rows {counts}")

    started = time.perf_counter()
    differences = await verify_inline(pool, INLINE_VIEWS)
    print(f"verify: {time.perf_counter() - started:.2f}s, {len(differences)} differences")
    assert differences == []
    assert result.events == events
    assert counts["users"] == users * tenants
    assert counts["groups"] == groups * tenants
