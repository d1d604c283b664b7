"""What the CLI prints: results meant for scripts (ids, secrets, tables) alone on stdout,
everything else (progress, warnings, errors) on stderr.

Data from clients (userNames, target names, token labels, User-Agents) goes through `printable`
before it reaches a terminal: a control character (an ANSI escape, a newline, a carriage return,
a bidirectional override) is shown as a visible escape, so no value can recolour the screen,
fake a line of a table or hide text.
"""

from __future__ import annotations

import sys
from typing import Any

# Unicode format characters that reorder or hide text (Trojan Source, CVE-2021-42574), and the
# line and paragraph separators, which terminals and pagers may take as line breaks.
_INVISIBLE = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any) -> str:
    """`value` as text that is safe on a terminal: C0 and C1 control characters, DEL and the
    characters of _INVISIBLE rendered as `\\x1b`, `\\n`, `\\u202e`, ...; anything else as is."""
    text = "" if value is None else str(value)
    if text.isprintable() and not _INVISIBLE.intersection(text):
        return text
    return "".join(
        _escape(c) if (c.isascii() and not c.isprintable()) or "\x80" <= c <= "\x9f" or c in _INVISIBLE else c
        for c in text
    )


def err(*parts: Any) -> None:
    print(*parts, file=sys.stderr)


def out(*parts: Any) -> None:
    print(*parts)
