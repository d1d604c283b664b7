"""Discovery endpoints (RFC 7644 section 4; RFC 7643 sections 5, 6 and 7).

Everything here is generated from `scim.schema`, the same attribute data the handlers use, so
/Schemas cannot drift from what the server does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from projections.domain.security_events import SCIM_EVENT_URIS
from service.app import streams
from service.http.context import base_url, connection
from service.http.keys import PRINCIPAL, SETTINGS
from service.http.wire import scim_response
from service.scim import schema
from service.scim.errors import Forbidden, NotFound, ScimError
from service.scim.query import list_response


def _ro(name: str, **kw: Any) -> schema.Attribute:
    """A read-only attribute of a discovery resource (clients only read these)."""
    return schema.Attribute(name=name, mutability="readOnly", **kw)


def _supported(name: str, description: str, *more: schema.Attribute) -> schema.Attribute:
    return _ro(name, type="complex", required=True, description=description, sub_attributes=(
        _ro("supported", type="boolean", required=True, description="Whether the operation is supported."),
        *more,
    ))


_ATTRIBUTE_DEFINITION = (
    _ro("name", required=True, case_exact=True, description="The attribute's name."),
    _ro("type", required=True, canonical_values=(
        "string", "complex", "boolean", "decimal", "integer", "dateTime", "reference", "binary"),
        description="The attribute's data type."),
    _ro("multiValued", type="boolean", required=True, description="Whether the attribute is multi-valued."),
    _ro("description", description="A human-readable description of the attribute."),
    _ro("required", type="boolean", required=True, description="Whether the attribute is required."),
    _ro("canonicalValues", multi_valued=True, case_exact=True, description="Suggested values."),
    _ro("caseExact", type="boolean", description="Whether string values are case sensitive."),
    _ro("mutability", case_exact=True, canonical_values=("readOnly", "readWrite", "immutable", "writeOnly"),
        description="Whether and how the attribute can be written."),
    _ro("returned", case_exact=True, canonical_values=("always", "never", "default", "request"),
        description="When the attribute is returned."),
    _ro("uniqueness", case_exact=True, canonical_values=("none", "server", "global"),
        description="How the service provider enforces uniqueness."),
    _ro("referenceTypes", multi_valued=True, case_exact=True, description="The resource types a reference may point to."),
)

# RFC 7643 section 8.7.2: the schemas of the discovery resources themselves, which conformance
# checkers expect to find in /Schemas next to User, EnterpriseUser and Group.
SERVICE_PROVIDER_CONFIG = schema.Schema(
    id=schema.SERVICE_PROVIDER_CONFIG_SCHEMA,
    name="ServiceProviderConfig",
    description="Service Provider Configuration",
    attributes=(
        _ro("documentationUri", type="reference", reference_types=("external",),
            description="An HTTP-addressable URL pointing to the service provider's help documentation."),
        _supported("patch", "PATCH configuration options."),
        _supported("bulk", "Bulk configuration options.",
                   _ro("maxOperations", type="integer", required=True, description="Maximum number of operations."),
                   _ro("maxPayloadSize", type="integer", required=True, description="Maximum payload size in bytes.")),
        _supported("filter", "FILTER options.",
                   _ro("maxResults", type="integer", required=True, description="Maximum number of resources returned.")),
        _supported("changePassword", "Change password configuration options."),
        _supported("sort", "Sort configuration options."),
        _supported("etag", "ETag configuration options."),
        _ro("securityEvents", type="complex", description="Security events (RFC 9967).", sub_attributes=(
            _ro("eventUris", multi_valued=True, case_exact=True, description="The event URIs the service can issue."),
            _ro("asyncRequest", case_exact=True, canonical_values=("none", "lite", "long"),
                description="Whether asynchronous SCIM requests (Prefer: respond-async) are served."),
        )),
        _ro("authenticationSchemes", type="complex", multi_valued=True, required=True,
            description="Supported authentication schemes.", sub_attributes=(
                _ro("type", required=True, canonical_values=("oauth", "oauth2", "oauthbearertoken", "httpbasic", "httpdigest"),
                    description="The authentication scheme."),
                _ro("name", required=True, description="The common authentication scheme name."),
                _ro("description", required=True, description="A description of the authentication scheme."),
                _ro("specUri", type="reference", reference_types=("external",), description="The scheme's specification."),
                _ro("documentationUri", type="reference", reference_types=("external",),
                    description="The scheme's documentation."),
                _ro("primary", type="boolean", description="Whether this is the preferred scheme."),
            )),
    ),
)
RESOURCE_TYPE = schema.Schema(
    id=schema.RESOURCE_TYPE_SCHEMA,
    name="ResourceType",
    description="Specifies the schema that describes a SCIM resource type",
    attributes=(
        _ro("id", case_exact=True, description="The resource type's server unique id."),
        _ro("name", required=True, description="The resource type name."),
        _ro("description", description="The resource type's human-readable description."),
        _ro("endpoint", type="reference", reference_types=("uri",), required=True,
            description="The resource type's HTTP-addressable endpoint relative to the base URL."),
        _ro("schema", type="reference", reference_types=("uri",), required=True, case_exact=True,
            description="The resource type's primary/base schema URI."),
        _ro("schemaExtensions", type="complex", multi_valued=True, description="A list of URIs of schema extensions.",
            sub_attributes=(
                _ro("schema", type="reference", reference_types=("uri",), required=True, case_exact=True,
                    description="The URI of a schema extension."),
                _ro("required", type="boolean", required=True,
                    description="Whether resources must include this extension."),
            )),
    ),
)
SCHEMA = schema.Schema(
    id=schema.SCHEMA_SCHEMA,
    name="Schema",
    description="Specifies the schema attribute definitions",
    attributes=(
        _ro("id", required=True, case_exact=True, description="The unique URI of the schema."),
        _ro("name", description="The schema's human-readable name."),
        _ro("description", description="The schema's human-readable description."),
        _ro("attributes", type="complex", multi_valued=True, required=True,
            description="The service provider's attribute definitions of the schema.",
            sub_attributes=(
                *_ATTRIBUTE_DEFINITION,
                _ro("subAttributes", type="complex", multi_valued=True,
                    description="The sub-attributes of a complex attribute.", sub_attributes=_ATTRIBUTE_DEFINITION),
            )),
    ),
)
DISCOVERY_SCHEMAS: tuple[schema.Schema, ...] = (SERVICE_PROVIDER_CONFIG, RESOURCE_TYPE, SCHEMA)
def with_external_id(s: schema.Schema) -> schema.Schema:
    """A resource schema as /Schemas shows it: with `externalId`, which RFC 7643 3.1 defines as
    a common attribute of every resource (outside the schemas), listed here too so that clients
    that discover attributes only from /Schemas (Entra's validator flattens it into the names
    an admin may map) find it (docs/decisions.md)."""
    external_id = next(a for a in schema.COMMON_ATTRIBUTES if a.name == "externalId")
    if any(a.name == "externalId" for a in s.attributes):
        return s
    return dataclasses.replace(s, attributes=(*s.attributes, external_id))


ALL_SCHEMAS: tuple[schema.Schema, ...] = (
    *(with_external_id(s) if s.id in (schema.CORE_USER, schema.CORE_GROUP) else s for s in schema.SCHEMAS),
    *DISCOVERY_SCHEMAS,
)


def refuse_filter(request: web.Request) -> None:
    """RFC 7644 section 4: query parameters on discovery endpoints are ignored, but a `filter`
    gets 403, so that no client believes its conditions were applied."""
    if any(key.lower() == "filter" for key in request.query):
        raise Forbidden("filtering is not supported on discovery endpoints (RFC 7644 section 4)")


def service_provider_config(settings_max_results: int, base: str, *, security_events: bool = False) -> dict[str, Any]:
    config = _service_provider_config(settings_max_results, base)
    if security_events:
        # RFC 9967: the SCIM events this service's streams carry; no asynchronous SCIM requests
        # (Prefer: respond-async is not served). Shown to a tenant that has a stream: clients
        # that know RFC 7643 alone refuse the attribute (docs/events.md).
        config["securityEvents"] = {"eventUris": list(SCIM_EVENT_URIS), "asyncRequest": "none"}
    return config


def _service_provider_config(settings_max_results: int, base: str) -> dict[str, Any]:
    return {
        "schemas": [schema.SERVICE_PROVIDER_CONFIG_SCHEMA],
        "documentationUri": "https://github.com/scimledger/scimledger#readme",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": settings_max_results},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "Authentication with a per-tenant bearer token (Authorization: Bearer <token>)",
                "specUri": "https://www.rfc-editor.org/info/rfc6750",
                "primary": True,
            },
            {
                "type": "oauthbearertoken",
                "name": "OAuth 2.0 client credentials",
                "description": (
                    "An access token from the token endpoint "
                    f"{base.removesuffix('/scim/v2')}/oauth2/token (grant_type=client_credentials; "
                    "client_secret_basic, client_secret_post or private_key_jwt), sent as "
                    "Authorization: Bearer <access token>"
                ),
                "specUri": "https://www.rfc-editor.org/info/rfc6749",
                "documentationUri": f"{base.removesuffix('/scim/v2')}/.well-known/oauth-authorization-server",
                "primary": False,
            },
        ],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base}/ServiceProviderConfig"},
    }


async def get_service_provider_config(request: web.Request) -> web.Response:
    refuse_filter(request)
    settings = request.app[SETTINGS]
    async with connection(request) as conn:
        has_streams = await streams.has_streams(conn, request[PRINCIPAL].tenant_id)
    return scim_response(service_provider_config(settings.max_page_size, base_url(request), security_events=has_streams))


async def list_resource_types(request: web.Request) -> web.Response:
    refuse_filter(request)
    base = base_url(request)
    return scim_response(listing([rt.to_scim(base) for rt in schema.RESOURCE_TYPES]))


async def get_resource_type(request: web.Request) -> web.Response:
    refuse_filter(request)
    wanted = request.match_info["id"]
    for rt in schema.RESOURCE_TYPES:
        if rt.id.lower() == wanted.lower():
            return scim_response(rt.to_scim(base_url(request)))
    raise NotFound(f"no resource type {wanted!r}")


async def list_schemas(request: web.Request) -> web.Response:
    refuse_filter(request)
    base = base_url(request)
    return scim_response(listing([s.to_scim(base) for s in ALL_SCHEMAS]))


async def get_schema(request: web.Request) -> web.Response:
    refuse_filter(request)
    wanted = request.match_info["id"]
    for s in ALL_SCHEMAS:
        if s.id.lower() == wanted.lower():  # as everywhere in scim.schema, URNs match in any case
            return scim_response(s.to_scim(base_url(request)))
    raise NotFound(f"no schema {wanted!r}")


async def search_root(request: web.Request) -> web.Response:
    """A query at the server root (RFC 7644 3.4.2: "MAY be performed against ... a SCIM server
    root"; 3.4.3 for POST /.search) is not supported: 501 per RFC 7644 3.12. IdPs query
    /Users and /Groups only."""
    raise ScimError(
        "searching several resource types at once is not supported; query /Users or /Groups",
        status=501,
    )


def listing(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """All of a discovery collection in one ListResponse (RFC 7644 4)."""
    return list_response(resources, len(resources), 1)
