"""decide for membership changes: PATCH member operations -> (added, removed), pure.

Operations apply in order over a local view of only the ids they name, so adding or removing a
few members of a huge group never loads the whole list; `replace` and `remove_all` are the only
operations that need it (they are about the whole list by definition).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from projections.domain.errors import InvalidMember


class MemberOp(Protocol):
    """A member operation as the PATCH engine (service/scim/patch.py) produces it."""

    @property
    def kind(self) -> str: ...  # "add", "remove", "replace" or "remove_all"

    @property
    def values(self) -> list[str]: ...


@dataclass(frozen=True)
class MemberChange:
    added: list[uuid.UUID]
    removed: list[uuid.UUID]


@dataclass(frozen=True)
class Op:
    """A member operation after `known_only`: the same kind, only ids that may be applied."""

    kind: str
    values: list[str]


def parsed_or_none(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


def known_only(ops: Sequence[MemberOp], unknown: set[uuid.UUID]) -> tuple[list[Op], list[str]]:
    """The operations without the ids to add that cannot be (not a UUID, or in `unknown`), and
    those ids in the order given. A `replace` that named ids, none of them applicable, is
    dropped: unknown ids never empty a group (an explicit empty `replace` still does)."""
    kept: list[Op] = []
    skipped: dict[str, None] = {}
    for op in ops:
        if op.kind not in ("add", "replace"):
            kept.append(Op(op.kind, list(op.values)))
            continue
        values = []
        for raw in op.values:
            parsed = parsed_or_none(raw)
            if parsed is None or parsed in unknown:
                skipped[str(raw)] = None
            else:
                values.append(raw)
        if op.kind == "replace" and op.values and not values:
            continue
        kept.append(Op(op.kind, values))
    return kept, list(skipped)


def member_uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError as e:
        raise InvalidMember(f"member {raw!r} is not a known User id") from e


def ids_named(ops: Iterable[MemberOp]) -> set[uuid.UUID]:
    """Every id the operations name that is a UUID (any other names no User: `known_only`
    skips it in an add, and removing it is a no-op)."""
    out: set[uuid.UUID] = set()
    for op in ops:
        for raw in op.values:
            parsed = parsed_or_none(raw)
            if parsed is not None:
                out.add(parsed)
    return out


def needs_full_list(ops: Iterable[MemberOp]) -> bool:
    return any(op.kind in ("replace", "remove_all") for op in ops)


def decide_members(
    ops: Sequence[MemberOp],
    present: set[uuid.UUID],
    full: set[uuid.UUID] | None = None,
) -> MemberChange:
    """Net additions and removals. `present` holds which of the named ids are members now;
    `full` is the whole member list, required when `needs_full_list(ops)`."""
    if needs_full_list(ops) and full is None:
        raise ValueError("replace / remove_all need the full member list")
    original_full = full if needs_full_list(ops) else None
    state: dict[uuid.UUID, bool] = {}  # named id -> member after the operations so far
    for op in ops:
        if op.kind == "add":
            for raw in op.values:
                state[member_uuid(raw)] = True
        elif op.kind == "remove":
            for raw in op.values:
                try:
                    state[uuid.UUID(str(raw))] = False
                except ValueError:
                    continue
        elif op.kind in ("replace", "remove_all"):
            assert original_full is not None
            keep = {member_uuid(raw) for raw in op.values} if op.kind == "replace" else set()
            for member in original_full | set(state):
                state[member] = member in keep
            for member in keep:
                state[member] = True
    before = original_full if original_full is not None else present
    added = sorted(m for m, now in state.items() if now and m not in before)
    removed = sorted(m for m, now in state.items() if not now and m in before)
    return MemberChange(added=added, removed=removed)
