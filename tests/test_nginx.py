"""nginx in front of gunicorn, proven live on loopback.

The generated config passes `nginx -t` and gixy in every variant; a real nginx
in front of a real gunicorn (over a unix socket, as on a host) forwards exactly
what the app trusts, serves static files itself, refuses oversized bodies and
unknown hosts, and keeps answering while slow clients hold connections open
(recorded against gunicorn alone for contrast: tests/helpers/figures.py).
"""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.figures import record
from tests.helpers.nginx import (
    Samples,
    Site,
    SlowClients,
    enable_tls,
    gixy_issues,
    hold_slow_clients,
    localize,
    nginx_test,
    running_nginx,
    sample_requests,
    self_signed_cert,
    short_tempdir,
)
from tests.helpers.project_env import project_environment
from tests.helpers.render import render
from tests.helpers.servers import (
    LOOPBACK,
    Server,
    free_port,
    start,
    stop,
    unix_http_get,
    wait_http,
)
from tests.helpers.stack import describe_server
from tests.helpers.tools import require_tool

pytestmark = pytest.mark.nginx

REPO = Path(__file__).resolve().parent.parent
SLUG, PACKAGE = "demo-shop", "demo_shop"
# The live stack's answers: not the defaults, to prove the answers reach nginx.
DOMAIN, LIMIT, LIMIT_BYTES = "demo-shop.test", "1m", 1024 * 1024
SECRET = "s" * 64
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "x-frame-options": "DENY",
}
# Slow clients: far more than the 5 to 8 that stalled gunicorn alone (measured).
SLOW_CLIENTS = 50

# A test-only entry point written into the stack's copy of the project (the
# template stays clean): the real app, plus routes that report what it sees.
PROBE = """\
from flask import request, url_for

from demo_shop.security import csrf
from wsgi import app


@app.get("/_probe")
def probe():
    return {
        "scheme": request.scheme,
        "remote_addr": request.remote_addr,
        "host": request.host,
        "external_url": url_for("probe", _external=True),
    }


@app.post("/_probe/upload")
@csrf.exempt  # a test client with no session or form
def upload():
    return {"received": len(request.get_data())}
"""


def request(
    port: int,
    method: str = "GET",
    path: str = "/",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    source: str = LOOPBACK,
) -> tuple[int, dict[str, str], bytes]:
    """One request to 127.0.0.1:`port` from `source`, Host: DOMAIN unless given."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers={"Host": DOMAIN, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def answer_head(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send raw bytes, return the answer's status line and headers as soon as
    they arrive (nginx may keep the connection open a while after them)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received and (chunk := sock.recv(65536)):
            received += chunk
        return received.split(b"\r\n\r\n", 1)[0]


def wait_for_socket(server: Server, sock: Path, deadline: float = 20) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if server.process.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{server.output()}")
        try:
            if unix_http_get(sock, "/healthz", timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"gunicorn not ready on {sock} in {deadline}s:\n{server.output()}")


def log_lines(path: Path, needle: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if needle in line]


def wait_for_log(server: Server, needle: str, deadline: float = 5) -> None:
    """Wait until gunicorn has logged `needle` (its access log is synchronous,
    but the pipe to the log file may lag a little)."""
    end = time.monotonic() + deadline
    while needle not in server.output():
        assert time.monotonic() < end, f"{needle!r} never logged:\n{server.output()}"
        time.sleep(0.05)


def run_with_slow_clients(port: int, seconds: float) -> tuple[Samples, SlowClients]:
    """Normal requests sampled while SLOW_CLIENTS slow connections are held."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(hold_slow_clients, port, DOMAIN, SLOW_CLIENTS, seconds)
        time.sleep(0.5)  # let the slow clients take their places first
        samples = sample_requests(port, DOMAIN, seconds - 1)
        return samples, slow.result(timeout=seconds + 10)


# -- every variant: nginx -t and gixy ---------------------------------------------

VARIANTS = {
    "defaults": {},
    "no-docker-512k": {"with_docker": False, "max_body_size": "512k", "domain": "shop.example.org"},
    "1g-localhost": {"max_body_size": "1g", "domain": "localhost", "with_procfile": False},
    "other-name": {"project_name": "Order Desk", "ci": "none", "max_body_size": "20M"},
}


@dataclass
class Variant:
    project: Path
    answers: dict[str, Any]
    sites: dict[str, Site]  # "host" and, with Docker, "container"


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def variant(
    request: pytest.FixtureRequest, copie_session: Any, tmp_path_factory: pytest.TempPathFactory
) -> Variant:
    project = render(copie_session, **VARIANTS[request.param])
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    sites = {}
    for kind in ("host", "container") if answers["with_docker"] else ("host",):
        sites[kind] = localize(
            project,
            tmp_path_factory.mktemp(f"{request.param}-{kind}"),
            answers["project_slug"],
            port=free_port(),
            upstream="unix:/tmp/cf-nginx-unused.sock",  # `nginx -t` never connects
            container=kind == "container",
        )
    return Variant(project, answers, sites)


def test_nginx_accepts_every_variant(variant: Variant) -> None:
    assert (variant.project / "deploy/nginx/nginx.conf").exists() == variant.answers["with_docker"]
    for kind, site in variant.sites.items():
        result = nginx_test(site)
        assert result.returncode == 0, f"{kind}: {result.stderr}"
        site_conf = (site.root / "deploy/nginx/include/site.conf").read_text()
        assert f"server_name {variant.answers['domain']};" in site_conf
        assert f"client_max_body_size {variant.answers['max_body_size']};" in site_conf


def test_gixy_finds_no_issue_in_any_variant(variant: Variant) -> None:
    for kind, site in variant.sites.items():
        issues = gixy_issues(site.main_conf)
        assert issues == [], f"{kind}: " + json.dumps(issues, indent=2)


def test_host_and_container_configs_share_the_server_blocks(live_project: Path) -> None:
    """One source of truth: both configs include the same site and differ only
    in where gunicorn is (a unix socket on a host, TCP web:8000 in compose) and
    in the names dropped (compose also lets localhost through)."""
    nginx_dir = live_project / "deploy/nginx"
    host = (nginx_dir / f"{SLUG}.conf").read_text()
    container = (nginx_dir / "nginx.conf").read_text()
    site = f"include /srv/{SLUG}/deploy/nginx/include/site.conf;"
    assert site in host and site in container
    catch_all = f"include /srv/{SLUG}/deploy/nginx/include/catch-all.conf;"
    assert catch_all in host and catch_all not in container
    # The upstream says whose server it is, not `<package>_app`.
    upstream = f"upstream {PACKAGE}_gunicorn {{"
    assert upstream in host and upstream in container
    assert f"server unix:/run/{SLUG}/gunicorn.sock fail_timeout=0;" in host
    assert "server web:8000 fail_timeout=0;" in container
    for conf in (host, container):
        assert "keepalive 32;" in conf and "keepalive_timeout 4s;" in conf


def test_systemd_unit_is_valid(variant: Variant, venv_bin: Path, tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    slug = variant.answers["project_slug"]
    text = (variant.project / f"deploy/systemd/{slug}.service").read_text()
    assert f"Environment=GUNICORN_BIND=unix:/run/{slug}/gunicorn.sock" in text
    assert f"RuntimeDirectory={slug}\n" in text and f"User={slug}\n" in text
    # verify checks that ExecStart exists: point it at a real gunicorn.
    unit = tmp_path / f"{slug}.service"
    unit.write_text(text.replace(f"/srv/{slug}/.venv/bin/gunicorn", str(venv_bin / "gunicorn")))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


# -- the live stack: gunicorn on a unix socket, nginx in front ----------------------


@dataclass
class Stack:
    site: Site
    gunicorn: Server
    nginx: Server
    sock: Path

    @property
    def port(self) -> int:
        return self.site.port


@pytest.fixture(scope="module")
def live_project(copie_session: Any) -> Path:
    return render(copie_session, domain=DOMAIN, max_body_size=LIMIT)


GUNICORN = ["gunicorn", "-c", "gunicorn.conf.py", "probe_wsgi:app"]


def gunicorn_env(venv_bin: Path, bind: str) -> dict[str, str]:
    # The access log (off by default behind nginx) proves what reached gunicorn.
    return project_environment(
        venv_bin, FLASK_SECRET_KEY=SECRET, GUNICORN_BIND=bind, GUNICORN_ACCESS_LOG="-"
    )


def start_gunicorn(root: Path, venv_bin: Path, log: Path, bind: str) -> Server:
    """The generated gunicorn.conf.py, serving the probe entry point."""
    return start(GUNICORN, root, gunicorn_env(venv_bin, bind), log)


@pytest.fixture(scope="module")
def stack(
    live_project: Path, venv_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    sock = short_tempdir() / "gunicorn.sock"
    work = tmp_path_factory.mktemp("stack")
    site = localize(live_project, work, SLUG, port=free_port(), upstream=f"unix:{sock}")
    (site.root / "probe_wsgi.py").write_text(PROBE)
    static = site.root / PACKAGE / "static"
    rules = (f".rule-{i} {{ margin: {i}px; }}\n" for i in range(200))
    (static / "big.css").write_text("".join(rules))
    (static / ".secret").write_text("not for the web\n")

    gunicorn = start_gunicorn(site.root, venv_bin, work / "gunicorn.log", f"unix:{sock}")
    try:
        wait_for_socket(gunicorn, sock)
        with running_nginx(site, DOMAIN) as nginx:
            yield Stack(site, gunicorn, nginx, sock)
    finally:
        assert stop(gunicorn) == 0, gunicorn.output()
        shutil.rmtree(sock.parent, ignore_errors=True)


def test_pages_and_health_go_through_nginx_to_gunicorn(stack: Stack) -> None:
    status, headers, body = request(stack.port, path="/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, headers, body = request(stack.port, path="/")
    assert status == 200 and b"<h1>Demo Shop</h1>" in body
    wait_for_log(stack.gunicorn, '"GET / HTTP/1.')


def test_static_files_come_from_nginx_with_long_cache_headers(stack: Stack) -> None:
    css = (stack.site.root / PACKAGE / "static/style.css").read_bytes()
    status, headers, body = request(stack.port, path="/static/style.css")
    assert (status, body) == (200, css)
    assert headers["content-type"] == "text/css"
    assert headers["cache-control"] == f"max-age={30 * 24 * 3600}"
    assert "expires" in headers
    assert request(stack.port, path="/static/missing.css")[0] == 404

    # A later request the app does see, then: the static ones never reached it.
    request(stack.port, path="/healthz?after-static")
    wait_for_log(stack.gunicorn, "/healthz?after-static")
    assert "/static/" not in stack.gunicorn.output()
    assert len(log_lines(stack.site.access_log, "GET /static/style.css")) >= 1


def test_text_is_gzipped_above_a_kilobyte(stack: Stack) -> None:
    big = (stack.site.root / PACKAGE / "static/big.css").read_bytes()
    status, headers, body = request(
        stack.port, path="/static/big.css", headers={"Accept-Encoding": "gzip"}
    )
    assert status == 200 and headers.get("content-encoding") == "gzip"
    assert gzip.decompress(body) == big and len(body) < len(big) / 2
    assert headers["vary"] == "Accept-Encoding"
    small = request(stack.port, path="/static/style.css", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small[1], "under gzip_min_length: not worth compressing"


def test_app_sees_the_client_as_nginx_reports_it(stack: Stack) -> None:
    # From 127.0.0.2: an address only X-Forwarded-For can have told the app
    # (gunicorn itself sees a unix-socket peer, not an IP).
    status, _, body = request(stack.port, path="/_probe", source="127.0.0.2")
    assert status == 200
    assert json.loads(body) == {
        "scheme": "http",
        "remote_addr": "127.0.0.2",
        "host": DOMAIN,
        "external_url": f"http://{DOMAIN}/_probe",
    }


def test_forged_forwarding_headers_are_not_trusted(stack: Stack) -> None:
    forged = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Host": "evil.test",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Prefix": "/evil",
        # gunicorn trusts these from a unix-socket peer; nginx must clear them.
        "X-Forwarded-Ssl": "on",
        "X-Forwarded-Protocol": "ssl",
    }
    status, _, body = request(stack.port, path="/_probe", headers=forged, source="127.0.0.2")
    assert status == 200, body
    seen = json.loads(body)
    assert seen["remote_addr"] == "127.0.0.2", "only the hop nginx adds is trusted"
    assert seen["scheme"] == "http"
    assert seen["external_url"] == f"http://{DOMAIN}/_probe"


def test_body_over_the_limit_gets_413_and_never_reaches_the_app(stack: Stack) -> None:
    # Headers only: nginx decides from Content-Length, before any body is sent.
    head = (
        f"POST /_probe/upload HTTP/1.1\r\nHost: {DOMAIN}\r\n"
        f"Content-Length: {2 * LIMIT_BYTES}\r\nConnection: close\r\n\r\n"
    ).encode()
    began = time.monotonic()
    answer = answer_head(stack.port, head)
    took = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    print(f"\n413 for a {2 * LIMIT_BYTES} byte body in {took * 1000:.1f} ms")
    assert took < 1

    # Just under the limit passes, whole, to the app.
    size = LIMIT_BYTES - 1024
    status, _, body = request(stack.port, "POST", "/_probe/upload", body=b"x" * size)
    assert (status, json.loads(body)) == (200, {"received": size})
    wait_for_log(stack.gunicorn, '"POST /_probe/upload')
    assert len(log_lines(stack.gunicorn.log, "POST /_probe/upload")) == 1


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: unknown.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ],
    ids=["other-name", "ip-address", "localhost", "no-host"],
)
def test_unknown_hosts_are_dropped_without_an_answer(stack: Stack, head: bytes) -> None:
    """The host site answers to its domain alone (only compose's adds localhost)."""
    assert raw_exchange(stack.port, head) == b"", "444: the connection closes, nothing is sent"


def test_security_headers_on_every_answer_and_no_server_version(stack: Stack) -> None:
    # nginx's own answers get its headers (include/headers.conf); the app's
    # get the app's (security.py), with frame-ancestors instead of
    # X-Frame-Options. test_app_behind_nginx.py checks that none is doubled.
    for path, expected, owner in [
        ("/", 200, "app"),
        ("/nowhere", 404, "app"),
        ("/static/style.css", 200, "nginx"),
        ("/static/missing.css", 404, "nginx"),
    ]:
        status, headers, _ = request(stack.port, path=path)
        assert status == expected
        wanted = dict(SECURITY_HEADERS)
        if owner == "app":
            wanted["x-frame-options"] = None
            assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert {k: headers.get(k) for k in SECURITY_HEADERS} == wanted, path
        assert headers["server"] == "nginx", "server_tokens off: no version"
    status, headers, _ = request(stack.port, "POST", "/", body=b"x" * (LIMIT_BYTES + 1))
    assert status == 413 and headers["x-frame-options"] == "DENY", "errors too (always)"


@pytest.mark.parametrize("path", ["/.env", "/.git/config", "/static/.secret", "/50x.html"])
def test_dotfiles_and_the_error_page_are_not_served(stack: Stack, path: str) -> None:
    status, _, body = request(stack.port, path=path)
    assert status in (403, 404) and b"not for the web" not in body
    assert path not in stack.gunicorn.output()


def test_slow_clients_do_not_slow_the_site_behind_nginx(stack: Stack, venv_bin: Path) -> None:
    seconds = 12  # > client_header_timeout (10 s): nginx cuts the slow ones off
    samples, slow = run_with_slow_clients(stack.port, seconds)
    label = describe_server(GUNICORN, stack.site.root, gunicorn_env(venv_bin, f"unix:{stack.sock}"))
    record(
        "10-slow-clients-nginx",
        f"{SLOW_CLIENTS} slow clients (a header line every 2 s) for {seconds} s, "
        "normal requests meanwhile",
        f"nginx → {label} (unix socket)",
        f"{samples.summary()}; nginx cut {len(slow.cut_after)} slow clients off after "
        f"{min(slow.cut_after, default=0):.1f}-{max(slow.cut_after, default=0):.1f} s",
        "0 failed, p99 < 100 ms, every slow client cut off after client_header_timeout",
    )
    assert samples.failed == 0 and samples.total >= 50, samples.summary()
    assert samples.percentile(99) < 0.1, samples.summary()
    assert len(slow.cut_after) == SLOW_CLIENTS, "client_header_timeout drops every slow client"
    assert min(slow.cut_after) > 8, "nobody is cut off before the timeout"


def test_slow_clients_against_gunicorn_alone_are_recorded(
    live_project: Path, venv_bin: Path, tmp_path: Path
) -> None:
    """The contrast, recorded as a figure: the same gunicorn, exposed on TCP
    without nginx. How well gunicorn copes is gunicorn's business (a release
    can change it), so the test asserts only that it survives and serves after."""
    root = tmp_path / "app"
    shutil.copytree(live_project, root)
    (root / "probe_wsgi.py").write_text(PROBE)
    port, seconds = free_port(), 8
    bind = f"{LOOPBACK}:{port}"
    gunicorn = start_gunicorn(root, venv_bin, tmp_path / "gunicorn.log", bind)
    try:
        wait_http(gunicorn, port)
        samples, _ = run_with_slow_clients(port, seconds)
        after = wait_http(gunicorn, port)  # the slow clients are gone
    finally:
        returncode = stop(gunicorn)
    record(
        "11-slow-clients-alone",
        f"the same slow clients for {seconds} s",
        f"{describe_server(GUNICORN, root, gunicorn_env(venv_bin, bind))} alone (TCP)",
        samples.summary(),
        "nothing on latency (a contrast); gunicorn survives and answers afterwards",
    )
    assert samples.total >= 1, "normal requests were sent meanwhile"
    assert after.status == 200
    assert returncode == 0, gunicorn.output()


def test_error_page_when_gunicorn_is_down(live_project: Path, tmp_path: Path) -> None:
    missing = short_tempdir() / "nobody-listens.sock"
    site = localize(live_project, tmp_path, SLUG, port=free_port(), upstream=f"unix:{missing}")
    try:
        with running_nginx(site, DOMAIN):
            status, headers, body = request(site.port, path="/")
    finally:
        shutil.rmtree(missing.parent, ignore_errors=True)
    assert status == 502
    assert b"Temporarily unavailable" in body, "our page, not nginx's"
    assert headers["x-content-type-options"] == "nosniff"


def test_container_config_serves_the_same_site(
    stack: Stack, live_project: Path, tmp_path: Path
) -> None:
    """The container's nginx.conf, with gunicorn's address made local."""
    local = {"port": free_port(), "upstream": f"unix:{stack.sock}"}
    site = localize(live_project, tmp_path, SLUG, **local, container=True)
    with running_nginx(site, DOMAIN):
        status, headers, _ = request(site.port, path="/static/style.css")
        assert status == 200 and headers["cache-control"].startswith("max-age=")
        assert request(site.port, path="/")[0] == 200
        # A first look on this machine: http://localhost:8080/ (the browser
        # sends the port in Host) and 127.0.0.1 get the same site.
        for local in (f"localhost:{site.port}", "localhost", f"{LOOPBACK}:{site.port}"):
            status, headers, body = request(site.port, path="/", headers={"Host": local})
            assert status == 200, local
            # The site's own headers (the app's: frame-ancestors, not X-Frame-Options).
            assert "frame-ancestors 'none'" in headers["content-security-policy"], local
            assert b"<h1>Demo Shop</h1>" in body
        # Every other name, and no name, is still dropped.
        for head in (b"GET / HTTP/1.1\r\nHost: unknown.test\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"):
            assert raw_exchange(site.port, head) == b"", head


def https_request(port: int, path: str, server_name: str, cafile: Path) -> tuple[int, dict, bytes]:
    """GET over TLS to 127.0.0.1:`port`, sending `server_name` as SNI and Host."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            conn = http.client.HTTPConnection(server_name)
            conn.sock = tls  # http.client over the socket we opened
            conn.request("GET", path, headers={"Host": server_name})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def test_tls_lines_work_once_switched_on(stack: Stack, live_project: Path, tmp_path: Path) -> None:
    """HTTPS switched on as the README tells a host to (include/https.conf), with a
    throwaway certificate: the app then sees https, by X-Forwarded-Proto alone."""
    site = localize(live_project, tmp_path, SLUG, port=free_port(), upstream=f"unix:{stack.sock}")
    tls_port = free_port()
    cert, key = self_signed_cert(tmp_path, DOMAIN)
    enable_tls(site, SLUG, DOMAIN, tls_port, cert, key)
    result = nginx_test(site)
    assert result.returncode == 0, result.stderr
    with running_nginx(site, DOMAIN):
        status, headers, body = https_request(tls_port, "/_probe", DOMAIN, cert)
        assert status == 200
        seen = json.loads(body)
        assert (seen["scheme"], seen["external_url"]) == ("https", f"https://{DOMAIN}/_probe")
        assert headers["strict-transport-security"] == "max-age=31536000"

        status, headers, _ = request(site.port, path="/healthz?x=1")
        assert (status, headers["location"]) == (301, f"https://{DOMAIN}/healthz?x=1")

        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            https_request(tls_port, "/", "unknown.test", cert)
