"""Which attributes a response carries (RFC 7644 3.4.2.5 and 3.9, RFC 7643 7 "returned").

`project` takes the full rendered resource (with `id`, `meta`, `schemas`, `groups`, `members`)
and the parsed `attributes` / `excludedAttributes` lists, and returns what is sent:

- `schemas` and attributes with returned "always" (`id`) are always present;
- returned "never" (`password`) never is;
- returned "request" only when `attributes` names it;
- returned "default" unless `excludedAttributes` names it, or `attributes` is given and names
  neither it, one of its sub-attributes, nor (for an extension attribute) its extension URN.

Decisions: unknown names in either list are ignored (RFC 7644 3.4.2.5 lets the server ignore
what it does not know; IdPs send lists built for other servers), so a list naming only unknown
attributes behaves as if absent. A syntactically invalid entry (a filter, spaces, `a.b.c`) is
400 invalidValue: the parameter's value is not an attribute name. When both lists are given,
`attributes` selects and `excludedAttributes` then removes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from service.scim.errors import InvalidValue
from service.scim.resource import locate, split_urn
from service.scim.schema import Attribute, ResourceType, Schema

_NAME = r"[A-Za-z$][\w$-]*"
_ENTRY = re.compile(rf"(?:urn:[^\s,\[\]]+:)?{_NAME}(?:\.{_NAME})?|urn:[^\s,\[\]]+", re.IGNORECASE)


@dataclass(frozen=True)
class AttrRef:
    """One entry of an attribute list: a top-level attribute of the core schema (schema_urn None)
    or of an extension, optionally one sub-attribute; name None means the whole extension."""

    schema_urn: str | None
    name: str | None
    sub: str | None = None


def parse_attribute_list(text: str | Sequence[str] | None, resource_type: ResourceType) -> list[AttrRef]:
    """Parse `attributes` / `excludedAttributes`: comma-separated (query string) or an array of
    strings (POST /.search body), attribute names case-insensitive, canonical in the result."""
    if text is None:
        return []
    entries = text.split(",") if isinstance(text, str) else list(text)
    out: list[AttrRef] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidValue("attribute lists must hold attribute names")
        entry = entry.strip()
        if not entry:
            continue
        if not _ENTRY.fullmatch(entry):
            raise InvalidValue(f"{entry!r} is not an attribute name")
        ref = _resolve(entry, resource_type)
        if ref is not None and ref not in out:
            out.append(ref)
    return out


def _resolve(entry: str, resource_type: ResourceType) -> AttrRef | None:
    extension = resource_type.extension(entry)
    if extension is not None:
        return AttrRef(extension.id, None)
    split = split_urn(entry, resource_type)
    if split is None or not split[1]:
        return None
    target = locate(entry, resource_type)
    if target is None:
        return None
    return AttrRef(target.schema_urn, target.attribute.name, target.sub.name if target.sub else None)


@dataclass
class _Pick:
    """The selection for one top-level attribute: everything, or only some sub-attributes."""

    whole: bool = False
    subs: set[str] | None = None


def _selected(
    schema_urn: str | None,
    attribute: Attribute,
    attributes: Sequence[AttrRef] | None,
    excluded: Sequence[AttrRef] | None,
) -> tuple[bool, set[str] | None, set[str]]:
    """(returned at all, only these subs or None for all, subs to drop)."""
    if attribute.returned == "always":
        return True, None, set()
    if attribute.returned == "never":
        return False, None, set()
    only: set[str] | None = None
    if attributes:
        named = [r for r in attributes if r.schema_urn == schema_urn and (r.name is None or r.name == attribute.name)]
        if not named:
            return False, None, set()
        if not any(r.sub is None for r in named):
            only = {r.sub for r in named if r.sub is not None}
    elif attribute.returned == "request":
        return False, None, set()
    drop: set[str] = set()
    for ref in excluded or ():
        if ref.schema_urn != schema_urn or (ref.name is not None and ref.name != attribute.name):
            continue
        if ref.sub is None:
            return False, None, set()
        drop.add(ref.sub)
    return True, only, drop


def wants(
    attr_name: str,
    attributes: Sequence[AttrRef] | None,
    excluded: Sequence[AttrRef] | None,
    resource_type: ResourceType,
) -> bool:
    """Whether the response would carry (some of) the top-level attribute `attr_name`; lets the
    caller skip loading group members when `members` is excluded or not requested."""
    target = locate(attr_name, resource_type)
    if target is None:
        return False
    shown, only, drop = _selected(target.schema_urn, target.attribute, attributes, excluded)
    if not shown:
        return False
    if only is None:
        only = {s.name for s in target.attribute.sub_attributes} or {""}
    keep = {s for s in only if s not in drop} | {
        s.name for s in target.attribute.sub_attributes if s.returned == "always"
    }
    return bool(keep)


def _reduce(attribute: Attribute, value: Any, only: set[str] | None, drop: set[str]) -> Any:
    """A complex value (or each element of a multi-valued one) reduced to the wanted subs."""
    if attribute.type != "complex":
        return value
    if isinstance(value, list):
        reduced = [_reduce_one(attribute, v, only, drop) for v in value]
        return [v for v in reduced if v not in (None, {})] or None
    return _reduce_one(attribute, value, only, drop) or None


def _reduce_one(attribute: Attribute, value: Any, only: set[str] | None, drop: set[str]) -> Any:
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        sub = attribute.sub(key)
        if sub is None:
            if only is None and not drop:
                out[key] = item
            continue
        if sub.returned == "never":
            continue
        if sub.returned != "always":
            if only is not None and sub.name not in only:
                continue
            if only is None and sub.returned == "request":
                continue
            if sub.name in drop:
                continue
        out[key] = item
    return out


def _project_into(
    out: dict[str, Any],
    key: str,
    value: Any,
    schema_urn: str | None,
    attribute: Attribute | None,
    attributes: Sequence[AttrRef] | None,
    excluded: Sequence[AttrRef] | None,
) -> None:
    """Put what the attribute lists keep of one attribute into `out`. A key the schema does not
    know is kept only when no `attributes` list narrows the response."""
    if attribute is None:
        if not attributes:
            out[key] = value
        return
    shown, only, drop = _selected(schema_urn, attribute, attributes, excluded)
    if not shown:
        return
    reduced = _reduce(attribute, value, only, drop)
    if reduced is not None:
        out[key] = reduced


def _project_schema(
    container: dict[str, Any],
    schema_urn: str | None,
    lookup: Any,
    attributes: Sequence[AttrRef] | None,
    excluded: Sequence[AttrRef] | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in container.items():
        _project_into(out, key, value, schema_urn, lookup(key), attributes, excluded)
    return out


def project(
    resource: dict[str, Any],
    resource_type: ResourceType,
    *,
    attributes: Sequence[AttrRef] | None = None,
    excluded: Sequence[AttrRef] | None = None,
) -> dict[str, Any]:
    """The representation to send for `resource` given the parsed attribute lists."""
    out: dict[str, Any] = {}
    for key, value in resource.items():
        if key.lower() == "schemas":
            out[key] = value
            continue
        extension: Schema | None = resource_type.extension(key)
        if extension is not None:
            if isinstance(value, dict):
                inner = _project_schema(value, extension.id, extension.attribute, attributes, excluded)
                if inner:
                    out[key] = inner
            continue
        _project_into(out, key, value, None, resource_type.top_level(key), attributes, excluded)
    return out
