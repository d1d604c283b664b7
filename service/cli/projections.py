"""`scimledger projections status|rebuild|verify`: the operator's view of the projections.

The inline views (users, groups, group_members) are written in the append transaction, so they
are always at the head of the log; the followers (audit, seal) have a checkpoint and a lag.
`rebuild` and `verify` work while `serve` runs (projections/rebuild/ explains how).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any

import asyncpg

from eventstore.stats import head_position
from projections import registry
from projections.followers import runner as follower
from projections.rebuild import (
    RebuildError,
    inline_views,
    rebuild_follower,
    rebuild_inline,
    verify_follower,
    verify_inline,
)
from service.cli.output import err
from service.runtime.config import Settings
from service.runtime.database import create_pool, migrate, resolve_dsn


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    name: str
    kind: str  # inline | follower
    state: str  # running | stopped | failed
    position: int
    lag_events: int
    lag_seconds: float
    error: str | None = None


async def projection_status(conn: asyncpg.Connection) -> list[ProjectionStatus]:
    """Every projection: the inline views at the log head, the followers at their checkpoints."""
    head = await head_position(conn)
    out = [ProjectionStatus(v, "inline", follower.RUNNING, head, 0, 0.0) for v in registry.INLINE_VIEWS]
    names = set(registry.FOLLOWER_NAMES)
    rows = {r.name: r for r in await follower.all_checkpoints(conn)}
    for name in sorted(names | set(rows)):
        row = rows.get(name)
        lag = await follower.lag(conn, name)
        out.append(ProjectionStatus(
            name, "follower", row.state if row else follower.RUNNING,
            row.checkpoint[1] if row else 0, lag.events, round(lag.seconds, 3),
            row.error if row else None,
        ))
    return out


def format_status(rows: list[ProjectionStatus]) -> str:
    lines = [f"{'projection':15} {'kind':8} {'state':8} {'position':>10} {'lag events':>10} {'lag s':>8}  error"]
    for r in rows:
        lines.append(f"{r.name:15} {r.kind:8} {r.state:8} {r.position:>10} {r.lag_events:>10} "
                     f"{r.lag_seconds:>8.1f}  {r.error or ''}".rstrip())
    return "\n".join(lines)


def _followers_by_name() -> dict[str, follower.Projection]:
    return {p.name: p for p in registry.followers()}


def known_names() -> list[str]:
    return registry.names()


async def _with_pool(settings: Settings, work: Any) -> int:
    pool = await create_pool(resolve_dsn(settings), min_size=1, max_size=6)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
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


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    names = _named(args)
    if names is None:
        return 2
    tty = sys.stderr.isatty()

    async def work(pool: asyncpg.Pool) -> int:
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

    return asyncio.run(_with_pool(settings, work))


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    names = _named(args)
    if names is None:
        return 2
    tty = sys.stderr.isatty()

    async def work(pool: asyncpg.Pool) -> int:
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

    return asyncio.run(_with_pool(settings, work))


def register(sub: Any) -> None:
    proj = sub.add_parser("projections", help="projection status, rebuild and verify").add_subparsers(
        dest="projections", required=True
    )
    proj.add_parser("status", help="position, lag and state of every projection").set_defaults(sync=cmd_status)
    names_help = (f"projections (default: all): {', '.join(registry.INLINE_VIEWS)}, "
                  f"and the followers ({', '.join(registry.FOLLOWER_NAMES)})")
    rebuild = proj.add_parser("rebuild", help="rebuild from the log into shadow tables and swap them in")
    rebuild.add_argument("names", nargs="*", metavar="NAME", help=names_help)
    rebuild.set_defaults(sync=cmd_rebuild)
    verify = proj.add_parser("verify", help="rebuild into shadow tables and compare; non-zero exit on any difference")
    verify.add_argument("names", nargs="*", metavar="NAME", help=names_help)
    verify.set_defaults(sync=cmd_verify)
