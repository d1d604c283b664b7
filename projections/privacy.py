"""Sealing a subject's personal data before append, opening it after read (docs/privacy.md).

The vocabulary says what is personal (projections/domain/personal.py); the event store holds the
keys and the ciphers (eventstore/shredding.py). Here the two meet: `seal_events` turns the
payloads of a write into their stored form (the part that may stay in clear, plus one `sealed`
token: the whole payload encrypted, bound to the event's identity), and `open_records` /
`open_data` give readers the payload as written, or, once the subject's key is destroyed, the
payload of an erased subject (`personal.erased`: `erased: true`, no personal data).

Who opens: the followers that read payloads (the runner, except the seal chain, which hashes
the stored bytes), the audit queries and exports, as-of, the rebuilds. Nothing caches a data key.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventstore import shredding
from eventstore.store import NewEvent, RecordedEvent
from projections.domain import personal
from projections.domain.events import AnyEvent, decode_event_json

SEALED = "sealed"

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class TamperedPayload(Exception):
    """A sealed payload that does not open under its stream's key and its own identity: moved
    from another event, or altered."""


def seal_events(
    events: Sequence[NewEvent], tenant_id: uuid.UUID, stream_id: uuid.UUID, first_version: int, key: bytes
) -> list[NewEvent]:
    """The stored form of a write's payloads, versions from `first_version`."""
    out = []
    for version, event in enumerate(events, start=first_version):
        data = dict(event.data)
        clear, secret = personal.split(data)
        if secret is None:
            out.append(event)
            continue
        aad = shredding.associated_data(tenant_id, stream_id, version, event.type)
        out.append(NewEvent(event.type, {**clear, SEALED: shredding.seal(_encode(data), key, aad)}))
    return out


def is_sealed(data: dict[str, Any]) -> bool:
    return SEALED in data


def holds_clear_personal(data: dict[str, Any]) -> bool:
    """A payload written before sealing whose personal part is in clear (`scimledger log seal`
    converts it; a destroyed key cannot erase it)."""
    return not is_sealed(data) and personal.split(data)[1] is not None


def open_data(
    data: dict[str, Any], tenant_id: uuid.UUID, stream_id: uuid.UUID, version: int, keys: shredding.Keys
) -> dict[str, Any]:
    """The payload as written; the erased form when the stream's key is destroyed (or absent)."""
    token = data.get(SEALED)
    if token is None:
        return data
    key = keys.get((tenant_id, stream_id))
    if key is None:
        return personal.erased({k: v for k, v in data.items() if k != SEALED})
    aad = shredding.associated_data(tenant_id, stream_id, version, str(data.get("type")))
    opened: dict[str, Any] = _decode(_open(str(token), key, aad, stream_id, version))
    return opened


def _open(token: str, key: bytes | AESGCM, aad: bytes, stream_id: uuid.UUID, version: int) -> bytes:
    try:
        return shredding.open_sealed(token, key, aad)
    except (InvalidTag, ValueError) as e:
        raise TamperedPayload(f"event {version} of stream {stream_id} does not open under its key") from e


async def open_records(conn: asyncpg.Connection, records: list[RecordedEvent]) -> list[RecordedEvent]:
    """`records` with their payloads opened (one statement for the keys, none if nothing is sealed)."""
    wanted = {(r.tenant_id, r.stream_id) for r in records if is_sealed(r.data)}
    if not wanted:
        return records
    keys = await shredding.keys_for(conn, wanted)
    return [
        dataclasses.replace(r, data=open_data(r.data, r.tenant_id, r.stream_id, r.version, keys))
        if is_sealed(r.data) else r
        for r in records
    ]


async def open_rows(
    conn: asyncpg.Connection, rows: Sequence[asyncpg.Record], *, tenant_id: uuid.UUID,
    stream: str = "stream_id", version: str = "version", data: str = "data",
) -> list[dict[str, Any] | None]:
    """The opened payloads of rows that carry one tenant's events (a follower table joined with
    the log): None where the row has no event."""
    wanted = {(tenant_id, r[stream]) for r in rows if isinstance(r[data], dict) and is_sealed(r[data])}
    keys = await shredding.keys_for(conn, wanted) if wanted else {}
    return [
        None if r[data] is None else open_data(r[data], tenant_id, r[stream], r[version], keys)
        for r in rows
    ]


_MARK = f'"{SEALED}"'
# PostgreSQL's text form of jsonb: `"key": value`, one space after the colon
_TOKEN_MARK = f'"{SEALED}": "{shredding.TOKEN_PREFIX}'
_TYPE_MARK = '"type": "'


class StreamOpener:
    """Opens the stored payloads of ONE stream from their JSON text (a rebuild's fold, which
    decodes every event): the key looked up and its cipher made once per stream, the token and
    the type found in PostgreSQL's text form, one typed decode of the decrypted payload. Any
    other case (erased, another spelling) goes through the dict (`open_data`)."""

    __slots__ = ("cipher", "key", "prefix", "stream_id", "tenant_id")

    def __init__(self, tenant_id: uuid.UUID, stream_id: uuid.UUID, keys: shredding.Keys) -> None:
        self.tenant_id, self.stream_id = tenant_id, stream_id
        self.key = keys.get((tenant_id, stream_id))
        self.cipher = AESGCM(self.key) if self.key is not None else None
        self.prefix = shredding.stream_prefix(tenant_id, stream_id)

    def decode(self, raw: str, version: int, *, only: frozenset[str] | None = None) -> AnyEvent:
        """The event of `raw`; `only`: open only payloads of these types (the others decode from
        their clear part, with "" for what stayed sealed)."""
        start = raw.find(_TOKEN_MARK)
        if start >= 0 and only is not None and _type_of(raw) not in only:
            return decode_event_json(raw)
        if start < 0 or self.cipher is None:
            if _MARK not in raw:
                return decode_event_json(raw)
            keys: shredding.Keys = {(self.tenant_id, self.stream_id): self.key}
            return decode_event_json(_encode(open_data(_decode(raw), self.tenant_id, self.stream_id, version, keys)))
        start += len(_TOKEN_MARK) - len(shredding.TOKEN_PREFIX)
        token = raw[start:raw.index('"', start)]  # base64: no quote, no escape inside
        aad = shredding.event_data(self.prefix, version, _type_of(raw))
        return decode_event_json(_open(token, self.cipher, aad, self.stream_id, version))


def _type_of(raw: str) -> str:
    """The `type` of a stored payload's JSON text (a string of the vocabulary: no escapes)."""
    start = raw.index(_TYPE_MARK) + len(_TYPE_MARK)
    return raw[start:raw.index('"', start)]
