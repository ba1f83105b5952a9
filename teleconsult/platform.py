"""Wiring of the clinical platform: the store, accounts and directory, the REST API.

The composition root for what the server needs beyond rooms and ECG streams: one call,
:func:`open_platform`, opens the store (SQLite in the data dir or PostgreSQL), brings its
schema to head, and builds the accounts logic, the directory administration, the device
credential check and the REST controllers over it. The server hands
:attr:`Platform.api`'s parts to the edge (``route_handlers``, ``dependencies``,
``middleware``), :attr:`Platform.stores` ``.signaling`` to the signaling pump as its
``Store``, and :attr:`Platform.devices` to the ``/device`` endpoint.

Viewing rights decide on the event loop, so they read the institution tree, the
service relations and which institution each registered cart belongs to from memory:
:class:`DirectorySnapshot` holds the last copy and :meth:`DirectorySnapshot.refresh`
(a worker thread, every ``refresh_s`` and after each start) reads them again; an
admin's change is in force within that interval.

The field key (``DATA_DIR/keys/field.key``, 32 random bytes, 0600 in a 0700 folder)
seals TOTP secrets at rest; it is created on first start and must be backed up with
the database (``teleconsult backup`` says so).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from api.audit import AuditApi, audit_api
from api.auth import AccountApi, account_api
from api.consults import ConsultApi, consult_api
from api.edge_config import RecordUploadConfig
from api.reading_fhir import ReadingFhirController
from api.reading_stats import ReadingStatsApi, reading_stats_api
from api.reading_upload import RecordStore, RecordUploads, UploadedOrStreamed, record_upload_api
from api.readings import EcgSignals, ReadingApi, reading_api
from api.session import SessionConfig
from api.webhooks import WebhookSender
from consults.accounts import (
    AccountPolicy,
    Accounts,
    DeviceCredentials,
    DirectoryAdmin,
    Revocations,
)
from consults.audit_trail import AuditTrail
from consults.directory import ServiceRelation
from consults.reading_service import ReadingNotice, ReadingNotifier, ReadingService
from consults.repositories import DeviceFilter, DirectoryRepository, PageRequest
from consults.requests import FieldCipher
from consults.rights import Tree
from consults.service import ConsultService, Notice, Notifier, WebhookOutbox, Webhooks
from consults.settings import ConsultSettings, ReadingSettings
from store.consult_stats import SqlConsultStatistics
from store.consult_webhooks import SqlWebhookRepository
from store.consults import FileBlobStore, SqlConsultRepository
from store.reading_stats import SqlReadingStatistics
from store.readings import SqlReadingRepository
from store.secrets import SecretBox, SecretError, load_or_create_key
from store.stores import Stores, open_store

if TYPE_CHECKING:
    from consults.reading_repositories import ReadingRecord
    from ecg.annotate import AnnotateConfig
    from ecg.record import Record

__all__ = [
    "FIELD_KEY_FILE",
    "DirectorySnapshot",
    "Platform",
    "PlatformError",
    "RevocationRelay",
    "load_field_key",
    "open_platform",
]

logger = logging.getLogger(__name__)

FIELD_KEY_FILE: Final = Path("keys") / "field.key"
ATTACHMENTS_DIR: Final = "attachments"  # consult attachments in the data dir
RECORDS_DIR: Final = "records"  # uploaded ECG records (WFDB) in the data dir


class PlatformError(Exception):
    """The platform cannot start (the reason says what to fix)."""


def load_field_key(data_dir: Path) -> bytes:
    """The data dir's field key, made on first use; refused when others may read it."""
    path = data_dir / FIELD_KEY_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        key = load_or_create_key(path)
    except SecretError as exc:
        raise PlatformError(str(exc)) from None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PlatformError(f"{path} is readable by others (mode {mode:o}): chmod 600 it")
    return key


class DirectorySnapshot:
    """The institution tree and the service relations, from memory (a
    :class:`signaling.ecg_access.DirectoryView`), refreshed off the event loop."""

    def __init__(self, directory: DirectoryRepository, *, refresh_s: float = 5.0) -> None:
        self._directory = directory
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._tree = Tree(())
        self._relations: tuple[ServiceRelation, ...] = ()
        self._carts: dict[str, str] = {}

    def tree(self) -> Tree:
        return self._tree

    def relations(self) -> Sequence[ServiceRelation]:
        return self._relations

    def institution_of_device(self, device_id: str) -> str | None:
        """The institution a registered cart belongs to (revoked ones too: their stored
        streams still belong to it); None for an identity that is not registered."""
        return self._carts.get(device_id)

    def device_seen(self, device_id: str, institution: str) -> None:
        """A cart just authenticated with its registration (its streams are attributed at
        once, before the next refresh)."""
        self._carts = {**self._carts, device_id: institution}

    def refresh(self) -> None:
        """Read the tree, the relations and the carts again (blocking: call from a thread)."""
        with self._lock:
            tree = Tree(self._directory.all_institutions())
            relations = tuple(self._directory.all_relations())
            carts: dict[str, str] = {}
            offset = 0
            while True:
                page = self._directory.list_devices(
                    DeviceFilter(), PageRequest(limit=500, offset=offset)
                )
                carts.update((d.id, d.institution) for d in page.items)
                offset += len(page.items)
                if not page.items or offset >= page.total:
                    break
            self._tree, self._relations, self._carts = tree, relations, carts

    async def run(self) -> None:
        """Refresh every ``refresh_s`` until cancelled; a failed read keeps the last copy."""
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:  # the store's failure shows on /healthz
                logger.warning("directory snapshot not refreshed: %s", type(exc).__name__)
            await asyncio.sleep(self.refresh_s)


class NoticeRelay:
    """The consult service's :class:`~consults.service.Notifier`, handed on to whoever
    listens (the server's live notifications, once it is built)."""

    def __init__(self) -> None:
        self.listeners: list[Notifier] = []

    def notify(self, notice: Notice) -> None:
        for listener in self.listeners:
            listener.notify(notice)


class ReadingNoticeRelay:
    """The ECG centre's :class:`~consults.reading_service.ReadingNotifier`, handed on to
    whoever listens (the server's live notifications, once it is built)."""

    def __init__(self) -> None:
        self.listeners: list[ReadingNotifier] = []

    def notify(self, notice: ReadingNotice) -> None:
        for listener in self.listeners:
            listener.notify(notice)


class SignalsRelay:
    """The reading API's :class:`~api.readings.EcgSignals`, answered by whoever keeps
    the signals (the live ECG service's stream store, set by the server)."""

    def __init__(self) -> None:
        self.source: EcgSignals | None = None

    def signal_of(self, record: ReadingRecord) -> Record | None:
        return None if self.source is None else self.source.signal_of(record)

    def length_of(self, record: ReadingRecord) -> tuple[int, float] | None:
        return None if self.source is None else self.source.length_of(record)

    def window_of(self, record: ReadingRecord, start: int, stop: int) -> Record | None:
        return None if self.source is None else self.source.window_of(record, start, stop)


class RevocationRelay:
    """The accounts' :class:`~consults.accounts.Revocations`, handed on to whoever
    listens (the server attaches the listener that closes live connections once it is
    built; before that, and in commands, nobody listens)."""

    def __init__(self) -> None:
        self.listeners: list[Revocations] = []

    def session_revoked(self, session_id: str) -> None:
        for listener in self.listeners:
            listener.session_revoked(session_id)

    def person_sessions_revoked(self, person_id: str) -> None:
        for listener in self.listeners:
            listener.person_sessions_revoked(person_id)

    def api_token_revoked(self, token_id: str) -> None:
        for listener in self.listeners:
            listener.api_token_revoked(token_id)

    def device_revoked(self, device_id: str) -> None:
        for listener in self.listeners:
            listener.device_revoked(device_id)


@dataclass(frozen=True, kw_only=True)
class Platform:
    """The platform's parts, over one store."""

    stores: Stores
    accounts: Accounts
    directory: DirectoryAdmin
    devices: DeviceCredentials
    api: AccountApi
    directory_view: DirectorySnapshot
    revocations: RevocationRelay
    consult_service: ConsultService
    consult_records: SqlConsultRepository
    consults: ConsultApi
    notices: NoticeRelay
    webhook_sender: WebhookSender
    reading_service: ReadingService
    readings: ReadingApi
    reading_notices: ReadingNoticeRelay
    signals: SignalsRelay
    reading_stats: ReadingStatsApi
    audit: AuditApi

    def close(self) -> None:
        self.stores.close()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def open_platform(
    *,
    data_dir: Path,
    database_url: str | None = None,
    session: SessionConfig | None = None,
    consult_settings: ConsultSettings | None = None,
    reading_settings: ReadingSettings | None = None,
    upload_limits: RecordUploadConfig | None = None,
    annotate_config: AnnotateConfig | None = None,
    account_policy: AccountPolicy | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Platform:
    """Open the store and build accounts, directory, device check and REST API on it.

    ``consult_settings``, ``reading_settings``, ``upload_limits``: the configuration's
    ``[consults]``, ``[readings]`` and ``[uploads]`` sections (deadlines, critical-value
    acknowledgement, upload limits); the defaults when None. ``annotate_config``: the
    engine's settings made from ``[ecg]`` (uploads and the reading pages annotate with
    it); the engine's defaults when None. ``account_policy``: the ``[accounts]`` section
    (password rules, lockout, sessions, the argon2 cost); the defaults when None.

    ``clock``: the time of the accounts (sessions, lockouts, TOTP steps), the consult
    service and the ECG centre (aware UTC; deadlines, expiry, escalation), by default the
    system's; a test moves it to run a story through its deadlines on the whole server.
    Room and device tokens keep the system's time (they are JWTs checked by the edge).

    Raises
    ------
    PlatformError
        The field key is unusable.
    store.engine.StoreConfigError, sqlalchemy.exc.SQLAlchemyError
        The database cannot be opened or migrated.
    """
    field_key = load_field_key(data_dir)
    stores = open_store(data_dir=data_dir, database_url=database_url, totp_key=field_key)
    revocations = RevocationRelay()
    now = clock or _utc_now
    accounts = Accounts(
        directory=stores.directory,
        credentials=stores.credentials,
        sessions=stores.sessions,
        audit=stores.audit,
        revocations=revocations,
        policy=account_policy,
        clock=(lambda: now().timestamp()) if clock is not None else time.time,
    )
    directory = DirectoryAdmin(accounts)
    view = DirectorySnapshot(stores.directory)
    view.refresh()
    notices = NoticeRelay()
    records = SqlConsultRepository(stores.engine, secrets=SecretBox(field_key))
    consult_service = ConsultService(
        consults=records,
        statistics=SqlConsultStatistics(stores.engine),
        directory=stores.directory,
        second_factor=accounts,
        cipher=FieldCipher(field_key),
        blobs=FileBlobStore(data_dir / ATTACHMENTS_DIR),
        notifier=notices,
        settings=consult_settings,
        clock=now,
    )
    # Outgoing webhooks: each notice queued for the endpoints of the institutions it
    # concerns; the server's sender delivers them (signed, retried, logged).
    hooks = SqlWebhookRepository(stores.engine, secrets=SecretBox(field_key))
    notices.listeners.append(WebhookOutbox(hooks))
    # The ECG centre: reading tasks and critical values; statements and critical codes
    # from the ECG engine's libraries (imported here: they bring numpy).
    from ecg.critical import CRITICAL_TEXT
    from ecg.statements import LIBRARY

    reading_notices = ReadingNoticeRelay()
    reading_service = ReadingService(
        readings=SqlReadingRepository(stores.engine),
        keys=records,
        directory=stores.directory,
        second_factor=accounts,
        notifier=reading_notices,
        statement_codes=frozenset(LIBRARY),
        critical_codes=frozenset(CRITICAL_TEXT),
        acknowledge_within_s=(reading_settings or ReadingSettings()).acknowledge_within_s,
        clock=now,
    )
    signals = SignalsRelay()
    # Uploaded records become reading tasks too: the reading API draws them from the
    # data dir, the streams from the live ECG service (set by the server); the signed
    # report is also served as FHIR.
    uploaded = RecordStore(data_dir / RECORDS_DIR)
    uploads = record_upload_api(
        RecordUploads(
            service=reading_service,
            store=uploaded,
            directory=stores.directory,
            audit=stores.audit,
            config=upload_limits or RecordUploadConfig(),
            annotate_config=annotate_config,
        )
    )
    reading_routes = reading_api(
        reading_service, UploadedOrStreamed(uploaded, signals), annotate_config
    )
    readings = ReadingApi(
        route_handlers=[
            *reading_routes.route_handlers,
            ReadingFhirController,
            *uploads.route_handlers,
        ],
        dependencies={**reading_routes.dependencies, **uploads.dependencies},
        middleware=reading_routes.middleware,
    )
    return Platform(
        stores=stores,
        accounts=accounts,
        directory=directory,
        devices=DeviceCredentials(stores.directory, stores.audit),
        api=account_api(accounts, directory, session),
        directory_view=view,
        revocations=revocations,
        consult_service=consult_service,
        consult_records=records,
        consults=consult_api(
            consult_service,
            Webhooks(hooks, random_bytes=secrets.token_bytes),
            chat=stores.signaling,
        ),
        notices=notices,
        webhook_sender=WebhookSender(hooks),
        reading_service=reading_service,
        readings=readings,
        reading_notices=reading_notices,
        signals=signals,
        reading_stats=reading_stats_api(SqlReadingStatistics(stores.engine)),
        audit=audit_api(AuditTrail(stores.audit_reader, stores.directory, stores.audit)),
    )
