"""One engine per process, on SQLite (the embedded default) or PostgreSQL.

Where the database is: ``database_url`` when given (``postgresql+psycopg://...`` for a
deployment of several nodes; ``postgresql://`` is taken to mean psycopg 3), otherwise
``DATA_DIR/teleconsult.sqlite3``. The same code runs on both; what differs is set up
here and nowhere else:

- SQLite: WAL (readers never wait for the writer), ``synchronous=FULL`` (a commit that
  returned is on disk), ``foreign_keys=ON`` and a busy timeout, set on every new
  connection in a ``connect`` event. pysqlite's own transaction handling is switched
  off (``isolation_level=None``) and SQLAlchemy emits ``BEGIN`` itself, so that a
  transaction is one real SQLite transaction from its first statement (SQLAlchemy's
  documented recipe). The data directory is created 0700 and the database file 0600
  (SQLite gives its ``-wal`` and ``-shm`` files the database file's mode).
- PostgreSQL: psycopg 3, a pool that pings a connection before handing it out, so a
  restarted server costs one failed ping rather than an error to a caller.

Transactions: callers use ``with engine.begin() as conn`` for one unit of work. The
first statement of a transaction that writes should be a write (the audit chain locks
its head row first, :mod:`store.audit`): on SQLite that takes the write lock with the
busy timeout applying, where a read followed by a write could fail at once with
``SQLITE_BUSY`` when another writer committed in between.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

DB_FILE: Final = "teleconsult.sqlite3"
# How long a writer waits for another writer's lock before failing, in ms.
BUSY_TIMEOUT_MS: Final = 10_000
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600


class StoreConfigError(ValueError):
    """A database URL or data directory that cannot be used; the message says why."""


def database_url(*, data_dir: Path | None = None, url: str | None = None) -> URL:
    """The SQLAlchemy URL of the store: ``url`` if given, else SQLite in ``data_dir``.

    Raises
    ------
    StoreConfigError
        A URL that is neither SQLite nor PostgreSQL, or neither argument given.
    """
    if url:
        try:
            parsed = make_url(url)
        except SQLAlchemyError as exc:
            raise StoreConfigError(f"not a database URL: {exc}") from exc
        if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
            return parsed.set(drivername="postgresql+psycopg")
        if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
            return parsed.set(drivername="sqlite+pysqlite")
        raise StoreConfigError(
            f"unsupported database {parsed.drivername!r}: use sqlite:/// or postgresql+psycopg://"
        )
    if data_dir is None:
        raise StoreConfigError("no data directory and no database URL")
    return URL.create("sqlite+pysqlite", database=str(data_dir / DB_FILE))


def is_sqlite(engine: Engine) -> bool:
    """Whether the engine is on SQLite (else PostgreSQL)."""
    return engine.dialect.name == "sqlite"


def sqlite_path(engine: Engine) -> Path:
    """The database file of a SQLite engine."""
    name = engine.url.database
    if not name or name == ":memory:":
        raise StoreConfigError("an in-memory SQLite database has no file")
    return Path(name)


def prepare_sqlite_file(path: Path) -> None:
    """Create the data directory (0700) and the database file (0600) if absent.

    An existing file keeps its content; its mode is narrowed to 0600 (it holds password
    hashes and the audit trail).
    """
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=DIR_MODE, parents=True)
        # mkdir's mode is filtered by the umask; say it again.
        folder.chmod(DIR_MODE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.close(fd)
    if stat.S_IMODE(path.stat().st_mode) != FILE_MODE:
        path.chmod(FILE_MODE)


def _on_sqlite_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # pysqlite would otherwise BEGIN only before DML and commit on its own before DDL.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS:d}")
    finally:
        cursor.close()


def _on_sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def open_engine(
    *, data_dir: Path | None = None, url: str | None = None, echo: bool = False
) -> Engine:
    """The process's engine: ``url`` if given, else SQLite in ``data_dir``.

    Creating it opens no connection on PostgreSQL; on SQLite it creates the data
    directory and the database file with private modes. Call it once per process and
    share the engine (it holds the pool); :func:`store.migrate.upgrade` brings the
    schema to head.

    Raises
    ------
    StoreConfigError
        See :func:`database_url`; also a data directory that cannot be created.
    """
    target = database_url(data_dir=data_dir, url=url)
    if target.drivername.startswith("sqlite"):
        if target.database and target.database != ":memory:":
            try:
                prepare_sqlite_file(Path(target.database))
            except OSError as exc:
                raise StoreConfigError(
                    f"cannot create the database {target.database}: {exc.strerror}"
                ) from exc
        engine = create_engine(target, echo=echo)
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    return create_engine(target, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10)


def reader(engine: Engine) -> Engine:
    """The engine for reads that need no transaction of their own.

    On PostgreSQL, autocommit: a lookup is one round trip instead of three (``BEGIN``,
    the query, ``COMMIT``); each statement still sees one consistent snapshot. SQLite's
    transactions cost no round trip: the engine itself.
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def health(engine: Engine) -> str | None:
    """A cheap probe for ``/healthz``: None when a round trip works, else why not.

    One ``SELECT 1`` on a pooled connection (sub-millisecond on SQLite, one round trip
    on PostgreSQL). It does not prove that writes succeed (a full disk still answers
    reads): :class:`store.sessions.SqlSessionStore` also reports its last failed write.
    Run it off the event loop. The reason names the error class only, never the URL.
    """
    try:
        with engine.connect() as conn:
            conn.execute(select(1)).scalar_one()
    except DBAPIError as exc:
        return f"database unreachable ({type(exc.orig).__name__})"
    except (SQLAlchemyError, OSError) as exc:
        return f"database unreachable ({type(exc).__name__})"
    return None
