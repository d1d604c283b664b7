"""Shared cases of the filter tests (RFC 7644 section 3.4.2.2): the SQL targets (the shape of the
views' column maps), the RFC's Figure 2 examples, a sample resource and small helpers."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from service.scim.filter import (
    AttrPath,
    Column,
    Expr,
    Relation,
    SqlTarget,
    parse_filter,
    resolve,
    to_sql,
)
from service.scim.schema import CORE_USER, ENTERPRISE_USER, GROUP_RESOURCE, USER_RESOURCE


def membership(alias: str, this: str, other: str) -> Relation:
    """The group_members rows of the row aliased `alias` (its id in `m.<this>`), whose `value` is
    the id at the other end (`m.<other>`)."""
    return Relation(
        f"SELECT 1 FROM group_members m WHERE m.tenant_id = {alias}.tenant_id AND m.{this} = {alias}.id",
        {"value": Column(f"m.{other}", "uuid")},
    )


USERS = SqlTarget(
    resource_type=USER_RESOURCE,
    columns={
        "id": Column("u.id", "uuid", case_exact=True),
        "username": Column("u.user_name"),
        "externalid": Column("u.external_id", case_exact=True),
        "displayname": Column("u.display_name"),
        "active": Column("u.active", "boolean"),
        "meta.created": Column("u.created", "dateTime"),
        "meta.lastmodified": Column("u.last_modified", "dateTime"),
    },
    json_column="u.resource",
    relations={"groups": membership("u", "member_id", "group_id")},
    constants={"meta.resourcetype": "User"},
)
GROUPS = SqlTarget(
    resource_type=GROUP_RESOURCE,
    columns={"id": Column("g.id", "uuid"), "displayname": Column("g.display_name")},
    json_column="g.resource",
    relations={"members": membership("g", "group_id", "member_id")},
    constants={"meta.resourcetype": "Group"},
)

U = USER_RESOURCE
EMAILS = USER_RESOURCE.top_level("emails")


def parse(text: str) -> Expr:
    return resolve(parse_filter(text), U)


def path(name: str, sub: str | None = None, urn: str | None = None) -> AttrPath:
    return AttrPath(urn, name, sub)


# RFC 7644 section 3.4.2.2, Figure 2.
RFC_EXAMPLES = [
    'userName eq "bjensen"',
    "name.familyName co \"O'Malley\"",
    'userName sw "J"',
    'urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"',
    "title pr",
    'meta.lastModified gt "2011-05-13T04:42:34Z"',
    'meta.lastModified ge "2011-05-13T04:42:34Z"',
    'meta.lastModified lt "2011-05-13T04:42:34Z"',
    'meta.lastModified le "2011-05-13T04:42:34Z"',
    'title pr and userType eq "Employee"',
    'title pr or userType eq "Intern"',
    'schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"',
    'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")',
    'userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")',
    'userType eq "Employee" and (emails.type eq "work")',
    'userType eq "Employee" and emails[type eq "work" and value co "@example.com"]',
    'emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]',
]


BJENSEN = {
    "schemas": [CORE_USER, ENTERPRISE_USER],
    "id": "2819c223-7f76-453a-919d-413861904646",
    "externalId": "bjensen",
    "userName": "bjensen@example.com",
    "name": {"familyName": "Jensen", "givenName": "Barbara"},
    "userType": "Employee",
    "active": True,
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.org", "type": "home"},
    ],
    "ims": [{"value": "someaimhandle", "type": "aim"}],
    "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"},
    ENTERPRISE_USER: {"department": "Tour Operations", "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}},
}


FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sql_of(text: str, target: SqlTarget = USERS, **kw: int) -> tuple[str, list[object]]:
    return to_sql(resolve(parse_filter(text), target.resource_type), target, **kw)
