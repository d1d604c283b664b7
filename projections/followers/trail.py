"""What a follower's view holds of one tenant's events, as facts: its state, what it has still
to apply (bounded), and the tenant's dead letters. service/app/freshness.py turns these into an
answer's completeness; here they are only read.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from eventstore.stats import Pending, pending_after
from eventstore.store import BEGINNING
from projections.followers import dead_letters
from projections.followers.dead_letters import TENANT
from projections.followers.runner import RUNNING, Projection, load_checkpoint


@dataclass(frozen=True, slots=True)
class Trail:
    """A projection's view, as seen by one tenant."""

    projection: str
    isolation: str
    state: str
    pending: Pending  # committed events not applied yet (all tenants), bounded
    dead: dead_letters.TenantDeadLetters  # the tenant's dead letters

    @property
    def complete_through(self) -> int | None:
        """The highest position P such that every event of the tenant committed by now with a
        position up to P is in the view; None when that cannot be told cheaply (more pending
        than counted, or a TENANT-isolated projection stopped for the tenant: the events it
        left out may lie below the dead letter's position)."""
        if self.pending.capped or (self.isolation == TENANT and self.dead.count):
            return None
        through = self.pending.bound
        if self.pending.tenant_first is not None:
            through = min(through, self.pending.tenant_first - 1)
        if self.dead.lowest is not None:
            through = min(through, self.dead.lowest - 1)
        return max(through, 0)


async def trail(conn: asyncpg.Connection, projection: Projection, tenant_id: uuid.UUID) -> Trail:
    """The facts of `projection` for one tenant: three small statements, each bounded (the
    pending events are counted up to eventstore.stats.LAG_CAP)."""
    row = await load_checkpoint(conn, projection.name)
    pending = await pending_after(conn, row.checkpoint if row else BEGINNING, tenant_id=tenant_id)
    dead = await dead_letters.of_tenant(conn, projection.name, tenant_id)
    return Trail(projection.name, projection.isolation, row.state if row else RUNNING, pending, dead)
