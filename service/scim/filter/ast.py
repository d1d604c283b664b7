"""The filter tree (RFC 7644 section 3.4.2.2): what `parse_filter` builds and every later stage
walks. Plain frozen dataclasses, compared by value; nothing here knows the schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

Value: TypeAlias = str | int | float | bool | None


@dataclass(frozen=True)
class AttrPath:
    """`[URI ":"] ATTRNAME ["." subAttr]`; `urn` is None for core and common attributes."""

    urn: str | None
    name: str
    sub: str | None = None

    def __str__(self) -> str:
        text = f"{self.urn}:{self.name}" if self.urn else self.name
        return f"{text}.{self.sub}" if self.sub else text


@dataclass(frozen=True)
class Compare:
    path: AttrPath
    op: str  # eq ne co sw ew gt ge lt le, lower case
    value: Value


@dataclass(frozen=True)
class Present:
    path: AttrPath


@dataclass(frozen=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or:
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not:
    expr: Expr


@dataclass(frozen=True)
class ValuePath:
    """`emails[type eq "work"]`: paths inside `filter` are relative to one element."""

    path: AttrPath
    filter: Expr


Expr: TypeAlias = Compare | Present | And | Or | Not | ValuePath

__all__ = [
    "And",
    "AttrPath",
    "Compare",
    "Expr",
    "Not",
    "Or",
    "Present",
    "Value",
    "ValuePath",
]
