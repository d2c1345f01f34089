"""The Kubernetes manifests (with_k8s): valid, consistent with the image and
gunicorn, and run for real by `podman kube play`.

Quick tests validate every manifest offline against the Kubernetes API
schemas (kubernetes-validate ships them) and check what schemas cannot see:
probes, the image's UID, grace periods, the kustomization. The container test
plays the Deployment (with its ConfigMap and Secret) with podman, on a hostPort
bound to 127.0.0.1, and stops it while a request is in flight. What podman 4.3
does not exercise is listed in test_kube_play_runs_the_deployment.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.containers import BASE_PYTHON, podman_env, run_podman, wait_for_http
from tests.helpers.images import (
    add_slow_route,
    build_project_image,
    container_state,
    require_podman,
)
from tests.helpers.render import jinja_leftovers, render
from tests.helpers.servers import free_port, http_get
from tests.helpers.tools import require_tool

#: The Kubernetes versions the manifests must be valid for: the current one
#: (kubernetes-validate's default) and the oldest still commonly run.
KUBERNETES_VERSIONS = ("1.37.0", "1.33.0")
DATABASES = ("none", "sqlite", "postgresql")
SECRET = "s" * 64
PRESTOP_SECONDS = 5


@pytest.fixture(scope="module", params=DATABASES)
def k8s_project(request: pytest.FixtureRequest, copie_session: Any) -> Path:
    return render(copie_session, with_k8s=True, database=request.param)


def manifests(project: Path) -> dict[str, dict[str, Any]]:
    """kind -> the manifest, for every file in deploy/k8s but the kustomization."""
    found = {}
    for path in sorted((project / "deploy/k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            doc = yaml.safe_load(path.read_text())
            found[doc["kind"]] = doc | {"_file": path.name}
    return found


def database_of(project: Path) -> str:
    return yaml.safe_load((project / ".copier-answers.yml").read_text())["database"]


@pytest.mark.quick
def test_no_manifests_unless_asked(copie: Any) -> None:
    assert not (render(copie) / "deploy/k8s").exists(), "with_k8s defaults to false"
    # with_k8s is only asked with a Dockerfile; forced on without one, it
    # still renders nothing (the manifests run the image).
    project = render(copie, with_docker=False, with_k8s=True)
    assert not (project / "deploy/k8s").exists()
    # deploy/ is shared with the nginx files: both land in the same folder.
    both = render(copie, with_k8s=True)
    assert (both / "deploy/nginx/nginx.conf").exists() and (both / "deploy/k8s").is_dir()


@pytest.mark.quick
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(k8s_project: Path, version: str) -> None:
    validator = require_tool("kubernetes-validate")
    files = sorted(str(p) for p in (k8s_project / "deploy/k8s").glob("*.yaml"))
    files.remove(str(k8s_project / "deploy/k8s/kustomization.yaml"))
    result = subprocess.run(
        [validator, "--strict", "--kubernetes-version", version, *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed ") == len(files), result.stdout


@pytest.mark.quick
def test_kustomize_builds_what_the_schemas_accept(k8s_project: Path, tmp_path: Path) -> None:
    kubectl = require_tool("kubectl")
    k8s = k8s_project / "deploy/k8s"
    example = (k8s / "secret.env.example").read_text()
    assert "secret.env" in (k8s / ".gitignore").read_text().split()
    (k8s / "secret.env").write_text(
        example.replace("FLASK_SECRET_KEY=", f"FLASK_SECRET_KEY={SECRET}")
    )
    try:
        built = subprocess.run(
            [kubectl, "kustomize", str(k8s)], capture_output=True, text=True, timeout=120
        )
    finally:
        (k8s / "secret.env").unlink()
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted([*manifests(k8s_project), "Secret"])
    # The generated Secret's hashed name reached every reference to it.
    secret = next(d for d in docs if d["kind"] == "Secret")["metadata"]["name"]
    assert re.fullmatch(r"demo-shop-secrets-[a-z0-9]{10}", secret)
    assert built.stdout.count(f"name: {secret}") >= 2
    output = tmp_path / "built.yaml"
    output.write_text(built.stdout)
    result = subprocess.run(
        [require_tool("kubernetes-validate"), "--strict", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.quick
def test_manifests_agree_with_the_image_and_gunicorn(k8s_project: Path) -> None:
    assert jinja_leftovers(k8s_project, "demo_shop") == []
    database = database_of(k8s_project)
    docs = manifests(k8s_project)
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


@pytest.mark.quick
def test_readme_says_when_an_ingress_replaces_nginx(copie: Any) -> None:
    readme = (render(copie, with_k8s=True) / "README.md").read_text()
    section = readme.split("## Kubernetes", 1)[1].split("\n## ", 1)[0]
    assert "ingress" in section.lower() and "FLASK_PROXY_HOPS" in section
    assert "kubectl apply -k deploy/k8s" in section


# ------------------------------------------------------------ live, podman --


def podman_version(env: dict[str, str]) -> tuple[int, int]:
    out = run_podman(env, "version", "--format", "{{.Client.Version}}").stdout
    major, minor = out.strip().split(".")[:2]
    return int(major), int(minor)


def kube_play_documents(project: Path, name: str, image: str, port: int) -> list[dict[str, Any]]:
    """The ConfigMap, Deployment and Service, adapted to one podman host.

    Changes, all outside the template's files: a unique name, one replica (a
    second would want the same hostPort), the locally built image, a hostPort
    on 127.0.0.1 (podman has no Service network), and the Secret's name.
    """
    docs = manifests(project)
    deployment = docs["Deployment"]
    deployment["metadata"]["name"] = name
    deployment["spec"]["replicas"] = 1
    (web,) = deployment["spec"]["template"]["spec"]["containers"]
    web["image"] = image
    web["ports"][0].update(hostPort=port, hostIP="127.0.0.1")
    for source in web["envFrom"]:
        if "secretRef" in source:
            source["secretRef"]["name"] = f"{name}-secrets"
    return [
        {k: v for k, v in doc.items() if k != "_file"}
        for doc in (docs["ConfigMap"], deployment, docs["Service"])
    ]


@pytest.mark.container
def test_kube_play_runs_the_deployment(copie_session: Any, tmp_path: Path) -> None:
    """Exercised: the Deployment's pod template (image, user, read-only root
    file system, emptyDir /tmp, ConfigMap and Secret as environment,
    WEB_CONCURRENCY from the CPU limit, CPU and memory limits) and a graceful
    `podman kube down`. Not exercised by podman 4.3: the probes (it turns
    httpGet probes into curl health checks, which the image does not have and
    which no systemd timer runs here), preStop hooks and
    terminationGracePeriodSeconds (it stops with SIGTERM and a 10 s timeout),
    the Service, the HPA, the PodDisruptionBudget and the migration Job; and
    `kube down` alone kills (podman < 5.1), so the pod is stopped first."""
    require_podman()
    env = podman_env(tmp_path / "podman")
    project = render(copie_session, with_k8s=True, python_version=BASE_PYTHON)
    add_slow_route(project)
    build = build_project_image(env, project, "k8s")

    name = f"cft-{uuid.uuid4().hex[:8]}"
    tag = f"localhost/copier-flask-test:{name}"
    port = free_port()
    kube_file = tmp_path / "kube.yaml"
    kube_file.write_text(
        yaml.safe_dump_all(kube_play_documents(project, name, tag, port), sort_keys=False)
    )
    # podman 4.3 reads a secretRef from a podman secret holding the Secret's
    # `data` as JSON (its own handling of `kind: Secret` does not round-trip).
    secret_data = {"FLASK_SECRET_KEY": base64.b64encode(SECRET.encode()).decode()}
    container = f"{name}-pod-0-web"
    pod_log = tmp_path / "pod.log"
    run_podman(env, "tag", build.image, tag)
    try:
        run_podman(env, "secret", "create", f"{name}-secrets", "-", input=json.dumps(secret_data))
        # The pod's log in a file of ours: `kube down` removes the container.
        run_podman(env, "kube", "play", "--log-opt", f"path={pod_log}", str(kube_file), timeout=120)
        status, body = wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
        assert (status, body) == (200, b'{"status":"ok"}\n')

        # What the manifest asks for holds at run time.
        probe = run_podman(
            env,
            "exec",
            container,
            "sh",
            "-c",
            "id -u; echo $WEB_CONCURRENCY; touch /tmp/ok && echo tmp-writable;"
            " touch /app/x 2>&1 || true",
        ).stdout.splitlines()
        assert probe[0] == "10001", "non-root, the image's UID"
        assert probe[1] == "2", "WEB_CONCURRENCY from the CPU limit (2)"
        assert probe[2] == "tmp-writable"
        assert "Read-only file system" in probe[3]
        inspect = run_podman(
            env,
            "inspect",
            container,
            "--format",
            "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
        ).stdout.split()
        assert inspect == ["true", str(256 * 2**20), str(2 * 10**9)]
        assert pod_log.read_text().count("Booting worker") == 2

        # Stopping while a request is in flight: gunicorn gets SIGTERM, finishes
        # the request and exits 0. podman before 5.1 SIGKILLs a pod's
        # containers on `kube down` (podman issues #19135, #21767; fixed by
        # PR #22398), so there the documented workaround stops the pod first.
        # (The client may not see the answer: podman tears the pod's network
        # down while gunicorn still finishes. Kubernetes keeps it until the
        # containers exit; gunicorn's own log is the evidence here.)
        def slow_request() -> None:
            with contextlib.suppress(OSError):
                http_get(port, "/slow?seconds=3", timeout=20)

        client = threading.Thread(target=slow_request, daemon=True)
        client.start()
        time.sleep(1)
        started = time.monotonic()
        if podman_version(env) < (5, 1):
            run_podman(env, "pod", "stop", "--time", "45", f"{name}-pod-0", timeout=120)
            assert container_state(env, container)[1] == 0
        run_podman(env, "kube", "down", str(kube_file), timeout=120)
        took = time.monotonic() - started
        output = pod_log.read_text()
        assert "Handling signal: term" in output
        # The manifests log JSON (LOG_FORMAT=json): the access line's quotes
        # come escaped there.
        finished = re.search(r'GET /slow\?seconds=3 HTTP/1.1\\?" 200', output)
        assert finished, "the request was finished"
        assert "Shutting down: Master" in output and "Reason:" not in output
        print(f"FIGURE podman pod stop + kube down, a 3 s request in flight: {took:.1f} s")
    finally:
        run_podman(env, "kube", "down", str(kube_file), check=False, timeout=120)
        run_podman(env, "pod", "rm", "--force", f"{name}-pod-0", check=False, timeout=120)
        run_podman(env, "secret", "rm", f"{name}-secrets", check=False)
        run_podman(env, "untag", build.image, tag, check=False)
