"""One SQL store (SQLAlchemy Core on SQLite or PostgreSQL): the schema, Alembic
migrations, the repositories for ``sessions`` and ``consults``, and the audit chain."""
