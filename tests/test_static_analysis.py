"""Security linters on what the template generates: bandit on the code of every
variant, pip-audit on the pinned dependencies."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.figures import record
from tests.helpers.render import SWITCHES, render
from tests.helpers.tools import require_tool

pytestmark = pytest.mark.quick

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = yaml.safe_load((REPO / "copier.yml").read_text())
# Python code varies with the database answer (models, migrations, db.py) and
# the server (gunicorn.conf.py or run_granian.py); the switches only add
# non-Python files. Each database is rendered with every switch on (gunicorn)
# and with every switch off (granian).
DATABASES = list(QUESTIONS["database"]["choices"].values())
VARIANTS = {
    f"{database}-{'all' if on else 'bare'}": {
        **dict.fromkeys(SWITCHES, on),
        "ci": "github" if on else "none",
        "database": database,
        "server": "gunicorn" if on else "granian",
    }
    for database in DATABASES
    for on in (True, False)
}


def bandit(project: Path) -> dict[str, Any]:
    """bandit's JSON report on `project`, medium severity and above."""
    result = subprocess.run(
        [require_tool("bandit"), "-r", ".", "-f", "json", "-q", "--severity-level", "medium"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: it found something
    return json.loads(result.stdout)


def test_bandit_finds_nothing_at_medium_or_above_in_any_variant(copie: Any) -> None:
    findings, files, lines, low = [], 0, 0, 0
    for variant, answers in VARIANTS.items():
        project = render(copie, **answers)
        report = bandit(project)
        assert not report["errors"], report["errors"]
        scanned = [name for name in report["metrics"] if name != "_totals"]
        assert len(scanned) == len(list(project.rglob("*.py"))), f"{variant}: files skipped"
        findings += [
            f"{variant}: {r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
            for r in report["results"]
        ]
        files += len(scanned)
        lines += report["metrics"]["_totals"]["loc"]
        low += report["metrics"]["_totals"]["SEVERITY.LOW"]
    record(
        "40-bandit",
        f"bandit on the generated code of {len(VARIANTS)} variants ({', '.join(VARIANTS)})",
        "static",
        f"{len(findings)} medium/high in {files} files, {lines} lines "
        f"({low} low-severity ones not counted: asserts in tests and the like)",
        "0 medium or high",
    )
    assert not findings, "\n".join(findings)


def test_pip_audit_finds_no_known_vulnerability_in_the_pins(
    copie_session: Any, tmp_path: Path
) -> None:
    # Every pin any variant can have (the databases add their own), for every
    # platform: markers are dropped so waitress (Windows only) is audited too.
    pins = sorted(
        {
            line.split(";")[0].strip()
            for database in DATABASES
            for server in ("gunicorn", "granian")
            for line in (
                render(copie_session, database=database, server=server) / "requirements.txt"
            )
            .read_text()
            .splitlines()
            if line.strip() and not line.startswith("#")
        }
    )
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(pins) + "\n")
    # --no-deps --disable-pip: the file pins everything, so audit exactly it,
    # without building a virtualenv to resolve it.
    command = [require_tool("pip-audit"), "-r", str(requirements), "--no-deps", "--disable-pip"]
    result = subprocess.run(
        [*command, "-f", "json", "--progress-spinner", "off", "--timeout", "20"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        dependencies = json.loads(result.stdout)["dependencies"]
    except (json.JSONDecodeError, KeyError):
        dependencies = None
    audited = [d for d in dependencies or [] if "skip_reason" not in d]
    if not audited:
        # No CI run can reach it either: this is not a missing tool, so it
        # skips (with the reason) even with CI=true.
        why = (
            dependencies[0]["skip_reason"]
            if dependencies
            else (result.stderr.strip().splitlines() or ["no output"])[-1]
        )
        reason = f"pip-audit could not reach its vulnerability database from here ({why})"
        record(
            "41-pip-audit",
            f"pip-audit on the {len(pins)} pins of requirements.txt (every variant)",
            "static",
            "not run: the vulnerability database (PyPI's JSON API, OSV) is unreachable here",
            "0 known vulnerabilities",
        )
        pytest.skip(reason)
    vulnerable = [f"{d['name']} {d['version']}: {v['id']}" for d in audited for v in d["vulns"]]
    skipped = [f"{d['name']}: {d['skip_reason']}" for d in dependencies if "skip_reason" in d]
    record(
        "41-pip-audit",
        f"pip-audit on the {len(pins)} pins of requirements.txt (every variant)",
        "static",
        f"{len(vulnerable)} known vulnerabilities in {len(audited)} audited packages",
        "0 known vulnerabilities",
    )
    assert not vulnerable, "\n".join(vulnerable)
    assert not skipped, "\n".join(skipped)
