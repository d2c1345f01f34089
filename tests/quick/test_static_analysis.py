"""Security linters on what the template generates: bandit on the code of every
variant, pip-audit on the pinned dependencies."""

from __future__ import annotations

import json
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.utils import canonicalize_name

from harness import REPO
from harness.figures import record
from harness.render import SWITCHES
from harness.tools import run_tool
from locks.update import VARIANTS as LOCK_VARIANTS
from locks.update import variant_dir

# Python code varies with the database and the server; the switches only add non-Python
# files. Each database is rendered with every switch on (gunicorn) and off (granian).
DATABASES = yaml.safe_load((REPO / "copier.yml").read_text())["database"]["choices"].values()
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


def test_bandit_finds_nothing_at_medium_or_above_in_any_variant(rendered: Any) -> None:
    projects = {variant: rendered(**answers) for variant, answers in VARIANTS.items()}
    # bandit's default excludes match ".git" as a substring, which would also skip
    # .github/scripts: name the folders to skip instead.
    skip = ["-x", "*/.git/*,*/__pycache__/*", "-f", "json", "-q", "--severity-level", "medium"]
    result = run_tool("bandit", "-r", *map(str, projects.values()), *skip, timeout=300)
    assert result.returncode in (0, 1), result.stderr  # 1: it found something
    report = json.loads(result.stdout)
    assert not report["errors"], report["errors"]
    scanned = [Path(name) for name in report["metrics"] if name != "_totals"]
    for variant, project in projects.items():
        found = [name for name in scanned if name.is_relative_to(project)]
        assert len(found) == len(list(project.rglob("*.py"))), f"{variant}: files skipped"
    findings = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}"
        for r in report["results"]
    ]
    totals = report["metrics"]["_totals"]
    record(
        "40-bandit",
        f"bandit on the generated code of {len(VARIANTS)} variants ({', '.join(VARIANTS)})",
        "static",
        f"{len(findings)} medium/high in {len(scanned)} files, {totals['loc']} lines "
        f"({totals['SEVERITY.LOW']} low-severity ones not counted: asserts in tests and the like)",
        "0 medium or high",
    )
    assert not findings, "\n".join(findings)


def test_pip_audit_finds_no_known_vulnerability_in_the_pins(tmp_path: Path) -> None:
    # Every pin of every variant's locks/<database>-<server>/requirements.txt (which a
    # project includes whole), markers dropped so that waitress (Windows only) is audited
    # too, hashes (indented lines) and line continuations dropped.
    pins = sorted(
        {
            line.split(";")[0].rstrip(" \\")
            for variant in LOCK_VARIANTS
            for line in (variant_dir(*variant) / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith(("#", " "))
        }
    )
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(pins) + "\n")
    # --no-deps --disable-pip: the file pins everything, so audit exactly it,
    # without building a virtualenv to resolve it.
    command = ["-r", str(requirements), "--no-deps", "--disable-pip", "-f", "json"]
    result = run_tool(
        "pip-audit", *command, "--progress-spinner", "off", "--timeout", "20", timeout=300
    )
    scenario = f"pip-audit on the {len(pins)} pins of requirements.txt (every variant)"
    figure = partial(record, "41-pip-audit", scenario, "static", bound="0 known vulnerabilities")
    unreachable = vulnerability_database_unreachable(result)
    if unreachable:
        # No CI run can reach it either: this is not a missing tool, so it
        # skips (with the reason) even with CI=true. Anything else fails.
        figure(figure=f"not run: the vulnerability database is unreachable here ({unreachable})")
        pytest.skip(f"pip-audit could not reach its vulnerability database: {unreachable}")
    assert result.returncode in (0, 1), result.stderr  # 1: it found vulnerabilities
    dependencies = json.loads(result.stdout)["dependencies"]
    audited = sorted(canonicalize_name(d["name"]) for d in dependencies)
    assert audited == sorted(canonicalize_name(pin.split("==")[0]) for pin in pins)
    vulnerable = [
        f"{d['name']} {d['version']}: {v['id']}" for d in dependencies for v in d.get("vulns", [])
    ]
    skipped = [f"{d['name']}: {d['skip_reason']}" for d in dependencies if "skip_reason" in d]
    audited_count = len(dependencies) - len(skipped)
    figure(figure=f"{len(vulnerable)} known vulnerabilities in {audited_count} audited packages")
    assert not vulnerable, "\n".join(vulnerable)
    assert not skipped, "\n".join(skipped)


# How pip-audit ends when it cannot reach the vulnerability service (its last line of stderr).
ERRORS = ("ConnectionError", "ConnectTimeout", "ReadTimeout", "SSLError")
NETWORK_ERRORS = tuple(f"requests.exceptions.{error}" for error in ERRORS)
NOT_ON_PYPI = "Dependency not found on PyPI"


def vulnerability_database_unreachable(result: subprocess.CompletedProcess[str]) -> str | None:
    """Why pip-audit could not ask its database: a network error, or PyPI's JSON API
    answering "not found" for every pin (a registry proxy without that API); else None."""
    last = (result.stderr.strip().splitlines() or [""])[-1]
    if result.returncode != 0 and last.startswith(NETWORK_ERRORS):
        return last.split(": ", 1)[0] + ": " + last.split("(Caused by ", 1)[-1][:120]
    if result.returncode == 0:
        try:
            dependencies = json.loads(result.stdout)["dependencies"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return None
        reasons = [d.get("skip_reason", "") for d in dependencies]
        if reasons and all(reason.startswith(NOT_ON_PYPI) for reason in reasons):
            return f"PyPI's JSON API knows none of the {len(reasons)} pins"
    return None


NOT_FOUND = json.dumps(
    {"dependencies": [{"name": "flask", "skip_reason": f"{NOT_ON_PYPI}: flask (3.1.2)"}]}
)


@pytest.mark.parametrize(
    ("code", "stdout", "stderr", "recognised"),
    [
        (1, "", "Traceback ...\nrequests.exceptions.ConnectionError: (Caused by "
         "NameResolutionError(...))", True),
        (0, NOT_FOUND, "", True),
        (1, "", "Traceback ...\nKeyError: 'vulns'", False),  # a crash
        (0, "{not json", "", False),  # a malformed report
        (0, json.dumps({"dependencies": [
            {"name": "flask", "skip_reason": f"{NOT_ON_PYPI}: flask"},
            {"name": "six", "version": "1.17.0", "vulns": []}]}), "", False),  # a partial answer
        (1, "", "ERROR: invalid requirement: 'flask=='", False),  # bad pins
    ],
    ids=["network", "json-api-absent", "crash", "malformed", "partial", "bad-pins"],
)  # fmt: skip
def test_pip_audit_skips_only_when_its_database_is_unreachable(
    code: int, stdout: str, stderr: str, recognised: bool
) -> None:
    result = subprocess.CompletedProcess(["pip-audit"], code, stdout, stderr)
    assert (vulnerability_database_unreachable(result) is not None) is recognised
