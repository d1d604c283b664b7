"""Bulk seeding for the scale figures: rows exactly as the write path makes them, in SQL.

Creating a million users over HTTP would take longer than the benchmark may run, so the rows
are written in bulk by SQL that mirrors projections/users.py `write`: one `user.created` event
per user (version 1, its payload the stored resource) and the users-view row built from it in
the same statement (ordinal = the event's global position). The shape of the resource is taken
from a user created over HTTP (the template), and only userName, displayName, externalId and the
work email change from row to row. Group members are seeded the same way: `group.members_added`
events of 1,000 members each and their membership rows.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

SEED_USERS = """
WITH template AS (
    SELECT u.resource, e.metadata FROM users u
    JOIN events e ON e.tenant_id = u.tenant_id AND e.stream_id = u.id AND e.version = 1
    WHERE u.tenant_id = $1 AND u.id = $2
), seeded AS (
    SELECT g, gen_random_uuid() AS id, format('seed-%s@example.com', g) AS user_name,
           jsonb_set(jsonb_set(jsonb_set(jsonb_set(t.resource,
               '{userName}', to_jsonb(format('seed-%s@example.com', g))),
               '{displayName}', to_jsonb(format('Seed %s', g))),
               '{externalId}', to_jsonb(format('ext-%s', g))),
               '{emails}', jsonb_build_array(jsonb_build_object(
                   'value', format('seed-%s@example.com', g), 'type', 'work', 'primary', true)))
           AS resource,
           t.metadata
    FROM generate_series($3::int, $4::int) g, template t
), ev AS (
    INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
    SELECT $1, 'user', s.id, 1, 'user.created',
           jsonb_build_object('type', 'user.created', 'resource', s.resource), s.metadata
    FROM seeded s ORDER BY s.g
    RETURNING stream_id, global_position, recorded_at, data
)
INSERT INTO users (tenant_id, id, ordinal, user_name, external_id, display_name,
                   active, resource, version, created, last_modified)
SELECT $1, ev.stream_id, ev.global_position, ev.data->'resource'->>'userName',
       ev.data->'resource'->>'externalId', ev.data->'resource'->>'displayName',
       true, ev.data->'resource', 1,
       ev.recorded_at, ev.recorded_at
FROM ev
"""


async def seed_users(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, template_id: uuid.UUID, first: int, last: int,
    *, chunk: int = 100_000,
) -> None:
    """Users seed-<first>..seed-<last>, in transactions of `chunk` users."""
    for start in range(first, last + 1, chunk):
        end = min(last, start + chunk - 1)
        await conn.execute(SEED_USERS, tenant_id, template_id, start, end)
    await conn.execute("ANALYZE users")
    await conn.execute("ANALYZE events")


SEED_MEMBERS = """
WITH picked AS (
    SELECT id, (row_number() OVER (ORDER BY ordinal) - 1) / 1000 AS batch FROM (
        SELECT id, ordinal FROM users WHERE tenant_id = $1 ORDER BY ordinal LIMIT $3
    ) u
), batches AS (
    SELECT batch, array_agg(id) AS ids FROM picked GROUP BY batch
), ev AS (
    INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
    SELECT $1, 'group', $2, $4 + 1 + b.batch, 'group.members_added',
           jsonb_build_object('type', 'group.members_added', 'members', to_jsonb(b.ids::text[])),
           $5::jsonb
    FROM batches b ORDER BY b.batch
    RETURNING version
), members AS (
    INSERT INTO group_members (tenant_id, group_id, member_id)
    SELECT $1, $2, id FROM picked ON CONFLICT DO NOTHING
)
UPDATE groups SET version = (SELECT max(version) FROM ev), last_modified = now()
WHERE tenant_id = $1 AND id = $2
"""


async def seed_members(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, group_id: uuid.UUID, count: int
) -> None:
    """The first `count` users of the tenant join the group, 1,000 per event."""
    async with conn.transaction():
        version = await conn.fetchval(
            "SELECT version FROM groups WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant_id, group_id
        )
        metadata: Any = await conn.fetchval(
            "SELECT metadata FROM events WHERE tenant_id = $1 AND stream_id = $2 AND version = 1",
            tenant_id, group_id,
        )
        await conn.execute(SEED_MEMBERS, tenant_id, group_id, count, version, metadata)
    await conn.execute("ANALYZE group_members")
