"""The SCIM resource schemas as data (RFC 7643 sections 2, 3, 4 and 8.7).

Attribute characteristics (type, multiValued, required, mutability, returned, uniqueness,
caseExact, canonicalValues, referenceTypes) are declared here once. Validation, projection
(`attributes`/`excludedAttributes`), filtering, PATCH and the /Schemas discovery document all
read this data; none of them keeps its own list of attribute names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
RESOURCE_TYPE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SERVICE_PROVIDER_CONFIG_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"


@dataclass(frozen=True)
class Attribute:
    """One attribute definition (RFC 7643 section 7)."""

    name: str
    type: str = "string"  # string boolean decimal integer dateTime binary reference complex
    multi_valued: bool = False
    required: bool = False
    mutability: str = "readWrite"  # readOnly readWrite immutable writeOnly
    returned: str = "default"  # always never default request
    uniqueness: str = "none"  # none server global
    case_exact: bool = False
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    sub_attributes: tuple[Attribute, ...] = ()
    description: str = ""

    def sub(self, name: str) -> Attribute | None:
        """The sub-attribute called `name`, matched case-insensitively (RFC 7643 section 2.1)."""
        key = name.lower()
        for attribute in self.sub_attributes:
            if attribute.name.lower() == key:
                return attribute
        return None

    def to_scim(self) -> dict[str, Any]:
        """The attribute as /Schemas shows it (RFC 7643 section 7)."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": self.mutability,
            "returned": self.returned,
            "uniqueness": self.uniqueness,
        }
        if self.canonical_values:
            out["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            out["referenceTypes"] = list(self.reference_types)
        if self.sub_attributes:
            out["subAttributes"] = [a.to_scim() for a in self.sub_attributes]
        return out


@dataclass(frozen=True)
class Schema:
    id: str
    name: str
    description: str
    attributes: tuple[Attribute, ...]

    def attribute(self, name: str) -> Attribute | None:
        """The top-level attribute called `name`, matched case-insensitively."""
        key = name.lower()
        for attribute in self.attributes:
            if attribute.name.lower() == key:
                return attribute
        return None

    def to_scim(self, base_url: str = "") -> dict[str, Any]:
        return {
            "schemas": [SCHEMA_SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [a.to_scim() for a in self.attributes],
            "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{self.id}"},
        }


@dataclass(frozen=True)
class ResourceType:
    """A resource type (RFC 7643 section 6): its core schema, extensions and common attributes."""

    id: str
    name: str
    endpoint: str
    description: str
    schema: Schema
    extensions: tuple[Schema, ...] = ()
    common: tuple[Attribute, ...] = field(default=())

    @property
    def schemas(self) -> tuple[Schema, ...]:
        return (self.schema, *self.extensions)

    def extension(self, urn: str) -> Schema | None:
        key = urn.lower()
        for schema in self.extensions:
            if schema.id.lower() == key:
                return schema
        return None

    def schema_by_urn(self, urn: str) -> Schema | None:
        if urn.lower() == self.schema.id.lower():
            return self.schema
        return self.extension(urn)

    def top_level(self, name: str) -> Attribute | None:
        """A common or core attribute by name (case-insensitive); extensions are addressed by URN."""
        key = name.lower()
        for attribute in self.common:
            if attribute.name.lower() == key:
                return attribute
        return self.schema.attribute(name)

    def to_scim(self, base_url: str = "") -> dict[str, Any]:
        return {
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": self.id,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.schema.id,
            "schemaExtensions": [{"schema": s.id, "required": False} for s in self.extensions],
            "meta": {
                "resourceType": "ResourceType",
                "location": f"{base_url}/ResourceTypes/{self.id}",
            },
        }


def _a(name: str, **kw: Any) -> Attribute:
    return Attribute(name=name, **kw)


def _multi(
    name: str,
    description: str,
    *,
    types: Iterable[str] = (),
    value_type: str = "string",
    reference_types: tuple[str, ...] = (),
) -> Attribute:
    """A multi-valued complex attribute with the standard value/display/type/primary subs
    (RFC 7643 section 2.4)."""
    value = _a("value", type=value_type, description=f"The value of the {name} entry.",
               reference_types=reference_types)
    return _a(
        name,
        type="complex",
        multi_valued=True,
        description=description,
        sub_attributes=(
            value,
            _a("display", description="A human-readable name, primarily used for display purposes."),
            _a("type", canonical_values=tuple(types), description="A label indicating the attribute's function."),
            _a("primary", type="boolean", description="Indicates the 'primary' or preferred value."),
        ),
    )


# RFC 7643 section 3.1: attributes every resource carries.
COMMON_ATTRIBUTES: tuple[Attribute, ...] = (
    _a("id", mutability="readOnly", returned="always", uniqueness="server", case_exact=True,
       description="Unique identifier for the SCIM resource as defined by the service provider."),
    _a("externalId", case_exact=True,
       description="Identifier for the resource as defined by the provisioning client."),
    _a("meta", type="complex", mutability="readOnly", description="Resource metadata.",
       sub_attributes=(
           _a("resourceType", mutability="readOnly", case_exact=True, description="The name of the resource type."),
           _a("created", type="dateTime", mutability="readOnly", description="When the resource was added."),
           _a("lastModified", type="dateTime", mutability="readOnly", description="When the resource was last changed."),
           _a("location", type="reference", reference_types=("uri",), mutability="readOnly", case_exact=True,
              description="The URI of the resource."),
           _a("version", mutability="readOnly", case_exact=True, description="The version (ETag) of the resource."),
       )),
)

# RFC 7643 section 4.1 and 8.7.1.
USER = Schema(
    id=CORE_USER,
    name="User",
    description="User Account",
    attributes=(
        _a("userName", required=True, uniqueness="server",
           description="Unique identifier for the User, typically used by the user to directly authenticate."),
        _a("name", type="complex", description="The components of the user's real name.", sub_attributes=(
            _a("formatted", description="The full name, formatted for display."),
            _a("familyName", description="The family name of the User."),
            _a("givenName", description="The given name of the User."),
            _a("middleName", description="The middle name(s) of the User."),
            _a("honorificPrefix", description="The honorific prefix(es) of the User."),
            _a("honorificSuffix", description="The honorific suffix(es) of the User."),
        )),
        _a("displayName", description="The name of the User, suitable for display to end-users."),
        _a("nickName", description="The casual way to address the user."),
        _a("profileUrl", type="reference", reference_types=("external",),
           description="A fully qualified URL pointing to a page representing the User's online profile."),
        _a("title", description="The user's title, such as 'Vice President'."),
        _a("userType", description="Used to identify the relationship between the organization and the user."),
        _a("preferredLanguage", description="The User's preferred written or spoken language (RFC 7231 Accept-Language)."),
        _a("locale", description="The User's default location for localization."),
        _a("timezone", description="The User's time zone in the 'Olson' time zone database format."),
        _a("active", type="boolean", description="The User's administrative status."),
        _a("password", mutability="writeOnly", returned="never",
           description="The User's cleartext password; write-only, never returned."),
        _multi("emails", "Email addresses for the user.", types=("work", "home", "other")),
        _multi("phoneNumbers", "Phone numbers for the User.",
               types=("work", "home", "mobile", "fax", "pager", "other")),
        _multi("ims", "Instant messaging addresses for the User.",
               types=("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo")),
        _multi("photos", "URLs of photos of the User.", types=("photo", "thumbnail"),
               value_type="reference", reference_types=("external",)),
        _a("addresses", type="complex", multi_valued=True, description="A physical mailing address for this User.",
           sub_attributes=(
               _a("formatted", description="The full mailing address, formatted for display."),
               _a("streetAddress", description="The full street address component."),
               _a("locality", description="The city or locality component."),
               _a("region", description="The state or region component."),
               _a("postalCode", description="The zip code or postal code component."),
               _a("country", description="The country name component (ISO 3166-1 alpha-2)."),
               _a("type", canonical_values=("work", "home", "other"), description="A label indicating the attribute's function."),
               _a("primary", type="boolean", description="Indicates the 'primary' or preferred address."),
           )),
        _a("groups", type="complex", multi_valued=True, mutability="readOnly",
           description="A list of groups to which the user belongs (read-only, derived from group memberships).",
           sub_attributes=(
               _a("value", mutability="readOnly", description="The identifier of the User's group."),
               _a("$ref", type="reference", reference_types=("Group",), mutability="readOnly",
                  description="The URI of the corresponding Group resource."),
               _a("display", mutability="readOnly", description="The group's displayName."),
               _a("type", mutability="readOnly", canonical_values=("direct", "indirect"),
                  description="How the membership was derived."),
           )),
        _multi("entitlements", "A list of entitlements for the User."),
        _multi("roles", "A list of roles for the User."),
        _multi("x509Certificates", "A list of certificates issued to the User.", value_type="binary"),
    ),
)

# RFC 7643 section 4.3 and 8.7.1.
ENTERPRISE = Schema(
    id=ENTERPRISE_USER,
    name="EnterpriseUser",
    description="Enterprise User",
    attributes=(
        _a("employeeNumber", description="Numeric or alphanumeric identifier assigned to a person."),
        _a("costCenter", description="Identifies the name of a cost center."),
        _a("organization", description="Identifies the name of an organization."),
        _a("division", description="Identifies the name of a division."),
        _a("department", description="Identifies the name of a department."),
        _a("manager", type="complex", description="The User's manager.", sub_attributes=(
            _a("value", description="The id of the SCIM resource representing the User's manager."),
            _a("$ref", type="reference", reference_types=("User",), description="The URI of the manager's User resource."),
            _a("displayName", mutability="readOnly", description="The displayName of the User's manager."),
        )),
    ),
)

# RFC 7643 section 4.2 and 8.7.1. Members are Users only: nested groups are refused (docs/decisions.md).
# Members carry the sub-attributes of 8.7.1 (value, $ref, type); a `display` sent by a client is
# ignored like any unknown sub-attribute, and none is made up from the user's current name, since
# members' sub-attributes are immutable (4.2).
GROUP = Schema(
    id=CORE_GROUP,
    name="Group",
    description="Group",
    attributes=(
        _a("displayName", required=True, description="A human-readable name for the Group."),
        _a("members", type="complex", multi_valued=True, description="A list of members of the Group.",
           sub_attributes=(
               _a("value", mutability="immutable", description="Identifier of the member of this Group."),
               _a("$ref", type="reference", reference_types=("User",), mutability="immutable",
                  description="The URI of the member resource."),
               _a("type", mutability="immutable", canonical_values=("User",),
                  description="The type of the member: 'User' (nested groups are not supported)."),
           )),
    ),
)

USER_RESOURCE = ResourceType(
    id="User", name="User", endpoint="/Users", description="User Account",
    schema=USER, extensions=(ENTERPRISE,), common=COMMON_ATTRIBUTES,
)
GROUP_RESOURCE = ResourceType(
    id="Group", name="Group", endpoint="/Groups", description="Group",
    schema=GROUP, common=COMMON_ATTRIBUTES,
)
RESOURCE_TYPES: tuple[ResourceType, ...] = (USER_RESOURCE, GROUP_RESOURCE)
SCHEMAS: tuple[Schema, ...] = (USER, ENTERPRISE, GROUP)
