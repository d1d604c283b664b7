"""The pure membership decisions (projections/domain/members.py): unknown ids skipped, never a
wipe, and the net change of a sequence of member operations (RFC 7644 3.5.2.1-3.5.2.3)."""

from __future__ import annotations

import uuid

from projections.domain.members import Op, decide_members, known_only

A, B, GHOST = (uuid.UUID(int=i) for i in (1, 2, 3))


def test_unknown_and_malformed_ids_are_skipped_in_order() -> None:
    ops = [Op("add", [str(A), "not-an-id", str(GHOST)]), Op("remove", ["junk"]), Op("add", [str(GHOST)])]
    kept, skipped = known_only(ops, {GHOST})
    assert kept == [Op("add", [str(A)]), Op("remove", ["junk"]), Op("add", [])]
    assert skipped == ["not-an-id", str(GHOST)]


def test_a_replace_of_only_unknown_ids_never_empties_the_group() -> None:
    kept, skipped = known_only([Op("replace", [str(GHOST)])], {GHOST})
    assert kept == [] and skipped == [str(GHOST)]
    assert decide_members(kept, set(), {A, B}).removed == []
    kept, _ = known_only([Op("replace", [])], set())  # an explicit empty list still empties it
    assert decide_members(kept, set(), {A, B}).removed == [A, B]


def test_a_replace_with_some_unknown_ids_applies_the_known_ones() -> None:
    kept, skipped = known_only([Op("replace", [str(B), str(GHOST)])], {GHOST})
    change = decide_members(kept, set(), {A})
    assert (change.added, change.removed, skipped) == ([B], [A], [str(GHOST)])
