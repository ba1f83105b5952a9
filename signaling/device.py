"""The fan-out of live ECG to viewers on ``/ws`` (``watch``, ``ecg_*``).

A thin layer: which streams exist comes from an :class:`~signaling.ports.EcgCatalog`
(the live ECG service); this module decides who may see what and sends JSON. The
``/device`` endpoint that carts stream to is the edge's (``api.ws_device``).

Design notes
------------
- **Viewers** (:class:`ViewerHub`): a stream is granted to a token whose room is the
  stream's ``room`` or ``consult``, or to every token of the ECG centre room
  (``centre_room``, when configured).
- Each live chunk is encoded once (by the live workers) and sent to each of the
  stream's subscribers through their connection's outlet, which never waits: a slow
  viewer never holds up the device or the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from signaling import messages as m
from signaling.ports import EcgCatalog

__all__ = ["ViewerHub", "grants"]

Sender = Callable[[int, str], None]  # (connection id, encoded JSON text)


def grants(room: str, info: m.EcgStreamInfo, centre_room: str | None = None) -> bool:
    """Whether a token entering ``room`` may view the stream ``info``."""
    if centre_room is not None and room == centre_room:
        return True
    return room in (info.room, info.consult)


class ViewerHub:
    """Viewer subscriptions and the fan-out of live ECG chunks.

    Parameters
    ----------
    catalog : EcgCatalog
        The streams that exist.
    send : callable
        ``send(conn, text)``: send encoded JSON to a ``/ws`` connection (never waits).
    centre_room : str, optional
        Tokens of this room (the ECG centre) may view every stream.
    display_fs_hz : float
        Rate of the display samples announced in ``ecg_subscribed``.
    """

    def __init__(
        self,
        catalog: EcgCatalog,
        send: Sender,
        *,
        centre_room: str | None = None,
        display_fs_hz: float = 125.0,
    ) -> None:
        self.catalog = catalog
        self.send = send
        self.centre_room = centre_room
        self.display_fs_hz = display_fs_hz
        self._subscribers: dict[str, set[int]] = {}

    def subscribers(self, stream: str) -> int:
        """How many connections watch ``stream``."""
        return len(self._subscribers.get(stream, ()))

    def request(
        self, conn: int, room: str, message: m.EcgList | m.EcgSubscribe | m.EcgUnsubscribe
    ) -> None:
        """Answer a viewer's request (from :class:`signaling.core.EcgRequest`)."""
        reply: m.ServerMessage
        match message:
            case m.EcgList(ref=ref):
                streams = [
                    s for s in self.catalog.ecg_streams() if grants(room, s, self.centre_room)
                ]
                streams.sort(key=lambda s: s.start_time, reverse=True)
                reply = m.EcgStreams(streams=streams, ref=ref)
            case m.EcgSubscribe(stream=stream, ref=ref):
                info = self.catalog.ecg_stream(stream)
                if info is None:
                    reply = m.Error(code=m.ErrorCode.NOT_FOUND, reason="no such stream", ref=ref)
                elif not grants(room, info, self.centre_room):
                    reason = f"your token's room {room!r} does not grant this stream"
                    reply = m.Error(code=m.ErrorCode.FORBIDDEN, reason=reason, ref=ref)
                else:
                    self._subscribers.setdefault(stream, set()).add(conn)
                    reply = m.EcgSubscribed(info=info, display_fs_hz=self.display_fs_hz, ref=ref)
            case m.EcgUnsubscribe(stream=stream, ref=ref):
                self._discard(conn, [stream])
                reply = m.EcgUnsubscribed(stream=stream, ref=ref)
        self.send(conn, m.encode(reply).decode())

    def publish(self, message: m.EcgData | m.EcgEnded) -> None:
        """Send a live chunk or an end to the stream's subscribers (encoded once)."""
        if self._subscribers.get(message.stream):
            self.publish_text(message.stream, m.encode(message).decode())

    def publish_text(self, stream: str, text: str) -> None:
        """Send an already encoded ``ecg_data``/``ecg_ended`` to the stream's subscribers."""
        for conn in list(self._subscribers.get(stream, ())):
            self.send(conn, text)

    def closed(self, conn: int) -> None:
        """A ``/ws`` connection is gone: drop its subscriptions."""
        self._discard(conn, list(self._subscribers))

    def _discard(self, conn: int, streams: Iterable[str]) -> None:
        for stream in streams:
            subscribers = self._subscribers.get(stream)
            if subscribers is not None:
                subscribers.discard(conn)
                if not subscribers:
                    del self._subscribers[stream]
