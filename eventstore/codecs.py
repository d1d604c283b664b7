"""Connection set-up shared by every pool: jsonb through msgspec, in both directions."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def _encode_jsonb(value: Any) -> str:
    if isinstance(value, bytes):  # already encoded JSON (hot paths encode once, up front)
        return value.decode()
    return _encode(value).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("jsonb", "json"):
        await conn.set_type_codec(
            typename, encoder=_encode_jsonb, decoder=_decode, schema="pg_catalog", format="text"
        )
