"""`/metrics` in the Prometheus text format, safe with `serve --workers N`.

With several workers, `serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before it
spawns them; prometheus_client then keeps each worker's counters and histograms in files there,
and whichever worker answers a scrape sums all of them (MultiProcessCollector). With one process
the default registry is used as is.

What is measured where:
- requests by route template (never the raw path: ids would explode the label set), method and
  status, with a latency histogram: `metrics_middleware`, outermost, so it sees the final status;
  429s are also counted on their own (throttled, by status only: per-tenant labels would grow
  without bound).
- events appended, by type: read from the log itself at scrape time, incrementally. Every
  transaction below the oldest running one is finished, so counting the events of the
  transactions in [previous bound, current xmin) on each scrape counts every committed event
  exactly once, whoever wrote it (HTTP, CLI, psql), with the (transaction_id, position) index.
  The first scrape of a process counts the whole log once. Every worker computes the same
  global total, so it does not matter which one answers.
- projection lag (events and seconds) and state: from projection_checkpoints at scrape time.
  The lag in events is counted up to eventstore.stats.LAG_CAP (10,000), so a scrape costs at
  most that many index entries however far behind a failed follower is.
- dead letters per follower (`scimledger_follower_dead_letters`): events a follower could not
  apply and stepped over (projections/followers/dead_letters.py), counted up to 10,000.
- OAuth client secrets about to expire (`scimledger_oauth_client_secrets_expiring`, within 7 and
  30 days; scrape time), so an operator rotates them before an IdP's connection breaks.
- pool use: size and idle connections of each worker's pool (gauges summed over live workers).
- tenant-free totals: responses by status class (`2xx` ... `5xx`), authentication failures by
  reason (missing, invalid, tenant_disabled, scope: counted by the authentication middleware).

Where /metrics is served: with SCIMLEDGER_METRICS_PORT set, on that port only (serve opens a
second listener for it, service/server/serve.py): the SCIM port answers /metrics with 404 and the
metrics port answers nothing else. Unset, /metrics is on the SCIM port with the rest (local runs;
keep that port off the internet then).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from eventstore.stats import counts_by_type_below_xmin
from projections import registry
from projections.followers import dead_letters
from projections.followers import runner as follower
from service.app import oauth
from service.http.events import stream_families
from service.http.keys import POOL, SETTINGS, TEMPLATES
from service.http.observe import Handler, observed

log = structlog.get_logger("scimledger.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "scimledger_http_requests", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "scimledger_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
THROTTLED = Counter("scimledger_http_throttled", "requests refused with 429 (tenant rate limit)")
RESPONSES = Counter("scimledger_http_responses", "HTTP responses by status class", ["class"])
AUTH_FAILURES = Counter(
    "scimledger_auth_failures", "requests refused by authentication, by reason", ["reason"]
)
POOL_SIZE = Gauge("scimledger_db_pool_size", "database connections open", multiprocess_mode="livesum")
POOL_IDLE = Gauge("scimledger_db_pool_idle", "database connections idle", multiprocess_mode="livesum")

UNMATCHED = "unmatched"


def route_template(request: web.Request) -> str:
    """The route a request matched, as its template (`/scim/v2/Users/{id}`)."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None or isinstance(request.match_info.http_exception, web.HTTPException):
        return UNMATCHED
    return request.app.get(TEMPLATES, {}).get(resource, resource.canonical)


def observe_pool(pool: asyncpg.Pool | None) -> None:
    if pool is not None:
        POOL_SIZE.set(pool.get_size())
        POOL_IDLE.set(pool.get_idle_size())


METRICS_PATH = "/metrics"


def on_metrics_port(request: web.Request) -> bool:
    """Whether the request came in on SCIMLEDGER_METRICS_PORT (False when it is unset)."""
    port = request.config_dict[SETTINGS].metrics_port
    if port is None or request.transport is None:
        return False
    sockname = request.transport.get_extra_info("sockname")
    return isinstance(sockname, tuple) and len(sockname) >= 2 and sockname[1] == port


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if on_metrics_port(request) and request.path != METRICS_PATH:
        return web.Response(status=404, text="only /metrics is served on the metrics port\n")

    def done(_response: web.StreamResponse | None, status: int, seconds: float) -> None:
        route = route_template(request)
        RESPONSES.labels(f"{status // 100}xx").inc()
        REQUESTS.labels(request.method, route, str(status)).inc()
        LATENCY.labels(request.method, route).observe(seconds)
        if status == 429:
            THROTTLED.inc()
        observe_pool(request.app.get(POOL))

    return await observed(request, handler, done)


# --- computed at scrape time -----------------------------------------------------------------

class EventCounts:
    """Events in the log by type, counted incrementally below the snapshot xmin."""

    def __init__(self) -> None:
        self.bound: int | None = None  # every transaction below it has been counted
        self.by_type: dict[str, int] = {}

    async def refresh(self, conn: asyncpg.Connection) -> None:
        upper, counts = await counts_by_type_below_xmin(conn, self.bound or 0)
        for event_type, n in counts.items():
            self.by_type[event_type] = self.by_type.get(event_type, 0) + n
        if upper is not None:
            self.bound = upper


class ScrapeTimeCollector(Collector):
    """Families computed from the database when /metrics is scraped (set by `refresh`)."""

    def __init__(self) -> None:
        self.families: list[Any] = []

    def collect(self) -> Iterator[Any]:
        yield from self.families


async def database_families(conn: asyncpg.Connection, events: EventCounts) -> list[Any]:
    await events.refresh(conn)
    appended = CounterMetricFamily(
        "scimledger_events", "events committed to the log, by type", labels=["type"]
    )
    for event_type, n in sorted(events.by_type.items()):
        appended.add_metric([event_type], n)
    lag_events = GaugeMetricFamily(
        "scimledger_projection_lag_events", "committed events a follower has not applied", labels=["projection"]
    )
    lag_seconds = GaugeMetricFamily(
        "scimledger_projection_lag_seconds", "age of the oldest event a follower has not applied",
        labels=["projection"],
    )
    state = GaugeMetricFamily(
        "scimledger_projection_state", "1 for the state a follower is in", labels=["projection", "state"]
    )
    rows = await follower.all_checkpoints(conn)
    for row in rows:
        lag = await follower.lag(conn, row.name)
        lag_events.add_metric([row.name], lag.events)
        lag_seconds.add_metric([row.name], lag.seconds)
        for s in (follower.RUNNING, follower.STOPPED, follower.FAILED):
            state.add_metric([row.name, s], 1.0 if row.state == s else 0.0)
    dead = GaugeMetricFamily(
        "scimledger_follower_dead_letters", "events a follower could not apply and stepped over",
        labels=["projection"],
    )
    names = sorted(set(registry.FOLLOWER_NAMES) | {r.name for r in rows})
    for name, n in (await dead_letters.counts(conn, names)).items():
        dead.add_metric([name], n)
    expiring = GaugeMetricFamily(
        "scimledger_oauth_client_secrets_expiring",
        "active OAuth client secrets that expire within the window (rotate them before)", labels=["within"],
    )
    for label, days in SECRET_WARNING_WINDOWS:
        expiring.add_metric([label], await oauth.secrets_expiring(conn, dt.timedelta(days=days)))
    return [appended, lag_events, lag_seconds, state, dead, expiring, *await stream_families(conn)]


EVENT_COUNTS = web.AppKey("metrics_event_counts", EventCounts)
SECRET_WARNING_WINDOWS = (("7d", 7), ("30d", 30))


async def metrics_handler(request: web.Request) -> web.Response:
    if request.config_dict[SETTINGS].metrics_port is not None and not on_metrics_port(request):
        raise web.HTTPNotFound(text="/metrics is served on SCIMLEDGER_METRICS_PORT")
    observe_pool(request.app.get(POOL))
    scraped = ScrapeTimeCollector()
    try:
        async with request.app[POOL].acquire(timeout=5) as conn:
            scraped.families = await database_families(conn, request.app[EVENT_COUNTS])
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        log.warning("metrics.database_unavailable", error=repr(e))  # the process metrics still go out
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    body += generate_latest(_registry_of(scraped))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _registry_of(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def prepare_multiprocess_dir(path: str) -> None:
    """A fresh, empty directory for the workers' metric files (stale files of a previous run
    would be summed in)."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def mark_worker_dead(pid: int) -> None:
    """Drop a stopped worker's live gauges (prometheus_client multiprocess contract)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
