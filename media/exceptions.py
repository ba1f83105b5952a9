"""The one exception tree of ``media/``.

::

    MediaError
    ├── InvalidSdpError            (also ValueError) SDP that cannot be applied
    ├── UnknownTransceiverError    (also ValueError) a candidate for no known m-line
    ├── WrongPeerError             (also ValueError) e.g. an offer on "subscribe"
    ├── UnknownParticipantError    (also KeyError)   no media session for that id
    ├── ParticipantExistsError     (also ValueError) join twice without leave
    ├── InvalidIceServerError      (also ValueError) an RTCIceServer dict we cannot use
    ├── NegotiationError                             an event the offer state
    │                                                machine does not accept
    └── RecordingError                               a recording cannot be written
                                                     or read (codec, manifest, disk)

Errors caused by the client's input also derive from ``ValueError`` so that callers
written against :class:`signaling.ports.MediaBackend` (which promises ``ValueError``)
need not know this tree. Messages name what was wrong, never internal state.
"""

from __future__ import annotations


class MediaError(Exception):
    """Base class of every error raised by ``media/``."""


class InvalidSdpError(MediaError, ValueError):
    """A session description that is malformed or cannot be applied."""


class UnknownTransceiverError(MediaError, ValueError):
    """An ICE candidate whose ``sdpMid`` / ``sdpMLineIndex`` names no transceiver."""


class WrongPeerError(MediaError, ValueError):
    """An offer or answer on the peer connection where the other side offers."""


class UnknownParticipantError(MediaError, KeyError):
    """No media session exists for the participant id."""

    def __str__(self) -> str:
        # KeyError quotes its argument; a message reads better plain.
        return str(self.args[0]) if self.args else ""


class ParticipantExistsError(MediaError, ValueError):
    """``join`` for a participant whose session is still open."""


class InvalidIceServerError(MediaError, ValueError):
    """An RTCIceServer dictionary without ``urls`` or with values of the wrong type."""


class NegotiationError(MediaError):
    """An event that the subscribe offer state machine does not accept in its state."""


class RecordingError(MediaError):
    """A recording that cannot be written or read: unknown codec, bad manifest, disk error."""
