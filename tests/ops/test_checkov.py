"""checkov, a real scanner, over deploy/: the Kubernetes manifests as files and as kustomize
renders them (every kustomization, overlays included), the Dockerfile, and a secrets scan of
every file (compose.yaml included). 0 failed checks; every skip is written next to its resource
with a reason (a `checkov.io/skip<n>: CKV_ID=reason` annotation). Offline: no policy download,
no mapping download, no update check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
FRAMEWORKS = "kubernetes,kustomize,dockerfile,secrets"


# checkov lives in its own virtualenv (make installs it: `make checkov`), because its pins
# (packaging<24, aiohttp<3.15) would otherwise downgrade the service's test environment
CHECKOV_PYTHON = Path(os.environ.get("SCIMLEDGER_CHECKOV_PYTHON", ROOT / ".venv-checkov" / "bin" / "python"))


def checkov(directory: Path, frameworks: str, cwd: Path) -> list[dict[str, Any]]:
    """One report per framework that found something to scan (checkov omits the others)."""
    if not CHECKOV_PYTHON.exists():
        pytest.fail(f"checkov is missing: {CHECKOV_PYTHON} does not exist; `make checkov` installs it")
    env = {
        **os.environ,
        "BC_SKIP_MAPPING": "TRUE",  # no download of the check-id mapping
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE",  # no query for a newer checkov
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.run(
        [str(CHECKOV_PYTHON), "-W", "ignore::SyntaxWarning", "-m", "checkov.main",
         "--directory", str(directory), "--framework", *frameworks.split(","),
         "--skip-download", "--compact", "--output", "json"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode in (0, 1), f"checkov exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    data = json.loads(proc.stdout)
    reports = data if isinstance(data, list) else [data]
    return [r for r in reports if "check_type" in r]


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    return {r["check_type"]: r for r in checkov(DEPLOY, FRAMEWORKS, ROOT)}


def describe(check: dict[str, Any]) -> str:
    lines = check.get("file_line_range") or ["?", "?"]
    return (f"{check['check_id']} {check['file_path']}:{lines[0]}-{lines[1]} "
            f"{check['resource']}: {check['check_name']}")


def test_checkov_reports_no_failed_check(reports: dict[str, dict[str, Any]]) -> None:
    failed = [describe(c) for r in reports.values() for c in r["results"]["failed_checks"]]
    assert not failed, f"{len(failed)} failed checkov check(s):\n" + "\n".join(failed)
    errors = [e for r in reports.values() for e in r["results"].get("parsing_errors", [])]
    assert not errors, f"checkov could not parse: {errors}"


def test_checkov_scanned_the_manifests_the_renders_and_the_dockerfile(
    reports: dict[str, dict[str, Any]],
) -> None:
    expected = {"kubernetes", "dockerfile"}
    if shutil.which("kubectl") or shutil.which("kustomize"):  # checkov renders kustomize with either
        expected.add("kustomize")
    assert expected <= set(reports), f"frameworks reported: {sorted(reports)}"
    for name in expected:
        assert reports[name]["summary"]["passed"] > 0, name
    scanned = {c["file_path"] for r in reports.values() for c in r["results"]["passed_checks"]}
    for path in ("/Dockerfile", "/k8s/base/deployment.yaml", "/k8s/jobs/rebuild-job.yaml"):
        assert any(p.endswith(path) for p in scanned), (path, sorted(scanned))
    if "kustomize" in expected:
        rendered = {c["resource"].split(":")[0] for c in reports["kustomize"]["results"]["passed_checks"]}
        assert "overlay" in rendered, rendered


def test_every_skip_carries_a_reason(reports: dict[str, dict[str, Any]]) -> None:
    skipped = [c for r in reports.values() for c in r["results"]["skipped_checks"]]
    unexplained = [describe(c) for c in skipped
                   if len((c.get("check_result") or {}).get("suppress_comment") or "") < 20
                   or c["check_result"]["suppress_comment"] == "No comment provided"]
    assert not unexplained, "skips without a reason:\n" + "\n".join(unexplained)


def test_the_secrets_scan_reads_compose_yaml(tmp_path: Path) -> None:
    """compose.yaml passes because its password is an obvious dev default behind a variable;
    the same file with a literal password in the URL is caught, so the scan does look at it."""
    text = (DEPLOY / "compose.yaml").read_text()
    assert "${DEV_POSTGRES_PASSWORD:-dev-only-insecure}@postgres" in text
    (tmp_path / "compose.yaml").write_text(
        text.replace("${DEV_POSTGRES_PASSWORD:-dev-only-insecure}@postgres", "Tq7wXv2LmK9pRz4N@postgres"))
    found = checkov(tmp_path, "secrets", tmp_path)
    failed = {(c["check_id"], c["file_path"]) for r in found for c in r["results"]["failed_checks"]}
    assert ("CKV_SECRET_4", "/compose.yaml") in failed, failed
