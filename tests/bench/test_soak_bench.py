"""`make bench`: the soak of issue 12 ("Done when"): one abusive tenant cannot hurt another.

One `scimledger serve` (one worker, the shipped defaults: timeouts, per-tenant caps, rate limits)
on an embedded PostgreSQL; for BENCH_SOAK_SECONDS (default 60) tenant "abuser" runs every attack
of issue 12 at once while tenant "victim" provisions as an IdP does:

- slow bodies: SLOW_BODIES connections that send a PATCH's head and trickle its body a byte at a
  time (the body read timeout must cut them, and they must hold no pool connection meanwhile);
- slow readers: SLOW_READERS audit exports (CSV) whose client never reads (the write timeout and
  the per-tenant export cap must bound them);
- expensive filters: `title co "<512 chars>" or ...` up to the filter limits over users with
  2,000-character titles (statement_timeout and the tenant's concurrency cap bound them);
- PATCHes at the limits: issue 12's 40 x 47-term PATCH on a user at the storage limits (the work
  budget refuses it) and the most expensive filter PATCH it still accepts, back to back;
- a flood of cheap requests beyond its rate limit (429), for the last third (before it, the
  abuser's rate budget goes to the expensive requests above). The hammering clients together
  send ABUSE_FACTOR (10) times the abuser's rate limit, from a process of their own.

The victim, meanwhile, creates users, reads them by id and by `userName eq`, renames them and
adds them to a group. Asserted: the victim's p99 under 100 ms, no error (every answer the one
expected), and nothing lost (every acknowledged write readable afterwards). Every loop is
bounded in time and count; all traffic goes to 127.0.0.1. The figures print as Markdown (-s).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import platform
import socket
import statistics
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest

from service.app import tenancy
from service.runtime.database import migrate
from service.scim.filter import MAX_LENGTH, MAX_VALUE_LENGTH
from service.scim.limits import MAX_RESOURCE_BYTES, MAX_STORED_VALUES
from tests.bench.seeding import seed_users
from tests.bench.servers import embedded_database, ours
from tests.bench.test_patch_budget_bench import NO_MATCH_45, just_under_budget
from tests.support import CORE_GROUP, CORE_USER, auth_headers, caught_up, patch

pytestmark = pytest.mark.bench

SECONDS = float(os.environ.get("BENCH_SOAK_SECONDS", "60"))
# which attacks run (all by default; a subset tells which one costs the victim what)
ATTACKS = set((os.environ.get("BENCH_SOAK_ATTACKS") or "slow body,slow reader,filter,patch,flood").split(","))
P99_GOAL_MS = 100.0
ABUSER_RATE = 50.0  # requests per second (the default); the flood sends several times this
VICTIM_RATE = 500.0
VICTIM_WORKERS = 2
VICTIM_PAUSE_S = 0.02  # between one victim request and its next
SLOW_BODIES = 3
SLOW_READERS = 2
READER_HOLD_S = 40.0  # longer than the write timeout (30 s by default)
FILTER_CLIENTS = 2
PATCH_CLIENTS = 2
FLOOD_CLIENTS = 4
ABUSE_FACTOR = 10  # the abuser's hammering clients send this many times its rate limit in all
HAMMER_RATE = ABUSE_FACTOR * ABUSER_RATE / (FILTER_CLIENTS + PATCH_CLIENTS + FLOOD_CLIENTS)
FLOOD_FROM = 2 / 3  # the flood joins for the last third: before, the expensive requests get through
SEEDED_USERS = 20_000  # the abuser's users: what its filters scan and its exports stream
MAX_LOOPS = 1_000_000  # a bound on every loop besides the clock
TERMS_45 = " or ".join(f'type eq "t{i}"' for i in range(45)) + " or value pr"


@dataclass
class Victim:
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    users: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id -> (userName, displayName)
    members: set[str] = field(default_factory=set)
    by_kind: dict[str, list[float]] = field(default_factory=dict)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] if ordered else float("nan")


async def setup(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        abuser = await tenancy.create_tenant(conn, "abuser", rate_limit=ABUSER_RATE)
        victim = await tenancy.create_tenant(conn, "victim", rate_limit=VICTIM_RATE)
        _, abuser_scim = await tenancy.issue_token(conn, abuser, "abuser", "scim")
        _, abuser_audit = await tenancy.issue_token(conn, abuser, "abuser-audit", "audit")
        _, victim_scim = await tenancy.issue_token(conn, victim, "victim", "scim")
    finally:
        await conn.close()
    return {"abuser": abuser, "abuser_scim": abuser_scim, "abuser_audit": abuser_audit, "victim_scim": victim_scim}


async def seed_abuser(base: str, dsn: str, tenant_id: uuid.UUID, secret: str) -> dict[str, str]:
    """A user at the storage limits (the PATCH target) and SEEDED_USERS with 2,000-character
    titles, created by SQL from a template made over HTTP (tests/bench/seeding.py)."""
    display = "x" * max(1, (MAX_RESOURCE_BYTES - 4096) // MAX_STORED_VALUES - 80)
    wide = {"schemas": [CORE_USER], "userName": "wide",
            "emails": [{"value": f"e{i}@example.com", "type": f"t{i % 50}", "display": display}
                       for i in range(MAX_STORED_VALUES)]}
    async with aiohttp.ClientSession(headers=auth_headers(secret)) as s:
        async with s.post(f"{base}/Users", json=wide) as r:
            assert r.status == 201, await r.text()
            stored = await r.json(content_type=None)
            wide_id = stored["id"]
        async with s.post(f"{base}/Users", json={"schemas": [CORE_USER], "userName": "template",
                                                  "title": "t" * 2000}) as r:
            assert r.status == 201, await r.text()
            template = (await r.json(content_type=None))["id"]
    conn = await asyncpg.connect(dsn)
    try:
        await seed_users(conn, tenant_id, uuid.UUID(template), 1, SEEDED_USERS)
    finally:
        await conn.close()
    accepted = just_under_budget({k: v for k, v in stored.items() if k not in ("id", "meta")}, [
        {"op": "replace", "path": f"emails[{NO_MATCH_45}].display", "value": v} for v in "ab"])
    return {"wide": wide_id, "accepted": json.dumps(accepted)}


def expensive_filter() -> str:
    """`title co "<MAX_VALUE_LENGTH chars>" or ...` as long as the filter limits allow."""
    term = f'title co "{"q" * (MAX_VALUE_LENGTH - 2)}zz"'
    terms = [term]
    while len(" or ".join([*terms, term])) <= MAX_LENGTH:
        terms.append(term)
    return " or ".join(terms)


async def victim_worker(base: str, secret: str, group_id: str, worker: int, deadline: float, out: Victim) -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(headers=auth_headers(secret), timeout=timeout) as s:

        async def call(kind: str, method: str, path: str, expect: tuple[int, ...], **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                async with s.request(method, f"{base}{path}", **kw) as r:
                    body = await r.read()
                    status = r.status
            except Exception as e:  # a timeout or a reset is an error of the service
                out.errors.append(f"{kind}: {type(e).__name__}")
                return None
            elapsed = (time.perf_counter() - started) * 1000
            out.latencies_ms.append(elapsed)
            out.by_kind.setdefault(kind, []).append(elapsed)
            if status not in expect:
                out.errors.append(f"{kind}: {status} {body[:200]!r}")
                return None
            await asyncio.sleep(VICTIM_PAUSE_S)
            return body

        for n in range(MAX_LOOPS):
            if time.monotonic() > deadline:
                return
            name = f"victim-{worker}-{n}@example.com"
            created = await call("create", "POST", "/Users", (201,),
                                 json={"schemas": [CORE_USER], "userName": name, "active": True})
            if created is None:
                continue
            uid = json.loads(created)["id"]
            out.users[uid] = (name, None)
            await call("get", "GET", f"/Users/{uid}", (200,))
            await call("filter", "GET", "/Users", (200,), params={"filter": f'userName eq "{name}"'})
            if await call("patch", "PATCH", f"/Users/{uid}", (200, 204),
                          json=patch({"op": "replace", "path": "displayName", "value": f"Victim {n}"})) is not None:
                out.users[uid] = (name, f"Victim {n}")
            if await call("member add", "PATCH", f"/Groups/{group_id}", (204,),
                          json=patch({"op": "add", "path": "members", "value": [{"value": uid}]})) is not None:
                out.members.add(uid)


async def slow_body(port: int, secret: str, path: str, deadline: float, seen: Counter[str]) -> None:
    """A PATCH whose body trickles in a byte every 2 s: the server must give up on it (408 or a
    close), and it must hold nothing another tenant needs while it waits."""
    for _ in range(MAX_LOOPS):
        if time.monotonic() > deadline:
            return
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {secret}\r\n"
                "Content-Type: application/scim+json\r\nContent-Length: 100000\r\n\r\n{")
        writer.write(head.encode())
        outcome = "open at the end"
        try:
            while time.monotonic() < deadline:
                try:
                    data = await asyncio.wait_for(reader.read(200), 2.0)
                except TimeoutError:
                    writer.write(b" ")
                    await writer.drain()
                    continue
                outcome = data.split(b"\r\n", 1)[0].decode(errors="replace") if data else "closed"
                break
        except (ConnectionError, OSError):
            outcome = "reset"
        seen[outcome] += 1
        writer.close()
        await asyncio.sleep(0.5)


async def slow_reader(port: int, secret: str, deadline: float, seen: Counter[str]) -> None:
    """An audit export whose client reads nothing for READER_HOLD_S (a 4 KB receive buffer),
    then drains what is left: a response cut short (no final chunk) was cut by the server."""
    loop = asyncio.get_running_loop()
    for _ in range(MAX_LOOPS):
        if time.monotonic() > deadline:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, (f"GET /audit/v1/events/export?format=csv HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                       f"Authorization: Bearer {secret}\r\n\r\n").encode())
        opened = time.monotonic()
        await asyncio.sleep(max(0.0, min(deadline, opened + READER_HOLD_S) - opened))
        if time.monotonic() - opened < READER_HOLD_S:  # the soak ended first: nothing to judge
            seen["held to the end of the soak"] += 1
            sock.close()
            return
        data = bytearray()
        outcome = "still streaming"
        try:
            async with asyncio.timeout(10):
                while chunk := await loop.sock_recv(sock, 1 << 16):
                    data += chunk
            outcome = "complete" if data.endswith(b"0\r\n\r\n") else "cut by the server"
        except TimeoutError:
            pass
        except (ConnectionError, OSError):
            outcome = "reset by the server"
        status = bytes(data.split(b"\r\n", 1)[0]).decode(errors="replace")
        seen[f"{status} -> {outcome} ({len(data) // 1024} KB)"] += 1
        sock.close()
        await asyncio.sleep(1.0)


async def hammer(base: str, secret: str, deadline: float, seen: Counter[str], method: str, path: str,
                 start_in: float = 0.0, **kw: Any) -> None:
    """The same request back to back, from `start_in` seconds on, until the deadline, at most
    HAMMER_RATE a second (together the clients send ABUSE_FACTOR times the tenant's limit: the
    attacker shares this machine's two cores, so an unpaced client would mostly measure itself)."""
    await asyncio.sleep(start_in)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers=auth_headers(secret), timeout=timeout) as s:
        next_at = time.monotonic()
        for _ in range(MAX_LOOPS):
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if time.monotonic() > deadline:
                return
            next_at = time.monotonic() + 1 / HAMMER_RATE
            try:
                async with s.request(method, f"{base}{path}", **kw) as r:
                    await r.read()
                    seen[str(r.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as e:
                seen[type(e).__name__] += 1


async def abuse(base: str, scim: str, audit: str, wide: str, accepted: str) -> dict[str, Counter[str]]:
    """Every attack at once for SECONDS."""
    port = int(base.split(":")[2].split("/")[0])
    seen: dict[str, Counter[str]] = {k: Counter() for k in ("slow body", "slow reader", "filter", "patch", "flood")}
    deadline = time.monotonic() + SECONDS
    flt = expensive_filter()
    reproducer = json.dumps(patch(*[{"op": "replace", "path": f"emails[{TERMS_45}].display", "value": "d"}] * 40))
    attacks = {
        "slow body": [slow_body(port, scim, f"/scim/v2/Users/{wide}", deadline, seen["slow body"])
                      for _ in range(SLOW_BODIES)],
        "slow reader": [slow_reader(port, audit, deadline, seen["slow reader"]) for _ in range(SLOW_READERS)],
        "filter": [hammer(base, scim, deadline, seen["filter"], "GET", "/Users", params={"filter": flt, "count": "10"})
                   for _ in range(FILTER_CLIENTS)],
        "patch": [hammer(base, scim, deadline, seen["patch"], "PATCH", f"/Users/{wide}", data=body)
                  for body in [reproducer, accepted] * (PATCH_CLIENTS // 2)],
        "flood": [hammer(base, scim, deadline, seen["flood"], "GET", "/Users", SECONDS * FLOOD_FROM, params={"count": "1"})
                  for _ in range(FLOOD_CLIENTS)],
    }
    chosen = [c for kind, coros in attacks.items() for c in coros if kind in ATTACKS]
    for kind, coros in attacks.items():
        if kind not in ATTACKS:
            for c in coros:
                c.close()
    await asyncio.gather(*chosen)
    return {k: v for k, v in seen.items() if k in ATTACKS}


def run_abuser(base: str, scim: str, audit: str, wide: str, accepted: str) -> dict[str, Counter[str]]:
    """The abuser from a process of its own (spawned), as from another machine: its clients'
    work never delays the victim's clock."""
    return asyncio.run(abuse(base, scim, audit, wide, accepted))


async def verify(base: str, secret: str, group_id: str, victim: Victim) -> list[str]:
    """Every acknowledged write of the victim, read back."""
    lost: list[str] = []
    async with aiohttp.ClientSession(headers=auth_headers(secret)) as s:
        for uid, (name, display) in victim.users.items():
            async with s.get(f"{base}/Users/{uid}") as r:
                if r.status != 200:
                    lost.append(f"user {uid}: {r.status}")
                    continue
                body = await r.json(content_type=None)
            if body["userName"] != name or (display is not None and body.get("displayName") != display):
                lost.append(f"user {uid}: {body.get('userName')} {body.get('displayName')}")
        async with s.get(f"{base}/Groups/{group_id}") as r:
            members = {m["value"] for m in (await r.json(content_type=None)).get("members", [])}
        lost += [f"member {m}" for m in victim.members - members]
    return lost


async def test_soak_one_abusive_tenant_cannot_hurt_another() -> None:
    """Issue 12 "Done when": 60 s of every attack by one tenant; the other keeps p99 < 100 ms,
    0 errors, and every acknowledged write (RFC 7644 3.3 create, 3.5.2 PATCH) is readable."""
    with embedded_database() as db:
        keys = await setup(db.dsn)
        with ours(db, keys["victim_scim"], workers=1) as server:
            base = server.base_url
            targets = await seed_abuser(base, db.dsn, keys["abuser"], keys["abuser_scim"])
            async with aiohttp.ClientSession(headers=auth_headers(keys["victim_scim"])) as s:
                async with s.post(f"{base}/Groups", json={"schemas": [CORE_GROUP], "displayName": "Everyone"}) as r:
                    assert r.status == 201
                    group_id = (await r.json(content_type=None))["id"]
            pool = await asyncpg.create_pool(db.dsn, min_size=1, max_size=1)
            try:  # the audit follower takes in the seeded events: the exports' data
                await caught_up(pool, "audit", within=120)
            finally:
                await pool.close()

            victim = Victim()
            started = time.monotonic()
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as other_machine:
                abuse = asyncio.get_running_loop().run_in_executor(
                    other_machine, run_abuser, base, keys["abuser_scim"], keys["abuser_audit"], targets["wide"],
                    targets["accepted"])
                deadline = time.monotonic() + SECONDS
                await asyncio.gather(*(victim_worker(base, keys["victim_scim"], group_id, w, deadline, victim)
                                       for w in range(VICTIM_WORKERS)))
                seen = await abuse
            ran = time.monotonic() - started
            lost = await verify(base, keys["victim_scim"], group_id, victim)

    lat = victim.latencies_ms
    lines = [
        "",
        f"Soak: {ran:.0f} s, one `scimledger serve` worker, shipped defaults; Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f} at the end",
        "",
        "| victim | requests | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
        f"| all | {len(lat)} | {statistics.median(lat):.1f} | {pct(lat, 95):.1f} | {pct(lat, 99):.1f} | {max(lat):.1f} |",
        *(f"| {k} | {len(v)} | {statistics.median(v):.1f} | {pct(v, 95):.1f} | {pct(v, 99):.1f} | {max(v):.1f} |"
          for k, v in victim.by_kind.items()),
        "",
        f"victim: {len(victim.errors)} errors, {len(victim.users)} users and {len(victim.members)} memberships "
        f"acknowledged, {len(lost)} lost",
        "",
        "| abuser attack | outcomes |",
        "|---|---|",
        *(f"| {k} | {', '.join(f'{o} x{n}' for o, n in sorted(c.items()))} |" for k, c in seen.items()),
    ]
    print("\n".join(lines))
    assert not victim.errors, victim.errors[:10]
    assert not lost, lost[:10]
    assert pct(lat, 99) < P99_GOAL_MS, f"victim p99 {pct(lat, 99):.1f} ms"
