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

from projections.followers import audit, seal
from projections.followers import runner as follower
from service.app import tenancy
from service.cli.main import err
from service.http.audit import (
    csv_lines,
    group_as_of_json,
    jsonl_lines,
    parse_moment,
    parse_search,
    user_as_of_json,
)
from service.runtime.config import Settings
from service.scim.errors import ScimError

_encode = msgspec.json.Encoder().encode


async def _tenant(conn: asyncpg.Connection, name: str) -> uuid.UUID | None:
    try:
        return await tenancy.tenant_id_by_name(conn, name)
    except tenancy.TenantNotFound:
        err(f"no tenant {name!r}")
        return None


async def _bring_up_to_date(conn: asyncpg.Connection, projection: follower.Projection) -> None:
    state = await follower.catch_up_once(conn, projection)
    if state != follower.RUNNING:
        row = await follower.load_checkpoint(conn, projection.name)
        detail = f" at position {row.failed_position}: {row.error}" if row and row.error else ""
        err(f"warning: the {projection.name} projection is {state}{detail}; answers stop there")
    behind = await follower.lag(conn, projection.name)
    if behind.events:
        err(f"note: the {projection.name} view is {behind.events} events behind the log")


def _table_line(entry: audit.AuditEntry) -> str:
    a = entry.actor
    who = a.label or "-"
    if a.kind == "cli":
        who = f"cli:{a.os_user or '?'}"
    elif a.token_id:
        who = f"{who} ({a.token_id})"
    target = f"{entry.target_type}:{entry.target_name or entry.target_id}"
    return (f"{entry.position:>10}  {audit.timestamp(entry.recorded_at)}  {entry.type:<22}  "
            f"{target:<40}  {who:<50}  {a.request_id or '-'}")


def _write(entries: list[audit.AuditEntry], fmt: str, first: bool) -> None:
    out = sys.stdout
    if fmt == "jsonl":
        out.write(jsonl_lines(entries).decode())
    elif fmt == "csv":
        out.write(csv_lines(entries, header=first).decode())
    else:
        if first:
            out.write(f"{'position':>10}  {'recordedAt':27}  {'type':<22}  {'target':<40}  "
                      f"{'actor':<50}  requestId\n")
        for e in entries:
            out.write(_table_line(e) + "\n")
    out.flush()


async def _print_walk(conn: asyncpg.Connection, tenant_id: uuid.UUID, query: audit.AuditQuery, fmt: str) -> int:
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


async def cmd_events(args: argparse.Namespace, conn: asyncpg.Connection) -> int:
    tenant_id = await _tenant(conn, args.tenant)
    if tenant_id is None:
        return 1
    values = {k: v for k, v in (("type", args.type), ("target", args.target), ("actor", args.actor),
                                ("since", args.since), ("until", args.until)) if v is not None}
    try:
        query = parse_search(values)
    except ScimError as e:
        err(f"error: {e.detail}")
        return 2
    await _bring_up_to_date(conn, audit.AuditProjection())
    await _print_walk(conn, tenant_id, query, args.format)
    return 0


async def cmd_history(args: argparse.Namespace, conn: asyncpg.Connection) -> int:
    tenant_id = await _tenant(conn, args.tenant)
    if tenant_id is None:
        return 1
    await _bring_up_to_date(conn, audit.AuditProjection())
    if not await audit.target_streams(conn, tenant_id, args.user):
        err(f"no user or group {args.user!r} in the audit trail of tenant {args.tenant}")
        return 1
    await _print_walk(conn, tenant_id, audit.AuditQuery(target=args.user), args.format)
    return 0


def _scim_base() -> str:
    settings = Settings.from_env()
    if settings.public_url:
        return settings.public_url.rstrip("/") + "/scim/v2"
    return f"http://{settings.host}:{settings.port}/scim/v2"


async def cmd_state(args: argparse.Namespace, conn: asyncpg.Connection) -> int:
    """The target as of a moment; a userName held by several users over time resolves to the
    one that existed at that moment."""
    tenant_id = await _tenant(conn, args.tenant)
    if tenant_id is None:
        return 1
    try:
        moment = parse_moment(args.as_of, "--as-of")
    except ScimError as e:
        err(f"error: {e.detail}")
        return 2
    await _bring_up_to_date(conn, audit.AuditProjection())
    candidates = await audit.target_streams(conn, tenant_id, args.user)
    base = _scim_base()
    found: list[dict[str, Any]] = []
    for stream_id in candidates:
        kind = await audit.stream_type(conn, tenant_id, stream_id)
        if kind == "user":
            user = await audit.user_as_of(conn, tenant_id, stream_id, moment)
            if user is not None:
                found.append(user_as_of_json(user, base))
        elif kind == "group":
            group = await audit.group_as_of(conn, tenant_id, stream_id, moment)
            if group is not None:
                found.append(group_as_of_json(group[0], group[1], base))
    if not candidates:
        err(f"no user or group {args.user!r} in the audit trail of tenant {args.tenant}")
        return 1
    if not found:
        err(f"{args.user!r} did not exist at {audit.timestamp(moment)}")
        return 1
    if len(found) > 1:
        err(f"{args.user!r} names {len(found)} resources at that moment: "
            f"{', '.join(f['id'] for f in found)}; give an id")
        return 1
    print(_encode(found[0]).decode())
    return 0


async def cmd_verify(args: argparse.Namespace, conn: asyncpg.Connection) -> int:
    tenant_id = await _tenant(conn, args.tenant)
    if tenant_id is None:
        return 1
    await _bring_up_to_date(conn, seal.SealProjection())
    report = await seal.verify(conn, tenant_id)
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


def register(sub: Any) -> None:
    parser = sub.add_parser("audit", help="the audit trail: events, history, state as of, verify")
    cmds = parser.add_subparsers(dest="audit", required=True)

    events = cmds.add_parser("events", help="search the audit trail (all matching events, in order)")
    events.add_argument("--tenant", required=True)
    events.add_argument("--type", default=None, help="event types, comma-separated (user.deactivated,...)")
    events.add_argument("--target", default=None, help="an id, userName or displayName (past ones too)")
    events.add_argument("--actor", default=None, help="a token label or token id")
    events.add_argument("--since", default=None, help="ISO-8601, inclusive")
    events.add_argument("--until", default=None, help="ISO-8601, exclusive")
    events.add_argument("--format", choices=("table", "jsonl", "csv"), default="table")
    events.set_defaults(run=cmd_events)

    history = cmds.add_parser("history", help="a user's (or group's) whole story")
    history.add_argument("--tenant", required=True)
    history.add_argument("user", metavar="USER", help="id or userName (deleted and renamed users too)")
    history.add_argument("--format", choices=("table", "jsonl", "csv"), default="table")
    history.set_defaults(run=cmd_history)

    state = cmds.add_parser("state", help="a user (or group) exactly as it was at a moment")
    state.add_argument("--tenant", required=True)
    state.add_argument("user", metavar="USER", help="id or userName")
    state.add_argument("--as-of", required=True, help="ISO-8601 date-time (UTC unless an offset is given)")
    state.set_defaults(run=cmd_state)

    verify = cmds.add_parser("verify", help="recompute the tenant's seal chain; exit 1 on a break")
    verify.add_argument("--tenant", required=True)
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.set_defaults(run=cmd_verify)
