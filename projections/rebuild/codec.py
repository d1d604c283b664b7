"""COPY needs jsonb in the binary format: a codec for the duration of a bulk write."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from eventstore.codecs import init_connection

_encode_json = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder().decode


def _jsonb_binary_encode(value: Any) -> bytes:
    return b"\x01" + (value if isinstance(value, bytes) else _encode_json(value))


def _jsonb_binary_decode(data: bytes) -> Any:
    return _decode_json(data[1:])  # version byte 1, then the JSON text


class BinaryJsonb:
    """On `conn`, for the duration: jsonb in the binary wire format (version byte + JSON text),
    which COPY ... FORMAT binary (copy_records_to_table) requires; the pool's codecs after."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def __aenter__(self) -> asyncpg.Connection:
        await self.conn.set_type_codec(
            "jsonb", encoder=_jsonb_binary_encode, decoder=_jsonb_binary_decode,
            schema="pg_catalog", format="binary",
        )
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.reset_type_codec("jsonb", schema="pg_catalog")
        await init_connection(self.conn)
