"""Request and response bodies on the wire: `application/scim+json`, decoded with msgspec."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from service.http.keys import SETTINGS
from service.scim.errors import InvalidSyntax, InvalidValue, PayloadTooLarge, UnsupportedMediaType

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


def json_response(body: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a SCIM error (RFC 7644 3.12)."""
    if request.content_type not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {request.content_type!r}; send application/scim+json"
        )
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes") from e
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
    return body
