"""Entry point for the benchmark: the project's own app plus the bench routes.

Written next to wsgi.py in the benchmark's copy of the project only; the
template never ships it. Servers load it as `bench_wsgi:app`.
"""

from bench_routes import bp
from wsgi import app

app.register_blueprint(bp)
