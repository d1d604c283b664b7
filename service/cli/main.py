"""The `scimledger` command line: serve, migrate, and the operator's admin surface.

Every command works while `serve` runs on the same embedded database: both attach to the same
server (see service.runtime.database). Results meant for scripts (ids, secrets) go alone to stdout;
everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace

from service.cli import audit, clients, projections, tenants, users
from service.cli.context import Context
from service.cli.errors import message_and_code
from service.cli.output import err
from service.runtime.config import Settings
from service.runtime.database import create_pool, migrate, resolve_dsn
from service.runtime.logs import configure_logging

Command = Callable[[argparse.Namespace, Context], Awaitable[int]]


async def _with_connection(settings: Settings, dsn: str, command: Command, args: argparse.Namespace) -> int:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            try:
                return await command(args, Context(settings, conn))
            except Exception as e:  # mapped once (service/cli/errors.py); a bug still raises
                mapped = message_and_code(e)
                if mapped is None:
                    raise
                err(mapped[0])
                return mapped[1]
    finally:
        await pool.close()


# --- serve / migrate / db -------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.server.serve import serve

    settings = replace(settings, host=args.host or settings.host, port=args.port or settings.port)
    return serve(settings, workers=args.workers)


async def cmd_migrate(args: argparse.Namespace, ctx: Context) -> int:
    # _with_connection has already applied them; say what the database is at
    rows = await ctx.conn.fetch("SELECT name FROM schema_migrations ORDER BY name")
    err(f"migrations applied: {len(rows)} (latest {rows[-1]['name'] if rows else 'none'})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scimledger", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the SCIM service")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    serve.set_defaults(sync=cmd_serve)

    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(run=cmd_migrate)

    db = sub.add_parser("db", help="database helpers").add_subparsers(dest="db", required=True)
    db.add_parser("dsn", help="print the DSN in use (for psql)").set_defaults(sync=cmd_db_dsn)

    # each area registers its own commands (service/cli/*.py)
    for area in (tenants, clients, users, audit, projections):
        area.register(sub)
    return parser


def cmd_db_dsn(args: argparse.Namespace, settings: Settings) -> int:
    print(resolve_dsn(settings))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    configure_logging(settings.log_json)
    if hasattr(args, "sync"):
        return int(args.sync(args, settings))
    dsn = resolve_dsn(settings)
    return asyncio.run(_with_connection(settings, dsn, args.run, args))


if __name__ == "__main__":
    sys.exit(main())
