"""The README's tour runs, in order, on a fresh install (issue 16): every fenced block marked
`sh tour` is taken from README.md as it stands and run by bash (`set -euo pipefail`, curl with
`-f`) against a real `scimledger serve` on a random port over a new, empty database, the
`scimledger` of this checkout's virtualenv on PATH. A step that fails fails the test with its
output."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import SCIMLEDGER, env_for, free_port, wait_http

README = Path(__file__).resolve().parents[2] / "README.md"
TOUR_BLOCK = re.compile(r"^```sh tour\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def tour_script(readme: str) -> str:
    """The tour blocks of the README, in order, as one bash script that stops at a failure."""
    blocks = TOUR_BLOCK.findall(readme)
    return "set -euo pipefail\n" + "\n".join(blocks)


def test_the_readme_has_a_tour_that_covers_the_onboarding_the_idp_and_the_audit() -> None:
    script = tour_script(README.read_text())
    for step in ("tenant create acme", "curl -fsS", "user create --tenant default", "audit verify", "asOf=$NOW"):
        assert step in script, step
    assert "2024-" not in script  # as-of dates that a new install cannot answer


def test_the_readme_tour_runs_in_order_on_a_fresh_install(dsn: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**env_for(dsn, data_dir=tmp_path / "var"), "SCIMLEDGER_PORT": str(port),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SCIMLEDGER_LOG_JSON")
    server = subprocess.Popen([*SCIMLEDGER, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        tour = subprocess.run(["bash", "-c", tour_script(README.read_text())], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=180)
    finally:
        server.send_signal(signal.SIGTERM)
        _, server_log = server.communicate(timeout=30)
    assert tour.returncode == 0, f"the tour stopped:\n{tour.stdout}\n{tour.stderr}"
    assert '"userName":"grace@example.com"' in tour.stdout.replace(" ", "")
    assert "user.deactivated" in tour.stdout and (tmp_path / "today.csv").read_text().count("user.") >= 3
    assert server.returncode == 0, server_log
