"""Erasure of a data subject (GDPR article 17, CCPA deletion) against an immutable log, by
crypto-shredding (docs/privacy.md).

`erase_user` destroys the subject's data key, so every sealed payload of its stream stays
unreadable for good, while the log's bytes (and so the seal chain over them) do not change. In
the same transaction it removes what holds the person in plaintext outside the log: the users
view row (the userName is free again), its group memberships (group.members_removed, reason
user.erased), its names in the audit trail, and the request-log rows that name it or quote one
of its values in a filter or an error detail; and it appends `user.erased` with no personal
data (who erased is the event's metadata, why is its `reason`). The audit trail keeps the
subject's id, event types, times and actors. Idempotent: erasing an erased subject changes
nothing.

The subject is named by id, or by a userName it has or had: a current user's, else any user's
the audit trail knows (a deleted user's included); a name that several subjects had is refused
with their ids.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

from eventstore import shredding
from eventstore.store import WrongExpectedVersion, read_stream, stream_type_of, stream_version
from projections.domain import personal
from projections.domain.actor import Actor
from projections.domain.errors import InvalidQuery, ResourceNotFound
from projections.domain.events import UserErased
from projections.followers import audit as audit_trail
from projections.followers import streams as streams_follower
from projections.privacy import holds_clear_personal, open_records
from projections.views import users as users_view
from service.app import groups as group_cases
from service.app import request_log
from service.app.preconditions import parse_id
from service.app.tenancy import Tenant

MAX_REASON = 1000
MIN_QUOTED = 3  # shorter values ("en", "x") would match unrelated request-log rows
RETRIES = 5


@dataclass(frozen=True, slots=True)
class Erasure:
    user_id: uuid.UUID
    erased_at: dt.datetime
    already: bool  # erased before this call: nothing changed
    groups_left: int = 0


def check_reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise InvalidQuery("an erasure needs a reason (--reason), e.g. the request's ticket")
    if len(text) > MAX_REASON:
        raise InvalidQuery(f"the reason is at most {MAX_REASON} characters")
    return text


async def find_subject(conn: asyncpg.Connection, tenant_id: uuid.UUID, who: str) -> uuid.UUID:
    """The user stream `who` names (module doc)."""
    as_id = parse_id(who)
    if as_id is not None and await stream_type_of(conn, tenant_id, as_id) == "user":
        return as_id
    row = await users_view.get_by_user_name(conn, tenant_id, who)
    if row is not None:
        return row.id
    candidates = [s for s in await audit_trail.target_streams(conn, tenant_id, who)
                  if await stream_type_of(conn, tenant_id, s) == "user"]
    if not candidates:
        raise ResourceNotFound(f"no user {who!r} in this tenant, now or in its history")
    if len(candidates) > 1:
        raise InvalidQuery(f"{len(candidates)} users had the userName {who!r}: name one by id "
                           f"({', '.join(str(c) for c in candidates)})")
    return candidates[0]


async def erase_user(conn: asyncpg.Connection, tenant: Tenant, who: str, reason: str, actor: Actor) -> Erasure:
    """Erase the subject `who` names (module doc), re-deciding on a concurrent write."""
    why = check_reason(reason)
    user_id = await find_subject(conn, tenant.id, who)
    for attempt in range(RETRIES):
        try:
            async with conn.transaction():
                return await _erase(conn, tenant, user_id, why, actor)
        except WrongExpectedVersion:
            if attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


async def plaintext_events(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID) -> int:
    """How many of the subject's events hold personal data in clear (written before payloads
    were sealed): a key cannot erase those; `scimledger log seal` converts them first."""
    return sum(1 for e in await read_stream(conn, tenant_id, user_id) if holds_clear_personal(e.data))


async def _erase(conn: asyncpg.Connection, tenant: Tenant, user_id: uuid.UUID, reason: str, actor: Actor) -> Erasure:
    clear = await plaintext_events(conn, tenant.id, user_id)
    if clear:
        raise InvalidQuery(f"{clear} events of user {user_id} were written before personal data was sealed; "
                           "run `scimledger log seal` (docs/privacy.md) and erase again")
    erased_at = await shredding.destroyed_at(conn, tenant.id, user_id)
    version = await stream_version(conn, tenant.id, user_id)
    row = await users_view.get(conn, tenant.id, user_id)
    if erased_at is not None and row is None:
        await audit_trail.forget_names(conn, tenant.id, user_id)  # idempotent, in case
        return Erasure(user_id, erased_at, already=True)
    strings = await _personal_strings(conn, tenant.id, user_id)
    metadata = actor.metadata()
    left = []
    if row is not None:
        left = await group_cases.remove_member_everywhere(conn, tenant.id, user_id, metadata, reason="user.erased")
    await users_view.erase(conn, tenant.id, user_id, version, row is not None, UserErased(reason=reason), metadata)
    await shredding.destroy(conn, tenant.id, user_id, reason)
    await audit_trail.forget_names(conn, tenant.id, user_id)
    await request_log.forget(conn, tenant.id, str(user_id), strings)
    await streams_follower.forget_subject(conn, tenant.id, "user", user_id)
    when = await shredding.destroyed_at(conn, tenant.id, user_id)
    assert when is not None
    return Erasure(user_id, when, already=False, groups_left=len(left))


async def _personal_strings(conn: asyncpg.Connection, tenant_id: uuid.UUID, user_id: uuid.UUID) -> set[str]:
    """Every string the subject's payloads held (opened while the key still exists): what the
    request log's filters and error details may quote."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, str):
            if len(value) >= MIN_QUOTED:
                found.add(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for event in await open_records(conn, await read_stream(conn, tenant_id, user_id)):
        walk(personal.split(event.data)[1])
    return found

