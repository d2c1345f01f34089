"""The generated README's "Deploy on a Linux host", as printed, as root on a fresh
Debian host with systemd as PID 1 (harness/systemd_host.py), for each server x
database on Debian 12, and once on Debian testing; then its update path under
load and a restart of the services. Each variant adds a row to the tier's table.

The only words replaced are the placeholders in PLACEHOLDERS. A command that
fails names the README line it starts on and the variant.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.http import Response, http_get, http_request
from harness.load import Load
from harness.readme import failed_line, marked_script, readme_blocks
from harness.render import render
from harness.systemd_host import Host, booted_host, ensure_systemd_image, journal
from harness.template_versions import GIT_ENV
from harness.waiting import eventually

#: server x database, as a reader of each kind of project meets the block, on
#: Debian 12 (its python3 is 3.11); and the defaults' neighbour on Debian
#: testing, whose python3 is newer, for a project that answers Python 3.14.
VARIANTS = {
    "gunicorn": {},
    "gunicorn-sqlite": {"database": "sqlite"},
    "gunicorn-postgresql": {"database": "postgresql"},
    "granian": {"server": "granian"},
    "granian-sqlite": {"server": "granian", "database": "sqlite"},
    "granian-postgresql": {"server": "granian", "database": "postgresql"},
    "gunicorn-sqlite-testing": {"database": "sqlite", "python_version": "3.14"},
}
#: The repository a reader clones: the project, committed, in a bare repository
#: copied into the host.
PLACEHOLDERS = {"YOUR-REPOSITORY": "/root/project.git"}


def run_as_printed(host: Host, variant: str, lines: list[str]) -> str:
    """Run `lines` in one shell on `host`; fail naming the line that failed."""
    result = host.sh(marked_script(lines, PLACEHOLDERS), check=False, timeout=900)
    if result.returncode != 0:
        line = failed_line(result.stderr)
        pytest.fail(f"[{variant}] host block, line: {line}\n{result.report()}\n{state(host)}")
    return result.stdout


def state(host: Host) -> str:
    """What a reader would look at next: the units' status and logs, nginx's errors."""
    return host.sh(
        "systemctl --no-pager status 'demo-shop*' nginx; journalctl --no-pager -n 60;"
        " tail -n 20 /var/log/nginx/error.log",
        check=False,
        timeout=60,
    ).stdout


def bare_repository(project: Path, work: Path) -> Path:
    """The project as a reader's repository: committed, then cloned bare."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(project)], check=True)
    subprocess.run(["git", "-C", str(project), "add", "-A"], check=True)
    commit = ["git", "-C", str(project), "commit", "-q", "-m", "First"]
    subprocess.run(commit, check=True, env={**os.environ, **GIT_ENV})
    bare = work / "project.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(project), str(bare)], check=True)
    return bare


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_host_block_as_printed(
    variant: str,
    podman: dict[str, str],
    copie: Any,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    started = time.monotonic()
    # The host runs the distribution's python3, whatever python_version says.
    suite = "testing" if variant.endswith("-testing") else "bookworm"
    project = render(copie, **VARIANTS[variant])
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    slug, domain = answers["project_slug"], answers["domain"]
    readme = (project / "README.md").read_text()
    blocks = [b for b in readme_blocks(readme) if b.section == "Deploy on a Linux host"]
    # The install block, then the update block; the HTTPS block between them
    # needs a public name for Let's Encrypt (tests/live/test_watch.py runs
    # certbot against pebble instead).
    install, update = blocks[0], blocks[-1]
    assert "systemctl reload" in update.text, update.text
    bare = bare_repository(project, tmp_path)

    with booted_host(podman, ensure_systemd_image(podman, suite)) as host:
        host.copy_in(bare, "/root/project.git")
        printed = run_as_printed(host, variant, install.lines())
        # The block ends with its own check: what the reader sees must be a 200.
        assert "HTTP/1.1 200" in printed, printed
        python = host.sh(f"/srv/{slug}/.venv/bin/python --version").stdout.split()[-1]
        assert python.startswith(HOST_PYTHONS[suite]), python

        def get(path: str) -> Response:
            return http_get(host.port, path, {"Host": domain}, timeout=10)

        assert get("/healthz").status == 200
        assert get("/").status == 200
        if answers["database"] != "none":
            assert get("/readyz").status == 200, "migrated by the unit before it started"
            # The token the block wrote, as a reader would read it back.
            settings = host.sh(f"cat /etc/{slug}/env").stdout
            token = re.search(r"^API_TOKEN=(\S+)$", settings, flags=re.MULTILINE)
            assert token, settings
            created = http_request(
                host.port, "POST", "/items", b'{"name": "apple"}',
                {"Host": domain, "Content-Type": "application/json",
                 "Authorization": f"Bearer {token[1]}"},
            )  # fmt: skip
            assert created.status == 201, created.text
            assert b"apple" in get("/items").body

        # New code, as the README's update block brings it, under load: served
        # without a failed request.
        new_release(host, answers["package_name"])
        with Load(host.port, "/", host=domain, clients=2, seconds=120) as load:
            load.wait_for(ok=20, timeout=30)
            run_as_printed(host, variant, update.lines())
            eventually(lambda: NEW_CODE in get("/").text, 60, what="the new code served")
            load.wait_for(ok=20, timeout=30)
        if answers["server"] == "gunicorn":
            assert load.failed == [], load.summary()
        else:  # as the README says: a few 502s, on connections an old worker was closing
            assert all(o.status == 502 for o in load.failed), load.summary()
            assert len(load.failed) <= max(3, load.ok // 1000), load.summary()

        # A restart of both services comes back.
        host.sh(f"systemctl restart {slug} nginx")
        assert eventually(lambda: get("/healthz").status == 200, 30, what="back after a restart")
        assert NEW_CODE in get("/").text

        # The logs are where the README says they are.
        unit_log = journal(host, slug)
        listening = "Listening at: http://unix:" if "granian" in variant else "Listening at: unix:"
        assert listening in unit_log, unit_log
        access = host.sh("cat /var/log/nginx/access.log").stdout
        assert 'GET /healthz HTTP/1.1" 200' in access, access

    # A row of the tier's table (tests/conftest.py); a failure above records none.
    skipped = sum(len(b.lines()) for b in blocks[1:-1])  # the HTTPS block, see above
    row = {
        "variant": f"host: {variant} (Python {python})",
        "blocks": "2",
        "lines run": str(len(install.lines()) + len(update.lines())),
        "lines skipped": str(skipped),
        "failures": "0",
        "seconds": f"{time.monotonic() - started:.0f}",
    }
    record_property("as_printed_row", json.dumps(row))


#: The python3 each Debian release ships, which the README's venv is made from.
HOST_PYTHONS = {"bookworm": "3.11.", "testing": "3.14."}

#: What the second release's page says, so a probe can tell old code from new.
NEW_CODE = "Release two"


def new_release(host: Host, package: str) -> None:
    """A second commit on the reader's repository: the page says NEW_CODE."""
    host.sh(
        "git clone -q /root/project.git /root/work && cd /root/work"
        f" && sed -i 's|</h1>|</h1><p>{NEW_CODE}</p>|' {package}/templates/index.html"
        " && git -c user.name=Dev -c user.email=dev@example.com commit -qam 'Release two'"
        " && git push -q origin HEAD"
    )
