"""The template's test harness: what tests/, bench/ and dev.py share, one door for each job
(each module's docstring says more; nothing here imports from tests/):

- render, venvs: the template rendered; the virtualenvs and environments projects run with
- serving: `serve(project, ...)`, a project under its server, maybe behind its nginx
- waiting: `eventually(check, timeout)`, every wait; processes: start, read, stop by PID
- http, load, clients, chaos: requests, bounded load, slow clients, workers seen from /proc
- apps/: the probe and chaos apps a test copies into a project (real .py files)
- nginx, postgres, podman, provisioning, images, systemd_host: what the projects run on
- readme, procfile, project_ci: what a user, a platform or CI runs, as it runs it
- template_versions: template releases as git commits, `copier update`
- tools, actionlint, browser, tables, figures: tools, Chromium, reports and figures
"""

from pathlib import Path

#: The template repository (its root: copier.yml, template/, tests/).
REPO = Path(__file__).resolve().parent.parent
