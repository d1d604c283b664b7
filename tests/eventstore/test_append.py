"""Appending with optimistic concurrency (docs/architecture.md, "Events")."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from eventstore.store import NewEvent, WrongExpectedVersion, append, read_stream, stream_version

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
META = {"actor": {"label": "test"}}


async def test_append_then_read_stream_in_version_order(pool: asyncpg.Pool) -> None:
    stream = uuid.uuid4()
    async with pool.acquire() as conn:
        v = await append(conn, TENANT, "user", stream, 0, [NewEvent("user.created", {"n": 1})], META)
        v = await append(
            conn, TENANT, "user", stream, v,
            [NewEvent("user.updated", {"n": 2}), NewEvent("user.deactivated", {"n": 3})], META,
        )
        events = await read_stream(conn, TENANT, stream)
    assert v == 3
    assert [(e.version, e.type, e.data["n"]) for e in events] == [
        (1, "user.created", 1), (2, "user.updated", 2), (3, "user.deactivated", 3),
    ]
    assert events[0].metadata == META


async def test_two_appenders_racing_on_one_stream_exactly_one_wins(pool: asyncpg.Pool) -> None:
    """Both decided from version 1; the unique (tenant, stream, version) lets one commit."""
    stream = uuid.uuid4()
    async with pool.acquire() as conn:
        await append(conn, TENANT, "user", stream, 0, [NewEvent("user.created", {})], META)

    barrier = asyncio.Barrier(2)

    async def writer(n: int) -> str:
        async with pool.acquire() as conn, conn.transaction():
            await barrier.wait()
            try:
                await append(conn, TENANT, "user", stream, 1, [NewEvent("user.updated", {"w": n})], META)
            except WrongExpectedVersion:
                return "lost"
            await asyncio.sleep(0.05)  # hold the transaction open while the other one inserts
            return "won"

    results = sorted(await asyncio.gather(writer(1), writer(2)))
    assert results == ["lost", "won"]
    async with pool.acquire() as conn:
        assert await stream_version(conn, TENANT, stream) == 2


async def test_expected_version_ahead_of_the_stream_is_refused(pool: asyncpg.Pool) -> None:
    """A stale or invented version never leaves a hole in the stream."""
    stream = uuid.uuid4()
    async with pool.acquire() as conn:
        await append(conn, TENANT, "user", stream, 0, [NewEvent("user.created", {})], META)
        with pytest.raises(WrongExpectedVersion):
            await append(conn, TENANT, "user", stream, 5, [NewEvent("user.updated", {})], META)
        with pytest.raises(WrongExpectedVersion):
            await append(conn, TENANT, "user", stream, 0, [NewEvent("user.created", {})], META)
        assert await stream_version(conn, TENANT, stream) == 1


async def test_same_stream_id_in_two_tenants_is_two_streams(pool: asyncpg.Pool) -> None:
    stream = uuid.uuid4()
    other = uuid.UUID("00000000-0000-4000-8000-000000000002")
    async with pool.acquire() as conn:
        await append(conn, TENANT, "user", stream, 0, [NewEvent("user.created", {})], META)
        await append(conn, other, "user", stream, 0, [NewEvent("user.created", {})], META)
        assert len(await read_stream(conn, TENANT, stream)) == 1
        assert len(await read_stream(conn, other, stream)) == 1
