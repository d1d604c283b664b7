"""Discovery endpoints (RFC 7644 section 4; RFC 7643 sections 5, 6 and 7).

Everything here is generated from `scim.schema`, the same attribute data the handlers use, so
/Schemas cannot drift from what the server does.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .appkeys import SETTINGS
from .scim import schema
from .scim.errors import NotFound
from .wire import scim_response

PREFIX = "/scim/v2"


def base_url(request: web.Request) -> str:
    configured = request.app[SETTINGS].public_url
    if configured:
        return configured.rstrip("/") + PREFIX
    return f"{request.scheme}://{request.host}{PREFIX}"


def service_provider_config(settings_max_results: int, base: str) -> dict[str, Any]:
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
            }
        ],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base}/ServiceProviderConfig"},
    }


def _list(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [schema.LIST_RESPONSE],
        "totalResults": len(resources),
        "startIndex": 1,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


async def get_service_provider_config(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return scim_response(service_provider_config(settings.max_page_size, base_url(request)))


async def list_resource_types(request: web.Request) -> web.Response:
    base = base_url(request)
    return scim_response(_list([rt.to_scim(base) for rt in schema.RESOURCE_TYPES]))


async def get_resource_type(request: web.Request) -> web.Response:
    wanted = request.match_info["id"]
    for rt in schema.RESOURCE_TYPES:
        if rt.id == wanted:
            return scim_response(rt.to_scim(base_url(request)))
    raise NotFound(f"no resource type {wanted!r}")


async def list_schemas(request: web.Request) -> web.Response:
    base = base_url(request)
    return scim_response(_list([s.to_scim(base) for s in schema.SCHEMAS]))


async def get_schema(request: web.Request) -> web.Response:
    wanted = request.match_info["id"]
    for s in schema.SCHEMAS:
        if s.id == wanted:
            return scim_response(s.to_scim(base_url(request)))
    raise NotFound(f"no schema {wanted!r}")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(f"{PREFIX}/ServiceProviderConfig", get_service_provider_config)
    router.add_get(f"{PREFIX}/ResourceTypes", list_resource_types)
    router.add_get(f"{PREFIX}/ResourceTypes/{{id}}", get_resource_type)
    router.add_get(f"{PREFIX}/Schemas", list_schemas)
    router.add_get(f"{PREFIX}/Schemas/{{id}}", get_schema)
