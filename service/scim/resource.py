"""Validation and normalisation of SCIM resource input (RFC 7643 section 2, RFC 7644 3.3, 3.5.1).

`normalize` turns a POST/PUT body into the stored shape: canonical attribute names (schema case),
no `id`/`meta`/`groups` (readOnly, computed by the server), no `password` (writeOnly, handed back
separately), group `members` split off (they live in the membership table), extension attributes
under their URN key and `schemas` recomputed from what is present.

The PATCH engine (`patch.py`) coerces its values with the same functions (`coerce`,
`coerce_element`, `normalize_members`), so PUT and PATCH accept exactly the same value shapes.

Leniency (IdPs send these; see DESIGN.md "Interoperability with real IdPs"):

- a missing `schemas` is accepted; a present `schemas` must name the core schema;
- unknown attributes and sub-attributes are ignored, readOnly ones (`id`, `meta`, `groups`,
  `manager.displayName`) too, so a resource read with GET can be PUT back unchanged;
- booleans given as the strings "true"/"false" in any case (Entra sends "False");
- a single value for a multi-valued attribute is wrapped in a list; a bare scalar for a complex
  attribute that has a `value` sub-attribute becomes `{"value": scalar}` (manager as a bare id);
  a list for a single-valued complex attribute takes its first element (manager as `[{value}]`);
- `null`, `{}`, `[]` and `""` mean "unassigned" (RFC 7644 3.5.2) and are dropped. RFC 7644 does
  not list "" among them, but `pr` already treats it as absent (RFC 7644 3.4.2.2), and Entra
  sends "" to clear an attribute whose source was emptied (its "null update"), expecting GET to
  show the attribute gone; a required attribute given "" is missing, so refused (RFC 7643 2.2);
- a value of a multi-valued attribute whose `value` sub-attribute is unassigned is itself
  unassigned (an email without an address: what is left of `emails[type eq "home"].value` set
  to "").

Bounds (service/scim/limits.py, docs/security.md): every string is checked as it is coerced (its
length, no NUL, no lone surrogate), and `check_bounds` checks a whole stored resource (values per
attribute, strings, its size as JSON). `normalize` calls it; the use cases call it on the result
of a PATCH, whose values the engine merges into the current resource.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from service.scim.errors import InvalidSyntax, InvalidValue
from service.scim.limits import (
    MAX_INDEXED_LENGTH,
    MAX_MEMBERS,
    MAX_RESOURCE_BYTES,
    MAX_STORED_VALUES,
    MAX_STRING_LENGTH,
    check_string,
    in_utc,
    string_limit,
)
from service.scim.schema import Attribute, ResourceType

# The work one attribute of one request can cause (primary checks and duplicate merging are linear
# or quadratic in it), in the body or in the PATCH engine's merges. What may be stored is bounded
# lower, by `check_bounds` (MAX_STORED_VALUES); members by MAX_MEMBERS per request.
MAX_VALUES = 10_000

_encode = msgspec.json.Encoder().encode

_TRUE_FALSE = {"true": True, "false": False}


@dataclass(frozen=True)
class Target:
    """Where a body key or attribute path points: an attribute of the core schema (schema_urn
    None, common attributes included) or of an extension (schema_urn its canonical URN), and
    optionally one of its sub-attributes."""

    schema_urn: str | None
    attribute: Attribute
    sub: Attribute | None = None

    @property
    def label(self) -> str:
        name = self.attribute.name if self.sub is None else f"{self.attribute.name}.{self.sub.name}"
        return name if self.schema_urn is None else f"{self.schema_urn}:{name}"


@dataclass(frozen=True)
class Normalized:
    resource: dict[str, Any]
    password: str | None = None
    members: list[dict[str, Any]] | None = None


def split_urn(key: str, resource_type: ResourceType) -> tuple[str | None, str] | None:
    """Split `urn:...:User:name.givenName` into (schema URN, rest); None for a URN this resource
    type does not know. A key that is not a URN comes back as (None, key). The schema URN is the
    canonical extension URN, or None for the core schema."""
    if not key[:4].lower() == "urn:":
        return None, key
    lowered = key.lower()
    for schema in sorted(resource_type.schemas, key=lambda s: len(s.id), reverse=True):
        prefix = schema.id.lower() + ":"
        if lowered.startswith(prefix):
            urn = None if schema is resource_type.schema else schema.id
            return urn, key[len(prefix):]
    return None


def locate(key: str, resource_type: ResourceType) -> Target | None:
    """Resolve a body key (`userName`, `name.givenName`, `urn:...:User:department`,
    `urn:...:User:manager.value`) case-insensitively; None when unknown."""
    split = split_urn(key, resource_type)
    if split is None:
        return None
    urn, rest = split
    name, dot, sub_name = rest.partition(".")
    if urn is None:
        attribute = resource_type.top_level(name)
    else:
        extension = resource_type.extension(urn)
        attribute = extension.attribute(name) if extension else None
    if attribute is None:
        return None
    if not dot:
        return Target(urn, attribute)
    sub = attribute.sub(sub_name)
    if sub is None:
        return None
    return Target(urn, attribute, sub)


def _scalar(attribute: Attribute, value: Any, label: str, lenient: bool) -> Any:
    kind = attribute.type
    if kind in ("string", "reference", "binary"):
        if isinstance(value, str):
            if lenient and value == "":
                return None  # Entra's null update: "" unassigns (module docstring)
            return check_string(value, f"attribute {label!r}", string_limit(label, kind))
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
        if lenient and isinstance(value, str) and value.lower() in _TRUE_FALSE:
            return _TRUE_FALSE[value.lower()]
    elif kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "decimal":
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return value
    elif kind == "dateTime":
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                in_utc(moment, f"attribute {label!r}")
                return value
    raise InvalidValue(f"attribute {label!r} must be of type {kind}")


def _complex(attribute: Attribute, value: Any, label: str, lenient: bool) -> dict[str, Any] | None:
    if lenient and not isinstance(value, dict) and attribute.sub("value") is not None:
        if isinstance(value, str | int | float | bool):
            value = {"value": value}
    if not isinstance(value, dict):
        raise InvalidValue(f"attribute {label!r} must be a complex value (a JSON object)")
    out: dict[str, Any] = {}
    for key, item in value.items():
        sub = attribute.sub(key) if isinstance(key, str) else None
        if sub is None or sub.mutability == "readOnly":
            continue
        coerced = coerce(sub, item, f"{label}.{sub.name}", lenient=lenient)
        if coerced is not None:
            out[sub.name] = coerced
    return out or None


def coerce_element(attribute: Attribute, value: Any, label: str, *, lenient: bool = True) -> Any:
    """One value of `attribute` (an element of it when multi-valued), normalised; None when the
    value is unassigned (null, "" or an empty object)."""
    if value is None:
        return None
    if attribute.type == "complex":
        return _complex(attribute, value, label, lenient)
    return _scalar(attribute, value, label, lenient)


def is_valueless(attribute: Attribute, element: Any) -> bool:
    """True for an element of a multi-valued complex attribute that has a `value` sub-attribute
    but no value (RFC 7643 2.4: `value` is the element's significant value)."""
    return (
        attribute.multi_valued
        and isinstance(element, dict)
        and attribute.sub("value") is not None
        and element.get("value") in (None, "")
    )


def coerce(attribute: Attribute, value: Any, label: str, *, lenient: bool = True) -> Any:
    """The whole value of `attribute`, normalised (RFC 7643 2.3, 2.4); None when unassigned."""
    if value is None:
        return None
    if not attribute.multi_valued:
        if lenient and isinstance(value, list) and attribute.type == "complex":
            value = value[0] if value else None
        return coerce_element(attribute, value, label, lenient=lenient)
    if not isinstance(value, list):
        if not lenient:
            raise InvalidValue(f"attribute {label!r} is multi-valued and must be an array")
        value = [value]
    if len(value) > MAX_VALUES:
        raise InvalidValue(f"attribute {label!r} has more than {MAX_VALUES} values")
    out = []
    for item in value:
        coerced = coerce_element(attribute, item, label, lenient=lenient)
        if coerced is not None and not is_valueless(attribute, coerced):
            out.append(coerced)
    check_primary(attribute, out, label)
    return out or None


def drop_valueless(resource: dict[str, Any], resource_type: ResourceType) -> None:
    """Remove, in place, the elements `is_valueless` finds, and attributes left empty by it."""
    for schema in resource_type.schemas:
        container = resource if schema is resource_type.schema else resource.get(schema.id)
        if not isinstance(container, dict):
            continue
        for attribute in schema.attributes:
            current = container.get(attribute.name)
            if isinstance(current, list) and any(is_valueless(attribute, e) for e in current):
                kept = [e for e in current if not is_valueless(attribute, e)]
                if kept:
                    container[attribute.name] = kept
                else:
                    del container[attribute.name]


def check_primary(attribute: Attribute, values: Iterable[Any], label: str) -> None:
    """At most one value of a multi-valued attribute may be primary (RFC 7643 2.4)."""
    if attribute.sub("primary") is None:
        return
    if sum(1 for v in values if isinstance(v, dict) and v.get("primary") is True) > 1:
        raise InvalidValue(f"attribute {label!r} has more than one primary value")


def normalize_members(value: Any, *, label: str = "members") -> list[dict[str, Any]]:
    """Group members as given, each normalised to {"value", "type"?, "display"?}.

    Members are Users only: a member of type "Group" is refused (nested groups are not
    supported). A bare string is taken as a member id (lenient)."""
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    if len(value) > MAX_MEMBERS:
        raise InvalidValue(f"attribute {label!r} has more than {MAX_MEMBERS} values")
    out: list[dict[str, Any]] = []
    for item in value:
        if item is None:
            continue
        if isinstance(item, str):
            item = {"value": item}
        if not isinstance(item, dict):
            raise InvalidValue(f"attribute {label!r} must hold objects with a 'value'")
        fields = {k.lower(): v for k, v in item.items() if isinstance(k, str)}
        member_id = fields.get("value")
        if not isinstance(member_id, str) or not member_id:
            raise InvalidValue(f"attribute '{label}.value' is required and must be a string")
        member: dict[str, Any] = {"value": check_string(member_id, f"attribute '{label}.value'", MAX_INDEXED_LENGTH)}
        for key, name in (("type", "type"), ("display", "display")):
            given = fields.get(key)
            if given is None:
                continue
            if not isinstance(given, str):
                raise InvalidValue(f"attribute '{label}.{name}' must be of type string")
            member[name] = check_string(given, f"attribute '{label}.{name}'", MAX_STRING_LENGTH)
        if member.get("type", "").lower() == "group":
            raise InvalidValue("nested groups are not supported: members must be Users")
        out.append(member)
    return out


def _check_element(attribute: Attribute | None, value: Any, label: str) -> None:
    if isinstance(value, str):
        check_string(value, f"attribute {label!r}", string_limit(label, attribute.type if attribute else "string"))
    elif isinstance(value, dict):
        for name, inner in value.items():
            _check_value(attribute.sub(name) if attribute else None, inner, f"{label}.{name}")
    elif isinstance(value, list):
        _check_value(attribute, value, label)


def _check_value(attribute: Attribute | None, value: Any, label: str) -> None:
    if isinstance(value, list):
        if len(value) > MAX_STORED_VALUES:
            raise InvalidValue(f"attribute {label!r} has more than {MAX_STORED_VALUES} values")
        for item in value:
            _check_element(attribute, item, label)
    else:
        _check_element(attribute, value, label)


def check_bounds(resource: dict[str, Any], resource_type: ResourceType) -> None:
    """The bounds of a resource as it would be stored (service/scim/limits.py): at most
    MAX_STORED_VALUES values per multi-valued attribute, every string storable and within its length,
    at most MAX_RESOURCE_BYTES of JSON. Raises InvalidValue naming the attribute and the limit.
    Cost: linear in the resource, which the body limit or the previous check bounds."""
    for key, value in resource.items():
        if key == "schemas":
            continue
        extension = resource_type.extension(key)
        if extension is not None and isinstance(value, dict):
            for name, inner in value.items():
                _check_value(extension.attribute(name), inner, f"{extension.id}:{name}")
            continue
        _check_value(resource_type.top_level(key), value, key)
    size = len(_encode(resource))
    if size > MAX_RESOURCE_BYTES:
        raise InvalidValue(
            f"the {resource_type.name} would be {size} bytes of JSON; a resource holds at most "
            f"{MAX_RESOURCE_BYTES} bytes"
        )


def is_members(target: Target, resource_type: ResourceType) -> bool:
    """True for a Group's `members`, which live in the membership table, not the resource."""
    return (
        target.schema_urn is None
        and target.attribute.name == "members"
        and resource_type.schema.attribute("members") is target.attribute
    )


def schemas_for(resource: dict[str, Any], resource_type: ResourceType) -> list[str]:
    """The `schemas` a stored resource carries: the core URN, then each extension with data."""
    return [resource_type.schema.id] + [s.id for s in resource_type.extensions if resource.get(s.id)]


def check_required(resource: dict[str, Any], resource_type: ResourceType, error: type[Exception] = InvalidValue) -> None:
    """Required attributes must be present and non-empty (RFC 7643 2.2)."""
    for schema in resource_type.schemas:
        container = resource if schema is resource_type.schema else resource.get(schema.id) or {}
        for attribute in schema.attributes:
            if not attribute.required or attribute.mutability == "readOnly":
                continue
            if container.get(attribute.name) in (None, "", [], {}):
                raise error(f"attribute {attribute.name!r} is required")


def _check_schemas(value: Any, resource_type: ResourceType, lenient: bool) -> None:
    if value is None:
        if lenient:
            return
        raise InvalidSyntax("'schemas' is required")
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise InvalidSyntax("'schemas' must be an array of strings")
    if resource_type.schema.id.lower() not in {s.lower() for s in value}:
        raise InvalidSyntax(f"'schemas' must include {resource_type.schema.id!r}")


def normalize(body: Any, resource_type: ResourceType, *, lenient: bool = True) -> Normalized:
    """Validate a POST/PUT body and return it in the stored shape (RFC 7643 2, RFC 7644 3.3)."""
    if not isinstance(body, dict):
        raise InvalidSyntax("the request body must be a JSON object")
    # (schema URN or None, attribute name) -> raw value, in body order. Dotted keys are merged
    # into their parent's raw object so `name.givenName` and `name` combine.
    raw: dict[tuple[str | None, str], Any] = {}
    targets: dict[tuple[str | None, str], Target] = {}
    schemas_value: Any = None

    def put(target: Target, value: Any) -> None:
        key = (target.schema_urn, target.attribute.name)
        targets[key] = Target(target.schema_urn, target.attribute)
        if target.sub is None:
            raw[key] = value
            return
        parent = raw.get(key)
        parent = dict(parent) if isinstance(parent, dict) else {}
        parent[target.sub.name] = value
        raw[key] = parent

    for key, value in body.items():
        if not isinstance(key, str):
            continue
        if key.lower() == "schemas":
            schemas_value = value
            continue
        extension = resource_type.extension(key)
        if extension is not None:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise InvalidValue(f"attribute {extension.id!r} must be a JSON object")
            for inner_key, inner_value in value.items():
                if not isinstance(inner_key, str):
                    continue
                target = locate(f"{extension.id}:{inner_key}", resource_type)
                if target is not None:
                    put(target, inner_value)
            continue
        target = locate(key, resource_type)
        if target is not None:
            put(target, value)

    _check_schemas(schemas_value, resource_type, lenient)

    resource: dict[str, Any] = {}
    password: str | None = None
    members: list[dict[str, Any]] | None = None
    for key, value in raw.items():
        target = targets[key]
        attribute = target.attribute
        if attribute.mutability == "readOnly":
            continue
        if is_members(target, resource_type):
            members = normalize_members(value)
            continue
        coerced = coerce(attribute, value, target.label, lenient=lenient)
        if attribute.mutability == "writeOnly":
            password = coerced
            continue
        if coerced is None:
            continue
        if target.schema_urn is None:
            resource[attribute.name] = coerced
        else:
            resource.setdefault(target.schema_urn, {})[attribute.name] = coerced

    check_required(resource, resource_type)
    ordered: dict[str, Any] = {"schemas": schemas_for(resource, resource_type)}
    ordered.update(resource)
    check_bounds(ordered, resource_type)
    return Normalized(resource=ordered, password=password, members=members)
