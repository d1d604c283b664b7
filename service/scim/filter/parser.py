"""The filter parser (RFC 7644 section 3.4.2.2, Figure 1): tokens -> the tree of `ast`.

`parse_filter` knows only the grammar. It never raises anything but `InvalidFilter`, whatever the
input: the length and nesting depth are bounded before anything recurses, and `a and b and c ...`
chains are built as balanced trees so that long flat chains do not make deep trees either. The
number of terms (attribute expressions) and the length of each value are bounded too: a filter's
cost in SQL and in memory grows with terms x elements, and a substring match with the length of
the literal times that of the value (docs/security.md).
`Parser` also serves the PATCH path grammar (service/scim/path.py), with another error class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NoReturn

from service.scim.errors import InvalidFilter, ScimError
from service.scim.filter.ast import And, AttrPath, Compare, Expr, Not, Or, Present, Value, ValuePath
from service.scim.filter.lexer import ATTR_NAME, URN, Token, tokenize
from service.scim.limits import MAX_INDEXED_LENGTH

MAX_LENGTH = 4096  # characters of a filter or PATCH path
MAX_DEPTH = 32  # nesting of parentheses and brackets
MAX_TERMS = 100  # attribute expressions (`x eq v`, `x pr`) in one filter or PATCH path
MAX_VALUE_LENGTH = MAX_INDEXED_LENGTH  # characters of one comparison value: any indexed value fits

# compareOp (Figure 1), and the operators that need an ordered or a string value.
COMPARE_OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
ORDER_OPS = frozenset({"gt", "ge", "lt", "le"})
SUBSTRING_OPS = frozenset({"co", "sw", "ew"})


def _split_attr_path(word: str) -> AttrPath | None:
    """`urn:...:name.sub` -> AttrPath, or None if `word` is not an attrPath (RFC 7644 3.10)."""
    urn: str | None = None
    rest = word
    if word[:4].lower() == "urn:":
        cut = word.rfind(":")
        urn, rest = word[:cut], word[cut + 1 :]
        if not URN.fullmatch(urn):
            return None
    parts = rest.split(".")
    if len(parts) > 2 or not all(ATTR_NAME.fullmatch(p) for p in parts):
        return None
    return AttrPath(urn, parts[0], parts[1] if len(parts) == 2 else None)


def _describe(token: Token) -> str:
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


class Parser:
    """Recursive descent over Figure 1; recursion is bounded by `max_depth`."""

    def __init__(
        self, text: str, max_depth: int, error: type[ScimError] = InvalidFilter, max_terms: int = MAX_TERMS
    ) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.max_depth = max_depth
        self.terms = 0
        self.max_terms = max_terms
        self.error = error
        self.in_value_filter = False

    def fail(self, message: str, token: Token) -> NoReturn:
        raise self.error(f"{message} at position {token.pos + 1}")

    def peek(self, ahead: int = 0) -> Token:
        token = self.tokens[min(self.i + ahead, len(self.tokens) - 1)]
        if token.kind == "error":
            self.fail(token.text, token)
        return token

    def advance(self) -> Token:
        token = self.peek()
        self.i += 1
        return token

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text.lower() in words

    def expect(self, kind: str, what: str) -> Token:
        token = self.peek()
        if token.kind != kind:
            self.fail(f"expected {what}, found {_describe(token)}", token)
        return self.advance()

    def expect_end(self) -> None:
        token = self.peek()
        if token.kind != "end":
            self.fail(f"unexpected {_describe(token)}", token)

    def enter(self, token: Token) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            self.fail(f"filter nests deeper than {self.max_depth} levels", token)

    # FILTER = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"; precedence not > and > or.
    def parse_or(self) -> Expr:
        return self.parse_chain("or", Or, self.parse_and)

    def parse_and(self) -> Expr:
        return self.parse_chain("and", And, self.parse_unary)

    def parse_chain(self, word: str, cls: type[And] | type[Or], operand: Callable[[], Expr]) -> Expr:
        """`operand (word operand)*` as one balanced tree of `cls`."""
        items = [operand()]
        while self.at_word(word):
            self.advance()
            items.append(operand())
        return _balanced(cls, items)

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

    def count_term(self, token: Token) -> None:
        self.terms += 1
        if self.terms > self.max_terms:
            self.fail(f"filter has more than {self.max_terms} terms", token)

    # attrExp = (attrPath SP "pr") / (attrPath SP compareOp SP compValue); valuePath
    def parse_attr_exp(self) -> Expr:
        path = self.attr_path()
        token = self.peek()
        if token.kind == "[":
            inner = self.parse_value_filter()
            self.expect("]", "']' to close the value filter")
            after = self.peek()
            if after.kind == "word" and after.text.startswith("."):
                return ValuePath(path, And(inner, self.parse_sub_condition()))
            return ValuePath(path, inner)
        return self.parse_condition(path)

    def parse_sub_condition(self) -> Expr:
        """`emails[type eq "work"].value eq "x"` (Entra, when an admin makes a value path the
        matching attribute) reads as `emails[type eq "work" and value eq "x"]`: the condition
        on the sub-attribute joins the value filter (RFC 7644 3.4.2.2 valuePath)."""
        token = self.advance()
        sub = _split_attr_path(token.text[1:])
        if sub is None or sub.urn is not None or sub.sub is not None:
            self.fail(f"expected a sub-attribute name after ']', found {_describe(token)}", token)
        return self.parse_condition(AttrPath(None, sub.name))

    def parse_condition(self, path: AttrPath) -> Expr:
        """`pr`, or a comparison operator and its value, after an attribute path."""
        token = self.peek()
        if token.kind != "word":
            self.fail(f"expected an operator after '{path}', found {_describe(token)}", token)
        op = token.text.lower()
        self.count_term(token)
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
    def _is_literal(token: Token) -> bool:
        if token.kind in ("string", "number"):
            return True
        return token.kind == "word" and token.text.lower() in ("true", "false", "null")

    def literal(self, token: Token) -> Value:
        if len(token.value if token.kind == "string" else token.text) > MAX_VALUE_LENGTH:
            self.fail(f"a value in a filter is longer than {MAX_VALUE_LENGTH} characters", token)
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


def check_text(text: str, what: str, error: type[ScimError], max_length: int = MAX_LENGTH) -> None:
    """The bounds checked before anything is parsed (a filter, a PATCH path): a string, at most
    `max_length` characters, not blank. Raises `error` naming `what`."""
    if not isinstance(text, str):
        raise error(f"{what} must be a string")
    if len(text) > max_length:
        raise error(f"{what} is longer than {max_length} characters")
    if not text.strip():
        raise error(f"{what} is empty")


def parse_filter(
    text: str, *, max_length: int = MAX_LENGTH, max_depth: int = MAX_DEPTH, max_terms: int = MAX_TERMS
) -> Expr:
    """Parse a SCIM filter (RFC 7644 section 3.4.2.2). Raises only InvalidFilter."""
    check_text(text, "filter", InvalidFilter, max_length)
    parser = Parser(text, max_depth, max_terms=max_terms)
    expr = parser.parse_or()
    parser.expect_end()
    return expr


__all__ = [
    "COMPARE_OPS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_TERMS",
    "MAX_VALUE_LENGTH",
    "ORDER_OPS",
    "SUBSTRING_OPS",
    "Parser",
    "check_text",
    "parse_filter",
]
