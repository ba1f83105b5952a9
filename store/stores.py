"""Everything the server needs from the store, made from its configuration in one call.

``open_store(data_dir=..., database_url=...)`` makes the process's one engine, brings
the schema to the newest migration (unless told not to) and hands out every repository
on that engine. The composition root wires them into the packages that state the
Protocols (``consults``, ``sessions``); nothing else needs to know which database runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from store.accounts import SqlAuditSink, SqlCredentialRepository, SqlSessionRepository
from store.audit_reader import SqlAuditReader
from store.directory import SqlDirectoryRepository
from store.engine import open_engine
from store.migrate import upgrade
from store.secrets import SecretBox
from store.sessions import SqlSessionStore
from store.streams import SqlStreamRepository

__all__ = ["StoreUnavailable", "Stores", "open_store"]


class StoreUnavailable(RuntimeError):
    """The store fails its health check; the message says why (no URL, no secret)."""


@dataclass(frozen=True, kw_only=True)
class Stores:
    """The repositories of one engine.

    Attributes
    ----------
    directory, credentials, sessions, audit
        ``consults.repositories``: DirectoryRepository, CredentialRepository,
        SessionRepository (login sessions, API tokens), AuditSink.
    signaling
        ``sessions.store.Store`` for the signaling server (bans, rooms, its audit).
    streams
        The ECG streams' metadata (institution, room, consult, patient, samples).
    audit_reader
        The auditor's search of the trail (``consults.audit_trail.AuditReader``).
    """

    engine: Engine
    directory: SqlDirectoryRepository
    credentials: SqlCredentialRepository
    sessions: SqlSessionRepository
    audit: SqlAuditSink
    signaling: SqlSessionStore
    streams: SqlStreamRepository
    audit_reader: SqlAuditReader

    def health(self) -> str | None:
        """None when the store works, else why not (for ``/healthz``; off the loop)."""
        return self.signaling.health()

    def check(self) -> None:
        """Raise :class:`StoreUnavailable` (with the reason) unless :meth:`health` is None.

        The shape of the edge's ``HealthCheck``: ``health_checks={"store": stores.check}``.
        """
        reason = self.health()
        if reason is not None:
            raise StoreUnavailable(reason)

    def close(self) -> None:
        """Close the engine's connections."""
        self.engine.dispose()


def open_store(
    *,
    data_dir: Path,
    database_url: str | None = None,
    totp_key: bytes | None = None,
    migrate: bool = True,
    clock: Callable[[], float] = time.time,
) -> Stores:
    """The store of a server: PostgreSQL at ``database_url`` if given, else SQLite in
    ``data_dir``; schema upgraded to head when ``migrate``.

    Parameters
    ----------
    totp_key
        32 bytes sealing TOTP secrets at rest (:mod:`store.secrets`); None stores them
        plain.
    clock
        Seconds since the epoch, for creation times the domain does not carry.

    Raises
    ------
    store.engine.StoreConfigError
        An unusable URL or data directory.
    sqlalchemy.exc.SQLAlchemyError
        The database cannot be reached or migrated.
    """
    engine = open_engine(data_dir=data_dir, url=database_url)
    if migrate:
        upgrade(engine)
    box = SecretBox(totp_key)
    return Stores(
        engine=engine,
        directory=SqlDirectoryRepository(engine, secrets=box, clock=clock),
        credentials=SqlCredentialRepository(engine, secrets=box),
        sessions=SqlSessionRepository(engine),
        audit=SqlAuditSink(engine),
        signaling=SqlSessionStore(engine),
        streams=SqlStreamRepository(engine),
        audit_reader=SqlAuditReader(engine),
    )
