"""SCIM filters: grammar, resolution, in-memory evaluation and SQL (RFC 7644 section 3.4.2.2)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.scim.errors import InvalidFilter
from service.scim.filter import (
    And,
    AttrPath,
    Column,
    Compare,
    Expr,
    Not,
    Or,
    Present,
    Relation,
    SqlTarget,
    ValuePath,
    matches,
    parse_filter,
    resolve,
    to_sql,
)
from service.scim.schema import ENTERPRISE_USER, GROUP_RESOURCE, USER_RESOURCE

USERS = SqlTarget(
    resource_type=USER_RESOURCE,
    columns={
        "id": Column("u.id", "uuid", case_exact=True),
        "username": Column("u.user_name"),
        "externalid": Column("u.external_id", case_exact=True),
        "displayname": Column("u.display_name"),
        "active": Column("u.active", "boolean"),
        "meta.created": Column("u.created", "dateTime"),
        "meta.lastmodified": Column("u.last_modified", "dateTime"),
    },
    json_column="u.resource",
    relations={
        "groups": Relation(
            "SELECT 1 FROM group_members m WHERE m.tenant_id = u.tenant_id AND m.member_id = u.id",
            {"value": Column("m.group_id", "uuid")},
        ),
    },
    constants={"meta.resourcetype": "User"},
)
GROUPS = SqlTarget(
    resource_type=GROUP_RESOURCE,
    columns={"id": Column("g.id", "uuid"), "displayname": Column("g.display_name")},
    json_column="g.resource",
    relations={
        "members": Relation(
            "SELECT 1 FROM group_members m WHERE m.tenant_id = g.tenant_id AND m.group_id = g.id",
            {"value": Column("m.member_id", "uuid")},
        ),
    },
    constants={"meta.resourcetype": "Group"},
)

U = USER_RESOURCE
EMAILS = USER_RESOURCE.top_level("emails")


def parse(text: str) -> Expr:
    return resolve(parse_filter(text), U)


def path(name: str, sub: str | None = None, urn: str | None = None) -> AttrPath:
    return AttrPath(urn, name, sub)


# RFC 7644 section 3.4.2.2, Figure 2.
RFC_EXAMPLES = [
    'userName eq "bjensen"',
    "name.familyName co \"O'Malley\"",
    'userName sw "J"',
    'urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"',
    "title pr",
    'meta.lastModified gt "2011-05-13T04:42:34Z"',
    'meta.lastModified ge "2011-05-13T04:42:34Z"',
    'meta.lastModified lt "2011-05-13T04:42:34Z"',
    'meta.lastModified le "2011-05-13T04:42:34Z"',
    'title pr and userType eq "Employee"',
    'title pr or userType eq "Intern"',
    'schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"',
    'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")',
    'userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")',
    'userType eq "Employee" and (emails.type eq "work")',
    'userType eq "Employee" and emails[type eq "work" and value co "@example.com"]',
    'emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]',
]


# ---------------------------------------------------------------------------------------------
# Grammar


@pytest.mark.parametrize("text", RFC_EXAMPLES)
def test_rfc7644_3_4_2_2_figure2_examples_parse_resolve_and_translate(text: str) -> None:
    """RFC 7644 3.4.2.2, Figure 2: every example filter parses, resolves and translates to SQL."""
    expr = resolve(parse_filter(text), U)
    sql, params = to_sql(expr, USERS)
    assert sql
    for value in params:
        if isinstance(value, str):
            assert value.strip("%") not in sql


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


def test_rfc7644_3_4_2_2_whitespace_is_lenient() -> None:
    """RFC 7644 3.4.2.2: SP separates tokens; extra spaces, tabs and no space before a quoted
    value are accepted (clients URL-encode loosely)."""
    assert parse_filter('  userName   eq\t"x"  ') == Compare(path("userName"), "eq", "x")
    assert parse_filter('(userName eq"x")') == Compare(path("userName"), "eq", "x")


def test_long_and_chain_builds_a_shallow_tree() -> None:
    """RFC 7644 3.4.2.2 logExp: `a and b and c ...` is associative; the tree is balanced so that
    a long flat filter (Okta-style `id eq .. or id eq ..`) is not a deep one."""
    text = " or ".join(f'id eq "{i}"' for i in range(300))
    expr = parse_filter(text, max_length=10_000)

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
        ('emails[type eq "work"].value eq "x"', "only in a PATCH path"),
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


# ---------------------------------------------------------------------------------------------
# Resolution against the schema


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ('nickname2 eq "x"', "unknown attribute 'nickname2'"),
        ('name.nick eq "x"', "unknown sub-attribute 'name.nick'"),
        ('emails[foo eq "x"]', "unknown sub-attribute 'emails.foo'"),
        ('urn:example:ext:1.0:User:x eq "y"', "unknown schema URN 'urn:example:ext:1.0:User'"),
        (f'{ENTERPRISE_USER}:userName eq "x"', "unknown attribute"),
        ('name eq "x"', "'name' is a complex attribute; compare one of its sub-attributes"),
        (f'{ENTERPRISE_USER}:manager eq "x"', "is a complex attribute"),
        ('addresses co "x"', "'addresses' is a complex attribute"),
        ('password eq "secret"', "'password' cannot be used in a filter"),
        ("password pr", "'password' cannot be used in a filter"),
        ('userName.x eq "y"', "unknown sub-attribute 'userName.x'"),
        ('userName[value eq "y"]', "a value filter needs a complex attribute"),
        ('emails[value.x eq "y"]', "must be a sub-attribute name of emails"),
        ("userName eq true", "'userName' is a string"),
        ("userName eq 1.5", "'userName' is a string"),
        ('active eq "yes"', "'active' is a boolean"),
        ('emails.primary co "t"', "'co' cannot be used with the boolean attribute 'emails.primary'"),
        ("emails.primary eq 1", "'emails.primary' is a boolean"),
        ('meta.created eq "yesterday"', "'yesterday' is not an ISO 8601 dateTime"),
        ('meta.created sw "2020"', "'sw' cannot be used with the dateTime attribute 'meta.created'"),
        ("meta.created eq 5", "'meta.created' is a dateTime"),
    ],
)
def test_rfc7644_3_4_2_2_resolve_errors_are_invalid_filter(text: str, detail: str) -> None:
    """RFC 7644 3.4.2.2 and 3.12 invalidFilter: "the specified attribute and filter comparison
    combination is not supported"; the detail names the attribute."""
    with pytest.raises(InvalidFilter) as caught:
        parse(text)
    assert detail in caught.value.detail


def test_rfc7644_3_4_2_2_multi_valued_complex_without_sub_means_value() -> None:
    """RFC 7644 3.4.2.2: `emails co "example.com"` compares the `value` sub-attribute."""
    assert parse('emails co "example.com"') == Compare(path("emails", "value"), "co", "example.com")
    assert parse("emails pr") == Present(path("emails"))


def test_rfc7643_2_5_null_is_unassigned() -> None:
    """RFC 7643 2.5: null and unassigned are equivalent, so `eq null` is "not present" and
    `ne null` is "present"."""
    assert parse("title eq null") == Not(Present(path("title")))
    assert parse("title ne null") == Present(path("title"))


def test_boolean_strings_and_integer_strings_are_accepted_leniently() -> None:
    """RFC 7643 2.3.2 booleans: Entra sends "True"/"False" strings; an integer compared with a
    string attribute (employeeNumber) compares with its text."""
    assert parse('active eq "False"') == Compare(path("active"), "eq", False)
    assert parse(f"{ENTERPRISE_USER}:employeeNumber eq 701984") == Compare(
        path("employeeNumber", urn=ENTERPRISE_USER), "eq", "701984")


def test_resolve_is_idempotent() -> None:
    """RFC 7644 3.4.2.2: a resolved filter resolves to itself (to_sql relies on this)."""
    for text in RFC_EXAMPLES:
        once = parse(text)
        assert resolve(once, U) == once


def test_rfc7644_3_4_2_2_group_filters_resolve() -> None:
    """RFC 7644 3.4.2.2 on /Groups: displayName and members (value by default)."""
    expr = resolve(parse_filter('displayName eq "Admins" and members eq "abc"'), GROUP_RESOURCE)
    assert expr == And(Compare(path("displayName"), "eq", "Admins"), Compare(path("members", "value"), "eq", "abc"))


# ---------------------------------------------------------------------------------------------
# In-memory evaluation

BJENSEN = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER],
    "id": "2819c223-7f76-453a-919d-413861904646",
    "externalId": "bjensen",
    "userName": "bjensen@example.com",
    "name": {"familyName": "Jensen", "givenName": "Barbara"},
    "userType": "Employee",
    "active": True,
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.org", "type": "home"},
    ],
    "ims": [{"value": "someaimhandle", "type": "aim"}],
    "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"},
    ENTERPRISE_USER: {"department": "Tour Operations", "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName eq "BJENSEN@example.com"', True),  # caseExact false
        ('externalId eq "BJENSEN"', False),  # caseExact true
        ('externalId eq "bjensen"', True),
        ("name.familyName co \"ens\"", True),
        ('userName sw "bj" and userName ew ".COM"', True),
        ("title pr", False),
        ("not (title pr)", True),
        ('title ne "x"', True),  # absent is "not equal"
        ('not (title eq "x")', True),
        ("title eq null", True),
        ('meta.lastModified gt "2011-05-13T04:42:33Z"', True),
        ('meta.lastModified eq "2011-05-13T06:42:34+02:00"', True),  # instants, not text
        ('meta.lastModified lt "2011-05-13"', False),
        ('emails co "jensen.org"', True),  # any element
        ('emails[type eq "work" and value co "jensen.org"]', False),  # same element
        ('emails.type eq "work" and emails.value co "jensen.org"', True),  # any element each
        ('emails[type eq "home" and value co "jensen.org"]', True),
        ('emails ne "babs@jensen.org"', False),  # ne is "no element equals"
        ("emails.primary eq true", True),
        ('active eq "true"', True),
        (f'{ENTERPRISE_USER}:department eq "tour operations"', True),
        (f'{ENTERPRISE_USER}:manager.value sw "26118915"', True),
        ('schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"', True),
        ('meta.resourceType eq "User"', True),
        ('userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")', True),
        ('userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")', False),
        ('emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]', True),
        ("name pr and emails pr and ims.type pr", True),
        ("addresses pr", False),
    ],
)
def test_rfc7644_3_4_2_2_matches_a_whole_resource(text: str, expected: bool) -> None:
    """RFC 7644 3.4.2.2: filter semantics in memory: caseExact, dateTime instants, any element of
    a multi-valued attribute, value filters over one element (RFC 7643 section 8.2 sample)."""
    assert matches(parse(text), BJENSEN, None, U) is expected


def test_rfc7644_3_5_2_matches_elements_of_a_multi_valued_attribute() -> None:
    """RFC 7644 3.5.2: `emails[type eq "work"]` selects elements; paths are relative to them."""
    assert EMAILS is not None
    selector = resolve(parse_filter('emails[TYPE eq "WORK" and primary eq true]'), U)
    assert isinstance(selector, ValuePath)
    selected = [e for e in BJENSEN["emails"] if matches(selector.filter, e, EMAILS, U)]
    assert selected == [BJENSEN["emails"][0]]
    assert matches(selector, BJENSEN, None, U)


def test_matches_tolerates_odd_stored_shapes() -> None:
    """RFC 7643 2.4: values of unexpected shape never raise, they just do not match (the same
    reading as the SQL: a multi-valued attribute that is not an array has no elements, a stored
    boolean must be a JSON boolean)."""
    odd = {"emails": {"value": "a@x"}, "name": ["x"], "active": "true", "meta": "x"}
    assert not matches(parse('emails co "a@x"'), odd, None, U)  # not an array: no elements
    assert not matches(parse("name pr"), odd, None, U)
    assert not matches(parse('name.familyName eq "x"'), odd, None, U)
    assert not matches(parse("active eq true"), odd, None, U)
    assert not matches(parse('meta.created gt "2020-01-01T00:00:00Z"'), odd, None, U)


# ---------------------------------------------------------------------------------------------
# SQL


def sql_of(text: str, target: SqlTarget = USERS, **kw: int) -> tuple[str, list[object]]:
    return to_sql(resolve(parse_filter(text), target.resource_type), target, **kw)


def test_rfc7644_3_4_2_2_to_sql_username_eq_uses_the_lower_index() -> None:
    """RFC 7644 3.4.2.2 / RFC 7643 4.1.1: userName is caseExact false; the column is compared
    as lower(col) = lower($n) so the lower(user_name) index serves Okta's lookup."""
    assert sql_of('userName eq "Bjensen"') == ("lower(u.user_name) = lower($1)", ["Bjensen"])
    assert sql_of('userName eq "Bjensen"', first_param=3) == ("lower(u.user_name) = lower($3)", ["Bjensen"])


def test_rfc7643_2_2_to_sql_case_exact_column_has_no_lower() -> None:
    """RFC 7643 2.2 caseExact: externalId is case-exact, so it is compared as is."""
    assert sql_of('externalId eq "Ab"') == ("u.external_id = $1", ["Ab"])
    assert sql_of('externalId sw "A"') == ("u.external_id LIKE $1 ESCAPE '\\'", ["A%"])


def test_rfc7644_3_4_2_2_to_sql_substring_operators_escape_like() -> None:
    """RFC 7644 3.4.2.2 co/sw/ew: LIKE with the value's %, _ and \\ escaped, as a parameter."""
    assert sql_of(r'userName co "50%_a\\b"') == (
        "lower(u.user_name) LIKE lower($1) ESCAPE '\\'", ["%50\\%\\_a\\\\b%"])
    assert sql_of('displayName sw "J"')[1] == ["J%"]
    assert sql_of('displayName ew "son"')[1] == ["%son"]


def test_rfc7644_3_4_2_2_to_sql_string_ordering_uses_code_points() -> None:
    """RFC 7644 3.4.2.2 gt/ge/lt/le on strings: lexicographical; collation "C" (code points, as
    `matches` does) so the result does not depend on the database locale."""
    assert sql_of('userName gt "m"') == ('lower(u.user_name) > lower($1) COLLATE "C"', ["m"])


def test_rfc7644_3_10_to_sql_enterprise_urn_path() -> None:
    """RFC 7644 3.10: extension attributes live under the URN key of the jsonb resource."""
    sql, params = sql_of(f'{ENTERPRISE_USER}:manager.value eq "26118915"')
    assert sql == f"lower((u.resource->'{ENTERPRISE_USER}'->'manager'->>'value')) = lower($1)"
    assert params == ["26118915"]
    sql, _ = sql_of(f'{ENTERPRISE_USER}:department pr')
    assert sql == f"(u.resource->'{ENTERPRISE_USER}'->>'department') <> ''"


def test_rfc7644_3_4_2_2_to_sql_value_filter_is_one_exists_over_one_element() -> None:
    """RFC 7644 3.4.2.2 valuePath: both conditions hold for the same element: one EXISTS."""
    sql, params = sql_of('emails[type eq "work" and value co "@x"]')
    assert sql == (
        "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof((u.resource->'emails')) = 'array' "
        "THEN (u.resource->'emails') ELSE '[]'::jsonb END) AS e1(v) "
        "WHERE (lower((e1.v->>'type')) = lower($1) AND lower((e1.v->>'value')) LIKE lower($2) ESCAPE '\\'))"
    )
    assert params == ["work", "%@x%"]


def test_to_sql_aliases_never_clash() -> None:
    """RFC 7644 3.4.2.2: several multi-valued conditions get distinct element aliases."""
    sql, _ = sql_of('emails[type eq "work"] and emails.value co "x" and not (ims[value eq "y"])')
    assert re.findall(r"AS (e\d+)\(v\)", sql) == ["e1", "e2", "e3"]


def test_rfc7644_3_4_2_2_to_sql_not_keeps_rows_without_the_attribute() -> None:
    """RFC 7644 3.4.2.2 not / ne: `not (title eq "x")` and `title ne "x"` must match users with
    no title; SQL NULL would drop them, so negation is NOT coalesce(..., false)."""
    expected = "(NOT coalesce(lower((u.resource->>'title')) = lower($1), false))"
    assert sql_of('not (title eq "x")') == (expected, ["x"])
    assert sql_of('title ne "x"') == (expected, ["x"])
    assert sql_of('userName ne "x"') == ("(NOT coalesce(lower(u.user_name) = lower($1), false))", ["x"])
    assert sql_of("not (title pr)") == ("(NOT coalesce((u.resource->>'title') <> '', false))", [])


def test_rfc7644_3_4_2_2_to_sql_relation_members_and_groups() -> None:
    """RFC 7644 3.4.2.2 / RFC 7643 4.2: members (and a user's groups) live in the membership
    table; `members eq id` means members.value and becomes EXISTS over that table."""
    member = "2819c223-7f76-453a-919d-413861904646"
    exists = "SELECT 1 FROM group_members m WHERE m.tenant_id = g.tenant_id AND m.group_id = g.id"
    assert sql_of(f'members eq "{member}"', GROUPS) == (
        f"EXISTS ({exists} AND m.member_id = $1::uuid)", [UUID(member)])
    assert sql_of(f'members[value eq "{member}"]', GROUPS) == (
        f"EXISTS ({exists} AND m.member_id = $1::uuid)", [UUID(member)])
    assert sql_of("members pr", GROUPS) == (f"EXISTS ({exists})", [])
    sql, params = sql_of(f'groups.value eq "{member.upper()}"')
    assert sql.endswith("AND m.group_id = $1::uuid)") and params == [UUID(member)]
    # members carry value, $ref and type only (RFC 7643 8.7.1): display is no attribute to filter on
    with pytest.raises(InvalidFilter, match=re.escape("unknown sub-attribute 'members.display'")):
        sql_of('members.display eq "x"', GROUPS)


def test_to_sql_uuid_that_does_not_parse_matches_nothing() -> None:
    """RFC 7643 3.1 id: a value that is not a UUID equals no row: FALSE, no cast, no SQL error."""
    assert sql_of('id eq "not-a-uuid"') == ("FALSE", [])
    assert sql_of('id ne "not-a-uuid"') == ("(NOT coalesce(FALSE, false))", [])
    assert sql_of('members eq "x"', GROUPS)[1] == []
    assert sql_of('id sw "2819"') == ("u.id::text LIKE $1 ESCAPE '\\'", ["2819%"])
    assert sql_of('members sw "2819"', GROUPS)[0].endswith("lower(m.member_id::text) LIKE lower($1) ESCAPE '\\')")


def test_rfc7643_2_3_5_to_sql_datetime_is_a_timestamptz_parameter() -> None:
    """RFC 7643 2.3.5 dateTime: compared as an instant; the literal is parsed in Python."""
    assert sql_of('meta.lastModified gt "2011-05-13T04:42:34Z"') == (
        "u.last_modified > $1::timestamptz", [datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)])
    with pytest.raises(InvalidFilter, match="not an ISO 8601 dateTime"):
        sql_of('meta.created gt "13/05/2011"')


def test_to_sql_booleans_and_jsonb_casts_are_guarded() -> None:
    """RFC 7643 2.3.2 boolean: a bool parameter; in jsonb the cast is guarded by jsonb_typeof."""
    assert sql_of("active eq false") == ("u.active = $1::boolean", [False])
    sql, params = sql_of("emails[primary eq true]")
    assert "CASE WHEN jsonb_typeof((e1.v->'primary')) = 'boolean' THEN ((e1.v->'primary'))::boolean END" in sql
    assert params == [True]


def test_rfc7643_4_1_to_sql_meta_resource_type_is_a_constant() -> None:
    """RFC 7643 3.1 meta.resourceType is fixed per endpoint: compared in Python to TRUE/FALSE."""
    assert sql_of('meta.resourceType eq "User"') == ("TRUE", [])
    assert sql_of('meta.resourceType eq "Group"') == ("FALSE", [])
    assert sql_of("meta pr") == ("TRUE", [])


def test_rfc7643_3_to_sql_schemas_is_derived() -> None:
    """RFC 7643 3 schemas: the core URN always; an extension URN when its key is present."""
    assert sql_of('schemas eq "urn:ietf:params:scim:schemas:core:2.0:User"') == ("TRUE", [])
    assert sql_of(f'schemas eq "{ENTERPRISE_USER}"') == (f"((u.resource->'{ENTERPRISE_USER}') IS NOT NULL)", [])
    assert sql_of('schemas eq "urn:nope"') == ("FALSE", [])


def test_to_sql_resolves_unresolved_input() -> None:
    """RFC 7644 3.4.2.2: to_sql validates its input, so a raw parse tree is safe to pass."""
    assert to_sql(parse_filter('USERNAME eq "x"'), USERS) == ("lower(u.user_name) = lower($1)", ["x"])
    with pytest.raises(InvalidFilter, match="unknown attribute 'foo'"):
        to_sql(parse_filter('foo eq "x"'), USERS)


def test_to_sql_presence_shapes() -> None:
    """RFC 7644 3.4.2.2 pr: non-empty value; for arrays at least one element; for a complex
    attribute any of its sub-attributes."""
    assert sql_of("userName pr") == ("u.user_name <> ''", [])
    assert sql_of("active pr") == ("u.active IS NOT NULL", [])
    assert sql_of("emails pr") == (
        "(CASE WHEN jsonb_typeof((u.resource->'emails')) = 'array' THEN jsonb_array_length((u.resource->'emails')) > 0 ELSE false END)", [])
    sql, _ = sql_of("name pr")
    assert sql.startswith("((u.resource->'name'->>'formatted') <> '' OR ")


# ---------------------------------------------------------------------------------------------
# Properties

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

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


MARK = "Zq"  # every generated string value starts with it; it must never reach the SQL text
PLAIN = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8)
STRING = PLAIN.map(lambda s: json.dumps(MARK + s))
MOMENT = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: json.dumps(d.isoformat() + "Z"))
STRING_PATHS = [
    "userName", "USERNAME", "externalId", "displayName", "title", "name.familyName", "emails",
    "emails.value", "emails.type", "ims.value", "addresses.locality", "groups.value", "id",
    "urn:ietf:params:scim:schemas:core:2.0:User:userName", f"{ENTERPRISE_USER}:department",
    f"{ENTERPRISE_USER}:manager.value", "meta.resourceType", "schemas", "x509Certificates.value",
]
ANY_PATHS = [*STRING_PATHS, "active", "emails.primary", "meta.created", "meta.lastModified", "name", "emails", "groups", "addresses"]


def attr_exp() -> st.SearchStrategy[str]:
    string_cmp = st.tuples(st.sampled_from(STRING_PATHS), st.sampled_from(["eq", "NE", "co", "sw", "ew", "gt", "le"]), STRING)
    bool_cmp = st.tuples(st.sampled_from(["active", "emails.primary", "Active"]), st.sampled_from(["eq", "ne"]),
                         st.sampled_from(["true", "FALSE", '"True"']))
    time_cmp = st.tuples(st.sampled_from(["meta.created", "meta.lastModified"]), st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]), MOMENT)
    null_cmp = st.tuples(st.sampled_from(STRING_PATHS), st.sampled_from(["eq", "ne"]), st.just("null"))
    compare = st.one_of(string_cmp, bool_cmp, time_cmp, null_cmp).map(" ".join)
    present = st.sampled_from(ANY_PATHS).map(lambda p: f"{p} pr")
    inner = st.one_of(
        st.tuples(st.sampled_from(["type", "value", "display"]), st.sampled_from(["eq", "co", "ne"]), STRING).map(" ".join),
        st.sampled_from(["primary eq true", "type pr", "value pr"]),
    )
    inner_exp = st.recursive(inner, lambda c: st.one_of(
        st.tuples(c, st.sampled_from(["and", "or"]), c).map(" ".join), c.map(lambda x: f"not ({x})")), max_leaves=4)
    value_path = st.tuples(st.sampled_from(["emails", "ims", "phoneNumbers"]), inner_exp).map(lambda t: f"{t[0]}[{t[1]}]")
    group_vp = inner_exp.filter(lambda x: "primary" not in x and "type" not in x and "display" not in x).map(lambda x: f"groups[{x}]")
    return st.one_of(compare, present, value_path, group_vp)


VALID_FILTERS = st.recursive(
    attr_exp(),
    lambda c: st.one_of(
        st.tuples(c, st.sampled_from(["and", "AND", "or", "Or"]), c).map(" ".join),
        c.map(lambda x: f"({x})"),
        c.map(lambda x: f"not ({x})"),
    ),
    max_leaves=8,
)


@FUZZ
@given(VALID_FILTERS)
def test_to_sql_on_generated_filters_keeps_values_out_of_the_sql(text: str) -> None:
    """RFC 7644 3.4.2.2 + STYLE rule 6: for any valid filter, to_sql raises nothing but
    InvalidFilter, puts every value in a parameter and numbers parameters contiguously."""
    expr = parse_filter(text)
    sql, params = to_sql(resolve(expr, U), USERS, first_param=2)
    assert MARK not in sql
    used = sorted({int(n) for n in re.findall(r"\$(\d+)", sql)})
    assert used == list(range(2, 2 + len(params)))
    for value in params:
        assert isinstance(value, str | bool | datetime | Decimal | UUID)
    assert sql.count("(") == sql.count(")")
    # matches() agrees that the tree is well-formed on the sample resource.
    matches(resolve(expr, U), BJENSEN, None, U)
