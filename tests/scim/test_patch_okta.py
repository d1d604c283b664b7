"""Okta's documented PATCH shapes (DESIGN.md "Interoperability with real IdPs"; Okta SCIM 2.0
guide), replayed against the PATCH engine (RFC 7644 3.5.2)."""

from __future__ import annotations

from typing import Any

from service.scim.patch import MemberOp, PatchResult, apply_patch
from service.scim.schema import CORE_GROUP, CORE_USER, GROUP_RESOURCE, USER_RESOURCE
from tests.support import patch

GROUP_ID = "abf4dd94-a4c0-4f67-89c9-76b03340cb9b"
OLD_MEMBER = "89bb1940-b905-4575-9e7f-6f887cfb368e"
NEW_MEMBER = "23a35c27-23d3-4c03-b4c5-6443c09e7173"


def okta_user() -> dict[str, Any]:
    return {
        "schemas": [CORE_USER],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"value": "test.user@okta.local", "type": "work", "primary": True}],
        "displayName": "Test User",
        "active": True,
    }


def patch_group(*operations: dict[str, Any]) -> PatchResult:
    group = {"schemas": [CORE_GROUP], "displayName": "Test SCIMv2"}
    return apply_patch(group, patch(*operations), GROUP_RESOURCE)


def test_deactivate_with_path_less_replace_active_false() -> None:
    """RFC 7644 3.5.2.3 path-less replace; Okta deactivates with `{"active": false}`."""
    result = apply_patch(okta_user(), patch({"op": "replace", "value": {"active": False}}), USER_RESOURCE)
    assert result.resource == {**okta_user(), "active": False}
    assert result.changed is True


def test_reactivate_with_path_less_replace_active_true() -> None:
    """RFC 7644 3.5.2.3; Okta reactivation is the same shape with `true`."""
    inactive = {**okta_user(), "active": False}
    result = apply_patch(inactive, patch({"op": "replace", "value": {"active": True}}), USER_RESOURCE)
    assert result.resource["active"] is True


def test_repeated_deactivation_changes_nothing() -> None:
    """Okta retries: a second deactivation is not a change (no event written)."""
    inactive = {**okta_user(), "active": False}
    assert apply_patch(inactive, patch({"op": "replace", "value": {"active": False}}), USER_RESOURCE).changed is False


def test_password_change_with_path_less_replace() -> None:
    """RFC 7643 4.1.1 password is writeOnly; Okta sync-password sends it path-less."""
    result = apply_patch(okta_user(), patch({"op": "replace", "value": {"password": "t1meMa$heen"}}), USER_RESOURCE)
    assert result.password == "t1meMa$heen"
    assert result.changed is False


def test_put_style_path_less_replace_of_the_whole_user() -> None:
    """RFC 7644 3.5.2.3: a path-less replace carrying a full representation (with readOnly id
    and meta, which are ignored) updates what it names."""
    value = {
        "schemas": [CORE_USER],
        "id": "23a35c27-23d3-4c03-b4c5-6443c09e7173",
        "userName": "test.user@okta.local",
        "name": {"givenName": "Another", "familyName": "User"},
        "emails": [{"primary": True, "value": "another.user@okta.local", "type": "work"}],
        "displayName": "Another User",
        "active": True,
        "meta": {"resourceType": "User"},
    }
    result = apply_patch(okta_user(), patch({"op": "replace", "value": value}), USER_RESOURCE)
    assert result.resource == {
        "schemas": [CORE_USER],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Another", "familyName": "User"},
        "emails": [{"primary": True, "value": "another.user@okta.local", "type": "work"}],
        "displayName": "Another User",
        "active": True,
    }
    assert result.ignored == []


def test_group_rename_with_id_in_the_value() -> None:
    """Okta group push renames with a path-less replace whose value holds the readOnly `id`;
    RFC 7643 2.2 readOnly values from clients are ignored."""
    result = patch_group({"op": "replace", "value": {"id": GROUP_ID, "displayName": "Test SCIMv2 renamed"}})
    assert result.resource == {"schemas": [CORE_GROUP], "displayName": "Test SCIMv2 renamed"}
    assert result.member_ops == []


def test_member_add_without_type() -> None:
    """RFC 7644 3.5.2.1 add members; Okta sends value and display, no type."""
    result = patch_group({"op": "add", "path": "members",
                          "value": [{"value": NEW_MEMBER, "display": "test.user@okta.local"}]})
    assert result.member_ops == [MemberOp("add", [NEW_MEMBER])]
    assert result.changed is False


def test_remove_by_filter_and_add_in_one_patch() -> None:
    """RFC 7644 3.5.2.2 remove by value filter then add, as Okta pushes a membership change."""
    result = patch_group(
        {"op": "remove", "path": f'members[value eq "{OLD_MEMBER}"]'},
        {"op": "add", "path": "members", "value": [{"value": NEW_MEMBER, "display": "test.user@okta.local"}]},
    )
    assert result.member_ops == [MemberOp("remove", [OLD_MEMBER]), MemberOp("add", [NEW_MEMBER])]
