"""The edge: one port, served by uvicorn inside our own event loop.

:class:`Edge` runs an ASGI application with uvicorn programmatically: it binds the
socket itself (so that ``port=0`` works and :attr:`Edge.port` is known as soon as
:meth:`Edge.start` returns), installs no signal handler (the caller owns the loop and
its signals: ``teleconsult serve`` stops on SIGINT/SIGTERM, tests just close), and
serves TLS from the caller's :class:`ssl.SSLContext`.

:class:`EdgeServer` is the whole server on that port: the Litestar application of
:func:`api.app.create_app` (pages, static files, ``/api/v1``, ``/healthz``,
``/metrics``) with ``/ws`` pumping :class:`signaling.server.SignalingServer` and
``/device`` pumping :class:`api.ws_device.DeviceEndpoint`.

Memory per idle ``/ws`` connection (1,000 connections, tracemalloc): about 21 KiB, of
which uvicorn's own protocol object holds most (the upgrade request's headers, an
``asyncio.Queue``, four events); the ``websockets`` server held about 14 KiB.

Transport settings, and why:

- uvicorn's ``websockets-sansio`` protocol (websockets' own sans-I/O core): it answers
  an upgrade refused before accept with our status and body (``/device``: 401/403).
- ``ws_per_message_deflate=False``: signaling messages are small and device frames are
  already compact; per-connection zlib state would cost more memory than it saves.
- ``ws_ping_interval``/``ws_ping_timeout``: keep-alive pings find dead peers.
- ``ws_max_size``: twice the largest endpoint limit (:func:`api.ws.message_limit_bytes`),
  so the endpoints answer a message over their own limit with the protocol's ``error``.
- No access log and uvicorn's per-connection lines silenced: they carry the client's
  address and the query string (a ``?token=``), which no log line may hold.
- ``/ws`` and ``/device`` are dispatched before the Litestar application
  (:meth:`EdgeServer._dispatch`): a long-lived connection then holds no frame of the
  framework's middleware stack (3 KiB less per idle connection, measured with 1,000).
- ``proxy_headers=False``: ``X-Forwarded-For`` is not trusted (no address is logged);
  the one decision taken on an address is the TCP peer's.
- **Connections per address** (:class:`AddressCounts`): open WebSockets, ``/ws`` and
  ``/device`` together, are counted per client address (an IPv6 client by its /64, the
  block one host is given); one over ``max_connections_per_address`` is refused in the
  upgrade with HTTP 429 and the reason as the body, before any token is read, so that
  one host (a misbehaving clinic NAT, a flood) cannot take every file descriptor. The
  count is kept only while connections are open; no address is logged. Open HTTP
  connections are counted apart, by the same key (:class:`CountedH11Protocol`,
  ``max_http_connections_per_address``): uvicorn times out an idle keep-alive
  connection but not one that never sends a request.
- Shutdown: every WebSocket is closed with 1001 first (as before: a client reconnects),
  then uvicorn stops, then the pumps settle (media calls, Store writes, last commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import uvicorn
from litestar import Litestar
from litestar.di import Provide
from litestar.types import ControllerRouterHandler, Middleware
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.app import HealthCheck, RawEndpoint, create_app
from api.edge_config import ApiConfig, EdgeConfig
from api.edge_protocol import LeanWebSocketProtocol
from api.ws import (
    Channel,
    ChannelLimits,
    Receive,
    Scope,
    Send,
    accept,
    message_limit_bytes,
    refuse,
    signaling_endpoint,
)
from api.ws_device import DEVICE_MAX_MESSAGE_BYTES, DeviceEndpoint
from signaling.errors import ServerError
from signaling.messages import CloseCode
from signaling.server import SignalingServer

__all__ = ["TOO_MANY_CONNECTIONS", "AddressCounts", "ApiConfig", "Edge", "EdgeConfig", "EdgeServer"]

logger = logging.getLogger(__name__)

SHUTDOWN_REASON: Final = "server shutting down"
# The HTTP status of an upgrade over max_connections_per_address; the body starts with
# the protocol's error code.
TOO_MANY_CONNECTIONS: Final = 429

Endpoint = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]


def address_key(client: Sequence[Any] | None) -> str:
    """What one client is counted under: its address, an IPv6 one's /64 (``""``: none)."""
    if not client:
        return ""
    host = str(client[0])
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # a dual-stack socket's IPv4 client
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return host


class AddressCounts:
    """Open connections per client address, bounded (no I/O).

    Parameters
    ----------
    limit : int
        Connections one address may hold open.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def take(self, key: str) -> bool:
        """Count one more connection of ``key``; False (nothing counted) over the limit."""
        held = self._open.get(key, 0)
        if held >= self.limit:
            return False
        self._open[key] = held + 1
        return True

    def release(self, key: str) -> None:
        """One connection of ``key`` ended (an address with none left is forgotten)."""
        held = self._open.pop(key, 0) - 1
        if held > 0:
            self._open[key] = held

    def held(self, key: str) -> int:
        """Open connections of ``key``."""
        return self._open.get(key, 0)


class CountedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, its connection counted against its client address
    (``counts``). One over the limit is answered ``refusal`` (a whole 429 response) and
    closed before a byte of it is read: uvicorn times out an idle keep-alive connection,
    but not one that never sends a request, so without this one host could hold every
    file descriptor. A connection upgraded to a WebSocket leaves this count when it
    upgrades (the WebSocket endpoints count theirs, :meth:`EdgeServer._counted`)."""

    def __init__(self, *args: Any, counts: AddressCounts, refusal: bytes, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counts = counts
        self._refusal = refusal
        self._counted_as: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        key = address_key(self.client)
        if self._counts.take(key):
            self._counted_as = key
            return
        logger.info("refused an HTTP connection: %d open from its address", self._counts.held(key))
        transport.write(self._refusal)
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._uncount()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._uncount()
        super().handle_websocket_upgrade(event)

    def data_received(self, data: bytes) -> None:
        if self._counted_as is None:
            return  # refused: closing
        super().data_received(data)

    def _uncount(self) -> None:
        if self._counted_as is not None:
            self._counts.release(self._counted_as)
            self._counted_as = None


def http_refusal(limit: int) -> bytes:
    """The whole response of a connection over the per-address limit."""
    body = (
        f"too_many_connections: more than {limit} open HTTP connections from this address;"
        " retry after closing some"
    ).encode()
    head = (
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"retry-after: 1\r\nconnection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def quiet_uvicorn_logs() -> None:
    """Silence uvicorn's per-connection lines (they hold addresses and query strings)."""
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True


class Edge:
    """uvicorn serving ``app`` on one socket inside the running event loop.

    Parameters
    ----------
    app : ASGI application
        What is served (the Litestar app).
    config : EdgeConfig
        Where and how to listen.
    ssl_context : ssl.SSLContext, optional
        TLS (``https://``, ``wss://``); plain without it.
    ws_max_size_bytes : int
        uvicorn's WebSocket message limit.
    """

    def __init__(
        self,
        app: Any,
        config: EdgeConfig,
        *,
        ssl_context: ssl.SSLContext | None = None,
        ws_max_size_bytes: int,
    ) -> None:
        self.app = app
        self.config = config
        self.ssl_context = ssl_context
        self._ws_max_size_bytes = ws_max_size_bytes
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        # Open HTTP connections per client address (WebSockets are counted apart).
        self.http_addresses = AddressCounts(config.max_http_connections_per_address)
        self._main: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind, run the application's start-up hooks, accept connections.

        Raises
        ------
        ServerError
            If the address cannot be bound or the application fails to start.
        """
        config = self.config
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on sockets whose proto
        # says TCP, and accepted sockets inherit it. Without it a keep-alive response
        # written in two parts (headers, body) waited for the peer's delayed ACK:
        # 40 ms per request on loopback.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((config.host, config.port))
        except OSError as exc:
            sock.close()
            raise ServerError(
                f"cannot listen on {config.host}:{config.port}: {exc.strerror}"
            ) from exc
        sock.setblocking(False)
        quiet_uvicorn_logs()
        limit = config.max_http_connections_per_address
        settings = uvicorn.Config(
            self.app,
            http=functools.partial(  # type: ignore[arg-type]  # a protocol factory, as uvicorn calls it
                CountedH11Protocol, counts=self.http_addresses, refusal=http_refusal(limit)
            ),
            ws=LeanWebSocketProtocol,
            interface="asgi3",
            lifespan="on",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            ws_ping_interval=config.ping_interval_s,
            ws_ping_timeout=config.ping_timeout_s,
            ws_max_size=self._ws_max_size_bytes,
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=max(1, round(config.close_timeout_s)),
        )
        settings.load()
        settings.ssl = self.ssl_context
        server = uvicorn.Server(settings)
        server.lifespan = settings.lifespan_class(settings)
        try:
            await server.startup(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits when the application's start-up fails
            sock.close()
            raise ServerError("the application failed to start") from exc
        self._socket = sock
        self._server = server
        self._main = asyncio.create_task(server.main_loop())

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._socket is None:
            raise ServerError("the server is not started")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """``http://host:port`` (``https`` with TLS)."""
        scheme = "https" if self.ssl_context else "http"
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"{scheme}://{host}:{self.port}"

    async def close(self) -> None:
        """Stop accepting, close what is left, run the application's shutdown hooks."""
        server, self._server = self._server, None
        if server is None:
            return
        server.should_exit = True
        if self._main is not None:
            await self._main
        await server.shutdown()
        if self._socket is not None:
            self._socket.close()


class EdgeServer:
    """The server on one port: the edge application, ``/ws`` and ``/device`` pumped.

    Parameters
    ----------
    signaling : SignalingServer
        The ``/ws`` pump.
    config : EdgeConfig
        Where and how to listen.
    api : ApiConfig, optional
        HTTP limits and OpenAPI metadata.
    ssl_context : ssl.SSLContext, optional
        TLS.
    web_dir : Path, optional
        The browser assets.
    route_handlers, dependencies, middleware
        The REST API (see :func:`api.app.create_app`).
    health_checks : mapping, optional
        Extra checks for ``/healthz`` (the Store's write health is always checked).
    device : DeviceEndpoint, optional
        Takes ``/device``; may also be set later (:attr:`device`). Until then a
        ``/device`` connection is closed with 1013 "not yet available".

    :attr:`background` holds coroutine functions (refreshers, subscribers) run as tasks
    from :meth:`start` until :meth:`close` cancels them.
    """

    def __init__(
        self,
        *,
        signaling: SignalingServer,
        config: EdgeConfig | None = None,
        api: ApiConfig | None = None,
        ssl_context: ssl.SSLContext | None = None,
        web_dir: Path | None = None,
        route_handlers: Sequence[ControllerRouterHandler] = (),
        dependencies: Mapping[str, Provide] | None = None,
        middleware: Sequence[Middleware] = (),
        health_checks: Mapping[str, HealthCheck] | None = None,
        device: DeviceEndpoint | None = None,
    ) -> None:
        self.signaling = signaling
        self.config = config or EdgeConfig()
        self.device = device
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._channels: set[Channel] = set()
        self.addresses = AddressCounts(self.config.max_connections_per_address)
        self._too_many = (
            f"too_many_connections: more than {self.config.max_connections_per_address}"
            " open connections from this address"
        )
        limits = ChannelLimits(
            max_message_bytes=self.config.max_frame_bytes,
            max_queued_bytes=self.config.max_queued_bytes,
            max_live_backlog_bytes=self.config.max_live_backlog_bytes,
        )
        checks: dict[str, HealthCheck] = {"store": signaling.store_health}
        checks.update(health_checks or {})
        self.app: Litestar = create_app(
            route_handlers=route_handlers,
            dependencies=dependencies,
            config=api or ApiConfig(tls=ssl_context is not None),
            middleware=middleware,
            web_dir=web_dir,
            health=signaling.health,
            health_checks=checks,
            metrics=signaling.metrics.render,
        )
        # The same application under the plain ASGI types of api.ws.
        self._app: RawEndpoint = self.app
        biggest = max(self.config.max_frame_bytes, DEVICE_MAX_MESSAGE_BYTES)
        self._ws_endpoint = signaling_endpoint(signaling, limits, self._register)
        self.edge = Edge(
            self._dispatch,
            self.config,
            ssl_context=ssl_context,
            ws_max_size_bytes=message_limit_bytes(biggest),
        )

    # The parts tests and the wiring reach most often.
    @property
    def core(self) -> Any:
        """The signaling core."""
        return self.signaling.core

    @property
    def media(self) -> Any:
        """The media backend."""
        return self.signaling.media

    @property
    def store(self) -> Any:
        """The Store."""
        return self.signaling.store

    @property
    def port(self) -> int:
        """The bound port."""
        return self.edge.port

    @property
    def url(self) -> str:
        """``http(s)://host:port``."""
        return self.edge.url

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/ws`` and ``/device`` straight to their pumps; the rest to the application."""
        if scope["type"] == "websocket":
            path = scope["path"]
            if path == "/ws":
                await self._counted(self._ws_endpoint, scope, receive, send)
                return
            if path == "/device":
                await self._counted(self._device, scope, receive, send)
                return
        await self._app(scope, receive, send)

    async def _counted(
        self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Run ``endpoint`` while its address's connections are counted; refuse one over
        ``max_connections_per_address`` with 429 before anything else is done."""
        key = address_key(scope.get("client"))
        if not self.addresses.take(key):
            logger.info(
                "refused a WebSocket upgrade: %d connections open from its address",
                self.addresses.held(key),
            )
            await refuse(receive, send, TOO_MANY_CONNECTIONS, self._too_many)
            return
        try:
            await endpoint(scope, receive, send)
        finally:
            self.addresses.release(key)

    def _register(self, channel: Channel) -> Callable[[], None]:
        self._channels.add(channel)
        return lambda: self._channels.discard(channel)

    async def _device(self, scope: Scope, receive: Receive, send: Send) -> None:
        device = self.device
        if device is not None:
            await device(scope, receive, send)
            return
        if await accept(receive, send):
            await send({"type": "websocket.close", "code": 1013, "reason": "not yet available"})

    async def start(self) -> None:
        """Start the pump's timers, then listen.

        Raises
        ------
        ServerError
            If the address cannot be bound.
        """
        await self.signaling.start()
        try:
            await self.edge.start()
        except ServerError:
            await self.signaling.close()
            raise
        self._tasks = [asyncio.create_task(job()) for job in self.background]
        logger.info("listening on %s", self.url)

    async def close(self) -> None:
        """Close every connection (1001), stop listening, let the pumps settle."""
        channels = [*self._channels]
        if self.device is not None:
            channels += self.device.channels()
        for channel in channels:
            channel.close(CloseCode.GOING_AWAY, SHUTDOWN_REASON)
        if channels:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(c.drain() for c in channels)), self.config.close_timeout_s
                )
        await self.edge.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.signaling.close()

    async def __aenter__(self) -> EdgeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
