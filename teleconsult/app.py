"""Wiring: the signaling server with the real media backend, Store, Bus and secret.

The composition root (see DESIGN.md): ``signaling/`` states what it needs as
Protocols, and this module plugs the real things in. ``media.sfu.Sfu`` is imported
here and nowhere else in signaling; if it cannot be imported the server refuses to
start with a clear message rather than running without media.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import time
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from sessions.redis_backend import RedisBus, RedisStore
from sessions.store import Bus, LocalBus, SqliteStore, Store
from sessions.tokens import load_secret, verify_token
from signaling.core import Core
from signaling.ports import MediaBackend
from signaling.server import DeviceHandler, SignalingServer
from teleconsult.config import Config

logger = logging.getLogger(__name__)


class AppError(Exception):
    """The server cannot be assembled (missing media backend, bad backend choice)."""


def media_backend(config: Config) -> MediaBackend:
    """``media.sfu.Sfu()``, with the options of this configuration that it accepts.

    Raises
    ------
    AppError
        If ``media.sfu`` is missing or fails to import.
    """
    try:
        module = importlib.import_module("media.sfu")
        sfu_class = module.Sfu
    except (ImportError, AttributeError) as exc:
        raise AppError(
            f"the media backend media.sfu.Sfu cannot be loaded ({exc}); "
            "teleconsult serve needs it for consult rooms"
        ) from exc
    accepted = inspect.signature(sfu_class).parameters
    options: dict[str, object] = {}
    if config.ice_transport_policy != "all" and "ice_transport_policy" in accepted:
        options["ice_transport_policy"] = config.ice_transport_policy
    if config.record:
        if "record" in accepted:
            options["record"] = True
            if "data_dir" in accepted:
                options["data_dir"] = config.data_dir
        else:
            logger.warning(
                "--record: this media backend cannot record yet; consults are not recorded"
            )
    backend: MediaBackend = sfu_class(**options)
    return backend


def store_and_bus(config: Config) -> tuple[Store, Bus]:
    """The configured Store and Bus (embedded defaults, or Redis)."""
    store: Store = (
        RedisStore(config.redis_url) if config.store == "redis" else SqliteStore(config.data_dir)
    )
    bus: Bus = RedisBus(config.redis_url) if config.bus == "redis" else LocalBus()
    return store, bus


def build_server(
    config: Config,
    *,
    media: MediaBackend | None = None,
    device_handler: DeviceHandler | None = None,
    device_check: Callable[[ServerConnection, Request], Response | None] | None = None,
) -> SignalingServer:
    """Assemble the server (not started).

    Parameters
    ----------
    config : Config
        The configuration.
    media : MediaBackend, optional
        Defaults to :func:`media_backend`.
    device_handler : DeviceHandler, optional
        Takes ``/device`` connections (ECG carts).
    device_check : callable, optional
        ``(connection, request) -> Response | None``: refuses a ``/device`` upgrade
        (for example a missing or wrong device token) before it happens.
    """
    # The media backend first: if it is missing, nothing else has been opened.
    backend = media if media is not None else media_backend(config)
    secret = load_secret(config.data_dir, config.secret)
    ice = config.ice_config()
    store, bus = store_and_bus(config)
    core = Core(
        config=config.core_config(),
        verify=functools.partial(verify_token, secret),
        ice_servers=lambda identity: ice.ice_servers(identity, now_s=time.time()),
        banned=store.banned_jtis(),
    )
    server = SignalingServer(
        core=core,
        media=backend,
        store=store,
        bus=bus,
        config=config.server_config(),
        device_handler=device_handler,
    )
    server.device_check = device_check
    return server
