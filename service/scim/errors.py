"""SCIM protocol errors (RFC 7644 section 3.12).

One exception tree for the whole service. Storage and protocol code raise these (or domain errors
that the middleware maps onto them); the error middleware renders them once, as

    {"schemas": [ERROR_SCHEMA], "status": "400", "scimType": "invalidFilter", "detail": "..."}
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(Exception):
    """An error with an HTTP status and an optional RFC 7644 `scimType`."""

    status: int = 400
    scim_type: str | None = None

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        scim_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if scim_type is not None:
            self.scim_type = scim_type
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status)}
        if self.scim_type:
            body["scimType"] = self.scim_type
        body["detail"] = self.detail
        return body


class InvalidFilter(ScimError):
    scim_type = "invalidFilter"


class TooMany(ScimError):
    scim_type = "tooMany"


class Uniqueness(ScimError):
    status = 409
    scim_type = "uniqueness"


class Mutability(ScimError):
    scim_type = "mutability"


class InvalidSyntax(ScimError):
    scim_type = "invalidSyntax"


class InvalidPath(ScimError):
    scim_type = "invalidPath"


class NoTarget(ScimError):
    scim_type = "noTarget"


class InvalidValue(ScimError):
    scim_type = "invalidValue"


class InvalidVersion(ScimError):
    scim_type = "invalidVers"


class Sensitive(ScimError):
    status = 403
    scim_type = "sensitive"


class NotFound(ScimError):
    status = 404


class Gone(ScimError):
    status = 410


class Unauthorized(ScimError):
    status = 401


class Forbidden(ScimError):
    status = 403


class PreconditionFailed(ScimError):
    status = 412


class PayloadTooLarge(ScimError):
    status = 413


class UnsupportedMediaType(ScimError):
    status = 415


class TooManyRequests(ScimError):
    status = 429
