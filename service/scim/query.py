"""List and search parameters (RFC 7644 3.4.2 and 3.4.3): filter, sort, paging, attributes,
and the ListResponse. The same parsing serves GET query strings and POST /.search bodies.

Paging numbers (RFC 7644 3.4.2.4: 1-based integers) are JSON integers, integral JSON numbers or
ASCII digits (service/scim/limits.py). startIndex below 1 is 1 and above MAX_START_INDEX is 400
invalidValue; count below 0 is 0 and above the page cap is the cap, however large.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.scim import filter as scim_filter
from service.scim.errors import InvalidValue
from service.scim.limits import MAX_START_INDEX, parse_integer
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


def _get(params: Mapping[str, Any], name: str) -> Any:
    """Parameter names are case-insensitive in practice (IdPs send `startindex`, `Count`)."""
    if name in params:
        return params[name]
    lowered = name.lower()
    for key, value in params.items():
        if key.lower() == lowered:
            return value
    return None


def parse_query(params: Mapping[str, Any], resource_type: ResourceType, *, default_count: int, max_count: int) -> ListQuery:
    """Paging per RFC 7644 3.4.2.4: startIndex < 1 is taken as 1; a negative count as 0; a count
    above the advertised maximum (ServiceProviderConfig filter.maxResults) is clamped to it."""
    raw_filter = _get(params, "filter")
    expr = None
    if raw_filter is not None:
        if not isinstance(raw_filter, str):
            raise scim_filter.InvalidFilter("filter must be a string")
        if raw_filter.strip():
            expr = scim_filter.resolve(scim_filter.parse_filter(raw_filter), resource_type)
    start = parse_integer(_get(params, "startIndex"), "startIndex")
    count = parse_integer(_get(params, "count"), "count")
    start = 1 if start is None or start < 1 else start
    if start > MAX_START_INDEX:
        raise InvalidValue(f"startIndex must be at most {MAX_START_INDEX}")
    if count is None:
        count = default_count
    count = max(0, min(count, max_count))
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


def list_response(resources: list[dict[str, Any]], total: int, start_index: int) -> dict[str, Any]:
    return {
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
