"""One page of a list or .search (RFC 7644 3.4.2): the filter compiled against a view's column
map (the whitelist), the sort, and the continuation of startIndex walks (service/app/paging.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import asyncpg

from service.app.paging import PageCursors
from service.scim import filter as scim_filter
from service.scim.query import ListQuery


class OrderedRow(Protocol):
    @property
    def ordinal(self) -> int: ...  # the view's creation order, which walks continue in


R = TypeVar("R", bound=OrderedRow)


class ViewSearch(Protocol[R]):
    """projections.views.users.search / projections.views.groups.search."""

    async def __call__(
        self, conn: asyncpg.Connection, tenant_id: uuid.UUID, *, where: str, params: list[Any],
        order_by: str, offset: int, limit: int, after_ordinal: int | None, known_total: int | None,
    ) -> tuple[int, list[R]]: ...


@dataclass(frozen=True, slots=True)
class Page(Generic[R]):
    total: int  # totalResults
    rows: list[R]


async def find_page(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    query: ListQuery,
    target: scim_filter.SqlTarget,
    search: ViewSearch[R],
    default_order: str,
    cursors: PageCursors,
) -> Page[R]:
    """(totalResults, rows of the page): the filter translated with the schema whitelist, the
    sort (`default_order`, the view's creation order, without sortBy), and the continuation of
    startIndex walks in that order."""
    where = "TRUE"
    params: list[Any] = []
    if query.filter is not None:
        where, params = scim_filter.to_sql(query.filter, target, first_param=2)
    order = scim_filter.sort_sql(query.sort_by, target, query.descending) if query.sort_by else default_order
    walk = (tenant_id, target.resource_type.id, where, tuple(params)) if query.sort_by is None else None
    after = cursors.after(walk, query.start_index) if walk else None
    total, rows = await search(
        conn, tenant_id, where=where, params=params, order_by=order,
        offset=query.start_index - 1, limit=query.count,
        after_ordinal=after.last_ordinal if after else None,
        known_total=after.total if after else None,
    )
    if walk and rows:
        cursors.remember(walk, query.start_index + len(rows), rows[-1].ordinal, total)
    return Page(total, rows)
