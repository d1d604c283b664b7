"""Per-tenant rate limits: a token bucket shared by every worker, leased in small batches.

The bucket of each tenant lives in PostgreSQL (the UNLOGGED table `rate_buckets`, function
`rate_lease`, migration 0004), so the limit holds for the tenant as a whole whatever the number of
processes and hosts. A worker does not ask the database for every request: it leases a batch of
tokens (about 100 ms of the tenant's rate, at most LEASE_MAX) into a local bucket and spends them
locally, so the hot path costs one round trip per batch. A refusal is remembered locally until the
database said a token would be available, so a tenant hammering past its limit costs nothing.

Accuracy (docs/tenancy.md): tokens are taken from the shared bucket before they are spent, so the
tenant never gets more than `burst + rate * t` requests in any window of t seconds, plus what the
workers hold in unspent leases (at most LEASE_MAX each, and leases die after LEASE_TTL). The price
is the other way: tokens stranded in an idle worker's lease are lost, so a tenant spread over many
workers may be throttled slightly before its nominal rate.

Rate: `tenants.rate_limit`, else Settings.default_rate_limit (requests per second). Burst:
BURST_SECONDS of the rate (at least one request).
"""

from __future__ import annotations

import math
import time
import uuid
import weakref
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web

BURST_SECONDS = 2.0
LEASE_SECONDS = 0.1  # a lease is this much of the tenant's rate...
LEASE_MAX = 16  # ...but never more than this many tokens
LEASE_TTL = 1.0  # unspent leased tokens are dropped after this long (seconds)


@dataclass(frozen=True, slots=True)
class Limit:
    rate: float  # tokens per second
    burst: float  # bucket capacity

    @classmethod
    def of(cls, rate: float) -> Limit:
        return cls(rate=rate, burst=max(1.0, rate * BURST_SECONDS))

    @property
    def lease_size(self) -> int:
        return max(1, min(LEASE_MAX, int(self.rate * LEASE_SECONDS), int(self.burst)))


def retry_after(wait_s: float) -> int:
    """The Retry-After header value: whole seconds, at least 1 (RFC 9110 section 10.2.3)."""
    return max(1, math.ceil(wait_s))


@dataclass(slots=True)
class LocalBucket:
    """One worker's share of one tenant's bucket: leased tokens and a remembered refusal."""

    tokens: int = 0
    expires: float = 0.0  # monotonic time after which unspent tokens are dropped
    refused_until: float = 0.0  # monotonic time before which the database has no token
    rate: float = 0.0  # the rate the lease and refusal were made under

    def take(self, now: float) -> bool:
        if self.tokens > 0 and now < self.expires:
            self.tokens -= 1
            return True
        self.tokens = 0
        return False

    def add(self, granted: int, now: float) -> None:
        self.tokens = granted
        self.expires = now + LEASE_TTL


@dataclass
class RateLimiter:
    """The per-worker side: local buckets by tenant. Decisions: `admit` -> None (go on) or the
    number of seconds to put in Retry-After."""

    buckets: dict[uuid.UUID, LocalBucket] = field(default_factory=dict)
    leases: int = 0  # round trips to the shared bucket, for the docs' measurement

    async def admit(self, conn: asyncpg.Connection, tenant_id: uuid.UUID, limit: Limit) -> int | None:
        now = time.monotonic()
        bucket = self.buckets.setdefault(tenant_id, LocalBucket())
        if bucket.rate != limit.rate:  # `tenant update --rate-limit`: forget what the old rate said
            bucket.tokens, bucket.refused_until, bucket.rate = 0, 0.0, limit.rate
        if bucket.take(now):
            return None
        if now < bucket.refused_until:
            return retry_after(bucket.refused_until - now)
        row = await conn.fetchrow(
            "SELECT granted, wait_s FROM rate_lease($1, $2, $3, $4)",
            tenant_id, limit.rate, limit.burst, limit.lease_size,
        )
        self.leases += 1
        assert row is not None
        now = time.monotonic()
        if row["granted"] > 0:
            bucket.add(row["granted"] - 1, now)  # one is spent on this request
            return None
        bucket.refused_until = now + float(row["wait_s"])
        return retry_after(float(row["wait_s"]))


# One limiter per application object (one per worker process): per-worker state that lives and
# dies with the app, without a key that has to be set before the app starts.
_LIMITERS: weakref.WeakKeyDictionary[web.Application, RateLimiter] = weakref.WeakKeyDictionary()


def limiter_for(app: web.Application) -> RateLimiter:
    limiter = _LIMITERS.get(app)
    if limiter is None:
        limiter = _LIMITERS[app] = RateLimiter()
    return limiter
