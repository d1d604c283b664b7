"""The one translation of errors into CLI messages and exit codes.

Exit codes: 0 done, 1 refused (the thing named does not exist or the change is not allowed),
2 a bad argument (as argparse itself answers a malformed command line).
"""

from __future__ import annotations

import difflib

from eventstore.store import WrongExpectedVersion
from projections.domain import errors as domain
from service.scim.errors import ScimError

REFUSED = 1
BAD_ARGUMENT = 2

# domain error -> exit code; the message is the error's own detail
EXIT_CODES: dict[type[domain.DomainError], int] = {
    domain.InvalidQuery: BAD_ARGUMENT,
    domain.DomainError: REFUSED,
}


def message_and_code(error: Exception) -> tuple[str, int] | None:
    """What to print on stderr and the exit code, or None for an error that is a bug."""
    if isinstance(error, domain.DomainError):
        for cls in type(error).__mro__:
            if cls in EXIT_CODES:
                return error.detail, EXIT_CODES[cls]
    if isinstance(error, ScimError):
        return f"error: {error.detail}", REFUSED
    if isinstance(error, WrongExpectedVersion):
        return "the resource was changed by another writer meanwhile; run the command again", REFUSED
    return None


def suggest_tenant(error: Exception, names: list[str]) -> str | None:
    """For an unknown tenant: the closest existing name, and where to see them all."""
    if not isinstance(error, domain.TenantNotFound) or error.name is None:
        return None
    close = difflib.get_close_matches(error.name.lower(), names, n=1, cutoff=0.6)
    listing = "`scimledger tenant list` shows every tenant"
    return f"did you mean {close[0]!r}? {listing}" if close else listing
