"""The auditor's HTTP API, /audit/v1: read-only, `audit`-scoped tokens, one tenant each.

The authentication middleware admits only `audit` tokens here; every query filters on the
caller's tenant (service.app.audit), so another tenant's ids answer 404 exactly like ids that
never existed. Bad parameters answer 400 with an RFC 7644 section 3.12 body.

Every answer says how fresh it is (service/app/freshness.py): the headers `Audit-Complete-Through`
and `Audit-Complete`, and in a JSON body that is not a SCIM resource the fields `completeThrough`,
`complete` and `incompleteReason`. The state as of a moment is a SCIM resource (its schema has no
such attribute) read from the log itself: headers only. An answer from the audit view that would
be stale (follower failed, stopped or far behind) is a 503 with Retry-After instead, decided
before anything is read, so an export never starts a stream it would have to cut.

    GET /audit/v1/events?type=&target=&actor=&since=&until=&cursor=&limit=
    GET /audit/v1/events/export?format=csv|jsonl&type=&target=&actor=&since=&until=&cursor=
    GET /audit/v1/users/{id}/history, /audit/v1/groups/{id}/history   (?cursor=&limit=)
    GET /audit/v1/users/{id}?asOf=ISO-8601, /audit/v1/groups/{id}?asOf=ISO-8601
    GET /audit/v1/verify
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import asyncpg
from aiohttp import web
from multidict import MultiMapping

from service.app import audit, freshness
from service.app.freshness import Freshness
from service.http.context import base_url, connection
from service.http.exports import stream_export
from service.http.keys import PRINCIPAL
from service.http.wire import json_response
from service.scim.errors import InvalidValue, ScimError
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


async def _fresh_trail(conn: asyncpg.Connection, request: web.Request) -> Freshness:
    """The audit view's freshness for the caller's tenant; a 503 if the answer would be stale."""
    fresh = await freshness.of_audit_trail(conn, request[PRINCIPAL].tenant_id)
    if fresh.retry_after is not None:
        raise ScimError(
            f"the audit trail cannot answer completely now: {fresh.reason}", status=503,
            headers={"Retry-After": str(fresh.retry_after), **fresh.headers()},
        )
    return fresh


def _answer(body: dict[str, object], fresh: Freshness) -> web.Response:
    response = json_response({**body, **fresh.fields()})
    response.headers.update(fresh.headers())
    return response


async def list_events(request: web.Request) -> web.Response:
    query = audit.parse_search(single_values(request.query, SEARCH_PARAMS))
    async with connection(request) as conn:
        fresh = await _fresh_trail(conn, request)
        body = await audit.search_events(conn, request[PRINCIPAL].tenant_id, query)
    return _answer(body, fresh)


async def export_events(request: web.Request) -> web.StreamResponse:
    """Any range as CSV or JSON Lines, streamed page by page (bounded memory, chunked). The
    freshness travels in the headers, decided before the first byte."""
    values = single_values(request.query, (SEARCH_PARAMS - {"limit"}) | {"format"})
    fmt = values.pop("format", "jsonl")
    if fmt not in audit.EXPORT_FORMATS:
        raise InvalidValue("format must be csv or jsonl")
    query = audit.parse_search(values)
    async with connection(request) as conn:
        return await stream_export(request, conn, request[PRINCIPAL].tenant_id, fmt, query)


async def _history(request: web.Request, kind: str) -> web.Response:
    values = single_values(request.query, frozenset({"cursor", "limit"}))
    after = audit.decode_cursor(values["cursor"]) if "cursor" in values else 0
    limit = audit.parse_limit(values.get("limit"), audit.MAX_LIMIT)
    async with connection(request) as conn:
        fresh = await _fresh_trail(conn, request)
        body = await audit.history(
            conn, request[PRINCIPAL].tenant_id, kind, request.match_info["id"], after=after, limit=limit
        )
    return _answer(body, fresh)


async def user_history(request: web.Request) -> web.Response:
    return await _history(request, "user")


async def group_history(request: web.Request) -> web.Response:
    return await _history(request, "group")


def _as_of(request: web.Request) -> dt.datetime:
    values = single_values(request.query, frozenset({"asOf"}))
    if "asOf" in values:
        return audit.parse_moment(values["asOf"], "asOf")
    return dt.datetime.now(dt.UTC)


def _from_the_log(resource: dict[str, object], fresh: Freshness) -> web.Response:
    response = json_response(resource)
    response.headers.update(fresh.headers())
    return response


async def user_state(request: web.Request) -> web.Response:
    """The user exactly as it was at `asOf` (default: now), folded from its one stream."""
    moment = _as_of(request)
    async with connection(request) as conn:
        fresh = await freshness.of_log(conn)
        row = await audit.user_as_of(conn, request[PRINCIPAL].tenant_id, request.match_info["id"], moment)
    return _from_the_log(render_user(row, base_url(request), None), fresh)


async def group_state(request: web.Request) -> web.Response:
    """The group and its members exactly as they were at `asOf` (default: now)."""
    moment = _as_of(request)
    async with connection(request) as conn:
        fresh = await freshness.of_log(conn)
        row, members = await audit.group_as_of(conn, request[PRINCIPAL].tenant_id, request.match_info["id"], moment)
    return _from_the_log(render_group_with_members(row, members, base_url(request)), fresh)


async def verify(request: web.Request) -> web.Response:
    """The state of the tenant's seal chain, recomputed from its events now. Never refused for
    freshness: a stopped seal must not hide a break in what it sealed (`complete` says so)."""
    single_values(request.query, frozenset())
    async with connection(request) as conn:
        report = await audit.verify(conn, request[PRINCIPAL].tenant_id)
        fresh = await freshness.of_seal(conn, request[PRINCIPAL].tenant_id, report)
    return _answer(report.to_json(), fresh)
