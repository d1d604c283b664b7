"""`scimledger user ...`: the app's own admin surface for users.

Users also change on the app's side: an admin creates a user in the app (and the IdP imports it)
or deactivates one. These commands append the same events as the SCIM handlers, with the CLI and
the operating-system user as the actor, so GET /Users shows them and the audit trail names them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from service.app import erasure, tenancy, users
from service.cli.context import Context
from service.cli.options import tenant_option
from service.cli.output import err, printable
from service.scim.schema import CORE_USER


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


async def _set_active(args: argparse.Namespace, ctx: Context, active: bool) -> int:
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    command = "user reactivate" if active else "user deactivate"
    row, changed = await users.set_active(ctx.conn, tenant, args.user, active, ctx.actor(command))
    name = printable(row.user_name)
    if not changed:
        err(f"{name} is already {'active' if active else 'inactive'}")
    else:
        err(f"{name} {'reactivated' if active else 'deactivated'}")
    return 0


async def cmd_user_deactivate(args: argparse.Namespace, ctx: Context) -> int:
    return await _set_active(args, ctx, False)


async def cmd_user_reactivate(args: argparse.Namespace, ctx: Context) -> int:
    return await _set_active(args, ctx, True)


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


def register(sub: Any) -> None:
    user = sub.add_parser("user", help="manage users on the app's side").add_subparsers(dest="user", required=True)
    create = user.add_parser("create", help="create a user; prints its id")
    tenant_option(create)
    create.add_argument("user_name", metavar="USERNAME")
    create.add_argument("--given", default=None)
    create.add_argument("--family", default=None)
    create.add_argument("--email", default=None)
    create.set_defaults(run=cmd_user_create)
    for name, fn, text in (
        ("deactivate", cmd_user_deactivate, "deactivate a user (never deletes)"),
        ("reactivate", cmd_user_reactivate, "reactivate a user"),
    ):
        p = user.add_parser(name, help=text)
        tenant_option(p)
        p.add_argument("user", metavar="USER", help="id or userName")
        p.set_defaults(run=fn)
    erase = user.add_parser("erase", help="erase a user's personal data for good (crypto-shredding); prints its id")
    tenant_option(erase)
    erase.add_argument("user", metavar="USER", help="id or userName (active, inactive or deleted)")
    erase.add_argument("--reason", required=True, help="why (the request or ticket), kept in the log")
    erase.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    erase.set_defaults(run=cmd_user_erase)
    listing = user.add_parser("list", help="list the tenant's users")
    tenant_option(listing)
    listing.set_defaults(run=cmd_user_list)
