"""The server side of WebRTC: aiortc peer connections, forwarding, (later) recording.

Public API: :class:`media.sfu.Sfu` (satisfies ``signaling.ports.MediaBackend``), the
:class:`media.forwarder.Forwarder` interface, and the errors of
:mod:`media.exceptions`.
"""

from media.exceptions import (
    InvalidIceServerError,
    InvalidSdpError,
    MediaError,
    NegotiationError,
    ParticipantExistsError,
    UnknownParticipantError,
    UnknownTransceiverError,
    WrongPeerError,
)
from media.forwarder import Forwarder, RelayForwarder
from media.sfu import MediaListener, Sfu

__all__ = [
    "Forwarder",
    "InvalidIceServerError",
    "InvalidSdpError",
    "MediaError",
    "MediaListener",
    "NegotiationError",
    "ParticipantExistsError",
    "RelayForwarder",
    "Sfu",
    "UnknownParticipantError",
    "UnknownTransceiverError",
    "WrongPeerError",
]
