"""Request and response bodies on the wire: `application/scim+json`, decoded with msgspec."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from aiohttp import web

from service.http.keys import SETTINGS
from service.runtime.logs import mask_in_logs
from service.scim.errors import (
    InvalidSyntax,
    InvalidValue,
    PayloadTooLarge,
    ScimError,
    UnsupportedMediaType,
)
from service.scim.projection import AttrRef, parse_attribute_list
from service.scim.query import ListQuery, parse_query
from service.scim.schema import ResourceType

SCIM_CONTENT_TYPE = "application/scim+json"
ACCEPTED_CONTENT_TYPES = ("application/scim+json", "application/json", "")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def scim_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encode(body),
        status=status,
        content_type=SCIM_CONTENT_TYPE,
        charset="utf-8",
        headers=headers,
    )


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json",
                        headers=headers)


async def read_body(request: web.Request) -> bytes:
    """The whole request body within `body_timeout_s` (a body that stops arriving is 408 and the
    connection is closed), at most `max_body_bytes` (413); malformed chunking is a 400."""
    settings = request.app[SETTINGS]
    limit = settings.max_body_bytes
    try:
        if request.content.is_eof():  # all of it has arrived: nothing to wait for
            return await request.read()
        async with asyncio.timeout(settings.body_timeout_s):
            return await request.read()
    except TimeoutError as e:
        raise ScimError(
            f"the request body did not arrive within {settings.body_timeout_s:g} s "
            "(SCIMLEDGER_BODY_TIMEOUT_SECONDS)", status=408,
        ) from e
    except web.HTTPRequestEntityTooLarge as e:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes") from e
    except web.RequestPayloadError as e:
        if request.transport is None or request.transport.is_closing():
            raise  # the client went away: request.aborted, not a 400
        raise InvalidSyntax(f"the request body is malformed: {e}") from e


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a SCIM error (RFC 7644 3.12)."""
    if request.content_type not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {request.content_type!r}; send application/scim+json"
        )
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    raw = await read_body(request)
    if not raw.strip():
        raise InvalidSyntax("the request body is empty; a JSON object is required")
    try:
        body = _decode(raw)
    except (msgspec.DecodeError, RecursionError) as e:
        raise InvalidSyntax(f"the request body is not valid JSON: {e}") from e
    except UnicodeDecodeError as e:  # JSON text is UTF-8 (RFC 8259 section 8.1)
        raise InvalidSyntax(f"the request body is not UTF-8: {e.reason} at byte {e.start}") from e
    if not isinstance(body, dict):
        raise InvalidValue("the request body must be a JSON object")
    if b"assword" in raw:  # cheap test first: most bodies carry none
        mask_in_logs(*_passwords(body))
    return body


def _passwords(value: Any, depth: int = 0) -> list[str]:
    """The passwords a body carries (RFC 7643 4.1.1 `password`, or a PATCH operation on it)."""
    found: list[str] = []
    if depth > 8:
        return found
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and key.lower() == "password" and isinstance(item, str):
                found.append(item)
            elif isinstance(item, (dict, list)):
                found += _passwords(item, depth + 1)
        path, op_value = value.get("path"), value.get("value")
        if isinstance(path, str) and path.lower().endswith("password") and isinstance(op_value, str):
            found.append(op_value)
    elif isinstance(value, list):
        for item in value:
            found += _passwords(item, depth + 1)
    return found


def attribute_params(
    request: web.Request, resource_type: ResourceType
) -> tuple[list[AttrRef] | None, list[AttrRef] | None]:
    """`attributes` and `excludedAttributes` of the query string (RFC 7644 3.9)."""
    attrs = request.query.get("attributes")
    excl = request.query.get("excludedAttributes")
    return (
        parse_attribute_list(attrs, resource_type) if attrs else None,
        parse_attribute_list(excl, resource_type) if excl else None,
    )


def list_query(request: web.Request, params: Any, resource_type: ResourceType) -> ListQuery:
    """A list's or .search's parameters, with the configured page size and its cap."""
    settings = request.app[SETTINGS]
    return parse_query(params, resource_type, default_count=settings.default_page_size,
                       max_count=settings.max_page_size)
