"""The database connection of a request.

An authenticated request takes ONE pooled connection in the authentication middleware and keeps it
to the end: the token lookup, the rate-limit lease and the handler's statements share it. That is
one pool round trip per request instead of two or three, and no request can hold one connection
while waiting for another (which, with every connection taken, would deadlock the pool).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from aiohttp import web

from service.http.keys import CONNECTION, POOL


@asynccontextmanager
async def connection(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    """The request's connection; routes outside authentication get one from the pool."""
    conn = request.get(CONNECTION)
    if conn is not None:
        yield conn
        return
    async with request.app[POOL].acquire() as pooled:
        yield pooled
