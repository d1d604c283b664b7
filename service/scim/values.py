"""The values of a multi-valued attribute, indexed for the PATCH engine (patch.py), under a Budget.

`ValueIndex` groups elements by their `value` sub-attribute, so that duplicate checks on add and
value removal stay linear for attributes with thousands of values; `contains` is the match of
one element against another (every sub-attribute given, case per caseExact). Both spend their
work on the request's Budget (service/scim/budget.py): one unit per element indexed or touched
by a lookup, and TEXT_UNIT characters of the strings they casefold.
"""

from __future__ import annotations

from typing import Any

from service.scim.budget import Budget
from service.scim.schema import Attribute

_ABSENT: Any = object()


def _equal(sub: Attribute | None, a: Any, b: Any, budget: Budget) -> bool:
    if isinstance(a, str) and isinstance(b, str) and (sub is None or not sub.case_exact):
        budget.spend_text(a, b)
        return a.casefold() == b.casefold()
    return bool(a == b)


def contains(attribute: Attribute, existing: Any, wanted: Any, budget: Budget) -> bool:
    """True when `existing` holds every sub-attribute of `wanted` (case per caseExact)."""
    if isinstance(existing, dict) and isinstance(wanted, dict):
        budget.spend(len(wanted))
        return all(
            k in existing and _equal(attribute.sub(k), existing[k], v, budget) for k, v in wanted.items()
        )
    return _equal(attribute, existing, wanted, budget)


class ValueIndex:
    """Elements of a multi-valued attribute grouped by their `value` sub-attribute. Indexing and
    each lookup spend one unit per element they touch."""

    def __init__(self, attribute: Attribute, elements: list[Any], budget: Budget) -> None:
        budget.spend(len(elements))
        self.attribute, self.budget = attribute, budget
        self.by_value: dict[Any, list[Any]] = {}
        self.without_value: list[Any] = []
        for element in elements:
            self.add(element)

    def _key(self, element: Any) -> Any:
        if not isinstance(element, dict) or "value" not in element:
            return _ABSENT
        value = element["value"]
        sub = self.attribute.sub("value")
        if isinstance(value, str) and (sub is None or not sub.case_exact):
            self.budget.spend_text(value)
            return value.casefold()
        return value if isinstance(value, str | int | float | bool) else repr(value)

    def add(self, element: Any) -> None:
        key = self._key(element)
        if key is _ABSENT:
            self.without_value.append(element)
        else:
            self.by_value.setdefault(key, []).append(element)

    def candidates(self, wanted: Any) -> list[Any]:
        """Indexed elements that could contain `wanted` (all of them when it has no value)."""
        key = self._key(wanted)
        if key is _ABSENT:
            found = [e for group in self.by_value.values() for e in group] + self.without_value
        else:
            found = self.by_value.get(key, [])
        self.budget.spend(1 + len(found))
        return found

    def wanted_by(self, existing: Any) -> list[Any]:
        """Indexed (wanted) elements that `existing` could contain."""
        key = self._key(existing)
        found = self.without_value
        if key is not _ABSENT:
            found = self.by_value.get(key, []) + found
        self.budget.spend(1 + len(found))
        return found


__all__ = ["ValueIndex", "contains"]
