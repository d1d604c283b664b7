"""The follower runner: async projections fed from the global log, gap-free and checkpointed.

A follower reads `eventstore.store.read_all` after its checkpoint (gap-free: only transactions
older than the oldest one still running, in (transaction id, position) order), hands each batch
to its projection and commits the view rows AND the new checkpoint in one transaction, so a crash
or a cancel anywhere leaves the view exactly at its checkpoint. The checkpoint UPDATE also checks
that the checkpoint is still the one the batch was read after and that the projection is still
`running`: an operator who stops it (or a second runner, should the lock below ever be lost) makes
the batch roll back instead of applying twice.

One active runner per projection across every worker and host: the runner holds a session-level
advisory lock (pg_try_advisory_lock) on its own dedicated connection; the others stand by and
retry every `lock_retry` seconds. The lock dies with the connection, so a crashed worker hands
over within one retry period.

Waking: the runner LISTENs on `CHANNEL`; the service NOTIFYs it after its write transactions
commit (outside them, debounced: service/runtime/followers.py), so the follower wakes within milliseconds.
A poll every `poll_interval` (200 ms) is the backstop for writers that do not notify (the CLI, a
psql session). NOTIFY only wakes; the data always comes from the log.

No poisoned follower: the log is shared by every tenant, so an event one tenant's data makes
impossible to apply must not stop the others. When a batch fails, the runner applies it again
one event at a time; an event that still fails (or that the codec cannot even decode) becomes a
dead letter (projections/followers/dead_letters.py), recorded in the same transaction as the
checkpoint that steps over it, logged at error level, and the runner goes on. The projection's
`isolation` says what the dead letter costs: EVENT (audit) misses that one event; TENANT (seal,
whose hash chain cannot skip a link) stops that tenant at it, and its later events are left
unsealed. Nothing is skipped silently: the dead letters show in `projections status`,
`/metrics`, and as "complete": false in that tenant's audit answers; a rebuild replays them.

An error that is the projection's and not the event's stops it instead, in state `failed`, as
before: a schema not migrated, a missing privilege, a full disk (SYSTEMIC_ERRORS), or failures
of events of BREAKER_TENANTS different tenants in a row with nothing applied in between (one
tenant alone can never trip it). Then nothing more is applied until an operator fixes the cause
and restarts or rebuilds the projection.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
import structlog

from eventstore.stats import EventKey, lag_after, next_key
from eventstore.store import BEGINNING, Checkpoint, RecordedEvent, read_all
from projections.followers import dead_letters
from projections.followers.dead_letters import TENANT

log = structlog.get_logger("scimledger.follower")

CHANNEL = "scimledger_events"
RUNNING, STOPPED, FAILED = "running", "stopped", "failed"

# Errors of the connection or the server, not of the event: retried after reconnecting, never
# recorded as a failed projection.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)

# Errors that say the projection cannot run at all, whatever the event: it stops (`failed`)
# instead of dead-lettering the whole log.
SYSTEMIC_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.UndefinedTableError,
    asyncpg.exceptions.UndefinedColumnError,
    asyncpg.exceptions.UndefinedFunctionError,
    asyncpg.exceptions.InsufficientPrivilegeError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.InsufficientResourcesError,  # disk full, out of memory, too many connections
)
BREAKER_TENANTS = 3  # failing events of this many tenants in a row: the projection's fault


class Projection(Protocol):
    """An async view of the log. `handle` applies a batch (the runner commits it together with
    the checkpoint); `reset` empties the view for a rebuild from the beginning. `isolation`
    (EVENT or TENANT) says what an event it cannot apply costs (module doc)."""

    name: str
    isolation: str

    async def handle(self, conn: asyncpg.Connection, events: list[RecordedEvent]) -> None: ...

    async def reset(self, conn: asyncpg.Connection) -> None: ...


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    name: str
    checkpoint: Checkpoint
    state: str
    error: str | None
    failed_position: int | None
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a projection is behind the log: committed events not yet applied, and how long
    the oldest of them has been waiting (0 when caught up)."""

    events: int
    seconds: float


class _NoLongerRunning(Exception):
    """The checkpoint moved or the projection was stopped while a batch was being applied."""


def lock_key(name: str) -> int:
    """The advisory lock key of a projection: a stable signed 64-bit hash of its name."""
    digest = hashlib.sha256(b"scimledger.follower:" + name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_CHECKPOINT_COLUMNS = """name, tx::text::bigint AS tx, position, state, error, failed_position,
updated_at"""


def _checkpoint_row(record: asyncpg.Record) -> CheckpointRow:
    return CheckpointRow(
        name=record["name"],
        checkpoint=(int(record["tx"]), int(record["position"])),
        state=record["state"],
        error=record["error"],
        failed_position=record["failed_position"],
        updated_at=record["updated_at"],
    )


async def load_checkpoint(conn: asyncpg.Connection, name: str) -> CheckpointRow | None:
    record = await conn.fetchrow(
        f"SELECT {_CHECKPOINT_COLUMNS} FROM projection_checkpoints WHERE name = $1", name
    )
    return _checkpoint_row(record) if record else None


async def ensure_checkpoint(conn: asyncpg.Connection, name: str) -> CheckpointRow:
    """The projection's checkpoint, created at the beginning of the log if it has none."""
    await conn.execute(
        "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", name
    )
    row = await load_checkpoint(conn, name)
    assert row is not None
    return row


async def all_checkpoints(conn: asyncpg.Connection) -> list[CheckpointRow]:
    records = await conn.fetch(f"SELECT {_CHECKPOINT_COLUMNS} FROM projection_checkpoints ORDER BY name")
    return [_checkpoint_row(r) for r in records]


async def restart(conn: asyncpg.Connection, projection: Projection) -> None:
    """Empty the view and start it again from the beginning of the log, state `running` (after
    the cause of a failure is fixed). One transaction: the view and checkpoint move together."""
    async with conn.transaction():
        await projection.reset(conn)
        await dead_letters.clear(conn, projection.name)
        await conn.execute(
            """INSERT INTO projection_checkpoints AS c (name) VALUES ($1)
               ON CONFLICT (name) DO UPDATE SET tx = '0', position = 0, state = 'running',
                   error = NULL, failed_position = NULL, updated_at = now()""",
            projection.name,
        )


async def set_state(conn: asyncpg.Connection, name: str, state: str) -> None:
    """Stop (`stopped`) or resume (`running`) a projection; a running follower notices at its
    next batch."""
    if state not in (RUNNING, STOPPED):
        raise ValueError(f"state must be {RUNNING!r} or {STOPPED!r}")
    await ensure_checkpoint(conn, name)
    await conn.execute(
        """UPDATE projection_checkpoints SET state = $2, updated_at = now(),
               error = CASE WHEN $2 = 'running' THEN NULL ELSE error END,
               failed_position = CASE WHEN $2 = 'running' THEN NULL ELSE failed_position END
           WHERE name = $1""",
        name, state,
    )


async def apply_events(conn: asyncpg.Connection, projection: Projection, events: Sequence[RecordedEvent]) -> None:
    """In the caller's transaction: `projection.handle(events)`, less the events of the tenants
    a TENANT-isolated projection has stopped for (those with a dead letter)."""
    batch = list(events)
    if projection.isolation == TENANT:
        blocked = await dead_letters.blocked_tenants(conn, projection.name, {e.tenant_id for e in batch})
        batch = [e for e in batch if e.tenant_id not in blocked]
    if batch:
        await projection.handle(conn, batch)


async def _advance(conn: asyncpg.Connection, name: str, after: Checkpoint, upto: Checkpoint) -> None:
    """Move the checkpoint from `after` to `upto`, only if it is still `after` and the projection
    still running; else _NoLongerRunning (the caller's transaction then rolls back)."""
    status = await conn.execute(
        """UPDATE projection_checkpoints
           SET tx = $2::text::xid8, position = $3, updated_at = now()
           WHERE name = $1 AND state = 'running' AND tx = $4::text::xid8 AND position = $5""",
        name, str(upto[0]), upto[1], str(after[0]), after[1],
    )
    if status != "UPDATE 1":
        raise _NoLongerRunning(name)


async def apply_batch(
    conn: asyncpg.Connection, projection: Projection, after: Checkpoint, events: Sequence[RecordedEvent]
) -> None:
    """Apply `events` (read after `after`) and advance the checkpoint, in one transaction.

    Raises _NoLongerRunning (and applies nothing) if the checkpoint is no longer `after` or the
    projection is no longer running."""
    async with conn.transaction():
        await apply_events(conn, projection, events)
        await _advance(conn, projection.name, after, events[-1].checkpoint)


def error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:4000]


async def _mark_failed(conn: asyncpg.Connection, name: str, event: RecordedEvent | EventKey, error: BaseException) -> None:
    message = error_text(error)
    await conn.execute(
        """UPDATE projection_checkpoints
           SET state = 'failed', error = $2, failed_position = $3, updated_at = now()
           WHERE name = $1 AND state = 'running'""",
        name, message, event.global_position,
    )
    log.error("follower.failed", projection=name, error=message, exc_info=error, **_where(event))


def _where(event: RecordedEvent | EventKey) -> dict[str, object]:
    return {
        "position": event.global_position, "event_type": event.type[:200],
        "tenant": str(event.tenant_id), "stream": str(event.stream_id),
    }


class Target(Protocol):
    """Where a follower's events go, one transaction per `unit`: the live view and its
    checkpoint (the runner), or a rebuild's shadow tables."""

    def unit(self, after: Checkpoint, upto: Checkpoint) -> AbstractAsyncContextManager[None]:
        """A transaction that takes the target from `after` to `upto` if its body succeeds."""
        ...

    async def failed(self, event: RecordedEvent | EventKey, error: BaseException) -> None:
        """The projection cannot run (not this event's fault): stop, or raise."""
        ...


@dataclass
class _Live:
    """The runner's target: the live view, its checkpoint advanced in the same transaction."""

    conn: asyncpg.Connection
    name: str

    @asynccontextmanager
    async def unit(self, after: Checkpoint, upto: Checkpoint) -> AsyncIterator[None]:
        async with self.conn.transaction():
            yield
            await _advance(self.conn, self.name, after, upto)

    async def failed(self, event: RecordedEvent | EventKey, error: BaseException) -> None:
        await _mark_failed(self.conn, self.name, event, error)


@dataclass
class Breaker:
    """The tenants of the events that failed in a row, since the last one applied. A runner
    keeps one for its life, so failures spread over many small catch-ups still add up."""

    tenants: set[uuid.UUID] = field(default_factory=set)

    def applied(self) -> None:
        self.tenants.clear()

    def trips(self, tenant_id: uuid.UUID) -> bool:
        self.tenants.add(tenant_id)
        return len(self.tenants) >= BREAKER_TENANTS


async def _cannot_apply(
    conn: asyncpg.Connection, projection: Projection, target: Target, after: Checkpoint,
    event: RecordedEvent | EventKey, error: BaseException, breaker: Breaker,
) -> str:
    """`event` cannot be applied: dead-letter it and go on (RUNNING), or, when the fault is the
    projection's, stop (FAILED); STOPPED if an operator stopped the projection meanwhile."""
    if isinstance(error, SYSTEMIC_ERRORS) or breaker.trips(event.tenant_id):
        await target.failed(event, error)
        return FAILED
    message = error_text(error)
    try:
        async with target.unit(after, event.checkpoint):
            await dead_letters.record(conn, projection.name, event.tenant_id, event.checkpoint, message)
    except _NoLongerRunning:
        return STOPPED
    log.error(
        "follower.dead_lettered", projection=projection.name, isolation=projection.isolation,
        error=message, exc_info=error, **_where(event),
    )
    return RUNNING


async def _apply_isolating(
    conn: asyncpg.Connection, projection: Projection, target: Target, after: Checkpoint,
    events: Sequence[RecordedEvent], breaker: Breaker,
) -> str:
    """Apply a batch in one transaction; if it fails, one event at a time, so every event but
    the bad ones lands, each bad one dead-lettered. Returns the state the projection is in."""
    try:
        async with target.unit(after, events[-1].checkpoint):
            await apply_events(conn, projection, events)
        breaker.applied()
        return RUNNING
    except _NoLongerRunning:
        return STOPPED
    except TRANSIENT_ERRORS:
        raise
    except Exception:  # whatever the projection raised: find the event(s) that cannot be applied
        pass
    for event in events:
        try:
            async with target.unit(after, event.checkpoint):
                await apply_events(conn, projection, [event])
            breaker.applied()
        except _NoLongerRunning:
            return STOPPED
        except TRANSIENT_ERRORS:
            raise
        except Exception as e:
            state = await _cannot_apply(conn, projection, target, after, event, e, breaker)
            if state != RUNNING:
                return state
        after = event.checkpoint
    return RUNNING


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The next event of the log cannot be decoded (the codec raised): its key and the error."""

    key: EventKey
    error: BaseException


async def read_batch(conn: asyncpg.Connection, after: Checkpoint, limit: int) -> list[RecordedEvent] | Unreadable:
    """`read_all`, except that an event the codec cannot decode does not stop the reader: the
    events before it come back first, then the next call answers Unreadable for it. Costs one
    read per event of the batch, only for a batch that holds such an event."""
    try:
        return await read_all(conn, after=after, limit=limit)
    except TRANSIENT_ERRORS:
        raise
    except Exception:
        pass
    events: list[RecordedEvent] = []
    while len(events) < limit:
        try:
            one = await read_all(conn, after=after, limit=1)
        except TRANSIENT_ERRORS:
            raise
        except Exception as error:
            if events:
                return events
            key = await next_key(conn, after)
            if key is None:  # cannot happen: the same read found an event there
                raise
            return Unreadable(key, error)
        if not one:
            break
        events += one
        after = one[0].checkpoint
    return events


async def follow(
    conn: asyncpg.Connection, projection: Projection, target: Target, after: Checkpoint, *,
    batch_size: int, until: Checkpoint | None = None, progress: Callable[[int], None] | None = None,
    breaker: Breaker | None = None,
) -> tuple[str, Checkpoint]:
    """Feed `target` every committed event after `after` (up to `until`, if given), batch by
    batch, isolating the events that cannot be applied. Returns the state at the end and the
    checkpoint reached."""
    breaker = breaker if breaker is not None else Breaker()
    while until is None or after < until:
        batch = await read_batch(conn, after, batch_size)
        if isinstance(batch, Unreadable):
            if until is not None and batch.key.checkpoint > until:
                break
            state = await _cannot_apply(conn, projection, target, after, batch.key, batch.error, breaker)
            if state != RUNNING:
                return state, after
            after = batch.key.checkpoint
            continue
        events = [e for e in batch if until is None or e.checkpoint <= until]
        if not events:
            break
        state = await _apply_isolating(conn, projection, target, after, events, breaker)
        if state != RUNNING:
            return state, after
        after = events[-1].checkpoint
        if progress is not None:
            progress(len(events))
        if len(events) < batch_size:
            break
    return RUNNING, after


async def catch_up(
    conn: asyncpg.Connection, projection: Projection, *, batch_size: int = 1000, breaker: Breaker | None = None
) -> str:
    """Apply every committed event after the checkpoint, batch by batch. Returns the state the
    projection is in at the end: `running` (caught up), `stopped` or `failed`."""
    row = await ensure_checkpoint(conn, projection.name)
    if row.state != RUNNING:
        return row.state
    state, _ = await follow(
        conn, projection, _Live(conn, projection.name), row.checkpoint, batch_size=batch_size, breaker=breaker
    )
    if state == STOPPED:
        current = await load_checkpoint(conn, projection.name)
        return current.state if current and current.state != RUNNING else STOPPED
    return state


async def try_lock(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(name)))


async def unlock(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", lock_key(name))


async def lag(conn: asyncpg.Connection, name: str) -> Lag:
    """Committed events after the projection's checkpoint (counted up to
    eventstore.stats.LAG_CAP), and the age of the oldest of them."""
    row = await load_checkpoint(conn, name)
    events, seconds = await lag_after(conn, row.checkpoint if row else BEGINNING)
    return Lag(events=events, seconds=seconds)


async def catch_up_once(
    conn: asyncpg.Connection, projection: Projection, *, batch_size: int = 1000, wait_s: float = 5.0
) -> str:
    """One-shot catch-up for a command that needs the view current (the CLI without `serve`).

    If no runner holds the projection's lock, take it, catch up and let go. If one does (serve
    is running), it is catching up already: wait up to `wait_s` for the lag to reach zero.
    Returns the projection's state."""
    if await try_lock(conn, projection.name):
        try:
            return await catch_up(conn, projection, batch_size=batch_size)
        finally:
            await unlock(conn, projection.name)
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        row = await ensure_checkpoint(conn, projection.name)
        if row.state != RUNNING or (await lag(conn, projection.name)).events == 0:
            return row.state
        if asyncio.get_running_loop().time() >= deadline:
            return row.state
        await asyncio.sleep(0.05)


Connect = Callable[[], Awaitable[asyncpg.Connection]]


class FollowerRunner:
    """Runs one projection for as long as its task lives: stand by for the lock, then catch up,
    wait for a NOTIFY or the poll timeout, catch up again. Cancel the task to stop it."""

    def __init__(
        self,
        projection: Projection,
        connect: Connect,
        *,
        batch_size: int = 1000,
        poll_interval: float = 0.2,
        lock_retry: float = 2.0,
        channel: str = CHANNEL,
    ) -> None:
        self.projection = projection
        self._connect = connect
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lock_retry = lock_retry
        self.channel = channel
        self.active = False  # holds the lock and is applying events
        self.state: str | None = None  # the projection's state as this runner last saw it
        self.breaker = Breaker()

    @property
    def name(self) -> str:
        return self.projection.name

    async def run(self) -> None:
        while True:
            try:
                conn = await self._connect()
            except TRANSIENT_ERRORS as e:
                log.warning("follower.connect_failed", projection=self.name, error=repr(e))
                await asyncio.sleep(self.lock_retry)
                continue
            try:
                await self._follow(conn)
            except TRANSIENT_ERRORS as e:
                log.warning("follower.connection_lost", projection=self.name, error=repr(e))
            except Exception:  # a bug or a schema not migrated yet: say so, retry, never die
                log.exception("follower.crashed", projection=self.name)
            finally:
                self.active = False
                await _close(conn)
            await asyncio.sleep(self.lock_retry)

    async def _follow(self, conn: asyncpg.Connection) -> None:
        wake = asyncio.Event()

        def on_notify(*_: object) -> None:
            wake.set()

        await conn.add_listener(self.channel, on_notify)
        while True:
            if not await try_lock(conn, self.name):
                await asyncio.sleep(self.lock_retry)
                continue
            self.active = True
            announced = False
            try:
                while True:
                    wake.clear()  # before reading: a NOTIFY during catch_up is not lost
                    self.state = await catch_up(
                        conn, self.projection, batch_size=self.batch_size, breaker=self.breaker
                    )
                    if self.state != RUNNING:
                        break
                    if not announced:  # once per lock tenure (a failed one re-checks quietly)
                        log.info("follower.active", projection=self.name)
                        announced = True
                    # asyncio.timeout, not wait_for: on Python 3.11 a cancel that lands as the
                    # wait times out is swallowed by wait_for, and the runner never stops
                    try:
                        async with asyncio.timeout(self.poll_interval):
                            await wake.wait()
                    except TimeoutError:
                        pass
            finally:
                self.active = False
            # stopped or failed: let go of the lock and check again later (an operator may
            # restart it); another worker doing the same changes nothing
            await unlock(conn, self.name)
            await asyncio.sleep(self.lock_retry)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        async with asyncio.timeout(2):
            await conn.close()
    except asyncio.CancelledError:
        conn.terminate()
        raise  # a stop request stays a stop request
    except Exception:
        conn.terminate()
