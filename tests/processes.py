"""Running the real `scimledger` command in tests: the CLI and `serve` as subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SCIMLEDGER = [sys.executable, "-m", "service.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(dsn: str | None = None, data_dir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCIMLEDGER_")}
    env["SCIMLEDGER_LOG_JSON"] = "true"
    if dsn:
        env["SCIMLEDGER_DATABASE_URL"] = dsn
    if data_dir:
        env["SCIMLEDGER_DATA_DIR"] = str(data_dir)
    return env


def cli(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*SCIMLEDGER, *args], env=env, capture_output=True, text=True, timeout=60
    )
    if check and result.returncode != 0:
        raise AssertionError(f"scimledger {' '.join(args)} failed: {result.stderr}")
    return result


def wait_http(url: str, timeout: float = 20.0) -> float:
    """Seconds until `url` answers at all (any HTTP status)."""
    started = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return time.monotonic() - started
        except urllib.error.HTTPError:
            return time.monotonic() - started
        except OSError:
            if time.monotonic() - started > timeout:
                raise
            time.sleep(0.05)
