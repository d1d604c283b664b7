"""A hot standby for the reads that may lag (SCIMLEDGER_REPLICA_URL; docs/scaling.md).

A `Standby` is a second pool, on a PostgreSQL streaming standby of the primary, and a lag check
that runs in the background every `CHECK_INTERVAL_S`: requests ask `usable` (an attribute read, no
round trip) and fall back to the primary when the standby is down, is not in recovery (promoted:
it no longer follows this primary), or may be more than `max_lag_s` behind.

The lag is an upper bound, from two readings of one check: the primary's current WAL position,
read first, then the standby's replay position and the commit time of the last transaction it
replayed. A standby that has replayed the primary's position is caught up (lag 0). Otherwise it is
behind by at most the age of its last replayed commit (everything up to that commit is there), and
by at most the time since a check last found it caught up; the smaller bound is taken. The second
bound matters on a quiet primary, whose last commit may be minutes old while all that the standby
lacks is a checkpoint record. An answer from the standby is thus at most `max_lag_s` plus one check
interval behind the primary.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
import structlog

CHECK_INTERVAL_S = 0.5
CHECK_TIMEOUT_S = 1.0  # a standby that does not answer a check within this is down
log = structlog.get_logger("scimledger.replica")

_PRIMARY_POSITION = "SELECT pg_current_wal_lsn()::text"
_STANDBY_POSITION = """
SELECT pg_is_in_recovery() AS in_recovery,
       pg_wal_lsn_diff(pg_last_wal_replay_lsn(), $1::text::pg_lsn) >= 0 AS caught_up,
       extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 AS replay_age_s
"""


def lag_bound(caught_up: bool, replay_age_s: float | None, since_caught_up_s: float | None) -> float | None:
    """How far behind the standby may be, in seconds; None when nothing bounds it (never caught
    up and no transaction replayed yet)."""
    if caught_up:
        return 0.0
    bounds = [b for b in (replay_age_s, since_caught_up_s) if b is not None]
    return max(0.0, min(bounds)) if bounds else None


@dataclass
class Standby:
    """The standby's pool and the last lag check, for one worker."""

    pool: asyncpg.Pool
    primary: asyncpg.Pool
    max_lag_s: float
    lag_s: float | None = None  # the last check's bound; None: down or unbounded
    caught_up_at: float | None = None  # monotonic time of the last check that found it caught up
    usable: bool = False
    reason: str = "not checked yet"  # why it is bypassed, when it is

    async def check(self) -> None:
        """One lag check: primary position, then the standby's."""
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            position = await self.primary.fetchval(_PRIMARY_POSITION)
            row = await self.pool.fetchrow(_STANDBY_POSITION, position)
        assert row is not None
        now = time.monotonic()
        if row["caught_up"]:
            self.caught_up_at = now
        since = None if self.caught_up_at is None else now - self.caught_up_at
        self.lag_s = lag_bound(row["caught_up"], row["replay_age_s"], since) if row["in_recovery"] else None
        self._set_usable(self.lag_s is not None and self.lag_s <= self.max_lag_s,
                         "not in recovery" if not row["in_recovery"] else "lag")

    def failed(self, error: BaseException) -> None:
        """The standby did not answer (a check, or a request's connect): reads go to the primary
        until a check finds it back."""
        self.lag_s = None
        self._set_usable(False, f"{type(error).__name__}: {str(error)[:200]}")

    def _set_usable(self, usable: bool, reason: str) -> None:
        """One log line per change: in use, or bypassed and why."""
        reason = "" if usable else reason
        if usable and not self.usable:
            log.info("replica.in_use", lag_s=self.lag_s)
        elif not usable and reason != self.reason:
            log.warning("replica.bypassed", reason=reason, lag_s=self.lag_s, max_lag_s=self.max_lag_s)
        self.usable, self.reason = usable, reason

    async def run(self) -> None:
        """Check forever, every CHECK_INTERVAL_S; a check that fails in any way bypasses the
        standby until one succeeds."""
        while True:
            try:
                await self.check()
            except Exception as e:  # down, timed out, refused, or a bug: never the worker's end
                self.failed(e)
            await asyncio.sleep(CHECK_INTERVAL_S)
