"""The bounds on client input (docs/security.md): every value a client sends is checked against
one of these before it costs anything or reaches PostgreSQL, and refused with a SCIM 400 whose
detail names the limit (RFC 7644 3.12: invalidValue for values, invalidFilter for filters).

Why these numbers:

- Indexed attributes (INDEXED_ATTRIBUTES: the view indexes of projections/migrations/0003 and the
  audit trail's name index) are at most MAX_INDEXED_LENGTH characters, so at most 2,048 UTF-8
  bytes: with the tenant id and the tuple header, a btree row stays under PostgreSQL's
  2,704-byte limit whatever the characters (lower() of any one character is at most 4 bytes
  too), so no value can fail an index insert in a view or a follower.
- Other strings: MAX_STRING_LENGTH (a URL, an address, a title); binary values (base64 DER
  certificates) MAX_BINARY_LENGTH. A whole stored resource is at most MAX_RESOURCE_BYTES of
  JSON. With filter values of at most MAX_VALUE_LENGTH (service/scim/filter/parser.py), this
  bounds what one row costs a substring filter: PostgreSQL's LIKE is value length x literal
  length in the worst case (tests/bench/test_filter_bounds_bench.py measures it at the bounds).
- No string may hold U+0000 (PostgreSQL's text and jsonb cannot store it) or a lone surrogate
  (not encodable as UTF-8).
- Integers in parameters and cursors are ASCII digits only (str.isdigit accepts "²" and int()
  accepts "٣" and "1_000"); int() sees at most MAX_DIGITS of them (a longer number is simply too
  large), so it never meets Python's 4,300-digit limit and nothing above int64 reaches SQL.
- Moments must lie between 0001-01-01 and 9999-12-31 in UTC once their offset is applied
  (Python's range, inside PostgreSQL's); "0001-01-01T00:00:00+14:00" is before it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from service.scim.errors import InvalidValue, ScimError

MAX_INDEXED_LENGTH = 512  # characters: userName, externalId, displayName, emails.value, members
MAX_STRING_LENGTH = 2048  # characters: every other string or reference (password included)
MAX_BINARY_LENGTH = 8192  # characters: binary attributes (x509Certificates.value, base64)
MAX_STORED_VALUES = 100  # values of one multi-valued attribute as stored (emails, roles, ...)
MAX_MEMBERS = 10_000  # members named in one create, PUT or PATCH operation of a Group
MAX_RESOURCE_BYTES = 64 * 1024  # the stored resource as JSON (UTF-8), after a PATCH too
MAX_START_INDEX = 2**31 - 1  # startIndex above this: 400 (RFC 7644 3.4.2.4, 1-based)
MAX_DIGITS = 18  # digits of an integer parameter or cursor: always below int64
MAX_POSITION = 2**63 - 1  # a log position (bigint)

# Attribute labels (core schema, "attribute" or "attribute.sub") that PostgreSQL indexes.
INDEXED_ATTRIBUTES = frozenset({"userName", "externalId", "displayName", "emails.value"})

_INTEGER = re.compile(r"([+-]?)([0-9]+)")  # ASCII only: re's [0-9] is not \d


def string_problem(value: str, limit: int) -> str | None:
    """Why `value` cannot be stored, or None: NUL, a lone surrogate, more than `limit` characters."""
    if len(value) > limit:
        return f"is longer than {limit} characters"
    if "\x00" in value:
        return "contains U+0000 (NUL), which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate, which is not UTF-8"
    return None


def check_string(value: str, label: str, limit: int, error: type[ScimError] = InvalidValue) -> str:
    """`value` when it can be stored, else `error` naming `label` and the limit."""
    problem = string_problem(value, limit)
    if problem is not None:
        raise error(f"{label} {problem}")
    return value


def string_limit(label: str, kind: str) -> int:
    """The length bound of the attribute with this label (core name, `a.b` for a sub-attribute)."""
    if label in INDEXED_ATTRIBUTES:
        return MAX_INDEXED_LENGTH
    return MAX_BINARY_LENGTH if kind == "binary" else MAX_STRING_LENGTH


def parse_integer(raw: Any, name: str, error: type[ScimError] = InvalidValue) -> int | None:
    """An integer parameter: a JSON integer, an integral JSON number, or a string of ASCII digits
    with an optional sign. Values beyond MAX_DIGITS digits come back as +-(10**MAX_DIGITS), which
    every caller's bound refuses or clamps; None when absent or empty."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise error(f"{name} must be an integer")
    if isinstance(raw, float):
        if not raw.is_integer():
            raise error(f"{name} must be an integer, got {raw!r}")
        raw = int(raw)
    if isinstance(raw, int):
        return max(-(10**MAX_DIGITS), min(raw, 10**MAX_DIGITS))
    if not isinstance(raw, str):
        raise error(f"{name} must be an integer")
    match = _INTEGER.fullmatch(raw.strip())
    if match is None:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise error(f"{name} must be an integer (ASCII digits), got {shown!r}")
    sign, digits = match.groups()
    digits = digits.lstrip("0") or "0"
    value = 10**MAX_DIGITS if len(digits) > MAX_DIGITS else int(digits)
    return -value if sign == "-" else value


def in_utc(moment: dt.datetime, name: str, error: type[ScimError] = InvalidValue) -> dt.datetime:
    """`moment` (aware; naive is UTC) in UTC, or `error` when its offset takes it out of
    0001-01-01..9999-12-31 UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise error(f"{name} is outside the supported range (0001-01-01 to 9999-12-31 UTC)") from None


__all__ = [
    "INDEXED_ATTRIBUTES",
    "MAX_BINARY_LENGTH",
    "MAX_DIGITS",
    "MAX_INDEXED_LENGTH",
    "MAX_MEMBERS",
    "MAX_POSITION",
    "MAX_RESOURCE_BYTES",
    "MAX_START_INDEX",
    "MAX_STORED_VALUES",
    "MAX_STRING_LENGTH",
    "check_string",
    "in_utc",
    "parse_integer",
    "string_limit",
    "string_problem",
]
