"""The users view: a fold of each user stream, kept inline with the log.

Each write appends the events and upserts the row in one statement (eventstore.store.append_with);
the new row is the fold of the events over the current row with projections.domain.folds.apply_user,
the same fold a rebuild uses, so a rebuild yields the same rows.

Payloads are sealed under the subject's data key before append (projections/privacy.py): a
write is given the key (`get_with_groups` reads it with the row, in the same statement), and a
subject's first write makes one and stores it in the append's statement.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from eventstore import shredding
from eventstore.store import append_with
from projections.domain.errors import UserNameTaken
from projections.domain.events import Event, UserDeleted, UserErased
from projections.domain.folds import Groups, UserRow, apply_user, fold_write
from projections.privacy import seal_events
from projections.views.paging import ViewSearch, new_events, qualified, row_reader

STREAM_TYPE = "user"
USER_NAME_INDEX = "users_user_name"  # the unique index (tenant_id, lower(user_name))
_COLUMNS = "tenant_id, id, ordinal, resource, version, created, last_modified"

# the view statements of append_with: $1 tenant, $3 user id, $4 expected version, $5 event types;
# the row's values from $8. Each acts only when the events were appended (`ev` has rows).
_WRITE = f"""INSERT INTO users AS u (tenant_id, id, ordinal, user_name, external_id, display_name,
                        active, resource, version, created, last_modified)
SELECT $1, $3, (SELECT min(global_position) FROM ev), $8, $9, $10, $11, $12,
       $4 + cardinality($5::text[]), now(), now()
WHERE EXISTS (SELECT 1 FROM ev)
ON CONFLICT (tenant_id, id) DO UPDATE SET
    user_name = excluded.user_name, external_id = excluded.external_id,
    display_name = excluded.display_name,
    active = excluded.active, resource = excluded.resource, version = excluded.version,
    last_modified = excluded.last_modified
RETURNING {_COLUMNS}"""
_DELETE = "DELETE FROM users WHERE tenant_id = $1 AND id = $3 AND EXISTS (SELECT 1 FROM ev) RETURNING id"

_row = row_reader(UserRow)


async def write(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    current: UserRow | None,
    events: list[Event],
    metadata: dict[str, Any],
    key: bytes | None,
) -> UserRow:
    """Append `events` to the user's stream and update the view row, in one statement.

    The new row is the fold of `events` over `current` (the same fold a rebuild uses);
    timestamps and the ordinal come from the database. `key` is the subject's data key, None
    when it has none yet (a new user, or one written before payloads were sealed). Raises
    WrongExpectedVersion if the stream is not at `current`'s version, UserNameTaken if another
    user has the userName.
    """
    row = fold_write(apply_user, current, events, tenant_id=tenant_id, stream_id=user_id)
    expected = current.version if current else 0
    new_key = None
    if key is None:
        key, new_key = shredding.new_stream_key()
    stored = seal_events(new_events(events), tenant_id, user_id, expected + 1, key)
    try:
        record = await append_with(
            conn, STREAM_TYPE, _WRITE, tenant_id, user_id, expected, stored, metadata,
            row.user_name, row.external_id, row.display_name, row.active, row.resource,
            stream_key=new_key,
        )
    except asyncpg.UniqueViolationError as e:
        if e.constraint_name == USER_NAME_INDEX:
            raise UserNameTaken(f"userName {row.user_name!r} is already taken in this tenant") from e
        raise
    return _row(record)


async def delete(
    conn: asyncpg.Connection,
    current: UserRow,
    event: UserDeleted,
    metadata: dict[str, Any],
    key: bytes | None,
) -> None:
    """Append user.deleted and drop the view row (caller holds the transaction)."""
    new_key = None
    if key is None:
        key, new_key = shredding.new_stream_key()
    stored = seal_events(new_events([event]), current.tenant_id, current.id, current.version + 1, key)
    await append_with(
        conn, STREAM_TYPE, _DELETE, current.tenant_id, current.id, current.version, stored, metadata,
        stream_key=new_key,
    )


_ERASE_ROW = _DELETE
_ERASE_NO_ROW = "SELECT global_position FROM ev LIMIT 1"


async def erase(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID, version: int, has_row: bool,
    event: UserErased, metadata: dict[str, Any],
) -> None:
    """Append user.erased at `version` and drop the view row when there is one (the caller
    holds the transaction; the payload has no personal data, so nothing is sealed)."""
    await append_with(
        conn, STREAM_TYPE, _ERASE_ROW if has_row else _ERASE_NO_ROW, tenant_id, user_id, version,
        new_events([event]), metadata,
    )


async def get(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID) -> UserRow | None:
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2", tenant_id, user_id
    )
    return _row(record) if record else None


_GROUPS_OF_ROW = """(SELECT coalesce(jsonb_agg(jsonb_build_array(g.id, g.display_name)
                                    ORDER BY g.display_name, g.id), '[]'::jsonb)
    FROM group_members m JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id
    WHERE m.tenant_id = u.tenant_id AND m.member_id = u.id)"""


_KEY_OF_ROW = """(SELECT k.kek_id FROM stream_keys k WHERE k.tenant_id = u.tenant_id AND k.stream_id = u.id) AS kek_id,
    (SELECT k.wrapped FROM stream_keys k WHERE k.tenant_id = u.tenant_id AND k.stream_id = u.id) AS wrapped"""
_GET = f"""SELECT {qualified("u", _COLUMNS)}, {_GROUPS_OF_ROW} AS groups
    FROM users u WHERE u.tenant_id = $1 AND u.id = $2"""
_GET_FOR_WRITE = f"""SELECT {qualified("u", _COLUMNS)}, {_GROUPS_OF_ROW} AS groups, {_KEY_OF_ROW}
    FROM users u WHERE u.tenant_id = $1 AND u.id = $2"""


async def get_with_groups(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID, *, with_key: bool = False
) -> tuple[UserRow, Groups, bytes | None] | None:
    """The row and its groups (id, displayName) in one statement: a GET is one round trip.
    `with_key` (what a write decides from): the subject's data key too, in the same statement
    (None when it has none yet, as it is when not asked for)."""
    record = await conn.fetchrow(_GET_FOR_WRITE if with_key else _GET, tenant_id, user_id)
    if record is None:
        return None
    values = dict(record.items())
    groups = [(uuid.UUID(gid), name) for gid, name in values.pop("groups")]
    key = None
    if with_key:
        kek_id, wrapped = values.pop("kek_id"), values.pop("wrapped")
        key = None if wrapped is None else shredding.unwrap(shredding.WrappedKey(kek_id, bytes(wrapped)))
    return UserRow(**values), groups, key


async def key_of(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID) -> bytes | None:
    """The subject's data key (None when it has none, or it was destroyed)."""
    return (await shredding.keys_for(conn, [(tenant_id, user_id)])).get((tenant_id, user_id))


async def get_by_user_name(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_name: str) -> UserRow | None:
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM users WHERE tenant_id = $1 AND lower(user_name) = lower($2)",
        tenant_id, user_name,
    )
    return _row(record) if record else None


search = ViewSearch("users", "u", _COLUMNS, _row)


async def groups_of(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, user_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Groups]:
    """For each user, the (group id, displayName) of its groups."""
    records = await conn.fetch(
        """SELECT m.member_id, g.id, g.display_name
           FROM group_members m JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id
           WHERE m.tenant_id = $1 AND m.member_id = any($2::uuid[])
           ORDER BY g.display_name, g.id""",
        tenant_id, user_ids,
    )
    out: dict[uuid.UUID, Groups] = {}
    for r in records:
        out.setdefault(r["member_id"], []).append((r["id"], r["display_name"]))
    return out


async def count_active(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM users WHERE tenant_id = $1 AND active", tenant_id
    ))


__all__ = [
    "count_active", "delete", "get", "get_by_user_name", "get_with_groups",
    "groups_of", "search", "write",
]
