"""probe_wsgi.py's app, with its /_chaos routes, by the name tests/live/test_boot.py serves."""

from probe_wsgi import app as app
