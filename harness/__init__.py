"""The template's test harness: what tests/, bench/ and dev.py share.

One door for each job, so a test says what it does and not how:

- render.py      render the template, look at what it produced
- venvs.py       the shared virtualenvs a rendered project runs from, and their environments
- serving.py     `serve(project, ...)`: a rendered project under its server, maybe behind
                 its nginx, as one handle (process, URL, logs, stop)
- waiting.py     `eventually(check, timeout)`: every wait in the suite
- processes.py   start and stop a process by its PID, read and wait for its log
- http.py        one request over loopback (TCP or a unix socket)
- load.py, clients.py, chaos.py   bounded load, slow clients, processes seen from /proc
- apps/          the probe and chaos apps a test adds to a copy of a project (real .py files)
- nginx.py, postgres.py           private servers the projects talk to
- podman.py, provisioning.py, images.py   containers: podman's settings, the base images
                 (debootstrap), and the project's image
- template_versions.py            template releases as git commits, `copier update`
- tools.py, tables.py, figures.py, actionlint.py   tools, reports and figures

Nothing here imports from tests/.
"""

from pathlib import Path

#: The template repository (its root: copier.yml, template/, tests/).
REPO = Path(__file__).resolve().parent.parent
