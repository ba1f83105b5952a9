"""The server side of WebRTC: aiortc peer connections, forwarding, recording.

Public API: :class:`media.sfu.Sfu` (satisfies ``signaling.ports.MediaBackend``; also
``set_recording``, ``recording``, ``stats``), the :class:`media.forwarder.Forwarder`
interface with :class:`media.passthrough.PassthroughForwarder` (default, no
transcoding) and :class:`media.forwarder.RelayForwarder` (aiortc's MediaRelay),
:class:`media.recorder.Recorder`, :func:`media.export.export`,
:class:`media.metrics.MediaCollector`, and the errors of :mod:`media.exceptions`.
"""

from media.exceptions import (
    InvalidIceServerError,
    InvalidSdpError,
    MediaError,
    NegotiationError,
    ParticipantExistsError,
    RecordingError,
    UnknownParticipantError,
    UnknownTransceiverError,
    WrongPeerError,
)
from media.forwarder import Forwarder, RelayForwarder
from media.metrics import MediaCollector
from media.passthrough import PassthroughForwarder
from media.recorder import Recorder
from media.sfu import MediaListener, Sfu

__all__ = [
    "Forwarder",
    "InvalidIceServerError",
    "InvalidSdpError",
    "MediaCollector",
    "MediaError",
    "MediaListener",
    "NegotiationError",
    "ParticipantExistsError",
    "PassthroughForwarder",
    "Recorder",
    "RecordingError",
    "RelayForwarder",
    "Sfu",
    "UnknownParticipantError",
    "UnknownTransceiverError",
    "WrongPeerError",
]
