"""`scimledger serve`: bootstrap the database, then run one or several worker processes.

The embedded PostgreSQL (if used) is started here, before any event loop, by `resolve_dsn`, and
stopped by its atexit hook when this process exits. Workers are spawned processes that share the
port through SO_REUSEPORT; they never own the embedded server. SIGTERM stops accepting, lets
in-flight requests finish (aiohttp's graceful shutdown) and closes the pool.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import sys
from types import FrameType

import structlog
from aiohttp import web

from . import tenancy
from .app import create_app
from .config import Settings
from .database import create_pool, migrate, resolve_dsn
from .logs import configure_logging

log = structlog.get_logger("scimledger.serve")
BOOTSTRAP_LOCK = 0x5C1_B007
DEFAULT_TENANT = "default"


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


def _run_worker(settings: Settings, dsn: str, reuse_port: bool) -> None:
    configure_logging(settings.log_json)
    app = create_app(settings, dsn)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port or None,
        print=None,
        access_log=None,
        shutdown_timeout=30,
    )


def serve(settings: Settings, *, workers: int = 1) -> int:
    dsn = resolve_dsn(settings)
    secret = asyncio.run(bootstrap(dsn, settings))
    if secret:
        announce(settings, secret)
    log.info("serve.start", host=settings.host, port=settings.port, workers=workers)
    if workers <= 1:
        _run_worker(settings, dsn, reuse_port=False)
        return 0

    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_run_worker, args=(settings, dsn, True), name=f"worker-{i}")
        for i in range(workers)
    ]
    for p in procs:
        p.start()

    def forward(signum: int, frame: FrameType | None) -> None:
        for p in procs:
            if p.is_alive():
                p.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    exit_code = 0
    for p in procs:
        p.join()
        exit_code = exit_code or (p.exitcode or 0)
    log.info("serve.stopped", workers=workers)
    return 0 if exit_code in (0, -signal.SIGTERM) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(serve(Settings.from_env()))
