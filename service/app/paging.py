"""Continuation of `startIndex` walks (RFC 7644 3.4.2.4) without OFFSET.

IdPs import by walking `startIndex=1, 101, 201, ...` in the default order (creation order, the
`ordinal` column). With OFFSET, page k costs O(k) and a walk of a million users is quadratic.
When a page in the default order is served, we remember where it ended: (its query, the next
startIndex) -> the last ordinal. The request for that next startIndex then reads
`ordinal > last LIMIT count`, an index range scan whose cost does not grow with startIndex. A miss
(another worker served the previous page, the entry expired, or a client jumps) falls back to
OFFSET, so answers never depend on the cache being there.

Users created during a walk get larger ordinals and appear at its end either way. A user deleted
during a walk shifts OFFSET pages (a later one would skip a user) but not a continued walk, which
is the better answer for an import. Entries expire after `TTL` seconds, bounding how far a
continued walk's startIndex can drift from OFFSET's when users are deleted.

A continued page reports the totalResults counted when the walk began (counting a million users
costs more than the page itself; a walk that re-counted every page would again grow with the
tenant, not the page). Users created during the walk show up at its end and in the next walk's
count; RFC 7644 3.4.2.4 promises no consistency across the requests of a walk.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import NamedTuple

TTL = 600.0
MAX_ENTRIES = 10_000


class Continuation(NamedTuple):
    last_ordinal: int  # the next page reads ordinal > last_ordinal
    total: int  # totalResults as counted at the walk's first page


class PageCursors:
    """An LRU of walk continuations, one per worker process."""

    def __init__(self, *, ttl: float = TTL, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[tuple[Hashable, int], tuple[Continuation, float]] = OrderedDict()
        self._ttl = ttl
        self._max = max_entries

    def after(self, query: Hashable, start_index: int) -> Continuation | None:
        """Where a page starting at `start_index` continues, if known."""
        key = (query, start_index)
        entry = self._entries.get(key)
        if entry is None:
            return None
        continuation, stored = entry
        if time.monotonic() - stored > self._ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return continuation

    def remember(self, query: Hashable, next_start_index: int, last_ordinal: int, total: int) -> None:
        self._entries[(query, next_start_index)] = (Continuation(last_ordinal, total), time.monotonic())
        self._entries.move_to_end((query, next_start_index))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
