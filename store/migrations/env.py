"""Alembic's environment: run on the connection :func:`store.migrate.upgrade` hands over.

There is no offline (SQL script) mode and no URL in a file: the store's own engine,
with its connect events (WAL, foreign keys), does the work. SQLite alters tables in
batch mode (copy and move), the only way it can change most constraints.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from store.schema import metadata

connection = context.config.attributes["connection"]
assert isinstance(connection, Connection), "run through store.migrate.upgrade"
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
