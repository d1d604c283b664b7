"""The per-tenant request log behind the console's provisioning log (docs/console.md).

What is kept of each /scim/v2 request of an authenticated IdP connection: when, which token
(label, id), the client (User-Agent), the source address, the request id, method and path, the
resource aimed at (type and id from the path, or from `Location` after a create; the `filter` of a
list), the status, and for a refusal its scimType and detail. Never a body, a header other than
the User-Agent, or a secret; token-shaped strings are masked in details.

Off the request's critical path: `RequestLog.record` appends a summary to an in-process bounded
queue and returns (no I/O, no await); `run` flushes the queue in batches (COPY) from a background
task every `interval` seconds, or sooner when a batch fills. A full queue drops new summaries
and counts them (`dropped`), so a database outage never grows memory or slows requests.

Bounded on disk: `prune` deletes rows older than the retention period and, per tenant, all but
the newest `max_rows`; `run` calls it every `prune_every` seconds. Each worker process has its
own queue; the table is shared.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import astuple, dataclass, fields
from typing import Any

import asyncpg

DETAIL_MAX = 500
_SECRET = re.compile(r"scimledger_[A-Za-z0-9_\-]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFacts:
    """What the log keeps of one request: no body, no header but the User-Agent, no secret."""

    at: dt.datetime
    token_label: str
    client: str | None
    ip: str | None
    request_id: str | None
    method: str
    path: str
    resource_type: str | None
    resource_id: str | None
    filter: str | None
    status: int
    scim_type: str | None
    detail: str | None
    duration_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestSummary(RequestFacts):
    """One request as it is queued (columns of `request_log`)."""

    tenant_id: uuid.UUID
    token_id: uuid.UUID | None


COLUMNS = [f.name for f in fields(RequestSummary)]


def storable(summary: RequestSummary) -> RequestSummary:
    """The summary with every U+0000 in its text shown as the escape \\x00."""
    changed: dict[str, Any] = {f.name: v.replace("\x00", "\\x00") for f in fields(summary)
               if isinstance(v := getattr(summary, f.name), str) and "\x00" in v}
    return dataclasses.replace(summary, **changed) if changed else summary


def clean_detail(detail: str | None) -> str | None:
    """A refusal's detail as stored: token-shaped strings masked, at most DETAIL_MAX chars."""
    if not detail:
        return None
    return _SECRET.sub("scimledger_***", detail)[:DETAIL_MAX]


@dataclass(frozen=True, slots=True)
class Limits:
    capacity: int = 10_000  # summaries queued per worker before new ones are dropped
    batch: int = 500  # a flush starts early when this many are queued
    interval: float = 0.5  # seconds between flushes
    retention: dt.timedelta = dt.timedelta(days=7)
    max_rows: int = 10_000  # rows kept per tenant
    prune_every: float = 60.0  # seconds between prunes


class RequestLog:
    """The bounded queue of one worker and its flusher."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._queue: deque[RequestSummary] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._touched: set[uuid.UUID] = set()
        self.dropped = 0
        self.written = 0

    def record(self, summary: RequestSummary) -> None:
        """Queue one summary: no I/O. Dropped (and counted) when the queue is full. Text that
        PostgreSQL cannot store (NUL) is made visible first, so one hostile request can never
        make the batch it is flushed in fail."""
        if len(self._queue) >= self.limits.capacity:
            self.dropped += 1
            return
        self._queue.append(storable(summary))
        if len(self._queue) >= self.limits.batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def flush(self, conn: asyncpg.Connection) -> int:
        """Write what is queued now (in one COPY per batch); returns how many were written. A
        failed write puts nothing back: the log is diagnostic, and retrying a poisoned batch
        forever would be worse than a gap."""
        async with self._lock:
            written = 0
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.limits.batch))]
                await conn.copy_records_to_table(
                    "request_log", records=[astuple(s) for s in batch], columns=COLUMNS
                )
                self._touched.update(s.tenant_id for s in batch)
                written += len(batch)
            self.written += written
            return written

    async def prune(self, conn: asyncpg.Connection) -> int:
        """Delete rows past the retention period, and beyond `max_rows` of each tenant written
        to since the last prune. Returns the rows deleted."""
        deleted = await _count(conn.execute(
            "DELETE FROM request_log WHERE at < now() - $1::interval", self.limits.retention
        ))
        touched, self._touched = self._touched, set()
        for tenant_id in sorted(touched):
            deleted += await _count(conn.execute(
                """DELETE FROM request_log WHERE tenant_id = $1 AND id <= (
                       SELECT id FROM request_log WHERE tenant_id = $1
                       ORDER BY id DESC OFFSET $2 LIMIT 1)""",
                tenant_id, self.limits.max_rows,
            ))
        return deleted

    async def run(self, acquire: Callable[[], Any], *, on_error: Callable[[BaseException], None]) -> None:
        """Flush every `interval` (or when a batch fills) and prune every `prune_every`, until
        cancelled; `acquire()` is an async context manager giving a connection (a pool's)."""
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.limits.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                async with acquire() as conn:
                    await self.flush(conn)
                    if loop.time() >= next_prune:
                        await self.prune(conn)
                        next_prune = loop.time() + self.limits.prune_every
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                on_error(e)

    async def drain(self, conn: asyncpg.Connection) -> None:
        """At shutdown: write what is left."""
        await self.flush(conn)


async def _count(status: Awaitable[str]) -> int:
    return int((await status).split()[-1])


# --- reading --------------------------------------------------------------------------------------

OUTCOMES = ("ok", "rejected", "failed")  # status < 400, 4xx, 5xx


def outcome(status: int) -> str:
    return "ok" if status < 400 else "rejected" if status < 500 else "failed"


_OUTCOME_SQL = {
    "ok": "status < 400",
    "rejected": "status >= 400 AND status < 500",
    "failed": "status >= 500",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedRequest(RequestFacts):
    """One request as the provisioning log shows it."""

    id: int

    @property
    def outcome(self) -> str:
        return outcome(self.status)


async def recent(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, *, connection: str | None = None,
    outcome: str | None = None, before: int | None = None, limit: int = 50,
) -> list[LoggedRequest]:
    """The tenant's newest requests first, optionally of one connection (token label) and one
    outcome; `before` is the keyset cursor (an id). At most `limit` + 1 rows (one tells there
    are more)."""
    where = ["tenant_id = $1"]
    params: list[Any] = [tenant_id]
    if connection:
        params.append(connection)
        where.append(f"token_label = ${len(params)}")
    if outcome in _OUTCOME_SQL:
        where.append(_OUTCOME_SQL[outcome])
    if before is not None:
        params.append(before)
        where.append(f"id < ${len(params)}")
    params.append(limit + 1)
    rows = await conn.fetch(
        f"""SELECT id, at, token_label, client, ip, request_id, method, path, resource_type,
                   resource_id, filter, status, scim_type, detail, duration_ms
            FROM request_log WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ${len(params)}""",
        *params,
    )
    return [LoggedRequest(**dict(r)) for r in rows]


@dataclass(frozen=True, slots=True)
class ConnectionSummary:
    label: str
    requests: int
    rejected: int
    failed: int
    last_at: dt.datetime
    last_rejected_at: dt.datetime | None


async def connections(conn: asyncpg.Connection, tenant_id: uuid.UUID, *, hours: int = 24) -> list[ConnectionSummary]:
    """Each connection (token label) seen in the last `hours`: counts by outcome, last request."""
    rows = await conn.fetch(
        """SELECT token_label AS label, count(*) AS requests,
                  count(*) FILTER (WHERE status >= 400 AND status < 500) AS rejected,
                  count(*) FILTER (WHERE status >= 500) AS failed,
                  max(at) AS last_at,
                  max(at) FILTER (WHERE status >= 400) AS last_rejected_at
           FROM request_log WHERE tenant_id = $1 AND at > now() - $2::interval
           GROUP BY token_label ORDER BY token_label""",
        tenant_id, dt.timedelta(hours=hours),
    )
    return [ConnectionSummary(**dict(r)) for r in rows]


async def hourly(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, *, hours: int = 24
) -> dict[str, dict[dt.datetime, dict[str, int]]]:
    """Requests per hour of the last `hours`, by connection and outcome:
    {label: {hour: {"ok": n, "rejected": n, "failed": n}}}."""
    rows = await conn.fetch(
        """SELECT token_label, date_trunc('hour', at) AS hour,
                  CASE WHEN status < 400 THEN 'ok' WHEN status < 500 THEN 'rejected' ELSE 'failed' END AS outcome,
                  count(*) AS n
           FROM request_log WHERE tenant_id = $1 AND at > date_trunc('hour', now()) - $2::interval
           GROUP BY 1, 2, 3""",
        tenant_id, dt.timedelta(hours=hours - 1),
    )
    out: dict[str, dict[dt.datetime, dict[str, int]]] = {}
    for r in rows:
        per_hour = out.setdefault(r["token_label"], {}).setdefault(r["hour"], dict.fromkeys(OUTCOMES, 0))
        per_hour[r["outcome"]] = int(r["n"])
    return out


async def forget(conn: asyncpg.Connection, tenant_id: uuid.UUID, resource_id: str, values: set[str]) -> int:
    """Delete the tenant's rows about `resource_id` or quoting any of `values` (case-insensitive)
    in a filter or an error detail: an erased subject's traces (service/app/erasure.py). The
    table is bounded per tenant (retention, row cap), so one pass is bounded too."""
    lowered = sorted({v.lower() for v in values})
    status = await conn.execute(
        """DELETE FROM request_log r WHERE r.tenant_id = $1 AND (
               r.resource_id = $2
               OR EXISTS (SELECT 1 FROM unnest($3::text[]) AS v(s)
                          WHERE strpos(lower(coalesce(r.filter, '') || ' ' || coalesce(r.detail, '')), v.s) > 0))""",
        tenant_id, resource_id, lowered,
    )
    return int(status.split()[-1])
