"""sortBy -> ORDER BY (RFC 7644 section 3.4.2.3): `sort_sql` with the `SqlTarget` column map that
`to_sql` uses; identifiers come only from the target and the schema."""

from __future__ import annotations

import pytest

from service.scim.errors import InvalidFilter, InvalidValue
from service.scim.filter import json_key, sort_sql
from service.scim.schema import ENTERPRISE_USER
from tests.scim.filter_cases import GROUPS, USERS

PRIMARY_EMAIL = (
    "coalesce((SELECT x FROM jsonb_array_elements(CASE WHEN jsonb_typeof((u.resource->'emails')) = 'array' "
    "THEN (u.resource->'emails') ELSE '[]'::jsonb END) x WHERE x->>'primary' = 'true' LIMIT 1), "
    "(u.resource->'emails')->0)"
)


def test_rfc7644_3_4_2_3_sort_by_a_column() -> None:
    """A mapped column sorts by the column; case-insensitive strings sort by lower()."""
    assert sort_sql("userName", USERS, False) == "lower(u.user_name) ASC NULLS LAST"
    assert sort_sql("USERNAME", USERS, True) == "lower(u.user_name) DESC NULLS FIRST"
    assert sort_sql("externalId", USERS, False) == "u.external_id ASC NULLS LAST"
    assert sort_sql("meta.created", USERS, True) == "u.created DESC NULLS FIRST"
    assert sort_sql("displayName", GROUPS, False) == "lower(g.display_name) ASC NULLS LAST"


def test_rfc7644_3_4_2_3_sort_by_jsonb_attributes() -> None:
    assert sort_sql("title", USERS, False) == "lower((u.resource->>'title')) ASC NULLS LAST"
    assert sort_sql("name.familyName", USERS, False) == (
        "lower(((u.resource->'name')->>'familyName')) ASC NULLS LAST"
    )
    assert sort_sql(f"{ENTERPRISE_USER}:manager.value", USERS, False) == (
        f"lower((((u.resource->'{ENTERPRISE_USER}')->'manager')->>'value')) ASC NULLS LAST"
    )


def test_rfc7644_3_4_2_3_multi_valued_sorts_by_the_primary_value_else_the_first() -> None:
    assert sort_sql("emails", USERS, False) == f"lower(({PRIMARY_EMAIL}->>'value')) ASC NULLS LAST"
    assert sort_sql("emails.type", USERS, True) == f"lower(({PRIMARY_EMAIL}->>'type')) DESC NULLS FIRST"


@pytest.mark.parametrize(
    ("sort_by", "detail"),
    [
        ("name", "cannot sort by the complex attribute 'name'"),
        ("userName eq", "is not an attribute path"),
        ("nope", "unknown attribute 'nope'"),
        ("schemas", "unknown attribute 'schemas'"),
    ],
)
def test_rfc7644_3_4_2_3_bad_sort_by_is_invalid_value(sort_by: str, detail: str) -> None:
    with pytest.raises(InvalidValue, match=detail):
        sort_sql(sort_by, USERS, False)


def test_json_key_quotes_schema_names_and_refuses_anything_else() -> None:
    assert json_key("emails") == "'emails'"
    assert json_key(ENTERPRISE_USER) == f"'{ENTERPRISE_USER}'"
    with pytest.raises(InvalidFilter, match="cannot be used in SQL"):
        json_key("x'; DROP TABLE users; --")
