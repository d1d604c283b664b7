"""The audit trail: "who did what to whom, when, through which IdP connection".

The "audit" follower (projections/followers/runner.py) turns each event into one `audit_events` row keyed
by (tenant, position): the actor pulled out of the event metadata, the target (stream type and
id) and the target's name as of that event (userName for users, displayName for groups). Two
small tables keep names: `audit_targets` (each target's current name, which the next event's name
is folded from) and `audit_target_names` (every name a target ever had), so `target=alice` finds
alice's events after she was renamed or deleted. The payload is not copied: queries join `events`
on its primary key (eventstore.references).

No key of an index this follower writes can outgrow a btree row, whatever an old event holds
(projections/migrations/0012_follower_isolation.sql): names are found by the SHA-256 of the
lower-cased name, the actor's label and token id by their first 200 characters, and each query
rechecks the whole value. An event it still cannot apply is dead-lettered by the runner (EVENT
isolation): that one event is missing, the tenant's answers say so, every other event lands.

Where the reads come from:
- the event search, exports and histories read the audit view: it lags the log by the
  follower's lag (well under a second at rest, docs/audit.md), and gives every row its name;
- the state of a user or group as of a moment is folded from that one stream in `events` with the
  same folds as the inline views (projections/domain/folds.py): exact, no lag,
  and it costs one stream's events, not the tenant's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from eventstore.references import WithEvents
from eventstore.store import RecordedEvent, read_stream, stream_type_of
from projections.domain.events import AnyEvent, decode_event
from projections.domain.folds import (
    GroupRow,
    UserRow,
    apply_group,
    apply_members,
    apply_user,
    target_name,
)
from projections.followers.dead_letters import EVENT
from projections.privacy import open_records, open_rows

NAME_ATTRIBUTE = {"user": "userName", "group": "displayName"}
STREAM_TYPES = tuple(NAME_ATTRIBUTE)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change (the write path records it in every event's metadata)."""

    kind: str | None = None
    token_id: str | None = None
    label: str | None = None
    client: str | None = None
    ip: str | None = None
    request_id: str | None = None
    os_user: str | None = None
    host: str | None = None

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> Actor:
        actor = metadata.get("actor")
        if not isinstance(actor, dict):
            return cls()

        def text(key: str) -> str | None:
            value = actor.get(key)
            return None if value is None else str(value)

        return cls(
            kind=text("kind"), token_id=text("tokenId"), label=text("label"), client=text("client"),
            ip=text("ip"), request_id=text("requestId"), os_user=text("osUser"), host=text("host"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind, "tokenId": self.token_id, "label": self.label,
            "client": self.client, "ip": self.ip, "requestId": self.request_id,
        }
        if self.kind == "cli":
            out["osUser"] = self.os_user
            out["host"] = self.host
        return out


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One event as the audit trail shows it."""

    tenant_id: uuid.UUID
    position: int
    recorded_at: dt.datetime
    type: str
    target_type: str
    target_id: uuid.UUID
    target_name: str | None
    actor: Actor
    data: dict[str, Any] | None  # None only if the event row has vanished (see `verify`)

    def to_json(self) -> dict[str, Any]:
        target: dict[str, Any] = {"type": self.target_type, "id": str(self.target_id)}
        target[NAME_ATTRIBUTE.get(self.target_type, "name")] = self.target_name
        return {
            "position": self.position,
            "recordedAt": timestamp(self.recorded_at),
            "type": self.type,
            "actor": self.actor.to_json(),
            "target": target,
            "data": self.data,
        }


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- the follower -----------------------------------------------------------------------------

_AUDIT_COLUMNS = (
    "tenant_id", "position", "recorded_at", "type", "stream_type", "stream_id", "version",
    "target_name", "actor_kind", "actor_token_id", "actor_label", "actor_client", "actor_ip",
    "actor_request_id", "actor_os_user", "actor_host",
)


def audit_record(event: RecordedEvent, name: str | None) -> tuple[Any, ...]:
    """The audit_events row of one event (columns in `_AUDIT_COLUMNS` order)."""
    a = Actor.from_metadata(event.metadata)
    return (
        event.tenant_id, event.global_position, event.recorded_at, event.type, event.stream_type,
        event.stream_id, event.version, name, a.kind, a.token_id, a.label, a.client, a.ip,
        a.request_id, a.os_user, a.host,
    )


def decode_checked(event: RecordedEvent) -> AnyEvent:
    """The event's payload, refusing a row whose type column and payload disagree or whose
    stream type is not one the audit knows: the follower stops on it instead of guessing."""
    decoded = decode_event(event.data)
    tag = decoded.__struct_config__.tag
    if tag != event.type:
        raise ValueError(f"event type {event.type!r} does not match its payload's type {tag!r}")
    if event.stream_type not in STREAM_TYPES or not event.type.startswith(event.stream_type + "."):
        raise ValueError(f"event type {event.type!r} in a stream of type {event.stream_type!r}")
    return decoded


@dataclass
class AuditProjection:
    """The "audit" follower: one audit_events row per event, plus the target names."""

    name: str = "audit"
    isolation: str = EVENT  # an event it cannot apply is left out alone (runner module doc)

    async def handle(self, conn: asyncpg.Connection, events: list[RecordedEvent]) -> None:
        events = await open_records(conn, events)  # names come from sealed payloads
        keys = sorted({(e.tenant_id, e.stream_id) for e in events})
        records = await conn.fetch(
            """SELECT t.tenant_id, t.stream_id, t.name FROM audit_targets t
               JOIN unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, stream_id)
                 ON t.tenant_id = k.tenant_id AND t.stream_id = k.stream_id""",
            [k[0] for k in keys], [k[1] for k in keys],
        )
        names: dict[tuple[uuid.UUID, uuid.UUID], str | None] = {
            (r["tenant_id"], r["stream_id"]): r["name"] for r in records
        }
        stream_types: dict[tuple[uuid.UUID, uuid.UUID], str] = {}
        every_name: set[tuple[uuid.UUID, str, uuid.UUID]] = set()
        rows = []
        for event in events:
            decoded = decode_checked(event)
            key = (event.tenant_id, event.stream_id)
            name = target_name(names.get(key), decoded)
            names[key] = name
            stream_types[key] = event.stream_type
            if name:
                every_name.add((event.tenant_id, name.lower(), event.stream_id))
            rows.append(audit_record(event, name))
        await conn.copy_records_to_table("audit_events", records=rows, columns=list(_AUDIT_COLUMNS))
        touched = sorted(stream_types)
        await conn.execute(
            """INSERT INTO audit_targets (tenant_id, stream_id, stream_type, name)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[])
               ON CONFLICT (tenant_id, stream_id) DO UPDATE SET name = excluded.name""",
            [k[0] for k in touched], [k[1] for k in touched],
            [stream_types[k] for k in touched], [names[k] for k in touched],
        )
        if every_name:
            ordered = sorted(every_name)
            await conn.execute(
                """INSERT INTO audit_target_names (tenant_id, name_hash, name_key, stream_id)
                   SELECT n.tenant_id, sha256(convert_to(n.name_key, 'UTF8')), n.name_key, n.stream_id
                   FROM unnest($1::uuid[], $2::text[], $3::uuid[]) AS n(tenant_id, name_key, stream_id)
                   ON CONFLICT DO NOTHING""",
                [n[0] for n in ordered], [n[1] for n in ordered], [n[2] for n in ordered],
            )
        erased = [(e.tenant_id, e.stream_id) for e in events if e.type == "user.erased"]
        for tenant_id, stream_id in erased:
            await forget_names(conn, tenant_id, stream_id)

    async def reset(self, conn: asyncpg.Connection) -> None:
        await conn.execute("TRUNCATE audit_events, audit_targets, audit_target_names")


async def forget_names(conn: asyncpg.Connection, tenant_id: uuid.UUID, stream_id: uuid.UUID) -> None:
    """An erased subject's names leave the trail (docs/privacy.md): its rows stay, with their
    types, times and actors, and no name. Run by `user erase` and again by the follower when it
    reaches `user.erased`, so names it folded before the key was destroyed go too."""
    await conn.execute(
        "UPDATE audit_events SET target_name = NULL WHERE tenant_id = $1 AND stream_id = $2 AND target_name IS NOT NULL",
        tenant_id, stream_id,
    )
    await conn.execute("UPDATE audit_targets SET name = NULL WHERE tenant_id = $1 AND stream_id = $2", tenant_id, stream_id)
    await conn.execute("DELETE FROM audit_target_names WHERE tenant_id = $1 AND stream_id = $2", tenant_id, stream_id)


# --- queries ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A search of a tenant's audit trail. `since` is inclusive, `until` exclusive; `after` is
    the keyset cursor (a position); results come in position order."""

    types: tuple[str, ...] = ()
    target: str | None = None  # an id, or a userName / displayName (any the target ever had)
    actor: str | None = None  # a token label, a token id, or `cli:<os user>`
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    after: int = 0
    limit: int = 100


async def target_streams(conn: asyncpg.Connection, tenant_id: uuid.UUID, target: str) -> list[uuid.UUID]:
    """The targets `target` names: the one with that id, and every one that ever had that name
    (case-insensitive), deleted or renamed since included."""
    ids: set[uuid.UUID] = set()
    try:
        as_id = uuid.UUID(target)
    except ValueError:
        as_id = None
    if as_id is not None:
        found = await conn.fetchval(
            "SELECT stream_id FROM audit_targets WHERE tenant_id = $1 AND stream_id = $2", tenant_id, as_id
        )
        if found is not None:
            ids.add(found)
    records = await conn.fetch(
        """SELECT stream_id FROM audit_target_names
           WHERE tenant_id = $1 AND name_hash = sha256(convert_to($2, 'UTF8')) AND name_key = $2""",
        tenant_id, target.lower(),
    )
    ids.update(r["stream_id"] for r in records)
    return sorted(ids)


async def target_type(conn: asyncpg.Connection, tenant_id: uuid.UUID, target_id: uuid.UUID) -> str | None:
    """The stream type of a target the audit trail knows, or None."""
    value = await conn.fetchval(
        "SELECT stream_type FROM audit_targets WHERE tenant_id = $1 AND stream_id = $2", tenant_id, target_id
    )
    return None if value is None else str(value)


CLI_ACTOR_PREFIX = "cli:"  # how the CLI's tables name a CLI actor: `cli:<os user>`


_AUDIT_SELECT = """a.tenant_id, a.position, a.recorded_at, a.type, a.stream_type, a.stream_id, a.version,
       a.target_name, a.actor_kind, a.actor_token_id, a.actor_label, a.actor_client, a.actor_ip,
       a.actor_request_id, a.actor_os_user, a.actor_host"""


def _entry(r: asyncpg.Record, data: dict[str, Any] | None) -> AuditEntry:
    return AuditEntry(
        tenant_id=r["tenant_id"], position=r["position"], recorded_at=r["recorded_at"], type=r["type"],
        target_type=r["stream_type"], target_id=r["stream_id"], target_name=r["target_name"],
        actor=Actor(
            kind=r["actor_kind"], token_id=r["actor_token_id"], label=r["actor_label"],
            client=r["actor_client"], ip=r["actor_ip"], request_id=r["actor_request_id"],
            os_user=r["actor_os_user"], host=r["actor_host"],
        ),
        data=data,
    )


def search_sql(
    query: AuditQuery, tenant_id: uuid.UUID, stream_ids: list[uuid.UUID] | None
) -> tuple[str, list[Any]]:
    """The SQL of one page of a search over audit_events; every value travels as a parameter."""
    params: list[Any] = [tenant_id]

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    where = ["a.tenant_id = $1"]
    if query.types:
        where.append(f"a.type = any({param(list(query.types))}::text[])")
    if stream_ids is not None:
        where.append(f"a.stream_id = any({param(stream_ids)}::uuid[])")
    if query.actor is not None:
        # the indexes hold the first 200 characters (migration 0012); the whole value rechecked
        p = param(query.actor)
        label = f"(left(a.actor_label, 200) = left({p}, 200) AND a.actor_label = {p})"
        if query.actor.startswith(CLI_ACTOR_PREFIX):
            # `cli:root`, as the tables show a CLI actor: label "cli" and that operating-system user
            os_user = param(query.actor[len(CLI_ACTOR_PREFIX):])
            label = f"({label} OR (a.actor_label = 'cli' AND a.actor_kind = 'cli' AND a.actor_os_user = {os_user}))"
        try:
            uuid.UUID(query.actor)
            where.append(f"({label} OR (left(a.actor_token_id, 200) = left({p}, 200) AND a.actor_token_id = {p}))")
        except ValueError:
            where.append(label)
    if query.since is not None:
        where.append(f"a.recorded_at >= {param(query.since)}")
    if query.until is not None:
        where.append(f"a.recorded_at < {param(query.until)}")
    if query.after:
        where.append(f"a.position > {param(query.after)}")
    sql = f"""SELECT {_AUDIT_SELECT} FROM audit_events a
    WHERE {' AND '.join(where)}
    ORDER BY a.position LIMIT {param(query.limit)}"""
    return sql, params


async def _page(
    conn: asyncpg.Connection, query: AuditQuery, tenant_id: uuid.UUID, stream_ids: list[uuid.UUID] | None
) -> list[AuditEntry]:
    """One page, each entry with its event's payload: the page first (LIMIT inside), then the
    payloads by primary key, in one statement; joined outside the LIMIT, the planner would
    merge-join the tenant's whole log from its start to reach a late cursor."""
    sql, params = search_sql(query, tenant_id, stream_ids)
    rows = await WithEvents(sql, ("data",)).fetch(conn, *params)
    return [_entry(r, data) for r, data in zip(rows, await open_rows(conn, rows, tenant_id=tenant_id), strict=True)]


async def search(conn: asyncpg.Connection, tenant_id: uuid.UUID, query: AuditQuery) -> list[AuditEntry]:
    """One page of a tenant's audit trail (at most `query.limit` entries)."""
    stream_ids = None
    if query.target is not None:
        stream_ids = await target_streams(conn, tenant_id, query.target)
        if not stream_ids:
            return []
    return await _page(conn, query, tenant_id, stream_ids)


async def history(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, stream_id: uuid.UUID, *, after: int = 0, limit: int = 1000
) -> list[AuditEntry]:
    """One target's story in order (one page)."""
    return await _page(conn, AuditQuery(after=after, limit=limit), tenant_id, [stream_id])


async def walk(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, query: AuditQuery, *, page: int = 1000
) -> AsyncIterator[list[AuditEntry]]:
    """Every entry matching `query` (its `limit` ignored), page by page along the keyset: bounded
    memory and no transaction held open while a slow reader consumes the pages."""
    after = query.after
    while True:
        q = AuditQuery(query.types, query.target, query.actor, query.since, query.until, after, page)
        entries = await search(conn, tenant_id, q)
        if entries:
            yield entries
        if len(entries) < page:
            return
        after = entries[-1].position


# --- the state as of a moment, from one stream ------------------------------------------------

stream_type = stream_type_of  # the type of a stream in the log: the as-of readers ask it first


async def user_as_of(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID, moment: dt.datetime
) -> UserRow | None:
    """The user as it was at `moment` (None: not created yet, or deleted by then)."""
    row: UserRow | None = None
    for e in await open_records(conn, await read_stream(conn, tenant_id, user_id, until=moment)):
        row = apply_user(
            row, decode_event(e.data), tenant_id=tenant_id, stream_id=user_id, version=e.version,
            position=e.global_position, recorded_at=e.recorded_at,
        )
    return row


async def group_as_of(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, group_id: uuid.UUID, moment: dt.datetime
) -> tuple[GroupRow, set[str]] | None:
    """The group and its member ids as they were at `moment` (None: not there then)."""
    row: GroupRow | None = None
    members: set[str] = set()
    for e in await read_stream(conn, tenant_id, group_id, until=moment):
        event = decode_event(e.data)
        row = apply_group(
            row, event, tenant_id=tenant_id, stream_id=group_id, version=e.version,
            position=e.global_position, recorded_at=e.recorded_at,
        )
        members = apply_members(members, event)
    return (row, members) if row is not None else None
