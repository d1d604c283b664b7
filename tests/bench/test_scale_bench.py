"""`make bench`: the scale figures of issues 3, 4 and 8, on our server alone.

One tenant grows to 10k, 100k and (BENCH_SCALE_MAX, default 1,000,000) users, seeded in bulk by
SQL that mirrors the write path (tests/bench/seeding.py). At each size: lookup by `userName eq`
and create, one request at a time (latency, not throughput), and pages of an import walk at
several startIndex positions. At 100k: a full import walk (pages of 100), and the large-group
figures: adding one member to a group of 100,000 vs a group of 10, a PATCH adding 1,000 members
(one transaction: one event), and a full GET of the 100k group with the server's RSS during it.

`serve` runs with one worker and SCIMLEDGER_RUN_FOLLOWERS=false: the seeded backlog of events
would otherwise keep the audit and seal followers busy during the measurements (their catch-up
is not what these figures are about).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import psutil
import pytest

from service.runtime.database import create_pool
from tests.bench.phases import okta_user
from tests.bench.seeding import seed_members, seed_users
from tests.bench.servers import Server, bench_tenant, embedded_database, ours
from tests.support import CORE_GROUP, patch

pytestmark = pytest.mark.bench

SCALE_MAX = int(os.environ.get("BENCH_SCALE_MAX", "1000000"))
SAMPLES = 500


async def timed(make: Callable[[int], Awaitable[Any]], n: int) -> list[float]:
    """Milliseconds of each of n sequential calls."""
    out = []
    for i in range(n):
        started = time.perf_counter()
        await make(i)
        out.append((time.perf_counter() - started) * 1000)
    return out


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]
    return f"p50 {statistics.median(values):.2f} ms, p99 {p99:.2f} ms (n={len(values)})"


async def expect(resp: aiohttp.ClientResponse, *status: int) -> bytes:
    body = await resp.read()
    assert resp.status in status, f"{resp.method} {resp.url} -> {resp.status} {body[:300]!r}"
    return body


async def test_scale_users_and_large_groups() -> None:
    """RFC 7644 3.4.2.2 (filter), 3.4.2.4 (paging), 3.5.2.1 (PATCH add members), 3.4.1 (GET)."""
    lines: list[str] = [f"load average (1 min) at the start: {os.getloadavg()[0]:.2f}"]
    sizes = [s for s in (10_000, 100_000, 1_000_000) if s <= SCALE_MAX]
    with embedded_database() as db:
        tenant_id, secret = await bench_tenant(db.dsn, "scale")
        pool = await create_pool(db.dsn, min_size=1, max_size=2)
        try:
            with ours(db, secret, followers=False) as server:
                async with aiohttp.ClientSession(headers=server.headers) as http:
                    base = server.base_url
                    r = await http.post(base + "/Users", json=okta_user("template@example.com", 0))
                    assert r.status == 201
                    template_id = uuid.UUID((await r.json(content_type=None))["id"])
                    seeded = 0
                    created = 0
                    for size in sizes:
                        started = time.perf_counter()
                        async with pool.acquire() as conn:
                            await seed_users(conn, tenant_id, template_id, seeded + 1, size)
                        seed_s = time.perf_counter() - started
                        seeded = max(seeded, size)
                        lines.append(f"#### {size:,} users in the tenant (seeded up to here in {seed_s:.1f} s)")

                        async def lookup(i: int, size: int = size) -> None:
                            name = f"seed-{(i * 7919) % size + 1}@example.com"
                            async with http.get(base + "/Users?filter=" + quote(f'userName eq "{name}"')) as resp:
                                body = await expect(resp, 200)
                            assert b'"totalResults":1' in body

                        async def create(i: int) -> None:
                            nonlocal created
                            created += 1
                            async with http.post(base + "/Users", json=okta_user(f"new-{created}@example.com", created)) as resp:
                                await expect(resp, 201)

                        await timed(lookup, 20)  # warm the connection pool and caches
                        lines.append(f"- lookup `userName eq`: {ms(await timed(lookup, SAMPLES))}")
                        lines.append(f"- create: {ms(await timed(create, SAMPLES))}")
                        total = seeded + 1 + created
                        for start in (1, total // 2, max(1, total - 99)):
                            async def page(i: int, start: int = start) -> None:
                                async with http.get(base + f"/Users?startIndex={start}&count=100") as resp:
                                    await expect(resp, 200)
                            lines.append(f"- list page of 100 at startIndex={start:,}: {ms(await timed(page, 20))}")

                        if size == SCALE_MAX and size > 100_000:
                            # a whole walk would take too long here: two stretches of 50 pages
                            for first in (1, total - 5_000):
                                per_page = await walk_stretch(http, base, first, 50)
                                lines.append(f"- import walk, 50 consecutive pages from startIndex={first:,}: "
                                             f"per page p50 {statistics.median(per_page):.2f} ms")
                        if size == 100_000:
                            lines += await import_walk(http, base, total)
                            # 2,000 more users, so that 1,000 can join the group of 100,000 at once
                            async with pool.acquire() as conn:
                                await seed_users(conn, tenant_id, template_id, seeded + 1, seeded + 2_000)
                            seeded += 2_000
                            lines += await large_groups(http, base, pool, tenant_id, server)
        finally:
            await pool.close()
    lines.append(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    print("\n\n" + "\n".join(lines) + "\n")


async def walk_stretch(http: aiohttp.ClientSession, base: str, first: int, pages: int) -> list[float]:
    """Milliseconds per page of `pages` consecutive pages of 100, as an import walks them."""
    out = []
    for k in range(pages):
        t0 = time.perf_counter()
        async with http.get(base + f"/Users?startIndex={first + 100 * k}&count=100") as resp:
            await expect(resp, 200)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def import_walk(http: aiohttp.ClientSession, base: str, total: int) -> list[str]:
    """Okta's import: pages of 100 by startIndex += 100 until past totalResults."""
    per_page: list[float] = []
    seen = 0
    start = 1
    walk_started = time.perf_counter()
    while start <= total:
        t0 = time.perf_counter()
        async with http.get(base + f"/Users?startIndex={start}&count=100") as resp:
            body = await resp.json(content_type=None)
        per_page.append((time.perf_counter() - t0) * 1000)
        seen += len(body["Resources"])
        start += 100
    walk_s = time.perf_counter() - walk_started
    assert seen == total, (seen, total)
    tenth = max(1, len(per_page) // 10)
    return [
        f"- import walk of {total:,} users, {len(per_page)} pages: {walk_s:.1f} s; "
        f"first tenth of the pages p50 {statistics.median(per_page[:tenth]):.2f} ms, "
        f"last tenth p50 {statistics.median(per_page[-tenth:]):.2f} ms",
    ]


async def large_groups(
    http: aiohttp.ClientSession, base: str, pool: Any, tenant_id: uuid.UUID, server: Server
) -> list[str]:
    lines = ["", "#### Large groups (100,000 users in the tenant)"]
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id FROM users WHERE tenant_id = $1 ORDER BY ordinal", tenant_id
        )
    user_ids = [str(r["id"]) for r in rows]
    async with http.post(base + "/Groups", json={"schemas": [CORE_GROUP], "displayName": "everyone"}) as resp:
        big = (await resp.json(content_type=None))["id"]
    async with http.post(base + "/Groups", json={"schemas": [CORE_GROUP], "displayName": "ten",
                                                  "members": [{"value": u} for u in user_ids[:10]]}) as resp:
        await expect(resp, 201)
        small = (await resp.json(content_type=None))["id"]
    started = time.perf_counter()
    async with pool.acquire() as conn:
        await seed_members(conn, tenant_id, uuid.UUID(big), 100_000)
    lines.append(f"- seeded 100,000 members in {time.perf_counter() - started:.1f} s")
    ids_big = user_ids[100_000:]  # users not yet in the big group (the template, the created ones)
    spare = user_ids[10:]  # users not yet in the small group

    def add_one(group: str, candidates: list[str]) -> Callable[[int], Awaitable[None]]:
        async def add(i: int) -> None:
            body = patch({"op": "add", "path": "members", "value": [{"value": candidates[i]}]})
            async with http.patch(base + f"/Groups/{group}", json=body) as resp:
                await expect(resp, 204, 200)
        return add

    n = min(SAMPLES, len(ids_big))
    lines.append(f"- add one member to the group of 10: {ms(await timed(add_one(small, spare), n))}")
    lines.append(f"- add one member to the group of 100,000: {ms(await timed(add_one(big, ids_big), n))}")

    async with pool.acquire() as conn:
        before = await conn.fetchval(
            "SELECT count(*) FROM events WHERE tenant_id = $1 AND stream_id = $2", tenant_id, uuid.UUID(big))
    async with pool.acquire() as conn:
        thousand = [str(r["id"]) for r in await conn.fetch(
            """SELECT u.id FROM users u WHERE u.tenant_id = $1 AND NOT EXISTS (
                   SELECT 1 FROM group_members m WHERE m.tenant_id = $1 AND m.group_id = $2 AND m.member_id = u.id)
               LIMIT 1000""", tenant_id, uuid.UUID(big))]
    if len(thousand) == 1000:
        body = patch({"op": "add", "path": "members", "value": [{"value": u} for u in thousand]})
        started = time.perf_counter()
        async with http.patch(base + f"/Groups/{big}", json=body) as resp:
            await expect(resp, 204, 200)
        took = (time.perf_counter() - started) * 1000
        async with pool.acquire() as conn:
            after = await conn.fetchval(
                "SELECT count(*) FROM events WHERE tenant_id = $1 AND stream_id = $2", tenant_id, uuid.UUID(big))
        assert after == before + 1, "a PATCH adding 1,000 members is one event, one transaction"
        lines.append(f"- PATCH adding 1,000 members to the group of 100,000: {took:.0f} ms, "
                     f"{after - before} event (one transaction)")
    else:
        lines.append(f"- PATCH adding 1,000 members: skipped, only {len(thousand)} users outside the group")

    proc = psutil.Process(server.process.pid)
    rss_before = proc.memory_info().rss / 2**20
    peak = rss_before
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss / 2**20)
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    first_byte = None
    size = 0
    async with http.get(base + f"/Groups/{big}") as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_any():
            if first_byte is None:
                first_byte = (time.perf_counter() - started) * 1000
            size += len(chunk)
    took = (time.perf_counter() - started) * 1000
    done.set()
    await sampler
    async with pool.acquire() as conn:
        members = await conn.fetchval(
            "SELECT count(*) FROM group_members WHERE tenant_id = $1 AND group_id = $2", tenant_id, uuid.UUID(big))
    lines.append(
        f"- full GET of the group ({members:,} members, {size / 2**20:.1f} MiB of JSON): {took:.0f} ms, "
        f"first byte after {first_byte:.0f} ms; server RSS {rss_before:.0f} MiB before, "
        f"peak {peak:.0f} MiB during (+{peak - rss_before:.0f} MiB)"
    )
    return lines
