"""What the CLI prints: results meant for scripts (ids, secrets, tables) alone on stdout,
everything else (progress, warnings, errors) on stderr."""

from __future__ import annotations

import sys
from typing import Any


def err(*parts: Any) -> None:
    print(*parts, file=sys.stderr)


def out(*parts: Any) -> None:
    print(*parts)
