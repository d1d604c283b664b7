"""The `scimledger` command line: serve, migrate, and the operator's admin surface.

Every command works while `serve` runs on the same embedded database: both attach to the same
server (see service.runtime.database). Results meant for scripts (ids, secrets, tables) go alone
to stdout; everything else, log lines included, goes to stderr. A mistake in the setup or the
call (a setting, a port, the data dir, the database's address) is one line and an exit code,
never a traceback (SetupError).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version

from service.app import tenancy
from service.cli import audit, clients, privacy, projections, streams, tenants, users
from service.cli.context import CREATING_COMMANDS, Context, open_pool
from service.cli.errors import message_and_code, suggest_tenant
from service.cli.options import commands
from service.cli.output import err
from service.runtime.config import Settings, SetupError
from service.runtime.database import resolve_dsn, where
from service.runtime.logs import configure_logging

Command = Callable[[argparse.Namespace, Context], Awaitable[int]]


async def _with_connection(settings: Settings, command: Command, args: argparse.Namespace) -> int:
    pool, applied = await open_pool(settings, create=args.command in CREATING_COMMANDS)
    try:
        async with pool.acquire() as conn:
            try:
                return await command(args, Context(settings, conn, tuple(applied)))
            except Exception as e:  # mapped once (service/cli/errors.py); a bug still raises
                mapped = message_and_code(e)
                if mapped is None:
                    raise
                message, code = mapped
                hint = suggest_tenant(e, await tenancy.tenant_names(conn))
                err(f"{message}; {hint}" if hint else message)
                return code
    finally:
        await pool.close()


# --- serve / migrate / db -------------------------------------------------------------------

def port_arg(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 65535:
        raise argparse.ArgumentTypeError(f"the port must be a number from 1 to 65535, not {raw!r}")
    return int(raw)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.server.serve import serve

    settings = replace(settings, host=args.host or settings.host, port=args.port or settings.port)
    return serve(settings, workers=args.workers)


async def cmd_migrate(args: argparse.Namespace, ctx: Context) -> int:
    # open_pool has already applied them; say what it did and what the database is at
    rows = await ctx.conn.fetch("SELECT name FROM schema_migrations ORDER BY name")
    latest = rows[-1]["name"] if rows else "none"
    if ctx.applied:
        err(f"applied {len(ctx.applied)} migration(s): {', '.join(ctx.applied)}; {len(rows)} in all (latest {latest})")
    else:
        err(f"nothing to apply: all {len(rows)} migrations are in (latest {latest})")
    return 0


def _version() -> str:
    try:
        return version("scimledger")
    except PackageNotFoundError:  # run from a tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scimledger", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"scimledger {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the SCIM service")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=port_arg, default=None, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    serve.set_defaults(sync=cmd_serve)

    sub.add_parser("migrate", help="apply pending database migrations (creates the embedded database)").set_defaults(
        run=cmd_migrate
    )

    db = commands(sub, "db", "database helpers")
    db.add_parser("dsn", help="print the DSN in use (for psql)").set_defaults(sync=cmd_db_dsn)

    # each area registers its own commands (service/cli/*.py)
    for area in (tenants, clients, users, audit, projections, streams, privacy):
        area.register(sub)
    return parser


def cmd_db_dsn(args: argparse.Namespace, settings: Settings) -> int:
    dsn = resolve_dsn(settings, create=False)
    err(f"database: {where(settings)}")
    print(dsn)
    return 0


def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_json)
    if hasattr(args, "sync"):
        return int(args.sync(args, settings))
    return asyncio.run(_with_connection(settings, args.run, args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except SetupError as e:
        err(f"scimledger: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
