"""nginx in front of the app server, proven live on loopback.

The generated config passes `nginx -t` and gixy in every variant; a real nginx in
front of a real gunicorn (over a unix socket, as on a host) forwards exactly what
the app trusts, carries one request id end to end, serves static files itself,
refuses oversized bodies and unknown hosts, and keeps answering while slow clients
hold connections open (recorded against gunicorn alone for contrast: harness/figures.py).
A request that kills its worker costs that worker alone, under each server.
In headless Chromium the pages load with their stylesheet and nothing blocked.
"""

from __future__ import annotations

import gzip
import http.client
import json
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness import REPO, nginx
from harness.browser import chromium
from harness.chaos import probe_copy, worker_pids
from harness.clients import Samples, SlowClients, hold_slow_clients, raw_request, sample_requests
from harness.figures import record
from harness.http import LOOPBACK, Response, http_get, https_get
from harness.processes import wait_for_text
from harness.render import render
from harness.serving import Served, answers, serve
from harness.tools import require_tool
from harness.venvs import production_env, project_venv
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
# Who answers: nginx's own answers, errors too (`always`), get its headers
# (include/headers.conf); the app's get the app's (security.py), with
# frame-ancestors instead of X-Frame-Options.
ANSWERS = [
    ("GET", "/", 200, APP_HEADERS),
    ("GET", "/nowhere", 404, APP_HEADERS),
    ("GET", "/healthz", 200, APP_HEADERS),
    ("GET", "/static/style.css", 200, NGINX_HEADERS),
    ("GET", "/static/missing.css", 404, NGINX_HEADERS),
    ("POST", "/", 413, NGINX_HEADERS),
]
# Slow clients: far more than it takes to stall gunicorn alone (the README's figures).
SLOW_CLIENTS = 50
APP = "probe_wsgi:app"  # harness/apps/probe_wsgi.py: the app, plus what it sees
UNKNOWN_HOST, NO_HOST = b"GET / HTTP/1.1\r\nHost: unknown.test\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"
RID = r"[0-9a-f]{32}"
UNUSED = "unix:/tmp/cf-nginx-unused.sock"  # `nginx -t` never connects
SCREENSHOTS = REPO / "build" / "browser"


def request(
    port: int, path: str, headers: dict[str, str], method: str = "GET", source: str = LOOPBACK
) -> tuple[Response, list[str]]:
    """One request for DOMAIN to 127.0.0.1:`port` from the address `source`, a body
    over the limit with POST; the response, and its header names with repeats."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10, source_address=(source, 0))
    body = b"x" * (LIMIT_BYTES + 1) if method == "POST" else None
    try:
        conn.request(method, path, body=body, headers={**HOST, **headers})
        resp = conn.getresponse()
        sent = [(name.lower(), value) for name, value in resp.getheaders()]
        return Response(resp.status, dict(sent), resp.read()), [name for name, _ in sent]
    finally:
        conn.close()


def run_with_slow_clients(port: int, seconds: float) -> tuple[Samples, SlowClients]:
    """Normal requests sampled while SLOW_CLIENTS slow connections are held."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(hold_slow_clients, port, DOMAIN, SLOW_CLIENTS, seconds)
        time.sleep(0.5)  # let the slow clients take their places first
        samples = sample_requests(port, DOMAIN, seconds - 1)
        return samples, slow.result(timeout=seconds + 10)


# -- every variant: nginx -t, gixy, systemd-analyze ---------------------------------

VARIANTS = {
    "defaults": {},
    "no-docker-512k": {"with_docker": False, "max_body_size": "512k", "domain": "shop.example.org"},
    "1g-localhost": {"max_body_size": "1g", "domain": "localhost", "with_procfile": False},
    "other-name": {"project_name": "Order Desk", "ci": "none", "max_body_size": "20M"},
    "granian": {"server": "granian"},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_passes_nginx_t_gixy_and_systemd_analyze(
    variant: str, copie_session: Any, venv_bin: Path, tmp_path: Path
) -> None:
    project = render(copie_session, **VARIANTS[variant])
    recorded = answers(project)
    slug, docker, server = recorded["project_slug"], recorded["with_docker"], recorded["server"]
    socket = f"unix:/run/{slug}/{server}.sock"
    nginx_dir = project / "deploy/nginx"
    assert (nginx_dir / "nginx.conf").exists() == docker
    for kind in ("host", "container") if docker else ("host",):
        container = kind == "container"
        site = nginx.localize(project, tmp_path / kind, slug, upstream=UNUSED, container=container)
        result = nginx.nginx_test(site)
        assert result.returncode == 0, f"{kind}: {result.stderr}"
        site_conf = (site.root / "deploy/nginx/include/site.conf").read_text()
        assert f"server_name {recorded['domain']};" in site_conf
        assert f"client_max_body_size {recorded['max_body_size']};" in site_conf
        issues = nginx.gixy_issues(site.main_conf)
        assert issues == [], f"{kind}: " + json.dumps(issues, indent=2)

    if docker:
        # One source of truth: both configs include the same site and differ only in
        # where gunicorn is (a unix socket on a host, TCP web:8000 in compose) and in
        # the names dropped (compose also lets localhost through).
        host = (nginx_dir / f"{slug}.conf").read_text()
        container = (nginx_dir / "nginx.conf").read_text()
        site = f"include /srv/{slug}/deploy/nginx/include/site.conf;"
        assert site in host and site in container
        catch_all = f"include /srv/{slug}/deploy/nginx/include/catch-all.conf;"
        assert catch_all in host and catch_all not in container
        # The upstream says whose server it is, not `<package>_app`.
        upstream = f"upstream {recorded['package_name']}_{server} {{"
        assert upstream in host and upstream in container
        assert f"server {socket} fail_timeout=0;" in host
        assert "server web:8000 fail_timeout=0;" in container
        for conf in (host, container):
            assert "keepalive 32;" in conf and "keepalive_timeout 4s;" in conf

    text = (project / f"deploy/systemd/{slug}.service").read_text()
    bind = {"gunicorn": f"GUNICORN_BIND={socket}", "granian": f"GRANIAN_UDS={socket[5:]}"}
    assert f"Environment={bind[server]}\n" in text
    assert f"RuntimeDirectory={slug}\n" in text and f"User={slug}\n" in text
    # verify checks that ExecStart exists: point it at a real venv.
    unit = tmp_path / f"{slug}.service"
    unit.write_text(text.replace(f"/srv/{slug}/.venv/bin/", f"{venv_bin}/"))
    verify = [require_tool("systemd-analyze"), "verify", str(unit)]
    result = subprocess.run(verify, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr


# -- the live stack: gunicorn on a unix socket, nginx in front ----------------------


@pytest.fixture(scope="module")
def live_project(copie_session: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The probe in a project with this file's answers, a big stylesheet and a dotfile."""
    rendered = render(copie_session, domain=DOMAIN, max_body_size=LIMIT)
    project = probe_copy(rendered, tmp_path_factory.mktemp("live") / "project")
    static = project / PACKAGE / "static"
    (static / "big.css").write_text(
        "".join(f".rule-{i} {{ margin: {i}px; }}\n" for i in range(200))
    )
    (static / ".secret").write_text("not for the web\n")
    return project


@pytest.fixture(scope="module")
def stack(
    live_project: Path, venv_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The probe under gunicorn on a unix socket (its access log on, to prove what
    reached it), the project's nginx in front."""
    work = tmp_path_factory.mktemp("stack")
    with serve(live_project, work, production_env(venv_bin), app=APP, behind_nginx=True) as served:
        yield served
        assert served.stop() == 0, served.output()


def test_pages_static_files_and_each_security_header_once_from_one_layer(stack: Served) -> None:
    response = stack.get("/healthz")
    assert response.status == 200 and json.loads(response.body) == {"status": "ok"}
    response = stack.get("/")
    assert response.status == 200 and b"<h1>Demo Shop</h1>" in response.body
    stack.wait_for_log('"GET / HTTP/1.')

    assert stack.site is not None
    css = (stack.site.root / PACKAGE / "static/style.css").read_bytes()
    response = stack.get("/static/style.css")
    assert (response.status, response.body) == (200, css)
    assert response.headers["content-type"] == "text/css"
    # Unversioned: checked each time; versioned (as the pages link it): a year.
    assert response.headers["cache-control"] == "no-cache"
    versioned = stack.get("/static/style.css?v=0123456789ab")
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"

    # Text above a kilobyte is gzipped.
    big = (stack.site.root / PACKAGE / "static/big.css").read_bytes()
    response = stack.get("/static/big.css", {"Accept-Encoding": "gzip"})
    assert response.status == 200 and response.headers.get("content-encoding") == "gzip"
    assert gzip.decompress(response.body) == big and len(response.body) < len(big) / 2
    assert response.headers["vary"] == "Accept-Encoding"
    small = stack.get("/static/style.css", {"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers, "under gzip_min_length: not worth it"

    # Who sends which security header (ANSWERS): each once; no server version.
    for method, path, status, expected in ANSWERS:
        response, names = request(stack.port, path, {}, method)
        assert response.status == status, path
        for name in {*APP_HEADERS, *NGINX_HEADERS, "strict-transport-security"}:
            assert names.count(name) == (name in expected), (path, name, names)
        wanted = {name: value for name, value in SECURITY_HEADERS.items() if name in expected}
        assert {name: response.headers[name] for name in wanted} == wanted, path
        if expected == APP_HEADERS:
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["server"] == "nginx", "server_tokens off: no version"

    # A later request the app does see, then: the static ones never reached it.
    stack.get("/healthz?after-static")
    stack.wait_for_log("/healthz?after-static")
    assert "/static/" not in stack.output()
    assert "GET /static/style.css" in stack.site.access_log.read_text()


def test_nginx_replaces_a_forged_request_id_and_forwarded_headers(stack: Served) -> None:
    forged = "chosen-by-the-client-0001"
    response = stack.get("/_probe/log", {"X-Request-ID": forged})
    rid = response.headers.get("x-request-id")
    assert response.status == 200
    # nginx replaced the client's id with its own $request_id.
    assert rid != forged and re.fullmatch(RID, rid or ""), rid
    stack.wait_for_log(rf"\[{rid}\] order placed", regex=True)
    # gunicorn writes its access line after the response: wait for it too.
    access = rf"\[{rid}\] .*\"GET /_probe/log HTTP/1.[01]\" 200 .*\d+ms"
    app_log = stack.wait_for_log(access, regex=True)
    assert stack.site is not None
    nginx_line = wait_for_text(stack.site.access_log, rf"request_id={rid}")
    assert re.search(rf"GET /_probe/log .*request_id={rid} request_time=[\d.]+", nginx_line)
    assert forged not in app_log

    # From 127.0.0.2: an address only X-Forwarded-For can have told the app
    # (gunicorn itself sees a unix-socket peer, not an IP).
    seen = {
        "scheme": "http",
        "remote_addr": "127.0.0.2",
        "host": DOMAIN,
        "external_url": f"http://{DOMAIN}/_probe",
    }
    response, _ = request(stack.port, "/_probe", {}, source="127.0.0.2")
    assert (response.status, json.loads(response.body)) == (200, seen)
    forwarded = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Forwarded-Host": "evil.test",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Prefix": "/evil",
        # gunicorn trusts these from a unix-socket peer; nginx must clear them.
        "X-Forwarded-Ssl": "on",
        "X-Forwarded-Protocol": "ssl",
    }
    response, _ = request(stack.port, "/_probe", forwarded, source="127.0.0.2")
    assert (response.status, json.loads(response.body)) == (200, seen), "only nginx's hop"


def test_a_body_over_the_limit_gets_413_unknown_hosts_and_dotfiles_nothing(stack: Served) -> None:
    # Headers only: nginx decides from Content-Length, before any body is sent.
    head = (
        f"POST /_probe/upload HTTP/1.1\r\nHost: {DOMAIN}\r\n"
        f"Content-Length: {2 * LIMIT_BYTES}\r\nConnection: close\r\n\r\n"
    ).encode()
    began = time.monotonic()
    answer = raw_request(stack.port, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - began < 1

    # Just under the limit passes, whole, to the app.
    size = LIMIT_BYTES - 1024
    response = stack.request("POST", "/_probe/upload", body=b"x" * size)
    assert (response.status, json.loads(response.body)) == (200, {"received": size})
    log = stack.wait_for_log('"POST /_probe/upload')
    assert log.count("POST /_probe/upload") == 1

    # The host site answers to its domain alone (only compose's adds localhost):
    # 444, the connection closes and nothing is sent.
    local = [UNKNOWN_HOST.replace(b"unknown.test", name) for name in (b"127.0.0.1", b"localhost")]
    for head in (UNKNOWN_HOST, NO_HOST, *local):
        assert raw_request(stack.port, head, whole=True) == b"", head
    for path in ("/.env", "/.git/config", "/static/.secret", "/50x.html"):
        response = stack.get(path)
        assert response.status in (403, 404) and b"not for the web" not in response.body
        assert path not in stack.output()


def test_slow_clients_do_not_slow_the_site_behind_nginx_and_gunicorn_alone_survives(
    stack: Served, live_project: Path, venv_bin: Path, tmp_path: Path
) -> None:
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

    # The contrast, recorded as a figure: the same gunicorn, exposed on TCP without
    # nginx. How well gunicorn copes is gunicorn's business (a release can change
    # it), so the test asserts only that it survives and serves after.
    seconds = 8
    with serve(live_project, tmp_path, production_env(venv_bin), app=APP) as alone:
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


# -- a request that kills its worker, under each server ---------------------------

# The death is timed just before the SIGKILL, but the worker's sockets close
# only once the kernel has torn it down: nginx can still hand it a request on a
# kept-alive connection in between, or just after, before it sees them closed.
# Such a request starts a few milliseconds after the recorded death.
DEATH_SLACK = 0.010
CRASH_CLIENTS = 4
# Quiet and steady (no worker recycling, so PIDs change only when the test acts),
# no access logs; "gunicorn-sync": sync workers, as proxy.conf suggests them (with
# threads > 1 gunicorn would run gthread instead).
CRASH_SETTINGS = {"WEB_CONCURRENCY": "2", "GUNICORN_MAX_REQUESTS": "0", "GUNICORN_ACCESS_LOG": ""}
CRASH_SERVERS = {
    "gunicorn": ("default_project", {}),
    "gunicorn-sync": (
        "default_project",
        {"GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "1"},
    ),
    "granian": ("granian_project", {"GRANIAN_LOG_ACCESS_ENABLED": "false"}),
}


@pytest.mark.parametrize("server", list(CRASH_SERVERS))
def test_a_request_that_kills_its_worker_costs_one_worker_and_fails_fast(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rendered, settings = CRASH_SERVERS[server]
    project = probe_copy(request.getfixturevalue(rendered), tmp_path / "project")
    died_at = tmp_path / "died-at"
    env = production_env(
        project_venv(project), PROBE_DIED_AT=str(died_at), **CRASH_SETTINGS | settings
    )
    with serve(project, tmp_path, env, app=APP, behind_nginx=True) as stack:
        before = stack.workers(2)
        with stack.load(clients=CRASH_CLIENTS) as load:
            # Every worker serves some requests: nginx holds kept-alive
            # connections to both, where its default would replay a failed request.
            load.wait_for(ok=300)
            started = time.monotonic()
            answer = stack.get("/_probe/die", timeout=10)
            took = time.monotonic() - started
            stack.workers(2)  # both alive again (one respawned)
            load.wait_for(ok=100)  # and serving
        killed = before - worker_pids(stack.pid)
    died = float(died_at.read_text())
    # Failed requests not in flight on the dying worker (start, end in ms from its death).
    unexplained = [
        (round((o.started - died) * 1000, 1), round((o.ended - died) * 1000, 1))
        for o in load.failed
        if not (o.started < died + DEATH_SLACK and o.ended > died)
    ]
    others = f"others: {len(load.failed)} failed of {len(load.outcomes)}"
    if unexplained:
        others += f", {len(unexplained)} of them not in flight then"
    elif load.failed:
        others += ", all in flight on the dying worker"
    record(
        "04b-crash-nginx" + ("" if server == "gunicorn" else f"-{server}"),
        "a GET that kills its own worker (SIGKILL), 4 clients looping",
        stack.label,
        f"{len(killed)} worker killed; its client got HTTP {answer.status} in "
        f"{took * 1000:.0f} ms; {others}",
        "1 worker killed, an error page within 2 s, "
        + ("no other failed" if server == "gunicorn-sync" else "no other failed unless in flight"),
    )
    assert answer.status == 502 and b"Temporarily unavailable" in answer.body
    assert took < 2
    # nginx does not send it again to the next worker (proxy_next_upstream
    # off): with its default, the same request killed both workers here.
    assert len(killed) == 1, f"one request killed {len(killed)} workers"
    # The other clients lose only what was in flight when the worker died:
    # nginx replays nothing, so those fail, and nothing else does.
    assert not unexplained, f"failed, not in flight at the death (ms): {unexplained}"
    assert len(load.failed) <= CRASH_CLIENTS, load.summary()
    if server == "gunicorn-sync":
        # A sync worker holds one request at a time and no kept-alive
        # connection: the crash loses its own request and nothing else
        # (proxy.conf recommends it where that matters).
        assert load.failed == [], load.summary()


# -- a second nginx with the same config, changed -----------------------------------


def test_container_config_serves_the_same_site(
    stack: Served, live_project: Path, tmp_path: Path
) -> None:
    """The container's nginx.conf, with gunicorn's address made local."""
    upstream = f"unix:{stack.socket}"
    site = nginx.localize(live_project, tmp_path, SLUG, upstream=upstream, container=True)
    with nginx.running_nginx(site, DOMAIN):
        response = http_get(site.port, "/static/style.css", HOST)
        assert response.status == 200 and response.headers["cache-control"] == "no-cache"
        # A first look on this machine: http://localhost:8080/ (the browser
        # sends the port in Host) and 127.0.0.1 get the same site.
        for name in (DOMAIN, f"localhost:{site.port}", "localhost", f"{LOOPBACK}:{site.port}"):
            response = http_get(site.port, "/", {"Host": name})
            assert response.status == 200, name
            # The site's own headers (the app's: frame-ancestors, not X-Frame-Options).
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"], name
            assert b"<h1>Demo Shop</h1>" in response.body
        # Every other name, and no name, is still dropped.
        for head in (UNKNOWN_HOST, NO_HOST):
            assert raw_request(site.port, head, whole=True) == b"", head


def stylesheet_url(page: bytes) -> str:
    found = re.search(rb'<link rel="stylesheet" href="([^"]+)"', page)
    assert found, page
    return found.group(1).decode()


def test_tls_switched_on_for_a_deploy_502_page_while_restarting_then_a_new_css_url(
    stack: Served, live_project: Path, venv_bin: Path, tmp_path: Path
) -> None:
    """A changed stylesheet deployed to a copy with HTTPS switched on as the README
    tells a host to (include/https.conf, a throwaway certificate): the app sees
    https by X-Forwarded-Proto alone; while gunicorn is down, our 502 page."""
    old_url = stylesheet_url(stack.get("/").body)
    old = stack.get(old_url)
    assert old.status == 200
    assert old.headers["cache-control"] == "public, max-age=31536000, immutable"
    # Unchanged, the URL stays the same: browsers keep using their copy.
    assert stylesheet_url(stack.get("/").body) == old_url

    project = shutil.copytree(live_project, tmp_path / "project")
    css = project / PACKAGE / "static" / "style.css"
    css.write_text(css.read_text() + "\nh1 { color: rebeccapurple; }\n")
    cert, key = nginx.self_signed_cert(tmp_path, DOMAIN)

    def switch_tls_on(site: nginx.Site) -> None:
        nginx.enable_tls(site, SLUG, DOMAIN, cert, key)
        result = nginx.nginx_test(site)
        assert result.returncode == 0, result.stderr

    env = production_env(venv_bin)
    with serve(
        project, tmp_path / "after", env, app=APP, behind_nginx=True, adjust_site=switch_tls_on
    ) as after:
        assert after.site is not None
        tls = after.site.tls_port
        response = https_get(tls, "/_probe", DOMAIN, cert)
        assert response.status == 200
        seen = json.loads(response.body)
        assert (seen["scheme"], seen["external_url"]) == ("https", f"https://{DOMAIN}/_probe")
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        response = after.get("/healthz?x=1")
        moved = (response.status, response.headers["location"])
        assert moved == (301, f"https://{DOMAIN}/healthz?x=1")
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            https_get(tls, "/", "unknown.test", cert)

        new_url = stylesheet_url(https_get(tls, "/", DOMAIN, cert).body)
        fetched = https_get(tls, new_url, DOMAIN, cert)
        assert after.stop() == 0, after.output()
        down = https_get(tls, "/", DOMAIN, cert)  # gunicorn down, as during a restart
    assert new_url != old_url and new_url.startswith("/static/style.css?v=")
    assert fetched.status == 200 and b"rebeccapurple" in fetched.body
    assert down.status == 502
    assert b"Temporarily unavailable" in down.body, "our page, not nginx's"
    assert down.headers["x-content-type-options"] == "nosniff"


def visit(browser: Any, stack: Served, path: str, name: str) -> list[dict[str, Any]]:
    """Load `path`; keep a screenshot; the console entries it
    produced, except the one that reports the page's own error status (a 404 page
    is a 404), and Chromium's note that it ignores Cross-Origin-Opener-Policy over
    plain HTTP on a name that is not localhost (it applies over HTTPS)."""
    browser.get_log("browser")  # drop what an earlier page left
    url = f"http://{stack.host}:{stack.port}{path}"
    browser.get(url)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    return [
        entry
        for entry in browser.get_log("browser")
        if not (
            entry["message"].startswith(url)
            and (
                "the server responded with a status" in entry["message"]
                or "Cross-Origin-Opener-Policy header has been ignored" in entry["message"]
            )
        )
    ]


def test_pages_in_a_browser_load_clean_with_their_stylesheet_and_a_csp_violation_shows(
    stack: Served,
) -> None:
    """Headless Chromium, the site's domain resolved to 127.0.0.1 so that nginx gets
    the Host it serves. For `/`, a 404 and a 500: the Content-Security-Policy blocked
    nothing, the console stayed clean, style.css applied; a page with an inline style
    (the probe's) proves the check sees a violation."""
    with chromium(
        "--window-size=1000,700",
        f"--host-resolver-rules=MAP {stack.host} 127.0.0.1",
        capabilities={"goog:loggingPrefs": {"browser": "ALL"}},
    ) as browser:
        pages = [("/", "index", "Demo Shop"), ("/nowhere", "404", "404 Not Found")]
        for path, name, heading in [*pages, ("/_probe/crash", "500", "500 Internal Server Error")]:
            console = visit(browser, stack, path, name)
            assert console == [], f"{path}: CSP violations or console errors"
            assert browser.find_element("tag name", "h1").text == heading
            # style.css: body { max-width: 40rem } (640px); the browser default is none.
            max_width = browser.execute_script("return getComputedStyle(document.body).maxWidth")
            assert max_width == "640px", f"{path}: style.css did not apply"

        console = visit(browser, stack, "/_probe/inline-style", "inline-style-blocked")
        assert any("Content Security Policy" in entry["message"] for entry in console), console
