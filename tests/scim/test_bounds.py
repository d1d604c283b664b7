"""The input bounds of the protocol layer (service/scim/limits.py, docs/security.md; issue 12
items 1, 7 and 8): every string, value list, resource, filter and paging number a client sends
is bounded and refused with a SCIM 400 naming the limit (RFC 7644 3.12), never passed on to fail
in PostgreSQL or in int().
"""

from __future__ import annotations

from typing import Any

import pytest

from service.scim.errors import InvalidFilter, InvalidValue
from service.scim.filter import MAX_TERMS, MAX_VALUE_LENGTH, parse_filter, resolve
from service.scim.limits import (
    MAX_BINARY_LENGTH,
    MAX_INDEXED_LENGTH,
    MAX_MEMBERS,
    MAX_RESOURCE_BYTES,
    MAX_START_INDEX,
    MAX_STORED_VALUES,
    MAX_STRING_LENGTH,
)
from service.scim.patch import apply_patch
from service.scim.path import parse_path
from service.scim.query import parse_query
from service.scim.resource import check_bounds, normalize
from service.scim.schema import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE_USER,
    GROUP_RESOURCE,
    USER_RESOURCE,
)
from tests.support import patch

BTREE_ROW_LIMIT = 2704  # bytes: PostgreSQL's maximum btree index row (version 4)


def user(**extra: Any) -> dict[str, Any]:
    return {"schemas": [CORE_USER], "userName": "bjensen", **extra}


def refused(body: dict[str, Any], *words: str, resource_type: Any = USER_RESOURCE) -> str:
    with pytest.raises(InvalidValue) as caught:
        normalize(body, resource_type)
    for word in words:
        assert word in caught.value.detail, (word, caught.value.detail)
    return caught.value.detail


def test_indexed_attributes_fit_a_btree_row_whatever_the_characters() -> None:
    """Issue 12 item 1: a userName (or externalId, displayName, email, group displayName) longer
    than MAX_INDEXED_LENGTH is refused, and the longest one accepted, in 4-byte characters and
    lower-cased, with a tenant id, stays under PostgreSQL's 2,704-byte btree row."""
    longest = "\U0001f600" * MAX_INDEXED_LENGTH
    assert 16 + len(longest.lower().encode()) + 32 < BTREE_ROW_LIMIT
    too_long = "x" * (MAX_INDEXED_LENGTH + 1)
    assert normalize(user(userName=longest), USER_RESOURCE).resource["userName"] == longest
    for body in (user(userName=too_long), user(externalId=too_long), user(displayName=too_long),
                 user(emails=[{"value": too_long}])):
        refused(body, f"longer than {MAX_INDEXED_LENGTH} characters")
    refused({"schemas": [CORE_GROUP], "displayName": "g" * 2676}, "'displayName'", str(MAX_INDEXED_LENGTH),
            resource_type=GROUP_RESOURCE)
    refused(user(userName="u" * 2676), "'userName'", str(MAX_INDEXED_LENGTH))


def test_other_strings_and_binary_values_are_bounded() -> None:
    """Every string attribute has a bound (MAX_STRING_LENGTH; binary MAX_BINARY_LENGTH): a 1 MB
    title (the `title co` reproducer of issue 12 item 8) cannot be stored."""
    refused(user(title="t" * 1_000_000), "'title'", f"longer than {MAX_STRING_LENGTH}")
    refused(user(name={"givenName": "g" * (MAX_STRING_LENGTH + 1)}), "'name.givenName'")
    refused(user(**{ENTERPRISE_USER: {"department": "d" * (MAX_STRING_LENGTH + 1)}}), "department")
    refused(user(password="p" * (MAX_STRING_LENGTH + 1)), "'password'")
    cert = "A" * MAX_BINARY_LENGTH
    assert normalize(user(x509Certificates=[{"value": cert}]), USER_RESOURCE).resource["x509Certificates"]
    refused(user(x509Certificates=[{"value": cert + "A"}]), f"longer than {MAX_BINARY_LENGTH}")
    assert normalize(user(title="t" * MAX_STRING_LENGTH), USER_RESOURCE).resource["title"]


@pytest.mark.parametrize("body", [
    user(userName="a\x00b"),
    user(title="x\x00"),
    user(name={"familyName": "\x00"}),
    user(emails=[{"value": "a@x", "display": "d\x00"}]),
    user(**{ENTERPRISE_USER: {"manager": {"value": "m\x00"}}}),
    user(password="Sup3r\x00S3cret"),
    user(userName="lone \ud800 surrogate"),
    {"schemas": [CORE_GROUP], "displayName": "g\x00"},
    {"schemas": [CORE_GROUP], "displayName": "g", "members": [{"value": "a\x00"}]},
])
def test_nul_and_lone_surrogates_are_refused_in_every_string(body: dict[str, Any]) -> None:
    """Issue 12 item 7: PostgreSQL's text and jsonb cannot hold U+0000, and a lone surrogate is
    not UTF-8; either used to reach the database and fail there (a 500)."""
    resource_type = GROUP_RESOURCE if body["schemas"] == [CORE_GROUP] else USER_RESOURCE
    detail = refused(body, resource_type=resource_type)
    assert "U+0000" in detail or "surrogate" in detail


def test_values_of_a_multi_valued_attribute_and_members_are_bounded() -> None:
    """At most MAX_STORED_VALUES values per attribute are stored; at most MAX_MEMBERS members
    are named in one create or PUT."""
    emails = [{"value": f"e{i}@example.com"} for i in range(MAX_STORED_VALUES)]
    assert len(normalize(user(emails=emails), USER_RESOURCE).resource["emails"]) == MAX_STORED_VALUES
    refused(user(emails=[*emails, {"value": "one@more"}]), "'emails'", f"more than {MAX_STORED_VALUES} values")
    refused(user(roles=[{"value": f"r{i}"} for i in range(MAX_STORED_VALUES + 1)]), "'roles'")
    members = [{"value": f"m{i}"} for i in range(MAX_MEMBERS + 1)]
    refused({"schemas": [CORE_GROUP], "displayName": "g", "members": members}, f"more than {MAX_MEMBERS}",
            resource_type=GROUP_RESOURCE)


def test_a_resource_is_bounded_in_size() -> None:
    """Values within their own bounds can still add up: a resource holds at most
    MAX_RESOURCE_BYTES of JSON."""
    addresses = [{"formatted": "a" * MAX_STRING_LENGTH, "type": "work"} for _ in range(40)]
    refused(user(addresses=addresses), f"at most {MAX_RESOURCE_BYTES} bytes")


def test_check_bounds_refuses_what_a_patch_would_store() -> None:
    """RFC 7644 3.5.2: the PATCH engine merges values into the current resource, so the bounds
    are checked on its result (the use cases call check_bounds after apply_patch)."""
    current = normalize(user(emails=[{"value": f"e{i}@x"} for i in range(MAX_STORED_VALUES)]), USER_RESOURCE).resource
    result = apply_patch(current, patch({"op": "add", "path": "emails", "value": [{"value": "more@x"}]}), USER_RESOURCE)
    with pytest.raises(InvalidValue, match=f"more than {MAX_STORED_VALUES} values"):
        check_bounds(result.resource, USER_RESOURCE)
    with pytest.raises(InvalidValue, match=r"U\+0000"):
        apply_patch(current, patch({"op": "replace", "path": "title", "value": "a\x00b"}), USER_RESOURCE)
    with pytest.raises(InvalidValue, match=str(MAX_INDEXED_LENGTH)):
        apply_patch(current, patch({"op": "replace", "value": {"userName": "u" * 2676}}), USER_RESOURCE)


def test_filters_are_bounded_in_terms_and_value_length() -> None:
    """RFC 7644 3.4.2.2 filters cost terms x elements, and a substring match the literal's length
    times the value's: at most MAX_TERMS terms and MAX_VALUE_LENGTH characters per value, in a
    filter and inside a PATCH path's brackets."""
    terms = " or ".join(f'userName eq "{i}"' for i in range(MAX_TERMS))
    parse_filter(terms, max_length=10_000)
    with pytest.raises(InvalidFilter, match=f"more than {MAX_TERMS} terms"):
        parse_filter(terms + ' or title pr', max_length=10_000)
    with pytest.raises(InvalidFilter, match=f"more than {MAX_TERMS} terms"):
        parse_path("emails[" + " or ".join(f'value eq "{i}"' for i in range(MAX_TERMS + 1)) + "].display")
    parse_filter('title co "' + "x" * MAX_VALUE_LENGTH + '"')
    for text in ('title co "' + "x" * 4070 + '"', 'title co "' + "x" * (MAX_VALUE_LENGTH + 1) + '"',
                 "title eq " + "9" * (MAX_VALUE_LENGTH + 1)):
        with pytest.raises(InvalidFilter, match=f"longer than {MAX_VALUE_LENGTH} characters"):
            parse_filter(text)


@pytest.mark.parametrize("text", [
    'meta.created gt "0001-01-01T00:00:00+14:00"',
    'meta.lastModified lt "9999-12-31T23:59:59-01:00"',
])
def test_filter_moments_outside_the_storable_range_are_invalid_filter(text: str) -> None:
    """Issue 12 item 7: a dateTime whose offset takes it before 0001-01-01 or after 9999-12-31
    UTC could not be converted for PostgreSQL (an OverflowError, a 500)."""
    with pytest.raises(InvalidFilter, match="outside the supported range"):
        resolve(parse_filter(text), USER_RESOURCE)


def test_filter_moments_at_the_edges_of_the_range_are_accepted() -> None:
    resolve(parse_filter('meta.created gt "0001-01-01T00:00:00Z"'), USER_RESOURCE)
    resolve(parse_filter('meta.created lt "9999-12-31T23:59:59+00:00"'), USER_RESOURCE)


def query(**params: Any) -> Any:
    return parse_query(params, USER_RESOURCE, default_count=100, max_count=1000)


@pytest.mark.parametrize("start", [
    "99999999999999999999999", 1e300, str(MAX_START_INDEX + 1), "9" * 5000, 10**30,
])
def test_start_index_beyond_the_maximum_is_invalid_value(start: Any) -> None:
    """RFC 7644 3.4.2.4: startIndex is a 1-based integer; one above MAX_START_INDEX used to reach
    OFFSET (bigint out of range) or int() (over 4,300 digits): 400 naming the maximum."""
    with pytest.raises(InvalidValue, match=f"at most {MAX_START_INDEX}"):
        query(startIndex=start)


@pytest.mark.parametrize("raw", ["²", "٣", "1_000", "1.5", 1.5, "0x10", "1e3", True, [1]])
def test_paging_numbers_are_ascii_integers(raw: Any) -> None:
    """str.isdigit() accepts "²", int() accepts "٣" and "1_000": only ASCII digits (or a JSON
    integer) are an integer here."""
    with pytest.raises(InvalidValue):
        query(startIndex=raw)
    with pytest.raises(InvalidValue):
        query(count=raw)


def test_paging_numbers_clamp_as_rfc_7644_3_4_2_4_says() -> None:
    """startIndex < 1 is 1, count < 0 is 0, count above the cap is the cap however large; the
    largest startIndex is accepted."""
    assert query(startIndex="-99999999999999999999999").start_index == 1
    assert query(startIndex=str(MAX_START_INDEX)).start_index == MAX_START_INDEX
    assert query(startIndex=" 7 ").start_index == 7
    assert query(startIndex=1e2).start_index == 100
    assert query(count="9" * 5000).count == 1000
    assert query(count=1e300).count == 1000
    assert query(count="-" + "9" * 30).count == 0

