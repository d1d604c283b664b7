"""SCIM filter resolution against the schema (RFC 7644 section 3.4.2.2, RFC 7643 sections 2 and
7): canonical names, value types, null as unassigned."""

from __future__ import annotations

import pytest

from service.scim.errors import InvalidFilter
from service.scim.filter import And, Compare, Not, Present, parse_filter, resolve
from service.scim.schema import ENTERPRISE_USER, GROUP_RESOURCE
from tests.scim.filter_cases import RFC_EXAMPLES, U, parse, path


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
