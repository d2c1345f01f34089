"""Write a development `.env` with a freshly generated secret key.

Copier runs this as a task after the first copy. It is idempotent: an existing
`.env` belongs to the user and is never touched, so running it twice (or from
an update) changes nothing. Standard library only: it runs with Copier's own
interpreter, before the project has a virtualenv.
"""

from __future__ import annotations

import os
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

POSTGRES_TEMPLATE = """\
# The password compose.yaml gives its PostgreSQL service (generated, like the key).
POSTGRES_PASSWORD={password}
"""


def write_dotenv(project_dir: Path, postgres: bool = False) -> bool:
    """Create `project_dir/.env` unless it exists; return whether it was written.

    With `postgres`, also a password for the compose file's database service.
    """
    dotenv = project_dir / ".env"
    if dotenv.exists():
        return False
    # 32 random bytes, hex encoded: what Flask's docs suggest for SECRET_KEY.
    text = DOTENV_TEMPLATE.format(secret=secrets.token_hex(32))
    if postgres:
        text += POSTGRES_TEMPLATE.format(password=secrets.token_urlsafe(24))
    # Created private (a secret: readable by its owner only), never widened.
    fd = os.open(dotenv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if not a.startswith("--")]
    project_dir = Path(args[0]) if args else Path.cwd()
    if write_dotenv(project_dir, postgres="--postgres" in argv):
        print(f"Wrote {project_dir / '.env'} with a new development secret key.")
    else:
        print(f"Kept the existing {project_dir / '.env'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
