"""The one translation of domain errors into SCIM errors (RFC 7644 3.12) for HTTP.

Use cases raise domain errors (projections.domain.errors) and the protocol layer raises SCIM
errors (service.scim.errors); the error middleware renders both, through this table for the
former. A domain error missing here is a bug, answered as a 500 and logged.
"""

from __future__ import annotations

from eventstore.store import WrongExpectedVersion
from projections.domain import errors as domain
from service.scim import errors as scim

# domain error -> SCIM error class (status and scimType come with the class)
SCIM_ERRORS: dict[type[domain.DomainError], type[scim.ScimError]] = {
    domain.ResourceNotFound: scim.NotFound,
    domain.SubjectErased: scim.Gone,
    domain.UserNameTaken: scim.Uniqueness,
    domain.SeatLimitReached: scim.Forbidden,
    domain.VersionMismatch: scim.PreconditionFailed,
    domain.ConcurrentChange: scim.PreconditionFailed,
    domain.InvalidMember: scim.InvalidValue,
    domain.InvalidQuery: scim.InvalidValue,
    domain.TenantNotFound: scim.NotFound,
    domain.TokenNotFound: scim.NotFound,
}

STALE_WRITE = "the resource was changed by another request; read it and retry"


def to_scim(error: Exception) -> scim.ScimError | None:
    """The SCIM error for a domain error or a lost optimistic-concurrency race, or None."""
    if isinstance(error, scim.ScimError):
        return error
    if isinstance(error, WrongExpectedVersion):
        return scim.PreconditionFailed(STALE_WRITE)
    if isinstance(error, domain.DomainError):
        for cls in type(error).__mro__:
            if cls in SCIM_ERRORS:
                return SCIM_ERRORS[cls](error.detail)
    return None
