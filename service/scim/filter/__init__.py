"""SCIM filters (RFC 7644 section 3.4.2.2): lexer -> parser -> AST -> resolve -> matches / to_sql.

    expr = resolve(parse_filter('userName eq "bjensen"'), USER_RESOURCE)
    sql, params = to_sql(expr, USERS_TARGET)     # ('lower(u.user_name) = lower($1)', ['bjensen'])

One module per stage; imports point one way (ast at the bottom, then lexer <- parser <- resolve
<- evaluate <- sql):

- `lexer`: text -> tokens; never raises (a lexical error is a token the parser reports).
- `ast`: the tree (AttrPath, Compare, Present, And, Or, Not, ValuePath).
- `parser`: `parse_filter`, the grammar only (Figure 1), bounded in length, depth, terms and
  value length; raises only InvalidFilter. `Parser` also reads PATCH paths (service/scim/path.py).
- `resolve`: names checked against the schema and canonicalised, values against the types.
- `evaluate`: `matches`, a resolved tree against a resource or element in memory.
- `sql`: `to_sql` (WHERE) and `sort_sql` (ORDER BY, RFC 7644 section 3.4.2.3) for a `SqlTarget`.

Callers import from this package, not from the stage modules.
"""

from service.scim.errors import InvalidFilter
from service.scim.filter.ast import And, AttrPath, Compare, Expr, Not, Or, Present, Value, ValuePath
from service.scim.filter.evaluate import compare_value, matches
from service.scim.filter.lexer import ATTR_NAME
from service.scim.filter.parser import (
    COMPARE_OPS,
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_TERMS,
    MAX_VALUE_LENGTH,
    Parser,
    check_text,
    parse_filter,
)
from service.scim.filter.resolve import (
    SCHEMAS_ATTRIBUTE,
    lookup_attribute,
    parse_datetime,
    resolve,
    resolve_within,
)
from service.scim.filter.sql import Column, Relation, SqlTarget, json_key, sort_sql, to_sql

__all__ = [
    "ATTR_NAME",
    "COMPARE_OPS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_TERMS",
    "MAX_VALUE_LENGTH",
    "SCHEMAS_ATTRIBUTE",
    "And",
    "AttrPath",
    "Column",
    "Compare",
    "Expr",
    "InvalidFilter",
    "Not",
    "Or",
    "Parser",
    "Present",
    "Relation",
    "SqlTarget",
    "Value",
    "ValuePath",
    "check_text",
    "compare_value",
    "json_key",
    "lookup_attribute",
    "matches",
    "parse_datetime",
    "parse_filter",
    "resolve",
    "resolve_within",
    "sort_sql",
    "to_sql",
]
