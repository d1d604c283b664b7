"""The async followers inside `serve`: one runner per projection per worker, and the wake-up.

Every worker process starts a runner for each projection; the advisory lock in
projections/follower.py makes exactly one of them (across all workers and hosts) active, the
others stand by. `Settings.run_followers = False` (SCIMLEDGER_RUN_FOLLOWERS=false) leaves them
out, for workers that should only serve requests.

The wake-up: after a write request under /scim/v2 has committed and succeeded, the
`notify_followers` middleware pokes the `CommitNotifier`, which sends one `NOTIFY
scimledger_events` for all the pokes of the last few milliseconds (debounced), from a pool
connection, outside any write transaction. A NOTIFY inside the append transaction would take
PostgreSQL's global notify lock at commit and serialise every writer; this costs one tiny
statement per debounce window instead. The followers also poll (200 ms), so a writer that does not
notify (the CLI, psql) is picked up too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from eventstore.codecs import init_connection
from projections import registry
from projections.followers.runner import CHANNEL, FollowerRunner, Projection
from service.http.keys import DSN, POOL, SETTINGS

log = structlog.get_logger("scimledger.followers")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WRITE_PREFIX = "/scim/v2/"


def projections() -> list[Projection]:
    """The async projections (projections.registry), each run by one active follower."""
    return registry.followers()


class CommitNotifier:
    """Turns many "a write committed" pokes into few NOTIFYs: at most one per `debounce`."""

    def __init__(self, pool: asyncpg.Pool, *, channel: str = CHANNEL, debounce: float = 0.01) -> None:
        self._pool = pool
        self._channel = channel
        self._debounce = debounce
        self._pending = asyncio.Event()
        self.sent = 0

    def poke(self) -> None:
        self._pending.set()

    async def run(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            try:
                await self._pool.execute("SELECT pg_notify($1, '')", self._channel)
                self.sent += 1
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                # the followers' poll still picks the events up
                log.warning("followers.notify_failed", error=repr(e))
            await asyncio.sleep(self._debounce)


COMMIT_NOTIFIER = web.AppKey("commit_notifier", CommitNotifier)
RUNNERS = web.AppKey("follower_runners", list[FollowerRunner])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def notify_followers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Wake the followers after a successful write (the handler has committed by now)."""
    response = await handler(request)
    if request.method in WRITE_METHODS and response.status < 400 and request.path.startswith(WRITE_PREFIX):
        notifier = request.app.get(COMMIT_NOTIFIER)
        if notifier is not None:
            notifier.poke()
    return response


def follower_connector(dsn: str, name: str) -> Callable[[], Awaitable[asyncpg.Connection]]:
    """A dedicated connection per runner (it holds the runner's advisory lock and LISTENs)."""

    async def connect() -> asyncpg.Connection:
        conn = await asyncpg.connect(
            dsn,
            server_settings={
                "application_name": f"scimledger follower {name}",
                "idle_in_transaction_session_timeout": "60000",
            },
        )
        await init_connection(conn)
        return conn

    return connect


async def followers_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the notifier and, unless disabled, the follower runners of this worker."""
    notifier = CommitNotifier(app[POOL])
    app[COMMIT_NOTIFIER] = notifier
    runners = []
    if app[SETTINGS].run_followers:
        runners = [FollowerRunner(p, follower_connector(app[DSN], p.name)) for p in projections()]
    app[RUNNERS] = runners
    tasks = [asyncio.create_task(notifier.run(), name="commit-notifier")]
    tasks += [asyncio.create_task(r.run(), name=f"follower-{r.name}") for r in runners]
    yield
    await stop_tasks(tasks)


async def stop_tasks(tasks: list[asyncio.Task[Any]], *, patience: float = 5.0) -> None:
    """Cancel and wait; cancel again whatever is still running, so one task that swallowed a
    cancellation cannot hold a worker's shutdown forever."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=patience)
        for task in pending:
            log.warning("followers.stop_slow", task=task.get_name())
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("followers.stopped_with_error", task=task.get_name(), error=repr(task.exception()))
