"""Filter and sort -> PostgreSQL (RFC 7644 sections 3.4.2.2 and 3.4.2.3).

    expr = resolve(parse_filter('userName eq "bjensen"'), USER_RESOURCE)
    sql, params = to_sql(expr, USERS_TARGET)     # ('lower(u.user_name) = lower($1)', ['bjensen'])

`to_sql` translates a filter into a parameterised boolean expression and `sort_sql` a sortBy into
an ORDER BY expression, both with the `SqlTarget` map as the only source of SQL identifiers: values
are only ever parameters, JSON keys come from the schema (`json_key` checks them). The semantics
are those of `matches` (service/scim/filter/evaluate.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from service.scim.errors import InvalidFilter, InvalidValue
from service.scim.filter.ast import And, AttrPath, Compare, Expr, Not, Or, Present, Value, ValuePath
from service.scim.filter.evaluate import compare_value
from service.scim.filter.parser import ORDER_OPS, SUBSTRING_OPS, parse_filter
from service.scim.filter.resolve import (
    NUMBER_TYPES,
    SCHEMAS_ATTRIBUTE,
    STRING_TYPES,
    lookup_attribute,
    parse_datetime,
    resolve,
    resolve_within,
)
from service.scim.schema import Attribute, ResourceType


@dataclass(frozen=True)
class Column:
    sql: str  # e.g. "u.user_name"
    type: str = "string"  # string boolean dateTime integer decimal uuid
    case_exact: bool = False


@dataclass(frozen=True)
class Relation:
    """A multi-valued attribute kept in another table (groups of a user, members of a group).
    `exists_sql` must be a SELECT ending in a WHERE condition: predicates are appended with AND."""

    exists_sql: str
    columns: dict[str, Column]  # lower-case sub-attribute -> column


@dataclass(frozen=True)
class SqlTarget:
    resource_type: ResourceType
    columns: dict[str, Column]  # lower-cased dotted path ("username", "meta.created") -> column
    json_column: str  # jsonb column with every other attribute, e.g. "u.resource"
    relations: dict[str, Relation] = field(default_factory=dict)  # lower-cased attr -> relation
    # Attributes fixed per target, compared in Python; "meta.resourcetype" defaults to the
    # resource type's name.
    constants: dict[str, str] = field(default_factory=dict)
    # lower-cased "attr.sub" of a multi-valued attribute -> an indexed SQL text[] expression of the
    # lower-cased values of that sub-attribute (e.g. a GIN expression index over the emails):
    # `eq` on it gets `<expr> @> ARRAY[lower($n)]` in front of the exact EXISTS, so the lookup
    # IdPs make by email is an index probe, not a scan of the tenant.
    value_indexes: dict[str, str] = field(default_factory=dict)


_SQL_OPS = {"eq": "=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_SAFE_KEY = re.compile(r"[A-Za-z0-9:._$-]+")
_LIKE_SPECIAL = re.compile(r"([\\%_])")


def json_key(name: str) -> str:
    """A JSON key as a SQL string literal. Keys come from the schema, never from the request;
    the check keeps it that way if someone ever breaks that."""
    if not _SAFE_KEY.fullmatch(name):
        raise InvalidFilter(f"attribute name {name!r} cannot be used in SQL")
    return f"'{name}'"


def _like_pattern(op: str, value: str) -> str:
    escaped = _LIKE_SPECIAL.sub(r"\\\1", value)
    return {"co": f"%{escaped}%", "sw": f"{escaped}%", "ew": f"%{escaped}"}[op]


def _path_key(path: AttrPath) -> str:
    dotted = f"{path.name}.{path.sub}" if path.sub else path.name
    return (f"{path.urn}:{dotted}" if path.urn else dotted).lower()


@dataclass(frozen=True)
class _JsonSlot:
    """A value inside jsonb: `base -> key`, or the scalar `base` itself when key is None."""

    base: str
    key: str | None
    attribute: Attribute

    @property
    def jsonb(self) -> str:
        return f"({self.base}->{json_key(self.key)})" if self.key else self.base

    @property
    def text(self) -> str:
        return f"({self.base}->>{json_key(self.key)})" if self.key else f"({self.base} #>> '{{}}')"


class _SqlBuilder:
    def __init__(self, target: SqlTarget, first_param: int) -> None:
        self.target = target
        self.first_param = first_param
        self.params: list[Any] = []
        self.aliases = 0

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${self.first_param + len(self.params) - 1}"

    def alias(self) -> str:
        self.aliases += 1
        return f"e{self.aliases}"

    # -- expressions ----------------------------------------------------------------------------
    # Every leaf is TRUE/FALSE or NULL where the attribute is absent. In a positive position NULL
    # acts as FALSE (AND/OR are monotone, WHERE drops NULL), so leaves stay bare and indexable:
    # `lower(u.user_name) = lower($1)`. Under NOT that would drop the row instead of keeping it,
    # so a negation is always `NOT coalesce(x, false)`, and `ne` is `NOT coalesce(<eq>, false)`:
    # `not (title eq "x")` and `title ne "x"` both match users without a title.
    def expr(self, expr: Expr, leaf: Callable[[Compare | Present], str]) -> str:
        if isinstance(expr, And):
            return f"({self.expr(expr.left, leaf)} AND {self.expr(expr.right, leaf)})"
        if isinstance(expr, Or):
            return f"({self.expr(expr.left, leaf)} OR {self.expr(expr.right, leaf)})"
        if isinstance(expr, Not):
            return f"(NOT coalesce({self.expr(expr.expr, leaf)}, false))"
        if isinstance(expr, Compare) and expr.op == "ne":
            return f"(NOT coalesce({leaf(Compare(expr.path, 'eq', expr.value))}, false))"
        if isinstance(expr, Compare | Present):
            return leaf(expr)
        if isinstance(expr, ValuePath):
            return self.value_path(expr)
        raise InvalidFilter(f"not a filter expression: {type(expr).__name__}")

    def resource_leaf(self, expr: Compare | Present) -> str:
        target = self.target
        urn, attribute, sub = lookup_attribute(expr.path, target.resource_type)
        path = AttrPath(urn, attribute.name, sub.name if sub else None)
        key = _path_key(path)
        constants = {"meta.resourcetype": target.resource_type.name, **target.constants}
        if key in constants:
            constant = constants[key]
            if isinstance(expr, Present):
                return "TRUE" if constant else "FALSE"
            return "TRUE" if compare_value(sub or attribute, constant, expr.op, expr.value) else "FALSE"
        if key in target.columns:
            column = target.columns[key]
            if isinstance(expr, Present):
                return self.present_column(column)
            return self.compare_column(column, str(path), expr.op, expr.value)
        if urn is None and attribute.name.lower() in target.relations:
            return self.relation_leaf(target.relations[attribute.name.lower()], attribute, sub, expr)
        if attribute is SCHEMAS_ATTRIBUTE:
            return self.schemas_leaf(expr)
        base = target.json_column if urn is None else f"{target.json_column}->{json_key(urn)}"
        if attribute.multi_valued:
            array = _JsonSlot(base, attribute.name, attribute).jsonb
            if isinstance(expr, Present) and sub is None:
                return f"(CASE WHEN jsonb_typeof({array}) = 'array' THEN jsonb_array_length({array}) > 0 ELSE false END)"
            alias = self.alias()
            if attribute.type == "complex":
                if sub is None:
                    raise InvalidFilter(f"'{path}' is a complex attribute; compare one of its sub-attributes")
                slot = _JsonSlot(f"{alias}.v", sub.name, sub)
            else:
                slot = _JsonSlot(f"{alias}.v", None, attribute)
            exists = self.exists_element(array, alias, self.json_leaf(slot, str(path), expr))
            return self.with_value_index(attribute, sub, expr, exists)
        if sub is not None:
            return self.json_leaf(_JsonSlot(f"{base}->{json_key(attribute.name)}", sub.name, sub), str(path), expr)
        if attribute.type == "complex":
            if isinstance(expr, Compare):
                raise InvalidFilter(f"'{path}' is a complex attribute; compare one of its sub-attributes")
            # `name pr`: present if any sub-attribute is (each through its own column or jsonb).
            parts = [self.resource_leaf(Present(AttrPath(urn, attribute.name, s.name)))
                     for s in attribute.sub_attributes]
            if "TRUE" in parts:
                return "TRUE"
            return "(" + " OR ".join(parts) + ")" if parts else "FALSE"
        return self.json_leaf(_JsonSlot(base, attribute.name, attribute), str(path), expr)

    def exists_element(self, array: str, alias: str, predicate: str) -> str:
        source = f"CASE WHEN jsonb_typeof({array}) = 'array' THEN {array} ELSE '[]'::jsonb END"
        return f"EXISTS (SELECT 1 FROM jsonb_array_elements({source}) AS {alias}(v) WHERE {predicate})"

    def value_path(self, expr: ValuePath) -> str:
        target = self.target
        urn, attribute, _ = lookup_attribute(expr.path, target.resource_type)
        if attribute.type != "complex":
            raise InvalidFilter(f"'{expr.path}[...]': a value filter needs a complex attribute")
        inner = resolve_within(expr.filter, attribute, target.resource_type)
        if urn is None and attribute.name.lower() in target.relations:
            relation = target.relations[attribute.name.lower()]

            def relation_leaf(leaf: Compare | Present) -> str:
                return self.relation_column_leaf(relation, attribute, attribute.sub(leaf.path.name), leaf)

            return f"EXISTS ({relation.exists_sql} AND {self.expr(inner, relation_leaf)})"
        if not attribute.multi_valued:
            # `name[givenName eq "x"]` is `name.givenName eq "x"`: reuse the resource paths.
            def absolute(leaf: Compare | Present) -> str:
                path = AttrPath(urn, attribute.name, leaf.path.name)
                return self.resource_leaf(Compare(path, leaf.op, leaf.value) if isinstance(leaf, Compare) else Present(path))

            return self.expr(inner, absolute)
        base = target.json_column if urn is None else f"{target.json_column}->{json_key(urn)}"
        array = _JsonSlot(base, attribute.name, attribute).jsonb
        alias = self.alias()

        def element_leaf(leaf: Compare | Present) -> str:
            sub = attribute.sub(leaf.path.name)
            if sub is None:
                raise InvalidFilter(f"unknown sub-attribute '{attribute.name}.{leaf.path.name}'")
            return self.json_leaf(_JsonSlot(f"{alias}.v", sub.name, sub), f"{attribute.name}.{sub.name}", leaf)

        exists = self.exists_element(array, alias, self.expr(inner, element_leaf))
        for conjunct in _conjuncts(inner):
            if isinstance(conjunct, Compare) and conjunct.path.sub is None:
                exists = self.with_value_index(attribute, attribute.sub(conjunct.path.name), conjunct, exists)
        return exists

    def with_value_index(self, attribute: Attribute, sub: Attribute | None, expr: Compare | Present, exists: str) -> str:
        """Put an index probe in front of an EXISTS over a multi-valued attribute when the
        comparison is a case-insensitive `eq` on an indexed sub-attribute (see SqlTarget)."""
        if sub is None or not isinstance(expr, Compare) or expr.op != "eq" or not isinstance(expr.value, str):
            return exists
        if sub.case_exact:
            return exists
        index = self.target.value_indexes.get(f"{attribute.name}.{sub.name}".lower())
        if index is None:
            return exists
        return f"({index} @> ARRAY[lower({self.param(expr.value)})]::text[] AND {exists})"

    # -- relations ------------------------------------------------------------------------------
    def relation_leaf(self, relation: Relation, attribute: Attribute, sub: Attribute | None, expr: Compare | Present) -> str:
        if sub is None:
            if isinstance(expr, Compare):
                raise InvalidFilter(f"'{attribute.name}' is a complex attribute; compare one of its sub-attributes")
            return f"EXISTS ({relation.exists_sql})"
        return f"EXISTS ({relation.exists_sql} AND {self.relation_column_leaf(relation, attribute, sub, expr)})"

    def relation_column_leaf(self, relation: Relation, attribute: Attribute, sub: Attribute | None, expr: Compare | Present) -> str:
        column = relation.columns.get(sub.name.lower()) if sub is not None else None
        if sub is None or column is None:
            raise InvalidFilter(f"filtering on '{attribute.name}.{expr.path.name if sub is None else sub.name}' is not supported")
        if isinstance(expr, Present):
            return self.present_column(column)
        return self.compare_column(column, f"{attribute.name}.{sub.name}", expr.op, expr.value)

    def schemas_leaf(self, expr: Compare | Present) -> str:
        """`schemas` is derived: the core URN always, an extension URN when its key is present."""
        if isinstance(expr, Present):
            return "TRUE"
        resource_type = self.target.resource_type
        if compare_value(SCHEMAS_ATTRIBUTE, resource_type.schema.id, expr.op, expr.value):
            return "TRUE"
        parts = [
            f"({self.target.json_column}->{json_key(s.id)}) IS NOT NULL"
            for s in resource_type.extensions
            if compare_value(SCHEMAS_ATTRIBUTE, s.id, expr.op, expr.value)
        ]
        return "(" + " OR ".join(parts) + ")" if parts else "FALSE"

    # -- columns --------------------------------------------------------------------------------
    def present_column(self, column: Column) -> str:
        if column.type == "string":
            return f"{column.sql} <> ''"
        return f"{column.sql} IS NOT NULL"

    def compare_column(self, column: Column, where: str, op: str, value: Value) -> str:
        kind = column.type
        if kind == "uuid":
            if op == "eq":
                try:
                    parsed = uuid.UUID(value) if isinstance(value, str) else None
                except ValueError:
                    parsed = None
                # A value that is no UUID equals no row; never let PostgreSQL reject the cast.
                return f"{column.sql} = {self.param(parsed)}::uuid" if parsed else "FALSE"
            return self.compare_text(f"{column.sql}::text", column.case_exact, where, op, value)
        if kind in ("string", "reference", "binary"):
            return self.compare_text(column.sql, column.case_exact, where, op, value)
        return self.compare_typed(column.sql, kind, where, op, value)

    def compare_text(self, sql: str, case_exact: bool, where: str, op: str, value: Value) -> str:
        if not isinstance(value, str):
            raise InvalidFilter(f"'{where}' is a string; compare it with a quoted string")
        if op in SUBSTRING_OPS:
            pattern = self.param(_like_pattern(op, value))
            if case_exact:
                return f"{sql} LIKE {pattern} ESCAPE '\\'"
            return f"lower({sql}) LIKE lower({pattern}) ESCAPE '\\'"
        left, right = (sql, self.param(value)) if case_exact else (f"lower({sql})", f"lower({self.param(value)})")
        if op in ORDER_OPS:  # code point order, as in `matches`, whatever the database collation
            right += ' COLLATE "C"'
        return f"{left} {_SQL_OPS[op]} {right}"

    def compare_typed(self, sql: str, kind: str, where: str, op: str, value: Value) -> str:
        """Boolean, number and dateTime comparisons; `sql` is the value, already of the type."""
        if kind == "boolean":
            if op != "eq" or not isinstance(value, bool):
                raise InvalidFilter(f"'{where}' is a boolean; only eq/ne with true or false apply")
            return f"{sql} = {self.param(value)}::boolean"
        if kind in NUMBER_TYPES:
            if isinstance(value, bool) or not isinstance(value, int | float) or op not in _SQL_OPS:
                raise InvalidFilter(f"'{where}' is a number; compare it with a number")
            number = Decimal(value) if isinstance(value, int) else Decimal(repr(value))
            return f"{sql} {_SQL_OPS[op]} {self.param(number)}::numeric"
        if kind == "dateTime":
            if not isinstance(value, str) or op not in _SQL_OPS:
                raise InvalidFilter(f"'{where}' is a dateTime; compare it with eq, ne, gt, ge, lt or le")
            return f"{sql} {_SQL_OPS[op]} {self.param(parse_datetime(value))}::timestamptz"
        raise InvalidFilter(f"'{where}' ({kind}) cannot be compared")

    # -- jsonb ----------------------------------------------------------------------------------
    def json_leaf(self, slot: _JsonSlot, where: str, expr: Compare | Present) -> str:
        kind = slot.attribute.type
        if isinstance(expr, Present):
            if kind in STRING_TYPES or kind == "dateTime":
                return f"{slot.text} <> ''"
            return f"jsonb_typeof({slot.jsonb}) <> 'null'"
        if kind in STRING_TYPES:
            return self.compare_text(slot.text, slot.attribute.case_exact, where, expr.op, expr.value)
        # Guarded casts: a stored value of the wrong JSON type compares as NULL, never an error.
        if kind == "boolean":
            value = f"(CASE WHEN jsonb_typeof({slot.jsonb}) = 'boolean' THEN ({slot.jsonb})::boolean END)"
        elif kind in NUMBER_TYPES:
            value = f"(CASE WHEN jsonb_typeof({slot.jsonb}) = 'number' THEN ({slot.jsonb})::numeric END)"
        elif kind == "dateTime":
            value = f"(CASE WHEN pg_input_is_valid({slot.text}, 'timestamptz') THEN ({slot.text})::timestamptz END)"
        else:
            raise InvalidFilter(f"'{where}' ({kind}) cannot be compared")
        return self.compare_typed(value, kind, where, expr.op, expr.value)


def _conjuncts(expr: Expr) -> list[Expr]:
    """The terms of a top-level AND chain (the expression itself if it is not an AND)."""
    if isinstance(expr, And):
        return _conjuncts(expr.left) + _conjuncts(expr.right)
    return [expr]


def to_sql(expr: Expr, target: SqlTarget, *, first_param: int = 1) -> tuple[str, list[Any]]:
    """Translate a filter into a PostgreSQL boolean expression and its parameters ($n from
    `first_param`). Values are only ever parameters; identifiers come only from `target`. The
    filter is resolved first (a no-op on a resolved filter). Raises only InvalidFilter."""
    expr = resolve(expr, target.resource_type)
    builder = _SqlBuilder(target, first_param)
    return builder.expr(expr, builder.resource_leaf), builder.params


def sort_sql(sort_by: str, target: SqlTarget, descending: bool) -> str:
    """ORDER BY expression for `sortBy` (RFC 7644 3.4.2.3), from the schema whitelist only.

    A multi-valued attribute sorts by its primary value, else its first (the RFC's rule)."""
    try:
        path = parse_filter(f"{sort_by} pr")
    except InvalidFilter as e:
        raise InvalidValue(f"sortBy {sort_by!r} is not an attribute path") from e
    if not isinstance(path, Present) or path.path is None:
        raise InvalidValue(f"sortBy {sort_by!r} is not an attribute path")
    urn, attribute, sub = lookup_attribute(
        path.path, target.resource_type, error=InvalidValue, allow_schemas=False
    )
    direction = "DESC" if descending else "ASC"
    nulls = "NULLS LAST" if not descending else "NULLS FIRST"
    key = attribute.name.lower() + (f".{sub.name.lower()}" if sub else "")
    if urn is None and key in target.columns:
        column = target.columns[key]
        expr = column.sql if column.case_exact or column.type != "string" else f"lower({column.sql})"
        return f"{expr} {direction} {nulls}"
    if attribute.type == "complex" and sub is None and not attribute.multi_valued:
        raise InvalidValue(f"cannot sort by the complex attribute {attribute.name!r}")
    base = target.json_column
    if urn is not None:
        base = f"({base}->{json_key(urn)})"
    node = f"({base}->{json_key(attribute.name)})"
    leaf = sub or (attribute.sub("value") if attribute.multi_valued else None) or attribute
    if attribute.multi_valued:
        # the primary element if any, else the first
        element = (
            f"coalesce((SELECT x FROM jsonb_array_elements(CASE WHEN jsonb_typeof({node}) = 'array' "
            f"THEN {node} ELSE '[]'::jsonb END) x WHERE x->>'primary' = 'true' LIMIT 1), {node}->0)"
        )
        text = f"({element}->>{json_key(leaf.name)})" if attribute.type == "complex" else f"({element} #>> '{{}}')"
    elif sub is not None:
        text = f"({node}->>{json_key(sub.name)})"
    else:
        text = f"({base}->>{json_key(attribute.name)})"
    expr = text if leaf.case_exact else f"lower({text})"
    return f"{expr} {direction} {nulls}"


__all__ = ["Column", "Relation", "SqlTarget", "json_key", "sort_sql", "to_sql"]
