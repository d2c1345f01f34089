"""nginx in front of gunicorn, proven live on loopback.

The generated config passes `nginx -t` and gixy in every variant; a real nginx
in front of a real gunicorn (over a unix socket, as on a host) forwards exactly
what the app trusts, serves static files itself, refuses oversized bodies and
unknown hosts, and keeps answering while slow clients hold connections open
(recorded against gunicorn alone for contrast: harness/figures.py).
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.chaos import probe_copy
from harness.clients import Samples, SlowClients, hold_slow_clients, raw_request, sample_requests
from harness.figures import record
from harness.http import LOOPBACK, Response, free_port, http_get
from harness.nginx import (
    Site,
    enable_tls,
    gixy_issues,
    localize,
    nginx_test,
    running_nginx,
    self_signed_cert,
)
from harness.render import render
from harness.serving import Served, answers, serve
from harness.tools import require_tool
from harness.venvs import production_env
from harness.waiting import eventually

SLUG, PACKAGE = "demo-shop", "demo_shop"
# The live stack's answers: not the defaults, to prove the answers reach nginx.
DOMAIN, LIMIT, LIMIT_BYTES = "demo-shop.test", "1m", 1024 * 1024
HOST = {"Host": DOMAIN}
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "x-frame-options": "DENY",
}
# Who sends which: each exactly once, from one layer.
BOTH = (
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
)
APP_HEADERS = ("content-security-policy", *BOTH)
NGINX_HEADERS = ("x-frame-options", *BOTH)
# Slow clients: far more than it takes to stall gunicorn alone (the README's figures).
SLOW_CLIENTS = 50
APP = "probe_wsgi:app"  # harness/apps/probe_wsgi.py: the app, plus what it sees


def exchange(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> Response:
    """One GET over `conn` (closed after)."""
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def from_address(port: int, path: str, source: str, headers: dict[str, str]) -> Response:
    """A GET for DOMAIN to 127.0.0.1:`port`, sent from the address `source`."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5, source_address=(source, 0))
    return exchange(conn, path, {**HOST, **headers})


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
    recorded = answers(project)
    sites = {}
    for kind in ("host", "container") if recorded["with_docker"] else ("host",):
        sites[kind] = localize(
            project,
            tmp_path_factory.mktemp(f"{request.param}-{kind}"),
            recorded["project_slug"],
            port=free_port(),
            upstream="unix:/tmp/cf-nginx-unused.sock",  # `nginx -t` never connects
            container=kind == "container",
        )
    return Variant(project, recorded, sites)


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


@pytest.fixture(scope="module")
def live_project(copie_session: Any) -> Path:
    return render(copie_session, domain=DOMAIN, max_body_size=LIMIT)


@pytest.fixture(scope="module")
def stack(
    live_project: Path, venv_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The probe under gunicorn on a unix socket, the project's nginx in front;
    gunicorn's access log on, to prove what reached it."""
    project = probe_copy(live_project, tmp_path_factory.mktemp("live") / "project")
    static = project / PACKAGE / "static"
    rules = (f".rule-{i} {{ margin: {i}px; }}\n" for i in range(200))
    (static / "big.css").write_text("".join(rules))
    (static / ".secret").write_text("not for the web\n")
    work = tmp_path_factory.mktemp("stack")
    with serve(project, work, production_env(venv_bin), app=APP, behind_nginx=True) as served:
        yield served
        assert served.stop() == 0, served.output()


def test_pages_and_health_go_through_nginx_to_gunicorn(stack: Served) -> None:
    response = stack.get("/healthz")
    assert response.status == 200 and json.loads(response.body) == {"status": "ok"}
    response = stack.get("/")
    assert response.status == 200 and b"<h1>Demo Shop</h1>" in response.body
    stack.wait_for_log('"GET / HTTP/1.')


def test_static_files_come_from_nginx_with_long_cache_headers(stack: Served) -> None:
    assert stack.site is not None
    css = (stack.site.root / PACKAGE / "static/style.css").read_bytes()
    response = stack.get("/static/style.css")
    assert (response.status, response.body) == (200, css)
    assert response.headers["content-type"] == "text/css"
    # Unversioned: checked each time; versioned (as the pages link it): a year.
    assert response.headers["cache-control"] == "no-cache"
    versioned = stack.get("/static/style.css?v=0123456789ab")
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert stack.get("/static/missing.css").status == 404

    # A later request the app does see, then: the static ones never reached it.
    stack.get("/healthz?after-static")
    stack.wait_for_log("/healthz?after-static")
    assert "/static/" not in stack.output()
    assert "GET /static/style.css" in stack.site.access_log.read_text()


def test_text_is_gzipped_above_a_kilobyte(stack: Served) -> None:
    assert stack.site is not None
    big = (stack.site.root / PACKAGE / "static/big.css").read_bytes()
    response = stack.get("/static/big.css", {"Accept-Encoding": "gzip"})
    assert response.status == 200 and response.headers.get("content-encoding") == "gzip"
    assert gzip.decompress(response.body) == big and len(response.body) < len(big) / 2
    assert response.headers["vary"] == "Accept-Encoding"
    small = stack.get("/static/style.css", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers, "under gzip_min_length: not worth it"


def test_app_sees_the_client_as_nginx_reports_it(stack: Served) -> None:
    # From 127.0.0.2: an address only X-Forwarded-For can have told the app
    # (gunicorn itself sees a unix-socket peer, not an IP).
    response = from_address(stack.port, "/_probe", "127.0.0.2", {})
    assert response.status == 200
    assert json.loads(response.body) == {
        "scheme": "http",
        "remote_addr": "127.0.0.2",
        "host": DOMAIN,
        "external_url": f"http://{DOMAIN}/_probe",
    }


def test_forged_forwarding_headers_are_not_trusted(stack: Served) -> None:
    forged = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Host": "evil.test",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Prefix": "/evil",
        # gunicorn trusts these from a unix-socket peer; nginx must clear them.
        "X-Forwarded-Ssl": "on",
        "X-Forwarded-Protocol": "ssl",
    }
    response = from_address(stack.port, "/_probe", "127.0.0.2", forged)
    assert response.status == 200, response.body
    seen = json.loads(response.body)
    assert seen["remote_addr"] == "127.0.0.2", "only the hop nginx adds is trusted"
    assert seen["scheme"] == "http"
    assert seen["external_url"] == f"http://{DOMAIN}/_probe"


def test_body_over_the_limit_gets_413_and_never_reaches_the_app(stack: Served) -> None:
    # Headers only: nginx decides from Content-Length, before any body is sent.
    head = (
        f"POST /_probe/upload HTTP/1.1\r\nHost: {DOMAIN}\r\n"
        f"Content-Length: {2 * LIMIT_BYTES}\r\nConnection: close\r\n\r\n"
    ).encode()
    began = time.monotonic()
    answer = raw_request(stack.port, head)
    took = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert took < 1

    # Just under the limit passes, whole, to the app.
    size = LIMIT_BYTES - 1024
    response = stack.request("POST", "/_probe/upload", body=b"x" * size)
    assert (response.status, json.loads(response.body)) == (200, {"received": size})
    log = stack.wait_for_log('"POST /_probe/upload')
    assert log.count("POST /_probe/upload") == 1


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
def test_unknown_hosts_are_dropped_without_an_answer(stack: Served, head: bytes) -> None:
    """The host site answers to its domain alone (only compose's adds localhost)."""
    answer = raw_request(stack.port, head, whole=True)
    assert answer == b"", "444: the connection closes, nothing is sent"


@pytest.mark.parametrize(
    ("method", "path", "status", "owner"),
    [
        ("GET", "/", 200, "app"),
        ("GET", "/nowhere", 404, "app"),
        ("GET", "/healthz", 200, "app"),
        ("GET", "/static/style.css", 200, "nginx"),
        ("GET", "/static/missing.css", 404, "nginx"),
        ("POST", "/", 413, "nginx"),  # errors too (`always`)
    ],
)
def test_each_security_header_comes_once_from_one_layer_and_no_server_version(
    stack: Served, method: str, path: str, status: int, owner: str
) -> None:
    # nginx's own answers get its headers (include/headers.conf); the app's
    # get the app's (security.py), with frame-ancestors instead of X-Frame-Options.
    body = b"x" * (LIMIT_BYTES + 1) if method == "POST" else None
    conn = http.client.HTTPConnection(LOOPBACK, stack.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=HOST)
        response = conn.getresponse()
        response.read()
        sent = [(name.lower(), value) for name, value in response.getheaders()]
    finally:
        conn.close()
    assert response.status == status
    names, headers = [name for name, _ in sent], dict(sent)
    expected = APP_HEADERS if owner == "app" else NGINX_HEADERS
    for name in {*APP_HEADERS, *NGINX_HEADERS, "strict-transport-security"}:
        assert names.count(name) == (name in expected), (name, names)
    wanted = {name: value for name, value in SECURITY_HEADERS.items() if name in expected}
    assert {name: headers[name] for name in wanted} == wanted
    if owner == "app":
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["server"] == "nginx", "server_tokens off: no version"


@pytest.mark.parametrize("path", ["/.env", "/.git/config", "/static/.secret", "/50x.html"])
def test_dotfiles_and_the_error_page_are_not_served(stack: Served, path: str) -> None:
    response = stack.get(path)
    assert response.status in (403, 404) and b"not for the web" not in response.body
    assert path not in stack.output()


def test_slow_clients_do_not_slow_the_site_behind_nginx(stack: Served) -> None:
    seconds = 12  # > client_header_timeout (10 s): nginx cuts the slow ones off
    samples, slow = run_with_slow_clients(stack.port, seconds)
    record(
        "10-slow-clients-nginx",
        f"{SLOW_CLIENTS} slow clients (a header line every 2 s) for {seconds} s, "
        "normal requests meanwhile",
        stack.label,
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
    project = probe_copy(live_project, tmp_path / "project")
    seconds = 8
    with serve(project, tmp_path, production_env(venv_bin), app=APP) as alone:
        samples, _ = run_with_slow_clients(alone.port, seconds)
        # The slow clients are gone: gunicorn answers again.
        after = eventually(lambda: alone.get("/healthz"), what="an answer after the slow clients")
        returncode = alone.stop()
    record(
        "11-slow-clients-alone",
        f"the same slow clients for {seconds} s",
        f"{alone.label} alone (TCP)",
        samples.summary(),
        "nothing on latency (a contrast); gunicorn survives and answers afterwards",
    )
    assert samples.total >= 1, "normal requests were sent meanwhile"
    assert after.status == 200
    assert returncode == 0, alone.output()


@pytest.fixture
def other_site(live_project: Path, tmp_path: Path) -> Callable[..., Site]:
    """`other_site(upstream, **localize_options)`: the live project's config
    localized again, to run a second nginx against `upstream`."""

    def localized(upstream: Path, **options: Any) -> Site:
        return localize(
            live_project, tmp_path, SLUG, port=free_port(), upstream=f"unix:{upstream}", **options
        )

    return localized


def test_error_page_when_gunicorn_is_down(other_site: Callable[..., Site]) -> None:
    site = other_site(Path("/tmp/cf-nginx-nobody-listens.sock"))
    with running_nginx(site, DOMAIN):
        response = http_get(site.port, "/", HOST)
    assert response.status == 502
    assert b"Temporarily unavailable" in response.body, "our page, not nginx's"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_container_config_serves_the_same_site(
    stack: Served, other_site: Callable[..., Site]
) -> None:
    """The container's nginx.conf, with gunicorn's address made local."""
    site = other_site(stack.socket, container=True)
    with running_nginx(site, DOMAIN):
        response = http_get(site.port, "/static/style.css", HOST)
        assert response.status == 200 and response.headers["cache-control"] == "no-cache"
        assert http_get(site.port, "/", HOST).status == 200
        # A first look on this machine: http://localhost:8080/ (the browser
        # sends the port in Host) and 127.0.0.1 get the same site.
        for local in (f"localhost:{site.port}", "localhost", f"{LOOPBACK}:{site.port}"):
            response = http_get(site.port, "/", {"Host": local})
            assert response.status == 200, local
            # The site's own headers (the app's: frame-ancestors, not X-Frame-Options).
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"], local
            assert b"<h1>Demo Shop</h1>" in response.body
        # Every other name, and no name, is still dropped.
        for head in (b"GET / HTTP/1.1\r\nHost: unknown.test\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"):
            assert raw_request(site.port, head, whole=True) == b"", head


def https_get(port: int, path: str, server_name: str, cafile: Path) -> Response:
    """GET over TLS to 127.0.0.1:`port`, sending `server_name` as SNI and Host."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            conn = http.client.HTTPConnection(server_name)
            conn.sock = tls  # http.client over the socket we opened
            return exchange(conn, path, {"Host": server_name})


def test_tls_lines_work_once_switched_on(
    stack: Served, other_site: Callable[..., Site], tmp_path: Path
) -> None:
    """HTTPS switched on as the README tells a host to (include/https.conf), with a
    throwaway certificate: the app then sees https, by X-Forwarded-Proto alone."""
    site = other_site(stack.socket)
    tls_port = free_port()
    cert, key = self_signed_cert(tmp_path, DOMAIN)
    enable_tls(site, SLUG, DOMAIN, tls_port, cert, key)
    result = nginx_test(site)
    assert result.returncode == 0, result.stderr
    with running_nginx(site, DOMAIN):
        response = https_get(tls_port, "/_probe", DOMAIN, cert)
        assert response.status == 200
        seen = json.loads(response.body)
        assert (seen["scheme"], seen["external_url"]) == ("https", f"https://{DOMAIN}/_probe")
        assert response.headers["strict-transport-security"] == "max-age=31536000"

        response = http_get(site.port, "/healthz?x=1", HOST)
        assert (response.status, response.headers["location"]) == (
            301,
            f"https://{DOMAIN}/healthz?x=1",
        )

        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            https_get(tls_port, "/", "unknown.test", cert)
