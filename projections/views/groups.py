"""The groups view and the membership view, kept inline with the log.

A membership is one row (tenant, group, member): adding or removing one member of a group of
100,000 touches one index entry, never the list. The rows are folded with
projections.domain.folds.apply_group and apply_members, shared with followers and rebuilds.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from eventstore.store import append_with
from projections.domain.events import Event, GroupDeleted
from projections.domain.folds import GroupRow, apply_group, fold_write, member_changes
from projections.views.paging import ViewSearch, new_events, qualified, row_reader

STREAM_TYPE = "group"
_COLUMNS = "tenant_id, id, ordinal, resource, version, created, last_modified"

# the view statements of append_with: $1 tenant, $3 group id, $4 expected version, $5 event
# types; the row's values from $8. Each acts only when the events were appended (`ev` has rows).
_WRITE = f"""INSERT INTO groups AS g (tenant_id, id, ordinal, display_name, external_id, resource, version,
                         created, last_modified)
SELECT $1, $3, (SELECT min(global_position) FROM ev), $8, $9, $10, $4 + cardinality($5::text[]),
       now(), now()
WHERE EXISTS (SELECT 1 FROM ev)
ON CONFLICT (tenant_id, id) DO UPDATE SET
    display_name = excluded.display_name, external_id = excluded.external_id,
    resource = excluded.resource, version = excluded.version, last_modified = excluded.last_modified
RETURNING {_COLUMNS}"""
_DELETE = "DELETE FROM groups WHERE tenant_id = $1 AND id = $3 AND EXISTS (SELECT 1 FROM ev) RETURNING id"

_row = row_reader(GroupRow)


async def write(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    group_id: uuid.UUID,
    current: GroupRow | None,
    events: list[Event],
    metadata: dict[str, Any],
) -> GroupRow:
    """Append `events` and project them: the group row and the membership rows. Call inside a
    transaction when the events include member changes (two statements). Raises
    WrongExpectedVersion if the stream is not at `current`'s version."""
    row = fold_write(apply_group, current, events, tenant_id=tenant_id, stream_id=group_id)
    added, removed = member_changes(events)
    record = await append_with(
        conn, STREAM_TYPE, _WRITE, tenant_id, group_id, current.version if current else 0,
        new_events(events), metadata,
        row.display_name, row.external_id, row.resource,
    )
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
    return _row(record)


async def delete(conn: asyncpg.Connection, current: GroupRow, event: GroupDeleted, metadata: dict[str, Any]) -> None:
    """Append group.deleted, drop the row and its memberships (caller holds the transaction)."""
    await append_with(
        conn, STREAM_TYPE, _DELETE, current.tenant_id, current.id, current.version,
        new_events([event]), metadata,
    )
    await conn.execute(
        "DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2", current.tenant_id, current.id
    )


async def get(conn: asyncpg.Connection, tenant_id: uuid.UUID, group_id: uuid.UUID, *, for_update: bool = False) -> GroupRow | None:
    lock = " FOR UPDATE" if for_update else ""
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM groups WHERE tenant_id = $1 AND id = $2{lock}", tenant_id, group_id
    )
    return _row(record) if record else None


search = ViewSearch("groups", "g", _COLUMNS, _row)


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
        f"""SELECT {qualified("g", _COLUMNS)}
            FROM groups g JOIN group_members m ON m.tenant_id = g.tenant_id AND m.group_id = g.id
            WHERE m.tenant_id = $1 AND m.member_id = $2
            ORDER BY g.id FOR UPDATE OF g""",
        tenant_id, member_id,
    )
    return [_row(r) for r in records]


async def existing_users(conn: asyncpg.Connection, tenant_id: uuid.UUID, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `ids` are users, each locked FOR KEY SHARE to the end of the caller's
    transaction: a member add and the member's deletion serialise (the DELETE of the row waits
    for the add to commit, and a user deleted meanwhile is not returned), while updates of the
    user (no key change) are not blocked."""
    records = await conn.fetch(
        "SELECT id FROM users WHERE tenant_id = $1 AND id = any($2::uuid[]) ORDER BY id FOR KEY SHARE",
        tenant_id, ids,
    )
    return {r["id"] for r in records}


async def is_member_anywhere(conn: asyncpg.Connection, tenant_id: uuid.UUID, member_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM group_members WHERE tenant_id = $1 AND member_id = $2)",
        tenant_id, member_id,
    ))
