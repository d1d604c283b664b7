"""In-memory evaluation of a resolved filter (RFC 7644 section 3.4.2.2): `matches` against a
stored resource or one element of a multi-valued attribute, with the semantics `to_sql` has in
PostgreSQL, so that the PATCH engine's value filters and the list endpoints agree.

- `ne` is `not eq`: an absent attribute is "not equal"; for a multi-valued attribute `ne` means
  no element is equal.
- Multi-valued attributes match if any element does; case sensitivity follows caseExact;
  dateTimes compare as instants.
- Bounded: every node evaluated against an element, every value it reads and every TEXT_UNIT
  characters it compares spend one unit of a `Budget` (service/scim/budget.py), shared by the
  caller across calls (the PATCH engine passes one per request); spent, it raises TooMany (400
  tooMany, RFC 7644 3.12).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from service.scim.budget import Budget
from service.scim.errors import InvalidFilter
from service.scim.filter.ast import And, AttrPath, Compare, Expr, Not, Or, Present, Value, ValuePath
from service.scim.filter.resolve import (
    NUMBER_TYPES,
    SCHEMAS_ATTRIBUTE,
    lookup_attribute,
    parse_datetime,
)
from service.scim.schema import Attribute, ResourceType


def _get(container: Any, key: str) -> Any:
    """`container[key]` with the key matched case-insensitively, or None."""
    if not isinstance(container, Mapping):
        return None
    if key in container:
        return container[key]
    lowered = key.lower()
    for name, value in container.items():
        if isinstance(name, str) and name.lower() == lowered:
            return value
    return None


def _as_moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return parse_datetime(value)
        except InvalidFilter:
            return None
    return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: bool(a == b),
    "gt": lambda a, b: bool(a > b),
    "ge": lambda a, b: bool(a >= b),
    "lt": lambda a, b: bool(a < b),
    "le": lambda a, b: bool(a <= b),
}


def compare_value(target: Attribute, actual: Any, op: str, expected: Value) -> bool:
    """One stored value against one filter value, per the attribute type and caseExact."""
    if op == "ne":
        return not compare_value(target, actual, "eq", expected)
    kind = target.type
    if kind == "dateTime":
        left, right = _as_moment(actual), _as_moment(expected)
        if left is None or right is None or op not in _ORDER:
            return False
        return _ORDER[op](left, right)
    if kind == "boolean":
        # The stored value must be a real boolean (as in SQL); the filter value may be "true".
        return op == "eq" and isinstance(actual, bool) and actual == _as_bool(expected)
    if kind in NUMBER_TYPES:
        if isinstance(actual, bool) or not isinstance(actual, int | float | Decimal):
            return False
        if isinstance(expected, bool) or not isinstance(expected, int | float) or op not in _ORDER:
            return False
        return _ORDER[op](actual, expected)
    if not isinstance(actual, str) or not isinstance(expected, str):
        return False
    if not target.case_exact:
        actual, expected = actual.lower(), expected.lower()
    if op == "co":
        return expected in actual
    if op == "sw":
        return actual.startswith(expected)
    if op == "ew":
        return actual.endswith(expected)
    return op in _ORDER and _ORDER[op](actual, expected)


def _elements(value: Any) -> list[Any]:
    """The elements of a stored multi-valued attribute; anything but a list has none (as in SQL,
    where a non-array is read as '[]')."""
    return value if isinstance(value, list) else []


def _non_empty(value: Any) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, list):
        return any(_non_empty(v) for v in value)
    if isinstance(value, Mapping):
        return any(_non_empty(v) for v in value.values())
    return True


class _Evaluator:
    def __init__(self, resource_type: ResourceType, budget: Budget) -> None:
        self.resource_type = resource_type
        self.budget = budget

    def expr(self, expr: Expr, element: Any, attribute: Attribute | None) -> bool:
        self.budget.spend()
        if isinstance(expr, And):
            return self.expr(expr.left, element, attribute) and self.expr(expr.right, element, attribute)
        if isinstance(expr, Or):
            return self.expr(expr.left, element, attribute) or self.expr(expr.right, element, attribute)
        if isinstance(expr, Not):
            return not self.expr(expr.expr, element, attribute)
        if isinstance(expr, Present):
            found = self.values(expr.path, element, attribute)
            if found is None:
                return False
            target, values = found
            self.budget.spend(len(values))
            if target.type == "complex" and not target.multi_valued:
                # Present if any sub-attribute is (as in SQL), whatever else the object holds.
                return any(
                    self.expr(Present(AttrPath(expr.path.urn, expr.path.name, s.name)), element, attribute)
                    for s in target.sub_attributes
                )
            return any(_non_empty(v) for v in values)
        if isinstance(expr, Compare):
            if expr.op == "ne":
                return not self.expr(Compare(expr.path, "eq", expr.value), element, attribute)
            found = self.values(expr.path, element, attribute)
            if found is None:
                return False
            target, values = found
            self.budget.spend(len(values))
            if expr.value is None:
                return not any(_non_empty(v) for v in values)
            return any(self.compare(target, v, expr.op, expr.value) for v in values)
        if isinstance(expr, ValuePath):
            if attribute is not None:
                return False
            try:
                urn, outer, _ = lookup_attribute(expr.path, self.resource_type)
            except InvalidFilter:
                return False
            raw = self.raw(urn, outer.name, element)
            items = _elements(raw) if outer.multi_valued else [raw]
            return any(self.expr(expr.filter, item, outer) for item in items)
        return False

    def compare(self, target: Attribute, actual: Any, op: str, expected: Value) -> bool:
        """compare_value, spending for the text it reads (it lower-cases both strings)."""
        if isinstance(actual, str) and isinstance(expected, str):
            self.budget.spend_text(actual, expected)
        return compare_value(target, actual, op, expected)

    def raw(self, urn: str | None, name: str, resource: Any) -> Any:
        container = resource if urn is None else _get(resource, urn)
        return _get(container, name)

    def values(self, path: AttrPath, element: Any, attribute: Attribute | None) -> tuple[Attribute, list[Any]] | None:
        """The attribute compared and the stored values `path` selects (None if unknown)."""
        if attribute is not None:
            member = attribute.sub(path.name) if path.urn is None and path.sub is None else None
            if member is None:
                return None
            return member, [_get(element, member.name)]
        try:
            urn, top, sub = lookup_attribute(path, self.resource_type)
        except InvalidFilter:
            return None
        if top is SCHEMAS_ATTRIBUTE:
            return top, self.schemas_of(element)
        raw = self.raw(urn, top.name, element)
        if top.name == "meta" and sub is not None and sub.name == "resourceType":
            # Fixed per resource type (SqlTarget.constants does the same in SQL).
            return sub, [_get(raw, sub.name) or self.resource_type.name]
        if top.multi_valued:
            items = _elements(raw)
            if sub is None and top.type == "complex" and top.sub("value") is not None:
                sub = top.sub("value")
            if sub is not None:
                return sub, [_get(item, sub.name) for item in items]
            return top, items
        if sub is not None:
            return sub, [_get(raw, sub.name)]
        return top, [raw]

    def schemas_of(self, resource: Any) -> list[Any]:
        stored = _get(resource, "schemas")
        if isinstance(stored, list):
            return stored
        return [self.resource_type.schema.id] + [
            s.id for s in self.resource_type.extensions if _get(resource, s.id) is not None
        ]


def matches(
    expr: Expr,
    element: Mapping[str, Any],
    attribute: Attribute | None,
    resource_type: ResourceType,
    budget: Budget | None = None,
) -> bool:
    """Evaluate a resolved filter against `element`: an element of the multi-valued `attribute`
    (paths relative to the element), or with attribute=None a whole resource with canonical keys
    (extension attributes under their URN key). Multi-valued attributes match if any element does;
    case sensitivity follows caseExact; dateTimes compare as instants. Each node evaluated spends
    one unit of `budget` (a fresh Budget of WORK_BUDGET units when none is given); spent, TooMany."""
    spend = budget if budget is not None else Budget(what="this filter")
    return _Evaluator(resource_type, spend).expr(expr, element, attribute)


__all__ = ["compare_value", "matches"]
