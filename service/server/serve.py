"""`scimledger serve`: bootstrap the database, then run one or several worker processes.

The embedded PostgreSQL (if used) is started here, before any event loop, by `resolve_dsn`, and
stopped by its atexit hook when this process exits. Workers are spawned processes that share the
port through SO_REUSEPORT; they never own the embedded server. SIGTERM stops accepting, lets
in-flight requests finish (aiohttp's graceful shutdown) and closes the pool.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
from types import FrameType
from typing import Any

import structlog
from aiohttp import web

from service.app import tenancy
from service.http import metrics
from service.http.app import create_app
from service.runtime.config import Settings
from service.runtime.database import create_pool, migrate, resolve_dsn
from service.runtime.logs import configure_logging

log = structlog.get_logger("scimledger.serve")
BOOTSTRAP_LOCK = 0x5C1_B007
DEFAULT_TENANT = "default"
SHUTDOWN_TIMEOUT_S = 25.0  # in-flight requests get this long after SIGTERM (Kubernetes allows 30)


async def bootstrap(dsn: str, settings: Settings) -> str | None:
    """Migrate; on an empty database create the default tenant and a `scim` token.

    Returns the new secret (to be shown once) or None when the database already had tenants.
    """
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            applied = await migrate(conn)
            if applied:
                log.info("migrations.applied", names=applied)
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", BOOTSTRAP_LOCK)
                if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tenants)"):
                    return None
                tenant_id = await tenancy.create_tenant(conn, DEFAULT_TENANT)
                _, secret = await tenancy.issue_token(conn, tenant_id, "default", "scim")
                return secret
    finally:
        await pool.close()


def announce(settings: Settings, secret: str) -> None:
    base = (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
    lines = [
        "",
        "scimledger is set up. Paste these into your identity provider (Okta or Entra ID):",
        f"  SCIM base URL:  {base}/scim/v2",
        f"  Secret token:   {secret}",
        "The token is shown only this once; issue more with `scimledger token issue`.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _run_worker(settings: Settings, dsn: str, reuse_port: bool, parent: int | None = None) -> None:
    configure_logging(settings.log_json)
    app = create_app(settings, dsn)
    if parent is not None:
        app.on_startup.append(lambda app: _watch_parent(app, parent))
    app.on_startup.append(_dump_tasks_on_sigusr1)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port or None,
        print=None,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )


async def _watch_parent(app: web.Application, parent: int) -> None:
    """A worker whose `serve` process is gone (SIGKILL) shuts itself down gracefully instead of
    serving on as an orphan."""

    async def watch() -> None:
        while True:
            await asyncio.sleep(1.0)
            if os.getppid() != parent:
                break
        log.warning("serve.parent_gone", parent=parent)
        os.kill(os.getpid(), signal.SIGTERM)

    task = asyncio.create_task(watch(), name="watch-parent")

    async def stop(app: web.Application) -> None:
        task.cancel()

    app.on_cleanup.append(stop)


async def _dump_tasks_on_sigusr1(app: web.Application) -> None:
    """`kill -USR1 <worker pid>` logs the stack of every asyncio task of that worker: what a
    stuck worker is waiting for, without stopping it."""

    def awaited(task: asyncio.Task[Any]) -> list[str]:
        frames: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None:  # follow the chain of awaits down to where the task waits
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
            if frame is not None:
                frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        return frames

    def dump() -> None:
        for task in asyncio.all_tasks():
            log.warning("serve.task", name=task.get_name(), stack=awaited(task))

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


def _multiprocess_metrics_dir(settings: Settings) -> tuple[str, bool]:
    """Where the workers keep their metric files: $PROMETHEUS_MULTIPROC_DIR if set, else a fresh
    temporary directory (removed at exit). Returns (path, created here)."""
    given = os.environ.get(metrics.MULTIPROC_ENV)
    if given:
        metrics.prepare_multiprocess_dir(given)
        return given, False
    return tempfile.mkdtemp(prefix="scimledger-metrics-"), True


def serve(settings: Settings, *, workers: int = 1) -> int:
    """Run the service until SIGTERM/SIGINT. One worker runs in this process; several are
    spawned processes sharing the port (SO_REUSEPORT). On SIGTERM every worker stops accepting,
    finishes its in-flight requests (up to SHUTDOWN_TIMEOUT_S), stops its followers and closes
    its pool. If a worker dies on its own, the others are stopped and serve exits 1, so the
    supervisor (systemd, Kubernetes) restarts the whole thing."""
    dsn = resolve_dsn(settings)
    secret = asyncio.run(bootstrap(dsn, settings))
    if secret:
        announce(settings, secret)
    log.info("serve.start", host=settings.host, port=settings.port, workers=workers)
    if workers <= 1:
        _run_worker(settings, dsn, reuse_port=False)
        log.info("serve.stopped", workers=1)
        return 0

    metrics_dir, created = _multiprocess_metrics_dir(settings)
    os.environ[metrics.MULTIPROC_ENV] = metrics_dir  # inherited by the spawned workers
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)

    procs: list[multiprocessing.process.BaseProcess] = []
    # handlers first: a SIGTERM during start-up must not kill this process and orphan workers
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    ctx = multiprocessing.get_context("spawn")
    failed = False
    try:
        for i in range(workers):
            worker = ctx.Process(target=_run_worker, args=(settings, dsn, True, os.getpid()), name=f"worker-{i}")
            worker.start()
            procs.append(worker)
        running = list(procs)
        while running:
            multiprocessing.connection.wait([p.sentinel for p in running])
            for ended in [p for p in running if not p.is_alive()]:
                ended.join()
                running.remove(ended)
                metrics.mark_worker_dead(ended.pid or 0)
                if ended.exitcode not in (0, -signal.SIGTERM) or not stopping:
                    log.error("serve.worker_exited", worker=ended.name, exit_code=ended.exitcode)
                    failed = True
                    if not stopping:
                        forward(signal.SIGTERM, None)
    finally:
        if created:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("serve.stopped", workers=workers)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve(Settings.from_env()))
