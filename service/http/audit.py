"""The auditor's HTTP API, /audit/v1: read-only, `audit`-scoped tokens, one tenant each.

The authentication middleware admits only `audit` tokens here; every query below filters on the
caller's tenant, so another tenant's ids answer 404 exactly like ids that never existed. Bad
parameters answer 400 with an RFC 7644 section 3.12 body (the error middleware renders them).

    GET /audit/v1/events?type=&target=&actor=&since=&until=&cursor=&limit=
    GET /audit/v1/events/export?format=csv|jsonl&type=&target=&actor=&since=&until=&cursor=
    GET /audit/v1/users/{id}/history, /audit/v1/groups/{id}/history   (?cursor=&limit=)
    GET /audit/v1/users/{id}?asOf=ISO-8601, /audit/v1/groups/{id}?asOf=ISO-8601
    GET /audit/v1/verify
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import io
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import msgspec
from aiohttp import web
from multidict import MultiMapping

from projections.domain.events import EVENT_TYPES
from projections.followers import audit, seal
from service.http.connection import connection
from service.http.discovery import base_url
from service.http.groups import member_json
from service.http.groups import render as render_group
from service.http.keys import PRINCIPAL
from service.http.rendering import parse_id
from service.http.users import render as render_user
from service.http.wire import json_response
from service.scim.errors import InvalidValue, NotFound

PREFIX = "/audit/v1"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
SEARCH_PARAMS = frozenset({"type", "target", "actor", "since", "until", "cursor", "limit"})
_CURSOR_PREFIX = "p:"
_encode_json = msgspec.json.Encoder().encode


# --- parameters (pure) ------------------------------------------------------------------------

def encode_cursor(position: int) -> str:
    """An opaque keyset cursor: the last position of the page, base64url."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{position}".encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> int:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise InvalidValue("cursor is not one this API returned") from e
    if not text.startswith(_CURSOR_PREFIX) or not text[len(_CURSOR_PREFIX):].isdigit():
        raise InvalidValue("cursor is not one this API returned")
    return int(text[len(_CURSOR_PREFIX):])


def parse_moment(raw: str, name: str) -> dt.datetime:
    """An ISO-8601 date or date-time; without an offset it is taken as UTC."""
    try:
        moment = dt.datetime.fromisoformat(raw.strip())
    except ValueError as e:
        raise InvalidValue(f"{name} must be an ISO-8601 date-time, like 2024-03-01T00:00:00Z") from e
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def parse_limit(raw: str | None, default: int = DEFAULT_LIMIT) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidValue(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def parse_types(raw: str) -> tuple[str, ...]:
    types = tuple(t.strip() for t in raw.split(",") if t.strip())
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown or not types:
        raise InvalidValue(
            f"unknown event type {', '.join(unknown) or repr(raw)}; known: {', '.join(EVENT_TYPES)}"
        )
    return types


def single_values(params: MultiMapping[str] | Mapping[str, str], allowed: frozenset[str]) -> dict[str, str]:
    """The query parameters as one value each; unknown or repeated ones are refused."""
    out: dict[str, str] = {}
    for key in params:
        if key not in allowed:
            raise InvalidValue(f"unknown parameter {key!r}; allowed: {', '.join(sorted(allowed))}")
        values = params.getall(key) if isinstance(params, MultiMapping) else [params[key]]
        if len(values) != 1:
            raise InvalidValue(f"parameter {key!r} given more than once; separate types with commas")
        out[key] = values[0]
    return out


def parse_search(values: Mapping[str, str]) -> audit.AuditQuery:
    """The search filters of /events, /events/export and `scimledger audit events`."""
    target = values.get("target")
    actor = values.get("actor")
    since = parse_moment(values["since"], "since") if "since" in values else None
    until = parse_moment(values["until"], "until") if "until" in values else None
    if since and until and since >= until:
        raise InvalidValue("since must be before until")
    for name, value in (("target", target), ("actor", actor)):
        if value is not None and not value.strip():
            raise InvalidValue(f"{name} must not be empty")
    return audit.AuditQuery(
        types=parse_types(values["type"]) if "type" in values else (),
        target=target.strip() if target else None,
        actor=actor.strip() if actor else None,
        since=since,
        until=until,
        after=decode_cursor(values["cursor"]) if "cursor" in values else 0,
        limit=parse_limit(values.get("limit")),
    )


def page_body(entries: list[audit.AuditEntry], limit: int) -> dict[str, Any]:
    """`{"events": [...], "next": cursor-or-null}` from up to limit + 1 entries."""
    more = len(entries) > limit
    entries = entries[:limit]
    return {
        "events": [e.to_json() for e in entries],
        "next": encode_cursor(entries[-1].position) if more and entries else None,
    }


CSV_COLUMNS = (
    "position", "recordedAt", "type", "targetType", "targetId", "targetName", "actorKind",
    "actorLabel", "actorTokenId", "actorClient", "actorIp", "actorRequestId", "actorOsUser",
    "actorHost", "data",
)


def csv_row(entry: audit.AuditEntry) -> list[Any]:
    a = entry.actor
    return [
        entry.position, audit.timestamp(entry.recorded_at), entry.type, entry.target_type,
        str(entry.target_id), entry.target_name or "", a.kind or "", a.label or "", a.token_id or "",
        a.client or "", a.ip or "", a.request_id or "", a.os_user or "", a.host or "",
        _encode_json(entry.data).decode() if entry.data is not None else "",
    ]


def csv_lines(entries: list[audit.AuditEntry], *, header: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_row(e) for e in entries)
    return out.getvalue().encode()


def jsonl_lines(entries: list[audit.AuditEntry]) -> bytes:
    return b"".join(_encode_json(e.to_json()) + b"\n" for e in entries)


# --- handlers ---------------------------------------------------------------------------------

async def list_events(request: web.Request) -> web.Response:
    query = parse_search(single_values(request.query, SEARCH_PARAMS))
    async with connection(request) as conn:
        entries = await audit.search(
            conn, request[PRINCIPAL].tenant_id, replace(query, limit=query.limit + 1)
        )
    return json_response(page_body(entries, query.limit))


EXPORT_FORMATS = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


async def export_events(request: web.Request) -> web.StreamResponse:
    """Any range as CSV or JSON Lines, streamed page by page (bounded memory, chunked)."""
    values = single_values(request.query, (SEARCH_PARAMS - {"limit"}) | {"format"})
    fmt = values.pop("format", "jsonl")
    if fmt not in EXPORT_FORMATS:
        raise InvalidValue("format must be csv or jsonl")
    query = parse_search(values)
    tenant_id = request[PRINCIPAL].tenant_id
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{EXPORT_FORMATS[fmt]}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="audit-events.{fmt}"',
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    if fmt == "csv":
        await response.write(csv_lines([], header=True))
    async with connection(request) as conn:
        async for page in audit.walk(conn, tenant_id, query):
            await response.write(csv_lines(page) if fmt == "csv" else jsonl_lines(page))
    await response.write_eof()
    return response


def _target_id(request: web.Request, kind: str) -> uuid.UUID:
    target_id = parse_id(request.match_info["id"])
    if target_id is None:
        raise NotFound(f"{kind.capitalize()} {request.match_info['id']} not found")
    return target_id


async def _history(request: web.Request, kind: str) -> web.Response:
    values = single_values(request.query, frozenset({"cursor", "limit"}))
    after = decode_cursor(values["cursor"]) if "cursor" in values else 0
    limit = parse_limit(values.get("limit"), MAX_LIMIT)
    target_id = _target_id(request, kind)
    tenant_id = request[PRINCIPAL].tenant_id
    async with connection(request) as conn:
        if await audit.target_type(conn, tenant_id, target_id) != kind:
            raise NotFound(f"{kind.capitalize()} {target_id} not found")
        entries = await audit.history(conn, tenant_id, target_id, after=after, limit=limit + 1)
    return json_response(page_body(entries, limit))


async def user_history(request: web.Request) -> web.Response:
    return await _history(request, "user")


async def group_history(request: web.Request) -> web.Response:
    return await _history(request, "group")


def _as_of(request: web.Request) -> dt.datetime:
    values = single_values(request.query, frozenset({"asOf"}))
    if "asOf" in values:
        return parse_moment(values["asOf"], "asOf")
    return dt.datetime.now(dt.UTC)


def user_as_of_json(row: Any, base: str) -> dict[str, Any]:
    body = render_user(row, base, [])
    body.pop("groups", None)  # memberships live in the groups' streams: see the groups as of
    return body


def group_as_of_json(row: Any, members: set[str], base: str) -> dict[str, Any]:
    body = render_group(row, base)
    body["members"] = [member_json(m, base) for m in sorted(members)]
    return body


async def user_state(request: web.Request) -> web.Response:
    """The user exactly as it was at `asOf` (default: now), folded from its one stream."""
    moment = _as_of(request)
    user_id = _target_id(request, "user")
    tenant_id = request[PRINCIPAL].tenant_id
    async with connection(request) as conn:
        if await audit.stream_type(conn, tenant_id, user_id) != "user":
            raise NotFound(f"User {user_id} not found")
        row = await audit.user_as_of(conn, tenant_id, user_id, moment)
    if row is None:
        raise NotFound(f"User {user_id} did not exist at {audit.timestamp(moment)}")
    return json_response(user_as_of_json(row, base_url(request)))


async def group_state(request: web.Request) -> web.Response:
    """The group and its members exactly as they were at `asOf` (default: now)."""
    moment = _as_of(request)
    group_id = _target_id(request, "group")
    tenant_id = request[PRINCIPAL].tenant_id
    async with connection(request) as conn:
        if await audit.stream_type(conn, tenant_id, group_id) != "group":
            raise NotFound(f"Group {group_id} not found")
        found = await audit.group_as_of(conn, tenant_id, group_id, moment)
    if found is None:
        raise NotFound(f"Group {group_id} did not exist at {audit.timestamp(moment)}")
    return json_response(group_as_of_json(found[0], found[1], base_url(request)))


async def verify(request: web.Request) -> web.Response:
    """The state of the tenant's seal chain, recomputed from its events now."""
    single_values(request.query, frozenset())
    async with connection(request) as conn:
        report = await seal.verify(conn, request[PRINCIPAL].tenant_id)
    return json_response(report.to_json())


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(f"{PREFIX}/events", list_events)
    router.add_get(f"{PREFIX}/events/export", export_events)
    router.add_get(f"{PREFIX}/users/{{id}}/history", user_history)
    router.add_get(f"{PREFIX}/groups/{{id}}/history", group_history)
    router.add_get(f"{PREFIX}/users/{{id}}", user_state)
    router.add_get(f"{PREFIX}/groups/{{id}}", group_state)
    router.add_get(f"{PREFIX}/verify", verify)
