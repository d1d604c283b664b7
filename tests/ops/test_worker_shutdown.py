"""A worker's shutdown cannot hang on one background task: `stop_tasks` cancels again whatever
swallowed a cancellation (Python 3.11's asyncio.wait_for can swallow one that lands as its
timeout fires: a follower runner did, and `serve --workers 2` never exited after SIGTERM)."""

from __future__ import annotations

import asyncio

from service.http.followers import stop_tasks


async def test_a_task_that_swallows_a_cancel_is_stopped_anyway() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # the first cancel is lost, like wait_for's race

    async def polite() -> None:
        await asyncio.sleep(3600)

    tasks = [asyncio.create_task(stubborn()), asyncio.create_task(polite())]
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_tasks(tasks, patience=0.05), timeout=5)
    assert all(t.done() for t in tasks) and swallowed == 1
