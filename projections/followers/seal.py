"""Tamper evidence: a hash chain over each tenant's events, in log order.

The "seal" follower takes each tenant's events in the order it reads the log ((transaction id,
position), gap-free) and stores, per tenant, seq n = 1, 2, 3 ... with

    hash_n = SHA-256(hash_{n-1} || canonical bytes of event n),   hash_0 = 32 zero bytes

where the canonical bytes are the JSON array [position, tenant id, stream id, version, type,
data, metadata, recorded_at] with object keys sorted and recorded_at in UTC to the microsecond.
Writers are not involved: the chain is built after the fact by the one active follower, so the
append path takes no lock and stays unserialised.

`verify` recomputes the chain from the events and compares. Because hash_n covers everything
before it, any change after sealing breaks the chain at the first changed event: an edited
event (hash differs), a deleted one (the sealed position has no event), a reordered one (moved
to another position: the old position is missing or holds other bytes), a removed seal row (a
hole in seq), an event slipped in behind the follower's checkpoint (present, never sealed). It
holds even against someone who bypassed the append-only triggers. What it cannot see alone: a
rewrite of the events AND a consistent recomputation of the whole seal table by someone with
write access to both, or the removal of the newest events with their seals. Against those, keep
the head hash (`verify` reports it) somewhere the database's writers cannot reach and compare.

An event the follower cannot seal (the codec cannot decode it, say) cannot be skipped: the next
link would hash over a hole. The seal isolates per tenant (TENANT, projections/followers/runner.py):
that tenant's chain stops at the event, which becomes a dead letter, and the tenant's later
events stay unsealed until a rebuild; every other tenant's chain goes on. `verify` reports the
stop (`blockedAt`), counts the events from there on as unsealed, and never as a break.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass

import asyncpg
import msgspec

from eventstore.references import WithEvents, unreferenced
from eventstore.store import BEGINNING, Checkpoint, RecordedEvent
from projections.followers import dead_letters
from projections.followers.dead_letters import TENANT
from projections.followers.runner import load_checkpoint

NAME = "seal"
GENESIS = bytes(32)
_CANONICAL = msgspec.json.Encoder(order="sorted").encode


def canonical_bytes(event: RecordedEvent) -> bytes:
    return _CANONICAL([
        event.global_position,
        str(event.tenant_id),
        str(event.stream_id),
        event.version,
        event.type,
        event.data,
        event.metadata,
        event.recorded_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
    ])


def chain(previous: bytes, event: RecordedEvent) -> bytes:
    return hashlib.sha256(previous + canonical_bytes(event)).digest()


@dataclass
class SealProjection:
    """The "seal" follower: extends each tenant's chain with the batch's events."""

    name: str = NAME
    isolation: str = TENANT  # a chain cannot skip a link: a bad event stops its tenant only

    async def handle(self, conn: asyncpg.Connection, events: list[RecordedEvent]) -> None:
        tenants = sorted({e.tenant_id for e in events})
        heads = await conn.fetch(
            """SELECT t.tenant_id, s.seq, s.hash
               FROM unnest($1::uuid[]) AS t(tenant_id)
               CROSS JOIN LATERAL (
                   SELECT seq, hash FROM audit_seals
                   WHERE tenant_id = t.tenant_id ORDER BY seq DESC LIMIT 1
               ) s""",
            tenants,
        )
        head: dict[uuid.UUID, tuple[int, bytes]] = {r["tenant_id"]: (r["seq"], r["hash"]) for r in heads}
        rows = []
        for event in events:
            seq, previous = head.get(event.tenant_id, (0, GENESIS))
            digest = chain(previous, event)
            head[event.tenant_id] = (seq + 1, digest)
            rows.append((event.tenant_id, seq + 1, event.global_position, digest))
        await conn.copy_records_to_table(
            "audit_seals", records=rows, columns=["tenant_id", "seq", "position", "hash"]
        )

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("TRUNCATE audit_seals")


@dataclass(frozen=True, slots=True)
class ChainBreak:
    position: int
    problem: str  # altered | deleted | inserted | seal-missing
    detail: str


@dataclass(frozen=True, slots=True)
class SealReport:
    """The state of a tenant's chain: how much is sealed, whether it holds, and its head."""

    sealed: int
    unsealed: int  # committed events the follower has not sealed yet (not a break)
    head_seq: int
    head_position: int | None
    head_hash: str | None
    follower_state: str | None
    first_break: ChainBreak | None
    blocked_at: int | None = None  # the position where the tenant's chain stopped (a dead letter)
    first_unsealed: int | None = None  # the lowest position of the tenant's events not sealed

    @property
    def ok(self) -> bool:
        return self.first_break is None

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "sealed": self.sealed,
            "unsealed": self.unsealed,
            "head": None if self.head_position is None else {
                "seq": self.head_seq, "position": self.head_position, "hash": self.head_hash,
            },
            "followerState": self.follower_state,
            "blockedAt": self.blocked_at,
            "firstBreak": None if self.first_break is None else {
                "position": self.first_break.position,
                "problem": self.first_break.problem,
                "detail": self.first_break.detail,
            },
        }


# the tenant's seal rows in seq order, each joined with the event it seals (eventstore.references)
_WALK = WithEvents(
    "SELECT tenant_id, seq, position, hash FROM audit_seals WHERE tenant_id = $1",
    ("global_position", "stream_type", "stream_id", "version", "type", "data", "metadata", "recorded_at"),
    order_by="seq",
)


async def verify(conn: asyncpg.Connection, tenant_id: uuid.UUID, *, prefetch: int = 2000) -> SealReport:
    """Recompute the tenant's chain from its events and compare, in one consistent snapshot.
    Memory stays bounded (a server-side cursor); the cost is one pass over the tenant's log."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        checkpoint = await load_checkpoint(conn, NAME)
        first_break: ChainBreak | None = None
        digest = GENESIS
        expected_seq = 1
        head_position: int | None = None
        async for r in _WALK.cursor(conn, tenant_id, prefetch=prefetch):
            if first_break is None:
                first_break = _check(r, tenant_id, expected_seq, digest)
                if first_break is None:
                    digest = r["hash"]
            expected_seq = r["seq"] + 1
            head_position = r["position"]
        sealed = expected_seq - 1
        after = checkpoint.checkpoint if checkpoint else BEGINNING
        blocked = (await dead_letters.of_tenant(conn, NAME, tenant_id)).first
        if blocked is not None:  # the chain stopped there: the tenant's later events are unsealed
            after = min(after, _just_before(blocked))
        # an event at or behind the checkpoint that was never sealed was slipped in afterwards
        # (with, in the same pass, the lowest position not sealed at all, and the count of the
        # events after the checkpoint, which are not sealed yet)
        inserted, first_unsealed, unsealed = await unreferenced(conn, tenant_id, after, table="audit_seals")
        head_hash = await conn.fetchval(
            "SELECT hash FROM audit_seals WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1", tenant_id
        )
    if inserted is not None and (first_break is None or inserted < first_break.position):
        first_break = ChainBreak(
            inserted, "inserted",
            f"the event at position {inserted} lies behind the seal's checkpoint but is not in the "
            "chain: slipped in afterwards, or its seal row was removed",
        )
    return SealReport(
        sealed=sealed,
        unsealed=int(unsealed),
        head_seq=sealed,
        head_position=head_position,
        head_hash=head_hash.hex() if head_hash is not None else None,
        follower_state=checkpoint.state if checkpoint else None,
        first_break=first_break,
        blocked_at=blocked[1] if blocked else None,
        first_unsealed=first_unsealed,
    )


def _just_before(checkpoint: Checkpoint) -> Checkpoint:
    """The greatest checkpoint before `checkpoint` (positions are integers): `<= _just_before(c)`
    is `< c`."""
    return (checkpoint[0], checkpoint[1] - 1)


def _check(r: asyncpg.Record, tenant_id: uuid.UUID, expected_seq: int, previous: bytes) -> ChainBreak | None:
    """The break at this seal row, if any, given the previous (verified) hash."""
    position = r["position"]
    if r["seq"] != expected_seq:
        return ChainBreak(
            position, "seal-missing",
            f"seal rows {expected_seq}..{r['seq'] - 1} are missing before position {position}",
        )
    if r["global_position"] is None:
        return ChainBreak(position, "deleted", f"the event sealed at position {position} is gone")
    event = RecordedEvent(
        tenant_id=tenant_id, global_position=position, transaction_id=0,
        stream_type=r["stream_type"], stream_id=r["stream_id"], version=r["version"], type=r["type"],
        data=r["data"], metadata=r["metadata"], recorded_at=r["recorded_at"],
    )
    if chain(previous, event) != r["hash"]:
        return ChainBreak(
            position, "altered",
            f"the event at position {position} is not what was sealed (edited, moved or replaced)",
        )
    return None


__all__ = ["GENESIS", "ChainBreak", "SealProjection", "SealReport", "canonical_bytes", "chain", "verify"]
