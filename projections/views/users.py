"""The users view: a fold of each user stream, kept inline with the log.

`apply` is the one definition of what an event does to a user; the inline write path, the
followers and `projections rebuild` all use it, so a rebuild yields the same rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from eventstore.store import WrongExpectedVersion, append_cte, translate_unique_violation
from projections.domain.events import (
    AnyEvent,
    Event,
    UserCreated,
    UserDeactivated,
    UserDeleted,
    UserReactivated,
    UserUpdated,
    encode_event,
    event_type,
)
from projections.views.paging import page


class UserNameTaken(Exception):
    """Another user of the tenant has this userName (compared case-insensitively)."""


@dataclass(frozen=True, slots=True)
class UserRow:
    tenant_id: uuid.UUID
    id: uuid.UUID
    ordinal: int
    resource: dict[str, Any]
    version: int
    created: dt.datetime
    last_modified: dt.datetime

    @property
    def user_name(self) -> str:
        return str(self.resource["userName"])

    @property
    def active(self) -> bool:
        return bool(self.resource.get("active", True))

    @property
    def external_id(self) -> str | None:
        return self.resource.get("externalId")

    @property
    def display_name(self) -> str | None:
        return self.resource.get("displayName")



def apply(
    row: UserRow | None,
    event: AnyEvent | Event,
    *,
    tenant_id: uuid.UUID,
    stream_id: uuid.UUID,
    version: int,
    position: int,
    recorded_at: dt.datetime,
) -> UserRow | None:
    """The user after `event` (None once deleted)."""
    if isinstance(event, UserCreated):
        resource = dict(event.resource)
        resource.setdefault("active", True)
        return UserRow(tenant_id, stream_id, position, resource, version, recorded_at, recorded_at)
    if row is None:
        raise ValueError(f"{event_type(event)} before user.created in stream {stream_id}")
    if isinstance(event, UserUpdated):
        resource = {k: v for k, v in row.resource.items() if k not in event.removed}
        resource.update(event.set)
    elif isinstance(event, UserDeactivated):
        resource = {**row.resource, "active": False}
    elif isinstance(event, UserReactivated):
        resource = {**row.resource, "active": True}
    elif isinstance(event, UserDeleted):
        return None
    else:
        raise ValueError(f"not a user event: {event_type(event)}")
    # direct construction: dataclasses.replace costs twice as much, and rebuilds fold every event
    return UserRow(row.tenant_id, row.id, row.ordinal, resource, version, row.created, recorded_at)


_COLUMNS = "tenant_id, id, ordinal, resource, version, created, last_modified"

_WRITE = f"""WITH {append_cte("user")}
INSERT INTO users AS u (tenant_id, id, ordinal, user_name, external_id, display_name,
                        active, resource, version, created, last_modified)
SELECT $1, $2, (SELECT min(global_position) FROM ev), $7, $8, $9, $10, $11,
       $3 + cardinality($4::text[]), now(), now()
ON CONFLICT (tenant_id, id) DO UPDATE SET
    user_name = excluded.user_name, external_id = excluded.external_id,
    display_name = excluded.display_name,
    active = excluded.active, resource = excluded.resource, version = excluded.version,
    last_modified = excluded.last_modified
RETURNING {_COLUMNS}"""


def _row(record: asyncpg.Record) -> UserRow:
    return UserRow(**dict(record.items()))


async def write(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    current: UserRow | None,
    events: list[Event],
    metadata: dict[str, Any],
) -> UserRow:
    """Append `events` to the user's stream and update the view row, in one statement.

    The new row is the fold of `events` over `current` (the same `apply` a rebuild uses);
    timestamps and the ordinal come from the database.
    """
    expected = current.version if current else 0
    now = dt.datetime.now(dt.UTC)  # placeholder; the statement sets created/last_modified
    row = current
    for i, event in enumerate(events, start=1):
        row = apply(row, event, tenant_id=tenant_id, stream_id=user_id, version=expected + i,
                    position=current.ordinal if current else 0, recorded_at=now)
    if row is None:
        raise ValueError("write() cannot delete; use delete()")
    try:
        record = await conn.fetchrow(
            _WRITE,
            tenant_id, user_id, expected,
            [event_type(e) for e in events], [encode_event(e) for e in events], metadata,
            row.user_name, row.external_id, row.display_name, row.active,
            row.resource,
        )
    except asyncpg.UniqueViolationError as e:
        if e.constraint_name == "users_user_name":
            raise UserNameTaken(row.user_name) from e
        raise translate_unique_violation(e, user_id, expected) from e
    assert record is not None
    return _row(record)


async def delete(
    conn: asyncpg.Connection,
    current: UserRow,
    event: UserDeleted,
    metadata: dict[str, Any],
) -> None:
    """Append user.deleted and drop the view row (caller holds the transaction)."""
    try:
        await conn.execute(
            f"""WITH {append_cte("user")}
                DELETE FROM users WHERE tenant_id = $1 AND id = $2 AND EXISTS (SELECT 1 FROM ev)""",
            current.tenant_id, current.id, current.version,
            [event_type(event)], [encode_event(event)], metadata,
        )
    except asyncpg.UniqueViolationError as e:
        raise translate_unique_violation(e, current.id, current.version) from e


async def get(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID) -> UserRow | None:
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2", tenant_id, user_id
    )
    return _row(record) if record else None


Groups = list[tuple[uuid.UUID, str]]

_GROUPS_OF_ROW = """(SELECT coalesce(jsonb_agg(jsonb_build_array(g.id, g.display_name)
                                    ORDER BY g.display_name, g.id), '[]'::jsonb)
    FROM group_members m JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id
    WHERE m.tenant_id = u.tenant_id AND m.member_id = u.id)"""


async def get_with_groups(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[UserRow, Groups] | None:
    """The row and its groups (id, displayName) in one statement: a GET is one round trip."""
    record = await conn.fetchrow(
        f"""SELECT {", ".join("u." + c.strip() for c in _COLUMNS.split(","))}, {_GROUPS_OF_ROW} AS groups
            FROM users u WHERE u.tenant_id = $1 AND u.id = $2""",
        tenant_id, user_id,
    )
    if record is None:
        return None
    values = dict(record.items())
    groups = [(uuid.UUID(gid), name) for gid, name in values.pop("groups")]
    return UserRow(**values), groups


async def get_by_user_name(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_name: str) -> UserRow | None:
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM users WHERE tenant_id = $1 AND lower(user_name) = lower($2)",
        tenant_id, user_name,
    )
    return _row(record) if record else None


async def search(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    where: str = "TRUE",
    params: list[Any] | None = None,
    order_by: str = "u.ordinal",
    offset: int = 0,
    limit: int = 100,
    after_ordinal: int | None = None,
    known_total: int | None = None,
) -> tuple[int, list[UserRow]]:
    """(total matching, one page of rows); see projections.views.paging.page."""
    total, records = await page(
        conn, table="users", alias="u", columns=_COLUMNS, tenant_id=tenant_id, where=where,
        params=params or [], order_by=order_by, offset=offset, limit=limit, after_ordinal=after_ordinal,
        known_total=known_total,
    )
    return total, [_row(r) for r in records]


async def groups_of(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, user_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[tuple[uuid.UUID, str]]]:
    """For each user, the (group id, displayName) of its groups."""
    records = await conn.fetch(
        """SELECT m.member_id, g.id, g.display_name
           FROM group_members m JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id
           WHERE m.tenant_id = $1 AND m.member_id = any($2::uuid[])
           ORDER BY g.display_name, g.id""",
        tenant_id, user_ids,
    )
    out: dict[uuid.UUID, list[tuple[uuid.UUID, str]]] = {}
    for r in records:
        out.setdefault(r["member_id"], []).append((r["id"], r["display_name"]))
    return out


async def count_active(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM users WHERE tenant_id = $1 AND active", tenant_id
    ))


__all__ = ["UserNameTaken", "UserRow", "WrongExpectedVersion", "apply", "delete", "get", "write"]
