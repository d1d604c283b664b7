"""The PATCH engine (RFC 7644 section 3.5.2): `apply_patch(resource, body, resource_type)`.

Pure: it takes the stored resource shape (see `resource.py`) and the request body, and returns
the new stored shape, whether it changed, the writeOnly password if one was set, and for groups
the membership operations, which the caller applies to the membership table (members are not
part of the stored group). The PATCH is atomic: it works on a deep copy and any error raises
before anything is returned.

Decisions (RFC text first, then what real IdPs send; DESIGN.md "Interoperability"):

- `schemas` must list the PatchOp URN and `Operations` must be a non-empty array (RFC 7644
  3.5.2); both IdPs always send them. Otherwise 400 invalidSyntax. Body and op keys are matched
  case-insensitively (`operations`, `Op`, `Path`); unknown op keys (Entra's `id`) are ignored.
- At most MAX_OPERATIONS operations, else 413 (as for bulk maxOperations, RFC 7644 3.7.3).
- At most MAX_PATCH_VALUES values in all operations (group members included), and at most
  WORK_BUDGET units of work (operations x elements x filter terms, and the values of attributes
  other than members, counted as done; service/scim/budget.py), else 400 tooMany (RFC 7644 3.12).
  A group push of thousands of members is bounded by the first, and cheap per member.
- `op` is case-insensitive (Entra sends `Add`/`Replace`/`Remove`).
- `remove` without `path` is 400 noTarget (RFC 7644 3.5.2.2); `add`/`replace` without `value`
  is 400 invalidValue; `"value": null` on replace unassigns (RFC 7644 3.5.2: null = unassigned).
- Unknown attributes are ignored, with or without a path, and reported in
  `PatchResult.ignored` for the caller to log. Entra sends whatever an admin mapped, and the
  PATCH is atomic: a 400 for one unmapped attribute would also block the deactivation riding in
  the same request and make Entra quarantine the job. A malformed path is still 400 invalidPath.
- Path-less values ignore readOnly keys (`id`, `meta`, `groups`: Okta's group rename sends the
  `id`), as PUT does; an explicit path to a readOnly attribute is 400 mutability (RFC 7644 3.5.2).
- `replace` on a complex attribute merges the given sub-attributes (RFC 7644 3.5.2.3: "Sub-
  attributes that are not specified in the value parameter are left unchanged").
- `add`/`replace` with a value filter matching nothing creates the element from the filter's
  `eq` comparisons (Entra's `emails[type eq "work"].value`). RFC 7644 3.5.2.3 says noTarget for
  replace; Entra relies on creation, so creation wins. `remove` matching nothing is noTarget.
- `remove` with a path and a value on a multi-valued attribute removes only the values given
  (Entra's `Remove members [{value}]`); an element matches when it holds all the given
  sub-attributes. Values given that are absent are a no-op (IdP retries stay idempotent).
- `attr.sub` without a filter on a multi-valued attribute applies to every element (creating
  one when there are none, for add/replace).
- Removing or unassigning a required attribute is 400 mutability (RFC 7644 3.5.2.2); changing
  an immutable attribute that has a value is 400 mutability (RFC 7644 3.5.2).
- Setting `primary: true` on a value sets it false on the others (RFC 7644 3.5.2).
- `remove` of the writeOnly `password` is a no-op: nothing is stored to remove.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from service.scim.budget import OPERATION_UNITS, Budget, count_values, value_count
from service.scim.errors import (
    InvalidFilter,
    InvalidPath,
    InvalidSyntax,
    InvalidValue,
    Mutability,
    NoTarget,
    PayloadTooLarge,
)
from service.scim.filter import And, Compare, Not, Or, Present, ValuePath, matches
from service.scim.path import UnknownAttribute, parse_path, resolve_path
from service.scim.resource import (
    MAX_VALUES,
    Target,
    check_primary,
    check_required,
    coerce,
    coerce_element,
    drop_valueless,
    is_members,
    locate,
    normalize_members,
    schemas_for,
)
from service.scim.schema import PATCH_OP, Attribute, ResourceType
from service.scim.values import ValueIndex, contains

MAX_OPERATIONS = 1_000
MAX_PATCH_VALUES = 10_000

Op = Literal["add", "replace", "remove"]
_OPS: dict[str, Op] = {"add": "add", "replace": "replace", "remove": "remove"}
_ABSENT: Any = object()


@dataclass(frozen=True)
class MemberOp:
    """A change to a group's membership, applied by the caller in order. `add` of a present
    member and `remove` of an absent one are no-ops there."""

    kind: Literal["add", "remove", "replace", "remove_all"]
    values: list[str]


@dataclass(frozen=True)
class PatchResult:
    resource: dict[str, Any]
    changed: bool
    password: str | None = None
    member_ops: list[MemberOp] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    work: int = 0  # units of the work Budget spent (service/scim/budget.py)


def apply_patch(resource: dict[str, Any], body: Any, resource_type: ResourceType) -> PatchResult:
    """Apply a PatchOp body (RFC 7644 3.5.2) to a stored resource, within one work Budget."""
    operations = _operations(body)
    engine = _Engine(resource, resource_type)
    engine.precheck(operations)
    for index, operation in enumerate(operations):
        engine.apply(index, operation)
    return engine.result(resource)


def _lower_keys(obj: dict[Any, Any]) -> dict[str, Any]:
    return {k.lower(): v for k, v in obj.items() if isinstance(k, str)}


def _operations(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise InvalidSyntax("the PATCH body must be a JSON object")
    fields = _lower_keys(body)
    schemas = fields.get("schemas")
    if not isinstance(schemas, list) or PATCH_OP.lower() not in {
        s.lower() for s in schemas if isinstance(s, str)
    }:
        raise InvalidSyntax(f"'schemas' must include {PATCH_OP!r}")
    operations = fields.get("operations")
    if not isinstance(operations, list) or not operations:
        raise InvalidSyntax("'Operations' must be a non-empty array")
    if len(operations) > MAX_OPERATIONS:
        raise PayloadTooLarge(f"a PATCH may hold at most {MAX_OPERATIONS} operations")
    count_values(operations, MAX_PATCH_VALUES)
    return operations


@dataclass(frozen=True)
class _Path:
    target: Target
    value_filter: Any = None
    terms: int = 0  # nodes of the value filter


class _Engine:
    def __init__(self, resource: dict[str, Any], resource_type: ResourceType) -> None:
        self.doc: dict[str, Any] = copy.deepcopy(resource)
        self.rt = resource_type
        self.budget = Budget(what="this PATCH")
        self.paths: dict[str, _Path | None] = {}
        self.password: str | None = None
        self.member_ops: list[MemberOp] = []
        self.ignored: list[str] = []

    # -- operations --------------------------------------------------------------------------

    def apply(self, index: int, operation: Any) -> None:
        if not isinstance(operation, dict):
            raise InvalidSyntax(f"operation {index} must be a JSON object")
        fields = _lower_keys(operation)
        op_name = fields.get("op")
        op = _OPS.get(op_name.lower()) if isinstance(op_name, str) else None
        if op is None:
            raise InvalidSyntax(f"operation {index}: 'op' must be one of add, replace, remove")
        path = fields.get("path")
        if path is not None and not isinstance(path, str):
            raise InvalidPath(f"operation {index}: 'path' must be a string")
        self.budget.spend(OPERATION_UNITS)
        path = path.strip() if path else None
        value = fields.get("value", _ABSENT)
        if op != "remove" and value is _ABSENT:
            raise InvalidValue(f"operation {index}: '{op}' requires a 'value'")
        if not path:
            if op == "remove":
                raise NoTarget(f"operation {index}: 'remove' requires a 'path'")
            self._pathless(op, value)
            return
        extension = self.rt.extension(path)
        if extension is not None:
            if op == "remove":
                self.doc.pop(extension.id, None)
            else:
                self._pathless(op, {extension.id: value})
            return
        resolved = self._resolve(path)
        if resolved is None:
            self.ignored.append(path)
            return
        target = resolved.target
        if target.attribute.mutability == "readOnly" or (
            target.sub is not None
            and target.sub.mutability == "readOnly"
            and not is_members(target, self.rt)
        ):
            raise Mutability(f"attribute {target.label!r} is readOnly")
        self._target(op, target, resolved.value_filter, value)

    def _resolve(self, text: str) -> _Path | None:
        """The path resolved, parsed once per request (a unit per character, on first use)."""
        if text in self.paths:
            return self.paths[text]
        self.budget.spend(len(text))
        try:
            resolved = resolve_path(parse_path(text), self.rt)
        except UnknownAttribute:
            self.paths[text] = None
            return None
        target = Target(resolved.schema_urn, resolved.attribute, resolved.sub)
        terms = _terms(resolved.value_filter) if resolved.value_filter is not None else 0
        self.paths[text] = found = _Path(target, resolved.value_filter, terms)
        return found

    def precheck(self, operations: list[Any]) -> None:
        """Refuse before any work what cannot fit: the value filters' terms times the elements
        they will be evaluated against (as stored). A path that does not resolve is left to
        `apply`, which reports it in the order of the operations."""
        needed = 0
        for operation in operations:
            path = _lower_keys(operation).get("path") if isinstance(operation, dict) else None
            if not isinstance(path, str) or "[" not in path:
                continue
            try:
                resolved = self._resolve(path.strip())
            except (InvalidPath, InvalidFilter):
                continue
            if resolved is None or resolved.value_filter is None:
                continue
            target = resolved.target
            container = self.doc if target.schema_urn is None else self.doc.get(target.schema_urn) or {}
            elements = container.get(target.attribute.name)
            needed += (len(elements) if isinstance(elements, list) else 0) * resolved.terms
        if needed > self.budget.left:
            self.budget.spend(needed)  # raises TooMany, naming the limit

    def _pathless(self, op: Op, value: Any) -> None:
        """Path-less add/replace: the value's keys are attribute paths (RFC 7644 3.5.2.1/3)."""
        if not isinstance(value, dict):
            raise InvalidValue(f"a '{op}' without 'path' needs an object of attributes as 'value'")
        for key, item in value.items():
            if key.lower() == "schemas":
                continue
            extension = self.rt.extension(key)
            if extension is not None:
                if item is None:
                    if op == "replace":
                        self.doc.pop(extension.id, None)
                    continue
                if not isinstance(item, dict):
                    raise InvalidValue(f"attribute {extension.id!r} must be a JSON object")
                for inner_key, inner in item.items():
                    self._pathless_key(op, f"{extension.id}:{inner_key}", inner)
                continue
            self._pathless_key(op, key, item)

    def _pathless_key(self, op: Op, key: str, value: Any) -> None:
        value_filter = None
        self.budget.spend(1 + len(key))  # a key is a path
        target = locate(key, self.rt)
        if target is None and "[" in key:
            # Entra (before its 2020 compliance fix) puts filtered paths in path-less values:
            # {"emails[type eq \"work\"].value": "..."}.
            resolved = self._resolve(key)
            if resolved is not None:
                target, value_filter = resolved.target, resolved.value_filter
        if target is None:
            self.ignored.append(key)
            return
        if target.attribute.mutability == "readOnly" or (
            target.sub is not None and target.sub.mutability == "readOnly"
        ):
            return
        self._target(op, target, value_filter, value)

    def _target(self, op: Op, target: Target, value_filter: Any, value: Any) -> None:
        attribute = target.attribute
        if is_members(target, self.rt):
            self._members(op, target, value_filter, value)  # members: MAX_PATCH_VALUES bounds them
            return
        self.budget.spend(value_count(value, self.budget.left))
        if attribute.mutability == "writeOnly":
            if op != "remove" and target.sub is None:
                self.password = coerce(attribute, value, target.label)
            return
        if target.schema_urn is None:
            container = self.doc
        else:
            container = self.doc.setdefault(target.schema_urn, {})
        if value_filter is not None:
            if not attribute.multi_valued:
                raise InvalidPath(f"{target.label!r} is not multi-valued and takes no filter")
            self._filtered(op, container, target, value_filter, value)
        elif target.sub is not None:
            self._sub(op, container, target, value)
        else:
            self._whole(op, container, target, value)

    def _whole(self, op: Op, container: dict[str, Any], target: Target, value: Any) -> None:
        attribute, name = target.attribute, target.attribute.name
        if op == "remove":
            if attribute.multi_valued and value is not _ABSENT and value is not None:
                self._remove_values(container, target, value)
            else:
                container.pop(name, None)
            return
        coerced = coerce(attribute, value, target.label)
        if coerced is None:
            if op == "replace":
                container.pop(name, None)
            return
        current = container.get(name)
        if attribute.multi_valued:
            if op == "replace" or not isinstance(current, list):
                container[name] = coerced
                return
            added = []
            index = ValueIndex(attribute, current, self.budget)
            for element in coerced:
                if not any(contains(attribute, e, element, self.budget) for e in index.candidates(element)):
                    current.append(element)
                    index.add(element)
                    added.append(len(current) - 1)
            self._settle_primary(attribute, current, added, target.label)
        elif attribute.type == "complex" and isinstance(current, dict):
            current.update(coerced)
        else:
            container[name] = coerced

    def _sub(self, op: Op, container: dict[str, Any], target: Target, value: Any) -> None:
        attribute, sub = target.attribute, target.sub
        assert sub is not None
        coerced = None if op == "remove" else coerce(sub, value, target.label)
        current = container.get(attribute.name)
        if not attribute.multi_valued:
            current = current if isinstance(current, dict) else {}
            if coerced is None:
                current.pop(sub.name, None)
            else:
                current[sub.name] = coerced
            container[attribute.name] = current
            return
        elements = current if isinstance(current, list) else []
        self.budget.spend(len(elements))
        if not elements and coerced is not None:
            elements.append({sub.name: coerced})
        else:
            for element in elements:
                if coerced is None:
                    element.pop(sub.name, None)
                else:
                    element[sub.name] = coerced
        container[attribute.name] = elements
        check_primary(attribute, elements, target.label)

    def _filtered(self, op: Op, container: dict[str, Any], target: Target, value_filter: Any, value: Any) -> None:
        attribute, sub = target.attribute, target.sub
        current = container.get(attribute.name)
        elements: list[Any] = current if isinstance(current, list) else []
        hits = [
            i for i, e in enumerate(elements)
            if isinstance(e, dict) and matches(value_filter, e, attribute, self.rt, self.budget)
        ]
        if op == "remove":
            if not hits:
                raise NoTarget(f"no value of {target.label!r} matches the filter")
            if sub is None:
                gone = set(hits)
                elements[:] = [e for i, e in enumerate(elements) if i not in gone]
            else:
                for i in hits:
                    elements[i].pop(sub.name, None)
            container[attribute.name] = elements
            return
        if sub is not None:
            new: Any = coerce(sub, value, target.label)
            if new is None:
                for i in hits:
                    elements[i].pop(sub.name, None)
                container[attribute.name] = elements
                return
            new = {sub.name: new}
        else:
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            new = coerce_element(attribute, value, target.label)
            if new is None:
                if op == "replace":
                    gone = set(hits)
                    elements[:] = [e for i, e in enumerate(elements) if i not in gone]
                container[attribute.name] = elements
                return
        if hits:
            for i in hits:
                if op == "replace" and sub is None:
                    elements[i] = dict(new)
                else:
                    elements[i].update(new)
        else:
            seed = _seed(value_filter, attribute)
            if not seed:
                raise NoTarget(f"no value of {target.label!r} matches the filter")
            elements.append({**seed, **new})
            hits = [len(elements) - 1]
        container[attribute.name] = elements
        self._settle_primary(attribute, elements, hits, target.label)

    def _remove_values(self, container: dict[str, Any], target: Target, value: Any) -> None:
        attribute = target.attribute
        given = coerce(attribute, value, target.label) or []
        current = container.get(attribute.name)
        if not isinstance(current, list):
            return
        index = ValueIndex(attribute, given, self.budget)
        current[:] = [e for e in current if not any(contains(attribute, e, g, self.budget) for g in index.wanted_by(e))]

    def _settle_primary(self, attribute: Attribute, elements: list[Any], touched: list[int], label: str) -> None:
        """A value made primary demotes the others (RFC 7644 3.5.2)."""
        self.budget.spend(len(elements))
        promoted = {i for i in touched if isinstance(elements[i], dict) and elements[i].get("primary") is True}
        if promoted:
            for i, element in enumerate(elements):
                if i not in promoted and isinstance(element, dict) and element.get("primary") is True:
                    element["primary"] = False
        if len(elements) > MAX_VALUES:
            raise InvalidValue(f"attribute {label!r} has more than {MAX_VALUES} values")
        check_primary(attribute, elements, label)

    # -- group members -----------------------------------------------------------------------

    def _members(self, op: Op, target: Target, value_filter: Any, value: Any) -> None:
        if target.sub is not None:
            raise InvalidPath("members can only be patched as a whole or by a value filter")
        if op == "remove":
            if value_filter is not None:
                self._member_op("remove", _member_filter_ids(value_filter))
            elif value is not _ABSENT and value is not None:
                ids = _member_ids(value)
                if ids:
                    self._member_op("remove", ids)
            else:
                self.member_ops.append(MemberOp("remove_all", []))
            return
        if value_filter is not None:
            raise InvalidPath("a members value filter is only supported by 'remove'")
        ids = [m["value"] for m in normalize_members(value)]
        if op == "add":
            if ids:
                self._member_op("add", ids)
        else:
            self._member_op("replace", ids)

    def _member_op(self, kind: Literal["add", "remove", "replace"], ids: list[str]) -> None:
        self.member_ops.append(MemberOp(kind, list(dict.fromkeys(ids))))

    # -- result ------------------------------------------------------------------------------

    def result(self, original: dict[str, Any]) -> PatchResult:
        doc = self.doc
        drop_valueless(doc, self.rt)
        for schema in self.rt.extensions:
            extension = doc.get(schema.id)
            if isinstance(extension, dict):
                _drop_empty(extension)
            if not extension:
                doc.pop(schema.id, None)
        _drop_empty(doc)
        schemas = schemas_for(doc, self.rt)
        doc.pop("schemas", None)
        resource = {"schemas": schemas, **doc}
        check_required(resource, self.rt, error=Mutability)
        _check_immutable(original, resource, self.rt)
        return PatchResult(
            resource=resource,
            changed=resource != original,
            password=self.password,
            member_ops=self.member_ops,
            ignored=self.ignored,
            work=self.budget.spent,
        )


def _drop_empty(container: dict[str, Any]) -> None:
    """Unassigned values (null, {}, []) are absent (RFC 7644 3.5.2); empty elements go too."""
    for key in list(container):
        value = container[key]
        if isinstance(value, list):
            value[:] = [v for v in value if v not in (None, {}, [])]
        elif isinstance(value, dict) and not key.lower().startswith("urn:"):
            for sub in [k for k, v in value.items() if v is None]:
                del value[sub]
        if value is None or value == [] or value == {}:
            del container[key]


def _check_immutable(old: dict[str, Any], new: dict[str, Any], resource_type: ResourceType) -> None:
    """An immutable attribute may be set once, never changed (RFC 7643 2.2, RFC 7644 3.5.2)."""
    for schema in resource_type.schemas:
        before = old if schema is resource_type.schema else old.get(schema.id) or {}
        after = new if schema is resource_type.schema else new.get(schema.id) or {}
        for attribute in schema.attributes:
            if attribute.name == "members" and schema is resource_type.schema:
                continue
            if attribute.mutability == "immutable":
                if before.get(attribute.name) is not None and before.get(attribute.name) != after.get(attribute.name):
                    raise Mutability(f"attribute {attribute.name!r} is immutable")
                continue
            if attribute.type != "complex" or attribute.multi_valued:
                continue
            old_value, new_value = before.get(attribute.name) or {}, after.get(attribute.name) or {}
            for sub in attribute.sub_attributes:
                if sub.mutability == "immutable" and old_value.get(sub.name) is not None:
                    if old_value.get(sub.name) != new_value.get(sub.name):
                        raise Mutability(f"attribute '{attribute.name}.{sub.name}' is immutable")


_EXPRESSIONS = (And, Or, Not, Compare, Present, ValuePath)


def _terms(expr: Any) -> int:
    """Nodes of a filter tree (each evaluated once per element at most)."""
    return 1 + sum(_terms(child) for child in _children(expr) if isinstance(child, _EXPRESSIONS))


def _children(expr: Any) -> list[Any]:
    out: list[Any] = []
    if dataclasses.is_dataclass(expr):
        for f in dataclasses.fields(expr):
            value = getattr(expr, f.name)
            out.extend(value if isinstance(value, list | tuple) else [value])
    return out


def _compared_field(expr: Compare) -> str:
    path = expr.path
    return path.sub or path.name


def _seed(expr: Any, attribute: Attribute) -> dict[str, Any]:
    """The sub-attributes an `eq` filter pins, for an element created by add/replace."""
    if isinstance(expr, Compare):
        if str(expr.op).lower() != "eq":
            return {}
        sub = attribute.sub(_compared_field(expr))
        if sub is None or sub.mutability == "readOnly":
            return {}
        try:
            value = coerce_element(sub, expr.value, f"{attribute.name}.{sub.name}")
        except InvalidValue:
            return {}
        return {} if value is None else {sub.name: value}
    if isinstance(expr, And):
        seed: dict[str, Any] = {}
        for child in _children(expr):
            seed.update(_seed(child, attribute))
        return seed
    return {}


def _member_filter_ids(expr: Any) -> list[str]:
    """Member ids a `members[...]` filter names: `value eq "id"`, joined by or/and."""
    if isinstance(expr, Compare) and _compared_field(expr).lower() == "value":
        if str(expr.op).lower() == "eq" and isinstance(expr.value, str):
            return [expr.value]
    elif isinstance(expr, Compare) and _compared_field(expr).lower() == "type":
        return []
    elif isinstance(expr, Or | And):
        ids = [i for child in _children(expr) for i in _member_filter_ids(child)]
        if ids:
            return ids
    raise InvalidFilter('a members filter must select members by value eq "id"')


def _member_ids(value: Any) -> list[str]:
    """Member ids to remove, from a value list (type is not checked: removing is always safe)."""
    items = value if isinstance(value, list) else [value]
    ids = []
    for item in items:
        if isinstance(item, str):
            ids.append(item)
        elif isinstance(item, dict):
            member_id = _lower_keys(item).get("value")
            if not isinstance(member_id, str):
                raise InvalidValue("attribute 'members.value' is required and must be a string")
            ids.append(member_id)
        elif item is not None:
            raise InvalidValue("attribute 'members' must hold objects with a 'value'")
    return ids
