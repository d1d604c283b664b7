"""The streams follower: the log turned into the SETs each security-event stream is owed.

Run by the follower runner (projections/followers/runner.py) like the audit trail: ordered,
gap-free, checkpointed. For each batch it reads the enabled streams of the batch's tenants, and
for every event after a stream's start writes that stream's SETs (the claims of
projections/domain/security_events.py) into `stream_sets`, in the transaction that advances its
checkpoint: once the checkpoint has moved, the SETs are there, and a crash anywhere before loses
nothing (the batch is read again). It then NOTIFYs `SETS_CHANNEL` (delivered at commit) so the
push deliverer and the long polls wake within milliseconds. Delivery deletes a row only after
the receiver's 202 or acknowledgement (service/app/push.py, service/app/streams.py).

Not in projections.registry: `stream_sets` is an outbox that empties as SETs are delivered,
not a view a rebuild could reproduce, so `projections rebuild` and `verify` leave it alone.
`reset` (a restart from the beginning of the log) keeps what is pending: the events are
enqueued again, a SET still pending is kept as it is, one delivered already comes again with
the same jti (at-least-once).

What the SETs say that the event does not: the subject's externalId and, for a `put:full`, the
resource after the write come from the inline views (read in one statement per batch). The
follower runs milliseconds behind the write, so that is the resource as the write left it; a
replay long after says what the resource is now. A deleted resource has no row: its delete SET
carries no externalId.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from eventstore.store import Checkpoint, RecordedEvent
from projections.domain import personal
from projections.domain import security_events as sets
from projections.domain.actor import Actor
from projections.domain.events import AnyEvent, decode_event
from projections.followers.dead_letters import EVENT
from projections.privacy import open_records

NAME = "streams"
SETS_CHANNEL = "scimledger_sets"  # NOTIFYed when SETs are enqueued: wakes deliverers and polls
VIEW_TABLES = {"user": "users", "group": "groups"}


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """What the follower needs of a stream: whose it is, what it wants, where it starts."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    families: frozenset[str]
    form: str
    start: Checkpoint


async def enabled_streams(conn: asyncpg.Connection, tenant_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[StreamTarget]]:
    """The streams of these tenants, by tenant (a stream in error still gets its SETs)."""
    records = await conn.fetch(
        """SELECT tenant_id, id, events, format, start_tx::text::bigint AS start_tx, start_position
           FROM event_streams WHERE tenant_id = any($1::uuid[])""",
        list(tenant_ids),
    )
    out: dict[uuid.UUID, list[StreamTarget]] = {}
    for r in records:
        out.setdefault(r["tenant_id"], []).append(StreamTarget(
            r["tenant_id"], r["id"], frozenset(r["events"]), r["format"], (int(r["start_tx"]), int(r["start_position"])),
        ))
    return out


def decode_checked(event: RecordedEvent) -> AnyEvent:
    """The payload, refusing a row whose type column and payload disagree (dead-lettered)."""
    decoded = decode_event(event.data)
    if decoded.__struct_config__.tag != event.type:
        raise ValueError(f"event type {event.type!r} does not match its payload")
    return decoded


async def _resources(
    conn: asyncpg.Connection, events: Sequence[RecordedEvent], with_resource: bool
) -> dict[tuple[uuid.UUID, uuid.UUID], tuple[Any, dict[str, Any] | None]]:
    """(externalId, resource or None) of the events' subjects, from the inline views."""
    out: dict[tuple[uuid.UUID, uuid.UUID], tuple[Any, dict[str, Any] | None]] = {}
    for stream_type, table in VIEW_TABLES.items():
        keys = sorted({(e.tenant_id, e.stream_id) for e in events if e.stream_type == stream_type})
        if not keys:
            continue
        records = await conn.fetch(
            f"""SELECT v.tenant_id, v.id, v.external_id, CASE WHEN $3 THEN v.resource END AS resource
                FROM {table} v JOIN unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, id)
                  ON v.tenant_id = k.tenant_id AND v.id = k.id""",
            [k[0] for k in keys], [k[1] for k in keys], with_resource,
        )
        out.update({(r["tenant_id"], r["id"]): (r["external_id"], r["resource"]) for r in records})
    return out


_INSERT = """INSERT INTO stream_sets (tenant_id, stream_id, tx, position, kind, jti, claims, recorded_at)
SELECT s.tenant_id, s.stream_id, s.tx::text::xid8, s.position, s.kind, s.jti, s.claims, s.recorded_at
FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::smallint[], $6::text[], $7::jsonb[],
            $8::timestamptz[]) AS s(tenant_id, stream_id, tx, position, kind, jti, claims, recorded_at)
JOIN event_streams st ON st.tenant_id = s.tenant_id AND st.id = s.stream_id
ON CONFLICT (tenant_id, stream_id, tx, position, kind) DO """


async def enqueue(
    conn: asyncpg.Connection, events: Sequence[RecordedEvent], streams: dict[uuid.UUID, list[StreamTarget]],
    *, again: bool = False,
) -> int:
    """Write the SETs `streams` are owed for `events` (each stream only those after its start)
    and NOTIFY; returns how many. `again` (a replay): a SET the receiver refused is sent again."""
    wanted = [e for e in events if any(e.checkpoint > s.start for s in streams.get(e.tenant_id, ()))]
    if not wanted:
        return 0
    wanted = await open_records(conn, wanted)  # personal data is sealed in the log (docs/privacy.md)
    # an erased subject's payloads no longer say anything: nothing new is emitted for it
    wanted = [e for e in wanted if not personal.is_erased(e.data)]
    if not wanted:
        return 0
    full = any(s.form == sets.FULL for targets in streams.values() for s in targets)
    subjects = await _resources(conn, wanted, full)
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])
    for event in wanted:
        decoded = decode_checked(event)
        actor = Actor.from_metadata(event.metadata)
        external_id, resource = subjects.get((event.tenant_id, event.stream_id), (None, None))
        if isinstance(event.data.get("resource"), dict):  # a create says it all itself
            external_id = event.data["resource"].get("externalId")
        for stream in streams[event.tenant_id]:
            if event.checkpoint <= stream.start:
                continue
            for kind, claims in sets.set_claims(
                decoded, stream_type=event.stream_type, resource_id=event.stream_id, version=event.version,
                recorded_at=event.recorded_at, txn=actor.text("request_id") or f"tx-{event.transaction_id}",
                method=actor.text("method"), form=stream.form, families=stream.families,
                resource=resource, external_id=external_id,
            ):
                for column, value in zip(columns, (
                    event.tenant_id, stream.id, event.transaction_id, event.global_position, kind,
                    sets.jti(stream.id, event.global_position, kind), claims, event.recorded_at,
                ), strict=True):
                    column.append(value)
    if not columns[0]:
        return 0
    conflict = "UPDATE SET error = NULL" if again else "NOTHING"
    await conn.execute(_INSERT + conflict, *columns)
    await conn.execute("SELECT pg_notify($1, '')", SETS_CHANNEL)
    return len(columns[0])


@dataclass
class StreamsProjection:
    """The "streams" follower (module doc)."""

    name: str = NAME
    isolation: str = EVENT  # an event it cannot turn into SETs is dead-lettered alone

    async def handle(self, conn: asyncpg.Connection, events: list[RecordedEvent]) -> None:
        streams = await enabled_streams(conn, sorted({e.tenant_id for e in events}))
        if streams:
            await enqueue(conn, events, streams)

    async def reset(self, conn: asyncpg.Connection) -> None:
        """Nothing to empty: pending SETs stay (module doc)."""


async def forget_subject(conn: asyncpg.Connection, tenant_id: uuid.UUID, stream_type: str, resource_id: uuid.UUID) -> int:
    """Delete the SETs still held for one subject (an erasure's: docs/privacy.md); returns how many."""
    uri = sets.subject(stream_type, resource_id, None)["uri"]
    status = await conn.execute(
        "DELETE FROM stream_sets WHERE tenant_id = $1 AND claims->'sub_id'->>'uri' = $2", tenant_id, uri,
    )
    return int(status.split()[-1])
