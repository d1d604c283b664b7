"""The auditor's pages: the trail searched with the API's filters ("who deactivated whom"), its
CSV and JSON Lines exports (streamed through service.app.audit, bounded memory), the seal's
verification and the trail's freshness."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from projections.domain.errors import InvalidQuery
from projections.domain.events import EVENT_TYPES
from service.app import audit, trail_status
from service.http.console.keys import DB, SESSION
from service.http.console.render import render
from service.http.exports import stream_export

FILTERS = ("type", "target", "actor", "since", "until")


def _values(request: web.Request) -> dict[str, str]:
    """The filters given (empty fields left out), as service.app.audit.parse_search takes them."""
    values = {k: request.query[k].strip()[:256] for k in FILTERS if request.query.get(k, "").strip()}
    if request.query.get("cursor"):
        values["cursor"] = request.query["cursor"][:64]
    return values


async def audit_page(request: web.Request) -> web.Response:
    conn = request[DB]
    tenant_id = request[SESSION].principal.tenant_id
    values = _values(request)
    error = None
    page: dict[str, Any] = {"events": [], "next": None}
    try:
        query = audit.parse_search({**values, "limit": "50"})
        entries_page = await audit.search_events(conn, tenant_id, query)
        page = entries_page
    except InvalidQuery as e:
        error = e.detail
    filters = {k: v for k, v in values.items() if k != "cursor"}
    return render(request, "audit.html", {
        "filters": filters, "events": page["events"], "next": page["next"], "error": error,
        "types": EVENT_TYPES, "freshness": await trail_status.freshness(conn), "nav": "audit",
        "paged": "cursor" in values,
    })


async def export(request: web.Request) -> web.StreamResponse:
    fmt = request.query.get("format", "csv")
    if fmt not in audit.EXPORT_FORMATS:
        raise InvalidQuery("format must be csv or jsonl")
    query = audit.parse_search(_values(request))
    return await stream_export(request, request[DB], request[SESSION].principal.tenant_id, fmt, query)


async def seal_page(request: web.Request) -> web.Response:
    conn = request[DB]
    report = await audit.verify(conn, request[SESSION].principal.tenant_id)
    return render(request, "seal.html", {
        "report": report, "freshness": await trail_status.freshness(conn), "nav": "audit",
    })
