"""``teleconsult backup --out FILE`` and ``teleconsult restore FILE``.

``backup`` copies the store while the server runs:

- SQLite: the online backup API (``sqlite3.Connection.backup``) copies a consistent
  snapshot in one step (in WAL mode the server's writes carry on meanwhile) into a new
  file beside ``FILE``, which is fsynced and renamed into place (a crash never leaves
  half a backup under the name), mode 0600;
- PostgreSQL: ``pg_dump -Fc`` (custom format, one consistent snapshot), the password
  passed in the environment, never on the command line.

``restore FILE`` loads a backup into an *empty* store (a data folder without a
database, or a PostgreSQL database without tables): it never overwrites. The kind of
backup is told by its first bytes (``SQLite format 3``, ``PGDMP``). After loading, the
schema is brought to the newest migration and the audit chain is verified: exit 0
when it holds, 1 when the backup's chain is broken, 2 for anything else that failed.

Only the standard library is imported here; SQLAlchemy when a command runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from teleconsult.audit_cmd import CommandError, add_database_arguments, open_existing

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import URL

__all__ = ["register", "run_backup", "run_restore"]

SQLITE_MAGIC: Final = b"SQLite format 3\x00"
PGDUMP_MAGIC: Final = b"PGDMP"
FILE_MODE: Final = 0o600
PG_TOOL_TIMEOUT_S: Final = 3600


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``backup`` and ``restore`` to the command line."""
    backup = commands.add_parser("backup", help="copy the store (online) into one file")
    backup.add_argument("--out", required=True, type=Path, metavar="FILE", help="new file")
    add_database_arguments(backup)
    backup.set_defaults(handler=run_backup)
    restore = commands.add_parser("restore", help="load a backup into an empty store")
    restore.add_argument("backup", type=Path, metavar="FILE", help="a file made by backup")
    add_database_arguments(restore)
    restore.set_defaults(handler=run_restore)


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        raise CommandError(f"{name} is not installed (apt-get install postgresql-client)")
    return str(candidates[-1])


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URL without the password, and the environment carrying it."""
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _run_pg(argv: list[str], env: dict[str, str], what: str) -> None:
    try:
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=PG_TOOL_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError(f"{what} failed: {exc}") from exc
    if result.returncode != 0:
        # pg_* messages name the database and the failing object, not the password.
        raise CommandError(f"{what} failed: {result.stderr.strip()[-500:]}")


def _new_private_file(path: Path) -> None:
    """Create ``path``, empty, mode 0600; fail if it exists."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE))


def _sqlite_copy(source: Path, target: Path) -> None:
    """Online backup of ``source`` into the empty file ``target``, fsynced."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        # All pages in one step: one read snapshot, which in WAL mode blocks no writer.
        # Stepwise copying would restart whenever the server writes, possibly forever.
        src.backup(dst, pages=-1)
        # A standalone file: no WAL beside it to lose.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()
    with open(target, "rb") as handle:
        os.fsync(handle.fileno())


def run_backup(args: argparse.Namespace) -> int:
    """Write a backup; 0 done, 2 failed (nothing left under ``--out``)."""
    from store.audit import head
    from store.engine import is_sqlite, sqlite_path

    out: Path = args.out
    try:
        if out.exists():
            raise CommandError(f"{out} exists: give a new file")
        engine = open_existing(args)
    except CommandError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 2
    try:
        with engine.connect() as conn:
            head_seq, head_hash = head(conn)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")
        partial.unlink(missing_ok=True)
        _new_private_file(partial)
        try:
            if is_sqlite(engine):
                _sqlite_copy(sqlite_path(engine), partial)
            else:
                url, env = _libpq(engine.url)
                _run_pg(
                    [_pg_tool("pg_dump"), "-Fc", "--no-owner", "-f", str(partial), "-d", url],
                    env,
                    "pg_dump",
                )
            partial.rename(out)
        finally:
            partial.unlink(missing_ok=True)
    except (CommandError, OSError, sqlite3.Error) as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(
        f"backup written: {out} ({out.stat().st_size} bytes; audit head seq {head_seq}, "
        f"hash {head_hash})"
    )
    return 0


def _kind(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            start = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
    if start.startswith(SQLITE_MAGIC):
        return "sqlite"
    if start.startswith(PGDUMP_MAGIC):
        return "postgresql"
    raise CommandError(f"{path} is not a backup made by teleconsult backup")


def _open_empty(args: argparse.Namespace) -> Engine:
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from store.engine import DB_FILE, StoreConfigError, open_engine

    if not args.database_url and (args.data_dir / DB_FILE).exists():
        raise CommandError(f"{args.data_dir / DB_FILE} exists: restore only into an empty store")
    try:
        engine = open_engine(data_dir=args.data_dir, url=args.database_url)
        tables = inspect(engine).get_table_names()
    except StoreConfigError as exc:
        raise CommandError(str(exc)) from exc
    except SQLAlchemyError as exc:
        raise CommandError(f"cannot open the database: {type(exc).__name__}") from exc
    if tables:
        engine.dispose()
        raise CommandError("the target database has tables: restore only into an empty one")
    return engine


def run_restore(args: argparse.Namespace) -> int:
    """Load a backup into an empty store, migrate, verify: 0, 1 (chain broken) or 2."""
    from sqlalchemy.exc import SQLAlchemyError

    from store.audit import verify
    from store.engine import StoreConfigError, database_url, is_sqlite, sqlite_path
    from store.migrate import upgrade

    try:
        kind = _kind(args.backup)
        try:
            target_url = database_url(data_dir=args.data_dir, url=args.database_url)
        except StoreConfigError as exc:
            raise CommandError(str(exc)) from exc
        if kind != ("sqlite" if target_url.drivername.startswith("sqlite") else "postgresql"):
            raise CommandError(f"a {kind} backup cannot be restored into this database")
        engine = _open_empty(args)
    except CommandError as exc:
        print(f"restore: {exc}", file=sys.stderr)
        return 2
    try:
        if is_sqlite(engine):
            engine.dispose()
            target = sqlite_path(engine)
            # open_engine made an empty file: the copy replaces it.
            for suffix in ("", "-wal", "-shm"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            _new_private_file(target)
            _sqlite_copy(args.backup, target)
        else:
            url, env = _libpq(engine.url)
            _run_pg(
                [
                    _pg_tool("pg_restore"),
                    "--no-owner",
                    "--exit-on-error",
                    "--single-transaction",
                    "-d",
                    url,
                    str(args.backup),
                ],
                env,
                "pg_restore",
            )
        upgrade(engine)
        report = verify(engine)
    except (CommandError, OSError, sqlite3.Error, SQLAlchemyError) as exc:
        print(f"restore: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if not report.ok:
        print(
            f"restored, but the audit chain is BROKEN at seq {report.first_bad_seq}: "
            f"{report.problem}"
        )
        return 1
    print(
        f"restored {args.backup}: audit chain holds, {report.rows} rows, head seq "
        f"{report.head_seq}, hash {report.head_hash}"
    )
    return 0
