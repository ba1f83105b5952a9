"""Resume logic of the device stream protocol, both ends, with no I/O.

Server side: :class:`DeviceSession`, one per device connection. Bytes and text go in
(:meth:`~DeviceSession.receive_text`, :meth:`~DeviceSession.receive_bytes`), a list of
effects comes out: messages to send (:class:`Send`), storage work to do (:class:`Open`,
:class:`Append`, :class:`Finalise`, :class:`Release`) and :class:`Close`. The caller
(the thin I/O layer: :class:`ecg.streamstore.StreamService`, then the ``/device``
websockets handler) performs the storage work and reports back
(:meth:`~DeviceSession.opened`, :meth:`~DeviceSession.durable`,
:meth:`~DeviceSession.finalised`, ...), which yields further effects such as the acks.

Device side: :class:`StreamSender` keeps every sample the server has not acknowledged,
cuts them into frames, and rewinds to the server's index after a reconnect.

Design notes
------------
- **The ack is the durable index.** The session never acks on receipt: it emits
  :class:`Append` for the new samples, and acks only when the caller says they are
  durable (after fsync). A crash between the two loses nothing acked, and the device
  still holds what was not.
- **Frames are placed by their absolute index**, compared with the *written* index
  (what was appended, durable or not), so a frame is one of: a duplicate (entirely
  below: dropped silently, since resends after a reconnect are expected), contiguous
  or overlapping (only the new part is appended: overlap is accepted consistently and
  the old samples are never rewritten), a small gap (refused with a non-fatal ``gap``
  error carrying the index to resend from: nothing is buffered, because on one ordered
  connection a gap can only come from a device that skipped ahead, and rewinding costs
  it nothing), or far ahead (more than ``max_gap_s`` beyond: fatal ``far_ahead``, the
  device's counter cannot be trusted).
- **States and transitions are one table** (:data:`TRANSITIONS`). A device message
  that has no entry is refused with the code of :data:`REFUSALS`; a caller report that
  has no entry is a :class:`~ecg.device.LocalProtocolError` (a bug of the I/O layer).
- **Any fatal error closes the connection**, with all its streams: the device
  reconnects and resumes from the acks, which is simpler for a vendor than per-stream
  recovery and loses nothing.
"""

from __future__ import annotations

import bisect
import enum
import logging
import uuid
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from ecg.device import (
    Ack,
    End,
    Ended,
    Error,
    ErrorCode,
    Frame,
    FrameError,
    LocalProtocolError,
    ProtocolError,
    ServerMessage,
    Start,
    Started,
    StreamRefused,
    decode_client_message,
)

__all__ = [
    "REFUSALS",
    "TRANSITIONS",
    "Append",
    "Close",
    "DeviceSession",
    "Effect",
    "Finalise",
    "FramePlacement",
    "Open",
    "Placement",
    "Release",
    "Send",
    "SessionLimits",
    "StreamEvent",
    "StreamSender",
    "StreamState",
    "place_frame",
]

log = logging.getLogger(__name__)

# WebSocket close codes: 1008 policy violation (the device's fault), 1011 server error.
CLOSE_PROTOCOL: Final = 1008
CLOSE_INTERNAL: Final = 1011


# ---------------------------------------------------------------------------------------
# Effects: what the session asks its caller to do


@dataclass(frozen=True)
class Send:
    """Send ``message`` to the device as a text message."""

    message: ServerMessage


@dataclass(frozen=True)
class Open:
    """Open or create the stream of ``start`` in the store for this device.

    Answer with :meth:`DeviceSession.opened` or :meth:`DeviceSession.refused`.
    """

    device: str
    start: Start


@dataclass(frozen=True, eq=False)
class Append:
    """Append ``samples`` (shape (n, leads), int16) at ``first_index`` to the stream.

    Appends of one stream are contiguous. Report durability with
    :meth:`DeviceSession.durable` (after fsync), which yields the ack.
    """

    stream: uuid.UUID
    first_index: int
    samples: npt.NDArray[np.int16]


@dataclass(frozen=True)
class Finalise:
    """The stream is complete at ``total_samples``: finalise the stored record.

    Answer with :meth:`DeviceSession.finalised`.
    """

    stream: uuid.UUID
    total_samples: int


@dataclass(frozen=True)
class Release:
    """The connection no longer uses the stream: close its writer (it stays resumable)."""

    stream: uuid.UUID


@dataclass(frozen=True)
class Close:
    """Close the connection with a WebSocket close ``code`` and ``reason``."""

    code: int
    reason: str


Effect = Send | Open | Append | Finalise | Release | Close


# ---------------------------------------------------------------------------------------
# Frame placement: the heart of resume, a pure function


class Placement(enum.Enum):
    """Where a frame falls relative to the next index the stream expects."""

    DUPLICATE = "duplicate"  # entirely below: drop
    APPEND = "append"  # starts at or before the next index and brings new samples
    GAP = "gap"  # starts beyond, within the window: refuse, device rewinds
    FAR_AHEAD = "far_ahead"  # starts far beyond: refuse, fatal


@dataclass(frozen=True)
class FramePlacement:
    """A frame's :class:`Placement` and, for ``APPEND``, the first new row in the frame."""

    placement: Placement
    offset: int = 0


def place_frame(
    next_index: int, first_index: int, n_samples: int, *, max_gap_samples: int
) -> FramePlacement:
    """Place a frame of ``n_samples`` at ``first_index`` against ``next_index``.

    Parameters
    ----------
    next_index : int
        Index of the next sample the stream needs (all below are written).
    first_index, n_samples : int
        The frame's first sample index and sample count (per lead).
    max_gap_samples : int
        Largest gap, in samples, refused as a recoverable ``gap``; beyond is ``far_ahead``.
    """
    if first_index > next_index:
        if first_index - next_index > max_gap_samples:
            return FramePlacement(Placement.FAR_AHEAD)
        return FramePlacement(Placement.GAP)
    if first_index + n_samples <= next_index:
        return FramePlacement(Placement.DUPLICATE)
    return FramePlacement(Placement.APPEND, next_index - first_index)


# ---------------------------------------------------------------------------------------
# Server side: one session per device connection


class StreamState(enum.Enum):
    """State of one stream within a connection."""

    OPENING = "opening"  # Open emitted, waiting for the caller's answer
    OPEN = "open"  # frames flow
    ENDING = "ending"  # Finalise emitted, waiting for the caller
    ENDED = "ended"  # complete and stored
    CLOSED = "closed"  # refused, superseded or released: gone from the connection


class StreamEvent(enum.Enum):
    """What can happen to a stream: device messages and caller reports."""

    # from the device
    START = "start"
    FRAME = "frame"
    END = "end"
    # from the caller
    OPENED = "opened"
    OPENED_ENDED = "opened_ended"
    REFUSED = "refused"
    DURABLE = "durable"
    FINALISED = "finalised"
    SUPERSEDED = "superseded"
    RELEASED = "released"


_S, _E = StreamState, StreamEvent

TRANSITIONS: Final[dict[StreamState, dict[StreamEvent, StreamState]]] = {
    _S.OPENING: {
        _E.OPENED: _S.OPEN,
        _E.OPENED_ENDED: _S.ENDED,
        _E.REFUSED: _S.CLOSED,
        _E.RELEASED: _S.CLOSED,
    },
    _S.OPEN: {
        _E.START: _S.OPEN,  # a repeated start: answered with started again
        _E.FRAME: _S.OPEN,
        _E.DURABLE: _S.OPEN,
        _E.END: _S.ENDING,
        _E.SUPERSEDED: _S.CLOSED,
        _E.RELEASED: _S.CLOSED,
    },
    _S.ENDING: {
        _E.FRAME: _S.ENDING,  # only duplicates reach here; anything new is refused
        _E.DURABLE: _S.ENDING,
        _E.FINALISED: _S.ENDED,
        _E.SUPERSEDED: _S.CLOSED,
        _E.RELEASED: _S.CLOSED,
    },
    _S.ENDED: {
        _E.START: _S.ENDED,
        _E.END: _S.ENDED,
        _E.FRAME: _S.ENDED,
        _E.DURABLE: _S.ENDED,
        _E.SUPERSEDED: _S.CLOSED,
        _E.RELEASED: _S.CLOSED,
    },
    _S.CLOSED: {},
}

# The refusal for a device message that has no transition in a state.
REFUSALS: Final[dict[StreamEvent, ErrorCode]] = {
    _E.START: ErrorCode.STREAM_BUSY,
    _E.FRAME: ErrorCode.STREAM_ENDED,
    _E.END: ErrorCode.STREAM_BUSY,
}


@dataclass(frozen=True)
class SessionLimits:
    """Limits of one device connection.

    Parameters
    ----------
    max_streams : int
        Streams open at once on one connection.
    max_frame_samples : int
        Largest sample count (per lead) of one frame; larger frames are refused with
        ``frame_too_large`` (a frame should carry 20 ms to 1 s).
    max_gap_s : float
        Largest gap, in seconds of signal, refused as a recoverable ``gap``; a frame
        further ahead of the next expected index is ``far_ahead`` (fatal).
    """

    max_streams: int = 4
    max_frame_samples: int = 10_000
    max_gap_s: float = 60.0


@dataclass
class _Stream:
    start: Start
    handle: int
    state: StreamState = StreamState.OPENING
    written: int = 0  # index past the last appended sample
    acked: int = 0  # index past the last acknowledged (durable) sample
    total: int | None = None  # total samples, once ended


@dataclass(eq=False)  # a connection's session: identity, not value
class DeviceSession:
    """The server's protocol state for one device connection; no I/O.

    Parameters
    ----------
    device : str
        The device id the connection's token was verified for (its ``sub``).
    limits : SessionLimits
        Per-connection limits.
    """

    device: str
    limits: SessionLimits = field(default_factory=SessionLimits)
    closed: bool = False
    # Seconds of signal taken on this connection (new samples only, every stream): the
    # edge paces a device that sends faster than real time by it.
    received_signal_s: float = 0.0
    _streams: dict[uuid.UUID, _Stream] = field(default_factory=dict)
    _handles: dict[int, uuid.UUID] = field(default_factory=dict)
    _next_handle: int = 1

    # -- input from the device ----------------------------------------------------

    def receive_text(self, text: str) -> list[Effect]:
        """Handle a text message from the device."""
        if self.closed:
            return []
        try:
            message = decode_client_message(text)
            if isinstance(message, Start):
                return self._on_start(message)
            return self._on_end(message)
        except ProtocolError as error:
            return self._error(error, None)

    def receive_bytes(self, data: bytes) -> list[Effect]:
        """Handle a binary frame from the device."""
        if self.closed:
            return []
        try:
            frame = Frame.parse(data)
            return self._on_frame(frame)
        except ProtocolError as error:
            return self._error(error, None)

    def connection_lost(self) -> list[Effect]:
        """The connection is gone: release every stream it held."""
        self.closed = True
        effects: list[Effect] = []
        for stream_id, stream in self._streams.items():
            if stream.state is StreamState.CLOSED:
                continue
            self._transition(stream_id, StreamEvent.RELEASED)
            effects.append(Release(stream_id))
        return effects

    # -- reports from the caller ----------------------------------------------------

    def opened(
        self, stream_id: uuid.UUID, *, next_index: int, total_samples: int | None = None
    ) -> list[Effect]:
        """The store opened the stream; ``next_index`` samples are durable.

        ``total_samples`` is given when the stream had already ended (a device that
        missed ``ended``): it is answered with ``ended`` again.
        """
        stream = self._get(stream_id)
        if total_samples is not None:
            self._transition(stream_id, StreamEvent.OPENED_ENDED)
            stream.written = stream.acked = stream.total = total_samples
            return [Send(Ended(stream=stream_id, total_samples=total_samples))]
        self._transition(stream_id, StreamEvent.OPENED)
        stream.written = stream.acked = next_index
        started = Started(stream=stream_id, handle=stream.handle, next_index=next_index)
        return [Send(started)]

    def refused(self, stream_id: uuid.UUID, error: ProtocolError) -> list[Effect]:
        """The store refused to open the stream (owned by another device, ...)."""
        self._transition(stream_id, StreamEvent.REFUSED)
        return self._error(error, stream_id)

    def durable(self, stream_id: uuid.UUID, next_index: int) -> list[Effect]:
        """Samples below ``next_index`` are durable: ack them if that is news."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.state is StreamState.CLOSED:
            return []  # released meanwhile: nothing to tell
        self._transition(stream_id, StreamEvent.DURABLE)
        if next_index > stream.written:
            raise LocalProtocolError(
                f"durable index {next_index} beyond the written index {stream.written}"
            )
        if next_index <= stream.acked:
            return []
        stream.acked = next_index
        return [Send(Ack(stream=stream_id, next_index=next_index))]

    def finalised(self, stream_id: uuid.UUID) -> list[Effect]:
        """The store finalised the stream's record."""
        stream = self._get(stream_id)
        self._transition(stream_id, StreamEvent.FINALISED)
        assert stream.total is not None
        return [Send(Ended(stream=stream_id, total_samples=stream.total))]

    def superseded(self, stream_id: uuid.UUID) -> list[Effect]:
        """Another connection took the stream over (the device reconnected)."""
        self._transition(stream_id, StreamEvent.SUPERSEDED)
        error = StreamRefused(ErrorCode.SUPERSEDED, "the stream was resumed on another connection")
        return self._error(error, stream_id)

    def internal_error(self, stream_id: uuid.UUID | None = None) -> list[Effect]:
        """The caller failed (disk full, ...): tell the device, without details, and close."""
        error = ProtocolError(ErrorCode.INTERNAL, "internal server error; resume later")
        effects = self._error(error, stream_id)
        effects[-1] = Close(CLOSE_INTERNAL, "internal error")
        return effects

    # -- handlers ---------------------------------------------------------------------

    def _on_start(self, start: Start) -> list[Effect]:
        if start.device != self.device:
            raise StreamRefused(
                ErrorCode.DEVICE_MISMATCH,
                f"start names device {start.device!r} but the token is for {self.device!r}",
            )
        stream = self._streams.get(start.stream)
        if stream is not None and stream.state is not StreamState.CLOSED:
            if stream.start != start:
                raise StreamRefused(
                    ErrorCode.START_MISMATCH, "the stream is open with a different start"
                )
            self._transition(start.stream, StreamEvent.START)
            return self._restate(start.stream, stream)
        live = sum(s.state is not StreamState.CLOSED for s in self._streams.values())
        if live >= self.limits.max_streams:
            raise StreamRefused(
                ErrorCode.TOO_MANY_STREAMS,
                f"at most {self.limits.max_streams} streams per connection",
            )
        handle = self._next_handle
        self._next_handle += 1
        self._streams[start.stream] = _Stream(start=start, handle=handle)
        self._handles[handle] = start.stream
        log.info("device %s: stream %s opening as handle %d", self.device, start.stream, handle)
        return [Open(device=self.device, start=start)]

    def _restate(self, stream_id: uuid.UUID, stream: _Stream) -> list[Effect]:
        if stream.state is StreamState.ENDED:
            assert stream.total is not None
            return [Send(Ended(stream=stream_id, total_samples=stream.total))]
        return [Send(Started(stream=stream_id, handle=stream.handle, next_index=stream.acked))]

    def _on_frame(self, frame: Frame) -> list[Effect]:
        stream_id = self._handles.get(frame.stream)
        stream = None if stream_id is None else self._streams[stream_id]
        if stream_id is None or stream is None or stream.state is StreamState.CLOSED:
            raise StreamRefused(
                ErrorCode.UNKNOWN_STREAM, f"no open stream has handle {frame.stream}"
            )
        if stream.state is StreamState.OPENING:
            raise StreamRefused(
                ErrorCode.UNKNOWN_STREAM, f"stream of handle {frame.stream} is not started yet"
            )
        if frame.n_leads != stream.start.n_leads:
            raise FrameError(
                ErrorCode.LEAD_COUNT_MISMATCH,
                f"frame has {frame.n_leads} leads, the stream has {stream.start.n_leads}",
            )
        if frame.n_samples > self.limits.max_frame_samples:
            raise FrameError(
                ErrorCode.FRAME_TOO_LARGE,
                f"frame of {frame.n_samples} samples; at most {self.limits.max_frame_samples}",
            )
        self._transition(stream_id, StreamEvent.FRAME)
        max_gap = int(self.limits.max_gap_s * stream.start.fs_hz)
        where = place_frame(
            stream.written, frame.first_index, frame.n_samples, max_gap_samples=max_gap
        )
        if where.placement is Placement.DUPLICATE:
            return []
        if stream.state is not StreamState.OPEN:
            raise StreamRefused(ErrorCode.STREAM_ENDED, "the stream has ended; frame refused")
        if where.placement is Placement.FAR_AHEAD:
            raise StreamRefused(
                ErrorCode.FAR_AHEAD,
                f"frame starts at sample {frame.first_index}, more than {max_gap} samples "
                f"beyond the next expected index {stream.written}",
            )
        if where.placement is Placement.GAP:
            error = StreamRefused(
                ErrorCode.GAP,
                f"frame starts at sample {frame.first_index} but the next expected index is "
                f"{stream.written}; resend from there",
                fatal=False,
            )
            return self._error(error, stream_id, next_index=stream.written)
        new = frame.samples[where.offset :]
        stream.written = frame.end_index
        self.received_signal_s += new.shape[0] / stream.start.fs_hz
        return [Append(stream=stream_id, first_index=frame.first_index + where.offset, samples=new)]

    def _on_end(self, end: End) -> list[Effect]:
        stream = self._streams.get(end.stream)
        if stream is None or stream.state in (StreamState.OPENING, StreamState.CLOSED):
            raise StreamRefused(ErrorCode.UNKNOWN_STREAM, f"stream {end.stream} is not started")
        if stream.state is StreamState.ENDED:
            if end.total_samples != stream.total:
                raise StreamRefused(
                    ErrorCode.END_MISMATCH,
                    f"the stream ended with {stream.total} samples, not {end.total_samples}",
                )
            return self._restate(end.stream, stream)
        if end.total_samples < stream.written:
            raise StreamRefused(
                ErrorCode.END_MISMATCH,
                f"end says {end.total_samples} samples but {stream.written} were received",
            )
        if end.total_samples > stream.written:
            error = StreamRefused(
                ErrorCode.END_INCOMPLETE,
                f"end says {end.total_samples} samples but only {stream.written} were "
                "received; resend from there, then end again",
                fatal=False,
            )
            return self._error(error, end.stream, next_index=stream.written)
        self._transition(end.stream, StreamEvent.END)
        stream.total = end.total_samples
        return [Finalise(stream=end.stream, total_samples=end.total_samples)]

    # -- helpers ------------------------------------------------------------------------

    def _get(self, stream_id: uuid.UUID) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"stream {stream_id} is not on this connection")
        return stream

    def _transition(self, stream_id: uuid.UUID, event: StreamEvent) -> None:
        stream = self._get(stream_id)
        new = TRANSITIONS[stream.state].get(event)
        if new is None:
            code = REFUSALS.get(event)
            if code is None:
                raise LocalProtocolError(
                    f"stream {stream_id}: {event.value} is not allowed in state "
                    f"{stream.state.value}"
                )
            raise StreamRefused(
                code, f"{event.value} is not allowed while the stream is {stream.state.value}"
            )
        if new is not stream.state:
            log.info(
                "device %s: stream %s %s -> %s on %s",
                self.device,
                stream_id,
                stream.state.value,
                new.value,
                event.value,
            )
            stream.state = new
        if new is StreamState.CLOSED:
            self._handles.pop(stream.handle, None)

    def _error(
        self, error: ProtocolError, stream_id: uuid.UUID | None, *, next_index: int | None = None
    ) -> list[Effect]:
        message = Error(
            code=error.code.value,
            reason=error.reason,
            fatal=error.fatal,
            stream=stream_id,
            next_index=next_index,
        )
        log.info("device %s: error %s: %s", self.device, error.code.value, error.reason)
        effects: list[Effect] = [Send(message)]
        if error.fatal:
            effects += self.connection_lost()
            effects.append(Close(CLOSE_PROTOCOL, error.code.value))
        return effects


# ---------------------------------------------------------------------------------------
# Device side


class StreamSender:
    """The device's side of one stream: unacknowledged samples, cut into frames.

    Parameters
    ----------
    n_leads : int
        Number of leads (columns of every pushed block).
    frame_samples : int
        Samples per lead in a full frame (the last frame of a burst may be shorter).
    max_unacked_samples : int, optional
        Refuse :meth:`push` (``LocalProtocolError``) beyond this many unacknowledged
        samples; a real cart spills to its own storage instead. None: unbounded.

    Notes
    -----
    Three indices, per lead: ``acked <= sent <= produced``. Samples below ``acked``
    are forgotten, ``[acked, sent)`` are in flight, ``[sent, produced)`` wait to be
    sent. After a reconnect, :meth:`resume` sets both ``acked`` and ``sent`` to the
    server's ``next_index``: what was in flight and not acknowledged is sent again.
    """

    def __init__(
        self, n_leads: int, *, frame_samples: int, max_unacked_samples: int | None = None
    ) -> None:
        if frame_samples < 1 or frame_samples > 65535:
            raise LocalProtocolError(f"frame_samples {frame_samples} outside 1..65535")
        self.n_leads = n_leads
        self.frame_samples = frame_samples
        self.max_unacked_samples = max_unacked_samples
        self.acked = 0
        self.sent = 0
        self.produced = 0
        # Pushed blocks and the index of each one's first sample; blocks before
        # self._head are acknowledged (compacted now and then, so that slicing is a
        # binary search and a long backlog after an outage costs O(log n) per frame).
        self._blocks: list[npt.NDArray[np.int16]] = []
        self._starts: list[int] = []
        self._head = 0

    @property
    def unacked(self) -> int:
        """Samples per lead kept because the server has not acknowledged them."""
        return self.produced - self.acked

    def push(self, samples: npt.NDArray[np.int16]) -> None:
        """Add newly acquired samples, shape (n, n_leads), int16."""
        if samples.ndim != 2 or samples.shape[1] != self.n_leads or samples.dtype != np.int16:
            raise LocalProtocolError(
                f"expected int16 samples of shape (n, {self.n_leads}), got "
                f"{samples.dtype} {samples.shape}"
            )
        limit = self.max_unacked_samples
        if limit is not None and self.unacked + len(samples) > limit:
            raise LocalProtocolError(f"more than {limit} unacknowledged samples")
        if len(samples):
            self._blocks.append(samples)
            self._starts.append(self.produced)
            self.produced += len(samples)

    def next_frames(self, handle: int, *, limit: int | None = None) -> list[Frame]:
        """Cut the samples not yet sent into frames; they count as sent."""
        frames: list[Frame] = []
        while self.sent < self.produced and (limit is None or len(frames) < limit):
            stop = min(self.sent + self.frame_samples, self.produced)
            frames.append(Frame(stream=handle, first_index=self.sent, samples=self._slice(stop)))
            self.sent = stop
        return frames

    def on_ack(self, next_index: int) -> None:
        """The server made every sample below ``next_index`` durable: forget them.

        Raises
        ------
        LocalProtocolError
            When the ack is beyond what was produced (the server is confused).
        """
        if next_index > self.produced:
            raise LocalProtocolError(f"ack {next_index} beyond the {self.produced} produced")
        if next_index <= self.acked:
            return  # stale ack, after a resume to a later index
        self.acked = next_index
        self.sent = max(self.sent, next_index)
        self._forget(next_index)

    def resume(self, next_index: int) -> None:
        """Continue after (re)connecting: the server holds everything below ``next_index``."""
        if next_index < self.acked:
            raise LocalProtocolError(
                f"server resumes at {next_index}, below the acknowledged {self.acked}: "
                "acknowledged samples were lost"
            )
        self.on_ack(next_index)
        self.sent = next_index

    rewind = resume  # a ``gap`` or ``end_incomplete`` error: resend from its next_index

    def _slice(self, stop: int) -> npt.NDArray[np.int16]:
        start = self.sent
        parts: list[npt.NDArray[np.int16]] = []
        i = bisect.bisect_right(self._starts, start, lo=self._head) - 1
        while i < len(self._starts) and self._starts[i] < stop:
            block, first = self._blocks[i], self._starts[i]
            parts.append(block[max(start - first, 0) : stop - first])
            i += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _forget(self, index: int) -> None:
        head = bisect.bisect_right(self._starts, index, lo=self._head) - 1
        self._head = max(self._head, head)
        if self._head > 1024 and self._head > len(self._blocks) // 2:
            del self._blocks[: self._head], self._starts[: self._head]
            self._head = 0
