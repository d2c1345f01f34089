"""The Kubernetes manifests (with_k8s), for each database: valid offline against the
Kubernetes API schemas (kubernetes-validate ships them), and right where schemas cannot see:
probes, the image's UID, grace periods, the kustomization. (tests/container/test_k8s.py
plays the Deployment with podman.)"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.render import jinja_leftovers, k8s_manifests
from harness.tools import run_tool
from harness.venvs import SECRET

#: The current Kubernetes (kubernetes-validate's default) and the oldest still commonly run.
KUBERNETES_VERSIONS = ("1.37.0", "1.33.0")
PRESTOP_SECONDS = 5


@pytest.fixture(scope="module", params=("none", "sqlite", "postgresql"))
def k8s_project(request: pytest.FixtureRequest, rendered: Any) -> Path:
    return rendered(with_k8s=True, database=request.param)


def validate(*files: str, version: str | None = None) -> str:
    versions = ["--kubernetes-version", version] if version else []
    result = run_tool("kubernetes-validate", "--strict", *versions, *files)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_manifests_only_when_asked_with_docker_and_the_readme_section(rendered: Any) -> None:
    assert not (rendered() / "deploy/k8s").exists(), "with_k8s defaults to false"
    # with_k8s is only asked with a Dockerfile; forced on without one, it
    # still renders nothing (the manifests run the image).
    assert not (rendered(with_docker=False, with_k8s=True) / "deploy/k8s").exists()
    # deploy/ is shared with the nginx files: both land in the same folder.
    both = rendered(with_k8s=True)
    assert (both / "deploy/nginx/nginx.conf").exists() and (both / "deploy/k8s").is_dir()
    readme = (both / "README.md").read_text()
    section = readme.split("## Kubernetes", 1)[1].split("\n## ", 1)[0]
    assert "ingress" in section.lower() and "FLASK_PROXY_HOPS" in section
    assert "kubectl apply -k deploy/k8s" in section


def test_manifests_and_what_kustomize_builds_match_the_schemas(
    k8s_project: Path, tmp_path: Path
) -> None:
    files = sorted(str(p) for p in (k8s_project / "deploy/k8s").glob("*.yaml"))
    files.remove(str(k8s_project / "deploy/k8s/kustomization.yaml"))
    for version in KUBERNETES_VERSIONS:
        checked = validate(*files, version=version)
        assert checked.count(" passed ") == len(files), checked

    k8s = Path(shutil.copytree(k8s_project / "deploy/k8s", tmp_path / "k8s"))
    example = (k8s / "secret.env.example").read_text()
    assert "secret.env" in (k8s / ".gitignore").read_text().split()
    (k8s / "secret.env").write_text(
        example.replace("FLASK_SECRET_KEY=", f"FLASK_SECRET_KEY={SECRET}")
    )
    built = run_tool("kubectl", "kustomize", str(k8s))
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted([*k8s_manifests(k8s_project), "Secret"])
    # The generated Secret's hashed name reached every reference to it.
    secret = next(d for d in docs if d["kind"] == "Secret")["metadata"]["name"]
    assert re.fullmatch(r"demo-shop-secrets-[a-z0-9]{10}", secret)
    assert built.stdout.count(f"name: {secret}") >= 2
    (tmp_path / "built.yaml").write_text(built.stdout)
    validate(str(tmp_path / "built.yaml"))


def test_manifests_agree_with_the_image_and_gunicorn(k8s_project: Path) -> None:
    assert jinja_leftovers(k8s_project, "demo_shop") == []
    database = yaml.safe_load((k8s_project / ".copier-answers.yml").read_text())["database"]
    docs = k8s_manifests(k8s_project)
    deployment, service, config = docs["Deployment"], docs["Service"], docs["ConfigMap"]
    pod = deployment["spec"]["template"]["spec"]
    (web,) = pod["containers"]
    settings = config["data"]

    # The pod runs as the image's numeric user, on a read-only root file
    # system with /tmp on an emptyDir.
    dockerfile = (k8s_project / "Dockerfile").read_text()
    uid = int(re.search(r"ARG APP_UID=(\d+)", dockerfile)[1])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert web["securityContext"]["readOnlyRootFilesystem"] is True
    assert web["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in web["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    gunicorn = (k8s_project / "gunicorn.conf.py").read_text()
    assert 'worker_tmp_dir = "/dev/shm"' in gunicorn, "heartbeats need no writable root"

    # Probes: liveness never touches the database, readiness does if any.
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ready = "/readyz" if database != "none" else "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == ready
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"

    # Stopping: preStop pause + gunicorn's graceful timeout < the grace period.
    assert web["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(PRESTOP_SECONDS)]
    graceful = int(settings["GUNICORN_GRACEFUL_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > graceful + PRESTOP_SECONDS

    # gunicorn sizing: one worker per CPU of the limit, which is gunicorn's
    # own default of at least two.
    env = {e["name"]: e for e in web.get("env", [])}
    ref = env["WEB_CONCURRENCY"]["valueFrom"]["resourceFieldRef"]
    assert (ref["resource"], ref["divisor"]) == ("limits.cpu", "1")
    assert int(web["resources"]["limits"]["cpu"]) == 2
    assert web["resources"]["requests"]["memory"] and web["resources"]["limits"]["memory"]

    # Secrets stay out of the ConfigMap; both reach the pod.
    assert not any("SECRET" in key or "DATABASE_URL" in key for key in settings)
    sources = {next(iter(s)) for s in web["envFrom"]}
    assert sources == {"configMapRef", "secretRef"}
    example = (k8s_project / "deploy/k8s/secret.env.example").read_text()
    assert "FLASK_SECRET_KEY=" in example
    assert ("DATABASE_URL=" in example) == (database == "postgresql")
    assert settings["FLASK_PROXY_HOPS"] == "1", "an ingress controller is one proxy"

    # The Service reaches these pods on the named port.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == web["ports"][0]["name"]

    # Scaling: SQLite is one file on one volume, so one pod; otherwise an HPA.
    if database == "sqlite":
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        assert "HorizontalPodAutoscaler" not in docs
        assert volumes[mounts["/app/instance"]]["persistentVolumeClaim"]
        (init,) = pod["initContainers"]
        assert init["command"] == ["flask", "db", "upgrade"]
    else:
        hpa = docs["HorizontalPodAutoscaler"]
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] >= 2
        assert "initContainers" not in pod
    if database == "postgresql":
        job = docs["Job"]["spec"]["template"]["spec"]
        assert job["containers"][0]["command"] == ["flask", "db", "upgrade"]
        assert job["restartPolicy"] == "Never"
        assert job["securityContext"] == {
            k: v for k, v in pod["securityContext"].items() if k != "fsGroup"
        }

    # The kustomization lists every manifest, and only those.
    kustomization = yaml.safe_load((k8s_project / "deploy/k8s/kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(d["_file"] for d in docs.values())
