"""SCIM filter grammar (RFC 7644 section 3.4.2.2, Figure 1): `parse_filter`, its limits, and its
only failure, InvalidFilter (RFC 7644 section 3.12)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.scim.errors import InvalidFilter
from service.scim.filter import (
    And,
    AttrPath,
    Compare,
    Expr,
    Not,
    Or,
    Present,
    ValuePath,
    parse_filter,
    resolve,
    to_sql,
)
from service.scim.schema import ENTERPRISE_USER
from tests.scim.filter_cases import FUZZ, USERS, U, parse, path


def test_rfc7644_3_4_2_2_attribute_operators_ast() -> None:
    """RFC 7644 3.4.2.2, Table 3: each operator gives a Compare/Present node, op lower-cased."""
    assert parse_filter('userName eq "bjensen"') == Compare(path("userName"), "eq", "bjensen")
    assert parse_filter("title pr") == Present(path("title"))
    for op in ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"):
        assert parse_filter(f'title {op.upper()} "x"') == Compare(path("title"), op, "x")


def test_rfc7644_3_4_2_2_precedence_not_and_or() -> None:
    """RFC 7644 3.4.2.2, Table 5: precedence is grouping, then not, then and, then or."""
    a, b, c = Present(path("a")), Present(path("b")), Present(path("c"))
    assert parse_filter("a pr or b pr and c pr") == Or(a, And(b, c))
    assert parse_filter("a pr and b pr or c pr") == Or(And(a, b), c)
    assert parse_filter("not (a pr) and b pr") == And(Not(a), b)
    assert parse_filter("a pr and (b pr or c pr)") == And(a, Or(b, c))
    assert parse_filter("not (a pr or b pr)") == Not(Or(a, b))
    assert parse_filter("((a pr))") == a


def test_rfc7644_3_4_2_2_operators_and_literals_are_case_insensitive() -> None:
    """RFC 7644 3.4.2.2: "Attribute names and attribute operators used in filters are case
    insensitive"; true/false/null likewise."""
    expr = parse_filter('userName EQ "x" AnD title Pr OR NOT (active Eq TRUE) and x eq NULL and y eq False')
    assert expr == Or(
        And(Compare(path("userName"), "eq", "x"), Present(path("title"))),
        And(And(Not(Compare(path("active"), "eq", True)), Compare(path("x"), "eq", None)),
            Compare(path("y"), "eq", False)),
    )


def test_rfc7643_2_1_attribute_names_resolve_to_schema_case() -> None:
    """RFC 7643 2.1: attribute names are case insensitive; resolve gives the schema's spelling."""
    assert parse('USERNAME eq "x"') == Compare(path("userName"), "eq", "x")
    assert parse('NAME.FAMILYNAME eq "x"') == Compare(path("name", "familyName"), "eq", "x")
    assert parse(f'{ENTERPRISE_USER.upper()}:MANAGER.VALUE eq "x"') == Compare(
        path("manager", "value", ENTERPRISE_USER), "eq", "x")


def test_rfc7644_3_10_fully_qualified_names() -> None:
    """RFC 7644 3.10: core attributes may be prefixed by the core schema URN (dropped by
    resolve); extension attributes carry their schema URN (kept)."""
    text = 'urn:ietf:params:scim:schemas:core:2.0:User:name.givenName eq "Barbara"'
    assert parse_filter(text) == Compare(
        AttrPath("urn:ietf:params:scim:schemas:core:2.0:User", "name", "givenName"), "eq", "Barbara")
    assert parse(text) == Compare(path("name", "givenName"), "eq", "Barbara")
    assert parse(f'{ENTERPRISE_USER}:department eq "R&D"') == Compare(
        path("department", urn=ENTERPRISE_USER), "eq", "R&D")


def test_rfc7644_3_4_2_2_json_string_escapes() -> None:
    """RFC 7644 3.4.2.2: compValue strings are JSON strings (RFC 8259 section 7 escapes)."""
    expr = parse_filter(r'title eq "a\"b\\c\/d\u00e9\n\t\ud83d\ude00"')
    assert expr == Compare(path("title"), "eq", 'a"b\\c/d\u00e9\n\t\U0001f600')
    assert parse_filter('title eq "caf\u00e9 ☕"') == Compare(path("title"), "eq", "caf\u00e9 ☕")


def test_rfc7644_3_4_2_2_numbers_and_literals() -> None:
    """RFC 7644 3.4.2.2: compValue = false / null / true / number / string (JSON numbers)."""
    assert parse_filter("x eq 42").value == 42
    assert parse_filter("x gt -7").value == -7
    assert parse_filter("x le 1.5").value == 1.5
    assert parse_filter("x le -2.5e3").value == -2500.0
    assert parse_filter("x eq true").value is True
    assert parse_filter("x eq false").value is False
    assert parse_filter("x eq null").value is None


def test_rfc7644_3_4_2_2_value_filter_paths_are_relative() -> None:
    """RFC 7644 3.4.2.2: valuePath = attrPath "[" valFilter "]" with paths of the element."""
    assert parse('emails[type eq "work" and value co "@x"]') == ValuePath(
        path("emails"), And(Compare(path("type"), "eq", "work"), Compare(path("value"), "co", "@x")))
    assert parse('EMAILS[not (TYPE eq "work")]') == ValuePath(
        path("emails"), Not(Compare(path("type"), "eq", "work")))


def test_a_sub_attribute_after_a_value_filter_joins_the_filter() -> None:
    """Entra's `emails[type eq "work"].value eq "x"` (an admin's matching attribute) is the
    valuePath `emails[type eq "work" and value eq "x"]` of RFC 7644 3.4.2.2."""
    assert parse_filter('emails[type eq "work"].value eq "x"') == parse_filter('emails[type eq "work" and value eq "x"]')
    assert parse_filter('emails[type eq "work"].value pr') == parse_filter('emails[type eq "work" and value pr]')


def test_rfc7644_3_4_2_2_whitespace_is_lenient() -> None:
    """RFC 7644 3.4.2.2: SP separates tokens; extra spaces, tabs and no space before a quoted
    value are accepted (clients URL-encode loosely)."""
    assert parse_filter('  userName   eq\t"x"  ') == Compare(path("userName"), "eq", "x")
    assert parse_filter('(userName eq"x")') == Compare(path("userName"), "eq", "x")


def test_long_and_chain_builds_a_shallow_tree() -> None:
    """RFC 7644 3.4.2.2 logExp: `a and b and c ...` is associative; the tree is balanced so that
    a long flat filter (Okta-style `id eq .. or id eq ..`) is not a deep one."""
    text = " or ".join(f'id eq "{i}"' for i in range(300))
    expr = parse_filter(text, max_length=10_000, max_terms=300)

    def depth(e: Expr) -> int:
        if isinstance(e, And | Or):
            return 1 + max(depth(e.left), depth(e.right))
        return 1

    assert depth(expr) <= 10
    assert parse_filter("a pr and b pr and c pr") == And(
        And(Present(path("a")), Present(path("b"))), Present(path("c")))


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "filter is empty"),
        ("   ", "filter is empty"),
        ('userName eq "bjensen', "unterminated string at position 13"),
        ('userName eq "a\\q"', "invalid escape '\\q'"),
        ('userName eq "\\u12"', "invalid \\u escape"),
        ('userName eq "\\ud800"', "unpaired surrogate"),
        ('userName eq "\\u0000"', "NUL character"),
        ('userName eq "a\tb"', "unescaped control character"),
        ("userName eq", "'eq' needs a value"),
        ('userName eq "x" and', "expected an attribute path, found end of input"),
        ("userName eq )", "'eq' needs a value"),
        ("userName", "expected an operator after 'userName'"),
        ('userName like "x"', "unknown operator 'like'"),
        ('title pr "x"', "'pr' takes no value"),
        ("title pr true", "'pr' takes no value"),
        ("meta.created gt true", "'gt' cannot compare with true"),
        ("meta.created le null", "'le' cannot compare with null"),
        ("title co 5", "'co' needs a string value"),
        ("title sw true", "'sw' needs a string value"),
        ("title ew null", "'ew' needs a string value"),
        ('(title eq "x"', "expected ')'"),
        ('title eq "x")', "unexpected ')'"),
        ('not title eq "x"', "expected '(' after 'not'"),
        ('emails[type eq "work"', "expected ']'"),
        ('emails[type eq "work"].value', "expected an operator after 'value'"),
        ('emails[type eq "work"].value.x eq "y"', "expected a sub-attribute name after ']'"),
        ('emails[type eq "work"].urn:x:y eq "y"', "expected a sub-attribute name after ']'"),
        ('emails[type eq "w" and x[y eq "z"]]', "value filters cannot be nested"),
        ('userName eq "x" userName eq "y"', "unexpected 'userName'"),
        ("userName eq 01", "invalid number"),
        ("userName eq 1.2.3", "invalid number"),
        ("userName eq 1e999", "out of range"),
        ('userName = "x"', "unexpected character '='"),
        ('1userName eq "x"', "invalid number"),
        ('name.given.family eq "x"', "expected an attribute path"),
        ('urn:x:y: eq "x"', "expected an attribute path"),
        ('_userName eq "x"', "unexpected character '_'"),
    ],
)
def test_rfc7644_3_4_2_2_syntax_errors_are_invalid_filter(text: str, detail: str) -> None:
    """RFC 7644 3.4.2.2 and 3.12: a malformed filter is 400 invalidFilter with a detail that
    says what is wrong and where."""
    with pytest.raises(InvalidFilter) as caught:
        parse_filter(text)
    assert detail in caught.value.detail
    assert caught.value.scim_type == "invalidFilter"


def test_filter_longer_than_max_length_is_invalid_filter() -> None:
    """RFC 7644 3.4.2.2 / 3.12: the server bounds the filter; too long is invalidFilter."""
    with pytest.raises(InvalidFilter, match="longer than 100 characters"):
        parse_filter('title eq "' + "x" * 100 + '"', max_length=100)


def test_filter_nested_deeper_than_max_depth_is_invalid_filter() -> None:
    """RFC 7644 3.4.2.2 grouping: nesting is bounded; deep input never hits RecursionError."""
    ok = "(" * 32 + "title pr" + ")" * 32
    assert parse_filter(ok) == Present(path("title"))
    with pytest.raises(InvalidFilter, match="deeper than 32 levels"):
        parse_filter("(" * 33 + "title pr" + ")" * 33)
    with pytest.raises(InvalidFilter, match="deeper than"):
        parse_filter("not (" * 2000 + "title pr" + ")" * 2000, max_length=100_000)
    with pytest.raises(InvalidFilter, match="deeper than"):
        parse_filter("(" * 100_000, max_length=1_000_000)


FRAGMENTS = [
    "userName", "NAME.familyName", "emails", "emails.value", "title", "active", "meta.created",
    f"{ENTERPRISE_USER}:manager.value", "urn:", "eq", "NE", "co", "sw", "pr", "gt", "and", "OR",
    "not", "(", ")", "[", "]", '"x"', '"\\u00e9"', '"\\', '"', "1", "-2.5e3", "true", "null", " ",
    ".", ".value", "$ref", "\\", "\x00", "é", "\ud800", "1e999", "9" * 30,
]


@FUZZ
@given(st.text(max_size=80))
def test_parse_filter_on_any_text_raises_only_invalid_filter(text: str) -> None:
    """RFC 7644 3.12 invalidFilter: whatever the input, the only failure is InvalidFilter."""
    try:
        expr = parse_filter(text)
    except InvalidFilter:
        return
    try:
        resolve(expr, U)
    except InvalidFilter:
        pass


@FUZZ
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=25).map(" ".join))
def test_parse_filter_on_grammar_fragments_raises_only_invalid_filter(text: str) -> None:
    """RFC 7644 3.4.2.2 Figure 1: near-miss inputs built from grammar tokens fail cleanly."""
    try:
        to_sql(parse_filter(text), USERS)
    except InvalidFilter:
        pass
