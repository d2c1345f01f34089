"""How Alembic connects: through the Flask app, so it uses the app's database."""

from __future__ import annotations

import logging
from logging.config import fileConfig
from typing import Any

from alembic import context
from flask import current_app

config = context.config
# Keep the app's own loggers: fileConfig would otherwise disable them.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

db = current_app.extensions["migrate"].db
# Autogenerate (`flask db migrate`) compares the models' tables to the database.
target_metadata = db.metadata


def run_migrations_offline() -> None:
    """`flask db upgrade --sql`: print the SQL instead of running it."""
    url = db.engine.url.render_as_string(hide_password=False)
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on a connection from the app's engine."""

    def skip_empty_autogenerate(context: Any, revision: Any, directives: list[Any]) -> None:
        # `flask db migrate` with no model change would write an empty file.
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")

    conf_args = current_app.extensions["migrate"].configure_args
    conf_args.setdefault("process_revision_directives", skip_empty_autogenerate)
    with db.engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, **conf_args)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
