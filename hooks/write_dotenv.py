"""Write a development `.env` with a freshly generated secret key.

Copier runs this as a task after the first copy. It is idempotent: an existing
`.env` belongs to the user and is never touched, so running it twice (or from
an update) changes nothing. Standard library only: it runs with Copier's own
interpreter, before the project has a virtualenv.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

DOTENV_TEMPLATE = """\
# Development settings, read by `flask run` (python-dotenv) and honcho.
# This file is yours: it is git-ignored and `copier update` never rewrites it.
# Production reads the same names from the real environment instead.
FLASK_DEBUG=1
# Generated for this checkout only; never reuse it in production.
FLASK_SECRET_KEY={secret}
"""


def write_dotenv(project_dir: Path) -> bool:
    """Create `project_dir/.env` unless it exists; return whether it was written."""
    dotenv = project_dir / ".env"
    if dotenv.exists():
        return False
    # 32 random bytes, hex encoded: what Flask's docs suggest for SECRET_KEY.
    dotenv.write_text(DOTENV_TEMPLATE.format(secret=secrets.token_hex(32)))
    dotenv.chmod(0o600)  # a secret: readable by its owner only
    return True


def main(argv: list[str]) -> int:
    project_dir = Path(argv[1]) if len(argv) > 1 else Path.cwd()
    if write_dotenv(project_dir):
        print(f"Wrote {project_dir / '.env'} with a new development secret key.")
    else:
        print(f"Kept the existing {project_dir / '.env'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
