"""A per-worker cache of the principals bearer tokens stand for, invalidated by LISTEN/NOTIFY.

Without it every request costs a token lookup, one of the two round trips of a read (issue 18).
With it a token seen in the last TTL_S seconds is answered from memory, and "a revoked token is
refused at once" still holds, to within the delivery of a notification (milliseconds):

- migration 0070 makes every change that can alter what a token stands for (a token revoked,
  rotated, re-scoped or deleted; a tenant disabled, renamed, re-limited or deleted) send NOTIFY on
  CHANNEL, delivered at its commit; the listener empties the cache on each one;
- the cache answers only while its listener is connected and listening: from a lost connection
  (seen when it closes, or by a ping every PING_INTERVAL_S for one that hangs) until LISTEN runs
  again every lookup goes to the database, as without it;
- a lookup that was in flight when a notification arrived is not stored (the generation
  counter), so a principal read before a revocation's commit never outlives it;
- an entry lives at most TTL_S, and never past the token's own expiry (read by the lookup); OAuth
  access tokens (short-lived, service/app/oauth.py) and unknown secrets are never cached.

The last-used time (tokens.last_used_at, kept to the minute by the lookup) is then updated on
the misses, at least once per TTL_S while a token is in use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import structlog

from service.app import oauth, tenancy
from service.app.principal import Principal, hash_secret

CHANNEL = "scimledger_credentials"
TTL_S = 30.0
MAX_ENTRIES = 10_000
PING_INTERVAL_S = 5.0  # a listener that does not answer a ping within this is taken as lost
RECONNECT_S = 1.0
log = structlog.get_logger("scimledger.token_cache")


@dataclass
class TokenCache:
    entries: dict[bytes, tuple[Principal, float]] = field(default_factory=dict)  # digest -> (principal, deadline)
    generation: int = 0  # bumped by every invalidation
    listening: bool = False
    hits: int = 0
    misses: int = 0

    def invalidate(self) -> None:
        self.entries.clear()
        self.generation += 1

    def _listening(self, on: bool) -> None:
        self.listening = on
        self.invalidate()  # what was cached before a gap in listening may have missed a NOTIFY

    async def authenticate(self, conn: asyncpg.Connection, secret: str) -> Principal | None:
        """tenancy.authenticate, answered from the cache when it may be."""
        if not self.listening or secret.startswith(oauth.ACCESS_TOKEN_PREFIX):
            return await tenancy.authenticate(conn, secret)
        digest = hash_secret(secret)
        now = time.monotonic()
        entry = self.entries.get(digest)
        if entry is not None and entry[1] > now:
            self.hits += 1
            return entry[0]
        self.misses += 1
        generation = self.generation
        principal = await tenancy.authenticate(conn, secret)
        if principal is None:
            return None
        expires_in = principal.expires_in_s  # read by the same lookup
        ttl = TTL_S if expires_in is None else min(TTL_S, expires_in)
        if ttl > 0 and generation == self.generation and self.listening:
            if len(self.entries) >= MAX_ENTRIES:
                del self.entries[next(iter(self.entries))]  # the oldest
            self.entries[digest] = (principal, now + ttl)
        return principal

    async def listen(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        """Keep a connection LISTENing on CHANNEL, forever; the cache answers only meanwhile."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect()
                await conn.add_listener(CHANNEL, lambda *_: self.invalidate())
                conn.add_termination_listener(lambda _: self._listening(False))  # at once, not at the ping
                self._listening(True)
                while True:
                    await asyncio.sleep(PING_INTERVAL_S)
                    async with asyncio.timeout(PING_INTERVAL_S):
                        await conn.fetchval("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # lost, refused, timed out: no cache until listening again
                if self.listening:
                    log.warning("token_cache.bypassed", error_type=type(e).__name__)
            finally:
                self._listening(False)
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(RECONNECT_S)
