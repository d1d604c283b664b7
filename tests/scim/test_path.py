"""PATCH attribute paths (RFC 7644 section 3.5.2: PATH = attrPath / valuePath [subAttr])."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.scim.errors import InvalidFilter, InvalidPath
from service.scim.filter import And, AttrPath, Compare
from service.scim.path import PatchPath, UnknownAttribute, parse_path, resolve_path
from service.scim.schema import CORE_USER, ENTERPRISE_USER, GROUP_RESOURCE, USER_RESOURCE

U = USER_RESOURCE


def test_rfc7644_3_5_2_members_value_filter() -> None:
    """RFC 7644 3.5.2.2: `members[value eq "2819c223..."]` selects one member."""
    parsed = parse_path('members[value eq "2819c223"]')
    assert parsed == PatchPath(AttrPath(None, "members", None), Compare(AttrPath(None, "value"), "eq", "2819c223"), None)
    resolved = resolve_path(parsed, GROUP_RESOURCE)
    assert resolved.names == (None, "members", None)
    assert resolved.value_filter == Compare(AttrPath(None, "value"), "eq", "2819c223")


def test_rfc7644_3_5_2_value_filter_then_sub_attribute() -> None:
    """RFC 7644 3.5.2.3: `addresses[type eq "work"].streetAddress`; Entra sends
    `emails[type eq "work"].value`."""
    parsed = parse_path('emails[type eq "work"].value')
    assert parsed == PatchPath(AttrPath(None, "emails"), Compare(AttrPath(None, "type"), "eq", "work"), "value")
    resolved = resolve_path(parsed, U)
    assert resolved.names == (None, "emails", "value")
    assert str(resolved) == "emails.value"
    resolved = resolve_path(parse_path('addresses[type eq "work" and primary eq true].streetAddress'), U)
    assert resolved.sub is not None and resolved.sub.name == "streetAddress"
    assert isinstance(resolved.value_filter, And)


def test_rfc7644_3_10_sub_attribute_path() -> None:
    """RFC 7644 3.10: `name.familyName`."""
    resolved = resolve_path(parse_path("name.familyName"), U)
    assert (resolved.schema_urn, resolved.attribute.name, resolved.sub and resolved.sub.name) == (None, "name", "familyName")
    assert resolved.value_filter is None


def test_rfc7644_3_10_enterprise_urn_paths() -> None:
    """RFC 7644 3.10: extension attributes by their fully qualified URN, with or without sub."""
    resolved = resolve_path(parse_path(f"{ENTERPRISE_USER}:manager"), U)
    assert resolved.names == (ENTERPRISE_USER, "manager", None)
    resolved = resolve_path(parse_path(f"{ENTERPRISE_USER}:manager.value"), U)
    assert resolved.names == (ENTERPRISE_USER, "manager", "value")
    assert str(resolved) == f"{ENTERPRISE_USER}:manager.value"


def test_rfc7644_3_10_core_urn_prefix_is_dropped() -> None:
    """RFC 7644 3.10: `urn:...:core:2.0:User:name.givenName` is `name.givenName`."""
    resolved = resolve_path(parse_path(f"{CORE_USER}:name.givenName"), U)
    assert resolved.names == (None, "name", "givenName")


@pytest.mark.parametrize(
    "text",
    [
        'EMAILS[TYPE EQ "work"].VALUE',
        'emails[Type eq "work"].Value',
        f"{ENTERPRISE_USER.upper()}:MANAGER.VALUE",
        f"{CORE_USER.lower()}:NAME.givenname",
    ],
)
def test_rfc7643_2_1_paths_are_case_insensitive(text: str) -> None:
    """RFC 7643 2.1: attribute names and schema URNs match case-insensitively (Entra sends any
    case); resolve gives the schema's spelling."""
    resolved = resolve_path(parse_path(text), U)
    assert resolved.attribute.name in ("emails", "manager", "name")
    assert resolved.sub is not None and resolved.sub.name in ("value", "givenName")


def test_rfc7644_3_5_2_password_is_a_valid_patch_target() -> None:
    """RFC 7643 4.1.1 password is writeOnly: it cannot be filtered on but it can be replaced."""
    assert resolve_path(parse_path("password"), U).attribute.name == "password"


# (path, what the error's detail says)
UNKNOWN_ATTRIBUTES = [
    ("foo", "unknown attribute 'foo'"),
    ("name.foo", "unknown sub-attribute 'name.foo'"),
    ('emails[type eq "work"].foo', "unknown sub-attribute 'emails.foo'"),
    ("urn:example:ext:1.0:User:x", "unknown schema URN"),
    ("schemas", "unknown attribute 'schemas'"),
]


@pytest.mark.parametrize(("text", "detail"), UNKNOWN_ATTRIBUTES)
def test_rfc7644_3_5_2_unknown_attributes_are_unknown_attribute(text: str, detail: str) -> None:
    """RFC 7644 3.5.2 invalidPath: an unknown attribute is UnknownAttribute (an InvalidPath) so
    the PATCH engine may ignore it."""
    with pytest.raises(UnknownAttribute) as caught:
        resolve_path(parse_path(text), U)
    assert detail in caught.value.detail
    assert caught.value.scim_type == "invalidPath"


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "path is empty"),
        ('emails[type eq "work"', "expected ']'"),
        ('emails[type eq "work"]x', "unexpected 'x'"),
        ('emails[type eq "work"].', "invalid sub-attribute"),
        ("name familyName", "unexpected 'familyName'"),
        ("name..familyName", "expected an attribute path"),
        ('"name"', "expected an attribute path"),
        ("emails]", "unexpected ']'"),
    ],
)
def test_rfc7644_3_5_2_malformed_paths_are_invalid_path(text: str, detail: str) -> None:
    """RFC 7644 3.5.2 and 3.12 invalidPath: "The "path" attribute was invalid or malformed"."""
    with pytest.raises(InvalidPath) as caught:
        resolve_path(parse_path(text), U)
    assert detail in caught.value.detail
    assert not isinstance(caught.value, UnknownAttribute)


# (path, what the error's detail says)
FILTERS_ON_SINGLE_VALUES = [
    ("userName[value eq \"x\"]", "needs a multi-valued complex attribute"),
    ("name[givenName eq \"x\"]", "needs a multi-valued complex attribute"),
    ("emails.value[type eq \"x\"]", "needs a multi-valued complex attribute"),
]


@pytest.mark.parametrize(("text", "detail"), FILTERS_ON_SINGLE_VALUES)
def test_rfc7644_3_5_2_value_filter_on_a_non_multi_valued_attribute_is_invalid_path(text: str, detail: str) -> None:
    """RFC 7644 3.5.2: valuePath applies to multi-valued complex attributes."""
    with pytest.raises(InvalidPath, match=detail):
        resolve_path(parse_path(text), U)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ('emails[type eq work]', "'eq' needs a value"),
        ('emails[type eq "work" and]', "expected an attribute path"),
        ('emails[type eq "wo]', "unterminated string"),
        ('emails[foo eq "x"]', "unknown sub-attribute 'emails.foo'"),
        ('emails[primary eq "x"]', "is a boolean"),
    ],
)
def test_rfc7644_3_12_problems_inside_the_brackets_are_invalid_filter(text: str, detail: str) -> None:
    """RFC 7644 3.12 invalidFilter: the bracket content is a filter (valFilter); its problems are
    reported as filter problems, everything else about the path as invalidPath."""
    with pytest.raises(InvalidFilter, match=detail):
        resolve_path(parse_path(text), U)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_parse_path_on_any_text_raises_only_invalid_path_or_filter(text: str) -> None:
    """RFC 7644 3.5.2: whatever the input, parse_path and resolve_path fail only with
    InvalidPath or InvalidFilter."""
    try:
        resolve_path(parse_path(text), U)
    except (InvalidPath, InvalidFilter):
        pass
