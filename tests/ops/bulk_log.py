"""A large, realistic event log written straight into `events` (INSERT ... SELECT over
generate_series), for rebuild tests and benchmarks: the payloads are templates made by
`encode_event` from the real event Structs, so the fold reads exactly what the service writes.
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from projections.domain.events import (
    GroupCreated,
    GroupMembersAdded,
    GroupMembersRemoved,
    UserCreated,
    UserDeactivated,
    UserReactivated,
    UserUpdated,
    encode_event,
)
from tests.support import CORE_GROUP, CORE_USER

ACTOR = {"actor": {"kind": "token", "tokenId": str(uuid.UUID(int=1)), "label": "okta", "scope": "scim",
                   "client": "Okta SCIM Client 1.0.0", "ip": "203.0.113.7", "requestId": "bulk"}}


def _template(event: object) -> str:
    return msgspec.json.encode(encode_event(event)).decode()  # type: ignore[arg-type]


USER_EVENTS = [
    _template(UserCreated(resource={
        "schemas": [CORE_USER],
        "userName": "user__I__@__T__.example.com", "externalId": "00u__I__",
        "name": {"givenName": "Given__I__", "familyName": "Family__I__", "formatted": "Given__I__ Family__I__"},
        "displayName": "Given__I__ Family__I__",
        "emails": [{"value": "user__I__@__T__.example.com", "type": "work", "primary": True}],
        "active": True,
    })),
    _template(UserUpdated(set={"title": "Engineer __I__", "displayName": "G. Family__I__"})),
    _template(UserDeactivated(user_name="user__I__@__T__.example.com")),
    _template(UserReactivated(user_name="user__I__@__T__.example.com")),
]
GROUP_CREATED = _template(GroupCreated(resource={
    "schemas": [CORE_GROUP], "displayName": "Group __J__",
    "externalId": "00g__J__"}))
MEMBERS_ADDED = _template(GroupMembersAdded(members=["__M__"])).replace('["__M__"]', "__M__")
MEMBERS_REMOVED = _template(GroupMembersRemoved(members=["__M__"])).replace('["__M__"]', "__M__")

_USERS_SQL = """
INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
SELECT t.id, 'user', md5(t.id::text || ':u:' || i)::uuid, e.v, e.type,
       replace(replace(e.data, '__I__', i::text), '__T__', left(t.id::text, 8))::jsonb, $7
FROM unnest($1::uuid[]) AS t(id), generate_series(1, $2) AS i,
     LATERAL (VALUES (1, 'user.created', $3::text), (2, 'user.updated', $4::text),
                     (3, 'user.deactivated', $5::text), (4, 'user.reactivated', $6::text)) AS e(v, type, data)
WHERE e.v < 4 OR i % 2 = 0
ORDER BY e.v, i, t.id
"""

# group j of a tenant: created, then `events` member changes; change k adds 4 users, every third
# change removes one user added before
_GROUPS_SQL = """
INSERT INTO events (tenant_id, stream_type, stream_id, version, type, data, metadata)
SELECT t.id, 'group', md5(t.id::text || ':g:' || j)::uuid, k + 1,
       CASE WHEN k = 0 THEN 'group.created' WHEN k % 3 = 0 THEN 'group.members_removed'
            ELSE 'group.members_added' END,
       (CASE WHEN k = 0 THEN replace($5::text, '__J__', j::text)
             WHEN k % 3 = 0 THEN replace($7::text, '__M__', to_jsonb(ARRAY[
                 md5(t.id::text || ':u:' || ((j * 37 + (k - 1) * 4) % $2 + 1))::uuid::text])::text)
             ELSE replace($6::text, '__M__', to_jsonb(ARRAY(
                 SELECT md5(t.id::text || ':u:' || ((j * 37 + k * 4 + n) % $2 + 1))::uuid::text
                 FROM generate_series(0, 3) AS n))::text) END)::jsonb,
       $8
FROM unnest($1::uuid[]) AS t(id), generate_series(1, $3) AS j, generate_series(0, $4) AS k
ORDER BY k, j, t.id
"""


async def seed_log(
    conn: asyncpg.Connection, tenants: list[uuid.UUID], *, users: int, groups: int, member_changes: int
) -> int:
    """Append users and groups streams for every tenant; returns the number of events written.
    Per tenant: `users` users of 3 or 4 events, `groups` groups of 1 + `member_changes` events."""
    status = await conn.execute(_USERS_SQL, tenants, users, *USER_EVENTS, ACTOR)
    written = int(status.split()[-1])
    status = await conn.execute(
        _GROUPS_SQL, tenants, users, groups, member_changes, GROUP_CREATED, MEMBERS_ADDED,
        MEMBERS_REMOVED, ACTOR,
    )
    return written + int(status.split()[-1])
