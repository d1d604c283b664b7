"""Input validation and normalisation of POST/PUT bodies (RFC 7643 2, 4; RFC 7644 3.3, 3.5.1)."""

from __future__ import annotations

import pytest

from projections.domain.decide import Changes, changes_between
from service.scim.errors import InvalidSyntax, InvalidValue
from service.scim.resource import (
    MAX_VALUES,
    normalize,
)
from service.scim.schema import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE_USER,
    GROUP_RESOURCE,
    USER_RESOURCE,
)

MANAGER_ID = "26118915-6090-4610-87e4-49d8ca9f808d"


def bjensen_core() -> dict[str, object]:
    """RFC 7643 8.2's enterprise user: the core attributes, which are stored as sent (a fresh
    copy each call, so the body and the expected resource share no objects)."""
    return {
        "externalId": "701984",
        "userName": "bjensen@example.com",
        "name": {"formatted": "Ms. Barbara J Jensen, III", "familyName": "Jensen", "givenName": "Barbara"},
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": True},
            {"value": "babs@jensen.org", "type": "home"},
        ],
        "active": True,
    }


def user(**extra: object) -> dict[str, object]:
    return {"schemas": [CORE_USER], "userName": "bjensen", **extra}


def test_rfc7643_8_2_full_user_is_stored_in_canonical_shape() -> None:
    """RFC 7643 8.2/8.3: the full enterprise user example keeps its data, loses id/meta/groups
    (readOnly) and the password (writeOnly, handed back separately)."""
    body = {
        "schemas": [CORE_USER, ENTERPRISE_USER],
        "id": "2819c223-7f76-453a-919d-413861904646",
        **bjensen_core(),
        "password": "t1meMa$heen",
        "groups": [{"value": "e9e30dba-f08f-4109-8486-d5c6a331660a", "display": "Tour Guides"}],
        ENTERPRISE_USER: {
            "employeeNumber": "701984",
            "department": "Tour Operations",
            "manager": {"value": MANAGER_ID, "$ref": "../Users/" + MANAGER_ID, "displayName": "John Smith"},
        },
        "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z"},
    }
    out = normalize(body, USER_RESOURCE)
    assert out.password == "t1meMa$heen"
    assert out.members is None
    assert out.resource == {
        "schemas": [CORE_USER, ENTERPRISE_USER],
        **bjensen_core(),
        ENTERPRISE_USER: {
            "employeeNumber": "701984",
            "department": "Tour Operations",
            "manager": {"value": MANAGER_ID, "$ref": "../Users/" + MANAGER_ID},
        },
    }


def test_attribute_names_are_case_insensitive_and_rewritten_canonical() -> None:
    """RFC 7643 2.1: attribute names are case-insensitive."""
    out = normalize({"SCHEMAS": [CORE_USER.upper()], "USERNAME": "b", "Name": {"GIVENNAME": "B"},
                     "EMAILS": [{"VALUE": "b@x", "Primary": True}]}, USER_RESOURCE)
    assert out.resource == {"schemas": [CORE_USER], "userName": "b", "name": {"givenName": "B"},
                            "emails": [{"value": "b@x", "primary": True}]}


def test_missing_schemas_is_accepted_leniently() -> None:
    """RFC 7643 3 makes `schemas` REQUIRED; IdPs omit it rarely, we accept (lenient)."""
    assert normalize({"userName": "b"}, USER_RESOURCE).resource == {"schemas": [CORE_USER], "userName": "b"}


def test_missing_schemas_is_refused_when_strict() -> None:
    """RFC 7643 3: `schemas` is REQUIRED."""
    with pytest.raises(InvalidSyntax):
        normalize({"userName": "b"}, USER_RESOURCE, lenient=False)


def test_schemas_without_the_core_schema_is_invalid_syntax() -> None:
    """RFC 7643 3: `schemas` lists the resource's schema URIs, core included."""
    with pytest.raises(InvalidSyntax):
        normalize({"schemas": [CORE_GROUP], "userName": "b"}, USER_RESOURCE)


def test_body_must_be_an_object() -> None:
    """RFC 7644 3.3: the body is a resource representation (a JSON object)."""
    with pytest.raises(InvalidSyntax):
        normalize(["userName"], USER_RESOURCE)


def test_extension_by_urn_key_in_any_case() -> None:
    """RFC 7643 3.3: extension attributes live under the extension's URN key."""
    out = normalize(user(**{ENTERPRISE_USER.lower(): {"DEPARTMENT": "X"}}), USER_RESOURCE)
    assert out.resource == {"schemas": [CORE_USER, ENTERPRISE_USER], "userName": "bjensen",
                            ENTERPRISE_USER: {"department": "X"}}


def test_extension_by_fully_qualified_keys() -> None:
    """RFC 7644 3.10: an attribute may be named by its fully qualified URN."""
    out = normalize(user(**{f"{ENTERPRISE_USER}:department": "X", f"{ENTERPRISE_USER}:manager": MANAGER_ID}),
                    USER_RESOURCE)
    assert out.resource[ENTERPRISE_USER] == {"department": "X", "manager": {"value": MANAGER_ID}}


def test_fully_qualified_core_attribute() -> None:
    """RFC 7644 3.10: `urn:...:core:2.0:User:userName` names the core attribute."""
    out = normalize({f"{CORE_USER}:userName": "b"}, USER_RESOURCE)
    assert out.resource["userName"] == "b"


def test_unknown_attributes_are_ignored() -> None:
    """IdPs send extras (DESIGN.md interoperability); they are dropped, not refused."""
    out = normalize(user(favouriteColour="blue", name={"givenName": "B", "nick": 1},
                         **{"urn:example:custom:2.0:User:x": 1}), USER_RESOURCE)
    assert out.resource == {"schemas": [CORE_USER], "userName": "bjensen", "name": {"givenName": "B"}}


def test_read_only_attributes_are_ignored() -> None:
    """RFC 7643 2.2: readOnly values sent by the client are ignored (a GET can be PUT back)."""
    out = normalize(user(id="x", meta={"version": "1"}, groups=[{"value": "g"}]), USER_RESOURCE)
    assert out.resource == {"schemas": [CORE_USER], "userName": "bjensen"}


@pytest.mark.parametrize("value", [None, "", []])
def test_missing_or_empty_user_name_is_invalid_value(value: object) -> None:
    """RFC 7643 4.1.1: userName is REQUIRED."""
    body = user()
    if value is None:
        del body["userName"]
    else:
        body["userName"] = value
    with pytest.raises(InvalidValue, match="userName") as raised:
        normalize(body, USER_RESOURCE)
    assert raised.value.scim_type == "invalidValue"


def test_missing_group_display_name_is_invalid_value() -> None:
    """RFC 7643 4.2: displayName is REQUIRED for Groups."""
    with pytest.raises(InvalidValue, match="displayName"):
        normalize({"schemas": [CORE_GROUP]}, GROUP_RESOURCE)


@pytest.mark.parametrize(("given", "expected"), [(True, True), ("False", False), ("TRUE", True), ("false", False)])
def test_booleans_accept_strings_leniently(given: object, expected: bool) -> None:
    """RFC 7643 2.3.2: boolean; Entra sends "False" (DESIGN.md)."""
    assert normalize(user(active=given), USER_RESOURCE).resource["active"] is expected


def test_string_booleans_are_refused_when_strict() -> None:
    """RFC 7643 2.3.2: a boolean is `true` or `false`, without quotes."""
    with pytest.raises(InvalidValue):
        normalize(user(active="False"), USER_RESOURCE, lenient=False)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (user(active="yes"), "active"),
        (user(active=1), "active"),
        (user(userName=5), "userName"),
        (user(displayName=["x"]), "displayName"),
        (user(name="Barbara"), "name"),
        (user(name={"givenName": 3}), "name.givenName"),
        (user(emails=[{"value": 1}]), "emails.value"),
        (user(emails=[["a@x"]]), "emails"),
        (user(emails=[{"primary": "maybe"}]), "emails.primary"),
        (user(**{ENTERPRISE_USER: "x"}), ENTERPRISE_USER),
        (user(**{ENTERPRISE_USER: {"department": False}}), f"{ENTERPRISE_USER}:department"),
    ],
)
def test_wrong_types_name_the_attribute_path(body: dict[str, object], path: str) -> None:
    """RFC 7643 2.3: each attribute has a data type; RFC 7644 3.12: invalidValue."""
    with pytest.raises(InvalidValue) as raised:
        normalize(body, USER_RESOURCE)
    assert path in raised.value.detail


def test_null_values_are_absent() -> None:
    """RFC 7644 3.5.2 / RFC 7643 2.5: null is equivalent to unassigned."""
    out = normalize(user(displayName=None, name={"givenName": None}, emails=[None], **{ENTERPRISE_USER: None}),
                    USER_RESOURCE)
    assert out.resource == {"schemas": [CORE_USER], "userName": "bjensen"}


def test_empty_arrays_and_objects_are_absent() -> None:
    """RFC 7644 3.5.2: an empty array is equivalent to unassigned."""
    out = normalize(user(emails=[], name={}, **{ENTERPRISE_USER: {}}), USER_RESOURCE)
    assert out.resource == {"schemas": [CORE_USER], "userName": "bjensen"}


def test_empty_strings_for_optional_attributes_are_unassigned() -> None:
    """RFC 7644 3.5.2 lists null and [] as unassigned; "" is read the same way (Entra's null
    update, docs/decisions.md), other strings are kept as given, and an email without its value
    is no email (RFC 7643 2.4)."""
    out = normalize(user(nickName="", title="  Boss  ", name={"givenName": "", "familyName": "J"},
                         emails=[{"value": "", "type": "work"}, {"value": "h@x", "type": "home"}]), USER_RESOURCE)
    assert "nickName" not in out.resource
    assert out.resource["title"] == "  Boss  "
    assert out.resource["name"] == {"familyName": "J"}
    assert out.resource["emails"] == [{"value": "h@x", "type": "home"}]
    with pytest.raises(InvalidValue):
        normalize(user(userName=""), USER_RESOURCE)


def test_single_value_for_multi_valued_is_wrapped() -> None:
    """RFC 7643 2.4 wants an array; a lone object is wrapped (lenient)."""
    out = normalize(user(emails={"value": "b@x"}), USER_RESOURCE)
    assert out.resource["emails"] == [{"value": "b@x"}]


def test_single_value_for_multi_valued_is_refused_when_strict() -> None:
    """RFC 7643 2.4: a multi-valued attribute is a JSON array."""
    with pytest.raises(InvalidValue, match="emails"):
        normalize(user(emails={"value": "b@x"}), USER_RESOURCE, lenient=False)


def test_manager_as_bare_id() -> None:
    """RFC 7643 4.3 manager is complex; Entra may send the bare id (DESIGN.md)."""
    out = normalize(user(**{ENTERPRISE_USER: {"manager": MANAGER_ID}}), USER_RESOURCE)
    assert out.resource[ENTERPRISE_USER] == {"manager": {"value": MANAGER_ID}}


def test_manager_as_list_takes_the_first() -> None:
    """RFC 7643 4.3 manager is single-valued; Entra may send `[{value}]` (DESIGN.md)."""
    out = normalize(user(**{ENTERPRISE_USER: {"manager": [{"value": MANAGER_ID}]}}), USER_RESOURCE)
    assert out.resource[ENTERPRISE_USER] == {"manager": {"value": MANAGER_ID}}


def test_more_than_one_primary_is_invalid_value() -> None:
    """RFC 7643 2.4: the primary attribute value "true" MUST appear no more than once."""
    with pytest.raises(InvalidValue, match="primary"):
        normalize(user(emails=[{"value": "a", "primary": True}, {"value": "b", "primary": "true"}]), USER_RESOURCE)


def test_date_time_must_be_iso_8601() -> None:
    """RFC 7643 2.3.5: dateTime is an xsd:dateTime string (checked via meta-like data would be
    readOnly, so the check is exercised on an attribute declared dateTime)."""
    from service.scim.resource import coerce
    from service.scim.schema import Attribute

    attribute = Attribute("when", type="dateTime")
    assert coerce(attribute, "2010-01-23T04:56:22Z", "when") == "2010-01-23T04:56:22Z"
    with pytest.raises(InvalidValue, match="when"):
        coerce(attribute, "yesterday", "when")


def test_integer_and_decimal_types() -> None:
    """RFC 7643 2.3.3/2.3.4: decimal and integer are JSON numbers; booleans are not numbers."""
    from service.scim.resource import coerce
    from service.scim.schema import Attribute

    assert coerce(Attribute("n", type="integer"), 3, "n") == 3
    assert coerce(Attribute("d", type="decimal"), 2.5, "d") == 2.5
    for bad in (True, "3", 2.5):
        with pytest.raises(InvalidValue):
            coerce(Attribute("n", type="integer"), bad, "n")


def test_too_many_values_is_invalid_value() -> None:
    """Guard: one attribute cannot carry more than MAX_VALUES values."""
    with pytest.raises(InvalidValue, match="more than"):
        normalize(user(emails=[{"value": str(i)} for i in range(MAX_VALUES + 1)]), USER_RESOURCE)


def test_group_members_are_split_off_and_normalised() -> None:
    """RFC 7643 4.2: members live in the membership table, not the stored group."""
    out = normalize({"schemas": [CORE_GROUP], "displayName": "Tour Guides", "externalId": "e1",
                     "members": [{"VALUE": "u1", "display": "Babs", "$ref": "../Users/u1"},
                                 {"value": "u2", "type": "User"}, "u3"]}, GROUP_RESOURCE)
    assert out.resource == {"schemas": [CORE_GROUP], "displayName": "Tour Guides", "externalId": "e1"}
    assert out.members == [{"value": "u1", "display": "Babs"}, {"value": "u2", "type": "User"}, {"value": "u3"}]


def test_group_without_members_has_none() -> None:
    """RFC 7643 4.2: members is optional."""
    assert normalize({"schemas": [CORE_GROUP], "displayName": "x"}, GROUP_RESOURCE).members is None


def test_nested_group_member_is_refused() -> None:
    """Nested groups are not supported (schema.py GROUP); RFC 7644 3.12 invalidValue."""
    with pytest.raises(InvalidValue, match="nested groups are not supported") as raised:
        normalize({"schemas": [CORE_GROUP], "displayName": "x", "members": [{"value": "g", "type": "Group"}]},
                  GROUP_RESOURCE)
    assert raised.value.scim_type == "invalidValue"


def test_member_without_value_is_invalid_value() -> None:
    """RFC 7643 4.2: members.value is the member's id."""
    with pytest.raises(InvalidValue, match=r"members\.value"):
        normalize({"schemas": [CORE_GROUP], "displayName": "x", "members": [{"display": "x"}]}, GROUP_RESOURCE)


def test_password_is_write_only() -> None:
    """RFC 7643 4.1.1: password is writeOnly, returned never; not stored."""
    out = normalize(user(password="s3cret"), USER_RESOURCE)
    assert out.password == "s3cret"
    assert "password" not in out.resource


def test_changed_fields_top_level_diff_round_trips() -> None:
    """The `user.updated` payload: what was set and what was removed, top-level."""
    old = {"schemas": [CORE_USER], "userName": "b", "title": "x", "name": {"givenName": "B"}}
    new = {"schemas": [CORE_USER, ENTERPRISE_USER], "userName": "b", "name": {"givenName": "C"},
           ENTERPRISE_USER: {"department": "X"}}
    diff = changes_between(old, new)
    assert diff == Changes(set={"schemas": [CORE_USER, ENTERPRISE_USER], "name": {"givenName": "C"},
                                ENTERPRISE_USER: {"department": "X"}}, removed=["title"])
    assert diff.apply_to(old) == new
    assert changes_between(new, new) == Changes(set={}, removed=[])
