"""Security-event streams, the app's side of provisioning (docs/events.md): create, list, status,
delete, replay, and the poll of RFC 8936.

A stream belongs to one tenant and names a receiver (a push endpoint, RFC 8935, or a poll
client, RFC 8936), the events it wants (`prov`: RFC 9967 SCIM events; `caep`: CAEP
session-revoked), their form (`full` or `notice`) and the audience its SETs carry. It starts at
the head of the log: it gets what happens after it is created (`replay` sends older events).
The streams follower (projections/followers/streams.py) writes each stream's SETs into
`stream_sets`; push delivery (service/app/push.py) or a poll takes them out.

Push header values ("Authorization: Bearer ...") are credentials of the receiver: stored sealed
(service/app/set_keys.py), shown masked, never logged.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec

from eventstore.stats import head_checkpoint
from eventstore.store import BEGINNING, read_tenant_since
from projections.domain import security_events as sets
from projections.domain.errors import StreamNotFound
from projections.followers import runner as follower
from projections.followers.streams import NAME as FOLLOWER
from projections.followers.streams import StreamTarget, enqueue
from service.app.set_keys import seal, unseal

PUSH, POLL = "push", "poll"
MAX_HEADERS = 8
MAX_URL = 2048
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")  # an RFC 9110 token
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection"})
LAG_CAP = 10_000  # status counts pending SETs up to this
REPLAY_PAGE = 500


def check_endpoint(raw: str) -> str:
    """A push endpoint: an absolute http(s) URL without credentials. Raises ValueError."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(raw) > MAX_URL:
        raise ValueError("the push endpoint must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("put credentials in --push-header, not in the URL")
    return raw


def parse_header(raw: str) -> tuple[str, str]:
    """`Name: value` as (name, value). Raises ValueError."""
    name, colon, value = raw.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not HEADER_NAME.fullmatch(name) or name.lower() in RESERVED_HEADERS:
        raise ValueError(f"a push header is `Name: value` with a token name (not {', '.join(sorted(RESERVED_HEADERS))})")
    if not value or len(value) > 4096 or not value.isprintable():
        raise ValueError("a push header value must be 1 to 4,096 printable characters")
    return name, value


def check_events(families: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(f.strip() for f in families if f.strip()))
    if not chosen or any(f not in sets.EVENT_FAMILIES for f in chosen):
        raise ValueError(f"events are a comma-separated list of {', '.join(sets.EVENT_FAMILIES)}")
    return chosen


_HEADERS = msgspec.json.Encoder()
_DECODE_HEADERS = msgspec.json.Decoder(list[tuple[str, str]])


def _context(stream_id: uuid.UUID) -> bytes:
    return b"push-headers:" + str(stream_id).encode()


def open_headers(kek: bytes, stream_id: uuid.UUID, sealed: bytes | None) -> list[tuple[str, str]]:
    """The push headers of a stream, unsealed (for delivery only)."""
    return [] if sealed is None else _DECODE_HEADERS.decode(unseal(kek, sealed, _context(stream_id)))


@dataclass(frozen=True, slots=True)
class Stream:
    """A stream as the operator sees it: never a header value."""

    tenant_id: uuid.UUID
    id: uuid.UUID
    delivery: str
    endpoint: str | None
    header_names: tuple[str, ...]
    events: tuple[str, ...]
    form: str
    audience: str
    state: str
    delivered: int
    retried: int
    failed: int
    last_error: str | None
    last_error_at: dt.datetime | None
    delivered_position: int | None
    delivered_at: dt.datetime | None
    created_at: dt.datetime

    @property
    def masked_headers(self) -> list[str]:
        return [f"{name}: ****" for name in self.header_names]


_STREAM_COLUMNS = """tenant_id, id, delivery, endpoint, header_names, events, format, audience, state,
delivered, retried, failed, last_error, last_error_at, delivered_position, delivered_at, created_at"""


def _stream(r: asyncpg.Record) -> Stream:
    return Stream(
        r["tenant_id"], r["id"], r["delivery"], r["endpoint"], tuple(r["header_names"]), tuple(r["events"]),
        r["format"], r["audience"], r["state"], r["delivered"], r["retried"], r["failed"], r["last_error"],
        r["last_error_at"], r["delivered_position"], r["delivered_at"], r["created_at"],
    )


async def create_stream(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, *, kek: bytes, push: str | None = None,
    headers: Sequence[tuple[str, str]] = (), events: Sequence[str] = (sets.PROV,), form: str = sets.NOTICE,
    audience: str | None = None,
) -> uuid.UUID:
    """A new stream of the tenant, starting at the head of the log: push to `push`, or poll."""
    if form not in sets.FORMATS:
        raise ValueError(f"format must be one of {', '.join(sets.FORMATS)}")
    families = check_events(events)
    if push is not None:
        check_endpoint(push)
    if len(headers) > MAX_HEADERS or (headers and push is None):
        raise ValueError(f"up to {MAX_HEADERS} push headers, for a push stream only")
    stream_id = uuid.uuid4()
    sealed = seal(kek, _HEADERS.encode(list(headers)), _context(stream_id)) if headers else None
    start = await head_checkpoint(conn)
    await conn.execute(
        """INSERT INTO event_streams (tenant_id, id, delivery, endpoint, push_headers, header_names, events,
                                      format, audience, start_tx, start_position)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::xid8, $11)""",
        tenant_id, stream_id, POLL if push is None else PUSH, push, sealed, [n for n, _ in headers],
        list(families), form, audience or push or f"urn:scimledger:stream:{stream_id}", str(start[0]), start[1],
    )
    return stream_id


async def list_streams(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> list[Stream]:
    records = await conn.fetch(
        f"SELECT {_STREAM_COLUMNS} FROM event_streams WHERE tenant_id = $1 ORDER BY created_at", tenant_id
    )
    return [_stream(r) for r in records]


async def has_streams(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM event_streams WHERE tenant_id = $1)", tenant_id))


async def get_stream(conn: asyncpg.Connection, stream_id: uuid.UUID, tenant_id: uuid.UUID | None = None) -> Stream:
    """A stream by id (the operator's), or only if it is `tenant_id`'s (a receiver's)."""
    record = await conn.fetchrow(
        f"SELECT {_STREAM_COLUMNS} FROM event_streams WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)",
        stream_id, tenant_id,
    )
    if record is None:
        raise StreamNotFound(f"no stream {stream_id}")
    return _stream(record)


@dataclass(frozen=True, slots=True)
class StreamStatus:
    stream: Stream
    pending: int  # SETs waiting for the receiver (counted up to LAG_CAP)
    refused: int  # SETs the receiver refused, kept (replay sends them again)
    lag_seconds: float  # age of the oldest SET waiting, or of the follower's oldest event
    follower_lag: int  # events of the log the streams follower has not read yet
    follower_state: str


async def stream_status(conn: asyncpg.Connection, stream_id: uuid.UUID) -> StreamStatus:
    stream = await get_stream(conn, stream_id)
    record = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE error IS NULL) AS pending, count(*) FILTER (WHERE error IS NOT NULL) AS refused,
                  coalesce(extract(epoch FROM now() - min(recorded_at) FILTER (WHERE error IS NULL)), 0)::float8 AS age
           FROM (SELECT error, recorded_at FROM stream_sets WHERE tenant_id = $1 AND stream_id = $2 LIMIT $3) s""",
        stream.tenant_id, stream.id, LAG_CAP,
    )
    assert record is not None
    row = await follower.load_checkpoint(conn, FOLLOWER)
    lag = await follower.lag(conn, FOLLOWER)
    return StreamStatus(stream, int(record["pending"]), int(record["refused"]),
                        max(float(record["age"]), lag.seconds), lag.events, row.state if row else follower.RUNNING)


async def delete_stream(conn: asyncpg.Connection, stream_id: uuid.UUID) -> None:
    """The stream and every SET it still had (its receiver gets nothing more)."""
    status = await conn.execute("DELETE FROM event_streams WHERE id = $1", stream_id)
    if status != "DELETE 1":
        raise StreamNotFound(f"no stream {stream_id}")


async def replay_stream(conn: asyncpg.Connection, stream_id: uuid.UUID, since: dt.datetime) -> int:
    """Send the stream again every event of its tenant recorded at or after `since` (before the
    stream was created too), in log order before what is still pending after them; a SET still
    pending stays as it is, one refused is sent again. Up to the streams follower's checkpoint:
    what lies beyond it the follower enqueues anyway. Returns the SETs enqueued."""
    stream = await get_stream(conn, stream_id)
    target = {stream.tenant_id: [StreamTarget(stream.tenant_id, stream.id, frozenset(stream.events), stream.form, BEGINNING)]}
    row = await follower.ensure_checkpoint(conn, FOLLOWER)
    after, total = BEGINNING, 0
    while True:
        page = await read_tenant_since(conn, stream.tenant_id, since, after=after, upto=row.checkpoint, limit=REPLAY_PAGE)
        if not page:
            return total
        async with conn.transaction():
            total += await enqueue(conn, page, target, again=True)
        after = page[-1].checkpoint


# --- poll (RFC 8936) ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PendingSet:
    jti: str
    claims: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Polled:
    sets: list[PendingSet] = field(default_factory=list)
    more_available: bool = False
    audience: str = ""


async def poll(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, stream_id: uuid.UUID, *, ack: Sequence[str] = (),
    errors: dict[str, tuple[str, str]] | None = None, max_events: int,
) -> Polled:
    """RFC 8936 2.4: settle the acknowledged SETs (delivered, removed) and those reported in
    `errors` (jti -> (err, description): refused, kept aside), then answer the oldest
    `max_events` still unacknowledged, in log order. One transaction. Another tenant's stream,
    or a push stream, is StreamNotFound."""
    async with conn.transaction():
        audience = await conn.fetchval(
            "SELECT audience FROM event_streams WHERE tenant_id = $1 AND id = $2 AND delivery = 'poll' FOR NO KEY UPDATE",
            tenant_id, stream_id,
        )
        if audience is None:
            raise StreamNotFound(f"no stream {stream_id}")
        if ack:
            await conn.execute(
                """WITH d AS (DELETE FROM stream_sets WHERE tenant_id = $1 AND stream_id = $2 AND jti = any($3::text[])
                              RETURNING tx, position)
                   UPDATE event_streams s SET delivered = delivered + m.n, delivered_at = now(),
                          delivered_tx = coalesce(m.tx, s.delivered_tx), delivered_position = coalesce(m.position, s.delivered_position)
                   FROM (SELECT count(*) AS n, max(tx) AS tx, max(position) AS position FROM d) m
                   WHERE s.tenant_id = $1 AND s.id = $2 AND m.n > 0""",
                tenant_id, stream_id, list(ack),
            )
        for jti, (err, description) in (errors or {}).items():
            message = f"{err}: {description}"[:500]
            status = await conn.execute(
                "UPDATE stream_sets SET error = $4 WHERE tenant_id = $1 AND stream_id = $2 AND jti = $3 AND error IS NULL",
                tenant_id, stream_id, jti, message,
            )
            if status != "UPDATE 0":
                await record_refusal(conn, tenant_id, stream_id, f"SET {jti} refused: {message}")
        if max_events <= 0:
            return Polled(audience=audience)
        records = await conn.fetch(
            """SELECT jti, claims FROM stream_sets WHERE tenant_id = $1 AND stream_id = $2 AND error IS NULL
               ORDER BY tx, position, kind LIMIT $3""",
            tenant_id, stream_id, max_events + 1,
        )
    found = [PendingSet(r["jti"], r["claims"]) for r in records]
    return Polled(found[:max_events], len(found) > max_events, audience)


async def record_refusal(conn: asyncpg.Connection, tenant_id: uuid.UUID, stream_id: uuid.UUID, message: str) -> None:
    """A SET the receiver refused for good: counted, and the stream's last error."""
    await conn.execute(
        """UPDATE event_streams SET failed = failed + 1, last_error = $3, last_error_at = now()
           WHERE tenant_id = $1 AND id = $2""",
        tenant_id, stream_id, message[:1000],
    )
