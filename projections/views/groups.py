"""The groups view and the membership view, kept inline with the log.

A membership is one row (tenant, group, member): adding or removing one member of a group of
100,000 touches one index entry, never the list. `apply` and `apply_members` are the one
definition of what an event does, shared with followers and rebuilds.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from eventstore.store import append_cte, translate_unique_violation
from projections.domain.events import (
    AnyEvent,
    Event,
    GroupCreated,
    GroupDeleted,
    GroupMembersAdded,
    GroupMembersRemoved,
    GroupUpdated,
    encode_event,
    event_type,
)
from projections.views.paging import page


@dataclass(frozen=True, slots=True)
class GroupRow:
    tenant_id: uuid.UUID
    id: uuid.UUID
    ordinal: int
    resource: dict[str, Any]
    version: int
    created: dt.datetime
    last_modified: dt.datetime

    @property
    def display_name(self) -> str:
        return str(self.resource.get("displayName", ""))

    @property
    def external_id(self) -> str | None:
        return self.resource.get("externalId")


def apply(
    row: GroupRow | None,
    event: AnyEvent | Event,
    *,
    tenant_id: uuid.UUID,
    stream_id: uuid.UUID,
    version: int,
    position: int,
    recorded_at: dt.datetime,
) -> GroupRow | None:
    """The group after `event` (None once deleted). Member events only move the version."""
    if isinstance(event, GroupCreated):
        return GroupRow(tenant_id, stream_id, position, dict(event.resource), version, recorded_at, recorded_at)
    if row is None:
        raise ValueError(f"{event_type(event)} before group.created in stream {stream_id}")
    if isinstance(event, GroupDeleted):
        return None
    resource = row.resource
    if isinstance(event, GroupUpdated):
        resource = {k: v for k, v in resource.items() if k not in event.removed}
        resource.update(event.set)
    elif not isinstance(event, GroupMembersAdded | GroupMembersRemoved):
        raise ValueError(f"not a group event: {event_type(event)}")
    # direct construction: dataclasses.replace costs twice as much, and rebuilds fold every event
    return GroupRow(row.tenant_id, row.id, row.ordinal, resource, version, row.created, recorded_at)


def apply_members(members: set[str], event: AnyEvent | Event) -> set[str]:
    """The member ids after `event`."""
    if isinstance(event, GroupMembersAdded):
        return members | set(event.members)
    if isinstance(event, GroupMembersRemoved):
        return members - set(event.members)
    if isinstance(event, GroupDeleted):
        return set()
    return members


_COLUMNS = "tenant_id, id, ordinal, resource, version, created, last_modified"

_WRITE = f"""WITH {append_cte("group")}
INSERT INTO groups AS g (tenant_id, id, ordinal, display_name, external_id, resource, version,
                         created, last_modified)
SELECT $1, $2, (SELECT min(global_position) FROM ev), $7, $8, $9, $3 + cardinality($4::text[]),
       now(), now()
ON CONFLICT (tenant_id, id) DO UPDATE SET
    display_name = excluded.display_name, external_id = excluded.external_id,
    resource = excluded.resource, version = excluded.version, last_modified = excluded.last_modified
RETURNING {_COLUMNS}"""


def _row(record: asyncpg.Record) -> GroupRow:
    return GroupRow(**dict(record.items()))


async def write(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    group_id: uuid.UUID,
    current: GroupRow | None,
    events: list[Event],
    metadata: dict[str, Any],
) -> GroupRow:
    """Append `events` and project them: the group row and the membership rows. Call inside a
    transaction when the events include member changes (two statements)."""
    expected = current.version if current else 0
    now = dt.datetime.now(dt.UTC)  # placeholder; the statement sets the timestamps
    row = current
    added: set[str] = set()
    removed: set[str] = set()
    for i, event in enumerate(events, start=1):
        row = apply(row, event, tenant_id=tenant_id, stream_id=group_id, version=expected + i,
                    position=current.ordinal if current else 0, recorded_at=now)
        if isinstance(event, GroupMembersAdded):
            added |= set(event.members)
            removed -= set(event.members)
        elif isinstance(event, GroupMembersRemoved):
            removed |= set(event.members)
            added -= set(event.members)
    if row is None:
        raise ValueError("write() cannot delete; use delete()")
    try:
        record = await conn.fetchrow(
            _WRITE,
            tenant_id, group_id, expected,
            [event_type(e) for e in events], [encode_event(e) for e in events], metadata,
            row.display_name, row.external_id, row.resource,
        )
    except asyncpg.UniqueViolationError as e:
        raise translate_unique_violation(e, group_id, expected) from e
    if removed:
        await conn.execute(
            "DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2 AND member_id = any($3::uuid[])",
            tenant_id, group_id, list(removed),
        )
    if added:
        await conn.execute(
            """INSERT INTO group_members (tenant_id, group_id, member_id)
               SELECT $1, $2, unnest($3::uuid[]) ON CONFLICT DO NOTHING""",
            tenant_id, group_id, list(added),
        )
    assert record is not None
    return _row(record)


async def delete(conn: asyncpg.Connection, current: GroupRow, event: GroupDeleted, metadata: dict[str, Any]) -> None:
    """Append group.deleted, drop the row and its memberships (caller holds the transaction)."""
    try:
        await conn.execute(
            f"""WITH {append_cte("group")}
                DELETE FROM groups WHERE tenant_id = $1 AND id = $2 AND EXISTS (SELECT 1 FROM ev)""",
            current.tenant_id, current.id, current.version,
            [event_type(event)], [encode_event(event)], metadata,
        )
    except asyncpg.UniqueViolationError as e:
        raise translate_unique_violation(e, current.id, current.version) from e
    await conn.execute(
        "DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2", current.tenant_id, current.id
    )


async def get(conn: asyncpg.Connection, tenant_id: uuid.UUID, group_id: uuid.UUID, *, for_update: bool = False) -> GroupRow | None:
    lock = " FOR UPDATE" if for_update else ""
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM groups WHERE tenant_id = $1 AND id = $2{lock}", tenant_id, group_id
    )
    return _row(record) if record else None


async def search(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    where: str = "TRUE",
    params: list[Any] | None = None,
    order_by: str = "g.ordinal",
    offset: int = 0,
    limit: int = 100,
    after_ordinal: int | None = None,
    known_total: int | None = None,
) -> tuple[int, list[GroupRow]]:
    """(total matching, one page of rows); see projections.views.paging.page."""
    total, records = await page(
        conn, table="groups", alias="g", columns=_COLUMNS, tenant_id=tenant_id, where=where,
        params=params or [], order_by=order_by, offset=offset, limit=limit, after_ordinal=after_ordinal,
        known_total=known_total,
    )
    return total, [_row(r) for r in records]


async def present_members(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, group_id: uuid.UUID, member_ids: list[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of `member_ids` are members: cost grows with the request, not the group."""
    records = await conn.fetch(
        "SELECT member_id FROM group_members WHERE tenant_id = $1 AND group_id = $2 AND member_id = any($3::uuid[])",
        tenant_id, group_id, member_ids,
    )
    return {r["member_id"] for r in records}


async def all_member_ids(conn: asyncpg.Connection, tenant_id: uuid.UUID, group_id: uuid.UUID) -> set[uuid.UUID]:
    records = await conn.fetch(
        "SELECT member_id FROM group_members WHERE tenant_id = $1 AND group_id = $2", tenant_id, group_id
    )
    return {r["member_id"] for r in records}


async def members(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, group_id: uuid.UUID, *, batch: int = 1000
) -> AsyncIterator[list[asyncpg.Record]]:
    """The member ids, in batches through a server-side cursor, so a group of 100,000 is never
    held in memory at once (an index-only scan of the primary key). Needs an open transaction."""
    cursor = conn.cursor(
        """SELECT m.member_id FROM group_members m
           WHERE m.tenant_id = $1 AND m.group_id = $2
           ORDER BY m.member_id""",
        tenant_id, group_id, prefetch=batch,
    )
    chunk: list[asyncpg.Record] = []
    async for record in cursor:
        chunk.append(record)
        if len(chunk) >= batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def groups_with_member(conn: asyncpg.Connection, tenant_id: uuid.UUID, member_id: uuid.UUID) -> list[GroupRow]:
    """The groups `member_id` belongs to, locked for update (a deleted user leaves them)."""
    records = await conn.fetch(
        f"""SELECT {", ".join("g." + c.strip() for c in _COLUMNS.split(","))}
            FROM groups g JOIN group_members m ON m.tenant_id = g.tenant_id AND m.group_id = g.id
            WHERE m.tenant_id = $1 AND m.member_id = $2
            ORDER BY g.id FOR UPDATE OF g""",
        tenant_id, member_id,
    )
    return [_row(r) for r in records]


async def existing_users(conn: asyncpg.Connection, tenant_id: uuid.UUID, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    records = await conn.fetch(
        "SELECT id FROM users WHERE tenant_id = $1 AND id = any($2::uuid[])", tenant_id, ids
    )
    return {r["id"] for r in records}
