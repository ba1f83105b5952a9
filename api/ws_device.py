"""The ``/device`` endpoint (ECG carts): a raw ASGI pump of the device protocol.

The device protocol, storage and annotation live in the live ECG service, reached
through :class:`~signaling.ports.DeviceStreams`; this module moves bytes and JSON
between uvicorn and it.

Design notes
------------
- **Authentication happens in the upgrade** (:meth:`DeviceEndpoint.check`): the token
  comes from ``Authorization: Bearer <jwt>`` or, for carts and browsers that cannot set
  headers, from the query ``?token=<jwt>`` (it then appears in access logs: prefer the
  header). No or a bad token: HTTP 401; a valid token whose role is not ``device``:
  HTTP 403. The reason is in the response body, and nothing is accepted. The device id
  is the token's ``sub``.
- **Group commit.** Frames are written as they arrive but acked only after a commit:
  every ``commit_interval_s`` the endpoint takes every written stream
  (``begin_commit``, on the loop), fsyncs them in a worker thread (``run``) and sends
  the acks (``end_commit``). One commit is in flight at a time; a device never waits
  more than about two intervals plus the fsync for its ack.
- **Acks never wait**: they go through the connection's :class:`~api.ws.Channel`
  (written at once when the socket is writable, else queued), so a commit that acks
  ~100 streams costs no task and no await per ack. A connection that is closing gets
  none (the device resumes from the last ack it read, which the server never
  contradicts: a stale ack is ignored by the device).
- **Takeover**: a device that resumes a stream on a new connection while the old one
  still looks alive; the old connection gets ``error superseded`` and is closed.
- **Revocation**: :meth:`DeviceEndpoint.revoke` closes every open connection of a cart
  at once (``error revoked``, fatal, close 1008); its reconnection is refused in the
  upgrade (401) because the credential check reads the registry.
- **The check runs off the event loop** (a worker thread): a registered cart's
  credential is looked up in the store.
- **What a registered cart declares** (its token names an institution): each ``start``
  is checked by ``declaration(claims, consult, room)`` in a worker thread before the
  ECG side sees it; a refusal answers ``error not_permitted`` (not fatal: the
  connection stays, that stream is not opened) with the reason.
- **Keep-alive**: uvicorn's WebSocket pings find a dead cart; its streams are then
  released and stay resumable.
- **Ingest pacing** (:class:`IngestPacer`): a connection's frames are taken at most
  ``device_ingest_speed`` times faster than real time once ``device_ingest_burst_s``
  of signal has come at once; past that the pump waits before it reads the next
  message, so a cart catching up after a drop (or a misbehaving one) is slowed by TCP,
  loses nothing, and cannot fill the server's memory and disk at wire speed.
- **Message size**: the device protocol promises messages up to 1 MiB
  (docs/device-protocol.md, :data:`DEVICE_MAX_MESSAGE_BYTES`); a larger one gets the
  ECG side's fatal ``error`` and close 1009.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs

import msgspec

from api.ws import Channel, ChannelLimits, Receive, Scope, Send, accept, refuse
from sessions.errors import TokenError, TokenExpired, TokenNotYetValid
from sessions.tokens import TokenClaims
from signaling.ports import DeviceLink, DeviceOutput, DeviceStreams

__all__ = [
    "DEVICE_MAX_MESSAGE_BYTES",
    "DEVICE_ROLE",
    "DeviceEndpoint",
    "Refusal",
    "bearer_token",
    "deliver",
]

logger = logging.getLogger(__name__)

DEVICE_ROLE: Final = "device"
DEVICE_MAX_MESSAGE_BYTES: Final = 1024 * 1024
# ``declaration(claims, consult, room)``: None when a registered cart may declare them.
Declaration = Callable[[TokenClaims, str | None, str | None], str | None]
REVOKED_CLOSE: Final = (1008, "device revoked")


@dataclass
class IngestPacer:
    """How long to wait before reading a connection's next message so that the signal it
    sent stays within ``burst_s + speed * elapsed`` seconds (a token bucket of seconds
    of signal, refilled at ``speed`` per second up to ``burst_s``); no I/O.

    Parameters
    ----------
    speed : float
        Seconds of signal per second of time taken once the burst is spent.
    burst_s : float
        Seconds of signal taken at once.
    """

    speed: float
    burst_s: float
    _credit_s: float = field(init=False)
    _at_s: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._credit_s = self.burst_s

    def spend(self, signal_s: float, now_s: float) -> float:
        """``signal_s`` seconds of signal arrived at ``now_s`` (monotonic seconds); the
        seconds to wait before reading on (0 while within the budget)."""
        if self._at_s is not None:
            refill = max(0.0, now_s - self._at_s) * self.speed
            self._credit_s = min(self.burst_s, self._credit_s + refill)
        self._at_s = now_s
        self._credit_s -= signal_s
        return 0.0 if self._credit_s >= 0 else -self._credit_s / self.speed


@dataclass(frozen=True)
class Refusal:
    """An upgrade refused: the HTTP status and the reason (the response body)."""

    status: int
    reason: str


def headers_of(scope: Scope) -> dict[str, str]:
    """An ASGI scope's headers, lower-case names (the last of repeated ones)."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


def bearer_token(headers: Mapping[str, str], query: str) -> str | None:
    """The token of an upgrade request: ``Authorization: Bearer``, else ``?token=``."""
    header = headers.get("authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip() or None
    values = parse_qs(query).get("token")
    return values[0] if values else None


def deliver(channel: Channel, out: list[DeviceOutput]) -> bool:
    """Send the ECG side's output on ``channel``; True when it closed the connection."""
    for item in out:
        if isinstance(item, str):
            channel.send_text(item)
        else:
            channel.close(*item)
            return True
    return channel.closing


class DeviceEndpoint:
    """Serves ``/device``: token check in the upgrade, one session per connection.

    Parameters
    ----------
    streams : DeviceStreams
        The ECG side (sessions, storage, group commit).
    verify : callable
        ``verify(token) -> TokenClaims``; raises :class:`~sessions.errors.TokenError`.
    commit_interval_s : float
        Group-commit period in s (50–200 ms: the ack delay versus fsyncs per second).
    limits : ChannelLimits, optional
        Per-connection limits; by default messages up to :data:`DEVICE_MAX_MESSAGE_BYTES`.
    ingest_speed, ingest_burst_s : float
        The pacing of each connection (:class:`IngestPacer`; ``EdgeConfig``'s
        ``device_ingest_speed`` and ``device_ingest_burst_s``).
    """

    def __init__(
        self,
        streams: DeviceStreams,
        verify: Callable[[str], TokenClaims],
        *,
        commit_interval_s: float = 0.1,
        limits: ChannelLimits | None = None,
        declaration: Declaration | None = None,
        ingest_speed: float = 10.0,
        ingest_burst_s: float = 30.0,
    ) -> None:
        self.streams = streams
        self.ingest_speed = ingest_speed
        self.ingest_burst_s = ingest_burst_s
        self.verify = verify
        self.declaration = declaration
        self.commit_interval_s = commit_interval_s
        self.limits = limits or ChannelLimits(
            max_message_bytes=DEVICE_MAX_MESSAGE_BYTES,
            max_queued_bytes=4 * DEVICE_MAX_MESSAGE_BYTES,
        )
        self._channels: dict[DeviceLink, Channel] = {}
        self._device_of: dict[DeviceLink, str] = {}
        self._committer: asyncio.Task[None] | None = None
        self.connections = 0

    def check(self, headers: Mapping[str, str], query: str) -> Refusal | TokenClaims:
        """The claims of a valid device token, or why the upgrade is refused."""
        token = bearer_token(headers, query)
        if token is None:
            return Refusal(401, "missing token: send Authorization: Bearer <device token>")
        try:
            claims = self.verify(token)
        except TokenExpired:
            return Refusal(401, "token expired")
        except TokenNotYetValid:
            return Refusal(401, "token not yet valid")
        except TokenError:
            # Not the error's text: it may carry the JWT library's words about the token.
            return Refusal(401, "invalid token")
        if claims.role != DEVICE_ROLE:
            return Refusal(403, f"a {claims.role} token cannot stream ECG: role device needed")
        return claims

    async def _refused_start(self, claims: TokenClaims, text: str) -> str | None:
        """The ``error`` to answer a registered cart's ``start`` it may not send, or None."""
        if self.declaration is None or claims.institution is None:
            return None
        try:
            message = msgspec.json.decode(text)
        except msgspec.DecodeError:
            return None  # the ECG side answers bad_json
        if not isinstance(message, dict) or message.get("type") != "start":
            return None
        consult, room = message.get("consult"), message.get("room")
        if not (consult is None or isinstance(consult, str)) or not (
            room is None or isinstance(room, str)
        ):
            return None  # the ECG side answers bad_message
        reason = await asyncio.to_thread(self.declaration, claims, consult, room)
        if reason is None:
            return None
        stream = message.get("stream")
        return msgspec.json.encode(
            {
                "type": "error",
                "code": "not_permitted",
                "reason": reason,
                "fatal": False,
                "stream": stream if isinstance(stream, str) else None,
                "next_index": None,
            }
        ).decode()

    def revoke(self, device_id: str) -> int:
        """Close every open connection of ``device_id`` (its credential was revoked);
        how many. Call on the event loop."""
        # The device protocol's ``error`` (docs/device-protocol.md), written here rather
        # than with ecg.device's encoder: this module must not import numpy.
        error = msgspec.json.encode(
            {
                "type": "error",
                "code": "revoked",
                "reason": "this device has been revoked",
                "fatal": True,
                "stream": None,
                "next_index": None,
            }
        ).decode()
        closed = 0
        for link, device in list(self._device_of.items()):
            channel = self._channels.get(link)
            if device == device_id and channel is not None and not channel.closing:
                deliver(channel, [error, REVOKED_CLOSE])
                closed += 1
        return closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pump one device connection until it ends."""
        query = scope.get("query_string", b"").decode("latin-1")
        checked = await asyncio.to_thread(self.check, headers_of(scope), query)
        if isinstance(checked, Refusal):
            await refuse(receive, send, checked.status, checked.reason)
            return
        if not await accept(receive, send):
            return
        channel = Channel(send, self.limits)
        self.connections += 1
        self._ensure_committer()

        def superseded(out: list[DeviceOutput]) -> None:
            deliver(channel, out)

        claims = checked
        link = self.streams.connect(claims.identity, superseded)
        self._channels[link] = channel
        self._device_of[link] = claims.identity
        limit = self.limits.max_message_bytes
        pacer = IngestPacer(self.ingest_speed, self.ingest_burst_s)
        loop = asyncio.get_running_loop()
        taken_s = 0.0
        try:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    break
                if channel.closing:  # read on until the close is through
                    continue
                text: str | None = message.get("text")
                data: bytes = b"" if text is not None else (message.get("bytes") or b"")
                size = len(text) if text is not None else len(data)
                if size > limit:
                    out = link.too_large(size, limit)
                elif text is not None:
                    refused = await self._refused_start(claims, text)
                    out = [refused] if refused is not None else link.receive_text(text)
                else:
                    out = link.receive_bytes(data)
                if out:
                    deliver(channel, out)
                received_s = link.received_signal_s
                wait_s = pacer.spend(received_s - taken_s, loop.time())
                taken_s = received_s
                if wait_s > 0:
                    await asyncio.sleep(wait_s)  # the socket pushes back meanwhile
        finally:
            link.connection_lost()
            del self._channels[link]
            del self._device_of[link]
            channel.disconnected()
            await channel.drain()

    def channels(self) -> list[Channel]:
        """Every open device connection (the edge closes them at shutdown)."""
        return list(self._channels.values())

    async def close(self) -> None:
        """Stop the committer after a last commit (the connections are closed by then)."""
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        await self._commit_once()
        self.streams.close()

    def _ensure_committer(self) -> None:
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_forever())

    async def _commit_forever(self) -> None:
        while True:
            await asyncio.sleep(self.commit_interval_s)
            try:
                await self._commit_once()
            except Exception:
                logger.exception("group commit failed")

    async def _commit_once(self) -> None:
        commit = self.streams.begin_commit()
        await asyncio.to_thread(commit.run)
        for link, out in self.streams.end_commit(commit):
            channel = self._channels.get(link)
            if channel is not None and out:
                deliver(channel, out)
