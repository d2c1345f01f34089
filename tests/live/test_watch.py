"""Watching the generated app (metrics, error reports) and HTTPS in compose.

Each test serves a copy of a rendered project with its own launcher
(gunicorn.conf.py or run_granian.py), on loopback, in production mode, serving
harness/apps/watch_wsgi.py: the app plus a route that raises, one that tells
which optional modules its worker has loaded, and a CSRF-protected form.
Error reports go to a stand-in for Sentry's ingest endpoint: a small HTTP
server on 127.0.0.1 that keeps every envelope it is sent. HTTPS runs the
compose stack's nginx config (serve(..., container=True)), with the mounts
compose.https.yaml makes and a self-signed certificate, and headless
Chromium drives the form through it.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.browser import chromium
from harness.chaos import copy_with_apps
from harness.http import LOOPBACK, free_port, http_get, https_get
from harness.nginx import Site, gixy_issues, nginx_test, self_signed_cert
from harness.processes import start, stop
from harness.render import render
from harness.serving import Served, serve
from harness.tools import require_tool
from harness.venvs import production_env, project_venv
from harness.waiting import eventually

APP_FILE, APP = "watch_wsgi.py", "watch_wsgi:app"  # harness/apps/watch_wsgi.py


def without_proxies(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the machine's proxy settings: nothing may leave loopback,
    and no proxy may stand between the client and the server it tests."""
    return {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}


def app_env(project: Path, **settings: str) -> dict[str, str]:
    """Production with 2 workers and `settings`."""
    return without_proxies(production_env(project_venv(project), WEB_CONCURRENCY="2", **settings))


@pytest.fixture(scope="module", params=["gunicorn", "granian"])
def project(request: pytest.FixtureRequest, copie_session: Any, tmp_path_factory: Any) -> Path:
    """A project copy with watch_wsgi.py, for each server option."""
    work = tmp_path_factory.mktemp(f"watch-{request.param}")
    return copy_with_apps(render(copie_session, server=request.param), work / "app", APP_FILE)


def serve_app(project: Path, work: Path, **settings: str) -> AbstractContextManager[Served]:
    return serve(project, work, app_env(project, **settings), app=APP)


# -- Metrics ------------------------------------------------------------------------

SERIES = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$", re.MULTILINE)


def scrape(port: int) -> dict[tuple[str, str], float]:
    """/metrics as {(name, labels): value}."""
    answer = http_get(port, "/metrics")
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return {(name, labels): float(value) for name, labels, value in SERIES.findall(answer.text)}


def worker_pids(folder: Path) -> set[int]:
    """The processes that wrote counts, from prometheus_client's file names."""
    return {int(m[1]) for p in folder.glob("*.db") if (m := re.search(r"_(\d+)\.db$", p.name))}


def spread(port: int, paths: list[str]) -> list[int]:
    """GET every path, 8 at a time, each on a new connection; the statuses."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda path: http_get(port, path).status, paths))


def test_one_scrape_counts_every_request_served_by_several_workers(
    project: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    settings = {"FLASK_METRICS": "true", "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    # An earlier run leaves its counts in the folder: the next start must drop them.
    with serve_app(project, tmp_path / "first", **settings) as first:
        assert set(spread(first.port, ["/"] * 10)) == {200}
    assert worker_pids(folder), "the first run wrote no counts"

    with serve_app(project, tmp_path / "second", **settings) as served:
        sent: list[str] = []

        # Batches until two workers or more have answered (the kernel picks
        # which one accepts each connection).
        def two_workers_answered() -> set[int] | None:
            batch = [f"/no/such/page/{len(sent) + i}" if i % 2 else "/" for i in range(40)]
            statuses = spread(served.port, batch)
            sent.extend(batch)
            assert statuses == [404 if "/no/" in p else 200 for p in batch]
            pids = worker_pids(folder)
            return pids if len(pids) >= 2 else None

        pids = eventually(two_workers_answered, 30, what="requests answered by 2 workers")
        metrics = scrape(served.port)

    pages = sent.count("/")
    misses = len(sent) - pages
    index = ("http_requests_total", 'method="GET",route="/",status="200"')
    unmatched = ("http_requests_total", 'method="GET",route="(no route)",status="404"')
    timed = ("http_request_duration_seconds_count", index[1])
    print(
        f"{served.label}: {len(sent)} requests ({pages} to /, {misses} to made-up paths) over "
        f"worker PIDs {sorted(pids)}; one scrape counts {metrics.get(index)} for / and "
        f"{metrics.get(unmatched)} for no route"
    )
    assert served.pid not in pids, "counts come from the workers, not the main process"
    assert metrics[index] == pages and metrics[timed] == pages
    assert metrics[unmatched] == misses
    # One series per route, never one per path a client made up.
    assert not [labels for _, labels in metrics if "/no/such" in labels]


def test_metrics_off_load_nothing_and_serve_no_metrics(project: Path, tmp_path: Path) -> None:
    with serve_app(project, tmp_path) as served:
        assert served.get("/metrics").status == 404
        assert json.loads(served.get("/_probe/loaded").body) == {"loaded": []}


# -- Error reports ------------------------------------------------------------------


class Ingest(ThreadingHTTPServer):
    """A stand-in for Sentry's ingest endpoint: it keeps what it is sent."""

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), IngestHandler)
        self.envelopes: list[tuple[str, bytes]] = []

    def events(self) -> list[dict[str, Any]]:
        """Every event item of every envelope (one JSON document per line)."""
        found = []
        for _, body in list(self.envelopes):
            for line in body.splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict) and "exception" in item:
                    found.append(item)
        return found


class IngestHandler(BaseHTTPRequestHandler):
    server: Ingest

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.envelopes.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def ingest() -> Iterator[Ingest]:
    server = Ingest()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_500_reaches_sentry_tagged_with_the_request_id(
    project: Path, tmp_path: Path, ingest: Ingest
) -> None:
    dsn = f"http://publickey@{LOOPBACK}:{ingest.server_address[1]}/1"
    rid = "sentry-probe-4c7d21a9"
    with serve_app(project, tmp_path, SENTRY_DSN=dsn) as served:
        assert served.get("/_probe/crash", {"X-Request-ID": rid}).status == 500
        events = eventually(ingest.events, 15, what="an event at the stand-in")
        assert json.loads(served.get("/_probe/loaded").body) == {"loaded": ["sentry_sdk"]}
    assert {path for path, _ in ingest.envelopes} == {"/api/1/envelope/"}
    [event] = events
    assert event["tags"]["request_id"] == rid
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert "a bug worth a report" in exception["value"]


def test_without_a_dsn_nothing_is_sent_or_loaded(
    project: Path, tmp_path: Path, ingest: Ingest
) -> None:
    with serve_app(project, tmp_path) as served:
        assert served.get("/_probe/crash").status == 500
        assert json.loads(served.get("/_probe/loaded").body) == {"loaded": []}
        time.sleep(2)  # what a report would have taken to arrive (nothing to wait for)
    assert ingest.envelopes == []


# -- HTTPS in compose ---------------------------------------------------------------

SLUG, DOMAIN = "demo-shop", "shop.example.com"


def default(value: str) -> str:
    """A compose value with its ${VARIABLE:-default}s filled in, as with an empty .env."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def certbot_layout(directory: Path, cert: Path, key: Path) -> Path:
    """A folder laid out as certbot's /etc/letsencrypt, holding `cert` and `key`."""
    live = directory / "live" / DOMAIN
    live.mkdir(parents=True)
    shutil.copy(cert, live / "fullchain.pem")
    shutil.copy(key, live / "privkey.pem")
    return directory


def compose_https(certificates: Path) -> Callable[[Site], None]:
    """serve's `adjust_site`: do what compose.https.yaml's volumes do for the nginx
    container, in the localized copy (include/https.conf where site.conf looks for
    it, `certificates`, the folder TLS_CERTIFICATES names, at /etc/letsencrypt),
    then check the result with `nginx -t`."""

    def mount(site: Site) -> None:
        compose = yaml.safe_load((site.root / "compose.https.yaml").read_text())
        nginx = compose["services"]["nginx"]
        assert [default(p).rsplit(":", 1)[1] for p in nginx["ports"]] == ["443"]
        mounts = {}
        for volume in nginx["volumes"]:
            source, target, mode = default(volume).split(":")
            assert mode == "ro", volume
            mounts[target] = source
        assert mounts.pop("/etc/letsencrypt") == "/etc/letsencrypt", "certbot's folder by default"
        # https.conf, at the path site.conf includes (which localize moved to the prefix).
        [(target, source)] = mounts.items()
        assert target == f"/etc/nginx/{SLUG}-https.conf"
        text = (site.root / source).read_text().replace("/etc/letsencrypt", str(certificates))
        (site.prefix / f"{SLUG}-https.conf").write_text(text)
        checked = nginx_test(site)
        assert checked.returncode == 0, checked.stderr

    return mount


def serve_compose_https(
    project: Path, work: Path, certificates: Path, app: str | None = None, **settings: str
) -> AbstractContextManager[Served]:
    """The compose stack's nginx (deploy/nginx/nginx.conf) with compose.https.yaml's
    mounts and `certificates`, in front of the project's server."""
    return serve(
        project,
        work,
        app_env(project, **settings),
        app=app,
        behind_nginx=True,
        container=True,
        adjust_site=compose_https(certificates),
    )


@pytest.fixture(scope="module")
def https_stack(copie_session: Any, tmp_path_factory: Any) -> Iterator[tuple[Served, Path]]:
    """The compose stack over HTTPS with a self-signed certificate (and that
    certificate); metrics on, to see that nginx keeps them in."""
    work = tmp_path_factory.mktemp("https")
    project = copy_with_apps(render(copie_session, domain=DOMAIN), work / "project", APP_FILE)
    cert, key = self_signed_cert(work, DOMAIN)
    certificates = certbot_layout(work / "tls", cert, key)
    stack = serve_compose_https(project, work / "stack", certificates, APP, FLASK_METRICS="true")
    with stack as served:
        assert served.site is not None
        assert gixy_issues(served.site.main_conf) == [], "gixy on the HTTPS config"
        yield served, cert


def test_https_in_compose_redirects_and_sends_hsts_only_over_https(
    https_stack: tuple[Served, Path],
) -> None:
    served, cert = https_stack
    assert served.site is not None and served.socket is not None
    plain = served.get("/healthz?x=1")
    assert (plain.status, plain.headers["location"]) == (301, f"https://{DOMAIN}/healthz?x=1")
    assert "strict-transport-security" not in plain.headers
    secure = https_get(served.site.tls_port, "/healthz", DOMAIN, cert)
    assert (secure.status, json.loads(secure.body)) == (200, {"status": "ok"})
    assert secure.headers["strict-transport-security"].startswith("max-age=")
    # Metrics: the app's own listener serves them; through the site nginx itself
    # answers 404 (no request id: the app never saw it).
    assert http_get(served.socket, "/metrics").status == 200
    metrics = https_get(served.site.tls_port, "/metrics", DOMAIN, cert)
    assert metrics.status == 404 and "x-request-id" not in metrics.headers


@pytest.fixture(scope="module")
def browser(https_stack: tuple[Served, Path]) -> Iterator[Any]:
    site = https_stack[0].site
    assert site is not None
    # The browser asks for https://DOMAIN/ on the standard ports, as on a real
    # server; the resolver rules send those connections to this test's nginx.
    rules = f"MAP {DOMAIN}:443 {LOOPBACK}:{site.tls_port}, MAP {DOMAIN}:80 {LOOPBACK}:{site.port}"
    # The certificate is the test's own, self-signed.
    with chromium(f"--host-resolver-rules={rules}", "--ignore-certificate-errors") as driver:
        yield driver


def test_the_secure_session_and_a_csrf_form_work_over_https_in_chromium(browser: Any) -> None:
    browser.get(f"http://{DOMAIN}/_probe/form")
    assert browser.current_url == f"https://{DOMAIN}/_probe/form"
    browser.find_element("id", "name").send_keys("Ada")
    browser.find_element("id", "send").click()
    # The POST passed the CSRF check (the token's session cookie came back)
    # and what it saved came back on the next page, from the session.
    saved = eventually(
        lambda: browser.find_element("id", "saved").text or None, 10, what="the saved name"
    )
    assert saved == "Ada"
    [session] = [c for c in browser.get_cookies() if c["name"] == "session"]
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Lax"


def certbot_from_pebble(work: Path) -> tuple[Path, Path]:
    """certbot's real flow, offline: pebble (Let's Encrypt's test server) on
    loopback, told to pass every challenge, issues DOMAIN's certificate into a
    folder of certbot's own. (The folder, and the root that signed the chain.)"""
    pebble, certbot = require_tool("pebble"), require_tool("certbot")
    # pebble's own HTTPS listener: a certificate for the address 127.0.0.1.
    listener_cert, listener_key = work / "pebble.crt", work / "pebble.key"
    subprocess.run(
        [require_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(listener_key), "-out", str(listener_cert), "-subj", f"/CN={LOOPBACK}",
         "-addext", f"subjectAltName=IP:{LOOPBACK}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    directory, management = free_port(), free_port()
    config = {
        "listenAddress": f"{LOOPBACK}:{directory}",
        "managementListenAddress": f"{LOOPBACK}:{management}",
        "certificate": str(listener_cert),
        "privateKey": str(listener_key),
        "httpPort": free_port(),
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }
    (work / "pebble.json").write_text(json.dumps({"pebble": config}))
    # No proxy between certbot and pebble; pebble skips validating (nothing
    # outside could reach this machine) and never refuses a nonce on purpose.
    env = without_proxies(os.environ)
    env |= {"PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    server = start([pebble, "-config", str(work / "pebble.json")], work, env, work / "pebble.log")
    try:

        def root_served() -> bytes:
            server.assert_alive()
            return https_get(management, "/roots/0", LOOPBACK, listener_cert).body

        root = work / "pebble-root.pem"
        root.write_bytes(eventually(root_served, 15, what="pebble's root certificate"))
        letsencrypt = work / "letsencrypt"
        issued = subprocess.run(
            [certbot, "certonly", "--standalone", "--non-interactive", "--agree-tos",
             "--register-unsafely-without-email", "--server",
             f"https://{LOOPBACK}:{directory}/dir", "-d", DOMAIN,
             "--http-01-address", LOOPBACK, "--http-01-port", str(free_port()),
             "--config-dir", str(letsencrypt), "--work-dir", str(work / "certbot-work"),
             "--logs-dir", str(work / "certbot-logs")],
            env=env | {"REQUESTS_CA_BUNDLE": str(listener_cert)},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert issued.returncode == 0, issued.stdout + issued.stderr + server.output()
    finally:
        stop(server)
    # certbot's live/ holds links into archive/: why compose mounts the whole folder.
    assert (letsencrypt / "live" / DOMAIN / "fullchain.pem").is_symlink()
    return letsencrypt, root


def test_a_certificate_from_certbot_serves_with_compose_https(
    copie_session: Any, tmp_path: Path
) -> None:
    """The README's path to Let's Encrypt, with pebble standing in for it: certbot's
    folder as compose.https.yaml mounts it (TLS_CERTIFICATES), served by nginx."""
    letsencrypt, root = certbot_from_pebble(tmp_path)
    project = render(copie_session, domain=DOMAIN)
    with serve_compose_https(project, tmp_path / "stack", letsencrypt) as served:
        assert served.site is not None
        # Verified against pebble's root, for DOMAIN: the chain certbot saved.
        secure = https_get(served.site.tls_port, "/healthz", DOMAIN, root)
    assert (secure.status, json.loads(secure.body)) == (200, {"status": "ok"})
    assert secure.headers["strict-transport-security"].startswith("max-age=")
