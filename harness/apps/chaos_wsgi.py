"""The project's own app (its wsgi.py) with the /_chaos routes registered."""

from chaos_routes import bp
from wsgi import app

app.register_blueprint(bp)
