"""Every projection of the log, once: its name, its kind and the tables it writes.

- inline views are written in the append's own statement or transaction (projections/views), so
  they are always at the head of the log; each folds the streams of one `stream_type`, and the
  views of one stream type are rebuilt together;
- followers apply the log after the fact, each from its checkpoint (projections/followers).

`projections rebuild / verify / status`, the metrics and the follower runners of `serve` read
this table; nothing else names a projection's tables. The order of the inline views is also the
order their tables are locked in (the writers' order). The followers' shared bookkeeping,
`projection_checkpoints` and `projection_dead_letters`, belongs to the runner
(projections/followers/runner.py, dead_letters.py), one row per projection (and event), not to
any one projection's table list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from projections.followers.audit import AuditProjection
from projections.followers.runner import Projection
from projections.followers.seal import SealProjection

INLINE, FOLLOWER = "inline", "follower"


@dataclass(frozen=True, slots=True)
class Registered:
    name: str
    kind: str  # INLINE | FOLLOWER
    tables: tuple[str, ...]
    stream_type: str | None = None  # inline: the streams the view folds
    create: Callable[[], Projection] | None = None  # follower: its projection


PROJECTIONS: tuple[Registered, ...] = (
    Registered("users", INLINE, ("users",), stream_type="user"),
    Registered("groups", INLINE, ("groups",), stream_type="group"),
    Registered("group_members", INLINE, ("group_members",), stream_type="group"),
    Registered("audit", FOLLOWER, ("audit_events", "audit_targets", "audit_target_names"), create=AuditProjection),
    Registered("seal", FOLLOWER, ("audit_seals",), create=SealProjection),
)

_BY_NAME = {p.name: p for p in PROJECTIONS}

INLINE_VIEWS: tuple[str, ...] = tuple(p.name for p in PROJECTIONS if p.kind == INLINE)
FOLLOWER_NAMES: tuple[str, ...] = tuple(p.name for p in PROJECTIONS if p.kind == FOLLOWER)


def get(name: str) -> Registered | None:
    return _BY_NAME.get(name)


def names() -> list[str]:
    """Every projection, inline views first."""
    return [p.name for p in PROJECTIONS]


def followers() -> list[Projection]:
    """A fresh instance of every follower projection."""
    return [p.create() for p in PROJECTIONS if p.create is not None]


def tables(name: str) -> tuple[str, ...]:
    """The tables projection `name` writes (KeyError if there is no such projection)."""
    return _BY_NAME[name].tables


def stream_type(view: str) -> str:
    """The stream type an inline view folds (KeyError for anything else)."""
    registered = _BY_NAME[view]
    if registered.stream_type is None:
        raise KeyError(view)
    return registered.stream_type


def rebuilt_together(views: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The inline views to rebuild for the names given, in lock order: with each view, every view
    of the same stream type (groups and group_members come from the same streams)."""
    chosen_types = {stream_type(v) for v in views if v in INLINE_VIEWS}
    return tuple(v for v in INLINE_VIEWS if stream_type(v) in chosen_types)
