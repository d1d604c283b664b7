"""Rebuild and verify projections from the log: shadow tables, bulk fold, catch-up, swap.

A rebuild never stops the service. The inline views (users, groups, group_members) are rebuilt
like this:

1. Bulk: in one read-only REPEATABLE READ transaction (snapshot S0; read-only, so it takes no
   transaction id and holds back no follower), stream every user/group event through a
   server-side cursor in (tenant_id, stream_id, version) order, fold each stream with the same
   pure folds the write path uses (projections.domain.folds: apply_user, apply_group and
   apply_members), and COPY the resulting rows into fresh shadow tables without indexes,
   on other connections while the cursor keeps reading.
2. Index: build the live tables' indexes and constraints on the shadows (after the load, which
   is several times faster than maintaining them row by row), then ANALYZE.
3. Catch up: apply the delta "events visible now, not visible in the previous snapshot" to the
   shadows, until the delta is small. A snapshot, not a transaction-id bound, marks how far a
   shadow has got: the set of transactions visible in a snapshot is closed under "committed
   before", so a stream is never cut between two of its versions (a transaction id bound can be:
   a writer may take its id before the previous version of a stream it touches is committed).
4. Swap, in one short transaction: LOCK the live tables IN EXCLUSIVE MODE (writers wait, readers
   go on; every writer of these views holds ROW EXCLUSIVE on them from the statement that
   appends its events until it commits, so once the lock is ours every such transaction has
   committed and no new one can start), apply the last delta, drop the live tables and rename
   the shadows (and their indexes) into place. Writers wait for this transaction only; none is
   lost, since whatever committed before the lock is in the last delta and whatever comes after
   the lock writes the new tables.

`verify` runs steps 1 to 3, then in one REPEATABLE READ transaction applies the last delta and
compares the shadows with the live tables (EXCEPT both ways) under the same snapshot: exact,
without any lock, since the live views and the log are committed together.

Follower projections (audit, seal) are rebuilt in a shadow schema: `handle` runs with the
connection's search_path starting at the shadow schema, so its unqualified table names resolve to
the shadow tables; the swap then locks the live tables (waiting for an in-flight batch), replays
the last events, moves the shadow tables into place and sets the checkpoint to the shadow's, in
one transaction. The runner's next batch finds its checkpoint moved and re-reads from the new one.

The modules: `inline` (the inline views: fold, shadows, catch-up, swap, compare), `followers`
(the follower projections), `ddl` (shadow tables, index and constraint DDL, the swap of one
table), `codec` (jsonb in COPY's binary format), `progress` (the bar), `common` (the error, the
result, the one-at-a-time lock, the comparison). Every projection and its tables are named in
projections.registry; the log is read through eventstore (scan, stats, read_all).
"""

from eventstore.scan import StreamEvent
from projections.rebuild.codec import BinaryJsonb
from projections.rebuild.common import REBUILD_LOCK, RebuildError, RebuildLock, RebuildResult
from projections.rebuild.ddl import SHADOW, IndexDef, ShadowTable, index_sql, prepare_shadow
from projections.rebuild.followers import (
    SHADOW_SCHEMA,
    follower_tables,
    rebuild_follower,
    verify_follower,
)
from projections.rebuild.inline import (
    GROUP_MEMBERS,
    GROUPS,
    INLINE_VIEWS,
    USERS,
    InlineRebuild,
    fold_group,
    fold_user,
    inline_views,
    rebuild_inline,
    streams,
    verify_inline,
)
from projections.rebuild.progress import Progress, format_progress

__all__ = [
    "GROUPS",
    "GROUP_MEMBERS",
    "INLINE_VIEWS",
    "REBUILD_LOCK",
    "SHADOW",
    "SHADOW_SCHEMA",
    "USERS",
    "BinaryJsonb",
    "IndexDef",
    "InlineRebuild",
    "Progress",
    "RebuildError",
    "RebuildLock",
    "RebuildResult",
    "ShadowTable",
    "StreamEvent",
    "fold_group",
    "fold_user",
    "follower_tables",
    "format_progress",
    "index_sql",
    "inline_views",
    "prepare_shadow",
    "rebuild_follower",
    "rebuild_inline",
    "streams",
    "verify_follower",
    "verify_inline",
]
