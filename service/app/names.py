"""The names operators type and read back: tenant names and the labels of tokens and OAuth
clients. Both are trimmed first, so `"  acme  "` is `acme`, never a look-alike second tenant."""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 128  # a token or client label: indexed, logged and shown in tables
MAX_TENANT_NAME_LENGTH = 63
# a tenant name is typed on command lines and in URLs of runbooks: one spelling per tenant, so no
# capitals, spaces or look-alike characters (docs/tenancy.md, "Names")
TENANT_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")


def check_name(value: str, what: str) -> str:
    """A token or client label: trimmed, then 1 to MAX_NAME_LENGTH characters and no control
    characters (they would reach terminals and logs). Returns the trimmed label; raises
    ValueError."""
    value = value.strip()
    if not value or len(value) > MAX_NAME_LENGTH or not value.isprintable():
        raise ValueError(f"{what} must be 1 to {MAX_NAME_LENGTH} printable characters (not only spaces)")
    return value


def check_tenant_name(value: str) -> str:
    """A tenant name: trimmed, then 1 to MAX_TENANT_NAME_LENGTH of lower-case ASCII letters,
    digits, `.`, `_` and `-`, starting and ending with a letter or digit. Returns the trimmed
    name; raises ValueError."""
    value = value.strip()
    if len(value) > MAX_TENANT_NAME_LENGTH or not TENANT_NAME.fullmatch(value):
        raise ValueError(
            f"a tenant name is 1 to {MAX_TENANT_NAME_LENGTH} lower-case letters, digits, '.', '_' or '-', "
            f"starting and ending with a letter or digit, not {value!r}"
        )
    return value
