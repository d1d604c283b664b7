"""The audit export on the wire, for the API (/audit/v1/events/export) and the console: CSV or
JSON Lines streamed page by page (bounded memory, chunked), its freshness decided before the
first byte (service.app.freshness): a trail that cannot answer completely refuses with 503."""

from __future__ import annotations

import uuid

import asyncpg
from aiohttp import web

from projections.followers.audit import AuditQuery
from service.app import audit, freshness
from service.scim.errors import ScimError


async def stream_export(
    request: web.Request, conn: asyncpg.Connection, tenant_id: uuid.UUID, fmt: str, query: AuditQuery
) -> web.StreamResponse:
    fresh = await freshness.of_audit_trail(conn, tenant_id)
    if fresh.retry_after is not None:
        raise ScimError(
            f"the audit trail cannot answer completely now: {fresh.reason}", status=503,
            headers={"Retry-After": str(fresh.retry_after), **fresh.headers()},
        )
    response = web.StreamResponse(headers={
        "Content-Type": f"{audit.EXPORT_FORMATS[fmt]}; charset=utf-8",
        "Content-Disposition": f'attachment; filename="audit-events.{fmt}"',
        **fresh.headers(),
    })
    response.enable_chunked_encoding()
    await response.prepare(request)
    if fmt == "csv":
        await response.write(audit.csv_lines([], header=True))
    async for page in audit.walk(conn, tenant_id, query):
        await response.write(audit.csv_lines(page) if fmt == "csv" else audit.jsonl_lines(page))
    await response.write_eof()
    return response
