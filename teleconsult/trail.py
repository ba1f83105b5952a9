"""The audit rows of what commands do to patient data (an export is an action too).

A command that hands a patient's record out of the server (``teleconsult ecg export``,
``recording export``) appends one row to the data dir's audit trail *before* it writes
anything: if the trail cannot be written the export is refused, so no record leaves
without a trace. The actor is ``cli:<the operating-system user>``.
"""

from __future__ import annotations

import getpass
import time

from teleconsult.config import Config

__all__ = ["TrailError", "record_export"]


class TrailError(Exception):
    """The audit trail could not be written (the reason says why)."""


def record_export(
    config: Config,
    action: str,
    target: str,
    *,
    patient: str | None = None,
    consult: str | None = None,
    details: dict[str, str] | None = None,
) -> None:
    """Append ``action`` on ``target`` to the audit trail of ``config``'s store.

    Raises
    ------
    TrailError
        The store cannot be opened or written.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from consults.errors import RepositoryError
    from consults.repositories import AuditEvent
    from store.engine import StoreConfigError
    from store.stores import open_store

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    try:
        stores = open_store(data_dir=config.data_dir, database_url=config.backends.database())
    except (StoreConfigError, SQLAlchemyError) as exc:
        raise TrailError(f"the audit trail cannot be opened: {exc}") from None
    try:
        stores.audit.append(
            AuditEvent(
                time.time(),
                action,
                actor=f"cli:{user}",
                target=target,
                patient=patient,
                consult=consult,
                details=details or {},
            )
        )
    except (RepositoryError, SQLAlchemyError) as exc:
        raise TrailError(f"the audit trail cannot be written: {exc}") from None
    finally:
        stores.close()
