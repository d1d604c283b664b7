"""`scimledger projections status|rebuild|verify`: the operator's view of the projections.

The inline views (users, groups, group_members) are written in the append transaction, so they
are always at the head of the log; the followers (audit, seal) have a checkpoint, a lag (counted
up to 10,000 events: `10000+`) and dead letters, the events they could not apply and stepped
over (`dead-letters NAME` lists them). `rebuild` and `verify` work while `serve` runs
(projections/rebuild/ explains how); a rebuild also replays the dead letters.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from eventstore.stats import LAG_CAP, head_position
from projections import registry
from projections.followers import dead_letters
from projections.followers import runner as follower
from projections.rebuild import (
    RebuildError,
    inline_views,
    rebuild_follower,
    rebuild_inline,
    verify_follower,
    verify_inline,
)
from service.cli.context import open_pool
from service.cli.output import err
from service.runtime.config import Settings


def register(sub: Any) -> None:
    proj = sub.add_parser("projections", help="projection status, rebuild and verify").add_subparsers(
        dest="projections", required=True
    )
    proj.add_parser("status", help="position, lag, state and dead letters of every projection").set_defaults(sync=cmd_status)
    dead = proj.add_parser("dead-letters", help="the events a follower could not apply and stepped over")
    dead.add_argument("name", metavar="NAME", help=f"a follower: {', '.join(registry.FOLLOWER_NAMES)}")
    dead.add_argument("--limit", type=_listing_limit, default=100, help="show at most this many, 1..10000 (default 100)")
    dead.set_defaults(sync=cmd_dead_letters)
    names_help = (f"projections (default: all): {', '.join(registry.INLINE_VIEWS)}, "
                  f"and the followers ({', '.join(registry.FOLLOWER_NAMES)})")
    rebuild = proj.add_parser("rebuild", help="rebuild from the log into shadow tables and swap them in")
    rebuild.add_argument("names", nargs="*", metavar="NAME", help=names_help)
    rebuild.set_defaults(sync=cmd_rebuild)
    verify = proj.add_parser("verify", help="rebuild into shadow tables and compare; non-zero exit on any difference")
    verify.add_argument("names", nargs="*", metavar="NAME", help=names_help)
    verify.set_defaults(sync=cmd_verify)


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    name: str
    kind: str  # inline | follower
    state: str  # running | stopped | failed
    position: int
    lag_events: int
    lag_seconds: float
    error: str | None = None
    dead_letters: int = 0


async def projection_status(conn: asyncpg.Connection) -> list[ProjectionStatus]:
    """Every projection: the inline views at the log head, the followers at their checkpoints."""
    head = await head_position(conn)
    out = [ProjectionStatus(v, "inline", follower.RUNNING, head, 0, 0.0) for v in registry.INLINE_VIEWS]
    names = set(registry.FOLLOWER_NAMES)
    rows = {r.name: r for r in await follower.all_checkpoints(conn)}
    followers = sorted(names | set(rows))
    dead = await dead_letters.counts(conn, followers)
    for name in followers:
        row = rows.get(name)
        lag = await follower.lag(conn, name)
        out.append(ProjectionStatus(
            name, "follower", row.state if row else follower.RUNNING,
            row.checkpoint[1] if row else 0, lag.events, round(lag.seconds, 3),
            row.error if row else None, dead[name],
        ))
    return out


def _at_least(n: int, cap: int) -> str:
    return f"{n}+" if n >= cap else str(n)


def format_status(rows: list[ProjectionStatus]) -> str:
    lines = [f"{'projection':15} {'kind':8} {'state':8} {'position':>10} {'lag events':>10} {'lag s':>8} "
             f"{'dead letters':>12}  error"]
    for r in rows:
        lines.append(f"{r.name:15} {r.kind:8} {r.state:8} {r.position:>10} {_at_least(r.lag_events, LAG_CAP):>10} "
                     f"{r.lag_seconds:>8.1f} {_at_least(r.dead_letters, dead_letters.COUNT_CAP):>12}  "
                     f"{_printable(r.error or '')}".rstrip())
    return "\n".join(lines)


def _printable(text: str) -> str:
    """One line without control characters (an error can quote an event's data)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def format_dead_letters(rows: list[dead_letters.DeadLetter]) -> str:
    lines = [f"{'position':>10}  {'tenant':36}  {'type':22}  {'stream':36}  {'failed at':25}  error"]
    for d in rows:
        lines.append(f"{d.position:>10}  {d.tenant_id!s:36}  {_printable(d.type or '(gone)')[:22]:22}  "
                     f"{d.stream_id or '-'!s:36}  {d.failed_at.isoformat(timespec='seconds'):25}  {_printable(d.error)}")
    return "\n".join(lines)


def _followers_by_name() -> dict[str, follower.Projection]:
    return {p.name: p for p in registry.followers()}


def known_names() -> list[str]:
    return registry.names()


async def _with_pool(settings: Settings, work: Any) -> int:
    pool, _ = await open_pool(settings, max_size=6)
    try:
        return int(await work(pool))
    finally:
        await pool.close()


def _check_names(names: list[str]) -> str | None:
    unknown = [n for n in names if n not in known_names()]
    if unknown:
        return f"unknown projection(s) {', '.join(unknown)}; known: {', '.join(known_names())}"
    return None


def _named(args: argparse.Namespace) -> list[str] | None:
    """The projections a command names (all without names), or None after saying what is wrong."""
    names: list[str] = args.names or known_names()
    problem = _check_names(names)
    if problem:
        err(problem)
        return None
    return names


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    async def work(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn:
            print(format_status(await projection_status(conn)))
        return 0

    return asyncio.run(_with_pool(settings, work))


def _listing_limit(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= dead_letters.COUNT_CAP):
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to {dead_letters.COUNT_CAP}")
    return int(raw)


def cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    if args.name not in registry.FOLLOWER_NAMES:
        err(f"unknown follower {args.name!r}; followers: {', '.join(registry.FOLLOWER_NAMES)}")
        return 2

    async def work(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn:
            rows = await dead_letters.listing(conn, args.name, limit=args.limit)
            total = (await dead_letters.counts(conn, [args.name]))[args.name]
        print(format_dead_letters(rows))
        err(f"{_at_least(total, dead_letters.COUNT_CAP)} dead letter(s) of {args.name}"
            + (f", the first {len(rows)} shown" if total > len(rows) else "")
            + ("; fix the cause, then `scimledger projections rebuild " + args.name + "` replays them" if total else ""))
        return 0

    return asyncio.run(_with_pool(settings, work))


def _over_named(
    args: argparse.Namespace, settings: Settings,
    work: Callable[[asyncpg.Pool, list[str], bool], Awaitable[int]],
) -> int:
    """Run `work` over the projections the command names (2 when a name is unknown)."""
    names = _named(args)
    if names is None:
        return 2
    tty = sys.stderr.isatty()

    async def run(pool: asyncpg.Pool) -> int:
        return await work(pool, names, tty)

    return asyncio.run(_with_pool(settings, run))


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    async def work(pool: asyncpg.Pool, names: list[str], tty: bool) -> int:
        views = inline_views(names)
        try:
            if views:
                result = await rebuild_inline(pool, views, tty=tty, stream=sys.stderr)
                err(f"rebuilt {', '.join(views)}: {result.events:,} events in {result.seconds:.2f}s "
                    f"({result.events_per_s:,.0f} events/s), {result.tail_events} applied at the swap")
            followers = _followers_by_name()
            for name in names:
                if name in followers:
                    result = await rebuild_follower(pool, followers[name], tty=tty, stream=sys.stderr)
                    err(f"rebuilt {name}: {result.events:,} events in {result.seconds:.2f}s "
                        f"({result.events_per_s:,.0f} events/s)")
        except RebuildError as e:
            err(f"rebuild failed, nothing swapped: {e}")
            return 1
        return 0

    return _over_named(args, settings, work)


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    async def work(pool: asyncpg.Pool, names: list[str], tty: bool) -> int:
        differences: list[str] = []
        try:
            views = inline_views(names)
            if views:
                differences += await verify_inline(pool, views, tty=tty, stream=sys.stderr)
            followers = _followers_by_name()
            for name in names:
                if name in followers:
                    differences += await verify_follower(pool, followers[name], tty=tty, stream=sys.stderr)
        except RebuildError as e:
            err(f"verify failed: {e}")
            return 1
        for line in differences:
            print(line)
        if differences:
            err(f"{len(differences)} difference(s) between the live projections and a rebuild from the log")
            return 1
        err(f"verified {', '.join(names)}: identical to a rebuild from the log")
        return 0

    return _over_named(args, settings, work)
