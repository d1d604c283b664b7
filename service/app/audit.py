"""Use cases of the auditor: search the trail, walk a range for an export, a target's history,
a user or group as it was at a moment, the seal's verification. The HTTP API (/audit/v1) and
`scimledger audit` both call these; their parameters are parsed here once, so both refuse the
same inputs with the same words.

Parameters are bounded (docs/security.md): numbers are ASCII digits (`limit=²` and a cursor of
`p:²` are refused, not handed to int()), a cursor's position fits a bigint, moments lie inside
0001-01-01..9999-12-31 UTC after their offset, and `target`/`actor` are storable strings no
longer than an indexed name (service/scim/limits.py), so every bad value is a 400 before SQL.

CSV exports are safe to open in a spreadsheet (OWASP "CSV Injection"): a cell that begins with
`=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so it is text, not a formula;
a cell holding a comma, a quote, a CR or an LF is quoted (RFC 4180), so no value can start a row
of its own. The JSON Lines export carries every value exactly.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import msgspec

from eventstore import shredding
from projections.domain.errors import InvalidQuery, ResourceNotFound, SubjectErased
from projections.domain.events import EVENT_TYPES
from projections.followers import audit, runner, seal
from projections.followers.audit import AuditEntry, AuditQuery
from service.app.freshness import cli_notes
from service.app.preconditions import parse_id
from service.scim.errors import ScimError
from service.scim.limits import MAX_INDEXED_LENGTH, MAX_POSITION, check_string, in_utc

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_CURSOR_PREFIX = "p:"
_encode_json = msgspec.json.Encoder().encode


# --- parameters (pure) ------------------------------------------------------------------------

def encode_cursor(position: int) -> str:
    """An opaque keyset cursor: the last position of the page, base64url."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{position}".encode()).decode().rstrip("=")


def _ascii_digits(text: str) -> bool:
    """str.isdigit() is true for "²" and "٣", which int() refuses or reads: only 0-9 count."""
    return bool(text) and text.isascii() and text.isdigit()


def decode_cursor(raw: str) -> int:
    """The position a cursor of `encode_cursor` holds; anything else (not base64, not `p:`
    and ASCII digits, a position beyond a bigint) is InvalidQuery."""
    if len(raw) > 64:  # the longest cursor this API returns (a 19-digit position) is 28 characters
        raise InvalidQuery("cursor is not one this API returned")
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise InvalidQuery("cursor is not one this API returned") from e
    digits = text[len(_CURSOR_PREFIX):]
    if not text.startswith(_CURSOR_PREFIX) or not _ascii_digits(digits) or len(digits) > 19:
        raise InvalidQuery("cursor is not one this API returned")
    position = int(digits)
    if position > MAX_POSITION:
        raise InvalidQuery("cursor is not one this API returned")
    return position


def parse_moment(raw: str, name: str) -> dt.datetime:
    """An ISO-8601 date or date-time, in UTC; without an offset it is taken as UTC. Outside
    0001-01-01..9999-12-31 UTC (`0001-01-01T00:00:00+14:00`) it is InvalidQuery."""
    try:
        moment = dt.datetime.fromisoformat(raw.strip())
    except ValueError as e:
        raise InvalidQuery(f"{name} must be an ISO-8601 date-time, like 2024-03-01T00:00:00Z") from e
    try:
        return in_utc(moment, name)
    except ScimError as e:
        raise InvalidQuery(e.detail) from None


def parse_limit(raw: str | None, default: int = DEFAULT_LIMIT) -> int:
    """A page size from 1 to MAX_LIMIT, in ASCII digits (at most 4 of them reach int())."""
    if raw is None:
        return default
    if not _ascii_digits(raw) or len(raw) > 4 or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def _name(raw: str, name: str) -> str:
    """A `target` or `actor`: not blank, storable, no longer than any name the trail holds."""
    value = raw.strip()
    if not value:
        raise InvalidQuery(f"{name} must not be empty")
    try:
        return check_string(value, name, MAX_INDEXED_LENGTH)
    except ScimError as e:
        raise InvalidQuery(e.detail) from None


def parse_types(raw: str) -> tuple[str, ...]:
    types = tuple(t.strip() for t in raw.split(",") if t.strip())
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown or not types:
        raise InvalidQuery(
            f"unknown event type {', '.join(unknown) or repr(raw)}; known: {', '.join(EVENT_TYPES)}"
        )
    return types


def parse_search(values: Mapping[str, str]) -> audit.AuditQuery:
    """The search filters of /events, /events/export and `scimledger audit events`."""
    target = values.get("target")
    actor = values.get("actor")
    since = parse_moment(values["since"], "since") if "since" in values else None
    until = parse_moment(values["until"], "until") if "until" in values else None
    if since and until and since >= until:
        raise InvalidQuery("since must be before until")
    return audit.AuditQuery(
        types=parse_types(values["type"]) if "type" in values else (),
        target=_name(target, "target") if target is not None else None,
        actor=_name(actor, "actor") if actor is not None else None,
        since=since,
        until=until,
        after=decode_cursor(values["cursor"]) if "cursor" in values else 0,
        limit=parse_limit(values.get("limit")),
    )


def page_body(entries: list[AuditEntry], limit: int) -> dict[str, Any]:
    """`{"events": [...], "next": cursor-or-null}` from up to limit + 1 entries."""
    more = len(entries) > limit
    entries = entries[:limit]
    return {
        "events": [e.to_json() for e in entries],
        "next": encode_cursor(entries[-1].position) if more and entries else None,
    }


# --- export formats (pure) --------------------------------------------------------------------

CSV_COLUMNS = (
    "position", "recordedAt", "type", "targetType", "targetId", "targetName", "actorKind",
    "actorLabel", "actorTokenId", "actorClient", "actorIp", "actorRequestId", "actorOsUser",
    "actorHost", "data",
)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV Injection
_QUOTE_IF = frozenset(',"\r\n')


def csv_cell(value: Any) -> str:
    """One CSV cell: a text that a spreadsheet would take for a formula gets a leading `'`; a
    cell holding a comma, a quote, a CR or an LF is quoted with its quotes doubled (RFC 4180).
    (The csv module quotes only the characters of its line terminator, so with "\n" a bare CR
    went out unquoted and began a row of its own.)"""
    text = value if isinstance(value, str) else str(value)
    if isinstance(value, str) and text.startswith(_FORMULA_STARTS):
        text = "'" + text
    if _QUOTE_IF.intersection(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_row(entry: AuditEntry) -> list[Any]:
    a = entry.actor
    return [
        entry.position, audit.timestamp(entry.recorded_at), entry.type, entry.target_type,
        str(entry.target_id), entry.target_name or "", a.kind or "", a.label or "", a.token_id or "",
        a.client or "", a.ip or "", a.request_id or "", a.os_user or "", a.host or "",
        _encode_json(entry.data).decode() if entry.data is not None else "",
    ]


def csv_lines(entries: list[AuditEntry], *, header: bool = False) -> bytes:
    rows: list[Sequence[Any]] = [CSV_COLUMNS] if header else []
    rows += [csv_row(e) for e in entries]
    return "".join(",".join(csv_cell(c) for c in row) + "\n" for row in rows).encode()


def jsonl_lines(entries: list[AuditEntry]) -> bytes:
    return b"".join(_encode_json(e.to_json()) + b"\n" for e in entries)


EXPORT_FORMATS = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


# --- use cases --------------------------------------------------------------------------------

async def search_events(conn: asyncpg.Connection, tenant_id: uuid.UUID, query: AuditQuery) -> dict[str, Any]:
    """One page of the trail: `{"events": [...], "next": cursor}`."""
    entries = await audit.search(conn, tenant_id, replace(query, limit=query.limit + 1))
    return page_body(entries, query.limit)


def walk(conn: asyncpg.Connection, tenant_id: uuid.UUID, query: AuditQuery) -> AsyncIterator[list[AuditEntry]]:
    """Every matching entry, page by page (bounded memory), for exports."""
    return audit.walk(conn, tenant_id, query)


async def history(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, kind: str, raw_id: str, *, after: int, limit: int
) -> dict[str, Any]:
    """One page of a user's or group's history, deleted ones included."""
    target_id = parse_id(raw_id)
    if target_id is None or await audit.target_type(conn, tenant_id, target_id) != kind:
        raise ResourceNotFound(f"{kind.capitalize()} {raw_id} not found")
    entries = await audit.history(conn, tenant_id, target_id, after=after, limit=limit + 1)
    return page_body(entries, limit)


async def _stream(conn: asyncpg.Connection, tenant_id: uuid.UUID, kind: str, raw_id: str) -> uuid.UUID:
    """The id of a user's or group's stream in this tenant, or ResourceNotFound."""
    stream_id = parse_id(raw_id)
    if stream_id is None or await audit.stream_type(conn, tenant_id, stream_id) != kind:
        raise ResourceNotFound(f"{kind.capitalize()} {raw_id} not found")
    return stream_id


def _existed(state: Any, kind: str, stream_id: uuid.UUID, moment: dt.datetime) -> Any:
    if state is None:
        raise ResourceNotFound(f"{kind.capitalize()} {stream_id} did not exist at {audit.timestamp(moment)}")
    return state


async def user_as_of(conn: asyncpg.Connection, tenant_id: uuid.UUID, raw_id: str, moment: dt.datetime) -> Any:
    """The user exactly as it was at `moment`, folded from its one stream."""
    user_id = await _stream(conn, tenant_id, "user", raw_id)
    when = await shredding.destroyed_at(conn, tenant_id, user_id)
    if when is not None:
        raise SubjectErased(f"User {user_id} was erased at {audit.timestamp(when)}: its personal data is "
                            f"gone; its history (types, times, actors) is at /audit/v1/users/{user_id}/history")
    return _existed(await audit.user_as_of(conn, tenant_id, user_id, moment), "user", user_id, moment)


async def group_as_of(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, raw_id: str, moment: dt.datetime
) -> tuple[Any, set[str]]:
    """The group and its members exactly as they were at `moment`."""
    group_id = await _stream(conn, tenant_id, "group", raw_id)
    found: tuple[Any, set[str]] = _existed(await audit.group_as_of(conn, tenant_id, group_id, moment), "group", group_id, moment)
    return found


async def states_named(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, name: str, moment: dt.datetime
) -> tuple[list[uuid.UUID], list[tuple[str, Any]]]:
    """Every stream a name (an id, a userName or displayName, past ones too) ever named, and the
    ("user", row) / ("group", (row, members)) of those that existed at `moment`."""
    candidates = await audit.target_streams(conn, tenant_id, name)
    found: list[tuple[str, Any]] = []
    for stream_id in candidates:
        kind = await audit.stream_type(conn, tenant_id, stream_id)
        if kind == "user":
            if await shredding.destroyed_at(conn, tenant_id, stream_id) is not None:
                continue  # erased: no state to show (and its names are gone from the trail)
            user = await audit.user_as_of(conn, tenant_id, stream_id, moment)
            if user is not None:
                found.append(("user", user))
        elif kind == "group":
            group = await audit.group_as_of(conn, tenant_id, stream_id, moment)
            if group is not None:
                found.append(("group", group))
    return candidates, found


async def target_exists(conn: asyncpg.Connection, tenant_id: uuid.UUID, name: str) -> bool:
    return bool(await audit.target_streams(conn, tenant_id, name))


async def verify(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> seal.SealReport:
    """The tenant's seal chain, recomputed from its events now."""
    return await seal.verify(conn, tenant_id)


async def bring_up_to_date(conn: asyncpg.Connection, projection: runner.Projection) -> list[str]:
    """Catch the follower up before answering from a process without a runner: take its lock
    and catch up if no runner holds it, else wait (up to 5 s) for the runner. Returns warnings
    (a stopped or failed projection, a view still behind) that the caller must show."""
    notes: list[str] = []
    state = await runner.catch_up_once(conn, projection)
    if state != runner.RUNNING:
        row = await runner.load_checkpoint(conn, projection.name)
        detail = f" at position {row.failed_position}: {row.error}" if row and row.error else ""
        notes.append(f"warning: the {projection.name} projection is {state}{detail}; answers stop there")
    behind = await runner.lag(conn, projection.name)
    if behind.events:
        notes.append(f"note: the {projection.name} view is {behind.events} events behind the log")
    return notes + await cli_notes(conn, projection)  # dead letters (service/app/freshness.py)
