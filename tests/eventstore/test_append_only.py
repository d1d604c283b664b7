"""The log is append-only: triggers refuse UPDATE, DELETE and TRUNCATE (docs/architecture.md)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from eventstore.store import NewEvent, append

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET data = '{\"forged\": true}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ],
)
async def test_changing_the_log_is_refused(pool: asyncpg.Pool, statement: str) -> None:
    async with pool.acquire() as conn:
        await append(conn, TENANT, "user", uuid.uuid4(), 0, [NewEvent("user.created", {"a": 1})], {})
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
        assert await conn.fetchval("SELECT data FROM events") == {"a": 1}
