"""`scimledger log seal`: the way out for a log written before personal data was sealed
(docs/privacy.md, "Existing logs").

Events appended before this version hold every user's personal data in clear; a destroyed key
cannot erase those. `seal_log` rewrites the log once (eventstore/rewrite.py): every user event's
personal part sealed under its subject's key (a key is made for a subject that has none; a
subject already erased gets a key that is thrown away at once, so what it held in clear becomes
unreadable too), every other byte, position, transaction and time kept. In the same
transaction it resets the seal chain, and it appends `log.sealed` to each tenant's `log` stream,
so the trail says when this happened and who ran it. After the commit it seals the chain again
from the rewritten bytes and verifies every tenant's.

Run it with `serve` stopped: it needs the followers' locks (it refuses while a runner holds
one) and an exclusive lock on the log. Old backups and WAL archives still hold the clear
payloads; docs/privacy.md says what to do with them.
"""

from __future__ import annotations

import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg

from eventstore import shredding
from eventstore.rewrite import Row, rewrite
from eventstore.scan import streams_of_type
from eventstore.store import NewEvent, append, stream_version
from projections import registry
from projections.domain.actor import Actor
from projections.domain.errors import DomainError
from projections.domain.events import LogSealed, encode_event, event_type
from projections.followers import runner, seal
from projections.privacy import holds_clear_personal, seal_events

LOG_STREAM = "log"


class FollowersRunning(DomainError):
    """A follower runner holds its lock: `serve` is running."""


class _NothingToSeal(Exception):
    """Every payload is sealed already: roll the copy back."""


@dataclass(frozen=True, slots=True)
class Sealed:
    events: int  # payloads sealed by this run
    subjects: int
    tenants: int
    breaks: list[str]  # tenants whose re-sealed chain does not verify (should be none)


def seal_row(row: Row, keys: dict[tuple[uuid.UUID, uuid.UUID], bytes]) -> dict[str, Any]:
    """A row's payload in its sealed form (unchanged when it is not a user's, or sealed already)."""
    if row.stream_type != "user" or not holds_clear_personal(row.data):
        return row.data
    key = keys[(row.tenant_id, row.stream_id)]
    [event] = seal_events([NewEvent(row.type, row.data)], row.tenant_id, row.stream_id, row.version, key)
    return dict(event.data)


async def seal_log(conn: asyncpg.Connection, actor: Actor) -> Sealed | None:
    """Seal every payload written in clear (module doc); None when there was none."""
    names = registry.FOLLOWER_NAMES
    held = []
    try:
        for name in names:
            if not await runner.try_lock(conn, name):
                raise FollowersRunning(f"the {name} follower is running (serve is up): stop serve, then run "
                                       "`scimledger log seal` again")
            held.append(name)
        try:
            async with conn.transaction():
                result = await _rewrite(conn, actor)
        except _NothingToSeal:
            return None
        await runner.catch_up(conn, seal.SealProjection())
        breaks = []
        for tenant_id in result[2]:
            report = await seal.verify(conn, tenant_id)
            if report.first_break is not None:
                breaks.append(f"{tenant_id}: {report.first_break.detail}")
        return Sealed(result[0], result[1], len(result[2]), breaks)
    finally:
        for name in held:
            await runner.unlock(conn, name)


async def _rewrite(conn: asyncpg.Connection, actor: Actor) -> tuple[int, int, list[uuid.UUID]]:
    subjects = await streams_of_type(conn, "user")
    found = await shredding.keys_for(conn, subjects)
    keys: dict[tuple[uuid.UUID, uuid.UUID], bytes] = {}
    for pair in subjects:
        key = found.get(pair, b"")
        if key is None:  # erased: seal under a key nobody keeps
            key = secrets.token_bytes(shredding.KEY_BYTES)
        elif not key:
            key, wrapped = shredding.new_stream_key()
            await shredding.add_key(conn, pair[0], pair[1], wrapped)
        keys[pair] = key
    per_tenant: Counter[uuid.UUID] = Counter()
    touched: dict[uuid.UUID, set[uuid.UUID]] = {}

    def transform(row: Row) -> dict[str, Any]:
        data = seal_row(row, keys)
        if data is not row.data:
            per_tenant[row.tenant_id] += 1
            touched.setdefault(row.tenant_id, set()).add(row.stream_id)
        return data

    done = await rewrite(conn, transform)
    if not done.changed:
        raise _NothingToSeal
    await runner.restart(conn, seal.SealProjection())
    metadata = actor.metadata()
    for tenant_id, count in sorted(per_tenant.items()):
        event = LogSealed(events_sealed=count, subjects=len(touched[tenant_id]))
        version = await stream_version(conn, tenant_id, tenant_id)
        await append(conn, tenant_id, LOG_STREAM, tenant_id, version,
                     [NewEvent(event_type(event), encode_event(event))], metadata)
    return done.changed, sum(len(s) for s in touched.values()), sorted(per_tenant)
