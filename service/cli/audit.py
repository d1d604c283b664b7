"""`scimledger audit ...`: the auditor's questions from a shell, with the API's answers.

    scimledger audit events  --tenant T [--type] [--target] [--actor] [--since] [--until] [--format]
    scimledger audit history --tenant T USER            (an id or a userName, deleted ones too)
    scimledger audit state   --tenant T USER --as-of ISO-8601
    scimledger audit verify  --tenant T                 (exit 1 on a break, naming its position)

They work whether or not `serve` runs. Before answering, a command brings the follower it reads
up to date itself: if no runner holds the follower's lock (serve is not running), it takes the
lock, catches up and lets go; if serve's runner holds it, it waits (up to 5 s) for the lag to
reach zero. Either way the answer includes every event committed before the command started,
and a projection that is stopped or failed is reported on stderr, never hidden.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

import asyncpg
import msgspec

from projections.followers import runner
from projections.followers.audit import (
    CLI_ACTOR_PREFIX,
    AuditEntry,
    AuditProjection,
    AuditQuery,
    timestamp,
)
from projections.followers.seal import SealProjection
from service.app import audit, tenancy
from service.cli.context import Context
from service.cli.options import command, commands
from service.cli.output import err, printable
from service.scim.render import render_group_with_members, render_user

_encode = msgspec.json.Encoder().encode


def register(sub: Any) -> None:
    cmds = commands(sub, "audit", "the audit trail: events, history, state as of, verify")

    events = command(cmds, "events", run=cmd_events, tenant=True,
                     help="search the audit trail (all matching events, in order)")
    events.add_argument("--type", default=None, help="event types, comma-separated (user.deactivated,...)")
    events.add_argument("--target", default=None, help="an id, userName or displayName (past ones too)")
    events.add_argument("--actor", default=None, help="a token label or token id")
    events.add_argument("--since", default=None, help="ISO-8601, inclusive")
    events.add_argument("--until", default=None, help="ISO-8601, exclusive")
    events.add_argument("--format", choices=("table", "jsonl", "csv"), default="table")

    history = command(cmds, "history", help="a user's (or group's) whole story", run=cmd_history, tenant=True)
    history.add_argument("user", metavar="USER", help="id or userName (deleted and renamed users too)")
    history.add_argument("--format", choices=("table", "jsonl", "csv"), default="table")

    state = command(cmds, "state", run=cmd_state, tenant=True,
                    help="a user (or group) exactly as it was at a moment")
    state.add_argument("user", metavar="USER", help="id or userName")
    state.add_argument("--as-of", required=True, help="ISO-8601 date-time (UTC unless an offset is given)")

    verify = command(cmds, "verify", run=cmd_verify, tenant=True,
                     help="recompute the tenant's seal chain; exit 1 on a break")
    verify.add_argument("--format", choices=("text", "json"), default="text")


async def _bring_up_to_date(conn: asyncpg.Connection, projection: runner.Projection) -> None:
    for note in await audit.bring_up_to_date(conn, projection):
        err(note)


def _table_line(entry: AuditEntry) -> str:
    """One row of the table; every value from a client passes through `printable`, so a
    userName of "\\x1b[2J" or "a\\nfake row" cannot clear the screen or add a line."""
    a = entry.actor
    who = a.label or "-"
    if a.kind == "cli":
        who = f"{CLI_ACTOR_PREFIX}{a.os_user or '?'}"
    elif a.token_id:
        who = f"{who} ({a.token_id})"
    target = printable(f"{entry.target_type}:{entry.target_name or entry.target_id}")
    return (f"{entry.position:>10}  {timestamp(entry.recorded_at)}  {printable(entry.type):<22}  "
            f"{target:<40}  {printable(who):<50}  {printable(a.request_id or '-')}")


def _write(entries: list[AuditEntry], fmt: str, first: bool) -> None:
    out = sys.stdout
    if fmt == "jsonl":
        out.write(audit.jsonl_lines(entries).decode())
    elif fmt == "csv":
        out.write(audit.csv_lines(entries, header=first).decode())
    else:
        if first:
            out.write(f"{'position':>10}  {'recordedAt':27}  {'type':<22}  {'target':<40}  "
                      f"{'actor':<50}  requestId\n")
        for e in entries:
            out.write(_table_line(e) + "\n")
    out.flush()


async def _print_walk(conn: asyncpg.Connection, tenant_id: uuid.UUID, query: AuditQuery, fmt: str) -> int:
    first = True
    count = 0
    async for page in audit.walk(conn, tenant_id, query):
        _write(page, fmt, first)
        first = False
        count += len(page)
    if first and fmt != "jsonl":
        _write([], fmt, True)
    err(f"{count} events")
    return count


async def cmd_events(args: argparse.Namespace, ctx: Context) -> int:
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    values = {k: v for k, v in (("type", args.type), ("target", args.target), ("actor", args.actor),
                                ("since", args.since), ("until", args.until)) if v is not None}
    query = audit.parse_search(values)
    await _bring_up_to_date(ctx.conn, AuditProjection())
    await _print_walk(ctx.conn, tenant.id, query, args.format)
    return 0


async def cmd_history(args: argparse.Namespace, ctx: Context) -> int:
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    await _bring_up_to_date(ctx.conn, AuditProjection())
    if not await audit.target_exists(ctx.conn, tenant.id, args.user):
        err(f"no user or group {args.user!r} in the audit trail of tenant {args.tenant}")
        return 1
    await _print_walk(ctx.conn, tenant.id, AuditQuery(target=args.user), args.format)
    return 0


def _scim_base(ctx: Context) -> str:
    settings = ctx.settings
    if settings.public_url:
        return settings.public_url.rstrip("/") + "/scim/v2"
    return f"http://{settings.host}:{settings.port}/scim/v2"


async def cmd_state(args: argparse.Namespace, ctx: Context) -> int:
    """The target as of a moment; a userName held by several users over time resolves to the
    one that existed at that moment."""
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    moment = audit.parse_moment(args.as_of, "--as-of")
    await _bring_up_to_date(ctx.conn, AuditProjection())
    candidates, states = await audit.states_named(ctx.conn, tenant.id, args.user, moment)
    base = _scim_base(ctx)
    found: list[dict[str, Any]] = [
        render_user(state, base, None) if kind == "user" else render_group_with_members(state[0], state[1], base)
        for kind, state in states
    ]
    if not candidates:
        err(f"no user or group {args.user!r} in the audit trail of tenant {args.tenant}")
        return 1
    if not found:
        err(f"{args.user!r} did not exist at {timestamp(moment)}")
        return 1
    if len(found) > 1:
        err(f"{args.user!r} names {len(found)} resources at that moment: "
            f"{', '.join(f['id'] for f in found)}; give an id")
        return 1
    print(_encode(found[0]).decode())
    return 0


async def cmd_verify(args: argparse.Namespace, ctx: Context) -> int:
    tenant = await tenancy.get_tenant(ctx.conn, args.tenant)
    await _bring_up_to_date(ctx.conn, SealProjection())
    report = await audit.verify(ctx.conn, tenant.id)
    if args.format == "json":
        print(_encode(report.to_json()).decode())
    head = f"head seq {report.head_seq}, position {report.head_position}, hash {report.head_hash}"
    if report.first_break is not None:
        b = report.first_break
        err(f"BROKEN: first bad position {b.position} ({b.problem}): {b.detail}")
        err(f"{report.sealed} events sealed; {head}")
        return 1
    err(f"ok: {report.sealed} events sealed, {report.unsealed} not sealed yet; {head}")
    return 0
