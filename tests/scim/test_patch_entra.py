"""Microsoft Entra ID's documented PATCH shapes (DESIGN.md "Interoperability with real IdPs";
Entra SCIM provisioning docs), replayed against the PATCH engine (RFC 7644 3.5.2)."""

from __future__ import annotations

from typing import Any

import pytest

from service.scim.errors import InvalidValue
from service.scim.patch import MemberOp, PatchResult, apply_patch
from service.scim.schema import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE_USER,
    GROUP_RESOURCE,
    USER_RESOURCE,
)
from tests.support import patch

MANAGER = "26118915-6090-4610-87e4-49d8ca9f808d"
MEMBER_1 = "0f3b8d3a-2c3b-4a0b-9b1e-7b5b2b8e2a11"
MEMBER_2 = "7d2a6c1e-6f0a-4d3c-8f2b-1c9e0d5a4b22"


def entra_user(**extra: Any) -> dict[str, Any]:
    return {"schemas": [CORE_USER], "userName": "Test_User_dfeef4c5@testuser.com", "active": True, **extra}


def patch_user(resource: dict[str, Any], *operations: dict[str, Any]) -> PatchResult:
    return apply_patch(resource, patch(*operations), USER_RESOURCE)


def test_capitalised_replace_with_string_boolean_disables() -> None:
    """RFC 7644 3.5.2.3 replace; Entra sends `Replace` and `"False"` (a string)."""
    result = patch_user(entra_user(), {"op": "Replace", "path": "active", "value": "False"})
    assert result.resource["active"] is False


def test_path_less_replace_with_string_boolean() -> None:
    """RFC 7644 3.5.2.3 path-less replace; Entra's `{"active": "False"}`."""
    result = patch_user(entra_user(), {"op": "Replace", "value": {"active": "False"}})
    assert result.resource["active"] is False


def test_add_work_email_value_creates_the_element() -> None:
    """RFC 7644 3.5.2.1 add with a filtered path; no work email yet: Entra expects it created
    from the filter's `eq` (decision: create, not noTarget)."""
    result = patch_user(entra_user(), {"op": "Add", "path": 'emails[type eq "work"].value',
                                       "value": "updatedEmail@microsoft.com"})
    assert result.resource["emails"] == [{"type": "work", "value": "updatedEmail@microsoft.com"}]


def test_replace_work_email_value_on_empty_emails_creates_the_element() -> None:
    """RFC 7644 3.5.2.3 says noTarget here; Entra relies on creation (DESIGN.md)."""
    result = patch_user(entra_user(), {"op": "Replace", "path": 'emails[type eq "work"].value',
                                       "value": "updatedEmail@microsoft.com"})
    assert result.resource["emails"] == [{"type": "work", "value": "updatedEmail@microsoft.com"}]


def test_replace_work_email_value_updates_the_existing_element() -> None:
    """RFC 7644 3.5.2.3: the matched value's sub-attribute is replaced, the others untouched."""
    start = entra_user(emails=[{"value": "old@x", "type": "work", "primary": True}, {"value": "h@x", "type": "home"}])
    result = patch_user(start, {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@x"})
    assert result.resource["emails"] == [{"value": "new@x", "type": "work", "primary": True},
                                         {"value": "h@x", "type": "home"}]


def test_replace_family_name() -> None:
    """RFC 7644 3.5.2.3 replace of a sub-attribute: `name.familyName`."""
    result = patch_user(entra_user(name={"givenName": "G"}),
                        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"})
    assert result.resource["name"] == {"givenName": "G", "familyName": "updatedFamilyName"}


def test_attribute_names_in_any_case() -> None:
    """RFC 7643 2.1: names are case-insensitive; Entra sends them in any case."""
    result = patch_user(entra_user(), {"op": "Add", "path": "NAME.givenname", "value": "G"},
                        {"op": "Replace", "path": "DisplayName", "value": "D"})
    assert result.resource["name"] == {"givenName": "G"}
    assert result.resource["displayName"] == "D"


def test_employee_number_by_urn_path() -> None:
    """RFC 7644 3.10 fully qualified path into the enterprise extension."""
    result = patch_user(entra_user(), {"op": "Add", "path": f"{ENTERPRISE_USER}:employeeNumber", "value": "1"})
    assert result.resource["schemas"] == [CORE_USER, ENTERPRISE_USER]
    assert result.resource[ENTERPRISE_USER] == {"employeeNumber": "1"}


def test_manager_as_bare_id() -> None:
    """RFC 7643 4.3 manager is complex; Entra sends the manager's id as the bare value."""
    result = patch_user(entra_user(), {"op": "Add", "path": f"{ENTERPRISE_USER}:manager", "value": MANAGER})
    assert result.resource[ENTERPRISE_USER] == {"manager": {"value": MANAGER}}


def test_manager_as_value_list() -> None:
    """Entra may also send manager as `[{"value": id}]`: the first is taken."""
    result = patch_user(entra_user(), {"op": "Replace", "path": f"{ENTERPRISE_USER}:manager",
                                       "value": [{"value": MANAGER}]})
    assert result.resource[ENTERPRISE_USER] == {"manager": {"value": MANAGER}}


def test_manager_removed() -> None:
    """RFC 7644 3.5.2.2; the last extension attribute gone, the URN leaves `schemas`."""
    start = entra_user(**{ENTERPRISE_USER: {"manager": {"value": MANAGER}}})
    start["schemas"] = [CORE_USER, ENTERPRISE_USER]
    result = patch_user(start, {"op": "Remove", "path": f"{ENTERPRISE_USER}:manager"})
    assert result.resource == entra_user()


def test_path_less_add_with_dotted_and_urn_keys() -> None:
    """RFC 7644 3.5.2.1 path-less add; Entra puts dotted and URN-qualified keys in the value."""
    result = patch_user(entra_user(), {"op": "Add", "value": {
        "name.givenName": "x", "name.familyName": "y", f"{ENTERPRISE_USER}:employeeNumber": "1",
        f"{ENTERPRISE_USER}:manager": MANAGER, "displayName": "x y"}})
    assert result.resource == {
        "schemas": [CORE_USER, ENTERPRISE_USER], "userName": "Test_User_dfeef4c5@testuser.com", "active": True,
        "name": {"givenName": "x", "familyName": "y"}, "displayName": "x y",
        ENTERPRISE_USER: {"employeeNumber": "1", "manager": {"value": MANAGER}},
    }


def test_path_less_replace_with_extension_object() -> None:
    """RFC 7643 3.3: the extension URN key holding an object, in any case."""
    result = patch_user(entra_user(), {"op": "Replace", "value": {ENTERPRISE_USER.lower(): {"Department": "D"}}})
    assert result.resource[ENTERPRISE_USER] == {"department": "D"}


def test_stray_keys_in_operations_and_body_are_ignored() -> None:
    """Entra adds keys RFC 7644 3.5.2 does not define (`id`, `name`); they are ignored."""
    body = patch({"op": "Replace", "path": "displayName", "value": "x", "id": "abc", "name": "nope"})
    body["id"] = "abc"
    result = apply_patch(entra_user(), body, USER_RESOURCE)
    assert result.resource["displayName"] == "x"


def test_remove_members_with_value_list_removes_only_those() -> None:
    """Entra's `Remove` on `members` with a value list removes only the listed members, never all."""
    group = {"schemas": [CORE_GROUP], "displayName": "G"}
    result = apply_patch(group, patch({"op": "Remove", "path": "members", "value": [{"value": MEMBER_1}]}),
                         GROUP_RESOURCE)
    assert result.member_ops == [MemberOp("remove", [MEMBER_1])]


def test_add_members_then_remove_one() -> None:
    """RFC 7644 3.5.2.1 / 3.5.2.2 in Entra's casing."""
    group = {"schemas": [CORE_GROUP], "displayName": "G"}
    result = apply_patch(group, patch(
        {"op": "Add", "path": "members", "value": [{"value": MEMBER_1}, {"value": MEMBER_2}]},
        {"op": "Remove", "path": "members", "value": [{"value": MEMBER_2}]},
    ), GROUP_RESOURCE)
    assert result.member_ops == [MemberOp("add", [MEMBER_1, MEMBER_2]), MemberOp("remove", [MEMBER_2])]


def test_group_rename_and_external_id() -> None:
    """RFC 7644 3.5.2.3 replace of displayName and externalId on a group."""
    group = {"schemas": [CORE_GROUP], "displayName": "G"}
    result = apply_patch(group, patch({"op": "Replace", "path": "displayName", "value": "G2"},
                                      {"op": "Replace", "path": "externalId", "value": "e1"}), GROUP_RESOURCE)
    assert result.resource == {"schemas": [CORE_GROUP], "displayName": "G2", "externalId": "e1"}


def test_non_boolean_string_is_still_refused() -> None:
    """RFC 7643 2.3.2: only "true"/"false" strings are read as booleans."""
    with pytest.raises(InvalidValue):
        patch_user(entra_user(), {"op": "Replace", "path": "active", "value": "Nope"})


def test_unmapped_custom_extension_attribute_does_not_block_the_patch() -> None:
    """Admins map attributes the app does not know; ignoring them (reported in `ignored`) keeps
    the deactivation in the same atomic PATCH working (decision, see patch.py)."""
    custom = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:CustomAttribute"
    result = patch_user(entra_user(), {"op": "Add", "path": custom, "value": "x"},
                        {"op": "Replace", "path": "active", "value": "False"})
    assert result.resource == {**entra_user(), "active": False}
    assert result.ignored == [custom]


def test_path_less_value_with_a_filtered_key() -> None:
    """Entra's older non-compliant shape: a filtered path as a key of a path-less value."""
    result = patch_user(entra_user(), {"op": "Add", "value": {'emails[type eq "work"].value': "w@x",
                                                              "name.givenName": "G"}})
    assert result.resource["emails"] == [{"type": "work", "value": "w@x"}]
    assert result.resource["name"] == {"givenName": "G"}
