"""Schema migrations, run from code: ``store.migrate.upgrade(engine)``.

The migrations live in ``store/migrations/versions`` (shipped with the package; no
``alembic.ini``). ``upgrade`` runs every pending one in a single transaction (DDL is
transactional on SQLite and PostgreSQL, so a failed upgrade leaves the previous
schema). Several nodes starting at once on one PostgreSQL database take turns on an
advisory lock; on SQLite the write lock does the same.

For developers: ``python -m store.migrate revision -m "what changes"`` writes a new
migration from the difference between head and :mod:`store.schema` (review it like
code), and ``python -m store.migrate check`` prints that difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, select

from store.schema import metadata

MIGRATIONS: Final = Path(__file__).resolve().parent / "migrations"
# Key of the PostgreSQL advisory lock that serialises upgrades ("tcmigrat" in ASCII).
MIGRATION_LOCK_KEY: Final = 0x7463_6D69_6772_6174


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """The newest migration's id."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "no migrations"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (default: the newest), in one transaction."""
    config = _config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database back to ``revision`` (``"base"``: empty), in one transaction.

    For developers and for testing each migration's way back; a deployment restores a
    backup instead.
    """
    config = _config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def differences(engine: Engine) -> list[Any]:
    """What Alembic finds between the database and :mod:`store.schema` (empty: none)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def _revision(message: str, rev_id: str | None) -> None:
    # Autogenerate against an empty SQLite database brought to head.
    from store.engine import open_engine

    with tempfile.TemporaryDirectory() as folder:
        engine = open_engine(data_dir=Path(folder))
        upgrade(engine)
        config = _config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m store.migrate revision -m MESSAGE`` or ``check``."""
    parser = argparse.ArgumentParser(prog="python -m store.migrate")
    sub = parser.add_subparsers(dest="command", required=True)
    rev = sub.add_parser("revision", help="write a migration from the schema's changes")
    rev.add_argument("-m", "--message", required=True)
    rev.add_argument("--rev-id", help="the new revision's id (default: random)")
    sub.add_parser("check", help="print what head lacks of store.schema")
    args = parser.parse_args(argv)
    if args.command == "revision":
        _revision(args.message, args.rev_id)
        return 0
    from store.engine import open_engine

    with tempfile.TemporaryDirectory() as folder:
        engine = open_engine(data_dir=Path(folder))
        upgrade(engine)
        found = differences(engine)
        engine.dispose()
    for difference in found:
        print(difference)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
