"""deploy/ is checked here because container tools do not run in CI: every YAML parses, the
image runs as non-root with the `scimledger` console script as entrypoint, the migration job
runs `scimledger migrate`, every SCIMLEDGER_* name exists in service/config.py, and the probes
hit /healthz and /readyz."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
YAML_FILES = sorted([*DEPLOY.glob("*.yaml"), *DEPLOY.glob("k8s/*.yaml")])


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_objects() -> list[dict[str, Any]]:
    return [d for p in DEPLOY.glob("k8s/*.yaml") for d in documents(p)]


def pod_specs() -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in k8s_objects()
            if o["kind"] in ("Deployment", "Job")}


def config_variables() -> set[str]:
    return set(re.findall(r'"(SCIMLEDGER_[A-Z_]+)"', (ROOT / "service" / "config.py").read_text()))


def test_there_are_yaml_files_and_they_all_parse() -> None:
    assert {p.name for p in YAML_FILES} >= {
        "compose.yaml", "configmap.yaml", "deployment.yaml", "service.yaml", "migrate-job.yaml", "rebuild-job.yaml",
    }
    for path in YAML_FILES:
        assert documents(path), path


def test_dockerfile_is_multi_stage_non_root_with_the_console_script_entrypoint() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) >= 2, "multi-stage"
    final = stages[-1]
    users = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the final stage runs as non-root"
    entry = re.search(r"^ENTRYPOINT\s+(\[.*\])", final, re.MULTILINE)
    assert entry and yaml.safe_load(entry.group(1)) == ["scimledger"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "scimledger" in scripts


def test_kubernetes_pods_run_as_non_root() -> None:
    for name, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name


def test_migration_jobs_run_scimledger_migrate() -> None:
    migrate = pod_specs()["scimledger-migrate"]["containers"][0]
    assert migrate["args"] == ["migrate"]
    compose = documents(DEPLOY / "compose.yaml")[0]["services"]
    assert compose["migrate"]["command"] == ["migrate"]
    assert compose["migrate"]["restart"] == "no"
    assert compose["scimledger"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert compose["scimledger"]["deploy"]["replicas"] >= 2
    assert pod_specs()["scimledger-rebuild"]["containers"][0]["args"][:2] == ["projections", "rebuild"]


def test_probes_use_healthz_and_readyz() -> None:
    container = pod_specs()["scimledger"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"][0]["containerPort"] == 8080


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_every_scimledger_variable_exists_in_config(path: Path) -> None:
    names = set(re.findall(r"\b(SCIMLEDGER_[A-Z_]+)\b", path.read_text()))
    assert names <= config_variables(), names - config_variables()


def test_the_service_reads_its_database_url_from_a_secret() -> None:
    container = pod_specs()["scimledger"]["containers"][0]
    sources = {next(iter(s)): next(iter(s.values()))["name"] for s in container["envFrom"]}
    assert sources == {"configMapRef": "scimledger", "secretRef": "scimledger-database"}
    secret = next(o for o in k8s_objects() if o["kind"] == "Secret")
    assert set(secret["stringData"]) == {"SCIMLEDGER_DATABASE_URL"}
