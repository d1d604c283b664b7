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

An event the projection cannot apply stops the projection: the runner re-applies the failed batch
one event at a time (so every event before the bad one is applied and checkpointed), records
state `failed` with the bad event's position and the error, logs it at error level, and applies
nothing more until an operator restarts the projection. Nothing is ever skipped silently.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg
import structlog

from eventstore.stats import lag_after
from eventstore.store import BEGINNING, Checkpoint, RecordedEvent, read_all

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


class Projection(Protocol):
    """An async view of the log. `handle` applies a batch (the runner commits it together with
    the checkpoint); `reset` empties the view for a rebuild from the beginning."""

    name: str

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


async def apply_batch(
    conn: asyncpg.Connection, projection: Projection, after: Checkpoint, events: Sequence[RecordedEvent]
) -> None:
    """Apply `events` (read after `after`) and advance the checkpoint, in one transaction.

    Raises _NoLongerRunning (and applies nothing) if the checkpoint is no longer `after` or the
    projection is no longer running."""
    async with conn.transaction():
        await projection.handle(conn, list(events))
        last = events[-1].checkpoint
        status = await conn.execute(
            """UPDATE projection_checkpoints
               SET tx = $2::text::xid8, position = $3, updated_at = now()
               WHERE name = $1 AND state = 'running' AND tx = $4::text::xid8 AND position = $5""",
            projection.name, str(last[0]), last[1], str(after[0]), after[1],
        )
        if status != "UPDATE 1":
            raise _NoLongerRunning(projection.name)


async def _mark_failed(conn: asyncpg.Connection, name: str, event: RecordedEvent, error: BaseException) -> None:
    message = f"{type(error).__name__}: {error}"[:4000]
    await conn.execute(
        """UPDATE projection_checkpoints
           SET state = 'failed', error = $2, failed_position = $3, updated_at = now()
           WHERE name = $1 AND state = 'running'""",
        name, message, event.global_position,
    )
    log.error(
        "follower.failed",
        projection=name,
        position=event.global_position,
        event_type=event.type,
        tenant=str(event.tenant_id),
        stream=str(event.stream_id),
        version=event.version,
        error=message,
        exc_info=error,
    )


async def _isolate_failure(
    conn: asyncpg.Connection, projection: Projection, after: Checkpoint, events: Sequence[RecordedEvent]
) -> str:
    """A batch failed: apply it one event at a time, so everything before the bad event lands,
    then record the bad event and stop. Returns the state the projection ends in."""
    for event in events:
        try:
            await apply_batch(conn, projection, after, [event])
        except _NoLongerRunning:
            return STOPPED
        except TRANSIENT_ERRORS:
            raise
        except Exception as e:  # whatever the projection raised: this event cannot be applied
            await _mark_failed(conn, projection.name, event, e)
            return FAILED
        after = event.checkpoint
    return RUNNING  # the batch failed as a whole but each event applied: nothing is lost


async def catch_up(conn: asyncpg.Connection, projection: Projection, *, batch_size: int = 1000) -> str:
    """Apply every committed event after the checkpoint, batch by batch. Returns the state the
    projection is in at the end: `running` (caught up), `stopped` or `failed`."""
    row = await ensure_checkpoint(conn, projection.name)
    if row.state != RUNNING:
        return row.state
    after = row.checkpoint
    while True:
        events = await read_all(conn, after=after, limit=batch_size)
        if not events:
            return RUNNING
        try:
            await apply_batch(conn, projection, after, events)
        except _NoLongerRunning:
            current = await load_checkpoint(conn, projection.name)
            return current.state if current and current.state != RUNNING else STOPPED
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            state = await _isolate_failure(conn, projection, after, events)
            if state != RUNNING:
                return state
        after = events[-1].checkpoint
        if len(events) < batch_size:
            return RUNNING


async def try_lock(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(name)))


async def unlock(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", lock_key(name))


async def lag(conn: asyncpg.Connection, name: str) -> Lag:
    """Committed events after the projection's checkpoint, and the age of the oldest of them."""
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
                    self.state = await catch_up(conn, self.projection, batch_size=self.batch_size)
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
