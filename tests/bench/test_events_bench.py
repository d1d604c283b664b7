"""`make bench`: security-event streams (issue 14). A real `scimledger serve` (one worker, the
test PostgreSQL) and a real RFC 8935 push receiver on 127.0.0.1 in this process; everything
shares the machine.

1. Latency at rest: a user is deactivated (PATCH active=false, Okta's shape) every 25 ms, one at
   a time; the time from sending the PATCH to the prov:deactivate SET arriving at the receiver,
   p50 and p99. Goal: p50 < 100 ms, p99 < 500 ms.
2. Throughput: creates paced at 1,000 writes/s for BENCH_EVENTS_SECONDS (default 10) from 16
   connections; the writes achieved per second, the SETs delivered per second over the same
   span, and how long after the last write the stream had delivered everything. Goal: the
   stream keeps up with 1,000 writes/s.

Reported, never asserted (run with -s; docs/benchmarks.md has the figures and the command).
"""

from __future__ import annotations

import asyncio
import base64
import os
import statistics
import subprocess
import time
from pathlib import Path

import aiohttp
import asyncpg
import msgspec
import pytest

from projections.domain import security_events as sets
from service.app import set_keys, streams, tenancy
from tests.events.receiver import start_receiver
from tests.support import CORE_USER, auth_headers, env_for, free_port, serve, wait_http

pytestmark = pytest.mark.bench

SECONDS = float(os.environ.get("BENCH_EVENTS_SECONDS", "10"))
LATENCY_SAMPLES = int(os.environ.get("BENCH_EVENTS_SAMPLES", "200"))
RATE = 1000.0


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(msgspec.json.decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def test_deactivation_latency_and_stream_throughput(dsn: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    receiver = await start_receiver()
    data_dir = tmp_path / "var"
    async with pool.acquire() as conn:
        tenant_id = await tenancy.create_tenant(conn, "bench")
        _, secret = await tenancy.issue_token(conn, tenant_id, "okta", "scim")
        await streams.create_stream(conn, tenant_id, kek=set_keys.key_encryption_key(data_dir), push=receiver.url,
                                    events=["prov", "caep"])
    port = free_port()
    base = f"http://127.0.0.1:{port}/scim/v2"
    proc = serve({**env_for(dsn, data_dir), "SCIMLEDGER_RATE_LIMIT": "1000000"}, port,
                 stdout=subprocess.DEVNULL, text=False)
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", 30)
        connector = aiohttp.TCPConnector(limit=16)
        async with aiohttp.ClientSession(headers=auth_headers(secret), connector=connector) as http:
            # --- 1. latency at rest ---------------------------------------------------------------
            ids = []
            for i in range(LATENCY_SAMPLES):
                async with http.post(f"{base}/Users", json={"schemas": [CORE_USER], "userName": f"lat{i}@example.com"}) as r:
                    ids.append((await r.json(content_type=None))["id"])
            await receiver.wait_for(LATENCY_SAMPLES, within=60)
            latencies = []
            body = {"schemas": [sets.PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
            for uid in ids:
                seen = len(receiver.accepted)
                started = time.monotonic()
                async with http.patch(f"{base}/Users/{uid}", json=body) as r:
                    assert r.status == 200
                while True:
                    arrived = [t for t, token in zip(receiver.arrival_times[seen:], receiver.tokens[seen:], strict=False)
                               if sets.DEACTIVATE in _claims(token)["events"]]  # type: ignore[operator]
                    if arrived:
                        latencies.append((arrived[0] - started) * 1000)
                        break
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.025)
            await receiver.wait_for(3 * LATENCY_SAMPLES, within=60)  # with the CAEP SETs

            # --- 2. throughput at 1,000 writes/s ---------------------------------------------------
            before = len(receiver.accepted)
            total = int(RATE * SECONDS)
            written = 0
            started = time.monotonic()

            async def create(i: int) -> None:
                nonlocal written
                async with http.post(f"{base}/Users", json={"schemas": [CORE_USER], "userName": f"tp{i}@example.com"}) as r:
                    assert r.status == 201
                    written += 1

            tasks = []
            for i in range(total):
                due = started + i / RATE
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(create(i)))
            await asyncio.gather(*tasks)
            writes_done = time.monotonic()
            await receiver.wait_for(before + total, within=300)
            delivered_done = time.monotonic()
    finally:
        proc.terminate()
        proc.wait(20)
        await receiver.stop()
    write_rate = total / (writes_done - started)
    set_rate = total / (delivered_done - started)
    print()
    print("#### Security-event streams: deactivation to push receiver, and throughput")
    print()
    print("| measure | value |")
    print("|---|---:|")
    print(f"| deactivation -> receiver p50 (n={len(latencies)}) | {statistics.median(latencies):.1f} ms |")
    print(f"| deactivation -> receiver p99 | {_percentile(latencies, 99):.1f} ms |")
    print(f"| deactivation -> receiver max | {max(latencies):.1f} ms |")
    print(f"| writes offered / achieved | {RATE:,.0f}/s / {write_rate:,.0f}/s ({total} creates) |")
    print(f"| SETs delivered over the same span | {set_rate:,.0f}/s |")
    print(f"| stream caught up after the last write | {(delivered_done - writes_done) * 1000:.0f} ms |")
