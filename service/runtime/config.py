"""Settings, read once from the environment (SCIMLEDGER_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # None: run the embedded PostgreSQL in data_dir
    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None  # base URL as IdPs reach it, for meta.location; default from Host
    max_body_bytes: int = 1024 * 1024
    default_rate_limit: float = 50.0  # requests per second per tenant (burst: 2 s worth)
    default_page_size: int = 100
    max_page_size: int = 1000
    pool_min: int = 2
    pool_max: int = 10
    token_rotation_grace_s: int = 24 * 3600
    log_json: bool | None = None  # None: JSON unless stdout is a TTY
    run_followers: bool = True  # run the async projections (audit, seal) inside serve

    @classmethod
    def from_env(cls) -> Settings:
        log_json = os.environ.get("SCIMLEDGER_LOG_JSON")
        return cls(
            database_url=os.environ.get("SCIMLEDGER_DATABASE_URL") or None,
            data_dir=Path(os.environ.get("SCIMLEDGER_DATA_DIR") or "var"),
            host=os.environ.get("SCIMLEDGER_HOST") or "127.0.0.1",
            port=_int("SCIMLEDGER_PORT", 8080),
            public_url=os.environ.get("SCIMLEDGER_PUBLIC_URL") or None,
            max_body_bytes=_int("SCIMLEDGER_MAX_BODY_BYTES", 1024 * 1024),
            default_rate_limit=_float("SCIMLEDGER_RATE_LIMIT", 50.0),
            default_page_size=_int("SCIMLEDGER_PAGE_SIZE", 100),
            max_page_size=_int("SCIMLEDGER_MAX_PAGE_SIZE", 1000),
            pool_min=_int("SCIMLEDGER_POOL_MIN", 2),
            pool_max=_int("SCIMLEDGER_POOL_MAX", 10),
            token_rotation_grace_s=_int("SCIMLEDGER_TOKEN_GRACE_SECONDS", 24 * 3600),
            log_json=None if log_json is None else log_json.lower() in ("1", "true", "yes"),
            run_followers=(os.environ.get("SCIMLEDGER_RUN_FOLLOWERS") or "true").lower()
            in ("1", "true", "yes"),
        )
