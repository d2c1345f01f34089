"""What the containers run, read and linted (tests/container/ builds and runs them): the
Dockerfile and .dockerignore (hadolint), the compose files for every variant (the Compose spec,
podman-compose), and the Kubernetes manifests (with_k8s) for each database: valid offline
against the Kubernetes API schemas (kubernetes-validate ships them), and right where schemas
cannot see: probes, the image's UID, grace periods, the kustomization."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.images import podman_compose
from harness.render import RUNNING_PYTHON, jinja_leftovers, k8s_manifests
from harness.tools import run_tool
from harness.venvs import SECRET

# Compose and hadolint read each variant's files.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "sqlite": {"database": "sqlite"},
    "postgresql": {"database": "postgresql", "domain": "shop.example.org"},
    "no-nginx": {"with_nginx": False, "database": "postgresql"},
    "granian": {"server": "granian"},
    "py3.14-shop": {"python_version": "3.14", "package_name": "shop"},
}


def test_dockerfile_lints_clean_in_every_variant_and_dockerignore_shape(rendered: Any) -> None:
    dockerfiles = [str(rendered(**answers) / "Dockerfile") for answers in VARIANTS.values()]
    result = run_tool("hadolint", "--no-color", "--failure-threshold", "warning", *dockerfiles)
    assert result.returncode == 0, result.stdout + result.stderr
    # Not even info-level notes today; keep it that way.
    assert result.stdout.strip() == "", result.stdout

    default_project = rendered()
    text = (default_project / "Dockerfile").read_text()
    # (INSTRUCTION, arguments) per instruction: continuation lines joined, no comments.
    lines = [line.strip() for line in re.sub(r"\\\n(\s*#.*\n)*", " ", text).splitlines()]
    parts = [line.partition(" ") for line in lines if line and not line.startswith("#")]
    steps = [(keyword.upper(), rest.strip()) for keyword, _, rest in parts]
    keywords = [k for k, _ in steps]

    # A slim base pinned to the project's Python, written out where Dependabot
    # reads it, and the same base for both stages (the venv points at its Python).
    base = f"python:{RUNNING_PYTHON}-slim-trixie"
    froms = [rest for k, rest in steps if k == "FROM"]
    assert froms == [f"{base} AS builder", base]
    # No python path is hard-coded: the base decides where its python lives.
    assert not re.search(r"/usr(/local)?/bin/python", text)

    # Dependencies before code, so a code change keeps the dependency layer.
    final = [i for i, k in enumerate(keywords) if k == "FROM"][1]
    sync = steps.index(
        ("RUN", "uv sync --locked --no-dev --group metrics --group sentry --no-install-project")
    )
    lock = steps.index(("COPY", "pyproject.toml uv.lock ./"))
    code = [i for i, (k, r) in enumerate(steps) if k == "COPY" and i > final]
    assert lock < sync < final < min(code)
    # uv comes from PyPI, pinned, before the lock (a lock change does not fetch it again).
    uv = next(i for i, (k, r) in enumerate(steps) if k == "RUN" and '"uv==${UV_VERSION}"' in r)
    assert uv < lock
    # Only what runs reaches the final image.
    copied = " ".join(r for k, r in steps[final:] if k == "COPY")
    assert "tests" not in copied and ". ." not in copied

    # A numeric non-root user (runAsNonRoot can only check a number).
    assert [r for k, r in steps if k == "USER"] == ["${APP_UID}:${APP_GID}"]
    assert ("ARG", "APP_UID=10001") in steps
    env = " ".join(r for k, r in steps if k == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env

    # A health check without curl, an exec-form CMD with the generated config.
    healthcheck = next(r for k, r in steps if k == "HEALTHCHECK")
    assert "urllib.request" in healthcheck and "/healthz" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck
    cmd = next(r for k, r in steps if k == "CMD")
    assert json.loads(cmd) == ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    assert ("EXPOSE", "8000") in steps

    # .dockerignore keeps secrets and clutter out of the build context.
    ignored = (default_project / ".dockerignore").read_text().splitlines()
    patterns = {line.strip() for line in ignored if line.strip() and not line.startswith("#")}
    for pattern in (".env", ".env.*", ".git/", ".venv/", "__pycache__/", "instance/", "*.pem"):
        assert pattern in patterns, pattern
    assert "!.env.example" in patterns


# The server's default time for requests in flight on SIGTERM: its file, and the setting.
GRACEFUL = {
    "gunicorn": ("gunicorn.conf.py", r'GUNICORN_GRACEFUL_TIMEOUT", (\d+)\)'),
    "granian": ("run_granian.py", r'"GRANIAN_WORKERS_KILL_TIMEOUT": "(\d+)"'),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_compose_matches_the_spec_and_is_wired(rendered: Any, name: str) -> None:
    answers = VARIANTS[name]
    project = rendered(**answers)
    database = answers.get("database", "none")
    server = answers.get("server", "gunicorn")
    with_nginx = answers.get("with_nginx", True)
    # The HTTPS override comes with nginx (tests/live/test_watch.py serves it).
    files = ["compose.yaml", *(["compose.https.yaml"] if with_nginx else [])]
    schema = ["--builtin-schema", "vendor.compose-spec", *files]
    result = run_tool("check-jsonschema", *schema, cwd=project, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # As compose sees it: YAML anchors and merge keys resolved.
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    services = compose["services"]
    web = services["web"]

    optional = {"nginx": with_nginx, "migrate": database != "none", "db": database == "postgresql"}
    assert set(services) == {"web", "web-dev"} | {name for name, on in optional.items() if on}

    # The app: settings from .env, production mode whatever .env says, a
    # health check, read-only, and time to finish requests when stopped.
    assert web["env_file"] == ".env"
    assert web["environment"]["FLASK_DEBUG"] == "0"
    assert web["environment"]["FLASK_PROXY_HOPS"] == ("1" if with_nginx else "0")
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert web["read_only"] is True
    grace = re.fullmatch(r"(\d+)s", web["stop_grace_period"])
    assert grace, f"write durations in seconds, like 40s: {web['stop_grace_period']}"
    server_file, setting = GRACEFUL[server]
    assert int(grace[1]) > int(re.search(setting, (project / server_file).read_text())[1])
    assert "command" not in web, "the image's CMD (gunicorn) runs the app"

    # Every published port defaults to loopback.
    for service in services.values():
        for port in service.get("ports", []):
            assert re.search(r"\$\{\w+:-127\.0\.0\.1:\d+\}:\d+$|^127\.0\.0\.1:", port), port

    if with_nginx:
        nginx = services["nginx"]
        assert nginx["depends_on"] == {"web": {"condition": "service_healthy"}}
        assert f"Host: {answers.get('domain', 'example.com')}" in nginx["healthcheck"]["test"]
        assert "ports" not in web, "only nginx is published"
        conf = (project / "deploy/nginx/nginx.conf").read_text()
        for volume in nginx["volumes"]:
            source, target, mode = volume.split(":")
            assert (project / source).exists(), f"{source} is not in the project"
            assert mode == "ro"
            # nginx.conf's header lists what goes where; its includes use it.
            assert target in conf, f"nginx.conf does not expect a mount at {target}"

    if database != "none":
        # Migrations: once, before the app, never in the web workers.
        migrate = services["migrate"]
        assert migrate["command"] == ["flask", "db", "upgrade"]
        assert migrate["healthcheck"] == {"disable": True}
        assert web["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    if database == "postgresql":
        db = services["db"]
        assert db["image"].startswith("postgres:")
        assert "pg_isready" in db["healthcheck"]["test"]
        assert db["volumes"] == ["db-data:/var/lib/postgresql"]
        assert "db-data" in compose["volumes"]
        assert "ports" not in db, "the database is not published"
        for service in ("web", "migrate"):
            assert services[service]["depends_on"]["db"] == {"condition": "service_healthy"}
        assert "@db:5432/" in web["environment"]["DATABASE_URL"]
        assert "${POSTGRES_PASSWORD:?" in (project / "compose.yaml").read_text()
    if database == "sqlite":
        assert web["volumes"] == ["instance:/app/instance"]
        assert services["migrate"]["volumes"] == web["volumes"]

    # Development: a profile, the source mounted, gunicorn reloading.
    dev = services["web-dev"]
    assert dev["profiles"] == ["dev"]
    assert ".:/app" in dev["volumes"]
    if server == "granian":
        assert dev["command"][:2] == ["flask", "run"], "the development server reloads"
    else:
        assert dev["environment"]["GUNICORN_RELOAD"] == "1"
    assert dev["environment"]["FLASK_DEBUG"] == "1"
    assert dev["image"] != web["image"], "the dev image (its own UID) must not replace web's"


def test_podman_compose_reads_every_variant(podman: dict[str, str], rendered: Any) -> None:
    env = {**podman, "POSTGRES_PASSWORD": "p" * 32}  # compose.yaml requires it from .env
    for answers in VARIANTS.values():
        result = podman_compose(env, rendered(**answers), "config", timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        assert yaml.safe_load(result.stdout)["services"]["web"]["image"]


#: The current Kubernetes (kubernetes-validate's default) and the oldest still commonly run.
KUBERNETES_VERSIONS = ("1.37.0", "1.33.0")
PRESTOP_SECONDS = 5


def validate(*files: str, version: str | None = None) -> str:
    versions = ["--kubernetes-version", version] if version else []
    result = run_tool("kubernetes-validate", "--strict", *versions, *files)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("database", ["none", "sqlite", "postgresql"])
def test_manifests_when_asked_with_docker_valid_and_agreeing_with_the_image_and_gunicorn(
    rendered: Any, tmp_path: Path, database: str
) -> None:
    project = rendered(with_k8s=True, database=database)
    assert not (rendered() / "deploy/k8s").exists(), "with_k8s defaults to false"
    # with_k8s is only asked with a Dockerfile; forced on without one, it
    # still renders nothing (the manifests run the image).
    assert not (rendered(with_docker=False, with_k8s=True) / "deploy/k8s").exists()
    # deploy/ is shared with the nginx files: both land in the same folder.
    assert (project / "deploy/nginx/nginx.conf").exists() and (project / "deploy/k8s").is_dir()
    readme = (project / "README.md").read_text()
    section = readme.split("## Kubernetes", 1)[1].split("\n## ", 1)[0]
    assert "ingress" in section.lower() and "FLASK_PROXY_HOPS" in section
    assert "kubectl apply -k deploy/k8s" in section

    assert jinja_leftovers(project, "demo_shop") == []
    files = sorted(str(p) for p in (project / "deploy/k8s").glob("*.yaml"))
    files.remove(str(project / "deploy/k8s/kustomization.yaml"))
    for version in KUBERNETES_VERSIONS:
        checked = validate(*files, version=version)
        assert checked.count(" passed ") == len(files), checked

    k8s = Path(shutil.copytree(project / "deploy/k8s", tmp_path / "k8s"))
    example = (k8s / "secret.env.example").read_text()
    assert "secret.env" in (k8s / ".gitignore").read_text().split()
    (k8s / "secret.env").write_text(
        example.replace("FLASK_SECRET_KEY=", f"FLASK_SECRET_KEY={SECRET}")
    )
    built = run_tool("kubectl", "kustomize", str(k8s))
    assert built.returncode == 0, built.stderr
    built_docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    docs = k8s_manifests(project)
    assert sorted(d["kind"] for d in built_docs) == sorted([*docs, "Secret"])
    # The generated Secret's hashed name reached every reference to it.
    secret = next(d for d in built_docs if d["kind"] == "Secret")["metadata"]["name"]
    assert re.fullmatch(r"demo-shop-secrets-[a-z0-9]{10}", secret)
    assert built.stdout.count(f"name: {secret}") >= 2
    (tmp_path / "built.yaml").write_text(built.stdout)
    validate(str(tmp_path / "built.yaml"))

    deployment, service, settings = docs["Deployment"], docs["Service"], docs["ConfigMap"]["data"]
    pod = deployment["spec"]["template"]["spec"]
    (web,) = pod["containers"]

    # The pod runs as the image's numeric user, on a read-only root file
    # system with /tmp on an emptyDir.
    uid = int(re.search(r"ARG APP_UID=(\d+)", (project / "Dockerfile").read_text())[1])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert web["securityContext"]["readOnlyRootFilesystem"] is True
    assert web["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in web["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    gunicorn = (project / "gunicorn.conf.py").read_text()
    assert 'worker_tmp_dir = "/dev/shm"' in gunicorn, "heartbeats need no writable root"

    # Probes: liveness never touches the database, readiness does if any.
    probes = {k: web[f"{k}Probe"]["httpGet"]["path"] for k in ("liveness", "readiness", "startup")}
    ready = "/readyz" if database != "none" else "/healthz"
    assert probes == {"liveness": "/healthz", "readiness": ready, "startup": "/healthz"}

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
    kustomization = yaml.safe_load((project / "deploy/k8s/kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(d["_file"] for d in docs.values())
