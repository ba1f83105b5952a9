"""Wiring: the composition root. It builds the parts and plugs them together, no more.

``signaling/`` states what it needs as Protocols (:mod:`signaling.ports`), ``api/`` is
the edge that pumps the cores over one port, ``ecglive/`` is the live ECG service;
this module connects them with the real media backend, Store, Bus and secret:

- :func:`build_server`: the configuration tree's sections handed over whole
  (``config.core`` to the core, ``config.server`` to the edge, ``config.ice``, ...);
- :func:`media_backend`: ``media.sfu.Sfu``, imported there and nowhere else (if it
  cannot be imported the server refuses to start with a clear message rather than
  running without media);
- :func:`install_ecg`: the live ECG service behind ``/device`` and the viewers.

Heavy packages (numpy, numba, aiortc) are imported inside the functions that build
the server, so that importing this module (``teleconsult token``) stays cheap.
Streams are granted to viewers by room (``signaling.device.grants``); tokens of the
room :data:`ECG_CENTRE_ROOM` see every stream.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from api.edge import EdgeServer
from api.pages import package_web_dir
from api.ws_device import DeviceEndpoint
from sessions.redis_backend import RedisBus, RedisStore
from sessions.store import Bus, LocalBus, SqliteStore, Store
from sessions.tokens import TokenClaims, load_secret, verify_token
from signaling.core import Core
from signaling.device import ViewerHub
from signaling.ports import MediaBackend
from signaling.server import SignalingServer
from teleconsult.config import Config

if TYPE_CHECKING:
    from ecglive.service import EcgService

logger = logging.getLogger(__name__)

ECG_CENTRE_ROOM: Final = "ecg-centre"
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


def store_and_bus(config: Config) -> tuple[Store, Bus]:
    """The configured Store and Bus (embedded defaults, or Redis)."""
    backends = config.backends
    store: Store = (
        RedisStore(backends.redis_url)
        if backends.store == "redis"
        else SqliteStore(config.data_dir)
    )
    bus: Bus = RedisBus(backends.redis_url) if backends.bus == "redis" else LocalBus()
    return store, bus


def build_server(
    config: Config,
    *,
    media: MediaBackend | None = None,
    ecg: bool = True,
    start_live_workers: bool = False,
) -> EdgeServer:
    """Assemble the server (not started).

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
    """
    # The media backend first: if it is missing, nothing else has been opened.
    backend = media if media is not None else media_backend(config)
    secret = load_secret(config.data_dir, config.secret)
    ice = config.ice
    store, bus = store_and_bus(config)
    core = Core(
        config=config.core,
        verify=functools.partial(verify_token, secret),
        ice_servers=lambda identity: ice.ice_servers(identity, now_s=time.time()),
        banned=store.banned_jtis(),
    )
    signaling = SignalingServer(core=core, media=backend, store=store, bus=bus)
    from media.metrics import MediaCollector  # prometheus only: cheap

    # Forwarding and recording counters on /metrics.
    signaling.metrics.registry.register(MediaCollector(backend.stats))
    ssl_context = config.ssl_context()
    server = EdgeServer(
        signaling=signaling,
        config=config.server,
        api=dataclasses.replace(config.api, tls=ssl_context is not None),
        ssl_context=ssl_context,
        web_dir=config.data.web_dir or package_web_dir(),
    )
    if ecg:
        install_ecg(
            server,
            config.data_dir / STREAMS_DIR,
            functools.partial(verify_token, secret),
            start_workers=start_live_workers,
        )
    return server


def install_ecg(
    server: EdgeServer,
    root: Path,
    verify: Callable[[str], TokenClaims],
    *,
    commit_interval_s: float = 0.1,
    live_processes: int | None = None,
    start_workers: bool = False,
) -> EcgService:
    """Serve ``/device`` and live viewers on ``server``, storing streams under ``root``.

    ``live_processes``: worker processes for live annotation; by default one per CPU up
    to ``ecglive.service.MAX_LIVE_PROCESSES``, 0 for a thread of this process.
    ``start_workers``: start them now (from the running event loop) rather than with the
    first device.
    """
    # numpy, scipy and numba come with the ECG service: imported when it is built.
    from api.ws_ecg import ViewerCatalog, ViewerMessages
    from ecglive.service import EcgService, default_live_processes

    if live_processes is None:
        live_processes = default_live_processes()
    service = EcgService(root, encoder=ViewerMessages(), live_processes=live_processes)
    endpoint = DeviceEndpoint(service, verify, commit_interval_s=commit_interval_s)
    signaling = server.signaling
    hub = ViewerHub(ViewerCatalog(service), signaling.send_text, centre_room=ECG_CENTRE_ROOM)
    service.hub = hub
    server.device = endpoint
    signaling.viewers = hub
    signaling.closers.append(endpoint.close)
    if start_workers:
        service.workers.begin()
    return service
