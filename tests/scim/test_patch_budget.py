"""The PATCH work budget and value cap (issue 12, item 3: one PATCH held the event loop for 20 s).

The engine counts its work as it does it (service/scim/budget.py) and refuses with 400 tooMany
(RFC 7644 3.12) once WORK_BUDGET units are spent or the operations carry more than
MAX_PATCH_VALUES values; a refused PATCH changes nothing (RFC 7644 3.5.2: a PATCH is atomic).
The legitimate shapes Okta and Entra send stay far below both. The cost at the limit is measured
by tests/bench/test_patch_budget_bench.py, not here.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from service.scim import errors
from service.scim.budget import WORK_BUDGET, Budget
from service.scim.filter import matches, parse_filter, resolve
from service.scim.patch import MAX_PATCH_VALUES, apply_patch
from service.scim.schema import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE_USER,
    GROUP_RESOURCE,
    USER_RESOURCE,
)
from tests.support import patch

# issue 12's reproducer: 40 x `replace emails[type eq "t0" or ... (45 terms) or value pr].display`
TERMS_45 = " or ".join(f'type eq "t{i}"' for i in range(45)) + " or value pr"
REPRODUCER = patch(*[{"op": "replace", "path": f"emails[{TERMS_45}].display", "value": "d"}] * 40)


def many_emails(n: int) -> dict[str, Any]:
    return {"schemas": [CORE_USER], "userName": "bjensen",
            "emails": [{"value": f"e{i}@example.com", "type": f"t{i % 50}"} for i in range(n)]}


def members(n: int) -> list[dict[str, str]]:
    return [{"value": f"{i:08x}-0000-4000-8000-000000000000"} for i in range(n)]


def test_issue12_item3_reproducer_is_too_many_and_changes_nothing() -> None:
    """RFC 7644 3.12 tooMany, 3.5.2 (atomic): the 20-second PATCH of issue 12 is refused with a
    400 naming the limit, and the stored resource it was applied to is left as it was."""
    user = many_emails(9000)
    before = copy.deepcopy(user)
    with pytest.raises(errors.TooMany) as refused:
        apply_patch(user, REPRODUCER, USER_RESOURCE)
    assert refused.value.status == 400 and refused.value.scim_type == "tooMany"
    assert f"{WORK_BUDGET:,} units" in refused.value.detail
    assert user == before


def test_budget_is_shared_by_all_operations_of_a_request() -> None:
    """The budget bounds operations x elements, not each operation alone: an operation that fits
    easily, repeated within MAX_OPERATIONS, is refused once the request as a whole passes it."""
    user = many_emails(100)
    op = {"op": "replace", "path": "emails.display", "value": "d"}
    one = apply_patch(user, patch(op), USER_RESOURCE).work
    each = apply_patch(user, patch(op, op), USER_RESOURCE).work - one  # the path is parsed once
    assert 0 < each <= one < WORK_BUDGET // 50
    with pytest.raises(errors.TooMany):
        apply_patch(user, patch(*[op] * (WORK_BUDGET // each + 1)), USER_RESOURCE)


def test_long_strings_compared_are_counted() -> None:
    """Comparing long strings costs with their length: a `co` filter over long values spends
    one unit per TEXT_UNIT characters, so few elements with huge values cannot evade the budget."""
    user = many_emails(20)
    for email in user["emails"]:
        email["display"] = "x" * 50_000
    body = patch(*[{"op": "replace", "path": 'emails[display co "zz" or value eq "e1@example.com"].type',
                    "value": "w"}] * 100)
    with pytest.raises(errors.TooMany):
        apply_patch(user, body, USER_RESOURCE)


def test_too_many_values_is_refused_naming_the_limit() -> None:
    """RFC 7644 3.12 tooMany: a PATCH carrying more than MAX_PATCH_VALUES values (array elements
    and object members, in all its operations) is refused before any is applied."""
    half = MAX_PATCH_VALUES // 2
    body = patch({"op": "add", "path": "members", "value": members(half)},
                 {"op": "add", "path": "members", "value": members(1)})
    with pytest.raises(errors.TooMany) as refused:
        apply_patch({"schemas": [CORE_GROUP], "displayName": "G"}, body, GROUP_RESOURCE)
    assert f"{MAX_PATCH_VALUES:,} values" in refused.value.detail


def test_unknown_path_less_keys_are_counted() -> None:
    """A path-less value of tens of thousands of unknown keys (each ignored) still costs per key:
    every key is a path to look up, so they spend the budget too."""
    body = patch({"op": "add", "value": {f"x{i}": 1 for i in range(MAX_PATCH_VALUES)}})
    with pytest.raises(errors.TooMany):
        apply_patch(many_emails(1), body, USER_RESOURCE)


def test_group_push_of_five_thousand_members_passes() -> None:
    """A group push of thousands of members in one request (Entra's `add members [{value}]`)
    passes: members cost values, not budget work, and 5,000 (two values each) fit
    MAX_PATCH_VALUES."""
    body = patch({"op": "Replace", "path": "displayName", "value": "Engineering"},
                 {"op": "Add", "path": "members", "value": members(5_000)})
    result = apply_patch({"schemas": [CORE_GROUP], "displayName": "G"}, body, GROUP_RESOURCE)
    assert len(result.member_ops[0].values) == 5_000
    assert result.work < WORK_BUDGET // 100


ENTRA_UPDATE = patch(
    {"op": "Replace", "path": "userName", "value": "alice@contoso.com"},
    {"op": "Replace", "path": "active", "value": "True"},
    {"op": "Replace", "path": "displayName", "value": "Alice Smith"},
    {"op": "Replace", "path": "title", "value": "Engineer"},
    {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "alice@contoso.com"},
    {"op": "Replace", "path": "name.givenName", "value": "Alice"},
    {"op": "Replace", "path": "name.familyName", "value": "Smith"},
    {"op": "Replace", "path": "name.formatted", "value": "Alice Smith"},
    {"op": "Replace", "path": 'phoneNumbers[type eq "work"].value', "value": "+1 555 0100"},
    {"op": "Replace", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555 0101"},
    {"op": "Replace", "path": 'phoneNumbers[type eq "fax"].value', "value": "+1 555 0102"},
    {"op": "Replace", "path": 'addresses[type eq "work"].streetAddress', "value": "1 Main St"},
    {"op": "Replace", "path": 'addresses[type eq "work"].locality', "value": "Redmond"},
    {"op": "Replace", "path": 'addresses[type eq "work"].region', "value": "WA"},
    {"op": "Replace", "path": 'addresses[type eq "work"].postalCode', "value": "98052"},
    {"op": "Replace", "path": 'addresses[type eq "work"].country', "value": "US"},
    {"op": "Replace", "path": 'addresses[type eq "work"].formatted', "value": "1 Main St, Redmond"},
    {"op": "Replace", "path": "preferredLanguage", "value": "en-US"},
    {"op": "Replace", "path": "externalId", "value": "alice"},
    {"op": "Replace", "path": f"{ENTERPRISE_USER}:employeeNumber", "value": "1234"},
    {"op": "Replace", "path": f"{ENTERPRISE_USER}:department", "value": "R&D"},
    {"op": "Replace", "path": f"{ENTERPRISE_USER}:organization", "value": "Contoso"},
    {"op": "Replace", "path": f"{ENTERPRISE_USER}:costCenter", "value": "42"},
    {"op": "Replace", "path": f"{ENTERPRISE_USER}:division", "value": "Cloud"},
    {"op": "Replace", "path": f"{ENTERPRISE_USER}:manager", "value": "26118915-6090-4610-87e4-49d8ca9f808d"},
    {"op": "Add", "path": 'emails[type eq "other"].value', "value": "alice@home.example"},
    {"op": "Remove", "path": 'phoneNumbers[type eq "fax"]'},
)

OKTA_PROFILE_PUSH = patch({"op": "replace", "value": {
    "userName": "alice@example.com", "displayName": "Alice Smith", "active": True,
    "name": {"givenName": "Alice", "familyName": "Smith", "middleName": "J", "honorificPrefix": "Dr"},
    "emails": [{"value": "alice@example.com", "type": "work", "primary": True},
               {"value": "alice@home.example", "type": "home"}],
    "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}, {"value": "+1 555 0101", "type": "mobile"}],
    "addresses": [{"type": "work", "streetAddress": "1 Main St", "locality": "SF", "region": "CA",
                   "postalCode": "94105", "country": "US", "primary": True}],
    "title": "Engineer", "locale": "en-US", "timezone": "America/Los_Angeles", "userType": "Employee",
    ENTERPRISE_USER: {"employeeNumber": "1234", "department": "R&D", "organization": "Example",
                      "costCenter": "42", "division": "Cloud", "manager": {"value": "m1"}},
}})


@pytest.mark.parametrize("body", [ENTRA_UPDATE, OKTA_PROFILE_PUSH], ids=["entra-full-update", "okta-profile-push"])
def test_the_largest_idp_user_patches_stay_far_below_the_budget(body: dict[str, Any]) -> None:
    """Every attribute Okta or Entra maps, in one PATCH on a user with several values of each
    multi-valued attribute, spends under a tenth of WORK_BUDGET."""
    user = {"schemas": [CORE_USER], "userName": "alice", "active": True,
            "emails": [{"value": f"a{i}@example.com", "type": t} for i, t in enumerate(["work", "home", "other"])],
            "phoneNumbers": [{"value": f"+1 555 01{i:02}", "type": t} for i, t in enumerate(["work", "mobile", "fax"])],
            "addresses": [{"type": "work", "locality": "X"}, {"type": "home", "locality": "Y"}]}
    result = apply_patch(user, body, USER_RESOURCE)
    assert result.changed
    assert result.work < WORK_BUDGET // 10, result.work


def test_in_memory_filter_evaluation_is_bounded() -> None:
    """RFC 7644 3.4.2.2 filters evaluated in memory (`matches`) spend a budget per node and value:
    a filter over a resource with thousands of values cannot run unbounded, with or without a
    caller's Budget."""
    terms = " or ".join(f'type eq "t{i}"' for i in range(45))
    expr = resolve(parse_filter(f"emails[{terms}]"), USER_RESOURCE)
    user = many_emails(9000)
    for email in user["emails"]:
        email["type"] = "none"  # no term matches: every term of every element is evaluated
    with pytest.raises(errors.TooMany):
        matches(expr, user, None, USER_RESOURCE)
    budget = Budget(1_000)
    with pytest.raises(errors.TooMany):
        matches(expr, {**user, "emails": user["emails"][:30]}, None, USER_RESOURCE, budget)


def test_over_budget_filters_are_refused_before_any_operation_runs() -> None:
    """Operations x elements x filter terms beyond WORK_BUDGET are refused up front, at almost no
    cost: here the first operation (a remove matching nothing, noTarget if it ran) never runs,
    and the answer is 400 tooMany."""
    body = patch({"op": "remove", "path": 'emails[value eq "nobody@example.com"]'},
                 *[{"op": "replace", "path": f"emails[{TERMS_45}].display", "value": "d"}] * 40)
    with pytest.raises(errors.TooMany):
        apply_patch(many_emails(100), body, USER_RESOURCE)
