"""Where each filterable SCIM attribute is stored: the column maps of the users and groups views
for the filter and sort compiler (service/scim/filter). A map is also the whitelist: an attribute
not named here is filtered through the resource's JSON, never through string-built SQL.
"""

from __future__ import annotations

from service.scim import filter as scim_filter
from service.scim.schema import GROUP_RESOURCE, USER_RESOURCE

USERS_TARGET = scim_filter.SqlTarget(
    resource_type=USER_RESOURCE,
    columns={
        "id": scim_filter.Column("u.id", "uuid", case_exact=True),
        "username": scim_filter.Column("u.user_name"),
        "externalid": scim_filter.Column("u.external_id", case_exact=True),
        "displayname": scim_filter.Column("u.display_name"),
        "active": scim_filter.Column("u.active", "boolean"),
        "meta.created": scim_filter.Column("u.created", "dateTime"),
        "meta.lastmodified": scim_filter.Column("u.last_modified", "dateTime"),
    },
    json_column="u.resource",
    relations={
        "groups": scim_filter.Relation(
            exists_sql="SELECT 1 FROM group_members m WHERE m.tenant_id = u.tenant_id AND m.member_id = u.id",
            columns={"value": scim_filter.Column("m.group_id", "uuid", case_exact=True)},
        )
    },
    constants={"meta.resourcetype": "User"},
    value_indexes={"emails.value": "scim_email_values(u.resource)"},
)

GROUPS_TARGET = scim_filter.SqlTarget(
    resource_type=GROUP_RESOURCE,
    columns={
        "id": scim_filter.Column("g.id", "uuid", case_exact=True),
        "displayname": scim_filter.Column("g.display_name"),
        "externalid": scim_filter.Column("g.external_id", case_exact=True),
        "meta.created": scim_filter.Column("g.created", "dateTime"),
        "meta.lastmodified": scim_filter.Column("g.last_modified", "dateTime"),
    },
    json_column="g.resource",
    relations={
        "members": scim_filter.Relation(
            exists_sql="SELECT 1 FROM group_members m WHERE m.tenant_id = g.tenant_id AND m.group_id = g.id",
            columns={"value": scim_filter.Column("m.member_id", "uuid", case_exact=True)},
        )
    },
    constants={"meta.resourcetype": "Group"},
)
