"""A work budget for in-memory protocol work that grows with the request and the resource.

The PATCH engine (patch.py) and in-memory filter evaluation (filter/evaluate.py) run on the event
loop. Their cost grows with operations x elements x filter terms: forty operations with a
45-term value filter over a user with 9,000 emails took 20 s, and every other request of the
process waited (issue 12, item 3). A `Budget` counts that work as it is done, one unit at a
time, and refuses the request (400 tooMany, RFC 7644 3.12) once it is spent, before the loop has
been held for long. Nothing is changed: the PATCH engine works on a copy and raises before it
returns anything.

One unit is roughly half a microsecond of CPU (tests/bench/test_patch_budget_bench.py measures
the worst case at the limit): one element of a multi-valued attribute visited by an operation,
one filter term evaluated against one element, one value it reads, TEXT_UNIT characters of the
strings it compares, one character of a PATCH path parsed, and a fixed OPERATION_UNITS per
operation.
"""

from __future__ import annotations

from typing import Any

from service.scim.errors import TooMany

WORK_BUDGET = 20_000  # units of one PATCH, or of one in-memory filter evaluation
OPERATION_UNITS = 10  # the fixed cost of one PATCH operation (parse, resolve, dispatch)
TEXT_UNIT = 256  # characters of a string compared (lower-cased, casefolded) per unit


class Budget:
    """Units of work left; `spend` raises TooMany once more than `limit` have been spent."""

    __slots__ = ("left", "limit", "what")

    def __init__(self, limit: int = WORK_BUDGET, what: str = "this request") -> None:
        self.limit = limit
        self.left = limit
        self.what = what

    def spend(self, units: int = 1) -> None:
        self.left -= units
        if self.left < 0:
            raise TooMany(
                f"{self.what} needs more than {self.limit:,} units of work (the limit on "
                "operations x elements x filter terms); split it into smaller requests or "
                "use simpler filters"
            )

    def spend_text(self, text: str, other: str = "") -> None:
        """Spend for comparing these strings: one unit per TEXT_UNIT characters."""
        size = len(text) + len(other)
        if size >= TEXT_UNIT:
            self.spend(size // TEXT_UNIT)

    @property
    def spent(self) -> int:
        return self.limit - self.left


def value_count(value: Any, limit: int) -> int:
    """The values `value` carries: every element of an array and every member of an object, at
    any depth (a member `{"value": id}` in a list counts two). The walk stops once the count
    passes `limit`, so it costs at most `limit` steps whatever the value holds."""
    count = 0
    stack = [value]
    while stack and count <= limit:
        item = stack.pop()
        if isinstance(item, dict):
            count += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            count += len(item)
            stack.extend(item)
    return count


def count_values(operations: list[Any], limit: int) -> None:
    """Refuse PATCH operations whose `value`s carry more than `limit` values in all (value_count):
    400 tooMany (RFC 7644 3.12) naming the limit."""
    total = 0
    for op in operations:
        if isinstance(op, dict):
            for key, value in op.items():
                if isinstance(key, str) and key.lower() == "value":
                    total += value_count(value, limit - total)
        if total > limit:
            raise TooMany(
                f"a PATCH may carry at most {limit:,} values in all its operations (array "
                "elements and object members); split it into smaller requests"
            )


__all__ = ["OPERATION_UNITS", "TEXT_UNIT", "WORK_BUDGET", "Budget", "count_values", "value_count"]
