"""Filter resolution (RFC 7644 section 3.4.2.2): every attribute of a parsed filter checked
against the schema data and given its canonical name, and comparison values checked against the
attribute types (RFC 7643 section 2.3).

Semantics chosen where the RFC is silent (the same in `matches` and `to_sql`, which both take a
resolved tree):

- `eq null` is "not present" and `ne null` is "present" (RFC 7643 section 2.5: null and
  unassigned are equivalent); `resolve` rewrites them to `not (x pr)` / `x pr`.
- A multi-valued complex attribute compared without sub-attribute means its `value`
  (`emails co "x"` is `emails.value co "x"`).
- Leniencies: a boolean attribute compared with the strings "true"/"false" (any case) is compared
  with the boolean; a string attribute compared with an integer is compared with its decimal text
  (`employeeNumber eq 12345`).
"""

from __future__ import annotations

from datetime import datetime

from service.scim.errors import InvalidFilter, ScimError
from service.scim.filter.ast import And, AttrPath, Compare, Expr, Not, Or, Present, Value, ValuePath
from service.scim.filter.parser import COMPARE_OPS, SUBSTRING_OPS
from service.scim.limits import in_utc
from service.scim.schema import Attribute, ResourceType

STRING_TYPES = frozenset({"string", "reference", "binary"})
NUMBER_TYPES = frozenset({"integer", "decimal"})

# RFC 7643 section 3: every resource carries "schemas"; it is not in the schema attribute lists,
# so filters on it (`schemas eq "urn:...:enterprise:2.0:User"`, RFC 7644 Figure 2) resolve here.
SCHEMAS_ATTRIBUTE = Attribute(
    "schemas", multi_valued=True, mutability="readOnly", returned="always",
    description="The schema URIs the resource conforms to.",
)


def lookup_attribute(
    path: AttrPath,
    resource_type: ResourceType,
    *,
    error: type[ScimError] = InvalidFilter,
    allow_schemas: bool = True,
) -> tuple[str | None, Attribute, Attribute | None]:
    """The schema URN (None for core and common attributes), attribute and sub-attribute that an
    absolute `path` names, matched case-insensitively (RFC 7643 section 2.1). Raises `error`."""
    urn: str | None = None
    if path.urn is not None:
        schema = resource_type.schema_by_urn(path.urn)
        if schema is None:
            raise error(f"unknown schema URN '{path.urn}' in '{path}'")
        if schema is resource_type.schema:
            attribute = resource_type.top_level(path.name)
        else:
            urn = schema.id
            attribute = schema.attribute(path.name)
    elif allow_schemas and path.name.lower() == "schemas":
        attribute = SCHEMAS_ATTRIBUTE
    else:
        attribute = resource_type.top_level(path.name)
    if attribute is None:
        raise error(f"unknown attribute '{path}'")
    sub: Attribute | None = None
    if path.sub is not None:
        sub = attribute.sub(path.sub)
        if sub is None:
            raise error(f"unknown sub-attribute '{path}'")
    return urn, attribute, sub


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 dateTime (RFC 7643 section 2.3.5) as an aware datetime in UTC; naive means
    UTC. One whose offset takes it outside 0001-01-01..9999-12-31 UTC is InvalidFilter (it could
    not be compared, in memory or in PostgreSQL)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidFilter(f"{text!r} is not an ISO 8601 dateTime") from None
    return in_utc(moment, repr(text), InvalidFilter)


def _coerce(target: Attribute, where: str, op: str, value: Value) -> Value:
    """Check (and leniently convert) a comparison value against the attribute type."""
    kind = target.type
    if kind in STRING_TYPES:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise InvalidFilter(f"'{where}' is a string; compare it with a quoted string")
        return value
    if kind == "boolean":
        if op not in ("eq", "ne"):
            raise InvalidFilter(f"'{op}' cannot be used with the boolean attribute '{where}'")
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise InvalidFilter(f"'{where}' is a boolean; compare it with true or false")
        return value
    if kind in NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidFilter(f"'{where}' is a number; compare it with a number")
        return value
    if kind == "dateTime":
        if op in SUBSTRING_OPS:
            raise InvalidFilter(f"'{op}' cannot be used with the dateTime attribute '{where}'")
        if not isinstance(value, str):
            raise InvalidFilter(f"'{where}' is a dateTime; compare it with a quoted ISO 8601 string")
        parse_datetime(value)
        return value
    raise InvalidFilter(f"'{where}' ({kind}) cannot be compared")


def _check_filterable(where: str, *attributes: Attribute | None) -> None:
    for attribute in attributes:
        if attribute is not None and attribute.returned == "never":
            raise InvalidFilter(f"'{where}' cannot be used in a filter")


class _Resolver:
    def __init__(self, resource_type: ResourceType) -> None:
        self.resource_type = resource_type

    def expr(self, expr: Expr, element: Attribute | None) -> Expr:
        if isinstance(expr, And):
            return And(self.expr(expr.left, element), self.expr(expr.right, element))
        if isinstance(expr, Or):
            return Or(self.expr(expr.left, element), self.expr(expr.right, element))
        if isinstance(expr, Not):
            return Not(self.expr(expr.expr, element))
        if isinstance(expr, ValuePath):
            return self.value_path(expr, element)
        if isinstance(expr, Present):
            return Present(self.path(expr.path, element)[0])
        if isinstance(expr, Compare):
            return self.compare(expr, element)
        raise InvalidFilter(f"not a filter expression: {type(expr).__name__}")

    def path(self, path: AttrPath, element: Attribute | None) -> tuple[AttrPath, Attribute, Attribute | None]:
        """Canonical path, its attribute and sub-attribute (relative to `element` if given)."""
        if element is None:
            urn, attribute, sub = lookup_attribute(path, self.resource_type)
            canonical = AttrPath(urn, attribute.name, sub.name if sub else None)
            _check_filterable(str(canonical), attribute, sub)
            return canonical, attribute, sub
        if path.urn is not None or path.sub is not None:
            raise InvalidFilter(
                f"'{path}' inside '{element.name}[...]' must be a sub-attribute name of {element.name}"
            )
        member = element.sub(path.name)
        if member is None:
            raise InvalidFilter(f"unknown sub-attribute '{element.name}.{path.name}'")
        _check_filterable(f"{element.name}.{member.name}", member)
        return AttrPath(None, member.name, None), member, None

    def compare(self, expr: Compare, element: Attribute | None) -> Expr:
        if expr.op not in COMPARE_OPS:
            raise InvalidFilter(f"unknown operator {expr.op!r}")
        path, attribute, sub = self.path(expr.path, element)
        if expr.value is None:
            if expr.op not in ("eq", "ne"):
                raise InvalidFilter(f"'{expr.op}' cannot compare with null")
            # RFC 7643 section 2.5: null and unassigned are the same state.
            return Not(Present(path)) if expr.op == "eq" else Present(path)
        if sub is None and attribute.type == "complex":
            value_sub = attribute.sub("value")
            if not attribute.multi_valued or value_sub is None:
                example = attribute.sub_attributes[0].name if attribute.sub_attributes else "x"
                raise InvalidFilter(
                    f"'{path}' is a complex attribute; compare one of its sub-attributes, "
                    f"e.g. {path}.{example}"
                )
            sub = value_sub
            path = AttrPath(path.urn, path.name, value_sub.name)
        target = sub or attribute
        value = _coerce(target, str(path), expr.op, expr.value)
        return Compare(path, expr.op, value)

    def value_path(self, expr: ValuePath, element: Attribute | None) -> Expr:
        if element is not None:
            raise InvalidFilter("value filters cannot be nested")
        path, attribute, sub = self.path(expr.path, None)
        if sub is not None or attribute.type != "complex":
            raise InvalidFilter(f"'{path}[...]': a value filter needs a complex attribute")
        return ValuePath(path, self.expr(expr.filter, attribute))


def resolve(expr: Expr, resource_type: ResourceType) -> Expr:
    """Validate every attribute of `expr` against the schema and canonicalise the names: schema
    case, core URN dropped, extension URN in canonical case. Raises InvalidFilter. Idempotent."""
    return _Resolver(resource_type).expr(expr, None)


def resolve_within(expr: Expr, attribute: Attribute, resource_type: ResourceType) -> Expr:
    """Resolve a value filter whose paths are relative to an element of the complex `attribute`
    (the part inside `emails[...]`)."""
    if attribute.type != "complex":
        raise InvalidFilter(f"'{attribute.name}[...]': a value filter needs a complex attribute")
    return _Resolver(resource_type).expr(expr, attribute)


__all__ = [
    "NUMBER_TYPES",
    "SCHEMAS_ATTRIBUTE",
    "STRING_TYPES",
    "lookup_attribute",
    "parse_datetime",
    "resolve",
    "resolve_within",
]
