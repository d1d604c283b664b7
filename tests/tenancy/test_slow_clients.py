"""No tenant can take the shared resources (issue 12, item 2): slow request heads, bodies that
stop arriving, clients that stop reading and a tenant over its share of the worker are all cut
off in bounded time, and none of them holds a database connection while it waits, so another
tenant is served as if nothing happened.

The servers are real: the app on a real port through `service.server.serve.start_server` (the
runner `scimledger serve` uses, with its connection watchdogs), and for the reproducer of the
issue `scimledger serve` itself; clients are raw sockets that misbehave on purpose.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from service.http.app import create_app
from service.http.context import connection
from service.http.keys import POOL
from service.runtime.config import Settings
from service.server.serve import start_server
from tests.conftest import Tenant, make_tenant
from tests.ops.bulk_log import seed_log
from tests.support import (
    ERROR_SCHEMA,
    caught_up,
    env_for,
    free_port,
    new_user,
    serve,
    token_headers,
    wait_http,
)


@dataclass
class Live:
    port: int
    app: web.Application


@asynccontextmanager
async def live(settings: Settings, dsn: str, **routes: Any) -> AsyncIterator[Live]:
    """The app on a real port behind serve's GuardedAppRunner; `routes` adds test-only GETs."""
    settings = replace(settings, port=free_port(), run_followers=False)
    app = create_app(settings, dsn)
    for path, handler in routes.items():
        app.router.add_get(f"/test/{path}", handler)
    runner = await start_server(app, settings)
    try:
        yield Live(settings.port, app)
    finally:
        await runner.cleanup()


def head(method: str, path: str, tenant: Tenant | None = None, **fields: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if tenant is not None:
        lines.append(f"Authorization: Bearer {tenant.secret}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def response_of(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def closed_after(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the server closed the connection (EOF or reset)."""
    started = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(65536), within):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


async def test_a_slow_request_head_is_closed_after_the_header_timeout(settings: Settings, dsn: str) -> None:
    """Slowloris (issue 12, item 10): a client trickling its request head, first request or a
    later one on a kept-alive connection, or sending nothing at all, is disconnected
    header_timeout_s after it started; a head that completes in time is served."""
    async with live(replace(settings, header_timeout_s=1.0), dsn) as server:
        # a head that trickles in within the limit is served
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"\r\n"):
            writer.write(piece)
            await asyncio.sleep(0.25)
        assert (await response_of(reader))[0] == 200

        # ...then the next one on the same connection trickles past the limit
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        async def trickle() -> None:
            for byte in b"X-Slow: " + b"a" * 40:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.2)

        dribble = asyncio.create_task(trickle())
        await closed_after(reader, 5)
        assert 0.9 < time.monotonic() - started < 2.5
        dribble.cancel()
        writer.close()

        # a connection that never sends a byte
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert 0.9 < await closed_after(reader, 5) < 2.5
        writer.close()


async def test_a_client_that_stops_reading_is_cut_off_and_its_connection_released(
    settings: Settings, dsn: str
) -> None:
    """A client that stops reading a streamed response (an export, a large group) used to hold
    the handler and its pool connection for as long as the socket stayed open. After
    write_timeout_s without draining, the connection is aborted, the handler gives up
    (`request.aborted`, not a 500) and its database connection is back in the pool."""
    finished = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        try:
            async with connection(request) as conn:
                response = web.StreamResponse()
                await response.prepare(request)
                while True:
                    await response.write(await conn.fetchval("SELECT repeat('x', 65536)::bytea"))
        finally:
            finished.set()

    async with live(replace(settings, write_timeout_s=1.0), dsn, endless=endless) as server:
        pool: asyncpg.Pool = server.app[POOL]
        loop = asyncio.get_running_loop()
        with capture_logs() as logs, socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", server.port))
            await loop.sock_sendall(sock, head("GET", "/test/endless"))
            started = time.monotonic()
            await asyncio.wait_for(finished.wait(), 15)  # never read a byte
            took = time.monotonic() - started
        assert took < 10, took
        assert pool.get_idle_size() == pool.get_size()
        events = [e["event"] for e in logs]
        assert "connection.write_timeout" in events and "request.aborted" in events, events
        assert not [e for e in logs if "exc_info" in e or e.get("log_level") == "error"], logs


@pytest.mark.parametrize("seen", [False, True], ids=["new-token", "known-token"])
async def test_a_body_that_stops_arriving_is_408_and_holds_no_connection(
    seen: bool, settings: Settings, dsn: str, pool: asyncpg.Pool
) -> None:
    """A POST whose body stops arriving holds no pool connection while the server waits (the
    worker's one connection serves another tenant meanwhile), and after body_timeout_s it is
    answered 408 with a SCIM error (RFC 7644 3.12) and the connection is closed (RFC 9110
    15.5.9); nothing is created. Both ways through authentication: a token this worker has not
    seen yet, and one it has (whose request takes its tenant's slot before the lookup)."""
    slow, other = await make_tenant(pool, "slow"), await make_tenant(pool, "other")
    async with live(replace(settings, body_timeout_s=1.5, pool_min=1, pool_max=1), dsn) as server:
        if seen:
            assert (await get(server.port, "/scim/v2/Users", slow))[0] == 200
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head("POST", "/scim/v2/Users", slow, Content_Type="application/scim+json",
                          Content_Length="100") + b'{"userName": "half')
        await asyncio.sleep(0.3)
        started = time.monotonic()
        status, _, _ = await get(server.port, "/scim/v2/Users", other)
        assert status == 200 and time.monotonic() - started < 0.5
        status, headers, body = await asyncio.wait_for(response_of(reader), 5)
        assert status == 408 and headers["connection"] == "close"
        error = json.loads(body)
        assert error["schemas"] == [ERROR_SCHEMA] and "SCIMLEDGER_BODY_TIMEOUT_SECONDS" in error["detail"]
        assert await closed_after(reader, 2) < 2
        writer.close()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def get(port: int, path: str, tenant: Tenant) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head("GET", path, tenant))
    try:
        return await asyncio.wait_for(response_of(reader), 10)
    finally:
        writer.close()


async def test_a_tenant_over_its_share_of_the_worker_gets_429(
    settings: Settings, dsn: str, pool: asyncpg.Pool
) -> None:
    """A tenant may have at most tenant_concurrency requests in flight per worker: the next
    waits up to pool_timeout_s for a slot, then gets 429 with Retry-After and a SCIM body (RFC 6585 4, RFC 7644 3.12),
    while another tenant is served at once; once its requests finish, the tenant is served again."""
    greedy, other = await make_tenant(pool, "greedy"), await make_tenant(pool, "other")
    async with live(replace(settings, tenant_concurrency=2, pool_timeout_s=0.5), dsn) as server:
        held = []
        for i in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            body = json.dumps(new_user(f"held{i}@x.example")).encode()
            writer.write(head("POST", "/scim/v2/Users", greedy, Content_Type="application/scim+json",
                              Content_Length=str(len(body))) + body[:5])
            held.append((reader, writer, body))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        status, headers, body = await get(server.port, "/scim/v2/Users", greedy)
        assert status == 429 and headers["retry-after"] == "1", body
        assert 0.4 < time.monotonic() - started < 3  # waited pool_timeout_s for a slot first
        error = json.loads(body)
        assert error["status"] == "429" and "SCIMLEDGER_TENANT_CONCURRENCY" in error["detail"]
        started = time.monotonic()
        assert (await get(server.port, "/scim/v2/Users", other))[0] == 200
        assert time.monotonic() - started < 0.5
        for reader, writer, body in held:
            writer.write(body[5:])
            assert (await asyncio.wait_for(response_of(reader), 5))[0] == 201
            writer.close()
        assert (await get(server.port, "/scim/v2/Users", greedy))[0] == 200


async def test_a_client_gone_mid_body_is_logged_as_aborted_not_a_500(
    settings: Settings, dsn: str, pool: asyncpg.Pool
) -> None:
    """Issue 12, item 7: a client disconnecting mid-request was logged as a 500 with a
    traceback. It is `request.aborted` at info, and the canonical request line says 499."""
    tenant = await make_tenant(pool, "acme")
    async with live(settings, dsn) as server:
        with capture_logs() as logs:
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(head("POST", "/scim/v2/Users", tenant, Content_Type="application/scim+json",
                              Content_Length="100") + b'{"userName"')
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            for _ in range(100):
                if any(e["event"] == "request" for e in logs):
                    break
                await asyncio.sleep(0.05)
    aborted = [e for e in logs if e["event"] == "request.aborted"]
    assert aborted and aborted[0]["log_level"] == "info", logs
    assert [e["status"] for e in logs if e["event"] == "request"] == [499]
    assert not [e for e in logs if "exc_info" in e or e.get("log_level") in ("error", "critical")], logs


# --- the reproducer of the issue, against `scimledger serve` ----------------------------------

def _half_sent_post(port: int, secret: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + secret.encode()
              + b"\r\nContent-Type: application/scim+json\r\nContent-Length: 100\r\n\r\n{")
    return s


def _unread_export(port: int, headers: dict[str, str]) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /audit/v1/events/export HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
              f"{headers['Authorization']}\r\n\r\n".encode())
    return s


def _status(s: socket.socket, timeout: float) -> int | None:
    """The status a misbehaving client got, or None if the server closed without one."""
    s.settimeout(timeout)
    try:
        first = s.recv(64)
    except ConnectionResetError:
        return None
    return int(first.split()[1]) if first.startswith(b"HTTP/1.1") else None


def _timed(url: str, headers: dict[str, str], data: bytes | None = None) -> tuple[int, float]:
    started = time.monotonic()
    req = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()
        return resp.status, time.monotonic() - started


async def test_one_tenants_slow_bodies_and_unread_exports_leave_other_tenants_served(
    dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The reproducer of issue 12, item 2: ten export clients of one tenant that never read plus
    ten half-sent bodies of the same tenant used to take every connection of the pool, so every
    other tenant waited and /readyz answered 503. Now the other tenant's requests succeed
    quickly and /readyz stays 200 throughout; the abuser's exports beyond 2 get 429 at once, its
    requests beyond its share (8 in flight with a pool of 10) 429 after a short wait, its admitted
    bodies 408 after the body timeout, and its unread exports are cut off after the write
    timeout."""
    abuser, victim = await make_tenant(pool, "abuser"), await make_tenant(pool, "victim")
    _, audit = await token_headers(pool, abuser.id, "auditor", "audit")
    async with pool.acquire() as conn:
        await seed_log(conn, [abuser.id], users=3000, groups=0, member_changes=0)  # MBs of export
    port = free_port()
    env = env_for(dsn) | {"SCIMLEDGER_RATE_LIMIT": "100000", "SCIMLEDGER_POOL_MAX": "10",
                          "SCIMLEDGER_BODY_TIMEOUT_SECONDS": "4", "SCIMLEDGER_WRITE_TIMEOUT_SECONDS": "4",
                          "SCIMLEDGER_POOL_TIMEOUT_SECONDS": "1"}
    log_file = tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    sockets: list[socket.socket] = []
    with log_file.open("w") as out:
        proc = serve(env, port, stdout=out)
        try:
            wait_http(f"{base}/healthz")
            await caught_up(pool, "audit", within=30)
            exports = [_unread_export(port, audit) for _ in range(10)]
            sockets += exports
            await asyncio.sleep(0.5)
            bodies = [_half_sent_post(port, abuser.secret) for _ in range(10)]
            sockets += bodies
            await asyncio.sleep(0.2)
            slowest = 0.0
            for i in range(10):
                body = json.dumps(new_user(f"v{i}@x.example")).encode()
                status, took = await asyncio.to_thread(_timed, f"{base}/scim/v2/Users", victim.headers, body)
                assert status == 201
                slowest = max(slowest, took)
                status, took = await asyncio.to_thread(_timed, f"{base}/scim/v2/Users?count=5", victim.headers)
                assert status == 200
                slowest = max(slowest, took)
                assert (await asyncio.to_thread(_timed, f"{base}/readyz", {}))[0] == 200
            assert slowest < 1.0, slowest

            export_statuses = [await asyncio.to_thread(_status, s, 1) for s in exports]
            assert sorted(export_statuses) == [200] * 2 + [429] * 8, export_statuses
            body_statuses = [await asyncio.to_thread(_status, s, 8) for s in bodies]
            assert sorted(body_statuses) == [408] * 6 + [429] * 4, body_statuses  # 2 + 6 = 8 in flight
            await asyncio.sleep(2)  # the unread exports stalled well before; cut off by now
            status, _ = await asyncio.to_thread(_timed, f"{base}/scim/v2/Users?count=1", abuser.headers)
            assert status == 200
        finally:
            for s in sockets:
                s.close()
            proc.terminate()
            proc.wait(30)
    lines = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    events = [e["event"] for e in lines]
    assert events.count("connection.write_timeout") == 2, events
    assert "request.failed" not in events and "Traceback" not in log_file.read_text()
