"""Prints the scim2-tester tally at the end of the run, whatever pytest's verbosity."""

from __future__ import annotations

from typing import Any

# filled by test_scim2_tester.py: one line per run of the external checks
TALLY: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in TALLY:
        terminalreporter.write_line(line)
