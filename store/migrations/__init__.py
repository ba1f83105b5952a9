"""Alembic migrations of the store, shipped inside the package and run by
:func:`store.migrate.upgrade` (there is no ``alembic.ini``)."""
