"""A private PostgreSQL server for tests: Debian's binaries on a temporary directory.

``PostgresServer.start()`` runs ``initdb`` and ``pg_ctl start`` from
``/usr/lib/postgresql/<newest>/bin`` on a fresh directory, listening on a free loopback
port only (``listen_addresses=127.0.0.1``, the unix socket inside the directory, so it
never meets a system cluster). PostgreSQL refuses to run as root, and CI runs the tests
as root: then the server runs as the ``postgres`` system user (made by the Debian
package) through ``runuser``, on a directory chowned to it. Trust authentication on
loopback; the superuser is ``postgres``. ``fsync=off``: these servers hold throwaway
test data, and the tests check behaviour, not PostgreSQL's own crash safety.

``create_database()`` gives each test an empty database of its own.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg
import pytest
from psycopg import sql

PG_ROOT: Final = Path("/usr/lib/postgresql")
START_TIMEOUT_S: Final = 60


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries (or the user to run them as) are not on this machine."""


def pg_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/N/bin`` holding ``initdb`` and ``pg_ctl``."""
    found = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists() and (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresUnavailable(
            f"no PostgreSQL server binaries under {PG_ROOT} (apt-get install postgresql)"
        )
    return found[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL server on a temporary directory and a free loopback port."""

    def __init__(self) -> None:
        self.bin = pg_bin_dir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable("running as root and no 'postgres' user") from exc
        self.folder = Path(tempfile.mkdtemp(prefix="teleconsult-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.started = False

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            raise RuntimeError(f"{what} failed ({result.returncode}): {result.stderr.strip()}")

    def start(self, *, durable: bool = False) -> PostgresServer:
        """initdb, then start and wait until it accepts connections.

        ``durable`` keeps PostgreSQL's fsync on (benchmarks); tests leave it off.
        """
        if self.as_root:
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
        self._check(
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ),
            "initdb",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.folder} -c max_connections=100"
        )
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._check(
            self._run(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.folder / "server.log"),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ),
            "pg_ctl start",
        )
        self.started = True
        return self

    @property
    def admin_url(self) -> str:
        """The URL of the ``postgres`` database as the superuser (psycopg 3)."""
        return self.url("postgres")

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def libpq_url(self, database: str) -> str:
        """The libpq URL (for ``psql``, ``pg_dump``) of ``database``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database; its name."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, closing any connection left to it."""
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        if self.started:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)


_shared: PostgresServer | None = None


def shared_server() -> PostgresServer:
    """One server for the whole test session (started at first use, stopped at exit).

    Raises
    ------
    PostgresUnavailable
        No binaries: callers skip.
    """
    global _shared
    if _shared is None:
        server = PostgresServer()
        atexit.register(server.stop)
        _shared = server.start()
    return _shared


@dataclass(frozen=True)
class Database:
    """An empty database for one test: its kind, SQLAlchemy URL and where it lives."""

    kind: str  # "sqlite" or "postgresql"
    url: str
    data_dir: Path
    server: PostgresServer | None = None
    name: str = ""

    @property
    def libpq_url(self) -> str:
        """For psql and pg_dump (PostgreSQL only)."""
        assert self.server is not None
        return self.server.libpq_url(self.name)


def make_database(kind: str, tmp_path: Path) -> Database:
    """An empty SQLite database in ``tmp_path/data``, or one on the shared server."""
    data_dir = tmp_path / "data"
    if kind == "sqlite":
        return Database(kind, f"sqlite+pysqlite:///{data_dir / 'teleconsult.sqlite3'}", data_dir)
    try:
        server = shared_server()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    name = server.create_database()
    return Database(kind, server.url(name), data_dir, server, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database, once on SQLite and once on PostgreSQL."""
    made = make_database(request.param, tmp_path)
    yield made
    if made.server is not None:
        made.server.drop_database(made.name)
