"""The first-start banner of `scimledger serve` (service/server/serve.py): a SCIM URL an IdP can
use (the public URL; without one, what to set; never http://0.0.0.0), the secret only on a
terminal, otherwise in a 0600 file of the data dir whose path alone is logged, and the full
command to issue more tokens. Logs go to stderr, so stdout holds the banner alone.

And /metrics on SCIMLEDGER_METRICS_PORT: its own listener, off the SCIM port.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from service.runtime.config import Settings
from service.server.serve import ISSUE_HINT, first_start_banner
from tests.support import SCIMLEDGER, bearer, env_for, free_port, metric, wait_http

SECRET = "scimledger_example"


def test_the_banner_shows_the_public_url_when_set() -> None:
    text = first_start_banner(Settings(public_url="https://scim.example.com/", host="0.0.0.0"), SECRET, None)
    assert "SCIM base URL:  https://scim.example.com/scim/v2" in text
    assert "0.0.0.0" not in text and SECRET in text and ISSUE_HINT in text
    assert ISSUE_HINT == "scimledger token issue --tenant default --label okta"


def test_without_a_public_url_the_banner_says_to_set_it_and_never_shows_the_wildcard() -> None:
    text = first_start_banner(Settings(host="0.0.0.0", port=8443), None, Path("/var/lib/scimledger/first-token"))
    assert "set SCIMLEDGER_PUBLIC_URL to the https address your IdP reaches" in text
    assert "0.0.0.0" not in text and "http://127.0.0.1:8443/scim/v2" in text
    assert "written to /var/lib/scimledger/first-token (mode 0600)" in text and "scimledger_" not in text


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _stop(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    proc.send_signal(signal.SIGTERM)
    out, errors = proc.communicate(timeout=30)
    assert proc.returncode == 0, errors
    return out or b"", errors or b""


def test_not_on_a_terminal_the_secret_goes_to_a_0600_file_and_logs_only_name_it(dsn: str, tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    env = {**env_for(dsn, data_dir=tmp_path), "SCIMLEDGER_HOST": "0.0.0.0", "SCIMLEDGER_METRICS_PORT": str(metrics_port)}
    proc = subprocess.Popen([*SCIMLEDGER, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        token_file = tmp_path / "first-token"
        secret = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        status, _ = _get(f"http://127.0.0.1:{port}/scim/v2/Users", bearer(secret))
        assert status == 200

        # /metrics: on its own port only; the SCIM port answers 404 for it
        assert _get(f"http://127.0.0.1:{port}/metrics")[0] == 404
        assert _get(f"http://127.0.0.1:{port}/scim/v2/Users")[0] == 401  # no token
        assert _get(f"http://127.0.0.1:{metrics_port}/scim/v2/Users", bearer(secret))[0] == 404
        status, body = _get(f"http://127.0.0.1:{metrics_port}/metrics")
        text = body.decode()
        assert status == 200
        assert metric(text, "scimledger_http_responses_total", **{"class": "2xx"}) >= 1
        assert metric(text, "scimledger_http_responses_total", **{"class": "4xx"}) >= 2
        assert metric(text, "scimledger_auth_failures_total", reason="missing") == 1
        assert 'scimledger_projection_state{projection="audit",state="running"}' in text
    finally:
        out, errors = _stop(proc)
    banner, logs = out.decode(), errors.decode()
    assert f"written to {token_file} (mode 0600)" in banner
    assert "set SCIMLEDGER_PUBLIC_URL" in banner and "0.0.0.0" not in banner and ISSUE_HINT in banner
    assert secret not in banner + logs
    assert not any(line.startswith("{") for line in banner.splitlines())  # no log line on stdout
    saved = [json.loads(line) for line in logs.splitlines() if '"serve.first_token_saved"' in line]
    assert saved and saved[0]["path"] == str(token_file)


def test_on_a_terminal_the_secret_is_shown_once_and_no_file_is_written(dsn: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**env_for(dsn, data_dir=tmp_path), "SCIMLEDGER_PUBLIC_URL": "https://scim.example.com"}
    main, terminal = pty.openpty()
    proc = subprocess.Popen([*SCIMLEDGER, "serve", "--port", str(port)], env=env,
                            stdout=terminal, stderr=subprocess.DEVNULL)
    os.close(terminal)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"Issue more tokens" not in seen and time.monotonic() < deadline:
            if select.select([main], [], [], 1)[0]:
                seen += os.read(main, 4096)
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
    finally:
        _stop(proc)
        os.close(main)
    text = seen.decode()
    assert "SCIM base URL:  https://scim.example.com/scim/v2" in text, text
    assert "Secret token:   scimledger_" in text and "shown only this once" in text
    assert not (tmp_path / "first-token").exists()
