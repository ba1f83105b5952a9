"""Wiring: the composition root. It builds the parts and plugs them together, no more.

``signaling/`` states what it needs as Protocols (:mod:`signaling.ports`), ``api/`` is
the edge that pumps the cores over one port, ``ecglive/`` is the live ECG service,
:mod:`teleconsult.platform` the store, accounts and REST API; this module connects them
with the real media backend, Bus and key ring:

- :func:`build_server`: the configuration tree's sections handed over whole
  (``config.core`` to the core, ``config.server`` to the edge, ``config.ice``, ...);
  the SQL store is the signaling Store (bans, rooms, audit), the accounts' REST API and
  room tokens are mounted, revocations close live connections (:class:`LiveRevocations`);
- :func:`media_backend`: ``media.sfu.Sfu``, imported there and nowhere else (if it
  cannot be imported the server refuses to start with a clear message rather than
  running without media);
- :func:`install_ecg`: the live ECG service behind ``/device`` and the viewers.

Heavy packages (numpy, numba, aiortc) are imported inside the functions that build
the server, so that importing this module (``teleconsult token``) stays cheap.
Who may view a stream is :class:`signaling.ecg_access.EcgAccess`'s (people,
institutions and service relations; the participants of the stream's room); a stream
belongs to its registered cart's institution.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from litestar.di import Provide

from api.edge import EdgeServer
from api.pages import package_web_dir
from api.readings import annotate_ahead, file_length, file_window, measured_signal
from api.rooms import RoomTokenController, RoomTokens, api_token_jti, session_jti
from api.session import SessionConfig, device_token_verifier
from api.webhooks import WebhookSender
from api.ws_device import Declaration, DeviceEndpoint
from consults.accounts import Principal
from consults.directory import Role
from consults.errors import Conflict, ConsultsError, NotFound, RepositoryError
from consults.lifecycle import Party
from consults.reading_service import ReadingNotice, ReadingService
from consults.repositories import PageRequest, PeopleFilter
from consults.service import ConsultService, Notice, consult_room
from sessions.redis_backend import RedisBus
from sessions.store import AuditEntry, Bus, LocalBus
from sessions.tokens import TokenClaims, load_key_ring, verify_token
from signaling.context import iso_z, utc_now
from signaling.core import Core
from signaling.device import MayView, ViewerHub, grants
from signaling.ecg_access import EcgAccess
from signaling.effects import Waiting
from signaling.ports import MediaBackend
from signaling.server import SignalingServer
from teleconsult.config import Config
from teleconsult.platform import Platform, open_platform

if TYPE_CHECKING:
    from consults.reading_repositories import ReadingRecord
    from ecg.annotate import AnnotateConfig, Annotation
    from ecg.device import Start
    from ecg.live import LiveConfig
    from ecg.record import Record
    from ecglive.service import EcgService

logger = logging.getLogger(__name__)

STREAMS_DIR: Final = "streams"  # the live ECG service's folder in the data dir


class AppError(Exception):
    """The server cannot be assembled (missing media backend, bad backend choice)."""


def media_backend(config: Config) -> MediaBackend:
    """``media.sfu.Sfu`` with this configuration's media options.

    Imported here, not at the top: aiortc and PyAV take a second to import, and commands
    that run no server (``token``) must not pay for it.

    Raises
    ------
    AppError
        If ``media.sfu`` cannot be imported.
    """
    try:
        from media.sfu import Sfu
    except ImportError as exc:
        raise AppError(
            f"the media backend media.sfu.Sfu cannot be loaded ({exc}); "
            "teleconsult serve needs it for consult rooms"
        ) from exc
    # Recordings go to the data dir: for every room (--record) or by consent.
    return Sfu(
        ice_transport_policy=config.media.ice_transport_policy,
        data_dir=config.data_dir,
        record=config.media.record,
    )


def bus_of(config: Config) -> Bus:
    """The configured Bus (in-process, or Redis for several nodes)."""
    backends = config.backends
    return RedisBus(backends.redis_url) if backends.bus == "redis" else LocalBus()


class LiveRevocations:
    """The accounts' revocations carried to the live connections.

    Called from the request's worker thread once the store has the revocation; hands
    each to the event loop (``call_soon_threadsafe``) and returns. A logout or a
    revoked API token closes the ``/ws`` connections of the room tokens minted with it
    (their ``jti``); a locked person or a changed password closes every connection of
    the person; a revoked cart's ``/device`` connections close.
    """

    def __init__(
        self,
        server: EdgeServer,
        platform: Platform,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._server = server
        self._platform = platform
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None

    async def attach(self) -> None:
        """Bind to the running loop (a background job of the server)."""
        self._loop = asyncio.get_running_loop()

    def _on_loop(self, job: Callable[[], object]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # no live connection exists before the server runs
        loop.call_soon_threadsafe(job)

    def _revoke(self, reason: str, *, identity: str | None = None, jti: str | None = None) -> None:
        signaling = self._server.signaling

        def job() -> None:
            now_s = self._clock()
            signaling.run(signaling.core.revoke(now_s, identity=identity, jti=jti, reason=reason))

        self._on_loop(job)

    def session_revoked(self, session_id: str) -> None:
        self._revoke("signed out", jti=session_jti(session_id))

    def person_sessions_revoked(self, person_id: str) -> None:
        person = self._platform.stores.directory.get_person(person_id)
        if person is not None:
            self._revoke("your sessions were ended", identity=person.username)

    def api_token_revoked(self, token_id: str) -> None:
        self._revoke("the API token was revoked", jti=api_token_jti(token_id))

    def device_revoked(self, device_id: str) -> None:
        def job() -> None:
            device = self._server.device
            if device is not None:
                device.revoke(device_id)

        self._on_loop(job)


@dataclasses.dataclass(frozen=True)
class Assembly:
    """The server and the platform under it (tests and commands reach both)."""

    server: EdgeServer
    platform: Platform


class LiveNotices:
    """The consult service's notices, pushed live (``notify`` on ``/ws``) to every
    connection of each person they name and of the coordinators of the centre they name.

    Called from the request's worker thread (after the step is stored): the centre's
    coordinators are looked up there, then the pushes are handed to the event loop.
    """

    def __init__(self, server: EdgeServer, platform: Platform) -> None:
        self._server = server
        self._platform = platform
        self._loop: asyncio.AbstractEventLoop | None = None

    async def attach(self) -> None:
        """Bind to the running loop (a background job of the server)."""
        self._loop = asyncio.get_running_loop()

    def recipients(self, notice: Notice) -> set[str]:
        """The usernames a notice reaches (reads the directory: call off the loop)."""
        usernames = set(notice.usernames)
        if notice.coordinators_of is not None:
            where = PeopleFilter(
                institutions=frozenset({notice.coordinators_of}), role=Role.COORDINATOR
            )
            offset = 0
            while True:
                page = self._platform.stores.directory.list_people(
                    where, PageRequest(limit=500, offset=offset)
                )
                usernames.update(p.username for p in page.items)
                offset += len(page.items)
                if not page.items or offset >= page.total:
                    break
        return usernames

    def waiting(self, event: Waiting) -> None:
        """Someone waits in a consult's room: its experts and the centre's coordinators
        hear of it (``consult.waiting``) wherever they are in the app. On the loop: the
        lookup goes to a worker thread."""
        if not event.room_id.startswith("consult-") or self._loop is None:
            return
        consult_id = event.room_id.removeprefix("consult-")

        def look_up() -> None:
            record = self._platform.consult_records.get(consult_id)
            if record is None:
                return
            consult = record.consult
            usernames = set(consult.experts) | {consult.lead_expert or ""}
            notice = Notice(
                kind="consult.waiting",
                consult=consult_id,
                at=utc_now(),
                usernames=frozenset(usernames - {"", event.identity}),
                coordinators_of=consult.centre,
            )
            self.notify(notice)

        self._loop.run_in_executor(None, look_up)

    def notify(self, notice: Notice | ReadingNotice) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        signaling = self._server.signaling
        data: dict[str, str | None]
        if isinstance(notice, ReadingNotice):
            usernames = set(notice.usernames)
            data = {
                "reading": notice.reading,
                "critical": notice.critical,
                "code": notice.code,
                "level": notice.level,
                "at": iso_z(notice.at),
            }
        else:
            usernames = self.recipients(notice)
            data = {"consult": notice.consult, "at": iso_z(notice.at)}

        def job() -> None:
            for username in sorted(usernames):
                signaling.run(signaling.core.notify(username, notice.kind, data))

        loop.call_soon_threadsafe(job)


def consult_room_part(
    service: ConsultService,
) -> Callable[[Principal, str], tuple[str, bool] | None]:
    """Who takes which part in a consult's room (``consult-<id>``); other rooms keep the
    default of the person's roles. Reads the store: the token endpoint runs in a thread.

    Raises NotFound (404) for someone the consult does not concern: its experts and
    the centre's coordinators moderate, the clinic's doctors wait to be admitted, the
    others who may see the consult (the centre's ECG readers) observe.
    """

    def part(principal: Principal, room: str) -> tuple[str, bool] | None:
        if not room.startswith("consult-"):
            return None
        consult_id = room.removeprefix("consult-")
        view = service.get(principal.person, consult_id)  # NotFound when not visible
        mine = view.parties
        if mine & {Party.EXPERT, Party.LEAD_EXPERT}:
            return ("expert", True)
        if Party.COORDINATOR in mine:
            return ("coordinator", True)
        if mine & {Party.REQUESTER, Party.CLINIC_DOCTOR}:
            return ("applicant", False)
        if Role.ECG_READER in principal.person.roles or Role.EXPERT in principal.person.roles:
            return ("observer", False)
        raise NotFound("consult", consult_id)

    return part


def cart_declaration(
    platform: Platform,
) -> Callable[[TokenClaims, str | None, str | None], str | None]:
    """What a registered cart may declare in ``start`` (reads the store: off the loop):
    a consult of its own institution (the clinic that requested it), and as room only
    that consult's room; neither is fine (the stream is its institution's)."""

    def check(claims: TokenClaims, consult: str | None, room: str | None) -> str | None:
        clinic = claims.institution
        if consult is not None:
            record = platform.consult_records.get(consult)
            if record is None or record.consult.clinic != clinic:
                return f"consult {consult!r} is not a consult of this cart's clinic {clinic}"
        if room is not None and (consult is None or room != consult_room(consult)):
            return (
                "a registered cart streams into its consult's room only: declare the consult "
                "(and room consult-<id>, or no room)"
            )
        return None

    return check


async def consult_sweep(service: ConsultService, every_s: float = 30.0) -> None:
    """Remind before deadlines and starts, escalate overdue consults (once) and expire
    those past their expiry, every ``every_s`` until cancelled; a failed round is logged
    and the next one tries again."""
    while True:
        try:
            await asyncio.to_thread(service.remind)
            await asyncio.to_thread(service.escalate_overdue)
            await asyncio.to_thread(service.expire_due)
        except Exception as exc:  # the store's failure shows on /healthz
            logger.warning("consult sweep failed: %s", type(exc).__name__)
        await asyncio.sleep(every_s)


async def critical_sweep(service: ReadingService, every_s: float = 15.0) -> None:
    """Escalate each critical value whose acknowledgement is overdue, every ``every_s``."""
    while True:
        try:
            await asyncio.to_thread(service.escalate_due)
        except Exception as exc:
            logger.warning("critical sweep failed: %s", type(exc).__name__)
        await asyncio.sleep(every_s)


async def webhook_delivery(sender: WebhookSender, every_s: float = 5.0) -> None:
    """Deliver the webhooks that are due (first tries and retries), every ``every_s``."""
    while True:
        try:
            await asyncio.to_thread(sender.deliver_due)
        except Exception as exc:
            logger.warning("webhook delivery round failed: %s", type(exc).__name__)
        await asyncio.sleep(every_s)


def build_server(
    config: Config,
    *,
    media: MediaBackend | None = None,
    ecg: bool = True,
    start_live_workers: bool = False,
) -> EdgeServer:
    """Assemble the server (not started); :func:`assemble` says what the arguments are."""
    return assemble(config, media=media, ecg=ecg, start_live_workers=start_live_workers).server


def assemble(
    config: Config,
    *,
    media: MediaBackend | None = None,
    ecg: bool = True,
    start_live_workers: bool = False,
    clock: Callable[[], datetime] | None = None,
) -> Assembly:
    """Assemble the server and its platform (not started).

    Parameters
    ----------
    config : Config
        The configuration.
    media : MediaBackend, optional
        Defaults to :func:`media_backend`.
    ecg : bool
        Serve ``/device`` and live viewers with the live ECG service (:func:`install_ecg`);
        without it ``/device`` answers 1013 until an endpoint is set.
    start_live_workers : bool
        Start the live ECG workers now (call from the running event loop), so that the
        first stream does not wait seconds for their start and warm-up; by default they
        start with the first device connection (tests and rooms-only servers never pay).
    clock : callable, optional
        The consult and ECG-centre services' time (see :func:`open_platform`).

    Raises
    ------
    AppError
        The media backend cannot be loaded.
    teleconsult.platform.PlatformError, store.engine.StoreConfigError
        The data dir's keys or the database are unusable.
    """
    # The media backend first: if it is missing, nothing else has been opened.
    backend = media if media is not None else media_backend(config)
    ring = load_key_ring(config.data_dir, config.secret)
    ssl_context = config.ssl_context()
    platform = open_platform(
        data_dir=config.data_dir,
        database_url=config.backends.database(),
        session=SessionConfig(secure_cookies=True if ssl_context is not None else None),
        consult_settings=config.consults,
        reading_settings=config.readings,
        upload_limits=config.uploads,
        annotate_config=config.ecg.annotate_config(),
        account_policy=config.accounts,
        clock=clock,
    )
    store = platform.stores.signaling
    ice = config.ice
    verify = functools.partial(verify_token, ring, leeway_s=config.core.token_leeway_s)
    room_tokens = RoomTokens(
        ring=ring,
        audit=platform.stores.audit,
        room_part=consult_room_part(platform.consult_service),
    )
    # Room tokens of sessions and API tokens revoked before this start stay refused.
    sessions, api_tokens = platform.stores.sessions.revoked_since(time.time() - room_tokens.ttl_s)
    revoked = [session_jti(s) for s in sessions] + [api_token_jti(t) for t in api_tokens]
    core = Core(
        config=config.core,
        verify=verify,
        ice_servers=lambda identity: ice.ice_servers(identity, now_s=time.time()),
        banned=store.banned_jtis(),
        banned_identities=store.banned_identities(),
        revoked=revoked,
    )
    signaling = SignalingServer(core=core, media=backend, store=store, bus=bus_of(config))
    from media.metrics import MediaCollector  # prometheus only: cheap

    # Forwarding and recording counters on /metrics.
    signaling.metrics.registry.register(MediaCollector(backend.stats))
    api, consults = platform.api, platform.consults
    server = EdgeServer(
        signaling=signaling,
        config=config.server,
        api=dataclasses.replace(config.api, tls=ssl_context is not None),
        ssl_context=ssl_context,
        web_dir=config.data.web_dir or package_web_dir(),
        route_handlers=[
            *api.route_handlers,
            RoomTokenController,
            *consults.route_handlers,
            *platform.readings.route_handlers,
            *platform.reading_stats.route_handlers,
            *platform.audit.route_handlers,
        ],
        dependencies={
            **api.dependencies,
            **consults.dependencies,
            **platform.readings.dependencies,
            **platform.reading_stats.dependencies,
            **platform.audit.dependencies,
            "room_tokens": Provide(lambda: room_tokens, use_cache=True, sync_to_thread=False),
        },
        middleware=[*api.middleware, *consults.middleware, *platform.readings.middleware],
    )
    revocations = LiveRevocations(server, platform)
    platform.revocations.listeners.append(revocations)
    notices = LiveNotices(server, platform)
    platform.notices.listeners.append(notices)
    platform.reading_notices.listeners.append(notices)
    signaling.on_waiting = notices.waiting
    view = platform.directory_view
    server.background += [
        revocations.attach,
        notices.attach,
        view.run,
        functools.partial(consult_sweep, platform.consult_service),
        functools.partial(webhook_delivery, platform.webhook_sender),
        functools.partial(critical_sweep, platform.reading_service),
    ]

    async def close_platform() -> None:
        await asyncio.to_thread(platform.close)

    if ecg:
        jwt_verify: Callable[[str], TokenClaims] = verify
        check = device_token_verifier(platform.devices, jwt_verify)

        def verify_device(token: str) -> TokenClaims:
            claims = check(token)
            if claims.institution is not None:
                view.device_seen(claims.identity, claims.institution)
            return claims

        ecg_service = install_ecg(
            server,
            config.data_dir / STREAMS_DIR,
            verify_device,
            declaration=cart_declaration(platform),
            may_view=EcgAccess(view).may_view,
            institution_of=view.institution_of_device,
            start_workers=start_live_workers,
            live_config=config.ecg.live_config(),
            annotate_config=config.ecg.annotate_config(),
        )
        connect_reading_tasks(ecg_service, platform)
    signaling.closers.append(close_platform)
    return Assembly(server, platform)


class StreamSignals:
    """The ECG of a reading task, from the live ECG service's stream store (the record
    written when the stream ended); blocking, for the reading API's worker threads."""

    def __init__(self, service: EcgService) -> None:
        self._service = service

    def _path(self, record: ReadingRecord) -> Path | None:
        """The stream's record (no extension); it exists once the stream has ended."""
        if record.stream is None:
            return None
        try:
            return self._service.store.record_path(uuid.UUID(record.stream))
        except ValueError:
            return None

    def signal_of(self, record: ReadingRecord) -> Record | None:
        from ecg.errors import EcgError
        from ecg.record import read_record

        path = self._path(record)
        if path is None or not path.with_suffix(".hea").exists():
            return None  # still arriving: the record is written when it ends
        try:
            return read_record(path)
        except (EcgError, OSError):
            return None

    def length_of(self, record: ReadingRecord) -> tuple[int, float] | None:
        path = self._path(record)
        return None if path is None else file_length(path)

    def window_of(self, record: ReadingRecord, start: int, stop: int) -> Record | None:
        path = self._path(record)
        return None if path is None else file_window(path, start, stop)


# Streams whose live critical codes are remembered (to tell each once).
_LIVE_CRITICAL_STREAMS: Final = 10_000
# A stream's catalogue row is written again after a failure of the store (a lock held
# too long, PostgreSQL restarting), waiting this long between tries.
_RECORD_RETRIES_S: Final = (0.5, 2.0, 8.0, 30.0)


def with_retries(
    what: str, write: Callable[[], None], pauses_s: tuple[float, ...] = _RECORD_RETRIES_S
) -> None:
    """Run ``write`` (a stream's catalogue row, in the records' thread), again after
    each ``RepositoryError``; log what finally fails, an unexpected error with its
    traceback (a worker thread's exception would otherwise be lost)."""
    for pause_s in (*pauses_s, None):
        try:
            write()
            return
        except RepositoryError:
            if pause_s is None:
                logger.error("%s not recorded: the store is unavailable", what)
                return
            logger.warning("%s not recorded yet: the store is unavailable; again in %.1f s",
                           what, pause_s)  # fmt: skip
            time.sleep(pause_s)
        except Exception:
            logger.exception("%s not recorded", what)
            return


def connect_reading_tasks(service: EcgService, platform: Platform) -> None:
    """Every registered cart's stream is recorded in the store's ``streams`` table (its
    cart, institution, declared consult, room and patient; its end and samples), so that
    it is on the consult it declared and can be attached to another; and it becomes a
    reading task of the ECG centre serving its clinic, from its start (a task in progress
    the reader may watch live); the reading API's reports draw the stored record.

    The table's writes run in one thread of their own, in the order the streams started
    and ended (a short stream's end never overtakes its start)."""
    from store.streams import StreamRecord

    platform.signals.source = StreamSignals(service)
    audit = service.on_stream
    readings = platform.reading_service
    directory = platform.stores.directory
    streams = platform.stores.streams
    records = ThreadPoolExecutor(1, "stream-records")

    def record_start(start: Start) -> None:  # the records' thread
        device = directory.get_device(start.device)
        if device is None:
            return  # an operator's cart token: no registration, no clinic to read for
        try:
            streams.add_stream(
                StreamRecord(
                    id=str(start.stream), device_id=device.id, institution=device.institution,
                    room=start.room, consult=start.consult, patient=start.patient,
                    started_at_s=start.start_time.timestamp(), ended_at_s=None, samples=0,
                    state="live",
                )
            )  # fmt: skip
        except Conflict:
            pass  # resumed after a restart: recorded when it started
        except RepositoryError:
            raise  # tried again
        except ConsultsError as exc:
            logger.warning("a stream not recorded: %s", exc.code)
        make_task(start, device.institution)

    def record_end(start: Start, samples: int) -> None:  # the records' thread
        try:
            streams.end_stream(str(start.stream), time.time(), samples)
        except NotFound:
            pass  # not a registered cart's
        except RepositoryError:
            raise  # tried again
        except ConsultsError as exc:
            logger.warning("a stream's end not recorded: %s", exc.code)

    def make_task(start: Start, institution: str) -> None:
        try:
            readings.task_for_stream(
                str(start.stream), institution, start.patient, start.start_time,
                critical_codes=[], top_statements=[],
            )  # fmt: skip
        except RepositoryError:
            raise  # tried again
        except ConsultsError as exc:
            logger.warning("no reading task for a stream: %s", exc.code)

    def on_stream(action: str, start: Start) -> None:
        if audit is not None:
            audit(action, start)
        if action in ("stream.started", "stream.resumed"):
            records.submit(with_retries, "a stream's start", functools.partial(record_start, start))
        elif action == "stream.ended":
            summary = service.ecg_stream(str(start.stream))
            samples = 0 if summary is None else summary.samples
            end = functools.partial(record_end, start, samples)
            records.submit(with_retries, "a stream's end", end)

    def on_annotated(start: Start, annotation: Annotation) -> None:  # the batch thread
        for finding in annotation.critical or ():
            try:
                readings.engine_critical(str(start.stream), str(finding["code"]))
            except ConsultsError as exc:
                logger.info("a critical finding not raised: %s", exc.code)
        # The record is written: the reading page's engine reading of it is made now,
        # not when a reader opens it.
        try:
            task = readings.task_of_stream(str(start.stream))
        except Exception as exc:  # the first window annotates instead
            logger.warning("a stream's task not annotated ahead: %s", type(exc).__name__)
            return
        if task is not None:
            # The engine reads the first 10 s: a finished 24-hour stream is not read whole.
            load = functools.partial(measured_signal, platform.signals, task)
            annotate_ahead(task.task.id, load, service.annotate_config)

    # A critical value the live annotation proves while the ECG still arrives is raised on
    # the stream's task at once (the doctor and the reader on duty are told); each code
    # once per stream here, and the service raises a code once per task anyway.
    told: collections.OrderedDict[str, set[str]] = collections.OrderedDict()

    def raise_live(stream: str, codes: tuple[str, ...]) -> None:  # a worker thread
        for code in codes:
            try:
                readings.engine_critical(stream, code)
            except ConsultsError as exc:
                logger.info("a live critical finding not raised: %s", exc.code)

    def on_live_critical(stream: str, codes: tuple[str, ...]) -> None:  # the event loop
        seen = told.setdefault(stream, set())
        told.move_to_end(stream)
        new = tuple(c for c in codes if c not in seen)
        if not new:
            return
        seen.update(new)
        while len(told) > _LIVE_CRITICAL_STREAMS:
            told.popitem(last=False)
        asyncio.get_running_loop().run_in_executor(None, raise_live, stream, new)

    service.on_stream = on_stream
    service.on_annotated = on_annotated
    service.workers.on_critical = on_live_critical


def install_ecg(
    server: EdgeServer,
    root: Path,
    verify: Callable[[str], TokenClaims],
    *,
    may_view: MayView = grants,
    institution_of: Callable[[str], str | None] | None = None,
    declaration: Declaration | None = None,
    commit_interval_s: float = 0.1,
    live_processes: int | None = None,
    start_workers: bool = False,
    live_config: LiveConfig | None = None,
    annotate_config: AnnotateConfig | None = None,
) -> EcgService:
    """Serve ``/device`` and live viewers on ``server``, storing streams under ``root``.

    ``verify``: the ``/device`` token check (called off the event loop).
    ``may_view``: who may see which stream (:class:`signaling.ecg_access.EcgAccess`'s
    rule in the server; the rule of rooms alone by default).
    ``institution_of``: the institution of a registered cart (streams belong to it).
    ``declaration``: what a registered cart may declare (:func:`cart_declaration`).
    ``live_processes``: worker processes for live annotation; by default one per CPU up
    to ``ecglive.service.MAX_LIVE_PROCESSES``, 0 for a thread of this process.
    ``start_workers``: start them now (from the running event loop) rather than with the
    first device.
    ``live_config``, ``annotate_config``: the live pipeline's and the finished streams'
    annotation settings (made from ``[ecg]``); the engine's defaults when None.
    """
    # numpy, scipy and numba come with the ECG service: imported when it is built.
    from api.ws_ecg import ViewerCatalog, ViewerMessages
    from ecglive.service import EcgService, default_live_processes

    if live_processes is None:
        live_processes = default_live_processes()
    service = EcgService(
        root,
        encoder=ViewerMessages(),
        live_processes=live_processes,
        live_config=live_config,
        annotate_config=annotate_config,
    )
    endpoint = DeviceEndpoint(
        service,
        verify,
        commit_interval_s=commit_interval_s,
        declaration=declaration,
        ingest_speed=server.config.device_ingest_speed,
        ingest_burst_s=server.config.device_ingest_burst_s,
    )
    signaling = server.signaling
    catalog = ViewerCatalog(service, institution_of)
    hub = ViewerHub(catalog, signaling.send_text, may_view=may_view, audit=signaling.audit)

    def stream_event(action: str, start: Start) -> None:
        signaling.audit(
            AuditEntry(
                time=iso_z(utc_now()),
                room=start.room or "",
                actor=start.device,
                action=action,
                target=f"stream:{start.stream}",
                institution=(institution_of(start.device) if institution_of else None) or "",
                patient=start.patient,
                consult=start.consult or "",
            )
        )

    service.on_stream = stream_event
    service.hub = hub
    server.device = endpoint
    signaling.viewers = hub
    signaling.closers.append(endpoint.close)
    if start_workers:
        service.workers.begin()
    return service
