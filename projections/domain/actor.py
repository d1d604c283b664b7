"""Who made a change: the actor stored in every event's metadata, typed once for writing and
reading (the audit trail's "who").

Stored as `{"actor": {...}}` with camelCase keys. A field left UNSET is not stored; None is
stored as null (an HTTP request whose peer address is unknown says so).
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType


class Actor(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    kind: str | UnsetType | None = UNSET  # "token" (an IdP connection) or "cli"
    token_id: str | UnsetType | None = UNSET
    label: str | UnsetType | None = UNSET
    scope: str | UnsetType | None = UNSET
    client: str | UnsetType | None = UNSET  # User-Agent, or the CLI command
    ip: str | UnsetType | None = UNSET
    request_id: str | UnsetType | None = UNSET
    os_user: str | UnsetType | None = UNSET
    host: str | UnsetType | None = UNSET
    pid: int | UnsetType | None = UNSET
    method: str | UnsetType | None = UNSET  # the HTTP method of the write (PUT and PATCH differ in RFC 9967)

    def metadata(self) -> dict[str, Any]:
        """The event metadata that records this actor."""
        return {"actor": msgspec.to_builtins(self)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> Actor:
        """The actor of stored metadata; tolerant of rows written by any earlier version."""
        actor = metadata.get("actor")
        if not isinstance(actor, dict):
            return cls()
        fields: dict[str, Any] = {}
        for name, key in _KEYS.items():
            if key in actor:
                value = actor[key]
                if name == "pid":
                    fields[name] = value if isinstance(value, int) else None
                else:
                    fields[name] = None if value is None else str(value)
        return cls(**fields)

    def text(self, name: str) -> str | None:
        """A field as text, None when absent or null."""
        value = getattr(self, name)
        return None if value is UNSET or value is None else str(value)


_KEYS = {f: msgspec.structs.fields(Actor)[i].encode_name for i, f in enumerate(Actor.__struct_fields__)}
