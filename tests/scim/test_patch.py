"""The PATCH engine against RFC 7644 3.5.2 (each RFC example its own test) and its edges."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.scim import errors
from service.scim.errors import ScimError
from service.scim.patch import MAX_OPERATIONS, MemberOp, PatchResult, apply_patch
from service.scim.schema import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE_USER,
    GROUP_RESOURCE,
    PATCH_OP,
    USER_RESOURCE,
    Attribute,
    ResourceType,
    Schema,
)
from tests.support import patch

BABS = "2819c223-7f76-453a-919d-413861904646"
JAMES = "08e1d05d-121c-4561-8b96-473d93df9210"


def a_user(**extra: Any) -> dict[str, Any]:
    return {"schemas": [CORE_USER], "userName": "bjensen", **extra}


def a_group() -> dict[str, Any]:
    return {"schemas": [CORE_GROUP], "displayName": "Tour Guides"}


def patch_user(resource: dict[str, Any], *operations: dict[str, Any]) -> PatchResult:
    return apply_patch(resource, patch(*operations), USER_RESOURCE)


def patch_group(*operations: dict[str, Any]) -> PatchResult:
    return apply_patch(a_group(), patch(*operations), GROUP_RESOURCE)


# -- RFC 7644 3.5.2.1 "Add Operation" examples -------------------------------------------------


def test_rfc7644_3_5_2_1_add_member_to_group() -> None:
    """RFC 7644 3.5.2.1: add a member (with display and $ref) to a group."""
    result = patch_group({"op": "add", "path": "members", "value": [
        {"display": "Babs Jensen", "$ref": f"https://example.com/v2/Users/{BABS}", "value": BABS}]})
    assert result.member_ops == [MemberOp("add", [BABS])]
    assert result.changed is False
    assert result.resource == a_group()


def test_rfc7644_3_5_2_1_add_without_path_emails_and_nickname() -> None:
    """RFC 7644 3.5.2.1: path-less add of emails and nickname (the RFC spells it `nickname`)."""
    start = a_user(emails=[{"value": "bjensen@example.com", "type": "work"}])
    result = patch_user(start, {"op": "add", "value": {
        "emails": [{"value": "babs@jensen.org", "type": "home"}], "nickname": "Babs"}})
    assert result.resource["emails"] == [{"value": "bjensen@example.com", "type": "work"},
                                         {"value": "babs@jensen.org", "type": "home"}]
    assert result.resource["nickName"] == "Babs"
    assert result.changed is True


def test_rfc7644_3_5_2_1_add_existing_value_changes_nothing() -> None:
    """RFC 7644 3.5.2.1: if the target already contains the value, no changes are made."""
    start = a_user(emails=[{"value": "babs@jensen.org", "type": "home"}])
    result = patch_user(start, {"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org", "type": "home"}]})
    assert result.changed is False
    assert result.resource == start


def test_rfc7644_3_5_2_1_add_to_complex_merges_sub_attributes() -> None:
    """RFC 7644 3.5.2.1: for a complex target the value's sub-attributes are added."""
    result = patch_user(a_user(name={"givenName": "Barbara"}), {"op": "add", "path": "name", "value": {"familyName": "Jensen"}})
    assert result.resource["name"] == {"givenName": "Barbara", "familyName": "Jensen"}


def test_rfc7644_3_5_2_1_add_to_single_valued_replaces() -> None:
    """RFC 7644 3.5.2.1: add on an existing single-valued attribute replaces its value."""
    result = patch_user(a_user(title="a"), {"op": "add", "path": "title", "value": "b"})
    assert result.resource["title"] == "b"


# -- RFC 7644 3.5.2.2 "Remove Operation" examples ----------------------------------------------


def test_rfc7644_3_5_2_2_remove_without_path_is_no_target() -> None:
    """RFC 7644 3.5.2.2: if "path" is unspecified, 400 noTarget."""
    with pytest.raises(errors.NoTarget) as raised:
        patch_user(a_user(), {"op": "remove"})
    assert raised.value.scim_type == "noTarget"


def test_rfc7644_3_5_2_2_remove_all_members() -> None:
    """RFC 7644 3.5.2.2: remove all members of a group."""
    assert patch_group({"op": "remove", "path": "members"}).member_ops == [MemberOp("remove_all", [])]


def test_rfc7644_3_5_2_2_remove_one_member() -> None:
    """RFC 7644 3.5.2.2: remove a single member by value filter."""
    result = patch_group({"op": "remove", "path": f'members[value eq "{BABS}"]'})
    assert result.member_ops == [MemberOp("remove", [BABS])]


def test_rfc7644_3_5_2_2_remove_work_emails_ending_in_example_com() -> None:
    """RFC 7644 3.5.2.2: remove the values matched by a complex filter."""
    start = a_user(emails=[{"value": "b@example.com", "type": "work"}, {"value": "b@jensen.org", "type": "work"},
                           {"value": "c@example.com", "type": "home"}])
    result = patch_user(start, {"op": "remove", "path": 'emails[type eq "work" and value ew "example.com"]'})
    assert result.resource["emails"] == [{"value": "b@jensen.org", "type": "work"},
                                         {"value": "c@example.com", "type": "home"}]


def test_rfc7644_3_5_2_2_remove_one_member_and_add_another() -> None:
    """RFC 7644 3.5.2.2: remove one member, add another, in one request, in order."""
    result = patch_group(
        {"op": "remove", "path": f'members[value eq "{BABS}"]'},
        {"op": "add", "path": "members", "value": [
            {"display": "James Smith", "$ref": f"https://example.com/v2/Users/{JAMES}", "value": JAMES}]},
    )
    assert result.member_ops == [MemberOp("remove", [BABS]), MemberOp("add", [JAMES])]


def test_rfc7644_3_5_2_2_replace_all_members_by_remove_then_add() -> None:
    """RFC 7644 3.5.2.2: remove all members then add new ones."""
    result = patch_group(
        {"op": "remove", "path": "members"},
        {"op": "add", "path": "members", "value": [{"value": BABS}, {"value": JAMES}]},
    )
    assert result.member_ops == [MemberOp("remove_all", []), MemberOp("add", [BABS, JAMES])]


def test_rfc7644_3_5_2_2_remove_single_valued() -> None:
    """RFC 7644 3.5.2.2: a removed single-valued attribute is unassigned."""
    result = patch_user(a_user(title="x"), {"op": "remove", "path": "title"})
    assert "title" not in result.resource


def test_rfc7644_3_5_2_2_remove_last_values_unassigns_the_attribute() -> None:
    """RFC 7644 3.5.2.2: if no values remain, the multi-valued attribute is unassigned."""
    result = patch_user(a_user(emails=[{"value": "a", "type": "work"}]), {"op": "remove", "path": 'emails[type eq "work"]'})
    assert "emails" not in result.resource


def test_rfc7644_3_5_2_2_remove_sub_attribute_of_matched_values() -> None:
    """RFC 7644 3.5.2.2: a path with a filter and a sub-attribute removes that sub-attribute."""
    start = a_user(emails=[{"value": "a", "type": "work", "primary": True}, {"value": "b", "type": "home"}])
    result = patch_user(start, {"op": "remove", "path": 'emails[type eq "work"].primary'})
    assert result.resource["emails"] == [{"value": "a", "type": "work"}, {"value": "b", "type": "home"}]


def test_rfc7644_3_5_2_2_remove_filter_matching_nothing_is_no_target() -> None:
    """RFC 7644 3.12 noTarget: the filter yielded no match."""
    with pytest.raises(errors.NoTarget):
        patch_user(a_user(emails=[{"value": "a", "type": "home"}]), {"op": "remove", "path": 'emails[type eq "work"]'})


def test_rfc7644_3_5_2_2_remove_required_attribute_is_mutability() -> None:
    """RFC 7644 3.5.2.2: removing a required attribute is 400 mutability."""
    with pytest.raises(errors.Mutability):
        patch_user(a_user(), {"op": "remove", "path": "userName"})


def test_rfc7644_3_5_2_2_replace_required_with_null_is_mutability() -> None:
    """RFC 7644 3.5.2.2: making a required attribute unassigned is 400 mutability."""
    for operation in ({"op": "replace", "path": "userName", "value": None},
                      {"op": "replace", "value": {"userName": None}}):
        with pytest.raises(errors.Mutability):
            patch_user(a_user(), operation)


# -- RFC 7644 3.5.2.3 "Replace Operation" examples ---------------------------------------------


def test_rfc7644_3_5_2_3_replace_all_members() -> None:
    """RFC 7644 3.5.2.3: replace all members of a group."""
    result = patch_group({"op": "replace", "path": "members", "value": [
        {"display": "Babs Jensen", "$ref": f"https://example.com/v2/Users/{BABS}", "value": BABS},
        {"display": "James Smith", "$ref": f"https://example.com/v2/Users/{JAMES}", "value": JAMES}]})
    assert result.member_ops == [MemberOp("replace", [BABS, JAMES])]


WORK = {"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood",
        "region": "CA", "postalCode": "91608", "country": "US", "primary": True}
HOME = {"type": "home", "streetAddress": "456 Hollywood Blvd", "locality": "Hollywood"}


def test_rfc7644_3_5_2_3_replace_work_address() -> None:
    """RFC 7644 3.5.2.3: replace the matched value (the work address) as a whole."""
    new = {"type": "work", "streetAddress": "911 Universal City Plaza", "locality": "Hollywood",
           "region": "CA", "postalCode": "91608", "country": "US",
           "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US", "primary": True}
    result = patch_user(a_user(addresses=[WORK, HOME]), {"op": "replace", "path": 'addresses[type eq "work"]', "value": new})
    assert result.resource["addresses"] == [new, HOME]


def test_rfc7644_3_5_2_3_replace_street_address_of_work_address() -> None:
    """RFC 7644 3.5.2.3: replace one sub-attribute of the matched value."""
    result = patch_user(a_user(addresses=[WORK, HOME]),
                        {"op": "replace", "path": 'addresses[type eq "work"].streetAddress', "value": "1010 Broadway Ave"})
    assert result.resource["addresses"] == [{**WORK, "streetAddress": "1010 Broadway Ave"}, HOME]


def test_rfc7644_3_5_2_3_replace_without_path_emails_and_nickname() -> None:
    """RFC 7644 3.5.2.3: path-less replace of emails (whole list) and nickname."""
    start = a_user(emails=[{"value": "old@x", "type": "other"}], nickName="B")
    emails = [{"value": "bjensen@example.com", "type": "work", "primary": True},
              {"value": "babs@jensen.org", "type": "home"}]
    result = patch_user(start, {"op": "replace", "value": {"emails": emails, "nickname": "Babs"}})
    assert result.resource == a_user(emails=emails, nickName="Babs")


def test_rfc7644_3_5_2_3_replace_complex_leaves_unspecified_sub_attributes() -> None:
    """RFC 7644 3.5.2.3: sub-attributes not in the value are left unchanged."""
    result = patch_user(a_user(name={"givenName": "B", "familyName": "J"}),
                        {"op": "replace", "path": "name", "value": {"givenName": "Barbara"}})
    assert result.resource["name"] == {"givenName": "Barbara", "familyName": "J"}


def test_rfc7644_3_5_2_3_replace_absent_attribute_adds_it() -> None:
    """RFC 7644 3.5.2.3: a replace of an attribute that does not exist is treated as add."""
    assert patch_user(a_user(), {"op": "replace", "path": "title", "value": "x"}).resource["title"] == "x"


# -- RFC 7644 3.5.2 general rules ----------------------------------------------------------------


def test_rfc7644_3_5_2_schemas_must_name_patch_op() -> None:
    """RFC 7644 3.5.2: the body's schemas is the PatchOp URI; else 400 invalidSyntax."""
    with pytest.raises(errors.InvalidSyntax):
        apply_patch(a_user(), {"Operations": [{"op": "add", "path": "title", "value": "x"}]}, USER_RESOURCE)
    with pytest.raises(errors.InvalidSyntax):
        apply_patch(a_user(), {"schemas": [CORE_USER], "Operations": [{"op": "add", "path": "title", "value": "x"}]},
                    USER_RESOURCE)


@pytest.mark.parametrize("operations", [None, [], {"op": "add"}, "add"])
def test_rfc7644_3_5_2_operations_must_be_a_non_empty_array(operations: Any) -> None:
    """RFC 7644 3.5.2: the body MUST contain "Operations", an array of one or more ops."""
    with pytest.raises(errors.InvalidSyntax):
        apply_patch(a_user(), {"schemas": [PATCH_OP], "Operations": operations}, USER_RESOURCE)


def test_body_keys_are_case_insensitive() -> None:
    """RFC 7643 2.1 style leniency: `operations`, `Op`, `Path`, `Value` are accepted."""
    result = apply_patch(a_user(), {"SCHEMAS": [PATCH_OP.upper()],
                                    "operations": [{"Op": "ADD", "Path": "title", "Value": "x"}]}, USER_RESOURCE)
    assert result.resource["title"] == "x"


@pytest.mark.parametrize("op", ["move", "", None, 3])
def test_unknown_op_is_invalid_syntax(op: Any) -> None:
    """RFC 7644 3.5.2: "op" is one of "add", "remove", or "replace"."""
    with pytest.raises(errors.InvalidSyntax):
        patch_user(a_user(), {"op": op, "path": "title", "value": "x"})


def test_add_without_value_is_invalid_value() -> None:
    """RFC 7644 3.5.2.1: the operation MUST contain a "value" member."""
    with pytest.raises(errors.InvalidValue):
        patch_user(a_user(), {"op": "add", "path": "title"})


def test_too_many_operations_is_refused() -> None:
    """Guard: at most MAX_OPERATIONS operations (413, as for bulk maxOperations, RFC 7644 3.7.3)."""
    operations = [{"op": "add", "path": "title", "value": str(i)} for i in range(MAX_OPERATIONS + 1)]
    with pytest.raises(errors.PayloadTooLarge):
        patch_user(a_user(), *operations)


def test_thousands_of_members_in_one_operation_are_fine() -> None:
    """The cap counts operations, not values: one op may add many members."""
    ids = [f"u{i}" for i in range(5000)]
    result = patch_group({"op": "add", "path": "members", "value": [{"value": i} for i in ids]})
    assert result.member_ops == [MemberOp("add", ids)]


@pytest.mark.parametrize("path", ["id", "meta", "meta.version", "groups", f"{ENTERPRISE_USER}:manager.displayName"])
def test_rfc7644_3_5_2_read_only_target_is_mutability(path: str) -> None:
    """RFC 7644 3.5.2: a client MUST NOT modify a readOnly attribute; 400 mutability."""
    with pytest.raises(errors.Mutability) as raised:
        patch_user(a_user(), {"op": "replace", "path": path, "value": "x"})
    assert raised.value.scim_type == "mutability"


def test_rfc7644_3_5_2_immutable_set_once_then_refused() -> None:
    """RFC 7644 3.5.2: a client MAY add a value to an immutable attribute with no previous value,
    and MUST NOT change it after."""
    schema = Schema(id=CORE_USER, name="User", description="", attributes=(
        Attribute("userName", required=True), Attribute("badge", mutability="immutable")))
    resource_type = ResourceType(id="User", name="User", endpoint="/Users", description="", schema=schema)
    first = apply_patch(a_user(), patch({"op": "add", "path": "badge", "value": "1"}), resource_type)
    assert first.resource["badge"] == "1"
    same = apply_patch(first.resource, patch({"op": "replace", "path": "badge", "value": "1"}), resource_type)
    assert same.changed is False
    with pytest.raises(errors.Mutability):
        apply_patch(first.resource, patch({"op": "replace", "path": "badge", "value": "2"}), resource_type)
    with pytest.raises(errors.Mutability):
        apply_patch(first.resource, patch({"op": "remove", "path": "badge"}), resource_type)


def test_rfc7644_3_5_2_primary_true_demotes_the_others_on_add() -> None:
    """RFC 7644 3.5.2: setting primary true sets primary false on the other values."""
    start = a_user(emails=[{"value": "a", "type": "work", "primary": True}])
    result = patch_user(start, {"op": "add", "path": "emails", "value": [{"value": "b", "type": "home", "primary": True}]})
    assert result.resource["emails"] == [{"value": "a", "type": "work", "primary": False},
                                         {"value": "b", "type": "home", "primary": True}]


def test_rfc7644_3_5_2_primary_true_demotes_the_others_on_filtered_replace() -> None:
    """RFC 7644 3.5.2: the same through a filtered sub-attribute path."""
    start = a_user(emails=[{"value": "a", "type": "work", "primary": True}, {"value": "b", "type": "home"}])
    result = patch_user(start, {"op": "replace", "path": 'emails[type eq "home"].primary', "value": True})
    assert result.resource["emails"] == [{"value": "a", "type": "work", "primary": False},
                                         {"value": "b", "type": "home", "primary": True}]


def test_two_primaries_in_one_value_is_invalid_value() -> None:
    """RFC 7643 2.4: primary true at most once."""
    with pytest.raises(errors.InvalidValue):
        patch_user(a_user(), {"op": "replace", "path": "emails",
                              "value": [{"value": "a", "primary": True}, {"value": "b", "primary": True}]})


def test_password_is_extracted_never_stored() -> None:
    """RFC 7643 4.1.1: password is writeOnly."""
    result = patch_user(a_user(), {"op": "replace", "path": "password", "value": "s3cret"})
    assert result.password == "s3cret"
    assert "password" not in result.resource
    assert result.changed is False


def test_changed_is_false_when_nothing_changes() -> None:
    """No event is written for a PATCH that leaves the resource as it was."""
    start = a_user(active=True, name={"givenName": "B"})
    result = patch_user(start, {"op": "replace", "value": {"active": True, "name": {"givenName": "B"}}},
                        {"op": "remove", "path": "title"})
    assert result.changed is False
    assert result.resource == start


def test_patch_is_atomic() -> None:
    """RFC 7644 3.5.2: the PATCH is applied in full or not at all; the input is never mutated."""
    start = a_user(emails=[{"value": "a", "type": "work"}])
    snapshot = copy.deepcopy(start)
    with pytest.raises(errors.NoTarget):
        patch_user(start, {"op": "replace", "path": "title", "value": "x"},
                   {"op": "add", "path": "emails", "value": {"value": "b"}},
                   {"op": "remove", "path": 'emails[type eq "home"]'})
    assert start == snapshot


def test_value_filter_on_single_valued_is_invalid_path() -> None:
    """RFC 7644 3.5.2: a valuePath filter only applies to multi-valued attributes."""
    with pytest.raises(errors.InvalidPath):
        patch_user(a_user(), {"op": "replace", "path": 'title[value eq "x"]', "value": "y"})


@pytest.mark.parametrize("path", ['emails[type eq "work"', "name..givenName", "emails]", 'emails[type eq "work"]x'])
def test_malformed_path_is_invalid_path(path: str) -> None:
    """RFC 7644 3.12 invalidPath: the path was invalid or malformed."""
    with pytest.raises(errors.InvalidPath) as raised:
        patch_user(a_user(), {"op": "replace", "path": path, "value": "y"})
    assert raised.value.scim_type == "invalidPath"


def test_malformed_value_filter_is_invalid_filter() -> None:
    """RFC 7644 3.12 invalidFilter: the part inside the brackets is a filter."""
    with pytest.raises(errors.InvalidFilter):
        patch_user(a_user(), {"op": "replace", "path": "emails[type eq]", "value": "y"})


def test_unknown_attribute_path_is_ignored_and_reported() -> None:
    """Decision: unknown attributes are ignored (atomic PATCH: a 400 would also drop the
    deactivation in the same request) and reported for logging."""
    result = patch_user(a_user(), {"op": "replace", "path": "favouriteColour", "value": "blue"},
                        {"op": "replace", "path": "active", "value": False})
    assert result.resource["active"] is False
    assert result.ignored == ["favouriteColour"]


def test_unknown_path_less_keys_are_ignored() -> None:
    """RFC 7644 3.5.2.3 path-less value; unknown keys ignored, as for PUT."""
    result = patch_user(a_user(), {"op": "replace", "value": {"bogus": 1, "title": "x"}})
    assert result.resource["title"] == "x"
    assert result.ignored == ["bogus"]


def test_remove_values_from_a_user_multi_valued_attribute() -> None:
    """Remove with path and value removes only the given values (Entra style, for Users too)."""
    start = a_user(emails=[{"value": "a@x", "type": "work"}, {"value": "b@x", "type": "home"}])
    result = patch_user(start, {"op": "remove", "path": "emails", "value": [{"value": "A@X"}]})
    assert result.resource["emails"] == [{"value": "b@x", "type": "home"}]


def test_sub_attribute_without_filter_on_multi_valued_applies_to_all() -> None:
    """Decision: `emails.type` without filter addresses every value."""
    start = a_user(emails=[{"value": "a"}, {"value": "b"}])
    result = patch_user(start, {"op": "replace", "path": "emails.type", "value": "work"})
    assert result.resource["emails"] == [{"value": "a", "type": "work"}, {"value": "b", "type": "work"}]


def test_whole_extension_by_urn_path() -> None:
    """RFC 7644 3.10: the extension URN as path addresses the extension object."""
    start = a_user(**{ENTERPRISE_USER: {"department": "X"}})
    start["schemas"] = [CORE_USER, ENTERPRISE_USER]
    result = patch_user(start, {"op": "replace", "path": ENTERPRISE_USER, "value": {"division": "D"}})
    assert result.resource[ENTERPRISE_USER] == {"department": "X", "division": "D"}
    removed = patch_user(start, {"op": "remove", "path": ENTERPRISE_USER})
    assert removed.resource == a_user()


def test_members_filter_other_than_value_is_refused() -> None:
    """Members are not in the stored group: only `value eq` filters can name them."""
    with pytest.raises(errors.InvalidFilter):
        patch_group({"op": "remove", "path": 'members[display eq "Babs"]'})


def test_members_remove_by_or_filter() -> None:
    """RFC 7644 3.4.2.2 `or` in a members filter names several members."""
    result = patch_group({"op": "remove", "path": f'members[value eq "{BABS}" or value eq "{JAMES}"]'})
    assert result.member_ops == [MemberOp("remove", [BABS, JAMES])]


def test_nested_group_member_add_is_refused() -> None:
    """Nested groups are not supported: 400 invalidValue."""
    with pytest.raises(errors.InvalidValue, match="nested groups"):
        patch_group({"op": "add", "path": "members", "value": [{"value": "g", "type": "Group"}]})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.sampled_from(["add", "Replace", "remove", "members", "emails", 'emails[type eq "work"].value',
                       "name.givenName", "userName", f"{ENTERPRISE_USER}:manager", "active", "False", "id"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["op", "path", "value", "Operations", "schemas", "emails", "name", "value", "type",
                         "primary", "members", "userName", ENTERPRISE_USER, "active", "x"]) | st.text(max_size=6),
        children, max_size=4),
    max_leaves=20,
)
OPERATION = st.fixed_dictionaries({}, optional={
    "op": st.sampled_from(["add", "replace", "remove", "Add", "bogus"]) | JSON,
    "path": st.sampled_from(["emails", 'emails[type eq "work"]', 'emails[type eq "work"].value', "name",
                             "name.givenName", "members", 'members[value eq "u1"]', "userName", "id",
                             f"{ENTERPRISE_USER}:manager", ENTERPRISE_USER, "bogus", "emails[", ""]) | JSON,
    "value": JSON,
})
BODIES = st.one_of(
    JSON,
    st.builds(lambda ops: {"schemas": [PATCH_OP], "Operations": ops}, st.lists(OPERATION, min_size=1, max_size=4)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patch_body=BODIES, group=st.booleans())
def test_arbitrary_bodies_raise_only_scim_errors(patch_body: Any, group: bool) -> None:
    """Any JSON body either applies or raises a ScimError (a 4xx), never anything else (a 500)."""
    resource_type = GROUP_RESOURCE if group else USER_RESOURCE
    start = a_group() if group else a_user(emails=[{"value": "a", "type": "work", "primary": True}],
                                          name={"givenName": "B"})
    try:
        result = apply_patch(start, patch_body, resource_type)
    except ScimError:
        return
    assert isinstance(result.resource, dict)


def test_adding_thousands_of_values_stays_linear() -> None:
    """Guard: duplicate checks on add and value removal are indexed, not quadratic, and adding or
    removing thousands of values to thousands stays inside the PATCH work budget."""
    start = a_user(emails=[{"value": f"a{i}@x"} for i in range(2000)])
    added = patch_user(start, {"op": "add", "path": "emails", "value": [{"value": f"b{i}@x"} for i in range(2000)]})
    assert len(added.resource["emails"]) == 4000
    removed = patch_user(added.resource, {"op": "remove", "path": "emails",
                                          "value": [{"value": f"A{i}@X"} for i in range(2000)]})
    assert removed.resource["emails"] == [{"value": f"b{i}@x"} for i in range(2000)]


def test_sub_attribute_of_extension_complex_by_urn_path() -> None:
    """RFC 7644 3.10: `urn:...:User:manager.value` addresses the sub-attribute."""
    result = patch_user(a_user(), {"op": "add", "path": f"{ENTERPRISE_USER}:manager.value", "value": "m1"})
    assert result.resource[ENTERPRISE_USER] == {"manager": {"value": "m1"}}
