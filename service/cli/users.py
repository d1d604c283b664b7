"""`scimledger user ...`: the app's own admin surface for users.

Users also change on the app's side: an admin creates a user in the app (and the IdP imports it)
or deactivates one. These commands append the same events as the SCIM handlers, with the CLI and
the operating-system user as the actor, so GET /Users shows them and the audit trail names them.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import asyncpg

from projections.domain import decide as commands
from projections.views import users as users_view
from service.app import tenancy
from service.app.actor import cli_metadata
from service.cli.main import err
from service.http.users import write_user
from service.scim.errors import ScimError
from service.scim.resource import normalize
from service.scim.schema import CORE_USER, USER_RESOURCE


async def _principal(conn: asyncpg.Connection, tenant: str) -> tenancy.Principal:
    tenant_id = await tenancy.tenant_id_by_name(conn, tenant)
    row = await conn.fetchrow("SELECT name, seats, rate_limit FROM tenants WHERE id = $1", tenant_id)
    assert row is not None
    return tenancy.Principal(
        tenant_id=tenant_id, tenant_name=row["name"], token_id=uuid.UUID(int=0), label="cli",
        scope="cli", seats=row["seats"], rate_limit=row["rate_limit"],
    )


async def _find(conn: asyncpg.Connection, tenant_id: uuid.UUID, who: str) -> users_view.UserRow | None:
    """A user by id or by userName (case-insensitive)."""
    try:
        row = await users_view.get(conn, tenant_id, uuid.UUID(who))
        if row is not None:
            return row
    except ValueError:
        pass
    return await users_view.get_by_user_name(conn, tenant_id, who)


async def cmd_user_create(args: argparse.Namespace, conn: asyncpg.Connection) -> int:
    principal = await _principal(conn, args.tenant)
    body: dict[str, Any] = {"schemas": [CORE_USER], "userName": args.user_name, "active": True}
    if args.given or args.family:
        body["name"] = {k: v for k, v in (("givenName", args.given), ("familyName", args.family)) if v}
        body["displayName"] = " ".join(v for v in (args.given, args.family) if v)
    if args.email:
        body["emails"] = [{"value": args.email, "type": "work", "primary": True}]
    try:
        normalized = normalize(body, USER_RESOURCE)
        events = commands.create_user(normalized.resource)
        row = await write_user(conn, principal, uuid.uuid4(), None, events, cli_metadata("user create"))
    except ScimError as e:
        err(f"error: {e.detail}")
        return 1
    print(row.id)
    return 0


async def _set_active(args: argparse.Namespace, conn: asyncpg.Connection, active: bool) -> int:
    principal = await _principal(conn, args.tenant)
    current = await _find(conn, principal.tenant_id, args.user)
    if current is None:
        err(f"no user {args.user!r} in tenant {args.tenant}")
        return 1
    new = {**current.resource, "active": active}
    events = commands.update_user(current.resource, new)
    if not events:
        err(f"{current.user_name} is already {'active' if active else 'inactive'}")
        return 0
    try:
        await write_user(conn, principal, current.id, current, events,
                         cli_metadata("user reactivate" if active else "user deactivate"))
    except ScimError as e:
        err(f"error: {e.detail}")
        return 1
    err(f"{current.user_name} {'reactivated' if active else 'deactivated'}")
    return 0


async def cmd_user_deactivate(args: argparse.Namespace, conn: asyncpg.Connection) -> int:
    return await _set_active(args, conn, False)


async def cmd_user_reactivate(args: argparse.Namespace, conn: asyncpg.Connection) -> int:
    return await _set_active(args, conn, True)


async def cmd_user_list(args: argparse.Namespace, conn: asyncpg.Connection) -> int:
    principal = await _principal(conn, args.tenant)
    offset = 0
    print(f"{'id':36}  {'active':6}  userName")
    while True:
        _, rows = await users_view.search(conn, principal.tenant_id, offset=offset, limit=1000)
        for row in rows:
            print(f"{row.id!s:36}  {'yes' if row.active else 'no':6}  {row.user_name}")
        if len(rows) < 1000:
            return 0
        offset += len(rows)


def register(sub: Any) -> None:
    user = sub.add_parser("user", help="manage users on the app's side").add_subparsers(dest="user", required=True)
    create = user.add_parser("create", help="create a user; prints its id")
    create.add_argument("--tenant", required=True)
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
        p.add_argument("--tenant", required=True)
        p.add_argument("user", metavar="USER", help="id or userName")
        p.set_defaults(run=fn)
    listing = user.add_parser("list", help="list the tenant's users")
    listing.add_argument("--tenant", required=True)
    listing.set_defaults(run=cmd_user_list)
