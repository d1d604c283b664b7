"""Domain errors: what a use case refuses, said in the domain's words.

They are raised below the HTTP layer (decide functions, views, use cases) and translated once
each: to RFC 7644 3.12 bodies by service/http/errors.py, to CLI messages and exit codes by
service/cli/errors.py. `detail` is the sentence both show.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every refusal a use case can give."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ResourceNotFound(DomainError):
    """No such user or group in this tenant (or none that existed at a moment)."""


class UserNameTaken(DomainError):
    """Another user of the tenant has this userName (compared case-insensitively)."""


class SeatLimitReached(DomainError):
    """An activation would exceed the tenant's seat limit."""


class VersionMismatch(DomainError):
    """If-Match named a version that is not the current one."""


class ConcurrentChange(DomainError):
    """The resource kept changing under the writer: it gave up re-deciding."""


class InvalidMember(DomainError):
    """A member id that is not a User of the tenant."""


class InvalidQuery(DomainError):
    """A query parameter the use case cannot answer (an audit filter, a moment, a cursor)."""


class TenantNotFound(DomainError):
    """No tenant has this name or id (`name`: the one asked for)."""

    def __init__(self, detail: str, name: str | None = None) -> None:
        super().__init__(detail)
        self.name = name


class TenantExists(DomainError):
    """A tenant with this name exists already."""


class TokenNotFound(DomainError):
    """No such token (or it is revoked already)."""


class TokenNotRotatable(DomainError):
    """The token is revoked, expired, or already rotated (rotate its successor instead)."""


class StreamNotFound(ResourceNotFound):
    """No such security-event stream (in this tenant, for a receiver)."""


class SubjectErased(DomainError):
    """The subject's personal data was erased (crypto-shredding): what it was is gone for good."""
