"""List and search parameters (RFC 7644 3.4.2 and 3.4.3): filter, sort, paging, attributes.

The same parsing serves GET query strings and POST /.search bodies.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from aiohttp import web

from service.http.keys import PAGE_CURSORS, PRINCIPAL
from service.runtime.config import Settings
from service.scim import filter as scim_filter
from service.scim.errors import InvalidValue, ScimError
from service.scim.projection import AttrRef, parse_attribute_list
from service.scim.schema import LIST_RESPONSE, ResourceType


@dataclass(frozen=True)
class ListQuery:
    filter: scim_filter.Expr | None
    start_index: int  # 1-based
    count: int
    sort_by: str | None
    descending: bool
    attributes: list[AttrRef] | None
    excluded: list[AttrRef] | None


def _int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidValue(f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError) as e:
        raise InvalidValue(f"{name} must be an integer, got {value!r}") from e


def _get(params: Mapping[str, Any], name: str) -> Any:
    """Parameter names are case-insensitive in practice (IdPs send `startindex`, `Count`)."""
    if name in params:
        return params[name]
    lowered = name.lower()
    for key, value in params.items():
        if key.lower() == lowered:
            return value
    return None


def parse_query(params: Mapping[str, Any], resource_type: ResourceType, settings: Settings) -> ListQuery:
    """Paging per RFC 7644 3.4.2.4: startIndex < 1 is taken as 1; a negative count as 0; a count
    above the advertised maximum (ServiceProviderConfig filter.maxResults) is clamped to it."""
    raw_filter = _get(params, "filter")
    expr = None
    if raw_filter is not None:
        if not isinstance(raw_filter, str):
            raise scim_filter.InvalidFilter("filter must be a string")
        if raw_filter.strip():
            expr = scim_filter.resolve(scim_filter.parse_filter(raw_filter), resource_type)
    start = _int(_get(params, "startIndex"), "startIndex")
    count = _int(_get(params, "count"), "count")
    start = 1 if start is None or start < 1 else start
    if count is None:
        count = settings.default_page_size
    count = max(0, min(count, settings.max_page_size))
    sort_by = _get(params, "sortBy")
    if sort_by is not None and not isinstance(sort_by, str):
        raise InvalidValue("sortBy must be a string")
    sort_order = _get(params, "sortOrder") or "ascending"
    if not isinstance(sort_order, str) or sort_order.lower() not in ("ascending", "descending"):
        raise InvalidValue("sortOrder must be 'ascending' or 'descending'")
    attributes = _get(params, "attributes")
    excluded = _get(params, "excludedAttributes")
    return ListQuery(
        filter=expr,
        start_index=start,
        count=count,
        sort_by=sort_by or None,
        descending=sort_order.lower() == "descending",
        attributes=parse_attribute_list(attributes, resource_type) if attributes else None,
        excluded=parse_attribute_list(excluded, resource_type) if excluded else None,
    )


def sort_sql(sort_by: str, target: scim_filter.SqlTarget, descending: bool) -> str:
    """ORDER BY expression for `sortBy` (RFC 7644 3.4.2.3), from the schema whitelist only.

    A multi-valued attribute sorts by its primary value, else its first (the RFC's rule)."""
    try:
        path = scim_filter.parse_filter(f"{sort_by} pr")
    except scim_filter.InvalidFilter as e:
        raise InvalidValue(f"sortBy {sort_by!r} is not an attribute path") from e
    if not isinstance(path, scim_filter.Present) or path.path is None:
        raise InvalidValue(f"sortBy {sort_by!r} is not an attribute path")
    urn, attribute, sub = scim_filter.lookup_attribute(
        path.path, target.resource_type, error=InvalidValue, allow_schemas=False
    )
    direction = "DESC" if descending else "ASC"
    nulls = "NULLS LAST" if not descending else "NULLS FIRST"
    key = attribute.name.lower() + (f".{sub.name.lower()}" if sub else "")
    if urn is None and key in target.columns:
        column = target.columns[key]
        expr = column.sql if column.case_exact or column.type != "string" else f"lower({column.sql})"
        return f"{expr} {direction} {nulls}"
    if attribute.type == "complex" and sub is None and not attribute.multi_valued:
        raise InvalidValue(f"cannot sort by the complex attribute {attribute.name!r}")
    base = target.json_column
    if urn is not None:
        base = f"({base}->{scim_filter._key(urn)})"
    node = f"({base}->{scim_filter._key(attribute.name)})"
    leaf = sub or (attribute.sub("value") if attribute.multi_valued else None) or attribute
    if attribute.multi_valued:
        # the primary element if any, else the first
        element = (
            f"coalesce((SELECT x FROM jsonb_array_elements(CASE WHEN jsonb_typeof({node}) = 'array' "
            f"THEN {node} ELSE '[]'::jsonb END) x WHERE x->>'primary' = 'true' LIMIT 1), {node}->0)"
        )
        text = f"({element}->>{scim_filter._key(leaf.name)})" if attribute.type == "complex" else f"({element} #>> '{{}}')"
    elif sub is not None:
        text = f"({node}->>{scim_filter._key(sub.name)})"
    else:
        text = f"({base}->>{scim_filter._key(attribute.name)})"
    expr = text if leaf.case_exact else f"lower({text})"
    return f"{expr} {direction} {nulls}"


class ViewSearch(Protocol):
    """projections.views.users.search / projections.views.groups.search."""

    async def __call__(
        self, conn: asyncpg.Connection, tenant_id: uuid.UUID, *, where: str, params: list[Any],
        order_by: str, offset: int, limit: int, after_ordinal: int | None, known_total: int | None,
    ) -> tuple[int, list[Any]]: ...


async def find_page(
    request: web.Request,
    conn: asyncpg.Connection,
    query: ListQuery,
    target: scim_filter.SqlTarget,
    search: ViewSearch,
    default_order: str,
) -> tuple[int, list[Any]]:
    """(totalResults, rows of the page) of a list or .search request: the filter translated
    with the schema whitelist, the sort (`default_order`, the view's creation order, without
    sortBy), and the continuation of startIndex walks (service/paging.py) in that order."""
    tenant_id = request[PRINCIPAL].tenant_id
    where = "TRUE"
    params: list[Any] = []
    if query.filter is not None:
        where, params = scim_filter.to_sql(query.filter, target, first_param=2)
    order = sort_sql(query.sort_by, target, query.descending) if query.sort_by else default_order
    cursors = request.app[PAGE_CURSORS]
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
    return total, rows


def list_response(resources: list[dict[str, Any]], total: int, start_index: int) -> dict[str, Any]:
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


async def search_needs_post(request: web.Request) -> web.Response:
    """`/.search` is POST only (RFC 7644 3.4.3); without this route a GET would be read as a
    request for a resource whose id is ".search"."""
    raise ScimError("/.search takes POST with a SearchRequest body (RFC 7644 3.4.3)", status=405,
                    headers={"Allow": "POST"})
