"""SCIM filters translated to PostgreSQL (RFC 7644 section 3.4.2.2): `to_sql` against a
`SqlTarget`, values only as parameters."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.scim.errors import InvalidFilter
from service.scim.filter import matches, parse_filter, resolve, to_sql
from service.scim.schema import ENTERPRISE_USER
from tests.scim.filter_cases import BJENSEN, FUZZ, GROUPS, RFC_EXAMPLES, USERS, U, sql_of


@pytest.mark.parametrize("text", RFC_EXAMPLES)
def test_rfc7644_3_4_2_2_figure2_examples_parse_resolve_and_translate(text: str) -> None:
    """RFC 7644 3.4.2.2, Figure 2: every example filter parses, resolves and translates to SQL."""
    expr = resolve(parse_filter(text), U)
    sql, params = to_sql(expr, USERS)
    assert sql
    for value in params:
        if isinstance(value, str):
            assert value.strip("%") not in sql


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
