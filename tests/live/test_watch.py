"""Watching the generated app (metrics, error reports) and HTTPS in compose.

Each test serves a copy of a rendered project with its own launcher
(gunicorn.conf.py or run_granian.py), on loopback, in production mode, with a
test-only entry point (probe_wsgi.py) that adds a route that raises, one that
tells which optional modules its worker has loaded, and a CSRF-protected form.
Error reports go to a stand-in for Sentry's ingest endpoint: a small HTTP
server on 127.0.0.1 that keeps every envelope it is sent. HTTPS runs the
compose stack's nginx config directly (tests/helpers/nginx.py), with the
mounts compose.https.yaml makes and a self-signed certificate, and headless
Chromium drives the form through it.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.helpers.nginx import (
    Site,
    gixy_issues,
    localize,
    nginx_test,
    running_nginx,
    self_signed_cert,
)
from tests.helpers.project_env import project_environment, project_venv
from tests.helpers.render import render
from tests.helpers.servers import LOOPBACK, free_port, http_get, running, start, stop
from tests.helpers.stack import gunicorn_stack, project_env
from tests.helpers.tools import check_jsonschema, require_tool, skip_or_fail

SECRET = "s" * 64
PROBE = """\
import sys

from flask import redirect, render_template_string, request, session, url_for

from wsgi import app


@app.get("/_probe/crash")
def crash():
    raise RuntimeError("probe: a bug worth a report")


@app.get("/_probe/loaded")
def loaded():
    optional = ("prometheus_client", "sentry_sdk")
    return {"loaded": [name for name in optional if name in sys.modules]}


# A form as a project's own would be: the session's CSRF token in a hidden
# field, and what it saves kept in the session.
FORM = '''<!doctype html><title>Form</title>
<p id="saved">{{ session.get("name", "") }}</p>
<form method="post">
  <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
  <input name="name" id="name"><button id="send">Send</button>
</form>'''


@app.route("/_probe/form", methods=["GET", "POST"])
def form():
    if request.method == "POST":
        session["name"] = request.form["name"]
        return redirect(url_for("form"))
    return render_template_string(FORM)
"""
LAUNCH = {
    "gunicorn": ["gunicorn", "-c", "gunicorn.conf.py", "probe_wsgi:app"],
    "granian": ["python", "run_granian.py", "probe_wsgi:app"],
}
T = TypeVar("T")


def eventually(check: Callable[[], T | None], what: str, deadline: float = 15) -> T:
    """The first true result of `check`, polled until `deadline` seconds pass."""
    end = time.monotonic() + deadline
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < end, f"not within {deadline}s: {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module", params=["gunicorn", "granian"])
def served(request: pytest.FixtureRequest, copie_session: Any, tmp_path_factory: Any) -> Any:
    """(server, project copy with the probe, venv bin/) for each server option."""
    server = request.param
    copy = tmp_path_factory.mktemp(f"watch-{server}") / "project"
    shutil.copytree(render(copie_session, server=server), copy)
    (copy / "probe_wsgi.py").write_text(PROBE)
    return server, copy, project_venv(copy)


def serve(served: Any, log: Path, **settings: str) -> tuple[Any, int]:
    """A running context for the project with 2 workers and `settings`, and its port."""
    server, project, bindir = served
    port = free_port()
    env = project_environment(
        bindir,
        FLASK_SECRET_KEY=SECRET,
        PORT=str(port),
        HOST=LOOPBACK,
        WEB_CONCURRENCY="2",
        **settings,
    )
    # Nothing may leave loopback, and no proxy may stand between the app and
    # the stand-in: drop the machine's proxy settings for the app.
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    return running(LAUNCH[server], project, env, log, port), port


# -- Metrics ------------------------------------------------------------------------

SERIES = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$", re.MULTILINE)


def scrape(port: int) -> dict[tuple[str, str], float]:
    """/metrics as {(name, labels): value}."""
    answer = http_get(port, "/metrics")
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"].startswith("text/plain; version=")
    text = answer.body.decode()
    return {(name, labels): float(value) for name, labels, value in SERIES.findall(text)}


def worker_pids(folder: Path) -> set[int]:
    """The processes that wrote counts, from prometheus_client's file names."""
    return {int(m[1]) for p in folder.glob("*.db") if (m := re.search(r"_(\d+)\.db$", p.name))}


def spread(port: int, paths: list[str]) -> list[int]:
    """GET every path, 8 at a time, each on a new connection; the statuses."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda path: http_get(port, path).status, paths))


@pytest.mark.boot
def test_one_scrape_counts_every_request_served_by_several_workers(
    served: Any, tmp_path: Path
) -> None:
    server = served[0]
    folder = tmp_path / "metrics"
    folder.mkdir()
    settings = {"FLASK_METRICS": "true", "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    # An earlier run leaves its counts in the folder: the next start must drop them.
    context, port = serve(served, tmp_path / "first.log", **settings)
    with context:
        assert set(spread(port, ["/"] * 10)) == {200}
    assert worker_pids(folder), "the first run wrote no counts"

    context, port = serve(served, tmp_path / "second.log", **settings)
    with context as running_server:
        sent: list[str] = []

        # Batches until two workers or more have answered (the kernel picks
        # which one accepts each connection).
        def two_workers_answered() -> set[int] | None:
            batch = [f"/no/such/page/{len(sent) + i}" if i % 2 else "/" for i in range(40)]
            statuses = spread(port, batch)
            sent.extend(batch)
            assert statuses == [404 if "/no/" in p else 200 for p in batch]
            pids = worker_pids(folder)
            return pids if len(pids) >= 2 else None

        pids = eventually(two_workers_answered, "requests answered by 2 workers", deadline=30)
        metrics = scrape(port)

    pages = sent.count("/")
    misses = len(sent) - pages
    index = ("http_requests_total", 'method="GET",route="/",status="200"')
    unmatched = ("http_requests_total", 'method="GET",route="(no route)",status="404"')
    timed = ("http_request_duration_seconds_count", index[1])
    print(
        f"{server}: {len(sent)} requests ({pages} to /, {misses} to made-up paths) over "
        f"worker PIDs {sorted(pids)}; one scrape counts {metrics.get(index)} for / and "
        f"{metrics.get(unmatched)} for no route"
    )
    assert running_server.pid not in pids, "counts come from the workers, not the main process"
    assert metrics[index] == pages and metrics[timed] == pages
    assert metrics[unmatched] == misses
    # One series per route, never one per path a client made up.
    assert not [labels for _, labels in metrics if "/no/such" in labels]


@pytest.mark.boot
def test_metrics_off_load_nothing_and_serve_no_metrics(served: Any, tmp_path: Path) -> None:
    context, port = serve(served, tmp_path / "server.log")
    with context:
        assert http_get(port, "/metrics").status == 404
        assert json.loads(http_get(port, "/_probe/loaded").body) == {"loaded": []}


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


@pytest.mark.boot
def test_a_500_reaches_sentry_tagged_with_the_request_id(
    served: Any, tmp_path: Path, ingest: Ingest
) -> None:
    dsn = f"http://publickey@{LOOPBACK}:{ingest.server_address[1]}/1"
    rid = "sentry-probe-4c7d21a9"
    context, port = serve(served, tmp_path / "server.log", SENTRY_DSN=dsn)
    with context:
        crash = http_get(port, "/_probe/crash", {"X-Request-ID": rid})
        assert crash.status == 500
        events = eventually(ingest.events, "an event at the stand-in")
        assert json.loads(http_get(port, "/_probe/loaded").body) == {"loaded": ["sentry_sdk"]}
    assert {path for path, _ in ingest.envelopes} == {"/api/1/envelope/"}
    [event] = events
    assert event["tags"]["request_id"] == rid
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert "a bug worth a report" in exception["value"]


@pytest.mark.boot
def test_without_a_dsn_nothing_is_sent_or_loaded(
    served: Any, tmp_path: Path, ingest: Ingest
) -> None:
    context, port = serve(served, tmp_path / "server.log")
    with context:
        assert http_get(port, "/_probe/crash").status == 500
        assert json.loads(http_get(port, "/_probe/loaded").body) == {"loaded": []}
        time.sleep(2)  # what a report would have taken to arrive
    assert ingest.envelopes == []


# -- HTTPS in compose ---------------------------------------------------------------

SLUG, DOMAIN = "demo-shop", "shop.example.com"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


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


def mount_as_compose_https_does(project: Path, site: Site, certificates: Path) -> None:
    """Do what compose.https.yaml's volumes do for the nginx container, in the
    localized copy: include/https.conf where site.conf looks for it, and
    `certificates` (the folder TLS_CERTIFICATES names) at /etc/letsencrypt."""
    nginx = yaml.safe_load((project / "compose.https.yaml").read_text())["services"]["nginx"]
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


@pytest.mark.quick
def test_compose_https_matches_the_compose_spec(default_project: Path) -> None:
    result = check_jsonschema(default_project, "vendor.compose-spec", "compose.https.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def https_get(port: int, path: str, cafile: Path, headers: dict[str, str] | None = None) -> Any:
    """GET over TLS to 127.0.0.1:`port` for DOMAIN (SNI and Host)."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
            conn = http.client.HTTPConnection(DOMAIN)
            conn.sock = tls  # http.client over the socket opened here
            conn.request("GET", path, headers={"Host": DOMAIN, **(headers or {})})
            answer = conn.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


@pytest.fixture(scope="module")
def https_stack(copie_session: Any, tmp_path_factory: Any) -> Iterator[tuple[Site, Path, int]]:
    """The compose stack's nginx (deploy/nginx/nginx.conf) with compose.https.yaml's
    mounts and a self-signed certificate, in front of gunicorn over TCP, as the
    `web` service is reached; metrics on, to see that nginx keeps them in."""
    work = tmp_path_factory.mktemp("https")
    project = work / "project"
    shutil.copytree(render(copie_session, domain=DOMAIN), project)
    (project / "probe_wsgi.py").write_text(PROBE)
    bindir = project_venv(project)
    env = project_env(bindir, WEB_CONCURRENCY="2", FLASK_METRICS="true")
    with gunicorn_stack(LAUNCH["gunicorn"], project, env, work / "logs") as app:
        site = localize(project, work, SLUG, port=free_port(), upstream=f"{LOOPBACK}:{app.port}",
                        container=True)  # fmt: skip
        cert, key = self_signed_cert(work, DOMAIN)
        mount_as_compose_https_does(project, site, certbot_layout(work / "tls", cert, key))
        checked = nginx_test(site)
        assert checked.returncode == 0, checked.stderr
        assert gixy_issues(site.main_conf) == [], "gixy on the HTTPS config"
        with running_nginx(site, DOMAIN):
            yield site, cert, app.port


@pytest.mark.nginx
def test_https_in_compose_redirects_and_sends_hsts_only_over_https(
    https_stack: tuple[Site, Path, int],
) -> None:
    site, cert, app_port = https_stack
    plain = http_get(site.port, "/healthz?x=1", {"Host": DOMAIN})
    assert (plain.status, plain.headers["location"]) == (301, f"https://{DOMAIN}/healthz?x=1")
    assert "strict-transport-security" not in plain.headers
    status, headers, body = https_get(site.tls_port, "/healthz", cert)
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert headers["strict-transport-security"].startswith("max-age=")
    # Metrics: the app's port serves them; through the site nginx itself
    # answers 404 (no request id: the app never saw it).
    assert http_get(app_port, "/metrics").status == 200
    status, headers, _ = https_get(site.tls_port, "/metrics", cert)
    assert status == 404 and "x-request-id" not in headers


@pytest.fixture(scope="module")
def browser(https_stack: tuple[Site, Path, int]) -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        skip_or_fail("chromium and chromium-driver are not installed (apt-get install ...)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    site = https_stack[0]
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # The browser asks for https://DOMAIN/ on the standard ports, as on a real
    # server; the resolver rules send those connections to this test's nginx.
    rules = f"MAP {DOMAIN}:443 {LOOPBACK}:{site.tls_port}, MAP {DOMAIN}:80 {LOOPBACK}:{site.port}"
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root
        f"--host-resolver-rules={rules}",
        "--no-proxy-server",
        "--ignore-certificate-errors",  # the test's self-signed certificate
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.nginx
def test_the_secure_session_and_a_csrf_form_work_over_https_in_chromium(browser: Any) -> None:
    browser.get(f"http://{DOMAIN}/_probe/form")
    assert browser.current_url == f"https://{DOMAIN}/_probe/form"
    browser.find_element("id", "name").send_keys("Ada")
    browser.find_element("id", "send").click()
    # The POST passed the CSRF check (the token's session cookie came back)
    # and what it saved came back on the next page, from the session.
    saved = eventually(
        lambda: browser.find_element("id", "saved").text or None, "the saved name", 10
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
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env |= {"PEBBLE_VA_ALWAYS_VALID": "1", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    server = start([pebble, "-config", str(work / "pebble.json")], work, env, work / "pebble.log")
    try:
        root = work / "pebble-root.pem"
        context = ssl.create_default_context(cafile=str(listener_cert))

        def root_served() -> bytes | None:
            try:
                with socket.create_connection((LOOPBACK, management), timeout=2) as raw:
                    with context.wrap_socket(raw, server_hostname=LOOPBACK) as tls:
                        conn = http.client.HTTPConnection(LOOPBACK)
                        conn.sock = tls
                        conn.request("GET", "/roots/0")
                        return conn.getresponse().read() or None
            except OSError:
                return None

        root.write_bytes(eventually(root_served, "pebble's root certificate", 15))
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


@pytest.mark.nginx
def test_a_certificate_from_certbot_serves_with_compose_https(
    https_stack: tuple[Site, Path, int], copie_session: Any, tmp_path: Path
) -> None:
    """The README's path to Let's Encrypt, with pebble standing in for it: certbot's
    folder as compose.https.yaml mounts it (TLS_CERTIFICATES), served by nginx."""
    _, _, app_port = https_stack
    letsencrypt, root = certbot_from_pebble(tmp_path)
    project = render(copie_session, domain=DOMAIN)
    site = localize(project, tmp_path / "certbot", SLUG, port=free_port(),
                    upstream=f"{LOOPBACK}:{app_port}", container=True)  # fmt: skip
    mount_as_compose_https_does(project, site, letsencrypt)
    checked = nginx_test(site)
    assert checked.returncode == 0, checked.stderr
    with running_nginx(site, DOMAIN):
        # Verified against pebble's root, for DOMAIN: the chain certbot saved.
        status, headers, body = https_get(site.tls_port, "/healthz", root)
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert headers["strict-transport-security"].startswith("max-age=")
