"""The console's settings, read once from the environment (SCIMLEDGER_CONSOLE_*,
SCIMLEDGER_REQUEST_LOG_*); every one is optional. Kept beside the console rather than in
service/runtime/config.py so the console stays one removable package (docs/console.md).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

from service.app.request_log import Limits


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool = True
    session_lifetime: dt.timedelta = dt.timedelta(hours=8)  # absolute
    session_idle: dt.timedelta = dt.timedelta(minutes=30)
    request_log: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls) -> ConsoleSettings:
        return cls(
            enabled=(os.environ.get("SCIMLEDGER_CONSOLE") or "true").lower() in ("1", "true", "yes"),
            session_lifetime=dt.timedelta(hours=_number("SCIMLEDGER_CONSOLE_SESSION_HOURS", 8)),
            session_idle=dt.timedelta(minutes=_number("SCIMLEDGER_CONSOLE_IDLE_MINUTES", 30)),
            request_log=Limits(
                retention=dt.timedelta(hours=_number("SCIMLEDGER_REQUEST_LOG_RETENTION_HOURS", 168)),
                max_rows=int(_number("SCIMLEDGER_REQUEST_LOG_MAX_ROWS", 10_000)),
                capacity=int(_number("SCIMLEDGER_REQUEST_LOG_QUEUE", 10_000)),
            ),
        )
