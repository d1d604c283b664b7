"""The filter lexer (RFC 7644 section 3.4.2.2, Figure 1): text -> tokens.

`tokenize` never raises: a lexical error becomes an `error` token, and the parser reports it
(as InvalidFilter, or InvalidPath for a PATCH path) only when it reaches it. String literals
are JSON strings (RFC 8259 section 7); numbers follow the JSON number grammar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Token:
    kind: str  # ( ) [ ] word string number error end
    text: str  # the source text, or the message for an error token
    pos: int  # 0-based offset in the source
    value: Any = None


# ATTRNAME (RFC 7643 section 2.1, plus `$ref`) and the schema URN prefix of an attrPath.
ATTR_NAME = re.compile(r"\$ref|[A-Za-z][A-Za-z0-9_-]*", re.IGNORECASE)
URN = re.compile(r"urn:[A-Za-z0-9._:-]+", re.IGNORECASE)

_WORD_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ$.")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._-$")
_WHITESPACE = frozenset(" \t\r\n")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def tokenize(text: str) -> list[Token]:
    """Split `text` into tokens. Never raises: a lexical error becomes an `error` token, which the
    parser reports (as InvalidFilter or InvalidPath) when it reaches it."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
        elif c in "()[]":
            tokens.append(Token(c, c, i))
            i += 1
        elif c == '"':
            token, i = _lex_string(text, i)
            tokens.append(token)
            if token.kind == "error":
                return tokens
        elif c == "-" or (c.isascii() and c.isdigit()):
            m = _NUMBER.match(text, i)
            end = m.end() if m else i + 1
            if m is None or (end < n and text[end] in _WORD_CHARS):
                while end < n and text[end] in _WORD_CHARS:
                    end += 1
                tokens.append(Token("error", f"invalid number {text[i:end]!r}", i))
                return tokens
            tokens.append(Token("number", m.group(), i))
            i = end
        elif c in _WORD_START:
            j = i + 1
            while j < n and text[j] in _WORD_CHARS:
                j += 1
            tokens.append(Token("word", text[i:j], i))
            i = j
        else:
            tokens.append(Token("error", f"unexpected character {c!r}", i))
            return tokens
    tokens.append(Token("end", "", n))
    return tokens


def _lex_string(text: str, start: int) -> tuple[Token, int]:
    """A JSON string literal starting at the quote at `start` (RFC 8259 section 7)."""
    out: list[str] = []
    i, n = start + 1, len(text)
    while True:
        if i >= n:
            return Token("error", "unterminated string", start), n
        c = text[i]
        if c == '"':
            return Token("string", text[start : i + 1], start, "".join(out)), i + 1
        if c == "\\":
            if i + 1 >= n:
                return Token("error", "unterminated string", start), n
            e = text[i + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
                continue
            if e != "u":
                return Token("error", f"invalid escape '\\{e}' in string", i), n
            code, i = _hex4(text, i)
            if code is None:
                return Token("error", "invalid \\u escape in string", start), n
            if 0xD800 <= code <= 0xDBFF:
                low = _hex4(text, i)[0] if text.startswith("\\u", i) else None
                if low is None or not 0xDC00 <= low <= 0xDFFF:
                    return Token("error", "unpaired surrogate escape in string", start), n
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                i += 6
            elif 0xDC00 <= code <= 0xDFFF:
                return Token("error", "unpaired surrogate escape in string", start), n
            if code == 0:
                return Token("error", "NUL character (\\u0000) in string", start), n
            out.append(chr(code))
            continue
        if ord(c) < 0x20:
            return Token("error", "unescaped control character in string", i), n
        if 0xD800 <= ord(c) <= 0xDFFF:
            return Token("error", "unpaired surrogate in string", i), n
        out.append(c)
        i += 1


def _hex4(text: str, i: int) -> tuple[int | None, int]:
    """The code of the `\\uXXXX` escape at `i` and the offset after it."""
    digits = text[i + 2 : i + 6]
    if not _HEX4.fullmatch(digits):
        return None, i
    return int(digits, 16), i + 6


__all__ = ["ATTR_NAME", "URN", "Token", "tokenize"]
