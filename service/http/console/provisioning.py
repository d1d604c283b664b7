"""The provisioning log: each IdP connection's recent requests with their outcome, refusals
included, and a chart of requests per hour (service/app/request_log.py)."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from service.app import request_log
from service.http.console.chart import charts
from service.http.console.keys import DB, REQUEST_LOG, SESSION
from service.http.console.render import render

PAGE = 50


async def provisioning_page(request: web.Request) -> web.Response:
    conn = request[DB]
    tenant_id = request[SESSION].principal.tenant_id
    # this worker's queued summaries first, so a page opened right after a push shows it
    await request.config_dict[REQUEST_LOG].flush(conn)
    connection = request.query.get("connection", "")[:200] or None
    outcome = request.query.get("outcome", "")
    outcome = outcome if outcome in request_log.OUTCOMES else ""
    raw_before = request.query.get("before", "")
    before = int(raw_before) if raw_before.isdigit() and len(raw_before) < 19 else None
    rows = await request_log.recent(conn, tenant_id, connection=connection, outcome=outcome or None,
                                    before=before, limit=PAGE)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    summaries = await request_log.connections(conn, tenant_id)
    per_hour = await request_log.hourly(conn, tenant_id)
    params = {"connection": connection or "", "outcome": outcome}
    return render(request, "provisioning.html", {
        "rows": rows, "more": more, "next_before": rows[-1].id if more and rows else None,
        "summaries": summaries, "charts": charts(per_hour, dt.datetime.now(dt.UTC)),
        "connection": connection or "", "outcome": outcome, "outcomes": request_log.OUTCOMES,
        "params": params, "paged": before is not None, "nav": "provisioning",
    })
