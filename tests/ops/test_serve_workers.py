"""`scimledger serve --workers 2` as operators run it (docs/operations.md, "Serving"): both
workers answer on one port, /metrics sums them (Prometheus text format, multiprocess mode), and
SIGTERM stops accepting, lets the request in flight finish, and exits 0."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import aiohttp
import asyncpg

from tests.conftest import Tenant
from tests.support import CORE_USER, PATCH_OP, env_for, free_port, metric, serve, wait_http


async def _blocked_on_lock(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval(
        "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ))


async def test_two_workers_metrics_and_graceful_sigterm(dsn: str, pool: asyncpg.Pool, tenant: Tenant) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**env_for(dsn), "SCIMLEDGER_RATE_LIMIT": "10000"}
    proc = serve(env, port, "--workers", "2")
    try:
        await asyncio.to_thread(wait_http, f"{base}/healthz")
        async with aiohttp.ClientSession(headers=tenant.headers) as http:
            async with http.post(f"{base}/scim/v2/Users", json={"schemas": [CORE_USER], "userName": "ops@example.com"}) as r:
                assert r.status == 201
                user_id = (await r.json(content_type=None))["id"]
            for _ in range(20):  # new connections: SO_REUSEPORT spreads them over both workers
                async with aiohttp.ClientSession(headers=tenant.headers) as one:
                    async with one.get(f"{base}/scim/v2/Users/{user_id}") as r:
                        assert r.status == 200
            async with http.get(f"{base}/scim/v2/Users/{uuid.uuid4()}") as r:
                assert r.status == 404
            deadline = time.monotonic() + 10
            while True:  # event counts are exact below the snapshot xmin: eventually, never over
                async with http.get(f"{base}/metrics") as r:
                    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                    text = await r.text()
                if metric(text, "scimledger_events_total", type="user.created") == 1 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.02)
            # whichever worker answered, the counts are the sum over both (multiprocess mode)
            assert metric(text, "scimledger_http_requests_total", method="GET", route="/scim/v2/Users/{id}", status="200") == 20
            assert metric(text, "scimledger_http_requests_total", method="POST", route="/scim/v2/Users", status="201") == 1
            assert metric(text, "scimledger_http_requests_total", method="GET", route="/scim/v2/Users/{id}", status="404") == 1
            assert user_id not in text  # route templates only, never raw paths
            assert metric(text, "scimledger_http_request_duration_seconds_count", method="GET", route="/scim/v2/Users/{id}") == 21
            assert metric(text, "scimledger_events_total", type="user.created") == 1
            assert "scimledger_projection_lag_events" in text and metric(text, "scimledger_db_pool_size") >= 1

            # a request in flight: its row is locked, so its UPDATE waits in the database
            async with pool.acquire() as locker:
                tx = locker.transaction()
                await tx.start()
                await locker.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", uuid.UUID(user_id))
                patch = asyncio.create_task(http.patch(f"{base}/scim/v2/Users/{user_id}", json={
                    "schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"title": "in flight"}}]}))
                deadline = time.monotonic() + 10
                while not await _blocked_on_lock(pool):
                    assert time.monotonic() < deadline, "the PATCH never reached the database"
                    await asyncio.sleep(0.02)
                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                # no longer accepting: a new connection is refused while the PATCH still waits
                refused = False
                try:
                    async with aiohttp.ClientSession() as fresh, fresh.get(f"{base}/healthz") as r:
                        pass
                except aiohttp.ClientConnectionError:
                    refused = True
                assert refused
                assert proc.poll() is None and not patch.done()
                await tx.rollback()
            response = await asyncio.wait_for(patch, 10)
            assert response.status == 200
            assert (await response.json(content_type=None))["title"] == "in flight"
        out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert '"serve.stopped"' in out
