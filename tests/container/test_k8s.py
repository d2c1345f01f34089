"""The Kubernetes Deployment (with its ConfigMap and Secret), played for real by `podman
kube play` on a hostPort bound to 127.0.0.1, and stopped while a request is in flight.
(tests/quick/test_k8s_manifests.py validates the manifests.)
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from harness.http import free_port
from harness.images import (
    add_slow_route,
    build_project_image,
    container_state,
    shell,
    slow_request_in_flight,
    wait_for_http,
)
from harness.podman import run_podman
from harness.provisioning import BASE_PYTHON
from harness.render import k8s_manifests, render
from harness.venvs import SECRET


def test_kube_play_runs_the_deployment(
    podman: dict[str, str], copie_session: Any, tmp_path: Path
) -> None:
    """Exercised: the pod template (image, user, read-only root file system, emptyDir
    /tmp, ConfigMap and Secret as environment, WEB_CONCURRENCY from the CPU limit, CPU
    and memory limits) and a graceful `podman kube down`. Not exercised by podman 4.3:
    the probes (curl health checks, which the image lacks and no systemd timer runs),
    preStop hooks and terminationGracePeriodSeconds (it stops with SIGTERM and 10 s),
    the Service, the HPA, the PodDisruptionBudget and the migration Job."""
    env = podman
    project = render(copie_session, with_k8s=True, python_version=BASE_PYTHON)
    add_slow_route(project)
    build = build_project_image(env, project, "k8s")
    name, port = f"cft-{uuid.uuid4().hex[:8]}", free_port()
    tag, container = f"localhost/copier-flask-test:{name}", f"{name}-pod-0-web"
    # The ConfigMap, Deployment and Service for one podman host: a unique name, one
    # replica (a second would want the same hostPort), the local image, a hostPort on
    # 127.0.0.1 (podman has no Service network) and the Secret's name.
    docs = k8s_manifests(project)
    deployment = docs["Deployment"]
    deployment["metadata"]["name"] = name
    deployment["spec"]["replicas"] = 1
    (web,) = deployment["spec"]["template"]["spec"]["containers"]
    web["image"] = tag
    web["ports"][0].update(hostPort=port, hostIP="127.0.0.1")
    for source in web["envFrom"]:
        if "secretRef" in source:
            source["secretRef"]["name"] = f"{name}-secrets"
    played = [docs["ConfigMap"], deployment, docs["Service"]]
    kube_file = tmp_path / "kube.yaml"
    kube_file.write_text(
        yaml.safe_dump_all([{k: v for k, v in doc.items() if k != "_file"} for doc in played])
    )
    # podman 4.3 reads a secretRef from a podman secret holding the Secret's `data` as
    # JSON (its own handling of `kind: Secret` does not round-trip).
    secret_data = {"FLASK_SECRET_KEY": base64.b64encode(SECRET.encode()).decode()}
    pod_log = tmp_path / "pod.log"  # ours: `kube down` removes the container
    run_podman(env, "tag", build.image, tag)
    try:
        run_podman(env, "secret", "create", f"{name}-secrets", "-", input=json.dumps(secret_data))
        run_podman(env, "kube", "play", "--log-opt", f"path={pod_log}", str(kube_file), timeout=120)
        health = wait_for_http(port)
        assert (health.status, health.body) == (200, b'{"status":"ok"}\n')

        # What the manifest asks for holds at run time.
        probe = shell(
            env,
            container,
            "id -u; echo $WEB_CONCURRENCY; touch /tmp/ok && echo tmp-writable;"
            " touch /app/x 2>&1 || true",
        ).splitlines()
        assert probe[0] == "10001", "non-root, the image's UID"
        assert probe[1] == "2", "WEB_CONCURRENCY from the CPU limit (2)"
        assert probe[2] == "tmp-writable"
        assert "Read-only file system" in probe[3]
        limits = "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}"
        inspect = run_podman(env, "inspect", container, "--format", limits).stdout.split()
        assert inspect == ["true", str(256 * 2**20), str(2 * 10**9)]
        assert pod_log.read_text().count("Booting worker") == 2

        # Stopped with a request in flight: gunicorn gets SIGTERM, finishes it and exits
        # 0. podman before 5.1 SIGKILLs a pod's containers on `kube down` (podman issues
        # #19135, #21767; fixed by PR #22398): there the pod is stopped first, the
        # documented workaround. The client may not see the answer (podman tears the
        # network down while gunicorn finishes; Kubernetes keeps it): the log is the evidence.
        with slow_request_in_flight(port, wait=0):
            started = time.monotonic()
            version = run_podman(env, "version", "--format", "{{.Client.Version}}").stdout
            if tuple(int(part) for part in version.strip().split(".")[:2]) < (5, 1):
                run_podman(env, "pod", "stop", "--time", "45", f"{name}-pod-0", timeout=120)
                assert container_state(env, container)[1] == 0
            run_podman(env, "kube", "down", str(kube_file), timeout=120)
            took = time.monotonic() - started
        output = pod_log.read_text()
        assert "Handling signal: term" in output
        # The manifests log JSON (LOG_FORMAT=json): the access line's quotes are escaped.
        assert re.search(r'GET /slow\?seconds=3 HTTP/1.1\\?" 200', output), "request finished"
        assert "Shutting down: Master" in output and "Reason:" not in output
        print(f"FIGURE podman pod stop + kube down, a 3 s request in flight: {took:.1f} s")
    finally:
        run_podman(env, "kube", "down", str(kube_file), check=False, timeout=120)
        run_podman(env, "pod", "rm", "--force", f"{name}-pod-0", check=False, timeout=120)
        run_podman(env, "secret", "rm", f"{name}-secrets", check=False)
        run_podman(env, "untag", build.image, tag, check=False)
