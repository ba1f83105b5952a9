"""The fan-out of live ECG to viewers on ``/ws`` (``watch``, ``ecg_*``).

A thin layer: which streams exist comes from an :class:`~signaling.ports.EcgCatalog`
(the live ECG service); this module decides who may see what and sends JSON. The
``/device`` endpoint that carts stream to is the edge's (``api.ws_device``).

Design notes
------------
- **Viewers** (:class:`ViewerHub`): whether a viewer may list and subscribe to a
  stream is the ``may_view`` policy's (the server's is
  :meth:`signaling.ecg_access.EcgAccess.may_view`: rights that follow from people and
  institutions); by default, :func:`grants`: a token whose room is the stream's
  ``room`` or ``consult``.
- Each live chunk is encoded once (by the live workers) and sent to each of the
  stream's subscribers through their connection's outlet, which never waits: a slow
  viewer never holds up the device or the others.
- **A lagging viewer is spared chunks, not closed.** A chunk that makes no flag final
  is *skippable*: a connection with more than its live backlog waiting drops it (the
  viewer sees a gap in ``first_index`` and is current again once it has read its
  backlog). Chunks with final flags and the ``ecg_ended`` messages are never skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sessions.store import AuditEntry
from signaling import messages as m
from signaling.context import iso_z, utc_now
from signaling.effects import EcgRequest
from signaling.ports import EcgCatalog

__all__ = ["ViewerHub", "grants"]

# (connection id, encoded JSON text, skippable: see the module notes)
Sender = Callable[[int, str, bool], None]
MayView = Callable[[EcgRequest, m.EcgStreamInfo], bool]


def grants(viewer: EcgRequest, info: m.EcgStreamInfo) -> bool:
    """The rule of rooms alone: the viewer's room is the stream's ``room`` or ``consult``."""
    return viewer.room in (info.room, info.consult)


def viewed(viewer: EcgRequest, info: m.EcgStreamInfo) -> AuditEntry:
    """The audit row of a viewer granted a stream."""
    return AuditEntry(
        time=iso_z(utc_now()),
        room=viewer.room,
        actor=viewer.identity,
        action="ecg.viewed",
        target=f"stream:{info.stream}",
        detail={"state": info.state},
        institution=info.institution or "",
        patient=info.patient,
        consult=info.consult or "",
    )


class ViewerHub:
    """Viewer subscriptions and the fan-out of live ECG chunks.

    Parameters
    ----------
    catalog : EcgCatalog
        The streams that exist.
    send : callable
        ``send(conn, text, skippable)``: send encoded JSON to a ``/ws`` connection
        (never waits; ``skippable``: a live chunk a lagging connection may drop).
    may_view : callable
        ``may_view(request, info)``: whether the viewer asking may see the stream;
        :func:`grants` by default.
    audit : callable, optional
        Given an ``ecg.viewed`` :class:`~sessions.store.AuditEntry` for each
        subscription granted (who, which stream, its patient and institution).
    display_fs_hz : float
        Rate of the display samples announced in ``ecg_subscribed``.
    """

    def __init__(
        self,
        catalog: EcgCatalog,
        send: Sender,
        *,
        may_view: MayView = grants,
        audit: Callable[[AuditEntry], None] | None = None,
        display_fs_hz: float = 125.0,
    ) -> None:
        self.catalog = catalog
        self.send = send
        self.may_view = may_view
        self.audit = audit
        self.display_fs_hz = display_fs_hz
        self._subscribers: dict[str, set[int]] = {}

    def subscribers(self, stream: str) -> int:
        """How many connections watch ``stream``."""
        return len(self._subscribers.get(stream, ()))

    def request(self, request: EcgRequest) -> None:
        """Answer a viewer's request (the core's :class:`~signaling.effects.EcgRequest`)."""
        conn = request.conn
        reply: m.ServerMessage
        match request.message:
            case m.EcgList(ref=ref):
                streams = [s for s in self.catalog.ecg_streams() if self.may_view(request, s)]
                streams.sort(key=lambda s: s.start_time, reverse=True)
                reply = m.EcgStreams(streams=streams, ref=ref)
            case m.EcgSubscribe(stream=stream, ref=ref):
                info = self.catalog.ecg_stream(stream)
                if info is None or not self.may_view(request, info):
                    # A stream the viewer may not see does not exist for them (as another
                    # institution's record answers 404 on the REST API).
                    reply = m.Error(code=m.ErrorCode.NOT_FOUND, reason="no such stream", ref=ref)
                else:
                    # By the stream's own id: the one its live chunks are published under,
                    # whatever form of it (upper case, braces, urn:uuid:) the viewer sent.
                    self._subscribers.setdefault(info.stream, set()).add(conn)
                    reply = m.EcgSubscribed(info=info, display_fs_hz=self.display_fs_hz, ref=ref)
                    if self.audit is not None:
                        self.audit(viewed(request, info))
            case m.EcgUnsubscribe(stream=stream, ref=ref):
                self._discard(conn, [stream])
                reply = m.EcgUnsubscribed(stream=stream, ref=ref)
        self.send(conn, m.encode(reply).decode(), False)

    def publish(self, message: m.EcgData | m.EcgEnded) -> None:
        """Send a live chunk or an end to the stream's subscribers (encoded once)."""
        if self._subscribers.get(message.stream):
            self.publish_text(message.stream, m.encode(message).decode())

    def publish_text(self, stream: str, text: str, *, skippable: bool = False) -> None:
        """Send an already encoded ``ecg_data``/``ecg_ended`` to the stream's subscribers.

        ``skippable``: a chunk a lagging subscriber may be spared (see the module notes).
        """
        for conn in list(self._subscribers.get(stream, ())):
            self.send(conn, text, skippable)

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
