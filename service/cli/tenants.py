"""`scimledger tenant ...` and `scimledger token ...`: onboarding customers and their IdP tokens.

Results meant for scripts go alone to stdout: the id from `tenant create`, the secret from
`token issue` and `token rotate`, the tables of the list commands. Everything else goes to stderr.
A secret is shown once; only its hash is stored (service/app/tenancy.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from functools import partial
from typing import Any

from service.app import names, tenancy
from service.cli.context import Context
from service.cli.options import command, commands, label_arg
from service.cli.output import err, printable


def register(sub: Any) -> None:
    tenant = commands(sub, "tenant", "manage tenants")
    t_create = command(tenant, "create", help="create a tenant; prints its id", run=cmd_tenant_create)
    t_create.add_argument("name", type=tenant_name_arg,
                          help="lower-case letters, digits, '.', '_', '-' (at most 63)")
    t_create.add_argument("--seats", type=seats_arg, default=None, help="active-user limit (default: none)")
    t_create.add_argument("--rate-limit", type=rate_arg, default=None,
                          help="requests per second (default: SCIMLEDGER_RATE_LIMIT)")
    t_create.add_argument("--max-users", type=bound_arg, default=None,
                          help="most users the tenant may hold (default: SCIMLEDGER_MAX_USERS_PER_TENANT)")
    t_create.add_argument("--max-groups", type=bound_arg, default=None,
                          help="most groups the tenant may hold (default: SCIMLEDGER_MAX_GROUPS_PER_TENANT)")
    tenant.add_parser("list", help="tenants with seats, active users and rate limit").set_defaults(
        run=cmd_tenant_list
    )
    t_update = command(tenant, "update", run=cmd_tenant_update,
                       help="change a tenant's seat limit or rate limit")
    t_update.add_argument("name", help="tenant name or id")
    t_update.add_argument("--seats", type=seats_arg, default=tenancy.KEEP,
                          help="active-user limit, or 'none' to remove it")
    t_update.add_argument("--rate-limit", type=rate_arg, default=tenancy.KEEP,
                          help="requests per second, or 'none' for the default")
    t_update.add_argument("--max-users", type=bound_arg, default=tenancy.KEEP, help="most users the tenant may hold")
    t_update.add_argument("--max-groups", type=bound_arg, default=tenancy.KEEP, help="most groups the tenant may hold")
    t_rename = command(tenant, "rename", run=cmd_tenant_rename,
                       help="give a tenant a new name (its id, data and tokens stay)")
    t_rename.add_argument("old", metavar="OLD", help="tenant name or id")
    t_rename.add_argument("new", metavar="NEW", type=tenant_name_arg)
    t_disable = command(tenant, "disable", run=partial(set_disabled, disabled=True),
                        help="refuse a tenant's tokens and clients (403); its data is kept")
    t_disable.add_argument("name", help="tenant name or id")
    t_enable = command(tenant, "enable", help="undo `tenant disable`", run=partial(set_disabled, disabled=False))
    t_enable.add_argument("name", help="tenant name or id")

    token = commands(sub, "token", "manage bearer tokens")
    t_issue = command(token, "issue", run=cmd_token_issue, tenant=True,
                      help="issue a token; prints the secret alone")
    t_issue.add_argument("--label", required=True, type=label_arg,
                         help="names the actor in the audit trail (okta, entra-prod)")
    t_issue.add_argument("--scope", choices=tenancy.SCOPES, default="scim")
    command(token, "list", help="a tenant's tokens (never the secrets)", run=cmd_token_list, tenant=True)
    t_revoke = command(token, "revoke", help="refuse a token from the next request on", run=cmd_token_revoke)
    t_revoke.add_argument("token_id", metavar="ID", type=token_id_arg)
    t_rotate = command(token, "rotate", run=cmd_token_rotate,
                       help="new secret, old one valid for the grace period; prints the secret alone")
    t_rotate.add_argument("token_id", metavar="ID", type=token_id_arg)


def _limit_arg(raw: str, *, none_words: tuple[str, ...], parse: type[int] | type[float], what: str) -> float | None:
    if raw.lower() in none_words:
        return None
    try:
        return parse(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{what} must be a {'whole ' if parse is int else ''}number or 'none', not {raw!r}") from e


def seats_arg(raw: str) -> int | None:
    """A seat limit: a count >= 0, or `none` for no limit."""
    value = _limit_arg(raw, none_words=("none", "unlimited"), parse=int, what="seats")
    if value is not None and value < 0:
        raise argparse.ArgumentTypeError("seats must be >= 0")
    return None if value is None else int(value)


def rate_arg(raw: str) -> float | None:
    """A rate limit in requests per second (> 0), or `none` for the default."""
    value = _limit_arg(raw, none_words=("none", "default"), parse=float, what="rate limit")
    if value is not None and (not value > 0 or value == float("inf")):
        raise argparse.ArgumentTypeError("rate limit must be a positive number of requests per second")
    return value


def bound_arg(raw: str) -> int:
    """A storage bound (max users or groups of a tenant): a whole number >= 0."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise argparse.ArgumentTypeError(f"a storage bound must be a whole number from 0 to 999999999, not {raw!r}")
    return int(raw)


def tenant_name_arg(raw: str) -> str:
    """A new tenant name (service/app/names.py, check_tenant_name): trimmed, a fixed charset."""
    try:
        return names.check_tenant_name(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def token_id_arg(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a token id: {raw!r}") from e


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# --- tenants ----------------------------------------------------------------------------------

async def cmd_tenant_create(args: argparse.Namespace, ctx: Context) -> int:
    conn = ctx.conn
    tenant_id = await tenancy.create_tenant(
        conn, args.name, seats=args.seats, rate_limit=args.rate_limit,
        max_users=ctx.settings.max_users_per_tenant if args.max_users is None else args.max_users,
        max_groups=ctx.settings.max_groups_per_tenant if args.max_groups is None else args.max_groups,
    )
    print(tenant_id)
    return 0


async def cmd_tenant_list(args: argparse.Namespace, ctx: Context) -> int:
    conn = ctx.conn
    default_rate = ctx.settings.default_rate_limit
    print(f"{'name':24}  {'id':36}  {'seats':>9}  {'active':>7}  {'rate limit (req/s)':18}  state")
    for t in await tenancy.list_tenants(conn):
        seats = "unlimited" if t.seats is None else str(t.seats)
        rate = f"{default_rate:g} (default)" if t.rate_limit is None else f"{t.rate_limit:g}"
        state = "enabled" if t.disabled_at is None else f"disabled {_when(t.disabled_at)}"
        print(f"{printable(t.name):24}  {t.id!s:36}  {seats:>9}  {t.active_users:>7}  {rate:18}  {state}")
    return 0


async def cmd_tenant_rename(args: argparse.Namespace, ctx: Context) -> int:
    tenant_id = await tenancy.tenant_id_by_name(ctx.conn, args.old)
    await tenancy.rename_tenant(ctx.conn, tenant_id, args.new)
    err(f"tenant {printable(args.old)} is now {args.new} (id {tenant_id}); use the new name in commands")
    return 0


async def set_disabled(args: argparse.Namespace, ctx: Context, *, disabled: bool) -> int:
    """`tenant disable` and `tenant enable`."""
    tenant = await tenancy.get_tenant(ctx.conn, args.name)
    changed = await tenancy.set_tenant_disabled(ctx.conn, tenant.id, disabled)
    state = "disabled" if disabled else "enabled"
    if not changed:
        err(f"tenant {printable(tenant.name)} was already {state}")
    elif disabled:
        err(f"tenant {printable(tenant.name)} disabled: its tokens, OAuth clients and console sessions are "
            f"refused (403) from the next request; its data is kept (undo: scimledger tenant enable {tenant.name})")
    else:
        err(f"tenant {printable(tenant.name)} enabled: its tokens and OAuth clients work again")
    return 0


async def cmd_tenant_update(args: argparse.Namespace, ctx: Context) -> int:
    conn = ctx.conn
    given = (args.seats, args.rate_limit, args.max_users, args.max_groups)
    if all(value is tenancy.KEEP for value in given):
        err("nothing to change: give --seats, --rate-limit, --max-users and/or --max-groups")
        return 2
    tenant_id = await tenancy.tenant_id_by_name(conn, args.name)
    await tenancy.update_tenant(conn, tenant_id, seats=args.seats, rate_limit=args.rate_limit,
                                max_users=args.max_users, max_groups=args.max_groups)
    changes = []
    if args.seats is not tenancy.KEEP:
        changes.append(f"seats {'unlimited' if args.seats is None else args.seats}")
    if args.rate_limit is not tenancy.KEEP:
        changes.append(f"rate limit {'default' if args.rate_limit is None else f'{args.rate_limit:g}/s'}")
    for what, value in (("max users", args.max_users), ("max groups", args.max_groups)):
        if value is not tenancy.KEEP:
            changes.append(f"{what} {value}")
    err(f"tenant {args.name}: {', '.join(changes)}")
    return 0


# --- tokens -----------------------------------------------------------------------------------

async def cmd_token_issue(args: argparse.Namespace, ctx: Context) -> int:
    conn = ctx.conn
    tenant_id = await tenancy.tenant_id_by_name(conn, args.tenant)
    token_id, secret = await tenancy.issue_token(conn, tenant_id, args.label, args.scope)
    err(f"token {token_id} ({args.scope}, label {args.label!r}) for tenant {args.tenant}; "
        "the secret below is shown once")
    print(secret)
    return 0


async def cmd_token_list(args: argparse.Namespace, ctx: Context) -> int:
    conn = ctx.conn
    tenant_id = await tenancy.tenant_id_by_name(conn, args.tenant)
    now = await conn.fetchval("SELECT now()")
    print(f"{'id':36}  {'label':16}  {'scope':5}  {'created':20}  {'last used':20}  state")
    for t in await tenancy.list_tokens(conn, tenant_id):
        state = t.state(now)
        if t.revoked_at is not None:
            state += f" {_when(t.revoked_at)}"
        elif t.expires_at is not None:
            state += f" until {_when(t.expires_at)}" if t.expires_at > now else f" {_when(t.expires_at)}"
        if t.replaced_by is not None:
            state += f", replaced by {t.replaced_by}"
        print(f"{t.id!s:36}  {printable(t.label):16}  {t.scope:5}  {_when(t.created_at):20}  "
              f"{_when(t.last_used_at):20}  {state}")
    return 0


async def cmd_token_revoke(args: argparse.Namespace, ctx: Context) -> int:
    conn = ctx.conn
    await tenancy.revoke_token(conn, args.token_id)
    err(f"token {args.token_id} revoked; every worker refuses it from the next request")
    return 0


async def cmd_token_rotate(args: argparse.Namespace, ctx: Context) -> int:
    conn = ctx.conn
    grace_s = ctx.settings.token_rotation_grace_s
    new_id, secret = await tenancy.rotate_token(conn, args.token_id, dt.timedelta(seconds=grace_s))
    err(f"token {new_id} replaces {args.token_id}; the old secret stays valid for {grace_s} s "
        "(paste the new secret into the IdP before then); the secret below is shown once")
    print(secret)
    return 0
