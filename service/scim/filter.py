"""SCIM filters: lexer -> parser -> AST -> resolve -> matches / to_sql (RFC 7644 section 3.4.2.2).

    expr = resolve(parse_filter('userName eq "bjensen"'), USER_RESOURCE)
    sql, params = to_sql(expr, USERS_TARGET)     # ('lower(u.user_name) = lower($1)', ['bjensen'])

- `parse_filter` knows only the grammar (Figure 1 ABNF). It never raises anything but
  `InvalidFilter`, whatever the input: the length and nesting depth are bounded before anything
  recurses, and `a and b and c ...` chains are built as balanced trees so that long flat chains do
  not make deep trees either.
- `resolve` checks every attribute against the schema data and returns the tree with canonical
  names; `matches` evaluates a resolved tree in memory; `to_sql` translates it into a
  parameterised PostgreSQL boolean expression with the `SqlTarget` map as the only source of SQL
  identifiers.

Semantics chosen where the RFC is silent (the same in `matches` and `to_sql`):

- `ne` is `not eq`: an absent attribute is "not equal"; for a multi-valued attribute `ne` means
  no element is equal.
- `eq null` is "not present" and `ne null` is "present" (RFC 7643 section 2.5: null and
  unassigned are equivalent); `resolve` rewrites them to `not (x pr)` / `x pr`.
- A multi-valued complex attribute compared without sub-attribute means its `value`
  (`emails co "x"` is `emails.value co "x"`).
- Leniencies: a boolean attribute compared with the strings "true"/"false" (any case) is compared
  with the boolean; a string attribute compared with an integer is compared with its decimal text
  (`employeeNumber eq 12345`).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NoReturn, TypeAlias

from service.scim.errors import InvalidFilter, ScimError
from service.scim.schema import Attribute, ResourceType

Value: TypeAlias = str | int | float | bool | None

COMPARE_OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
ORDER_OPS = frozenset({"gt", "ge", "lt", "le"})
SUBSTRING_OPS = frozenset({"co", "sw", "ew"})
STRING_TYPES = frozenset({"string", "reference", "binary"})
NUMBER_TYPES = frozenset({"integer", "decimal"})

MAX_LENGTH = 4096
MAX_DEPTH = 32


# --------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class AttrPath:
    """`[URI ":"] ATTRNAME ["." subAttr]`; `urn` is None for core and common attributes."""

    urn: str | None
    name: str
    sub: str | None = None

    def __str__(self) -> str:
        text = f"{self.urn}:{self.name}" if self.urn else self.name
        return f"{text}.{self.sub}" if self.sub else text


@dataclass(frozen=True)
class Compare:
    path: AttrPath
    op: str  # eq ne co sw ew gt ge lt le, lower case
    value: Value


@dataclass(frozen=True)
class Present:
    path: AttrPath


@dataclass(frozen=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not:
    expr: Expr


@dataclass(frozen=True)
class ValuePath:
    """`emails[type eq "work"]`: paths inside `filter` are relative to one element."""

    path: AttrPath
    filter: Expr


Expr: TypeAlias = Compare | Present | And | Or | Not | ValuePath


# --------------------------------------------------------------------------------------------
# Lexer


@dataclass(frozen=True)
class _Token:
    kind: str  # ( ) [ ] word string number error end
    text: str  # the source text, or the message for an error token
    pos: int  # 0-based offset in the source
    value: Any = None


_WORD_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ$.")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._-$")
_WHITESPACE = frozenset(" \t\r\n")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_NAME = re.compile(r"\$ref|[A-Za-z][A-Za-z0-9_-]*", re.IGNORECASE)
_URN = re.compile(r"urn:[A-Za-z0-9._:-]+", re.IGNORECASE)


def _tokenize(text: str) -> list[_Token]:
    """Split `text` into tokens. Never raises: a lexical error becomes an `error` token, which the
    parser reports (as InvalidFilter or InvalidPath) when it reaches it."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
        elif c in "()[]":
            tokens.append(_Token(c, c, i))
            i += 1
        elif c == '"':
            token, i = _lex_string(text, i)
            tokens.append(token)
            if token.kind == "error":
                return tokens
        elif c == "-" or (c.isascii() and c.isdigit()):
            m = _NUMBER.match(text, i)
            end = m.end() if m else i + 1
            if m is None or (end < n and text[end] in _WORD_CHARS):
                while end < n and text[end] in _WORD_CHARS:
                    end += 1
                tokens.append(_Token("error", f"invalid number {text[i:end]!r}", i))
                return tokens
            tokens.append(_Token("number", m.group(), i))
            i = end
        elif c in _WORD_START:
            j = i + 1
            while j < n and text[j] in _WORD_CHARS:
                j += 1
            tokens.append(_Token("word", text[i:j], i))
            i = j
        else:
            tokens.append(_Token("error", f"unexpected character {c!r}", i))
            return tokens
    tokens.append(_Token("end", "", n))
    return tokens


def _lex_string(text: str, start: int) -> tuple[_Token, int]:
    """A JSON string literal starting at the quote at `start` (RFC 8259 section 7)."""
    out: list[str] = []
    i, n = start + 1, len(text)
    while True:
        if i >= n:
            return _Token("error", "unterminated string", start), n
        c = text[i]
        if c == '"':
            return _Token("string", text[start : i + 1], start, "".join(out)), i + 1
        if c == "\\":
            if i + 1 >= n:
                return _Token("error", "unterminated string", start), n
            e = text[i + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
                continue
            if e != "u":
                return _Token("error", f"invalid escape '\\{e}' in string", i), n
            code, i = _hex4(text, i)
            if code is None:
                return _Token("error", "invalid \\u escape in string", start), n
            if 0xD800 <= code <= 0xDBFF:
                low = _hex4(text, i)[0] if text.startswith("\\u", i) else None
                if low is None or not 0xDC00 <= low <= 0xDFFF:
                    return _Token("error", "unpaired surrogate escape in string", start), n
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                i += 6
            elif 0xDC00 <= code <= 0xDFFF:
                return _Token("error", "unpaired surrogate escape in string", start), n
            if code == 0:
                return _Token("error", "NUL character (\\u0000) in string", start), n
            out.append(chr(code))
            continue
        if ord(c) < 0x20:
            return _Token("error", "unescaped control character in string", i), n
        if 0xD800 <= ord(c) <= 0xDFFF:
            return _Token("error", "unpaired surrogate in string", i), n
        out.append(c)
        i += 1


def _hex4(text: str, i: int) -> tuple[int | None, int]:
    """The code of the `\\uXXXX` escape at `i` and the offset after it."""
    digits = text[i + 2 : i + 6]
    if not _HEX4.fullmatch(digits):
        return None, i
    return int(digits, 16), i + 6


# --------------------------------------------------------------------------------------------
# Parser


def _split_attr_path(word: str) -> AttrPath | None:
    """`urn:...:name.sub` -> AttrPath, or None if `word` is not an attrPath (RFC 7644 3.10)."""
    urn: str | None = None
    rest = word
    if word[:4].lower() == "urn:":
        cut = word.rfind(":")
        urn, rest = word[:cut], word[cut + 1 :]
        if not _URN.fullmatch(urn):
            return None
    parts = rest.split(".")
    if len(parts) > 2 or not all(_NAME.fullmatch(p) for p in parts):
        return None
    return AttrPath(urn, parts[0], parts[1] if len(parts) == 2 else None)


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "end of input"
    text = token.text if len(token.text) <= 40 else token.text[:37] + "..."
    return repr(text)


def _balanced(cls: type[And] | type[Or], items: list[Expr]) -> Expr:
    """`a op b op c op d` as op(op(a, b), op(c, d)): same meaning (and/or are associative), depth
    log2(n) instead of n, so that no walk over the tree comes near the recursion limit."""
    while len(items) > 1:
        items = [
            cls(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
            for i in range(0, len(items), 2)
        ]
    return items[0]


class _Parser:
    """Recursive descent over Figure 1; recursion is bounded by `max_depth`."""

    def __init__(self, text: str, max_depth: int, error: type[ScimError] = InvalidFilter) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.max_depth = max_depth
        self.error = error
        self.in_value_filter = False

    def fail(self, message: str, token: _Token) -> NoReturn:
        raise self.error(f"{message} at position {token.pos + 1}")

    def peek(self, ahead: int = 0) -> _Token:
        token = self.tokens[min(self.i + ahead, len(self.tokens) - 1)]
        if token.kind == "error":
            self.fail(token.text, token)
        return token

    def advance(self) -> _Token:
        token = self.peek()
        self.i += 1
        return token

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text.lower() in words

    def expect(self, kind: str, what: str) -> _Token:
        token = self.peek()
        if token.kind != kind:
            self.fail(f"expected {what}, found {_describe(token)}", token)
        return self.advance()

    def expect_end(self) -> None:
        token = self.peek()
        if token.kind != "end":
            self.fail(f"unexpected {_describe(token)}", token)

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            self.fail(f"filter nests deeper than {self.max_depth} levels", token)

    # FILTER = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"; precedence not > and > or.
    def parse_or(self) -> Expr:
        items = [self.parse_and()]
        while self.at_word("or"):
            self.advance()
            items.append(self.parse_and())
        return _balanced(Or, items)

    def parse_and(self) -> Expr:
        items = [self.parse_unary()]
        while self.at_word("and"):
            self.advance()
            items.append(self.parse_unary())
        return _balanced(And, items)

    def parse_unary(self) -> Expr:
        token = self.peek()
        if token.kind == "(":
            return self.parse_group()
        if token.kind == "word" and token.text.lower() == "not":
            if self.peek(1).kind != "(":
                self.fail("expected '(' after 'not'", self.peek(1))
            self.advance()
            return Not(self.parse_group())
        return self.parse_attr_exp()

    def parse_group(self) -> Expr:
        opening = self.advance()
        self.enter(opening)
        expr = self.parse_or()
        self.expect(")", "')' to close the '(' at position " + str(opening.pos + 1))
        self.depth -= 1
        return expr

    def attr_path(self) -> AttrPath:
        token = self.peek()
        path = _split_attr_path(token.text) if token.kind == "word" else None
        if path is None:
            self.fail(f"expected an attribute path, found {_describe(token)}", token)
        self.advance()
        return path

    def parse_value_filter(self) -> Expr:
        opening = self.advance()
        if self.in_value_filter:
            self.fail("value filters cannot be nested", opening)
        self.enter(opening)
        self.in_value_filter = True
        inner = self.parse_or()
        self.in_value_filter = False
        self.depth -= 1
        return inner

    # attrExp = (attrPath SP "pr") / (attrPath SP compareOp SP compValue); valuePath
    def parse_attr_exp(self) -> Expr:
        path = self.attr_path()
        token = self.peek()
        if token.kind == "[":
            inner = self.parse_value_filter()
            self.expect("]", "']' to close the value filter")
            after = self.peek()
            if after.kind == "word" and after.text.startswith("."):
                self.fail(
                    "a sub-attribute after ']' is allowed only in a PATCH path; "
                    "put the condition inside the brackets instead",
                    after,
                )
            return ValuePath(path, inner)
        if token.kind != "word":
            self.fail(f"expected an operator after '{path}', found {_describe(token)}", token)
        op = token.text.lower()
        if op == "pr":
            self.advance()
            if self._is_literal(self.peek()):
                self.fail("'pr' takes no value", self.peek())
            return Present(path)
        if op not in COMPARE_OPS:
            self.fail(f"unknown operator {token.text!r} (expected pr, eq, ne, co, sw, ew, gt, ge, lt or le)", token)
        self.advance()
        value_token = self.peek()
        if not self._is_literal(value_token):
            self.fail(f"'{op}' needs a value (a string, number, true, false or null), found {_describe(value_token)}", value_token)
        value = self.literal(self.advance())
        if op in ORDER_OPS and (value is None or isinstance(value, bool)):
            self.fail(f"'{op}' cannot compare with {value_token.text.lower()}", value_token)
        if op in SUBSTRING_OPS and not isinstance(value, str):
            self.fail(f"'{op}' needs a string value, found {value_token.text}", value_token)
        return Compare(path, op, value)

    @staticmethod
    def _is_literal(token: _Token) -> bool:
        if token.kind in ("string", "number"):
            return True
        return token.kind == "word" and token.text.lower() in ("true", "false", "null")

    def literal(self, token: _Token) -> Value:
        if token.kind == "string":
            value: str = token.value
            return value
        if token.kind == "word":
            return {"true": True, "false": False, "null": None}[token.text.lower()]
        text = token.text
        try:
            if any(c in text for c in ".eE"):
                number = float(text)
                if not math.isfinite(number):
                    self.fail(f"number {_describe(token)} is out of range", token)
                return number
            return int(text)
        except ValueError:
            self.fail(f"number {_describe(token)} is out of range", token)


def parse_filter(text: str, *, max_length: int = MAX_LENGTH, max_depth: int = MAX_DEPTH) -> Expr:
    """Parse a SCIM filter (RFC 7644 section 3.4.2.2). Raises only InvalidFilter."""
    if not isinstance(text, str):
        raise InvalidFilter("filter must be a string")
    if len(text) > max_length:
        raise InvalidFilter(f"filter is longer than {max_length} characters")
    if not text.strip():
        raise InvalidFilter("filter is empty")
    parser = _Parser(text, max_depth)
    expr = parser.parse_or()
    parser.expect_end()
    return expr


# --------------------------------------------------------------------------------------------
# Resolve: names against the schema

# RFC 7643 section 3: every resource carries "schemas"; it is not in the schema attribute lists,
# so filters on it (`schemas eq "urn:...:enterprise:2.0:User"`, RFC 7644 Figure 2) resolve here.
SCHEMAS_ATTRIBUTE = Attribute(
    "schemas", multi_valued=True, mutability="readOnly", returned="always",
    description="The schema URIs the resource conforms to.",
)


def lookup_attribute(
    path: AttrPath,
    resource_type: ResourceType,
    *,
    error: type[ScimError] = InvalidFilter,
    allow_schemas: bool = True,
) -> tuple[str | None, Attribute, Attribute | None]:
    """The schema URN (None for core and common attributes), attribute and sub-attribute that an
    absolute `path` names, matched case-insensitively (RFC 7643 section 2.1). Raises `error`."""
    urn: str | None = None
    if path.urn is not None:
        schema = resource_type.schema_by_urn(path.urn)
        if schema is None:
            raise error(f"unknown schema URN '{path.urn}' in '{path}'")
        if schema is resource_type.schema:
            attribute = resource_type.top_level(path.name)
        else:
            urn = schema.id
            attribute = schema.attribute(path.name)
    elif allow_schemas and path.name.lower() == "schemas":
        attribute = SCHEMAS_ATTRIBUTE
    else:
        attribute = resource_type.top_level(path.name)
    if attribute is None:
        raise error(f"unknown attribute '{path}'")
    sub: Attribute | None = None
    if path.sub is not None:
        sub = attribute.sub(path.sub)
        if sub is None:
            raise error(f"unknown sub-attribute '{path}'")
    return urn, attribute, sub


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 dateTime (RFC 7643 section 2.3.5) as an aware datetime; naive means UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidFilter(f"{text!r} is not an ISO 8601 dateTime") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _coerce(target: Attribute, where: str, op: str, value: Value) -> Value:
    """Check (and leniently convert) a comparison value against the attribute type."""
    kind = target.type
    if kind in STRING_TYPES:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise InvalidFilter(f"'{where}' is a string; compare it with a quoted string")
        return value
    if kind == "boolean":
        if op not in ("eq", "ne"):
            raise InvalidFilter(f"'{op}' cannot be used with the boolean attribute '{where}'")
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise InvalidFilter(f"'{where}' is a boolean; compare it with true or false")
        return value
    if kind in NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidFilter(f"'{where}' is a number; compare it with a number")
        return value
    if kind == "dateTime":
        if op in SUBSTRING_OPS:
            raise InvalidFilter(f"'{op}' cannot be used with the dateTime attribute '{where}'")
        if not isinstance(value, str):
            raise InvalidFilter(f"'{where}' is a dateTime; compare it with a quoted ISO 8601 string")
        parse_datetime(value)
        return value
    raise InvalidFilter(f"'{where}' ({kind}) cannot be compared")


def _check_filterable(where: str, *attributes: Attribute | None) -> None:
    for attribute in attributes:
        if attribute is not None and attribute.returned == "never":
            raise InvalidFilter(f"'{where}' cannot be used in a filter")


class _Resolver:
    def __init__(self, resource_type: ResourceType) -> None:
        self.resource_type = resource_type

    def expr(self, expr: Expr, element: Attribute | None) -> Expr:
        if isinstance(expr, And):
            return And(self.expr(expr.left, element), self.expr(expr.right, element))
        if isinstance(expr, Or):
            return Or(self.expr(expr.left, element), self.expr(expr.right, element))
        if isinstance(expr, Not):
            return Not(self.expr(expr.expr, element))
        if isinstance(expr, ValuePath):
            return self.value_path(expr, element)
        if isinstance(expr, Present):
            return Present(self.path(expr.path, element)[0])
        if isinstance(expr, Compare):
            return self.compare(expr, element)
        raise InvalidFilter(f"not a filter expression: {type(expr).__name__}")

    def path(self, path: AttrPath, element: Attribute | None) -> tuple[AttrPath, Attribute, Attribute | None]:
        """Canonical path, its attribute and sub-attribute (relative to `element` if given)."""
        if element is None:
            urn, attribute, sub = lookup_attribute(path, self.resource_type)
            canonical = AttrPath(urn, attribute.name, sub.name if sub else None)
            _check_filterable(str(canonical), attribute, sub)
            return canonical, attribute, sub
        if path.urn is not None or path.sub is not None:
            raise InvalidFilter(
                f"'{path}' inside '{element.name}[...]' must be a sub-attribute name of {element.name}"
            )
        member = element.sub(path.name)
        if member is None:
            raise InvalidFilter(f"unknown sub-attribute '{element.name}.{path.name}'")
        _check_filterable(f"{element.name}.{member.name}", member)
        return AttrPath(None, member.name, None), member, None

    def compare(self, expr: Compare, element: Attribute | None) -> Expr:
        if expr.op not in COMPARE_OPS:
            raise InvalidFilter(f"unknown operator {expr.op!r}")
        path, attribute, sub = self.path(expr.path, element)
        if expr.value is None:
            if expr.op not in ("eq", "ne"):
                raise InvalidFilter(f"'{expr.op}' cannot compare with null")
            # RFC 7643 section 2.5: null and unassigned are the same state.
            return Not(Present(path)) if expr.op == "eq" else Present(path)
        if sub is None and attribute.type == "complex":
            value_sub = attribute.sub("value")
            if not attribute.multi_valued or value_sub is None:
                example = attribute.sub_attributes[0].name if attribute.sub_attributes else "x"
                raise InvalidFilter(
                    f"'{path}' is a complex attribute; compare one of its sub-attributes, "
                    f"e.g. {path}.{example}"
                )
            sub = value_sub
            path = AttrPath(path.urn, path.name, value_sub.name)
        target = sub or attribute
        value = _coerce(target, str(path), expr.op, expr.value)
        return Compare(path, expr.op, value)

    def value_path(self, expr: ValuePath, element: Attribute | None) -> Expr:
        if element is not None:
            raise InvalidFilter("value filters cannot be nested")
        path, attribute, sub = self.path(expr.path, None)
        if sub is not None or attribute.type != "complex":
            raise InvalidFilter(f"'{path}[...]': a value filter needs a complex attribute")
        return ValuePath(path, self.expr(expr.filter, attribute))


def resolve(expr: Expr, resource_type: ResourceType) -> Expr:
    """Validate every attribute of `expr` against the schema and canonicalise the names: schema
    case, core URN dropped, extension URN in canonical case. Raises InvalidFilter. Idempotent."""
    return _Resolver(resource_type).expr(expr, None)


def resolve_within(expr: Expr, attribute: Attribute, resource_type: ResourceType) -> Expr:
    """Resolve a value filter whose paths are relative to an element of the complex `attribute`
    (the part inside `emails[...]`)."""
    if attribute.type != "complex":
        raise InvalidFilter(f"'{attribute.name}[...]': a value filter needs a complex attribute")
    return _Resolver(resource_type).expr(expr, attribute)


# --------------------------------------------------------------------------------------------
# In-memory evaluation


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
    def __init__(self, resource_type: ResourceType) -> None:
        self.resource_type = resource_type

    def expr(self, expr: Expr, element: Any, attribute: Attribute | None) -> bool:
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
            if expr.value is None:
                return not any(_non_empty(v) for v in values)
            return any(compare_value(target, v, expr.op, expr.value) for v in values)
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
    expr: Expr, element: Mapping[str, Any], attribute: Attribute | None, resource_type: ResourceType
) -> bool:
    """Evaluate a resolved filter against `element`: an element of the multi-valued `attribute`
    (paths relative to the element), or with attribute=None a whole resource with canonical keys
    (extension attributes under their URN key). Multi-valued attributes match if any element does;
    case sensitivity follows caseExact; dateTimes compare as instants."""
    return _Evaluator(resource_type).expr(expr, element, attribute)


# --------------------------------------------------------------------------------------------
# SQL translation


@dataclass(frozen=True)
class Column:
    sql: str  # e.g. "u.user_name"
    type: str = "string"  # string boolean dateTime integer decimal uuid
    case_exact: bool = False


@dataclass(frozen=True)
class Relation:
    """A multi-valued attribute kept in another table (groups of a user, members of a group).
    `exists_sql` must be a SELECT ending in a WHERE condition: predicates are appended with AND."""

    exists_sql: str
    columns: dict[str, Column]  # lower-case sub-attribute -> column


@dataclass(frozen=True)
class SqlTarget:
    resource_type: ResourceType
    columns: dict[str, Column]  # lower-cased dotted path ("username", "meta.created") -> column
    json_column: str  # jsonb column with every other attribute, e.g. "u.resource"
    relations: dict[str, Relation] = field(default_factory=dict)  # lower-cased attr -> relation
    # Attributes fixed per target, compared in Python; "meta.resourcetype" defaults to the
    # resource type's name.
    constants: dict[str, str] = field(default_factory=dict)
    # lower-cased "attr.sub" of a multi-valued attribute -> an indexed SQL text[] expression of the
    # lower-cased values of that sub-attribute (e.g. a GIN expression index over the emails):
    # `eq` on it gets `<expr> @> ARRAY[lower($n)]` in front of the exact EXISTS, so the lookup
    # IdPs make by email is an index probe, not a scan of the tenant.
    value_indexes: dict[str, str] = field(default_factory=dict)


_SQL_OPS = {"eq": "=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_SAFE_KEY = re.compile(r"[A-Za-z0-9:._$-]+")
_LIKE_SPECIAL = re.compile(r"([\\%_])")


def _key(name: str) -> str:
    """A JSON key as a SQL string literal. Keys come from the schema, never from the request;
    the check keeps it that way if someone ever breaks that."""
    if not _SAFE_KEY.fullmatch(name):
        raise InvalidFilter(f"attribute name {name!r} cannot be used in SQL")
    return f"'{name}'"


def _like_pattern(op: str, value: str) -> str:
    escaped = _LIKE_SPECIAL.sub(r"\\\1", value)
    return {"co": f"%{escaped}%", "sw": f"{escaped}%", "ew": f"%{escaped}"}[op]


def _path_key(path: AttrPath) -> str:
    dotted = f"{path.name}.{path.sub}" if path.sub else path.name
    return (f"{path.urn}:{dotted}" if path.urn else dotted).lower()


@dataclass(frozen=True)
class _JsonSlot:
    """A value inside jsonb: `base -> key`, or the scalar `base` itself when key is None."""

    base: str
    key: str | None
    attribute: Attribute

    @property
    def jsonb(self) -> str:
        return f"({self.base}->{_key(self.key)})" if self.key else self.base

    @property
    def text(self) -> str:
        return f"({self.base}->>{_key(self.key)})" if self.key else f"({self.base} #>> '{{}}')"


class _SqlBuilder:
    def __init__(self, target: SqlTarget, first_param: int) -> None:
        self.target = target
        self.first_param = first_param
        self.params: list[Any] = []
        self.aliases = 0

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${self.first_param + len(self.params) - 1}"

    def alias(self) -> str:
        self.aliases += 1
        return f"e{self.aliases}"

    # -- expressions ----------------------------------------------------------------------------
    # Every leaf is TRUE/FALSE or NULL where the attribute is absent. In a positive position NULL
    # acts as FALSE (AND/OR are monotone, WHERE drops NULL), so leaves stay bare and indexable:
    # `lower(u.user_name) = lower($1)`. Under NOT that would drop the row instead of keeping it,
    # so a negation is always `NOT coalesce(x, false)`, and `ne` is `NOT coalesce(<eq>, false)`:
    # `not (title eq "x")` and `title ne "x"` both match users without a title.
    def expr(self, expr: Expr, leaf: Callable[[Compare | Present], str]) -> str:
        if isinstance(expr, And):
            return f"({self.expr(expr.left, leaf)} AND {self.expr(expr.right, leaf)})"
        if isinstance(expr, Or):
            return f"({self.expr(expr.left, leaf)} OR {self.expr(expr.right, leaf)})"
        if isinstance(expr, Not):
            return f"(NOT coalesce({self.expr(expr.expr, leaf)}, false))"
        if isinstance(expr, Compare) and expr.op == "ne":
            return f"(NOT coalesce({leaf(Compare(expr.path, 'eq', expr.value))}, false))"
        if isinstance(expr, Compare | Present):
            return leaf(expr)
        if isinstance(expr, ValuePath):
            return self.value_path(expr)
        raise InvalidFilter(f"not a filter expression: {type(expr).__name__}")

    def resource_leaf(self, expr: Compare | Present) -> str:
        target = self.target
        urn, attribute, sub = lookup_attribute(expr.path, target.resource_type)
        path = AttrPath(urn, attribute.name, sub.name if sub else None)
        key = _path_key(path)
        constants = {"meta.resourcetype": target.resource_type.name, **target.constants}
        if key in constants:
            constant = constants[key]
            if isinstance(expr, Present):
                return "TRUE" if constant else "FALSE"
            return "TRUE" if compare_value(sub or attribute, constant, expr.op, expr.value) else "FALSE"
        if key in target.columns:
            column = target.columns[key]
            if isinstance(expr, Present):
                return self.present_column(column)
            return self.compare_column(column, str(path), expr.op, expr.value)
        if urn is None and attribute.name.lower() in target.relations:
            return self.relation_leaf(target.relations[attribute.name.lower()], attribute, sub, expr)
        if attribute is SCHEMAS_ATTRIBUTE:
            return self.schemas_leaf(expr)
        base = target.json_column if urn is None else f"{target.json_column}->{_key(urn)}"
        if attribute.multi_valued:
            array = _JsonSlot(base, attribute.name, attribute).jsonb
            if isinstance(expr, Present) and sub is None:
                return f"(CASE WHEN jsonb_typeof({array}) = 'array' THEN jsonb_array_length({array}) > 0 ELSE false END)"
            alias = self.alias()
            if attribute.type == "complex":
                if sub is None:
                    raise InvalidFilter(f"'{path}' is a complex attribute; compare one of its sub-attributes")
                slot = _JsonSlot(f"{alias}.v", sub.name, sub)
            else:
                slot = _JsonSlot(f"{alias}.v", None, attribute)
            exists = self.exists_element(array, alias, self.json_leaf(slot, str(path), expr))
            return self.with_value_index(attribute, sub, expr, exists)
        if sub is not None:
            return self.json_leaf(_JsonSlot(f"{base}->{_key(attribute.name)}", sub.name, sub), str(path), expr)
        if attribute.type == "complex":
            if isinstance(expr, Compare):
                raise InvalidFilter(f"'{path}' is a complex attribute; compare one of its sub-attributes")
            # `name pr`: present if any sub-attribute is (each through its own column or jsonb).
            parts = [self.resource_leaf(Present(AttrPath(urn, attribute.name, s.name)))
                     for s in attribute.sub_attributes]
            if "TRUE" in parts:
                return "TRUE"
            return "(" + " OR ".join(parts) + ")" if parts else "FALSE"
        return self.json_leaf(_JsonSlot(base, attribute.name, attribute), str(path), expr)

    def exists_element(self, array: str, alias: str, predicate: str) -> str:
        source = f"CASE WHEN jsonb_typeof({array}) = 'array' THEN {array} ELSE '[]'::jsonb END"
        return f"EXISTS (SELECT 1 FROM jsonb_array_elements({source}) AS {alias}(v) WHERE {predicate})"

    def value_path(self, expr: ValuePath) -> str:
        target = self.target
        urn, attribute, _ = lookup_attribute(expr.path, target.resource_type)
        if attribute.type != "complex":
            raise InvalidFilter(f"'{expr.path}[...]': a value filter needs a complex attribute")
        inner = resolve_within(expr.filter, attribute, target.resource_type)
        if urn is None and attribute.name.lower() in target.relations:
            relation = target.relations[attribute.name.lower()]

            def relation_leaf(leaf: Compare | Present) -> str:
                return self.relation_column_leaf(relation, attribute, attribute.sub(leaf.path.name), leaf)

            return f"EXISTS ({relation.exists_sql} AND {self.expr(inner, relation_leaf)})"
        if not attribute.multi_valued:
            # `name[givenName eq "x"]` is `name.givenName eq "x"`: reuse the resource paths.
            def absolute(leaf: Compare | Present) -> str:
                path = AttrPath(urn, attribute.name, leaf.path.name)
                return self.resource_leaf(Compare(path, leaf.op, leaf.value) if isinstance(leaf, Compare) else Present(path))

            return self.expr(inner, absolute)
        base = target.json_column if urn is None else f"{target.json_column}->{_key(urn)}"
        array = _JsonSlot(base, attribute.name, attribute).jsonb
        alias = self.alias()

        def element_leaf(leaf: Compare | Present) -> str:
            sub = attribute.sub(leaf.path.name)
            if sub is None:
                raise InvalidFilter(f"unknown sub-attribute '{attribute.name}.{leaf.path.name}'")
            return self.json_leaf(_JsonSlot(f"{alias}.v", sub.name, sub), f"{attribute.name}.{sub.name}", leaf)

        exists = self.exists_element(array, alias, self.expr(inner, element_leaf))
        for conjunct in _conjuncts(inner):
            if isinstance(conjunct, Compare) and conjunct.path.sub is None:
                exists = self.with_value_index(attribute, attribute.sub(conjunct.path.name), conjunct, exists)
        return exists

    def with_value_index(self, attribute: Attribute, sub: Attribute | None, expr: Compare | Present, exists: str) -> str:
        """Put an index probe in front of an EXISTS over a multi-valued attribute when the
        comparison is a case-insensitive `eq` on an indexed sub-attribute (see SqlTarget)."""
        if sub is None or not isinstance(expr, Compare) or expr.op != "eq" or not isinstance(expr.value, str):
            return exists
        if sub.case_exact:
            return exists
        index = self.target.value_indexes.get(f"{attribute.name}.{sub.name}".lower())
        if index is None:
            return exists
        return f"({index} @> ARRAY[lower({self.param(expr.value)})]::text[] AND {exists})"

    # -- relations ------------------------------------------------------------------------------
    def relation_leaf(self, relation: Relation, attribute: Attribute, sub: Attribute | None, expr: Compare | Present) -> str:
        if sub is None:
            if isinstance(expr, Compare):
                raise InvalidFilter(f"'{attribute.name}' is a complex attribute; compare one of its sub-attributes")
            return f"EXISTS ({relation.exists_sql})"
        return f"EXISTS ({relation.exists_sql} AND {self.relation_column_leaf(relation, attribute, sub, expr)})"

    def relation_column_leaf(self, relation: Relation, attribute: Attribute, sub: Attribute | None, expr: Compare | Present) -> str:
        column = relation.columns.get(sub.name.lower()) if sub is not None else None
        if sub is None or column is None:
            raise InvalidFilter(f"filtering on '{attribute.name}.{expr.path.name if sub is None else sub.name}' is not supported")
        if isinstance(expr, Present):
            return self.present_column(column)
        return self.compare_column(column, f"{attribute.name}.{sub.name}", expr.op, expr.value)

    def schemas_leaf(self, expr: Compare | Present) -> str:
        """`schemas` is derived: the core URN always, an extension URN when its key is present."""
        if isinstance(expr, Present):
            return "TRUE"
        resource_type = self.target.resource_type
        if compare_value(SCHEMAS_ATTRIBUTE, resource_type.schema.id, expr.op, expr.value):
            return "TRUE"
        parts = [
            f"({self.target.json_column}->{_key(s.id)}) IS NOT NULL"
            for s in resource_type.extensions
            if compare_value(SCHEMAS_ATTRIBUTE, s.id, expr.op, expr.value)
        ]
        return "(" + " OR ".join(parts) + ")" if parts else "FALSE"

    # -- columns --------------------------------------------------------------------------------
    def present_column(self, column: Column) -> str:
        if column.type == "string":
            return f"{column.sql} <> ''"
        return f"{column.sql} IS NOT NULL"

    def compare_column(self, column: Column, where: str, op: str, value: Value) -> str:
        kind = column.type
        if kind == "uuid":
            if op == "eq":
                try:
                    parsed = uuid.UUID(value) if isinstance(value, str) else None
                except ValueError:
                    parsed = None
                # A value that is no UUID equals no row; never let PostgreSQL reject the cast.
                return f"{column.sql} = {self.param(parsed)}::uuid" if parsed else "FALSE"
            return self.compare_text(f"{column.sql}::text", column.case_exact, where, op, value)
        if kind in ("string", "reference", "binary"):
            return self.compare_text(column.sql, column.case_exact, where, op, value)
        return self.compare_typed(column.sql, kind, where, op, value)

    def compare_text(self, sql: str, case_exact: bool, where: str, op: str, value: Value) -> str:
        if not isinstance(value, str):
            raise InvalidFilter(f"'{where}' is a string; compare it with a quoted string")
        if op in SUBSTRING_OPS:
            pattern = self.param(_like_pattern(op, value))
            if case_exact:
                return f"{sql} LIKE {pattern} ESCAPE '\\'"
            return f"lower({sql}) LIKE lower({pattern}) ESCAPE '\\'"
        left, right = (sql, self.param(value)) if case_exact else (f"lower({sql})", f"lower({self.param(value)})")
        if op in ORDER_OPS:  # code point order, as in `matches`, whatever the database collation
            right += ' COLLATE "C"'
        return f"{left} {_SQL_OPS[op]} {right}"

    def compare_typed(self, sql: str, kind: str, where: str, op: str, value: Value) -> str:
        """Boolean, number and dateTime comparisons; `sql` is the value, already of the type."""
        if kind == "boolean":
            if op != "eq" or not isinstance(value, bool):
                raise InvalidFilter(f"'{where}' is a boolean; only eq/ne with true or false apply")
            return f"{sql} = {self.param(value)}::boolean"
        if kind in NUMBER_TYPES:
            if isinstance(value, bool) or not isinstance(value, int | float) or op not in _SQL_OPS:
                raise InvalidFilter(f"'{where}' is a number; compare it with a number")
            number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
            return f"{sql} {_SQL_OPS[op]} {self.param(number)}::numeric"
        if kind == "dateTime":
            if not isinstance(value, str) or op not in _SQL_OPS:
                raise InvalidFilter(f"'{where}' is a dateTime; compare it with eq, ne, gt, ge, lt or le")
            return f"{sql} {_SQL_OPS[op]} {self.param(parse_datetime(value))}::timestamptz"
        raise InvalidFilter(f"'{where}' ({kind}) cannot be compared")

    # -- jsonb ----------------------------------------------------------------------------------
    def json_leaf(self, slot: _JsonSlot, where: str, expr: Compare | Present) -> str:
        kind = slot.attribute.type
        if isinstance(expr, Present):
            if kind in STRING_TYPES or kind == "dateTime":
                return f"{slot.text} <> ''"
            return f"jsonb_typeof({slot.jsonb}) <> 'null'"
        if kind in STRING_TYPES:
            return self.compare_text(slot.text, slot.attribute.case_exact, where, expr.op, expr.value)
        # Guarded casts: a stored value of the wrong JSON type compares as NULL, never an error.
        if kind == "boolean":
            value = f"(CASE WHEN jsonb_typeof({slot.jsonb}) = 'boolean' THEN ({slot.jsonb})::boolean END)"
        elif kind in NUMBER_TYPES:
            value = f"(CASE WHEN jsonb_typeof({slot.jsonb}) = 'number' THEN ({slot.jsonb})::numeric END)"
        elif kind == "dateTime":
            value = f"(CASE WHEN pg_input_is_valid({slot.text}, 'timestamptz') THEN ({slot.text})::timestamptz END)"
        else:
            raise InvalidFilter(f"'{where}' ({kind}) cannot be compared")
        return self.compare_typed(value, kind, where, expr.op, expr.value)


def _conjuncts(expr: Expr) -> list[Expr]:
    """The terms of a top-level AND chain (the expression itself if it is not an AND)."""
    if isinstance(expr, And):
        return _conjuncts(expr.left) + _conjuncts(expr.right)
    return [expr]


def to_sql(expr: Expr, target: SqlTarget, *, first_param: int = 1) -> tuple[str, list[Any]]:
    """Translate a filter into a PostgreSQL boolean expression and its parameters ($n from
    `first_param`). Values are only ever parameters; identifiers come only from `target`. The
    filter is resolved first (a no-op on a resolved filter). Raises only InvalidFilter."""
    expr = resolve(expr, target.resource_type)
    builder = _SqlBuilder(target, first_param)
    return builder.expr(expr, builder.resource_leaf), builder.params


__all__ = [
    "COMPARE_OPS",
    "SCHEMAS_ATTRIBUTE",
    "And",
    "AttrPath",
    "Column",
    "Compare",
    "Expr",
    "Not",
    "Or",
    "Present",
    "Relation",
    "SqlTarget",
    "Value",
    "ValuePath",
    "compare_value",
    "lookup_attribute",
    "matches",
    "parse_datetime",
    "parse_filter",
    "resolve",
    "resolve_within",
    "to_sql",
]
