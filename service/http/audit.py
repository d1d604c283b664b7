"""The auditor's HTTP API, /audit/v1: read-only, `audit`-scoped tokens, one tenant each.

The authentication middleware admits only `audit` tokens here; every query filters on the
caller's tenant (service.app.audit), so another tenant's ids answer 404 exactly like ids that
never existed. Bad parameters answer 400 with an RFC 7644 section 3.12 body.

    GET /audit/v1/events?type=&target=&actor=&since=&until=&cursor=&limit=
    GET /audit/v1/events/export?format=csv|jsonl&type=&target=&actor=&since=&until=&cursor=
    GET /audit/v1/users/{id}/history, /audit/v1/groups/{id}/history   (?cursor=&limit=)
    GET /audit/v1/users/{id}?asOf=ISO-8601, /audit/v1/groups/{id}?asOf=ISO-8601
    GET /audit/v1/verify
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from aiohttp import web
from multidict import MultiMapping

from service.app import audit
from service.http.context import base_url, connection
from service.http.keys import PRINCIPAL
from service.http.wire import json_response
from service.scim.errors import InvalidValue
from service.scim.render import render_group_with_members, render_user

SEARCH_PARAMS = frozenset({"type", "target", "actor", "since", "until", "cursor", "limit"})


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


async def list_events(request: web.Request) -> web.Response:
    query = audit.parse_search(single_values(request.query, SEARCH_PARAMS))
    async with connection(request) as conn:
        body = await audit.search_events(conn, request[PRINCIPAL].tenant_id, query)
    return json_response(body)


async def export_events(request: web.Request) -> web.StreamResponse:
    """Any range as CSV or JSON Lines, streamed page by page (bounded memory, chunked)."""
    values = single_values(request.query, (SEARCH_PARAMS - {"limit"}) | {"format"})
    fmt = values.pop("format", "jsonl")
    if fmt not in audit.EXPORT_FORMATS:
        raise InvalidValue("format must be csv or jsonl")
    query = audit.parse_search(values)
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{audit.EXPORT_FORMATS[fmt]}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="audit-events.{fmt}"',
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    if fmt == "csv":
        await response.write(audit.csv_lines([], header=True))
    async with connection(request) as conn:
        async for page in audit.walk(conn, request[PRINCIPAL].tenant_id, query):
            await response.write(audit.csv_lines(page) if fmt == "csv" else audit.jsonl_lines(page))
    await response.write_eof()
    return response


async def _history(request: web.Request, kind: str) -> web.Response:
    values = single_values(request.query, frozenset({"cursor", "limit"}))
    after = audit.decode_cursor(values["cursor"]) if "cursor" in values else 0
    limit = audit.parse_limit(values.get("limit"), audit.MAX_LIMIT)
    async with connection(request) as conn:
        body = await audit.history(
            conn, request[PRINCIPAL].tenant_id, kind, request.match_info["id"], after=after, limit=limit
        )
    return json_response(body)


async def user_history(request: web.Request) -> web.Response:
    return await _history(request, "user")


async def group_history(request: web.Request) -> web.Response:
    return await _history(request, "group")


def _as_of(request: web.Request) -> dt.datetime:
    values = single_values(request.query, frozenset({"asOf"}))
    if "asOf" in values:
        return audit.parse_moment(values["asOf"], "asOf")
    return dt.datetime.now(dt.UTC)


async def user_state(request: web.Request) -> web.Response:
    """The user exactly as it was at `asOf` (default: now), folded from its one stream."""
    moment = _as_of(request)
    async with connection(request) as conn:
        row = await audit.user_as_of(conn, request[PRINCIPAL].tenant_id, request.match_info["id"], moment)
    return json_response(render_user(row, base_url(request), None))


async def group_state(request: web.Request) -> web.Response:
    """The group and its members exactly as they were at `asOf` (default: now)."""
    moment = _as_of(request)
    async with connection(request) as conn:
        row, members = await audit.group_as_of(conn, request[PRINCIPAL].tenant_id, request.match_info["id"], moment)
    return json_response(render_group_with_members(row, members, base_url(request)))


async def verify(request: web.Request) -> web.Response:
    """The state of the tenant's seal chain, recomputed from its events now."""
    single_values(request.query, frozenset())
    async with connection(request) as conn:
        report = await audit.verify(conn, request[PRINCIPAL].tenant_id)
    return json_response(report.to_json())
