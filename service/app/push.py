"""Push delivery of SETs (RFC 8935): each push stream's SETs POSTed to its receiver, in log order.

One deliverer is active across all workers and hosts: it holds a session-level advisory lock on
a dedicated connection (the others stand by and retry, like the follower runner). The active one
runs one task per push stream, so a slow or dead receiver holds up its own stream only, never
another stream nor a SCIM write (writes only append to the log; the streams follower turns the
log into `stream_sets` rows; this reads them). A stream's task has one request in flight and at
most BATCH SETs read ahead, and holds no database connection while it waits on the receiver.

At-least-once: a SET's row is deleted only after the receiver answered 2xx (RFC 8935 2.2 names
202 Accepted), in one statement with the stream's counters, for up to SETTLE_EVERY accepted SETs
at a time (and always before a failure is recorded and at the end of each batch). A crash or
SIGKILL between the 202 and that statement sends those SETs again after the restart, with the
same jti (the receiver deduplicates). Nothing is dropped for a transient failure: timeouts, connection errors, 408,
429 and 5xx are retried without end, with exponential backoff and full jitter (capped, and
Retry-After honoured up to the cap), each retry counted in `retried` with the last error.

The receiver's refusals (RFC 8935 2.3, a 400 with {"err", "description"}):
- `invalid_request` (this SET is malformed for the receiver), or a 400 / 413 without a known
  code: the SET is refused for good: kept aside (`stream_sets.error`), counted in `failed`, the
  stream's last error says which jti; the stream goes on. `stream replay` sends it again.
- `invalid_key`, `invalid_issuer`, `invalid_audience`, `authentication_failed`,
  `access_denied`, and 401, 403, 404, 405 or a redirect: the receiver refuses the stream, not
  this SET. Nothing is dropped: the stream enters state `error` (in `stream status` and
  /metrics) and the same SET is tried again every ERROR_RETRY_S until the receiver takes it,
  which puts the stream back to `enabled`.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import asyncpg
import msgspec
import structlog

from projections.followers.runner import TRANSIENT_ERRORS, lock_key
from projections.followers.streams import SETS_CHANNEL
from service.app import streams
from service.app.set_keys import Signer

log = structlog.get_logger("scimledger.push")

LOCK_NAME = "streams.push"
BATCH = 100
SETTLE_EVERY = 50  # accepted SETs settled in one statement (a crash sends at most these again)
SYNC_S = 1.0  # how often the active deliverer looks for new and deleted push streams
IDLE_S = 1.0  # a stream's task looks for SETs this often without a wake-up
TIMEOUT_S = 10.0  # one POST, connect to last byte
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 30.0
ERROR_RETRY_S = 30.0  # a stream the receiver refuses is tried again this often
LOCK_RETRY_S = 2.0
STREAM_ERRORS = frozenset({"invalid_key", "invalid_issuer", "invalid_audience", "authentication_failed", "access_denied"})
MAX_ERROR_BODY = 4096

ACCEPTED, REFUSED, STREAM_REFUSED, TRANSIENT = "accepted", "refused", "stream_refused", "transient"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str
    detail: str
    retry_after: float | None = None


class _ErrorBody(msgspec.Struct):
    err: str = ""
    description: str = ""


_DECODE_ERROR = msgspec.json.Decoder(_ErrorBody).decode


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def classify(status: int, body: bytes, retry_after: str | None) -> Outcome:
    """What a receiver's answer means for the SET (module doc; RFC 8935 2.2 and 2.3)."""
    if 200 <= status < 300:
        return Outcome(ACCEPTED, str(status))
    if status in (408, 429) or status >= 500:
        return Outcome(TRANSIENT, f"HTTP {status}", _retry_after(retry_after))
    if status in (400, 413):
        try:
            error = _DECODE_ERROR(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            error = _ErrorBody()
        detail = f"HTTP {status} {error.err or '(no err code)'}: {error.description}".strip()[:500]
        return Outcome(STREAM_REFUSED if error.err in STREAM_ERRORS else REFUSED, detail)
    return Outcome(STREAM_REFUSED, f"HTTP {status}")


def backoff(attempt: int, retry_after: float | None = None, *, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Exponential backoff with full jitter; a Retry-After is waited for, up to the cap."""
    delay = random.uniform(0, min(cap, base * 2 ** min(attempt, 30)))
    return min(cap, max(delay, retry_after or 0.0))


# the receiver took these SETs (keys in log order): their rows go, the counters and the position
# move, in one statement
_DELIVERED = """WITH d AS (DELETE FROM stream_sets s
                          USING unnest($3::text[], $4::bigint[], $5::smallint[]) AS k(tx, position, kind)
                          WHERE s.tenant_id = $1 AND s.stream_id = $2 AND s.tx = k.tx::xid8
                            AND s.position = k.position AND s.kind = k.kind RETURNING 1)
UPDATE event_streams s SET delivered = delivered + (SELECT count(*) FROM d), delivered_at = now(),
       delivered_tx = $6::text::xid8, delivered_position = $7, state = 'enabled'
WHERE s.tenant_id = $1 AND s.id = $2 RETURNING s.id"""

_FAILED_ATTEMPT = """UPDATE event_streams SET retried = retried + 1, last_error = $3, last_error_at = now(),
       state = CASE WHEN $4 THEN 'error' ELSE state END
WHERE tenant_id = $1 AND id = $2 RETURNING id"""


Connect = Callable[[], Awaitable[asyncpg.Connection]]


class PushDeliverer:
    """Delivers every push stream's SETs for as long as its task lives (cancel it to stop)."""

    def __init__(self, pool: asyncpg.Pool, connect: Connect, signer: Signer, kek: bytes) -> None:
        self._pool = pool
        self._connect = connect
        self._signer = signer
        self._kek = kek
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._wakes: dict[uuid.UUID, asyncio.Event] = {}
        self._notified = asyncio.Event()
        self.active = False

    async def run(self) -> None:
        while True:
            try:
                conn = await self._connect()
            except TRANSIENT_ERRORS as e:
                log.warning("push.connect_failed", error=repr(e))
                await asyncio.sleep(LOCK_RETRY_S)
                continue
            try:
                await self._lead(conn)
            except TRANSIENT_ERRORS as e:
                log.warning("push.connection_lost", error=repr(e))
            except Exception:  # a bug or a schema not migrated yet: say so, retry, never die
                log.exception("push.crashed")
            finally:
                self.active = False
                await self._stop_workers()
                conn.terminate()  # the advisory lock goes with it
            await asyncio.sleep(LOCK_RETRY_S)

    def _wake(self, *_: object) -> None:
        self._notified.set()
        for wake in self._wakes.values():
            wake.set()

    async def _lead(self, conn: asyncpg.Connection) -> None:
        await conn.add_listener(SETS_CHANNEL, self._wake)
        while True:  # stand by until the lock is ours
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(LOCK_NAME)):
                break
            await asyncio.sleep(LOCK_RETRY_S)
        self.active = True
        log.info("push.active")
        connector = aiohttp.TCPConnector(limit=0)  # one request per stream in flight: bounded already
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while True:
                self._notified.clear()
                await self._sync(session)
                try:
                    async with asyncio.timeout(SYNC_S):
                        await self._notified.wait()
                except TimeoutError:
                    await conn.fetchval("SELECT 1")  # the lock's connection is still there

    async def _sync(self, session: aiohttp.ClientSession) -> None:
        """One task per push stream: start those of new streams, forget those that ended."""
        records = await self._pool.fetch("SELECT tenant_id, id FROM event_streams WHERE delivery = 'push'")
        for r in records:
            task = self._tasks.get(r["id"])
            if task is None or task.done():
                wake = self._wakes[r["id"]] = asyncio.Event()
                self._tasks[r["id"]] = asyncio.create_task(
                    self._deliver_stream(session, r["tenant_id"], r["id"], wake), name=f"push-{r['id']}"
                )
        for stream_id in [s for s, t in self._tasks.items() if t.done()]:
            del self._tasks[stream_id]
            self._wakes.pop(stream_id, None)

    async def _stop_workers(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._wakes.clear()

    async def _deliver_stream(
        self, session: aiohttp.ClientSession, tenant_id: uuid.UUID, stream_id: uuid.UUID, wake: asyncio.Event
    ) -> None:
        """The stream's SETs in log order, one at a time; returns when the stream is deleted."""
        try:
            while True:
                wake.clear()
                async with self._pool.acquire() as conn:
                    await self._signer.refresh(conn)
                    stream = await conn.fetchrow(
                        "SELECT endpoint, push_headers, audience FROM event_streams WHERE tenant_id = $1 AND id = $2",
                        tenant_id, stream_id,
                    )
                    if stream is None:
                        return
                    batch = await conn.fetch(
                        """SELECT tx::text AS tx, position, kind, jti, claims FROM stream_sets
                           WHERE tenant_id = $1 AND stream_id = $2 AND error IS NULL
                           ORDER BY tx, position, kind LIMIT $3""",
                        tenant_id, stream_id, BATCH,
                    )
                if not batch:
                    try:
                        async with asyncio.timeout(IDLE_S):
                            await wake.wait()
                    except TimeoutError:
                        pass
                    continue
                headers = {name: value for name, value in streams.open_headers(self._kek, stream_id, stream["push_headers"])}
                headers["Content-Type"] = "application/secevent+jwt"
                headers["Accept"] = "application/json"
                accepted: list[asyncpg.Record] = []
                for row in batch:
                    if not await self._deliver(session, tenant_id, stream_id, stream["endpoint"], headers,
                                               stream["audience"], row, accepted):
                        return
                if not await self._settle(tenant_id, stream_id, accepted):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("push.stream_crashed", stream=str(stream_id))  # _sync starts it again
            await asyncio.sleep(LOCK_RETRY_S)

    async def _deliver(
        self, session: aiohttp.ClientSession, tenant_id: uuid.UUID, stream_id: uuid.UUID, endpoint: str,
        headers: dict[str, str], audience: str, row: asyncpg.Record, accepted: list[asyncpg.Record],
    ) -> bool:
        """One SET until the receiver takes it (added to `accepted`, settled every SETTLE_EVERY)
        or refuses it for good; False: the stream is gone."""
        attempt = 0
        while True:
            token = self._signer.sign(row["claims"], audience=audience, jti=row["jti"])
            outcome = await self._post(session, endpoint, headers, token)
            if outcome.kind == ACCEPTED:
                accepted.append(row)
                return len(accepted) < SETTLE_EVERY or await self._settle(tenant_id, stream_id, accepted)
            if not await self._settle(tenant_id, stream_id, accepted):  # what went before, first
                return False
            async with self._pool.acquire() as conn:
                if outcome.kind == REFUSED:
                    await conn.execute(
                        """UPDATE stream_sets SET error = $6 WHERE tenant_id = $1 AND stream_id = $2
                           AND tx = $3::text::xid8 AND position = $4 AND kind = $5""",
                        tenant_id, stream_id, row["tx"], row["position"], row["kind"], outcome.detail,
                    )
                    await streams.record_refusal(conn, tenant_id, stream_id, f"SET {row['jti']} refused: {outcome.detail}")
                    log.warning("push.set_refused", stream=str(stream_id), jti=row["jti"], detail=outcome.detail)
                    return True
                exists = await conn.fetchval(_FAILED_ATTEMPT, tenant_id, stream_id, outcome.detail,
                                             outcome.kind == STREAM_REFUSED)
            if exists is None:
                return False
            attempt += 1
            if outcome.kind == STREAM_REFUSED:
                log.warning("push.stream_refused", stream=str(stream_id), detail=outcome.detail)
                delay = ERROR_RETRY_S * random.uniform(0.5, 1.0)
            else:
                delay = backoff(attempt, outcome.retry_after)
            await asyncio.sleep(delay)

    async def _settle(self, tenant_id: uuid.UUID, stream_id: uuid.UUID, accepted: list[asyncpg.Record]) -> bool:
        """Delete the accepted SETs' rows (the checkpoint moves); False: the stream is gone."""
        if not accepted:
            return True
        last = accepted[-1]
        async with self._pool.acquire() as conn:
            found = await conn.fetchval(
                _DELIVERED, tenant_id, stream_id, [r["tx"] for r in accepted], [r["position"] for r in accepted],
                [r["kind"] for r in accepted], last["tx"], last["position"],
            )
        accepted.clear()
        return found is not None

    async def _post(self, session: aiohttp.ClientSession, endpoint: str, headers: dict[str, str], token: str) -> Outcome:
        try:
            async with session.post(endpoint, data=token.encode(), headers=headers, allow_redirects=False) as r:
                body = await r.content.read(MAX_ERROR_BODY)
                return classify(r.status, body, r.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return Outcome(TRANSIENT, f"{type(e).__name__}: {e}"[:300])

