"""The app's event streams over HTTP (docs/events.md): the RFC 8936 poll endpoint, the JWKS the
SETs verify against, and the background work of each worker.

- `POST /events/v1/streams/{id}/poll` (RFC 8936 2.4): a token or OAuth client of scope `events`
  of the stream's tenant (another tenant's stream, or a push stream, is a 404). The body:
  `ack`, `setErrs`, `maxEvents` (0 to MAX_EVENTS, default DEFAULT_EVENTS), `returnImmediately`.
  Without returnImmediately an empty answer waits up to LONG_POLL_S for a SET (at most
  LONG_POLLS_PER_TENANT waiting per tenant and worker, so long polls cannot take a tenant's
  share of the worker from its IdP's writes; beyond that a poll answers at once). It waits
  holding no database connection (the authentication middleware lets go of it for this path).
  A body the endpoint cannot use is a 400 in the RFC 8936 2.6 form {"err", "description"}.
- `GET /.well-known/jwks.json`: the SET signing keys (service/app/set_keys.py), public.
- `streams_ctx`: the signing key made at first start, the streams follower's runner, the
  push deliverer (service/app/push.py), and the LISTEN that wakes long polls.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import structlog
from aiohttp import web
from msgspec import UNSET, UnsetType
from prometheus_client.core import GaugeMetricFamily

from projections.followers.runner import FollowerRunner
from projections.followers.streams import SETS_CHANNEL, StreamsProjection
from service.app import set_keys, streams
from service.app.push import PushDeliverer
from service.http.context import connection
from service.http.followers import follower_connector, stop_tasks
from service.http.keys import DSN, POOL, PRINCIPAL, SETTINGS
from service.runtime.config import Settings
from service.runtime.database import unavailable
from service.runtime.keys import keys_dir

log = structlog.get_logger("scimledger.events")

EVENTS_PREFIX = "/events/v1"
POLL_PATH = EVENTS_PREFIX + "/streams/{id}/poll"
JWKS_PATH = "/.well-known/jwks.json"
DEFAULT_EVENTS, MAX_EVENTS = 100, 1000
MAX_DISPOSITIONS = 1000  # ack and setErrs entries in one poll
LONG_POLL_S = 25.0  # below the 30 s idle timeout of common proxies
LONG_POLLS_PER_TENANT = 2
WAKE_BACKSTOP_S = 1.0


class SetErr(msgspec.Struct):
    err: str
    description: str = ""


class PollRequest(msgspec.Struct, rename={"set_errs": "setErrs", "max_events": "maxEvents",
                                          "return_immediately": "returnImmediately"}):
    ack: list[str] = []
    set_errs: dict[str, SetErr] = {}
    max_events: int | UnsetType = UNSET
    return_immediately: bool = False


DECODE_POLL = msgspec.json.Decoder(PollRequest).decode
ENCODE = msgspec.json.Encoder().encode


class PollRefused(Exception):
    """A poll body the endpoint cannot use: RFC 8936 2.6 `invalid_request`."""


def _check(request: PollRequest) -> int:
    """maxEvents to answer; PollRefused for anything out of bounds."""
    if len(request.ack) > MAX_DISPOSITIONS or len(request.set_errs) > MAX_DISPOSITIONS:
        raise PollRefused(f"at most {MAX_DISPOSITIONS} entries in ack and in setErrs")
    for jti in (*request.ack, *request.set_errs):
        if not jti or len(jti) > 64:
            raise PollRefused("a jti is 1 to 64 characters")
    for error in request.set_errs.values():
        if not error.err or len(error.err) > 64 or len(error.description) > 1000:
            raise PollRefused("a setErrs entry is {\"err\": 1 to 64 characters, \"description\": up to 1,000}")
    events = DEFAULT_EVENTS if isinstance(request.max_events, UnsetType) else request.max_events
    if not 0 <= events <= MAX_EVENTS:
        raise PollRefused(f"maxEvents must be 0 to {MAX_EVENTS}")
    return events


def refused(description: str) -> web.Response:
    return web.json_response({"err": "invalid_request", "description": description}, status=400)


class SetsWake:
    """Wakes the long polls of this worker when SETs are enqueued (a NOTIFY on SETS_CHANNEL,
    received on a connection of its own); WAKE_BACKSTOP_S is the backstop."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.long_polls: dict[uuid.UUID, int] = {}

    def notify(self, *_: object) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, at_most: float) -> None:
        try:
            async with asyncio.timeout(min(at_most, WAKE_BACKSTOP_S)):
                await self._event.wait()
        except TimeoutError:
            pass

    async def listen(self, connect: Any) -> None:
        while True:
            try:
                conn = await connect()
                try:
                    await conn.add_listener(SETS_CHANNEL, self.notify)
                    while True:
                        await asyncio.sleep(30)
                        await conn.fetchval("SELECT 1")
                finally:
                    conn.terminate()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the backstop keeps polls going meanwhile
                log.warning("events.listen_failed", error=repr(e))
                await asyncio.sleep(2)


SIGNER = web.AppKey("set_signer", set_keys.Signer)
SETS_WAKE = web.AppKey("sets_wake", SetsWake)
DELIVERER = web.AppKey("push_deliverer", PushDeliverer)


def issuer(settings: Settings) -> str:
    """The `iss` of every SET: the public base URL of the service."""
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def _stream_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise streams.StreamNotFound(f"no stream {request.match_info['id'][:64]!r}") from None


async def poll(request: web.Request) -> web.Response:
    """RFC 8936 2.4 (module doc)."""
    principal = request[PRINCIPAL]
    stream_id = _stream_id(request)
    try:
        body = DECODE_POLL(await request.read() or b"{}")
        max_events = _check(body)
    except (msgspec.DecodeError, msgspec.ValidationError, PollRefused) as e:
        return refused(str(e)[:300])
    errors = {jti: (e.err, e.description) for jti, e in body.set_errs.items()}
    wake, signer = request.app[SETS_WAKE], request.app[SIGNER]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LONG_POLL_S
    waiting = False
    try:
        while True:
            async with connection(request) as conn:
                polled = await streams.poll(conn, principal.tenant_id, stream_id, ack=body.ack, errors=errors,
                                            max_events=max_events)
                if polled.sets:
                    await signer.refresh(conn)
            body.ack, errors = [], {}  # settled once
            remaining = deadline - loop.time()
            if polled.sets or body.return_immediately or max_events == 0 or remaining <= 0:
                break
            if not waiting:
                if wake.long_polls.get(principal.tenant_id, 0) >= LONG_POLLS_PER_TENANT:
                    break
                wake.long_polls[principal.tenant_id] = wake.long_polls.get(principal.tenant_id, 0) + 1
                waiting = True
            await wake.wait(remaining)
    finally:
        if waiting:
            wake.long_polls[principal.tenant_id] -= 1
    sets = {s.jti: signer.sign(s.claims, audience=polled.audience, jti=s.jti) for s in polled.sets}
    return web.Response(body=ENCODE({"sets": sets, "moreAvailable": polled.more_available}),
                        content_type="application/json")


async def jwks(request: web.Request) -> web.Response:
    """The published SET signing keys (RFC 7517 5)."""
    async with connection(request) as conn:
        keys = await set_keys.published_keys(conn)
    return web.Response(body=ENCODE(keys), content_type="application/json",
                        headers={"Cache-Control": "public, max-age=60"})


async def streams_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the signer (its key made at first start), and unless followers are off, the
    streams follower and the push deliverer; always the long polls' wake-up."""
    settings = app[SETTINGS]
    kek = set_keys.key_encryption_key(keys_dir(settings))
    signer = app[SIGNER] = set_keys.Signer(kek, issuer(settings))
    try:
        async with app[POOL].acquire() as conn:
            await set_keys.ensure_signing_key(conn, kek)
    except Exception as e:
        if not unavailable(e):
            raise
        log.warning("events.signing_key_deferred", error_type=type(e).__name__)  # made when first needed
    wake = app[SETS_WAKE] = SetsWake()
    tasks = [asyncio.create_task(wake.listen(follower_connector(app[DSN], "sets-wake")), name="sets-wake")]
    if settings.run_followers:
        runner = FollowerRunner(StreamsProjection(), follower_connector(app[DSN], "streams"))
        deliverer = app[DELIVERER] = PushDeliverer(app[POOL], follower_connector(app[DSN], "push"), signer, kek)
        tasks += [asyncio.create_task(runner.run(), name="follower-streams"),
                  asyncio.create_task(deliverer.run(), name="push-deliverer")]
    yield
    await stop_tasks(tasks)


async def stream_families(conn: asyncpg.Connection) -> list[GaugeMetricFamily]:
    """Per stream: SETs pending, delivered, retried and refused, and 1 while in error."""
    labels = ["tenant", "stream", "delivery"]
    pending = GaugeMetricFamily("scimledger_stream_pending_sets", "SETs waiting for the receiver", labels=labels)
    delivered = GaugeMetricFamily("scimledger_stream_delivered_sets", "SETs the receiver accepted", labels=labels)
    retried = GaugeMetricFamily("scimledger_stream_retried_attempts", "push attempts that failed and were retried", labels=labels)
    failed = GaugeMetricFamily("scimledger_stream_refused_sets", "SETs the receiver refused for good", labels=labels)
    error = GaugeMetricFamily("scimledger_stream_error", "1 while the receiver refuses the stream", labels=labels)
    records = await conn.fetch(
        """SELECT s.tenant_id, s.id, s.delivery, s.state, s.delivered, s.retried, s.failed,
                  (SELECT count(*) FROM (SELECT 1 FROM stream_sets p WHERE p.tenant_id = s.tenant_id
                     AND p.stream_id = s.id AND p.error IS NULL LIMIT $1) c) AS pending
           FROM event_streams s ORDER BY s.tenant_id, s.id""",
        streams.LAG_CAP,
    )
    for r in records:
        key = [str(r["tenant_id"]), str(r["id"]), r["delivery"]]
        pending.add_metric(key, r["pending"])
        delivered.add_metric(key, r["delivered"])
        retried.add_metric(key, r["retried"])
        failed.add_metric(key, r["failed"])
        error.add_metric(key, 1.0 if r["state"] == "error" else 0.0)
    return [pending, delivered, retried, failed, error]
