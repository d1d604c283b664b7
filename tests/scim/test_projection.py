"""attributes / excludedAttributes (RFC 7644 3.4.2.5, 3.9) and "returned" (RFC 7643 2.2, 7)."""

from __future__ import annotations

from typing import Any

import pytest

from service.scim.errors import InvalidValue
from service.scim.projection import AttrRef, parse_attribute_list, project, wants
from service.scim.schema import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE_USER,
    GROUP_RESOURCE,
    USER_RESOURCE,
)

USER: dict[str, Any] = {
    "schemas": [CORE_USER, ENTERPRISE_USER],
    "id": "2819c223",
    "externalId": "701984",
    "userName": "bjensen",
    "name": {"givenName": "Barbara", "familyName": "Jensen"},
    "emails": [{"value": "b@x", "type": "work", "primary": True}, {"value": "b@home", "type": "home"}],
    "active": True,
    "password": "never-shown",
    "groups": [{"value": "g1", "display": "Tour Guides"}],
    ENTERPRISE_USER: {"department": "Tours", "manager": {"value": "m1", "displayName": "Boss"}},
    "meta": {"resourceType": "User", "version": 'W/"3"', "location": "https://x/Users/2819c223"},
}
GROUP: dict[str, Any] = {
    "schemas": [CORE_GROUP], "id": "g1", "displayName": "Tour Guides",
    "members": [{"value": "u1", "display": "Babs", "$ref": "https://x/Users/u1"}],
    "meta": {"resourceType": "Group"},
}


def user_view(attributes: str | None = None, excluded: str | None = None) -> dict[str, Any]:
    return project(USER, USER_RESOURCE, attributes=parse_attribute_list(attributes, USER_RESOURCE),
                   excluded=parse_attribute_list(excluded, USER_RESOURCE))


def test_parse_is_case_insensitive_and_canonical() -> None:
    """RFC 7644 3.4.2.5 / RFC 7643 2.1: attribute names are case-insensitive."""
    refs = parse_attribute_list(f"USERNAME, name.GIVENNAME,{ENTERPRISE_USER.upper()}:Department,emails.value",
                                USER_RESOURCE)
    assert refs == [AttrRef(None, "userName"), AttrRef(None, "name", "givenName"),
                    AttrRef(ENTERPRISE_USER, "department"), AttrRef(None, "emails", "value")]


def test_parse_accepts_an_array_from_search_requests() -> None:
    """RFC 7644 3.4.3: SearchRequest carries `attributes` as an array of strings."""
    assert parse_attribute_list(["userName", "meta.version"], USER_RESOURCE) == [
        AttrRef(None, "userName"), AttrRef(None, "meta", "version")]


def test_parse_ignores_unknown_names() -> None:
    """RFC 7644 3.4.2.5: unknown names are ignored, not an error (decision: lenient)."""
    assert parse_attribute_list("bogus,name.bogus,urn:x:y:z:attr,userName", USER_RESOURCE) == [
        AttrRef(None, "userName")]


@pytest.mark.parametrize("text", ['emails[type eq "work"]', "name.givenName.x", "user name"])
def test_parse_invalid_syntax_is_invalid_value(text: str) -> None:
    """RFC 7644 3.4.2.5: entries are attribute names; anything else is 400 invalidValue."""
    with pytest.raises(InvalidValue):
        parse_attribute_list(text, USER_RESOURCE)


def test_no_lists_returns_defaults_without_never() -> None:
    """RFC 7644 3.9: the default set; RFC 7643 4.1.1: password is returned "never"."""
    view = user_view()
    assert "password" not in view
    assert view == {k: v for k, v in USER.items() if k != "password"}


def test_returned_never_even_when_requested() -> None:
    """RFC 7643 7: returned "never" - the attribute is never returned."""
    assert "password" not in user_view("password,userName")


def test_returned_always_survives_attributes() -> None:
    """RFC 7643 7: returned "always" (id) is returned whatever `attributes` says; `schemas` too."""
    assert user_view("userName") == {"schemas": USER["schemas"], "id": "2819c223", "userName": "bjensen"}


def test_returned_always_survives_exclusion() -> None:
    """RFC 7644 3.4.2.5: excludedAttributes has no effect on returned "always"."""
    view = user_view(excluded="id,schemas,userName")
    assert view["id"] == "2819c223" and "schemas" in view and "userName" not in view


def test_returned_default_excluded() -> None:
    """RFC 7644 3.4.2.5: excludedAttributes removes default attributes."""
    view = user_view(excluded="emails,meta")
    assert "emails" not in view and "meta" not in view and view["userName"] == "bjensen"


def test_returned_request_only_when_asked() -> None:
    """RFC 7643 7: returned "request" - only when named in `attributes`."""
    from service.scim.projection import _selected
    from service.scim.schema import Attribute

    attribute = Attribute("secretish", returned="request")
    assert _selected(None, attribute, None, None)[0] is False
    assert _selected(None, attribute, [AttrRef(None, "secretish")], None)[0] is True


def test_sub_attribute_selection_on_complex() -> None:
    """RFC 7644 3.10: `name.givenName` returns just that sub-attribute inside its parent."""
    assert user_view("name.givenName")["name"] == {"givenName": "Barbara"}


def test_sub_attribute_selection_on_multi_valued() -> None:
    """RFC 7644 3.10: for multi-valued, each element is reduced to the named sub-attributes."""
    assert user_view("emails.value,emails.type")["emails"] == [
        {"value": "b@x", "type": "work"}, {"value": "b@home", "type": "home"}]


def test_sub_attribute_exclusion() -> None:
    """RFC 7644 3.4.2.5: excluding `emails.primary` drops it from each element."""
    assert user_view(excluded="emails.primary,name.familyName")["emails"][0] == {"value": "b@x", "type": "work"}
    assert user_view(excluded="name.familyName,name.givenName").get("name") is None


def test_extension_attribute_by_urn_path() -> None:
    """RFC 7644 3.10: extension attributes are named by their URN path."""
    view = user_view(f"{ENTERPRISE_USER}:department")
    assert view[ENTERPRISE_USER] == {"department": "Tours"}
    assert view["schemas"] == USER["schemas"]


def test_extension_dropped_when_nothing_remains() -> None:
    """RFC 7644 3.4.2.5: an extension with nothing left is not sent as an empty object."""
    assert ENTERPRISE_USER not in user_view("userName")
    assert ENTERPRISE_USER not in user_view(excluded=f"{ENTERPRISE_USER}:department,{ENTERPRISE_USER}:manager")


def test_whole_extension_by_urn() -> None:
    """A bare extension URN names all of its attributes."""
    assert user_view(ENTERPRISE_USER)[ENTERPRISE_USER] == USER[ENTERPRISE_USER]
    assert ENTERPRISE_USER not in user_view(excluded=ENTERPRISE_USER)


def test_meta_sub_attributes_like_others() -> None:
    """RFC 7643 3.1: meta is complex; its sub-attributes select like any other."""
    assert user_view("meta.version")["meta"] == {"version": 'W/"3"'}
    assert user_view(excluded="meta.location")["meta"] == {"resourceType": "User", "version": 'W/"3"'}


def test_only_unknown_attributes_behaves_as_absent() -> None:
    """Decision: a list naming only unknown attributes is as if not given."""
    assert user_view("bogus") == user_view()


def test_group_members_excluded() -> None:
    """Entra asks `excludedAttributes=members` (DESIGN.md)."""
    excluded = parse_attribute_list("members", GROUP_RESOURCE)
    assert "members" not in project(GROUP, GROUP_RESOURCE, excluded=excluded)
    assert wants("members", None, excluded, GROUP_RESOURCE) is False


def test_wants_members() -> None:
    """`wants` says whether loading members is needed."""
    assert wants("members", None, None, GROUP_RESOURCE) is True
    assert wants("members", parse_attribute_list("displayName", GROUP_RESOURCE), None, GROUP_RESOURCE) is False
    assert wants("members", parse_attribute_list("members.value", GROUP_RESOURCE), None, GROUP_RESOURCE) is True
    assert wants("id", parse_attribute_list("displayName", GROUP_RESOURCE), None, GROUP_RESOURCE) is True
    assert wants("password", None, None, USER_RESOURCE) is False
