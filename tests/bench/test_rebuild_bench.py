"""Rebuild speed (docs/benchmarks.md, "Rebuild"): `projections rebuild` of the inline views over
a large log seeded in bulk, on this machine. Goal: 100,000 events/s or more, with the users'
payloads sealed as the service writes them (docs/privacy.md): the log is seeded in clear, timed
through one rebuild, then converted by `log seal` (timed too) and rebuilt again.

Run by `make bench` (SCIMLEDGER_BENCH_EVENTS sets the size; default about 1,000,000 events).
"""

from __future__ import annotations

import os
import secrets
import time

import asyncpg
import pytest

from eventstore import shredding
from projections.domain.actor import Actor
from projections.rebuild import INLINE_VIEWS, rebuild_inline, verify_inline
from service.app import log_sealing, tenancy
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

    async def timed_rebuild(label: str) -> tuple[object, dict[str, int]]:
        started = time.perf_counter()
        result = await rebuild_inline(pool, INLINE_VIEWS)
        total = time.perf_counter() - started
        async with pool.acquire() as conn:
            counts = {v: await conn.fetchval(f"SELECT count(*) FROM {v}") for v in INLINE_VIEWS}
        print(f"rebuild ({label}): {result.events:,} events; fold+COPY {result.seconds:.2f}s "
              f"({result.events_per_s:,.0f} events/s); end to end with indexes and swap {total:.2f}s "
              f"({result.events / total:,.0f} events/s); rows {counts}")
        return result, counts

    await timed_rebuild("payloads in clear")
    shredding.configure(shredding.MasterKey(secrets.token_bytes(shredding.KEY_BYTES)))
    async with pool.acquire() as conn:
        started = time.perf_counter()
        sealed = await log_sealing.seal_log(conn, Actor(kind="cli", label="bench"))
        assert sealed is not None and not sealed.breaks
        print(f"log seal: {sealed.events:,} payloads of {sealed.subjects:,} subjects sealed, the log "
              f"rewritten and its chain sealed again in {time.perf_counter() - started:.1f}s")
        await conn.execute("VACUUM ANALYZE events")
    result, counts = await timed_rebuild("users' payloads sealed")

    started = time.perf_counter()
    differences = await verify_inline(pool, INLINE_VIEWS)
    print(f"verify: {time.perf_counter() - started:.2f}s, {len(differences)} differences")
    assert differences == []
    assert result.events == events  # log.sealed is on the tenants' log streams, no view's
    assert counts["users"] == users * tenants
    assert counts["groups"] == groups * tenants
