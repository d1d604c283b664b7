"""`scimledger stream ...`: the app's security-event streams (docs/events.md).

    stream create --tenant T (--push URL [--push-header "Name: value"]... | --poll)
                  [--events prov,caep] [--format full|notice] [--audience AUD]
                                         stdout: the stream id alone
    stream list --tenant T               header values masked
    stream status ID                     position, lag (events, seconds), delivered, retried, last error
    stream delete ID
    stream replay ID --from TIME         redeliver the tenant's events recorded since TIME (ISO 8601)
    stream keys                          the SET signing keys, and which are published
    stream rotate-key [--overlap-hours H] a new signing key; the old stays published H hours

Everything but those results goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from typing import Any

from projections.domain import security_events as sets
from service.app import set_keys, streams, tenancy
from service.cli.context import Context
from service.cli.options import command, commands
from service.cli.output import err, printable
from service.runtime.keys import keys_dir


def register(sub: Any) -> None:
    stream = commands(sub, "stream", "security-event streams to the app (RFC 9967 SETs, push or poll)")

    create = command(stream, "create", run=cmd_create, tenant=True,
                     help="a stream of a tenant; prints its id alone")
    how = create.add_mutually_exclusive_group(required=True)
    how.add_argument("--push", type=_argument(streams.check_endpoint), metavar="URL",
                     help="POST each SET to this URL (RFC 8935)")
    how.add_argument("--poll", action="store_true", help="the receiver polls for SETs (RFC 8936)")
    create.add_argument("--push-header", type=_argument(streams.parse_header), action="append", default=[],
                        metavar='"NAME: VALUE"', help="a header of every push (a credential: stored sealed, shown masked)")
    create.add_argument("--events", type=_argument(lambda raw: streams.check_events(raw.split(","))),
                        default=(sets.PROV,), help="prov (RFC 9967 SCIM events), caep (session-revoked), or both: prov,caep")
    create.add_argument("--format", choices=sets.FORMATS, default=sets.NOTICE,
                        help="full: the resource or PatchOp in each SET; notice (default): the changed attributes' names")
    create.add_argument("--audience", default=None, help="the SETs' aud (default: the push URL, or the stream's URN)")

    command(stream, "list", help="a tenant's streams (header values masked)", run=cmd_list, tenant=True)

    for name, run, text in (("status", cmd_status, "position, lag, delivered, retried, last error"),
                            ("delete", cmd_delete, "delete a stream and what it had not delivered")):
        one = stream.add_parser(name, help=text)
        one.add_argument("stream_id", metavar="ID", type=stream_id_arg)
        one.set_defaults(run=run)

    replay = command(stream, "replay", run=cmd_replay,
                     help="redeliver the tenant's events recorded since a time")
    replay.add_argument("stream_id", metavar="ID", type=stream_id_arg)
    replay.add_argument("--from", dest="since", type=moment_arg, required=True, metavar="TIME",
                        help="ISO 8601, e.g. 2026-05-01T09:00:00Z")

    stream.add_parser("keys", help="the SET signing keys").set_defaults(run=cmd_keys)
    rotate = command(stream, "rotate-key", help="a new SET signing key; prints its id", run=cmd_rotate)
    rotate.add_argument("--overlap-hours", type=float, default=set_keys.DEFAULT_OVERLAP.total_seconds() / 3600,
                        help="how long the previous key stays published (default 168)")


def stream_id_arg(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a stream id: {raw!r}") from e


def _argument(check: Any) -> Any:
    """An argparse type from a checker raising ValueError (a usage error, exit 2)."""
    def parse(raw: str) -> Any:
        try:
            return check(raw)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from e
    return parse


def moment_arg(raw: str) -> dt.datetime:
    """An ISO 8601 time; without an offset, UTC."""
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {raw!r} (e.g. 2026-05-01T09:00:00Z)") from e
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _kek(ctx: Context) -> bytes:
    return set_keys.key_encryption_key(keys_dir(ctx.settings))


async def cmd_create(args: argparse.Namespace, ctx: Context) -> int:
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    stream_id = await streams.create_stream(
        ctx.conn, tenant.id, kek=_kek(ctx), push=args.push, headers=args.push_header, events=args.events,
        form=args.format, audience=args.audience,
    )
    how = f"pushed to {args.push}" if args.push else f"polled at /events/v1/streams/{stream_id}/poll"
    err(f"stream {stream_id} for tenant {tenant.name}: {', '.join(args.events)} events ({args.format}), {how}; "
        "it gets the changes from now on (`stream replay` sends older ones)")
    print(stream_id)
    return 0


async def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    print(f"{'stream id':36}  {'delivery':8}  {'events':9}  {'format':6}  {'state':7}  receiver")
    for s in await streams.list_streams(ctx.conn, tenant.id):
        receiver = s.endpoint or "poll"
        if s.header_names:
            receiver += " (" + ", ".join(s.masked_headers) + ")"
        print(f"{s.id!s:36}  {s.delivery:8}  {','.join(s.events):9}  {s.form:6}  {s.state:7}  "
              f"{printable(receiver)}; aud {printable(s.audience)}")
    return 0


async def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    status = await streams.stream_status(ctx.conn, args.stream_id)
    s = status.stream
    lines = [
        f"stream      {s.id} ({s.delivery}, {','.join(s.events)}, {s.form}), tenant {s.tenant_id}",
        f"receiver    {printable(s.endpoint or 'poll')}; audience {printable(s.audience)}",
        f"state       {s.state}",
        f"position    {s.delivered_position if s.delivered_position is not None else '-'} "
        f"(the log position of the last SET delivered, {_when(s.delivered_at)})",
        f"lag         {status.pending} SETs pending{'+' if status.pending >= streams.LAG_CAP else ''}, "
        f"{status.follower_lag} events not read yet by the streams follower ({status.follower_state}); "
        f"oldest {status.lag_seconds:.1f} s",
        f"delivered   {s.delivered}",
        f"retried     {s.retried}",
        f"refused     {s.failed} ({status.refused} kept; `stream replay` sends them again)",
        f"last error  {printable(s.last_error) if s.last_error else '-'}"
        + (f" ({_when(s.last_error_at)})" if s.last_error_at else ""),
    ]
    print("\n".join(lines))
    return 0


async def cmd_delete(args: argparse.Namespace, ctx: Context) -> int:
    await streams.delete_stream(ctx.conn, args.stream_id)
    err(f"stream {args.stream_id} deleted, with the SETs it had not delivered")
    return 0


async def cmd_replay(args: argparse.Namespace, ctx: Context) -> int:
    n = await streams.replay_stream(ctx.conn, args.stream_id, args.since)
    err(f"stream {args.stream_id}: {n} SETs of events since {_when(args.since)} queued again "
        "(same jti as before: receivers deduplicate)")
    return 0


async def cmd_keys(args: argparse.Namespace, ctx: Context) -> int:
    await set_keys.ensure_signing_key(ctx.conn, _kek(ctx))
    now = await ctx.conn.fetchval("SELECT now()")
    keys = await set_keys.list_keys(ctx.conn)
    print(f"{'key id':44}  {'created':20}  state")
    for i, k in enumerate(keys):
        if i == len(keys) - 1:
            state = "signing"
        elif k.retire_after is not None and k.retire_after > now:
            state = f"published until {_when(k.retire_after)}"
        else:
            state = "retired"
        print(f"{k.kid:44}  {_when(k.created_at):20}  {state}")
    return 0


async def cmd_rotate(args: argparse.Namespace, ctx: Context) -> int:
    kid = await set_keys.rotate(ctx.conn, _kek(ctx), dt.timedelta(hours=args.overlap_hours))
    err(f"new SET signing key {kid}; every worker signs with it within {set_keys.REFRESH_S:g} s; the previous "
        f"key stays in /.well-known/jwks.json for {args.overlap_hours:g} h")
    print(kid)
    return 0
