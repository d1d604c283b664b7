"""Gap-free reading of the global log (docs/architecture.md, "Reading the global log without gaps").

A follower that checkpoints (transaction_id, global_position) must see every committed event
exactly once and never an aborted one, even while transactions that took their positions earlier
commit later. The schedule is a seeded random one: writers on different streams hold their
transactions open for random times, some roll back, and a follower polls the whole time.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg

from eventstore.store import BEGINNING, NewEvent, RecordedEvent, append, read_all

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")


class Rollback(Exception):
    pass


async def test_follower_sees_every_committed_event_once_and_no_aborted_one(pool: asyncpg.Pool) -> None:
    rng = random.Random(20261122)
    transactions = 300
    writers = 12
    committed: set[tuple[str, int]] = set()
    aborted: set[tuple[str, int]] = set()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(transactions):
        queue.put_nowait(n)
    delays = {n: (rng.random() * 0.01, rng.random() < 0.2, rng.randint(1, 3)) for n in range(transactions)}
    done = asyncio.Event()

    async def writer() -> None:
        while not queue.empty():
            n = queue.get_nowait()
            hold, rollback, count = delays[n]
            stream = uuid.uuid4()
            events = [NewEvent("user.updated", {"tx": n, "i": i}) for i in range(count)]
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await append(conn, TENANT, "user", stream, 0, events, {})
                    await asyncio.sleep(hold)  # positions taken, commit delayed
                    if rollback:
                        raise Rollback
            except Rollback:
                aborted.update((str(n), i) for i in range(count))
            else:
                committed.update((str(n), i) for i in range(count))

    seen: list[RecordedEvent] = []

    async def follower() -> None:
        checkpoint = BEGINNING
        async with pool.acquire() as conn:
            while True:
                finished = done.is_set()
                batch = await read_all(conn, after=checkpoint, limit=rng.randint(1, 50))
                seen.extend(batch)
                if batch:
                    checkpoint = batch[-1].checkpoint
                elif finished:
                    return
                else:
                    await asyncio.sleep(0.001)

    follower_task = asyncio.create_task(follower())
    await asyncio.gather(*(writer() for _ in range(writers)))
    done.set()
    await follower_task

    keys = [(str(e.data["tx"]), e.data["i"]) for e in seen]
    assert len(keys) == len(set(keys)), "an event was delivered twice"
    assert set(keys) == committed, "the follower missed committed events or saw aborted ones"
    assert not set(keys) & aborted
    assert aborted, "the schedule should include rollbacks"
    # the order is stable: a second reader from the beginning sees exactly the same sequence
    async with pool.acquire() as conn:
        again = await read_all(conn, after=BEGINNING, limit=10_000)
    assert [e.checkpoint for e in again] == [e.checkpoint for e in seen]


async def test_an_open_transaction_holds_back_later_commits(pool: asyncpg.Pool) -> None:
    """An event committed after an older, still-open transaction is not returned until that
    transaction ends, so a checkpoint can never jump over it."""
    async with pool.acquire() as slow, pool.acquire() as fast, pool.acquire() as reader:
        slow_tx = slow.transaction()
        await slow_tx.start()
        await append(slow, TENANT, "user", uuid.uuid4(), 0, [NewEvent("user.created", {"w": "slow"})], {})
        await append(fast, TENANT, "user", uuid.uuid4(), 0, [NewEvent("user.created", {"w": "fast"})], {})
        assert await read_all(reader) == []
        await slow_tx.commit()
        events = await read_all(reader)
    assert [e.data["w"] for e in events] == ["slow", "fast"]


async def test_read_all_walks_the_transaction_order_index_without_sorting(pool: asyncpg.Pool) -> None:
    """A follower's batch costs its own size, not the rest of the log: the plan reads the
    (transaction_id, global_position) index in order and never sorts."""
    from eventstore.store import READ_ALL

    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
               SELECT $1, 'user', gen_random_uuid(), 1, 'user.created', '{}', '{}'
               FROM generate_series(1, 5000)""",
            TENANT,
        )
        await conn.execute("ANALYZE events")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {READ_ALL}", "0", 0, 100))
    assert "events_transaction_order" in plan, plan
    assert "Sort" not in plan, plan
