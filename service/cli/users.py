"""`scimledger user ...`: the app's own admin surface for users.

Users also change on the app's side: an admin creates a user in the app (and the IdP imports it)
or deactivates one. These commands append the same events as the SCIM handlers, with the CLI and
the operating-system user as the actor, so GET /Users shows them and the audit trail names them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from functools import partial
from typing import Any

from service.app import erasure, tenancy, users
from service.cli.context import Context
from service.cli.options import command, commands, tenant_option
from service.cli.output import err, printable
from service.scim.schema import CORE_USER


def register(sub: Any) -> None:
    user = commands(sub, "user", "manage users on the app's side")
    create = command(user, "create", help="create a user; prints its id", run=cmd_user_create, tenant=True)
    create.add_argument("user_name", metavar="USERNAME")
    create.add_argument("--given", default=None)
    create.add_argument("--family", default=None)
    create.add_argument("--email", default=None)
    for name, fn, text in (
        ("deactivate", partial(set_active, active=False), "deactivate a user (never deletes)"),
        ("reactivate", partial(set_active, active=True), "reactivate a user"),
    ):
        p = user.add_parser(name, help=text)
        tenant_option(p)
        p.add_argument("user", metavar="USER", help="id or userName")
        p.set_defaults(run=fn)
    erase = command(user, "erase", run=cmd_user_erase, tenant=True,
                    help="erase a user's personal data for good (crypto-shredding); prints its id")
    erase.add_argument("user", metavar="USER", help="id or userName (active, inactive or deleted)")
    erase.add_argument("--reason", required=True, help="why (the request or ticket), kept in the log")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    command(user, "list", help="list the tenant's users", run=cmd_user_list, tenant=True)


async def cmd_user_create(args: argparse.Namespace, ctx: Context) -> int:
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    body: dict[str, Any] = {"schemas": [CORE_USER], "userName": args.user_name, "active": True}
    if args.given or args.family:
        body["name"] = {k: v for k, v in (("givenName", args.given), ("familyName", args.family)) if v}
        body["displayName"] = " ".join(v for v in (args.given, args.family) if v)
    if args.email:
        body["emails"] = [{"value": args.email, "type": "work", "primary": True}]
    row = await users.create_user(ctx.conn, tenant, body, ctx.actor("user create"))
    print(row.id)
    return 0


async def set_active(args: argparse.Namespace, ctx: Context, *, active: bool) -> int:
    """`user deactivate` and `user reactivate`."""
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    command = "user reactivate" if active else "user deactivate"
    row, changed = await users.set_active(ctx.conn, tenant, args.user, active, ctx.actor(command))
    name = printable(row.user_name)
    if not changed:
        err(f"{name} is already {'active' if active else 'inactive'}")
    else:
        err(f"{name} {'reactivated' if active else 'deactivated'}")
    return 0


async def cmd_user_list(args: argparse.Namespace, ctx: Context) -> int:
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    print(f"{'id':36}  {'active':6}  userName")
    async for rows in users.all_users(ctx.conn, tenant.id):
        for row in rows:
            print(f"{row.id!s:36}  {'yes' if row.active else 'no':6}  {printable(row.user_name)}")
    return 0


async def cmd_user_erase(args: argparse.Namespace, ctx: Context) -> int:
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    if not args.yes:
        if not sys.stdin.isatty():
            err("erasure cannot be undone: pass --yes to confirm (no terminal to ask on)")
            return 1
        answer = await asyncio.to_thread(
            input, f"Erase {args.user!r} of tenant {tenant.name} for good? Its personal data "
            "cannot be recovered. Type 'erase' to confirm: ")
        if answer.strip() != "erase":
            err("not erased")
            return 1
    done = await erasure.erase_user(ctx.conn, tenant, args.user, args.reason, ctx.actor("user erase"))
    if done.already:
        err(f"user {done.user_id} was already erased ({done.erased_at:%Y-%m-%d %H:%M:%S} UTC); nothing changed")
    else:
        err(f"user {done.user_id} erased: its key is destroyed, its personal data unreadable in the log and "
            f"gone from the views and the audit trail (it left {done.groups_left} groups); its history of "
            "types, times and actors remains")
    print(done.user_id)
    return 0
