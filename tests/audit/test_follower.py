"""The follower runner (projections/follower.py; DESIGN.md "Reading the global log without gaps",
STYLE.md 5: apply a view change and advance its checkpoint in one transaction; issue 7)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from eventstore.codecs import init_connection
from eventstore.store import NewEvent, RecordedEvent, append
from projections.domain.events import UserCreated, UserUpdated, encode_event
from projections.followers import dead_letters
from projections.followers import runner as follower
from projections.followers.audit import AuditProjection
from projections.followers.seal import SealProjection
from service.http.followers import CommitNotifier, follower_connector
from tests.conftest import Tenant

CLI_ACTOR = {"actor": {"kind": "cli", "label": "cli"}}


def created(name: str) -> list[NewEvent]:
    return [NewEvent("user.created", encode_event(UserCreated(resource={"userName": name})))]


async def append_user(conn: asyncpg.Connection, tenant_id: uuid.UUID, name: str) -> uuid.UUID:
    stream = uuid.uuid4()
    await append(conn, tenant_id, "user", stream, 0, created(name), CLI_ACTOR)
    return stream


@pytest.fixture
async def run() -> AsyncIterator[Callable[[follower.FollowerRunner], asyncio.Task[None]]]:
    """Start runners as tasks; cancel them all at the end of the test."""
    tasks: list[asyncio.Task[None]] = []

    def start(runner: follower.FollowerRunner) -> asyncio.Task[None]:
        task = asyncio.create_task(runner.run())
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_gap_free_under_concurrent_writes_committed_out_of_position_order(
    dsn: str, pool: asyncpg.Pool, tenant: Tenant, run: Any
) -> None:
    """Transactions that take a position early and commit late are still audited, exactly once
    (the audit table's primary key refuses a second row for a position)."""
    run(follower.FollowerRunner(AuditProjection(), follower_connector(dsn, "audit"), poll_interval=0.01))
    run(follower.FollowerRunner(SealProjection(), follower_connector(dsn, "seal"), poll_interval=0.01))
    rng = random.Random(7)
    commit_order: list[int] = []

    async def writer(w: int) -> None:
        for i in range(8):
            async with pool.acquire() as conn:
                async with conn.transaction():
                    stream = await append_user(conn, tenant.id, f"w{w}-{i}")
                    await asyncio.sleep(rng.choice([0, 0, 0.001, 0.02, 0.06]))  # commit late, sometimes
                commit_order.append(await conn.fetchval(
                    "SELECT global_position FROM events WHERE tenant_id = $1 AND stream_id = $2",
                    tenant.id, stream))

    await asyncio.gather(*(writer(w) for w in range(12)))
    async with pool.acquire() as conn:
        async def done() -> bool:
            return (await follower.lag(conn, "audit")).events == 0 and (await follower.lag(conn, "seal")).events == 0

        await until(done)
        logged = await conn.fetch("SELECT global_position FROM events ORDER BY global_position")
        audited = await conn.fetch("SELECT position FROM audit_events ORDER BY position")
        sealed = [r[0] for r in await conn.fetch(
            "SELECT position FROM audit_seals WHERE tenant_id = $1 ORDER BY seq", tenant.id)]
    assert [r[0] for r in audited] == [r[0] for r in logged] and len(logged) == 96
    assert sorted(sealed) == [r[0] for r in logged]
    # the scenario happened: positions were committed out of their order
    assert commit_order != sorted(commit_order)


async def _malformed(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> int:
    """An event whose payload the audit cannot decode (a deactivation whose userName is a number)."""
    return int(await conn.fetchval(
        """INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
           VALUES ($1, 'user', gen_random_uuid(), 1, 'user.deactivated',
                   '{"type": "user.deactivated", "user_name": 42}', '{}')
           RETURNING global_position""",
        tenant_id,
    ))


async def test_an_event_the_audit_cannot_apply_is_dead_lettered_and_every_other_event_lands(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """Never skip silently, never stop for everyone: the bad event is recorded as a dead letter
    (projection, tenant, position, error), logged at error level, and the follower goes on: the
    events before and after it are applied, the checkpoint passes it, the state stays running."""
    async with pool.acquire() as conn:
        good_before = [await append_user(conn, tenant.id, f"u{i}") for i in range(3)]
        bad = await _malformed(conn, tenant.id)
        after = await append_user(conn, tenant.id, "after")
        with capture_logs() as logs:
            state = await follower.catch_up(conn, AuditProjection())
        assert state == follower.RUNNING
        row = await follower.load_checkpoint(conn, "audit")
        assert row is not None and row.state == follower.RUNNING and row.failed_position is None
        audited = {r[0] for r in await conn.fetch("SELECT stream_id FROM audit_events")}
        assert audited == {*good_before, after}  # everything but the bad event
        [dead] = await dead_letters.listing(conn, "audit")
        assert (dead.tenant_id, dead.position, dead.type) == (tenant.id, bad, "user.deactivated")
        assert "user_name" in dead.error
        assert (await follower.lag(conn, "audit")).events == 0
        # applied again (a second catch-up, a restart) it is dead-lettered once, not twice
        assert await follower.catch_up(conn, AuditProjection()) == follower.RUNNING
        await follower.restart(conn, AuditProjection())
        assert await follower.catch_up(conn, AuditProjection()) == follower.RUNNING
        assert [d.position for d in await dead_letters.listing(conn, "audit")] == [bad]
        # the seal does not decode payloads: it seals the malformed event like any other
        assert await follower.catch_up(conn, SealProjection()) == follower.RUNNING
        assert await conn.fetchval("SELECT count(*) FROM audit_seals") == 5
    [logged] = [e for e in logs if e["event"] == "follower.dead_lettered"]
    assert logged["log_level"] == "error" and logged["position"] == bad and logged["projection"] == "audit"
    assert logged["tenant"] == str(tenant.id)


async def test_a_projection_that_cannot_run_at_all_stops_failed_instead_of_dead_lettering_the_log(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    """A systemic error (here a table missing, as after a deploy without its migration) is not
    the event's fault: the follower stops in `failed` with the position and the error, and
    dead-letters nothing, so the fix plus a restart loses nothing."""
    async with pool.acquire() as conn:
        first = await append_user(conn, tenant.id, "a")
        await append_user(conn, tenant.id, "b")
        await conn.execute("ALTER TABLE audit_targets RENAME TO audit_targets_gone")
        with capture_logs() as logs:
            assert await follower.catch_up(conn, AuditProjection()) == follower.FAILED
        row = await follower.load_checkpoint(conn, "audit")
        assert row is not None and row.state == follower.FAILED and row.error and "UndefinedTable" in row.error
        assert row.failed_position == await conn.fetchval(
            "SELECT global_position FROM events WHERE stream_id = $1", first)
        assert await dead_letters.counts(conn, ["audit"]) == {"audit": 0}
        assert [e["event"] for e in logs if e["log_level"] == "error"] == ["follower.failed"]
        await conn.execute("ALTER TABLE audit_targets_gone RENAME TO audit_targets")
        await follower.restart(conn, AuditProjection())
        assert await follower.catch_up(conn, AuditProjection()) == follower.RUNNING
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 2


class _Broken(AuditProjection):
    """A projection with a bug: every event fails, whatever it holds."""

    async def handle(self, conn: asyncpg.Connection, events: list[RecordedEvent]) -> None:
        raise TypeError("a bug in the projection")


async def test_failures_of_three_tenants_in_a_row_trip_the_breaker_but_one_tenant_alone_never_does(
    pool: asyncpg.Pool,
) -> None:
    """A bug that fails every event must not dead-letter the whole log: when events of
    BREAKER_TENANTS tenants fail in a row, with nothing applied between them (even one per
    catch-up), the follower stops (`failed`). One tenant's bad events alone, however many, only
    dead-letter those events."""
    tenants = [uuid.uuid4() for _ in range(3)]
    async with pool.acquire() as conn:
        for _ in range(5):
            await append_user(conn, tenants[0], "x")
        assert await follower.catch_up(conn, _Broken()) == follower.RUNNING
        assert await dead_letters.counts(conn, ["audit"]) == {"audit": 5}
        # a trickle: one event per catch-up, as a runner sees them; its breaker spans them all
        breaker = follower.Breaker()
        states = []
        for t in tenants:
            await append_user(conn, t, "y")
            states.append(await follower.catch_up(conn, _Broken(), breaker=breaker))
        assert states == [follower.RUNNING, follower.RUNNING, follower.FAILED]
        row = await follower.load_checkpoint(conn, "audit")
        assert row is not None and row.error == "TypeError: a bug in the projection"
        # the third tenant's event was not dead-lettered: it waits for the fix
        assert await dead_letters.counts(conn, ["audit"]) == {"audit": 7}
        assert await conn.fetchval(
            "SELECT count(*) FROM projection_dead_letters WHERE tenant_id = $1", tenants[2]) == 0


class _SlowAudit(AuditProjection):
    """The audit projection, holding its transaction open after writing its rows."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = asyncio.Event()

    async def handle(self, conn: asyncpg.Connection, events: list[RecordedEvent]) -> None:
        await super().handle(conn, events)
        self.inside.set()
        await asyncio.sleep(1.0)


async def test_view_rows_and_checkpoint_commit_together(dsn: str, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """A runner cancelled mid-batch leaves neither rows nor a checkpoint; a projection stopped by
    an operator mid-batch applies nothing of that batch (the checkpoint UPDATE finds it stopped)."""
    async with pool.acquire() as conn:
        for i in range(5):
            await append_user(conn, tenant.id, f"u{i}")
    slow = _SlowAudit()
    task = asyncio.create_task(follower.FollowerRunner(slow, follower_connector(dsn, "audit")).run())
    await asyncio.wait_for(slow.inside.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 0
        row = await follower.load_checkpoint(conn, "audit")
        assert row is not None and row.checkpoint == (0, 0)

        slow = _SlowAudit()
        work = asyncio.create_task(_catch_up_on_own_connection(dsn, slow))
        await asyncio.wait_for(slow.inside.wait(), 10)
        await follower.set_state(conn, "audit", follower.STOPPED)
        assert await work == follower.STOPPED
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 0
        row = await follower.load_checkpoint(conn, "audit")
        assert row is not None and row.checkpoint == (0, 0) and row.state == follower.STOPPED


async def _catch_up_on_own_connection(dsn: str, projection: follower.Projection) -> str:
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    try:
        return await follower.catch_up(conn, projection)
    finally:
        await conn.close()


async def test_one_active_runner_per_projection_and_a_standby_takes_over(
    dsn: str, pool: asyncpg.Pool, tenant: Tenant, run: Any
) -> None:
    runners = [
        follower.FollowerRunner(AuditProjection(), follower_connector(dsn, "audit"),
                                poll_interval=0.02, lock_retry=0.1)
        for _ in range(2)
    ]
    tasks = [run(r) for r in runners]
    await until(lambda: _true(any(r.active for r in runners)))
    await asyncio.sleep(0.3)  # several lock retries of the standby
    assert sum(r.active for r in runners) == 1
    async with pool.acquire() as conn:
        for i in range(20):
            await append_user(conn, tenant.id, f"u{i}")
        await until(lambda: _lag_zero(conn))
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 20
        holders = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
            "((classid::bigint << 32) | objid::bigint) = ($1::bigint & x'ffffffffffffffff'::bigint)",
            follower.lock_key("audit"),
        )
        assert holders == 1
        active = next(i for i, r in enumerate(runners) if r.active)
        tasks[active].cancel()
        await asyncio.gather(tasks[active], return_exceptions=True)
        standby = runners[1 - active]
        await until(lambda: _true(standby.active))
        await append_user(conn, tenant.id, "after-handover")
        await until(lambda: _lag_zero(conn))
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 21
        row = await follower.load_checkpoint(conn, "audit")
        assert row is not None and row.state == follower.RUNNING


async def _true(value: bool) -> bool:
    return value


async def _lag_zero(conn: asyncpg.Connection) -> bool:
    return (await follower.lag(conn, "audit")).events == 0


async def test_a_notify_wakes_an_idle_follower_long_before_its_poll(
    dsn: str, pool: asyncpg.Pool, tenant: Tenant, run: Any
) -> None:
    """With a 30 s poll, only the NOTIFY (sent after commit, outside it) can bring the event in."""
    runner = follower.FollowerRunner(AuditProjection(), follower_connector(dsn, "audit"), poll_interval=30)
    run(runner)
    notifier = CommitNotifier(pool)
    notifying = asyncio.create_task(notifier.run())
    try:
        async with pool.acquire() as conn:
            await until(lambda: _true(runner.active))
            await until(lambda: _lag_zero(conn))
            await asyncio.sleep(0.1)  # the runner is waiting now
            await append_user(conn, tenant.id, "woken")
            started = time.monotonic()
            notifier.poke()
            await until(lambda: _lag_zero(conn), within=5)
            assert time.monotonic() - started < 5 and notifier.sent == 1
            assert await conn.fetchval("SELECT count(*) FROM audit_events") == 1
    finally:
        notifying.cancel()
        await asyncio.gather(notifying, return_exceptions=True)


async def test_lag_counts_pending_events_and_their_age(pool: asyncpg.Pool, tenant: Tenant) -> None:
    async with pool.acquire() as conn:
        assert await follower.lag(conn, "audit") == follower.Lag(0, 0.0)
        stream = await append_user(conn, tenant.id, "a")
        await append(conn, tenant.id, "user", stream, 1,
                     [NewEvent("user.updated", encode_event(UserUpdated(set={"displayName": "A"})))], CLI_ACTOR)
        await asyncio.sleep(0.05)
        behind = await follower.lag(conn, "audit")
        assert behind.events == 2 and behind.seconds >= 0.05
        assert await follower.catch_up(conn, AuditProjection(), batch_size=1) == follower.RUNNING
        assert await follower.lag(conn, "audit") == follower.Lag(0, 0.0)
        # a restart empties the view and applies everything again
        await follower.restart(conn, AuditProjection())
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 0
        assert await follower.catch_up(conn, AuditProjection()) == follower.RUNNING
        assert await conn.fetchval("SELECT count(*) FROM audit_events") == 2
