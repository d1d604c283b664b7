"""`append_with`: the append and the caller's view statement in one statement, with the same
guard as `append` and one translation of the events unique violation."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from eventstore.store import (
    NewEvent,
    WrongExpectedVersion,
    append_with,
    read_stream,
    stream_version,
)

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
META = {"actor": {"label": "test"}}

# a scratch view: one row per stream, with a unique name (like the users view's userName)
_VIEW_DDL = """CREATE TABLE scratch (tenant_id uuid, id uuid, version int NOT NULL, name text NOT NULL,
                                     PRIMARY KEY (tenant_id, id));
               CREATE UNIQUE INDEX scratch_name ON scratch (tenant_id, name)"""
_UPSERT = """INSERT INTO scratch (tenant_id, id, version, name)
SELECT $1, $3, (SELECT max(version) FROM ev), $8
WHERE EXISTS (SELECT 1 FROM ev)
ON CONFLICT (tenant_id, id) DO UPDATE SET version = excluded.version, name = excluded.name
RETURNING id, version, name"""


async def _write(conn: asyncpg.Connection, stream: uuid.UUID, expected: int, name: str, n: int = 1) -> asyncpg.Record:
    events = [NewEvent("thing.changed", {"name": name, "i": i}) for i in range(n)]
    return await append_with(conn, "thing", _UPSERT, TENANT, stream, expected, events, META, name)


async def test_appends_and_returns_the_view_row(pool: asyncpg.Pool) -> None:
    stream = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(_VIEW_DDL)
        first = await _write(conn, stream, 0, "a", n=2)
        second = await _write(conn, stream, 2, "b")
        events = await read_stream(conn, TENANT, stream)
    assert (first["version"], first["name"]) == (2, "a")
    assert (second["version"], second["name"]) == (3, "b")
    assert [(e.version, e.stream_type, e.type, e.data["name"]) for e in events] == [
        (1, "thing", "thing.changed", "a"), (2, "thing", "thing.changed", "a"), (3, "thing", "thing.changed", "b"),
    ]
    assert events[0].metadata == META


@pytest.mark.parametrize("expected", [5, 0])
async def test_a_version_ahead_or_behind_appends_nothing_and_leaves_the_view(pool: asyncpg.Pool, expected: int) -> None:
    """The guard: ahead of the stream would leave a hole, behind it is a stale decision; either
    way nothing is appended and the view statement changes nothing."""
    stream = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(_VIEW_DDL)
        await _write(conn, stream, 0, "a")
        with pytest.raises(WrongExpectedVersion):
            await _write(conn, stream, expected, "changed")
        assert await stream_version(conn, TENANT, stream) == 1
        assert await conn.fetchval("SELECT name FROM scratch WHERE id = $1", stream) == "a"


async def test_the_views_own_unique_violation_goes_up_as_it_is(pool: asyncpg.Pool) -> None:
    """Not a concurrency conflict: the caller names it (the users view: UserNameTaken)."""
    async with pool.acquire() as conn:
        await conn.execute(_VIEW_DDL)
        await _write(conn, uuid.uuid4(), 0, "taken")
        other = uuid.uuid4()
        with pytest.raises(asyncpg.UniqueViolationError) as raised:
            await _write(conn, other, 0, "taken")
        assert raised.value.constraint_name == "scratch_name"
        assert await stream_version(conn, TENANT, other) == 0  # one statement: nothing appended


async def test_two_writers_racing_on_one_stream_exactly_one_wins(pool: asyncpg.Pool) -> None:
    stream = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(_VIEW_DDL)
        await _write(conn, stream, 0, "a")
    barrier = asyncio.Barrier(2)

    async def writer(n: int) -> str:
        async with pool.acquire() as conn, conn.transaction():
            await barrier.wait()
            try:
                await _write(conn, stream, 1, f"w{n}")
            except WrongExpectedVersion:
                return "lost"
            await asyncio.sleep(0.05)  # hold the transaction open while the other one inserts
            return "won"

    assert sorted(await asyncio.gather(writer(1), writer(2))) == ["lost", "won"]
    async with pool.acquire() as conn:
        assert await stream_version(conn, TENANT, stream) == 2
        assert await conn.fetchval("SELECT version FROM scratch WHERE id = $1", stream) == 2


async def test_nothing_to_append_is_a_programming_error(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        with pytest.raises(ValueError):
            await append_with(conn, "thing", _UPSERT, TENANT, uuid.uuid4(), 0, [], META, "x")
