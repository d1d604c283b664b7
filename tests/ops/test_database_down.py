"""Honest failure modes of the database (issue 12, item 10): unreachable or lost, every request
is a SCIM 503 with Retry-After and /readyz is 503, logged as one line per failure and never a
traceback; statement_timeout and idle_in_transaction_session_timeout are set on every serving
connection, and a statement cut off by it is a 503 too, never a 500.

The outage is real: a PostgreSQL nobody listens for (a closed port), or the suite's PostgreSQL
behind a TCP proxy that is cut and restored (tests/ops/pg_proxy.py).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import replace
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from service.http.app import create_app
from service.http.context import connection
from service.http.keys import POOL
from service.runtime.config import Settings
from tests.conftest import make_tenant
from tests.ops.pg_proxy import PostgresProxy
from tests.support import (
    ERROR_SCHEMA,
    auth_headers,
    env_for,
    free_port,
    new_user,
    read_until,
    serve,
)

CLOSED_PORT_DSN = "postgresql://postgres@127.0.0.1:{port}/postgres"


def quiet(settings: Settings) -> Settings:
    return replace(settings, run_followers=False, pool_timeout_s=2.0)


async def assert_unavailable(resp: Any) -> None:
    body = await resp.json(content_type=None)
    assert resp.status == 503, body
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.content_type == "application/scim+json"
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "503" and "retry" in body["detail"]


def one_line_each(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The database.unavailable lines, after checking no line carries a traceback or is an error."""
    assert not [e for e in logs if "exc_info" in e or e.get("log_level") in ("error", "critical")], logs
    return [e for e in logs if e["event"] == "database.unavailable"]


async def test_serving_connections_carry_statement_and_idle_transaction_timeouts(
    settings: Settings, dsn: str, aiohttp_client: Any
) -> None:
    """Issue 12 item 8: statement_timeout was 0. Every connection of the serving pool has the
    configured statement_timeout and idle_in_transaction_session_timeout, and a statement that
    runs past it is a SCIM 503 with Retry-After (RFC 7644 3.12), not a 500."""
    app = create_app(replace(quiet(settings), statement_timeout_s=0.5, idle_in_transaction_timeout_s=7), dsn)

    async def slow(request: web.Request) -> web.Response:
        async with connection(request) as conn:
            await conn.execute("SELECT pg_sleep(3)")
        return web.Response(text="finished")

    app.router.add_get("/test/slow", slow)
    client = await aiohttp_client(app)
    pool = app[POOL]
    conns = [await pool.acquire() for _ in range(3)]  # a fresh one among them
    try:
        for conn in conns:
            assert await conn.fetchval("SHOW statement_timeout") == "500ms"
            assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "7s"
    finally:
        for conn in conns:
            await pool.release(conn)
    started = time.monotonic()
    with capture_logs() as logs:
        resp = await client.get("/test/slow")
        await assert_unavailable(resp)
    assert time.monotonic() - started < 2.5
    assert "statement timeout of 0.5 s" in (await resp.json(content_type=None))["detail"]
    assert [e["event"] for e in logs if e.get("log_level") == "warning"] == ["database.statement_timeout"]
    assert not [e for e in logs if "exc_info" in e or e.get("log_level") == "error"]


async def test_unreachable_database_at_start_answers_503_and_not_ready(
    settings: Settings, aiohttp_client: Any
) -> None:
    """Issue 12 item 10: with PostgreSQL down the answer was a 500. A worker whose database does
    not answer at start still starts; every request is a SCIM 503 with Retry-After, /readyz is
    503, /healthz stays 200, and each failure is one log line without a traceback."""
    with capture_logs() as logs:
        app = create_app(quiet(settings), CLOSED_PORT_DSN.format(port=free_port()))
        client: TestClient = await aiohttp_client(app)
        for method, path in (("GET", "/scim/v2/Users"), ("POST", "/scim/v2/Users"),
                             ("GET", "/audit/v1/events")):
            resp = await client.request(method, path, json=new_user("a@x.example"),
                                        headers=auth_headers("scimledger_" + "k" * 43))
            await assert_unavailable(resp)
        ready = await client.get("/readyz")
        assert ready.status == 503 and ready.headers["Retry-After"]
        assert (await client.get("/healthz")).status == 200
    lines = one_line_each(logs)
    assert len(lines) == 4  # the start, then one per refused request
    assert all(e["error_type"] for e in lines)


async def test_database_lost_mid_run_answers_503_and_recovers(
    settings: Settings, dsn: str, pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    """Issue 12 item 10: PostgreSQL going away while serving gives 503 with Retry-After (and
    /readyz 503) for as long as it is away, one log line per failure; when it is back, the same
    worker serves again without a restart."""
    tenant = await make_tenant(pool, "acme")
    with PostgresProxy(dsn) as proxy:
        app = create_app(quiet(settings), proxy.dsn)
        client: TestClient = await aiohttp_client(app)
        resp = await client.post("/scim/v2/Users", json=new_user("before@x.example"), headers=tenant.headers)
        assert resp.status == 201
        proxy.cut()
        with capture_logs() as logs:
            for i in range(3):
                resp = await client.post("/scim/v2/Users", json=new_user(f"during{i}@x.example"),
                                         headers=tenant.headers)
                await assert_unavailable(resp)
                await assert_unavailable(await client.get("/scim/v2/Users", headers=tenant.headers))
            assert (await client.get("/readyz")).status == 503
        assert len(one_line_each(logs)) == 6
        proxy.restore()
        resp = await client.post("/scim/v2/Users", json=new_user("after@x.example"), headers=tenant.headers)
        assert resp.status == 201, await resp.text()
        assert (await client.get("/readyz")).status == 200
    async with pool.acquire() as conn:
        names = await conn.fetch("SELECT user_name FROM users WHERE tenant_id = $1 ORDER BY 1", tenant.id)
    assert [r["user_name"] for r in names] == ["after@x.example", "before@x.example"]


def test_serve_waits_for_an_unreachable_database_one_line_per_try() -> None:
    """Issue 12 item 10: `scimledger serve` with its database down at start retries, one JSON
    `database.unavailable` line per try and no traceback, and stops cleanly on SIGTERM."""
    env = env_for(CLOSED_PORT_DSN.format(port=free_port()))
    proc = serve(env, free_port())
    try:
        lines = read_until(proc, r"\"retry_in_s\": 2\.0", timeout=30)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    tries = [e for e in events if e["event"] == "database.unavailable"]
    assert len(tries) >= 2 and all(e["level"] == "warning" and e["during"] == "bootstrap" for e in tries)
    assert events[-1]["event"] == "serve.stopped"


async def test_pool_exhaustion_is_a_bounded_503(settings: Settings, dsn: str, pool: asyncpg.Pool,
                                                aiohttp_client: Any) -> None:
    """A request that cannot get a pool connection within pool_timeout_s is a SCIM 503 with
    Retry-After instead of waiting forever."""
    tenant = await make_tenant(pool, "acme")
    app = create_app(replace(quiet(settings), pool_min=1, pool_max=1, pool_timeout_s=0.3), dsn)
    client = await aiohttp_client(app)
    held = await app[POOL].acquire()
    try:
        started = time.monotonic()
        await assert_unavailable(await asyncio.wait_for(client.get("/scim/v2/Users", headers=tenant.headers), 10))
        assert time.monotonic() - started < 2
    finally:
        await app[POOL].release(held)
    assert (await client.get("/scim/v2/Users", headers=tenant.headers)).status == 200
