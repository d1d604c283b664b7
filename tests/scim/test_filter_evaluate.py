"""SCIM filters evaluated in memory (RFC 7644 section 3.4.2.2; value filters of PATCH paths,
section 3.5.2): `matches`."""

from __future__ import annotations

import pytest

from service.scim.filter import ValuePath, matches, parse_filter, resolve
from service.scim.schema import ENTERPRISE_USER
from tests.scim.filter_cases import BJENSEN, EMAILS, U, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName eq "BJENSEN@example.com"', True),  # caseExact false
        ('externalId eq "BJENSEN"', False),  # caseExact true
        ('externalId eq "bjensen"', True),
        ("name.familyName co \"ens\"", True),
        ('userName sw "bj" and userName ew ".COM"', True),
        ("title pr", False),
        ("not (title pr)", True),
        ('title ne "x"', True),  # absent is "not equal"
        ('not (title eq "x")', True),
        ("title eq null", True),
        ('meta.lastModified gt "2011-05-13T04:42:33Z"', True),
        ('meta.lastModified eq "2011-05-13T06:42:34+02:00"', True),  # instants, not text
        ('meta.lastModified lt "2011-05-13"', False),
        ('emails co "jensen.org"', True),  # any element
        ('emails[type eq "work" and value co "jensen.org"]', False),  # same element
        ('emails.type eq "work" and emails.value co "jensen.org"', True),  # any element each
        ('emails[type eq "home" and value co "jensen.org"]', True),
        ('emails ne "babs@jensen.org"', False),  # ne is "no element equals"
        ("emails.primary eq true", True),
        ('active eq "true"', True),
        (f'{ENTERPRISE_USER}:department eq "tour operations"', True),
        (f'{ENTERPRISE_USER}:manager.value sw "26118915"', True),
        ('schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"', True),
        ('meta.resourceType eq "User"', True),
        ('userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")', True),
        ('userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")', False),
        ('emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]', True),
        ("name pr and emails pr and ims.type pr", True),
        ("addresses pr", False),
    ],
)
def test_rfc7644_3_4_2_2_matches_a_whole_resource(text: str, expected: bool) -> None:
    """RFC 7644 3.4.2.2: filter semantics in memory: caseExact, dateTime instants, any element of
    a multi-valued attribute, value filters over one element (RFC 7643 section 8.2 sample)."""
    assert matches(parse(text), BJENSEN, None, U) is expected


def test_rfc7644_3_5_2_matches_elements_of_a_multi_valued_attribute() -> None:
    """RFC 7644 3.5.2: `emails[type eq "work"]` selects elements; paths are relative to them."""
    assert EMAILS is not None
    selector = resolve(parse_filter('emails[TYPE eq "WORK" and primary eq true]'), U)
    assert isinstance(selector, ValuePath)
    selected = [e for e in BJENSEN["emails"] if matches(selector.filter, e, EMAILS, U)]
    assert selected == [BJENSEN["emails"][0]]
    assert matches(selector, BJENSEN, None, U)


def test_matches_tolerates_odd_stored_shapes() -> None:
    """RFC 7643 2.4: values of unexpected shape never raise, they just do not match (the same
    reading as the SQL: a multi-valued attribute that is not an array has no elements, a stored
    boolean must be a JSON boolean)."""
    odd = {"emails": {"value": "a@x"}, "name": ["x"], "active": "true", "meta": "x"}
    assert not matches(parse('emails co "a@x"'), odd, None, U)  # not an array: no elements
    assert not matches(parse("name pr"), odd, None, U)
    assert not matches(parse('name.familyName eq "x"'), odd, None, U)
    assert not matches(parse("active eq true"), odd, None, U)
    assert not matches(parse('meta.created gt "2020-01-01T00:00:00Z"'), odd, None, U)
