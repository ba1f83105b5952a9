"""Every use of aiortc internals by ``media/``, in one place.

Pinned to aiortc 1.16 (``aiortc~=1.16.0`` in pyproject); ``tests/media`` checks each
assumption so that an upgrade that breaks one fails loudly there.

- ``RTCConfiguration(iceServers=None)`` means Google's public STUN server to aiortc,
  not "none": we always pass a list.
- ``RTCRtpSender._stream_id`` / ``_track_id`` become the ``a=msid`` line of the
  m-section the sender is offered in. aiortc gives every sender of a connection the
  same random stream id; subscribers need one stream per *publisher* to tell whose
  media a track is, so the SFU sets them itself.
- ``RTCPeerConnection.signalingState`` is not a reliable sign of a closed connection:
  ``close()`` sets it to ``"closed"``, but a ``setRemoteDescription`` that was
  suspended meanwhile sets it back to ``"stable"`` when it resumes. The private
  ``_RTCPeerConnection__isClosed`` (None until ``close()``) is what aiortc itself
  checks before ``addTransceiver`` and ``createOffer``: :func:`is_closed`.
"""

from __future__ import annotations

from typing import Literal

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
)

from media.exceptions import InvalidIceServerError

IcePolicy = Literal["all", "relay"]
IceServerDict = dict[str, str | list[str]]


def set_msid(sender: RTCRtpSender, stream_id: str, track_id: str) -> None:
    """Make ``sender`` offer ``a=msid:<stream_id> <track_id>``."""
    sender._stream_id = stream_id
    sender._track_id = track_id


def is_closed(connection: RTCPeerConnection) -> bool:
    """Whether ``close()`` was called on ``connection`` (see the module notes)."""
    return connection._RTCPeerConnection__isClosed is not None  # type: ignore[attr-defined]


def msid_of(sender: RTCRtpSender) -> tuple[str, str]:
    """The ``(stream_id, track_id)`` that ``sender`` offers."""
    return str(sender._stream_id), str(sender._track_id)


def rtc_configuration(ice_servers: list[IceServerDict], policy: IcePolicy) -> RTCConfiguration:
    """An aiortc configuration from browser-style RTCIceServer dictionaries.

    Max-bundle: every m-section rides the first transport, so a renegotiation that
    adds tracks gathers no new candidates and allocates no new TURN relay.

    Raises
    ------
    InvalidIceServerError
        For a dictionary without ``urls`` or with values of the wrong type.
    """
    servers = []
    for entry in ice_servers:
        urls = entry.get("urls")
        username = entry.get("username")
        credential = entry.get("credential")
        if not urls or not isinstance(urls, str | list):
            raise InvalidIceServerError("an ICE server needs 'urls'")
        if not isinstance(username, str | None) or not isinstance(credential, str | None):
            raise InvalidIceServerError("ICE server 'username' and 'credential' must be strings")
        servers.append(RTCIceServer(urls=urls, username=username, credential=credential))
    return RTCConfiguration(
        # An empty list, not None: None makes aiortc fall back to Google's STUN server.
        iceServers=servers,
        iceTransportPolicy=RTCIceTransportPolicy(policy),
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
    )
