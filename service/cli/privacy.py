"""`scimledger log seal` and `scimledger keys status|rotate`: the operator's side of crypto-
shredding (docs/privacy.md). Erasure itself is `scimledger user erase` (service/cli/users.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from eventstore import shredding
from service.app import log_sealing
from service.cli.context import Context
from service.cli.options import commands
from service.cli.output import err
from service.runtime.keys import master_key_path, previous_path

ROTATION_PAUSE_S = 2.0  # running servers notice a new master key file within a second


def register(sub: Any) -> None:
    log = commands(sub, "log", "maintenance of the event log")
    log.add_parser("seal", help="seal personal data written in clear before this version (serve stopped); "
                   "prints how many events were sealed").set_defaults(run=cmd_log_seal)
    keys = sub.add_parser("keys", help="the master key that wraps every subject's key").add_subparsers(
        dest="keys", required=True)
    keys.add_parser("status", help="subject keys per master key").set_defaults(run=cmd_keys_status)
    rotate = keys.add_parser("rotate", help="a new master key; every subject key re-wrapped, no event changed")
    rotate.add_argument("--finish", action="store_true", help="re-wrap keys left by an interrupted rotation")
    rotate.set_defaults(run=lambda args, ctx: (cmd_keys_finish if args.finish else cmd_keys_rotate)(args, ctx))


async def cmd_log_seal(args: argparse.Namespace, ctx: Context) -> int:
    result = await log_sealing.seal_log(ctx.conn, ctx.actor("log seal"))
    if result is None:
        err("nothing to seal: every payload of the log is sealed already")
        return 0
    err(f"sealed {result.events} events of {result.subjects} subjects in {result.tenants} tenants; the seal "
        "chain was computed again from the rewritten log. Old backups and WAL archives still hold the "
        "payloads in clear: see docs/privacy.md")
    if result.breaks:
        for line in result.breaks:
            err(f"seal chain does not verify: {line}")
        return 1
    print(result.events)
    return 0


async def cmd_keys_status(args: argparse.Namespace, ctx: Context) -> int:
    path = master_key_path(ctx.settings)
    current = shredding.current_master()
    rows = await ctx.conn.fetch(
        """SELECT coalesce(kek_id, '(destroyed)') AS kek, count(*) AS n FROM stream_keys
           GROUP BY 1 ORDER BY 1"""
    )
    err(f"master key file: {path} (id {current.id}); previous: "
        f"{previous_path(path) if previous_path(path).exists() else 'none'}")
    print(f"{'master key':18}  subjects")
    for r in rows:
        mark = " (current)" if r["kek"] == current.id else ""
        print(f"{r['kek'] + mark:18}  {r['n']}")
    return 0


async def cmd_keys_rotate(args: argparse.Namespace, ctx: Context) -> int:
    path = master_key_path(ctx.settings)
    old = shredding.current_master()
    previous = previous_path(path)
    if previous.exists():
        err(f"{previous} exists: a rotation is still in progress or was not finished; check `scimledger "
            "keys status`, then remove that file once no key is wrapped by it")
        return 1
    staging = path.with_name(path.name + ".new")
    staging.unlink(missing_ok=True)
    new = shredding.write_master_key(staging)
    os.link(path, previous)  # the old key stays readable beside the new one until the end
    os.replace(staging, path)
    shredding.configure(new, old)
    await asyncio.sleep(ROTATION_PAUSE_S)
    async with ctx.conn.transaction():
        count = await shredding.rewrap(ctx.conn, new)
    left = await ctx.conn.fetchval("SELECT count(*) FROM stream_keys WHERE wrapped IS NOT NULL AND kek_id <> $1", new.id)
    if left:
        err(f"{left} keys are still wrapped by the old master key (written meanwhile); run "
            "`scimledger keys rotate --finish` to re-wrap them")
        return 1
    previous.unlink()
    err(f"master key rotated: {count} subject keys re-wrapped from {old.id} to {new.id}, no event changed. "
        f"Back up {path} now; the old key is gone from {previous}")
    print(new.id)
    return 0


async def cmd_keys_finish(args: argparse.Namespace, ctx: Context) -> int:
    path = master_key_path(ctx.settings)
    current = shredding.current_master()
    async with ctx.conn.transaction():
        count = await shredding.rewrap(ctx.conn, current)
    try:
        previous_path(path).unlink(missing_ok=True)
        gone = "the previous master key file is removed"
    except OSError:  # a read-only mount (a Kubernetes Secret): its owner removes it
        gone = f"remove {previous_path(path).name} from where the key files come from (the Secret)"
    err(f"{count} more subject keys re-wrapped to {current.id}; {gone}")
    return 0
