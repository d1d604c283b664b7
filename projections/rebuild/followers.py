"""Follower projections (audit, seal) rebuilt in a shadow schema, and verified against a replay.

`handle` runs with the connection's search_path starting at the shadow schema, so its unqualified
table names resolve to the shadow tables; the swap then locks the live tables (waiting for an
in-flight batch), replays the last events, moves the shadow tables into place and sets the
checkpoint to the shadow's, in one transaction. The runner's next batch finds its checkpoint
moved and re-reads from the new one. Which tables a follower writes comes from
projections.registry.

The replay isolates what it cannot apply exactly as the runner does (runner.follow): an event
that fails becomes a dead letter in a shadow copy of `projection_dead_letters`, and the swap
replaces the projection's live dead letters with those. So a rebuild never fails on one bad
event, and after a fix it leaves no dead letter for the events that apply now. An error that is
the projection's (runner.SYSTEMIC_ERRORS, or the breaker) fails the rebuild, nothing swapped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from eventstore.stats import EventKey, count_events
from eventstore.store import BEGINNING, Checkpoint, RecordedEvent
from projections import registry
from projections.followers import dead_letters
from projections.followers import runner as follower
from projections.followers.runner import Projection
from projections.rebuild.common import RebuildError, RebuildLock, RebuildResult, differences
from projections.rebuild.ddl import index_sql, prepare_shadow, table_columns
from projections.rebuild.progress import Progress

log = structlog.get_logger("scimledger.rebuild")

SHADOW_SCHEMA = "scimledger_shadow"  # where a follower's shadow tables live


def follower_tables(projection: Projection) -> tuple[str, ...]:
    """The tables `projection` writes (what its `reset` empties), from the registry."""
    registered = registry.get(projection.name)
    if registered is None or registered.kind != registry.FOLLOWER or not registered.tables:
        raise RebuildError(f"no table list for follower {projection.name!r}")
    return registered.tables


async def _live_schema(conn: asyncpg.Connection, table: str) -> str:
    return str(await conn.fetchval("SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = $1::regclass", table))


async def _prepare_follower_shadow(conn: asyncpg.Connection, tables: Sequence[str]) -> str:
    """The shadow schema with empty copies of `tables`, indexes included (a follower reads its
    own tables while it applies: ON CONFLICT, the previous hash). Returns the live schema."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE")
    await conn.execute(f"CREATE SCHEMA {SHADOW_SCHEMA}")
    schemas = {await _live_schema(conn, t) for t in tables}
    if len(schemas) != 1:
        raise RebuildError(f"the tables {tables} are not in one schema")
    for table in tables:
        shadow = await prepare_shadow(conn, table, schema=SHADOW_SCHEMA)
        for index in shadow.indexes:
            for statement in index_sql(index, f"{SHADOW_SCHEMA}.{table}", index.name):
                await conn.execute(statement)
    live = schemas.pop()
    await conn.execute(
        f"""CREATE TABLE {SHADOW_SCHEMA}.{dead_letters.TABLE}
            (LIKE {live}.{dead_letters.TABLE} INCLUDING ALL)"""
    )
    return live


async def rebuild_follower(
    pool: asyncpg.Pool, projection: Projection, *, batch_size: int = 5000,
    tty: bool = False, stream: Any = None,
) -> RebuildResult:
    """Replay the whole log through `projection.handle` into shadow copies of its tables, then
    swap them in together with the checkpoint (see the module doc)."""
    tables = follower_tables(projection)
    async with RebuildLock(pool), pool.acquire() as conn:
        try:
            live = await _prepare_follower_shadow(conn, tables)
            progress = Progress(projection.name, await count_events(conn), tty=tty, stream=stream)
            after = await _replay_into_shadow(conn, projection, BEGINNING, batch_size, progress)
            seconds = progress.finish()
            previous = (await follower.ensure_checkpoint(conn, projection.name)).state
            # stop the runner (its batch in flight fails its checkpoint check and rolls back) and
            # hold its advisory lock, so no runner applies anything during the swap
            await follower.set_state(conn, projection.name, follower.STOPPED)
            try:
                await _take_runner_lock(conn, projection.name)
                try:
                    await _swap_follower(conn, projection, tables, live, after, batch_size, previous)
                finally:
                    await follower.unlock(conn, projection.name)
            except BaseException:
                if previous != follower.STOPPED:
                    await _restore_state(conn, projection.name, previous)
                raise
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE")
    log.info("rebuild.swapped", projection=projection.name, events=progress.done)
    return RebuildResult(projection.name, progress.done, seconds)


async def _take_runner_lock(conn: asyncpg.Connection, name: str, *, timeout_s: float = 30.0) -> None:
    """The projection's runner lock; a stopped runner lets go of it within its retry period."""
    deadline = time.monotonic() + timeout_s
    while not await follower.try_lock(conn, name):
        if time.monotonic() > deadline:
            raise RebuildError(f"the {name} runner did not stop within {timeout_s:.0f}s")
        await asyncio.sleep(0.05)


async def _restore_state(conn: asyncpg.Connection, name: str, state: str) -> None:
    await conn.execute("UPDATE projection_checkpoints SET state = $2 WHERE name = $1", name, state)


async def _swap_follower(
    conn: asyncpg.Connection, projection: Projection, tables: Sequence[str], live: str,
    after: Checkpoint, batch_size: int, previous_state: str,
) -> None:
    """One transaction: the last events into the shadows, the shadows into place, the checkpoint
    to the shadows' position and the state back to running (unless an operator had stopped it;
    a failed projection runs again: the replay applied every event, the failed one included)."""
    async with conn.transaction():
        await conn.execute(f"LOCK TABLE {', '.join(f'{live}.{t}' for t in tables)} IN ACCESS EXCLUSIVE MODE")
        after = await _replay_into_shadow(conn, projection, after, batch_size, None)
        for t in tables:
            await conn.execute(f"DROP TABLE {live}.{t}")
            await conn.execute(f"ALTER TABLE {SHADOW_SCHEMA}.{t} SET SCHEMA {live}")
        await dead_letters.clear(conn, projection.name, schema=live)
        await conn.execute(
            f"INSERT INTO {live}.{dead_letters.TABLE} SELECT * FROM {SHADOW_SCHEMA}.{dead_letters.TABLE}"
        )
        await conn.execute(
            """UPDATE projection_checkpoints
               SET tx = $2::text::xid8, position = $3, updated_at = now(), state = $4,
                   error = NULL, failed_position = NULL
               WHERE name = $1""",
            projection.name, str(after[0]), after[1],
            follower.STOPPED if previous_state == follower.STOPPED else follower.RUNNING,
        )


async def verify_follower(
    pool: asyncpg.Pool, projection: Projection, *, batch_size: int = 5000, limit: int = 20,
    tty: bool = False, stream: Any = None,
) -> list[str]:
    """Replay into shadow tables up to the live checkpoint and compare (EXCEPT both ways). The
    last stretch and the comparison run with the live tables locked in SHARE mode, so the runner
    waits (reads go on) and the checkpoint cannot move under the comparison."""
    tables = follower_tables(projection)
    found: list[str] = []
    async with RebuildLock(pool), pool.acquire() as conn:
        try:
            live = await _prepare_follower_shadow(conn, tables)
            start = await follower.load_checkpoint(conn, projection.name)
            progress = Progress(projection.name, await count_events(conn), tty=tty, stream=stream)
            after = await _replay_into_shadow(
                conn, projection, BEGINNING, batch_size, progress, until=start.checkpoint if start else BEGINNING
            )
            progress.finish()
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute(f"LOCK TABLE {', '.join(f'{live}.{t}' for t in tables)} IN SHARE MODE")
                current = await follower.load_checkpoint(conn, projection.name)
                until = current.checkpoint if current else BEGINNING
                await _replay_into_shadow(conn, projection, after, batch_size, None, until=until)
                for t in tables:
                    columns = await table_columns(conn, f"{live}.{t}")
                    found += await differences(
                        conn, f"{projection.name}/{t}", columns, f"{live}.{t}", f"{SHADOW_SCHEMA}.{t}", limit=limit
                    )
            finally:
                await tx.rollback()
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE")
    return found


@dataclass
class _Shadow:
    """The replay's target (runner.Target): each unit a transaction with the shadow schema first
    on the search_path, so the projection's unqualified tables, and the dead letters, resolve to
    the shadow copies."""

    conn: asyncpg.Connection
    search_path: str

    @asynccontextmanager
    async def unit(self, after: Checkpoint, upto: Checkpoint) -> AsyncIterator[None]:
        async with self.conn.transaction():
            await self.conn.execute(f"SET LOCAL search_path = {SHADOW_SCHEMA}, {self.search_path}")
            yield
            await self.conn.execute(f"SET LOCAL search_path = {self.search_path}")

    async def failed(self, event: RecordedEvent | EventKey, error: BaseException) -> None:
        raise RebuildError(
            f"the projection cannot apply the event at position {event.global_position}, and not "
            f"for that event alone: {follower.error_text(error)}"
        ) from error


async def _replay_into_shadow(
    conn: asyncpg.Connection, projection: Projection, after: Checkpoint, batch_size: int,
    progress: Progress | None, *, until: Checkpoint | None = None,
) -> Checkpoint:
    """Feed the log after `after` (up to `until` included, if given) to the projection, into
    the shadow tables, isolating what cannot be applied; returns the new checkpoint."""
    target = _Shadow(conn, str(await conn.fetchval("SHOW search_path")))
    _, reached = await follower.follow(
        conn, projection, target, after, batch_size=batch_size, until=until,
        progress=progress.advance if progress is not None else None,
    )
    return reached
