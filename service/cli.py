"""The `scimledger` command line: serve, migrate, and the operator's admin surface.

Every command works while `serve` runs on the same embedded database: both attach to the same
server (see service.database). Results meant for scripts (ids, secrets) go alone to stdout;
everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg

from . import tenancy
from .config import Settings
from .database import create_pool, migrate, resolve_dsn
from .logs import configure_logging

Command = Callable[[argparse.Namespace, asyncpg.Connection], Awaitable[int]]


def err(*parts: Any) -> None:
    print(*parts, file=sys.stderr)


async def _with_connection(dsn: str, command: Command, args: argparse.Namespace) -> int:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            return await command(args, conn)
    finally:
        await pool.close()


# --- serve / migrate / db -------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from .serve import serve

    settings = replace(settings, host=args.host or settings.host, port=args.port or settings.port)
    return serve(settings, workers=args.workers)


async def cmd_migrate(args: argparse.Namespace, conn: asyncpg.Connection) -> int:
    # _with_connection has already applied them; say what the database is at
    rows = await conn.fetch("SELECT name FROM schema_migrations ORDER BY name")
    err(f"migrations applied: {len(rows)} (latest {rows[-1]['name'] if rows else 'none'})")
    return 0


# --- tenants and tokens -----------------------------------------------------------------------

async def cmd_tenant_create(args: argparse.Namespace, conn: asyncpg.Connection) -> int:
    try:
        tenant_id = await tenancy.create_tenant(
            conn, args.name, seats=args.seats, rate_limit=args.rate_limit
        )
    except tenancy.TenantExists:
        err(f"a tenant named {args.name!r} already exists")
        return 1
    print(tenant_id)
    return 0


async def cmd_token_issue(args: argparse.Namespace, conn: asyncpg.Connection) -> int:
    try:
        tenant_id = await tenancy.tenant_id_by_name(conn, args.tenant)
    except tenancy.TenantNotFound:
        err(f"no tenant {args.tenant!r}")
        return 1
    token_id, secret = await tenancy.issue_token(conn, tenant_id, args.label, args.scope)
    err(f"token {token_id} ({args.scope}, label {args.label!r}) for tenant {args.tenant}; "
        "the secret below is shown once")
    print(secret)
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

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(dest="tenant", required=True)
    t_create = tenant.add_parser("create", help="create a tenant; prints its id")
    t_create.add_argument("name")
    t_create.add_argument("--seats", type=int, default=None, help="active-user limit")
    t_create.add_argument("--rate-limit", type=float, default=None, help="requests per second")
    t_create.set_defaults(run=cmd_tenant_create)

    token = sub.add_parser("token", help="manage bearer tokens").add_subparsers(dest="token", required=True)
    t_issue = token.add_parser("issue", help="issue a token; prints the secret alone")
    t_issue.add_argument("--tenant", required=True)
    t_issue.add_argument("--label", required=True)
    t_issue.add_argument("--scope", choices=tenancy.SCOPES, default="scim")
    t_issue.set_defaults(run=cmd_token_issue)

    # each area registers its own commands (service/cli_*.py)
    from . import cli_users

    cli_users.register(sub)
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
    return asyncio.run(_with_connection(dsn, args.run, args))


if __name__ == "__main__":
    sys.exit(main())
