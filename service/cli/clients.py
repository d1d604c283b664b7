"""`scimledger client ...`: OAuth 2.0 clients of a tenant (Entra's gallery asks for them).

    client create   --tenant T --label L [--scope scim|audit] [--secret-days N]
                    stdout: the client id, then the secret (shown once)
    client secret add CLIENT_ID [--secret-days N]        stdout: the new secret alone
    client secret revoke CLIENT_ID SECRET_ID
    client revoke CLIENT_ID                              its access tokens are refused at once
    client list --tenant T                               ids, labels, scopes, secrets' expiries
    client federate --tenant T --label L --issuer URL --subject SUB (--jwks-url URL | --jwks-file F)
                    [--audience AUD] [--scope ...]          stdout: the client id alone

Everything but those results goes to stderr. Secrets are shown once; only hashes are stored.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

from service.app import oauth, tenancy
from service.app.jwks import JwksUnavailable, parse_key_set
from service.app.principal import SCOPES
from service.cli.context import Context
from service.cli.options import command, commands, label_arg
from service.cli.output import err


def register(sub: Any) -> None:
    client = commands(sub, "client", "manage OAuth 2.0 clients (client credentials, federation)")
    create = command(client, "create", run=cmd_create, tenant=True,
                     help="a client with a secret; prints its id, then the secret")
    create.add_argument("--label", required=True, type=label_arg, help="names the actor in the audit trail (entra-prod)")
    create.add_argument("--scope", choices=SCOPES, default="scim")
    create.add_argument("--secret-days", type=int, default=None,
                        help=f"lifetime of the secret (default {oauth.DEFAULT_SECRET_DAYS}, at most {oauth.MAX_SECRET_DAYS})")

    secret = client.add_parser("secret", help="a client's secrets").add_subparsers(dest="secret", required=True)
    add = command(secret, "add", help="another active secret (rotation); prints it alone", run=cmd_secret_add)
    add.add_argument("client_id", metavar="CLIENT_ID", type=client_id_arg)
    add.add_argument("--secret-days", type=int, default=None)
    revoke_secret = command(secret, "revoke", run=cmd_secret_revoke,
                            help="refuse a secret and its access tokens")
    revoke_secret.add_argument("client_id", metavar="CLIENT_ID", type=client_id_arg)
    revoke_secret.add_argument("secret_id", metavar="SECRET_ID", type=client_id_arg)

    revoke = command(client, "revoke", help="refuse the client and its access tokens at once", run=cmd_revoke)
    revoke.add_argument("client_id", metavar="CLIENT_ID", type=client_id_arg)

    command(client, "list", help="a tenant's clients (never a secret)", run=cmd_list, tenant=True)

    federate = command(client, "federate", run=cmd_federate, tenant=True,
                       help="a client authenticated by a trusted issuer's JWTs; prints its id")
    federate.add_argument("--label", required=True, type=label_arg)
    federate.add_argument("--issuer", required=True, help="the `iss` of the client's assertions")
    federate.add_argument("--subject", required=True, help="the `sub` of the client's assertions")
    keys = federate.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks-url", default=None, help="the issuer's JWKS (https; fetched and cached)")
    keys.add_argument("--jwks-file", type=jwks_file_arg, default=None, help="a JWKS file, stored with the client")
    federate.add_argument("--scope", choices=SCOPES, default="scim")
    federate.add_argument("--audience", default=None,
                          help="an `aud` the issuer's assertions carry besides this token endpoint (Entra: api://<app id>)")


def client_id_arg(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a client or secret id: {raw!r}") from e


def jwks_file_arg(raw: str) -> dict[str, Any]:
    """A JWKS file, read and checked when the command line is parsed (RFC 7517 5)."""
    try:
        jwks = json.loads(Path(raw).read_text())
        parse_key_set(jwks)
    except (OSError, ValueError, JwksUnavailable) as e:
        raise argparse.ArgumentTypeError(f"cannot use {raw} as a JWKS: {e}") from e
    assert isinstance(jwks, dict)
    return jwks


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


async def cmd_create(args: argparse.Namespace, ctx: Context) -> int:
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    client_id, secret = await oauth.create_client(ctx.conn, tenant.id, args.label, args.scope, args.secret_days)
    err(f"OAuth client {client_id} ({args.scope}, label {args.label!r}) for tenant {tenant.name}; "
        "the client id and the secret below (shown once) go into the IdP with the token endpoint "
        "<public URL>/oauth2/token")
    print(client_id)
    print(secret)
    return 0


async def cmd_secret_add(args: argparse.Namespace, ctx: Context) -> int:
    secret_id, secret = await oauth.add_secret(ctx.conn, args.client_id, args.secret_days)
    err(f"secret {secret_id} added to client {args.client_id}; the old ones stay valid until revoked "
        "or expired; the secret below is shown once")
    print(secret)
    return 0


async def cmd_secret_revoke(args: argparse.Namespace, ctx: Context) -> int:
    await oauth.revoke_secret(ctx.conn, args.client_id, args.secret_id)
    err(f"secret {args.secret_id} of client {args.client_id} revoked; its access tokens are refused from now on")
    return 0


async def cmd_revoke(args: argparse.Namespace, ctx: Context) -> int:
    await oauth.revoke_client(ctx.conn, args.client_id)
    err(f"client {args.client_id} revoked; every worker refuses its access tokens from the next request")
    return 0


async def cmd_federate(args: argparse.Namespace, ctx: Context) -> int:
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    client_id = await oauth.federate_client(
        ctx.conn, tenant.id, args.label, issuer=args.issuer, subject=args.subject,
        jwks_url=args.jwks_url, jwks=args.jwks_file, scope=args.scope, audience=args.audience,
    )
    err(f"federated OAuth client {client_id} ({args.scope}, label {args.label!r}) trusts issuer "
        f"{args.issuer} for subject {args.subject}")
    print(client_id)
    return 0


async def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    now = dt.datetime.now(dt.UTC)
    print(f"{'client id':36}  {'label':16}  {'scope':5}  {'kind':9}  {'state':8}  secrets (id: expiry)")
    for c in await oauth.list_clients(ctx.conn, tenant.id):
        state = "revoked" if c.revoked_at else "active"
        if c.kind == "federated":
            detail = f"issuer {c.issuer}, subject {c.subject}, keys {c.jwks_url or 'from a file'}"
        else:
            parts = []
            for s in c.secrets:
                status = "revoked" if s.revoked_at else ("expired" if s.expires_at <= now else "expires")
                parts.append(f"{s.id}: {status} {_when(s.expires_at)}")
            detail = "; ".join(parts) or "-"
        print(f"{c.id!s:36}  {c.label:16}  {c.scope:5}  {c.kind:9}  {state:8}  {detail}")
    return 0
