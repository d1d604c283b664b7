"""Crash safety (docs/operations.md, "Crash safety"): SIGKILL the service and its PostgreSQL
under concurrent IdP write load, restart, and find every write a client was told about (every
201 and 200, RFC 7644 3.3 / 3.5.2), views identical to a rebuild from the log
(`projections verify` exits 0), and the followers resuming where they stopped: every event
audited and sealed exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from service.runtime.database import create_pool
from tests.ops.write_load import Acknowledged, create_groups, writer
from tests.support import (
    alive,
    auth_headers,
    caught_up,
    cli,
    env_for,
    first_token,
    free_port,
    serve,
    wait_http,
)


def _kill_postgres(data_dir: Path) -> int:
    """SIGKILL the postmaster and its backends, as a host crash would (no shutdown at all)."""
    pid = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    os.kill(pid, signal.SIGKILL)
    for child in children:
        try:
            os.kill(int(child), signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pid


async def test_sigkill_service_and_postgres_under_write_load(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = {**env_for(data_dir=data_dir), "SCIMLEDGER_RATE_LIMIT": "100000"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(env, port)
    try:
        secret = await asyncio.to_thread(first_token, proc, data_dir)
        await asyncio.to_thread(wait_http, f"{base}/healthz")
        headers = auth_headers(secret)
        ack = Acknowledged()
        async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as http:
            async def send(method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
                async with http.request(method, base + path, json=body) as r:
                    text = await r.text()
                    return r.status, (msgspec.json.decode(text) if text else {})

            await create_groups(send, ack, 3)
            stop = asyncio.Event()
            writers = [asyncio.create_task(writer(send, ack, stop, w)) for w in range(8)]
            await asyncio.sleep(3.0)
            # the crash, mid-traffic: the service first, then PostgreSQL and its backends
            proc.send_signal(signal.SIGKILL)
            pg_pid = _kill_postgres(data_dir)
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*writers)
        await asyncio.to_thread(proc.wait, 10)
        deadline = time.monotonic() + 10
        while alive(pg_pid):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert len(ack.users) > 20, ack.statuses

        proc = serve(env, port)  # crash recovery: the same data dir, a new PostgreSQL
        await asyncio.to_thread(wait_http, f"{base}/healthz", 60)
        async with aiohttp.ClientSession(headers=headers) as http:
            for user_id, version in ack.users.items():
                async with http.get(f"{base}/scim/v2/Users/{user_id}") as r:
                    assert r.status == 200, (user_id, r.status)
                    body = await r.json(content_type=None)
                    assert int(body["meta"]["version"].removeprefix('W/"').rstrip('"')) >= version
            for group_id in ack.groups:
                async with http.get(f"{base}/scim/v2/Groups/{group_id}") as r:
                    members = {m["value"] for m in (await r.json(content_type=None)).get("members", [])}
                assert {u for g, u in ack.members if g == group_id} <= members

        dsn = cli("db", "dsn", env=env).stdout.strip()
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            await caught_up(pool, "audit", "seal", within=20)
            async with pool.acquire() as conn:
                counts = await conn.fetchrow(
                    """SELECT (SELECT count(*) FROM events) AS events,
                              (SELECT count(*) FROM audit_events) AS audited,
                              (SELECT count(DISTINCT (tenant_id, position)) FROM audit_events) AS distinct_audited,
                              (SELECT count(*) FROM audit_seals) AS sealed"""
                )
        finally:
            await pool.close()
        assert counts["events"] == counts["audited"] == counts["distinct_audited"] == counts["sealed"], dict(counts)
        verify = await asyncio.to_thread(cli, "projections", "verify", env=env, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0

