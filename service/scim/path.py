"""PATCH attribute paths (RFC 7644 section 3.5.2): PATH = attrPath / valuePath [subAttr].

    path = resolve_path(parse_path('emails[type eq "work"].value'), USER_RESOURCE)
    path.attribute.name, path.sub.name                # ('emails', 'value')

Errors: a bad path is `InvalidPath` (scimType invalidPath). The part inside the brackets is a
filter (valFilter), so a problem *inside* the brackets (bad operator or literal, unknown
sub-attribute, type mismatch) is `InvalidFilter` (scimType invalidFilter, RFC 7644 section 3.12);
everything else (the attribute path, a missing ']', what follows it) is `InvalidPath`. An unknown
attribute or sub-attribute of the path itself is `UnknownAttribute`, a subclass of InvalidPath, so
that the PATCH engine can choose to ignore operations on attributes it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.scim.errors import InvalidFilter, InvalidPath
from service.scim.filter import (
    ATTR_NAME,
    MAX_DEPTH,
    AttrPath,
    Expr,
    Parser,
    check_text,
    lookup_attribute,
    resolve_within,
)
from service.scim.schema import Attribute, ResourceType


class UnknownAttribute(InvalidPath):
    """The path names an attribute, sub-attribute or schema URN the resource type does not have."""


@dataclass(frozen=True)
class PatchPath:
    attr: AttrPath
    value_filter: Expr | None = None
    sub: str | None = None  # the subAttr after ']' (`emails[type eq "work"].value`)


@dataclass(frozen=True)
class ResolvedPath:
    """A path checked against the schema. `sub` is the sub-attribute whether it was written
    `name.familyName` or `emails[...].value`; `value_filter` is relative to one element."""

    schema_urn: str | None  # the extension URN when the attribute lives in an extension
    attribute: Attribute  # the top-level attribute
    sub: Attribute | None = None
    value_filter: Expr | None = None

    @property
    def names(self) -> tuple[str | None, str, str | None]:
        """(schema URN or None, canonical attribute name, canonical sub-attribute name or None):
        the keys under which the value lives in a stored resource."""
        return self.schema_urn, self.attribute.name, self.sub.name if self.sub else None

    @property
    def attr_path(self) -> AttrPath:
        """The canonical attribute path without the value filter."""
        return AttrPath(*self.names)

    def __str__(self) -> str:
        """Canonical text without the value filter, e.g. `name.familyName`."""
        return str(self.attr_path)


def parse_path(text: str) -> PatchPath:
    """Parse a PATCH `path` (RFC 7644 section 3.5.2), any case. Raises InvalidPath (and
    InvalidFilter for problems inside the brackets)."""
    check_text(text, "path", InvalidPath)
    parser = Parser(text, MAX_DEPTH, error=InvalidPath)
    attr = parser.attr_path()
    value_filter: Expr | None = None
    sub: str | None = None
    if parser.peek().kind == "[":
        parser.error = InvalidFilter
        value_filter = parser.parse_value_filter()
        parser.error = InvalidPath
        parser.expect("]", "']' to close the value filter")
        token = parser.peek()
        if token.kind == "word" and token.text.startswith("."):
            if not ATTR_NAME.fullmatch(token.text[1:]):
                parser.fail(f"invalid sub-attribute {token.text[1:]!r}", token)
            sub = token.text[1:]
            parser.advance()
    parser.expect_end()
    return PatchPath(attr, value_filter, sub)


def resolve_path(path: PatchPath, resource_type: ResourceType) -> ResolvedPath:
    """Check `path` against the schema and canonicalise it. Unknown names raise
    UnknownAttribute; a structurally wrong path (value filter on a simple attribute, both
    `a.b[...]` and a trailing sub-attribute) raises InvalidPath."""
    urn, attribute, sub = lookup_attribute(
        path.attr, resource_type, error=UnknownAttribute, allow_schemas=False
    )
    value_filter: Expr | None = None
    if path.value_filter is not None:
        if sub is not None or attribute.type != "complex" or not attribute.multi_valued:
            raise InvalidPath(
                f"'{path.attr}[...]': a value filter needs a multi-valued complex attribute"
            )
        value_filter = resolve_within(path.value_filter, attribute, resource_type)
        if path.sub is not None:
            sub = attribute.sub(path.sub)
            if sub is None:
                raise UnknownAttribute(f"unknown sub-attribute '{attribute.name}.{path.sub}'")
    elif path.sub is not None:
        raise InvalidPath("a sub-attribute after ']' needs a value filter before it")
    return ResolvedPath(urn, attribute, sub, value_filter)


__all__ = ["PatchPath", "ResolvedPath", "UnknownAttribute", "parse_path", "resolve_path"]
