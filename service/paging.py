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
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable

TTL = 600.0
MAX_ENTRIES = 10_000


class PageCursors:
    """An LRU of walk continuations, one per worker process."""

    def __init__(self, *, ttl: float = TTL, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[tuple[Hashable, int], tuple[int, float]] = OrderedDict()
        self._ttl = ttl
        self._max = max_entries

    def after(self, query: Hashable, start_index: int) -> int | None:
        """The ordinal a page starting at `start_index` continues after, if known."""
        key = (query, start_index)
        entry = self._entries.get(key)
        if entry is None:
            return None
        ordinal, stored = entry
        if time.monotonic() - stored > self._ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return ordinal

    def remember(self, query: Hashable, next_start_index: int, last_ordinal: int) -> None:
        self._entries[(query, next_start_index)] = (last_ordinal, time.monotonic())
        self._entries.move_to_end((query, next_start_index))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
