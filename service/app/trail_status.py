"""The state of the audit trail as the console's Audit page shows it: how fresh the trail and the
seal are (each follower's lag behind the log and its state), read from the followers'
checkpoints without catching anything up. The full seal verification is `audit.verify`.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from projections.followers import runner

TRAIL_FOLLOWERS = ("audit", "seal")


@dataclass(frozen=True, slots=True)
class Freshness:
    name: str
    state: str | None  # None: the follower never ran
    behind_events: int
    behind_seconds: float
    error: str | None

    @property
    def current(self) -> bool:
        return self.state == runner.RUNNING and self.behind_events == 0


async def freshness(conn: asyncpg.Connection) -> list[Freshness]:
    out = []
    for name in TRAIL_FOLLOWERS:
        row = await runner.load_checkpoint(conn, name)
        lag = await runner.lag(conn, name)
        out.append(Freshness(name, row.state if row else None, lag.events, lag.seconds, row.error if row else None))
    return out
