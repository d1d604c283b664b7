"""How fresh an auditor's answer is: up to which position of the log it is complete, and whether
it may be given at all.

The audit trail is a follower's view (projections/followers/runner.py), so an answer from it can
miss events: those not applied yet (lag), those a follower could not apply (dead letters), or
everything since a follower stopped. An auditor must never get a silent, incomplete answer, so
every /audit/v1 answer carries (service/http/audit.py):

- `completeThrough` (header `Audit-Complete-Through`): the highest position P such that every
  event of the tenant committed when the answer was computed, with a position up to P, is in the
  answer's source. A transaction still open then can commit later with a lower position (see the
  change feed in docs/audit.md); positions are global, so P can lie beyond the tenant's last event.
- `complete` (header `Audit-Complete`): false, with `incompleteReason`, when the tenant's trail
  has a known hole: dead letters of that tenant, or (for the seal) a chain stopped for it.

And an answer that would be stale is refused instead (`retry_after` set: 503 with Retry-After):
the follower failed (60 s) or was stopped (10 s), or it is behind by more than MAX_LAG_SECONDS
(the age of the oldest event it has not applied) or by more events than it counts
(eventstore.stats.LAG_CAP) (5 s). The seal's verification is never refused: a stopped seal must
not hide a break in what is sealed; it is flagged incomplete instead.

The reasons never quote a follower's error: it can hold another tenant's data. The operator
finds it in `scimledger projections status` and `projections dead-letters`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from eventstore.stats import position_bound
from projections.followers import dead_letters, runner
from projections.followers.audit import AuditProjection
from projections.followers.seal import SealProjection, SealReport
from projections.followers.trail import Trail, trail

MAX_LAG_SECONDS = 30.0
RETRY_BEHIND_S = 5
RETRY_STOPPED_S = 10
RETRY_FAILED_S = 60
_AUDIT, _SEAL = AuditProjection(), SealProjection()


@dataclass(frozen=True, slots=True)
class Freshness:
    complete_through: int | None  # None: not known (only in a refused answer)
    complete: bool
    reason: str | None = None
    retry_after: int | None = None  # set: the answer would be stale; refuse it (503)

    def headers(self) -> dict[str, str]:
        out = {"Audit-Complete": "true" if self.complete else "false"}
        if self.complete_through is not None:
            out["Audit-Complete-Through"] = str(self.complete_through)
        return out

    def fields(self) -> dict[str, Any]:
        """The JSON body's fields: completeThrough, complete, incompleteReason (when false)."""
        out: dict[str, Any] = {"completeThrough": self.complete_through, "complete": self.complete}
        if not self.complete:
            out["incompleteReason"] = self.reason
        return out


def judge(facts: Trail, what: str) -> Freshness:
    """The freshness of an answer from a view with these facts (`what` names it in the reasons)."""
    through = facts.complete_through
    if facts.state == runner.FAILED:
        return Freshness(through, False, f"{what} has stopped on an error; the operator must repair it",
                         RETRY_FAILED_S)
    if facts.state == runner.STOPPED:
        return Freshness(through, False, f"{what} is stopped by the operator", RETRY_STOPPED_S)
    pending = facts.pending
    if pending.capped or pending.seconds > MAX_LAG_SECONDS:
        more = "+" if pending.capped else ""
        return Freshness(through, False, f"{what} is {pending.events}{more} events and "
                         f"{pending.seconds:.0f} s behind the log", RETRY_BEHIND_S)
    dead = facts.dead
    if dead.first is not None and facts.isolation == dead_letters.TENANT:
        return Freshness(through, False, f"{what} stopped for this tenant at position {dead.first[1]} "
                         "(an event it could not apply); later events wait until the operator repairs it")
    if dead.count:
        n = f"{dead.count}{'+' if dead.count >= dead_letters.COUNT_CAP else ''}"
        return Freshness(through, False, f"{n} event(s) of this tenant, the first at position "
                         f"{dead.lowest}, could not be added to {what}; the operator must repair it")
    return Freshness(through, True)


async def of_audit_trail(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> Freshness:
    """For an answer read from the audit follower's view (events, exports, histories)."""
    return judge(await trail(conn, _AUDIT, tenant_id), "the audit trail")


async def of_seal(conn: asyncpg.Connection, tenant_id: uuid.UUID, report: SealReport) -> Freshness:
    """For the seal's verification: how far the verified chain covers the tenant's events, exact
    (`verify` found the tenant's lowest unsealed position). Never refused: a stopped seal must not
    hide a break in what is sealed, so a refusal becomes `complete: false`."""
    facts = await trail(conn, _SEAL, tenant_id)
    fresh = judge(facts, "the seal")
    bound = facts.pending.bound
    through = bound if report.first_unsealed is None else min(bound, report.first_unsealed - 1)
    return replace(fresh, complete_through=max(through, 0), retry_after=None)


async def of_log(conn: asyncpg.Connection) -> Freshness:
    """For an answer read from the log itself (a user or group as of a moment): complete through
    every position handed out so far."""
    return Freshness(await position_bound(conn), True)


async def cli_notes(conn: asyncpg.Connection, projection: runner.Projection) -> list[str]:
    """For the CLI (an operator's tool): the projection's dead letters, of every tenant."""
    n = (await dead_letters.counts(conn, [projection.name]))[projection.name]
    if not n:
        return []
    return [f"warning: the {projection.name} projection has {n} dead-lettered event(s), missing from "
            f"its answers; see `scimledger projections dead-letters {projection.name}`"]
