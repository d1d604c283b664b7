"""What the inline and the follower rebuilds share: the error, the result, the one-at-a-time
lock, and the comparison of a live table with its rebuild."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

REBUILD_LOCK = 0x5C1_4EB1D  # one rebuild or verify at a time (session advisory lock)


class RebuildError(Exception):
    """A rebuild cannot start or cannot finish (nothing has been swapped)."""


@dataclass(frozen=True)
class RebuildResult:
    projection: str
    events: int
    seconds: float
    tail_events: int = 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class RebuildLock:
    """Session advisory lock: one rebuild or verify at a time."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> None:
        self.conn = await self.pool.acquire()
        if not await self.conn.fetchval("SELECT pg_try_advisory_lock($1)", REBUILD_LOCK):
            await self.pool.release(self.conn)
            self.conn = None
            raise RebuildError("another rebuild or verify is running")

    async def __aexit__(self, *exc: object) -> None:
        assert self.conn is not None
        try:
            await self.conn.execute("SELECT pg_advisory_unlock($1)", REBUILD_LOCK)
        finally:
            await self.pool.release(self.conn)


async def differences(
    conn: asyncpg.Connection, label: str, columns: tuple[str, ...], live: str, rebuilt: str, *, limit: int
) -> list[str]:
    """The rows of `live` and `rebuilt` that the other lacks (EXCEPT both ways, at most `limit`
    each), as "<label>: only in the live view|only in the rebuild: {row}"."""
    cols = ", ".join(columns)
    found: list[str] = []
    for side, left, right in (("only in the live view", live, rebuilt), ("only in the rebuild", rebuilt, live)):
        rows = await conn.fetch(f"SELECT {cols} FROM {left} EXCEPT SELECT {cols} FROM {right} LIMIT {limit}")
        found += [f"{label}: {side}: {dict(r.items())}" for r in rows]
    return found
