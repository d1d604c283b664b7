"""Settings, read once from the environment (SCIMLEDGER_*).

A setting that cannot be read is a `SetupError`: the CLI prints its one line and exits 2, never a
traceback (service/cli/main.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from service.runtime.datadir import default_data_dir

N = TypeVar("N", int, float)


class SetupError(Exception):
    """A mistake in how the service is set up or called (a setting, a port, the data dir, the
    database's address): one line saying what, where and the fix, and an exit code; never a
    traceback."""

    exit_code = 1


class InvalidSetting(SetupError):
    exit_code = 2


def check_port(value: int, what: str) -> int:
    if not 1 <= value <= 65535:
        raise InvalidSetting(f"{what} must be a port number from 1 to 65535, not {value}")
    return value


def _number(name: str, default: N, parse: Callable[[str], N], what: str) -> N:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        raise InvalidSetting(f"{name} must be {what}, not {raw!r}") from None


def _int(name: str, default: int) -> int:
    return _number(name, default, int, "a whole number")


def _float(name: str, default: float) -> float:
    return _number(name, default, float, "a number")


def _port(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    return check_port(_int(name, 0), name) if raw else default


def _names(raw: str | None) -> tuple[str, ...] | None:
    """A comma-separated list of host names, lower-cased; unset or blank: None."""
    names = tuple(n.strip().lower() for n in (raw or "").split(",") if n.strip())
    return names or None


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None  # None: run the embedded PostgreSQL in data_dir
    # a hot standby of database_url for the reads that may lag (docs/scaling.md), and how far
    # behind it may be before those reads go back to the primary
    replica_url: str | None = None
    replica_max_lag_s: float = 2.0
    data_dir: Path = field(default_factory=default_data_dir)  # see service/runtime/datadir.py
    # the master key that wraps every subject's data key (docs/privacy.md); None: data_dir/master.key
    master_key_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    metrics_port: int | None = None  # /metrics on its own listener; None: on `port` with the rest
    public_url: str | None = None  # base URL as IdPs reach it, for meta.location; default from Host
    max_body_bytes: int = 1024 * 1024
    default_rate_limit: float = 50.0  # requests per second per tenant (burst: 2 s worth)
    default_page_size: int = 100
    max_page_size: int = 1000
    max_users_per_tenant: int = 1_000_000  # the bound `tenant create` gives a tenant (docs/security.md)
    max_groups_per_tenant: int = 100_000
    pool_min: int = 2
    pool_max: int = 10
    # the edge (docs/security.md): every wait on a client or the database is bounded
    header_timeout_s: float = 10.0  # a request's head must be complete this long after its first byte
    body_timeout_s: float = 20.0  # the whole body must arrive within this: else 408, connection closed
    write_timeout_s: float = 30.0  # a client that reads nothing of a response for this long is cut off
    keepalive_timeout_s: float = 75.0  # an idle keep-alive connection is closed after this
    statement_timeout_s: float = 15.0  # statement_timeout of the serving pool's connections
    idle_in_transaction_timeout_s: float = 60.0  # idle_in_transaction_session_timeout, every pool
    pool_timeout_s: float = 5.0  # longest wait for a pool connection (or a new one): else 503
    tenant_concurrency: int | None = None  # requests in flight per tenant per worker; None: 4/5 of the pool
    tenant_exports: int = 2  # audit exports in flight per tenant per worker
    allowed_hosts: tuple[str, ...] | None = None  # Host names served; None: see allowed_host_names
    token_rotation_grace_s: int = 24 * 3600
    oauth_token_ttl_s: int = 3600  # OAuth access tokens live this long (3,600 to 21,600 s)
    log_json: bool | None = None  # None: JSON unless stderr (where logs go) is a TTY
    run_followers: bool = True  # run the async projections (audit, seal) inside serve

    @property
    def tenant_request_cap(self) -> int:
        """Requests one tenant may have in flight in one worker: the setting, else the pool less
        a fifth of it (8 of 10), so one tenant never holds every connection of a worker (a
        request holds at most one) and the rest stays free for the others."""
        return self.tenant_concurrency or max(1, self.pool_max - max(1, self.pool_max // 5))

    def allowed_host_names(self) -> frozenset[str] | None:
        """The names a request's Host may carry (None: any). SCIMLEDGER_ALLOWED_HOSTS when set
        (`*` for any); else the public URL's host; else, bound to loopback, the loopback names;
        else any (serve warns at start: the Host is then reflected into Location)."""
        if self.allowed_hosts:
            return None if "*" in self.allowed_hosts else frozenset(self.allowed_hosts)
        if self.public_url:
            host = urlsplit(self.public_url).hostname
            return frozenset({host.lower()}) if host else None
        if self.host.lower() in LOOPBACK_NAMES:
            return LOOPBACK_NAMES
        return None

    @classmethod
    def from_env(cls) -> Settings:
        log_json = os.environ.get("SCIMLEDGER_LOG_JSON")
        return cls(
            database_url=os.environ.get("SCIMLEDGER_DATABASE_URL") or None,
            replica_url=os.environ.get("SCIMLEDGER_REPLICA_URL") or None,
            replica_max_lag_s=_float("SCIMLEDGER_REPLICA_MAX_LAG_SECONDS", 2.0),
            data_dir=default_data_dir(),
            master_key_file=Path(os.environ["SCIMLEDGER_MASTER_KEY_FILE"]).expanduser().absolute()
            if os.environ.get("SCIMLEDGER_MASTER_KEY_FILE") else None,
            host=os.environ.get("SCIMLEDGER_HOST") or "127.0.0.1",
            port=_port("SCIMLEDGER_PORT", 8080) or 8080,
            metrics_port=_port("SCIMLEDGER_METRICS_PORT", None),
            public_url=os.environ.get("SCIMLEDGER_PUBLIC_URL") or None,
            max_body_bytes=_int("SCIMLEDGER_MAX_BODY_BYTES", 1024 * 1024),
            default_rate_limit=_float("SCIMLEDGER_RATE_LIMIT", 50.0),
            default_page_size=_int("SCIMLEDGER_PAGE_SIZE", 100),
            max_page_size=_int("SCIMLEDGER_MAX_PAGE_SIZE", 1000),
            max_users_per_tenant=_int("SCIMLEDGER_MAX_USERS_PER_TENANT", 1_000_000),
            max_groups_per_tenant=_int("SCIMLEDGER_MAX_GROUPS_PER_TENANT", 100_000),
            pool_min=_int("SCIMLEDGER_POOL_MIN", 2),
            pool_max=_int("SCIMLEDGER_POOL_MAX", 10),
            header_timeout_s=_float("SCIMLEDGER_HEADER_TIMEOUT_SECONDS", 10.0),
            body_timeout_s=_float("SCIMLEDGER_BODY_TIMEOUT_SECONDS", 20.0),
            write_timeout_s=_float("SCIMLEDGER_WRITE_TIMEOUT_SECONDS", 30.0),
            keepalive_timeout_s=_float("SCIMLEDGER_KEEPALIVE_SECONDS", 75.0),
            statement_timeout_s=_float("SCIMLEDGER_STATEMENT_TIMEOUT_SECONDS", 15.0),
            idle_in_transaction_timeout_s=_float("SCIMLEDGER_IDLE_IN_TRANSACTION_SECONDS", 60.0),
            pool_timeout_s=_float("SCIMLEDGER_POOL_TIMEOUT_SECONDS", 5.0),
            tenant_concurrency=_int("SCIMLEDGER_TENANT_CONCURRENCY", 0) or None,
            tenant_exports=_int("SCIMLEDGER_TENANT_EXPORTS", 2),
            allowed_hosts=_names(os.environ.get("SCIMLEDGER_ALLOWED_HOSTS")),
            token_rotation_grace_s=_int("SCIMLEDGER_TOKEN_GRACE_SECONDS", 24 * 3600),
            oauth_token_ttl_s=_int("SCIMLEDGER_OAUTH_TOKEN_TTL", 3600),
            log_json=None if log_json is None else log_json.lower() in ("1", "true", "yes"),
            run_followers=(os.environ.get("SCIMLEDGER_RUN_FOLLOWERS") or "true").lower()
            in ("1", "true", "yes"),
        )
