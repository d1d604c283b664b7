"""The log's statistics (eventstore.stats) and follower tables joined with it
(eventstore.references)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from eventstore import references, stats
from eventstore.store import BEGINNING, NewEvent, append, read_all

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
OTHER = uuid.UUID("00000000-0000-4000-8000-000000000002")
META = {"actor": {"label": "test"}}


async def _log(conn: asyncpg.Connection) -> None:
    await append(conn, TENANT, "user", uuid.uuid4(), 0, [NewEvent("user.created", {}), NewEvent("user.updated", {})], META)
    await append(conn, TENANT, "group", uuid.uuid4(), 0, [NewEvent("group.created", {})], META)
    await append(conn, OTHER, "user", uuid.uuid4(), 0, [NewEvent("user.created", {})], META)


async def test_head_counts_and_lag(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await stats.head_position(conn) == 0
        assert await stats.lag_after(conn, BEGINNING) == (0, 0.0)
        await _log(conn)
        events = await read_all(conn)
        assert await stats.head_position(conn) == max(e.global_position for e in events)
        assert await stats.count_events(conn) == 4
        assert await stats.count_events(conn, ["group"]) == 1
        n, seconds = await stats.lag_after(conn, events[1].checkpoint)
        assert n == 2 and seconds >= 0.0
        assert await stats.count_after(conn, TENANT, events[0].checkpoint) == 2
        assert await stats.count_after(conn, OTHER, events[-1].checkpoint) == 0


async def test_counts_by_type_below_xmin_count_each_event_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await _log(conn)
        upper, counts = await stats.counts_by_type_below_xmin(conn, 0)
        assert counts == {"user.created": 2, "user.updated": 1, "group.created": 1}
        assert upper is not None
        again_upper, again = await stats.counts_by_type_below_xmin(conn, upper)
        assert again == {} and again_upper is not None and again_upper >= upper


async def test_a_follower_table_joined_with_its_events(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await _log(conn)
        events = [e for e in await read_all(conn) if e.tenant_id == TENANT]
        await conn.execute("CREATE TABLE marks (tenant_id uuid, position bigint, note text)")
        await conn.executemany(
            "INSERT INTO marks VALUES ($1, $2, $3)",
            [(TENANT, events[0].global_position, "first"), (TENANT, 10**9, "gone")],
        )
        marks = "SELECT tenant_id, position, note FROM marks WHERE tenant_id = $1"
        rows = await references.WithEvents(marks, ("type", "version")).fetch(conn, TENANT)
        assert [(r["note"], r["type"], r["version"]) for r in rows] == [("first", "user.created", 1), ("gone", None, None)]
        async with conn.transaction():
            cursor = references.WithEvents(marks, ("type",), order_by="note").cursor(conn, TENANT)
            assert [r["note"] async for r in cursor] == ["first", "gone"]
        # the tenant's events not named by any mark: the second and third
        upto = events[-1].checkpoint
        assert await references.first_unreferenced(conn, TENANT, upto, table="marks") == events[1].global_position


@pytest.mark.parametrize("bad", ["marks; DROP TABLE events", "Marks", "a.b", ""])
def test_identifiers_are_checked(bad: str) -> None:
    with pytest.raises(ValueError):
        references.identifier(bad)


def test_only_event_columns_and_identifiers_make_a_join() -> None:
    with pytest.raises(ValueError):
        references.WithEvents("SELECT 1", ("data); --",))
    with pytest.raises(ValueError):
        references.WithEvents("SELECT 1", ("data",), order_by="1; --")
