"""The aiortc internals media/ relies on still behave as media/aiortc_compat.py assumes."""

from __future__ import annotations

import pytest
from aiortc import RTCBundlePolicy, RTCIceTransportPolicy, RTCPeerConnection

from media.aiortc_compat import msid_of, rtc_configuration, set_msid
from media.exceptions import InvalidIceServerError


async def test_set_msid_reaches_the_offer() -> None:
    """The stream and track ids set on a sender appear in its m-section's a=msid line."""
    pc = RTCPeerConnection(rtc_configuration([], "all"))
    transceiver = pc.addTransceiver("video", direction="sendonly")
    set_msid(transceiver.sender, "stream-of-dr-wang", "track-1")
    await pc.setLocalDescription(await pc.createOffer())
    assert "a=msid:stream-of-dr-wang track-1" in pc.localDescription.sdp
    assert msid_of(transceiver.sender) == ("stream-of-dr-wang", "track-1")
    await pc.close()


def test_configuration_from_browser_dicts() -> None:
    """RTCIceServer dicts map to aiortc's types; no servers means none, not Google's STUN."""
    config = rtc_configuration(
        [
            {"urls": ["stun:127.0.0.1:3478"]},
            {"urls": "turn:127.0.0.1:3478?transport=udp", "username": "u", "credential": "c"},
        ],
        "relay",
    )
    assert config.iceServers is not None
    assert [s.urls for s in config.iceServers] == [
        ["stun:127.0.0.1:3478"],
        "turn:127.0.0.1:3478?transport=udp",
    ]
    assert config.iceServers[1].username == "u"
    assert config.iceTransportPolicy is RTCIceTransportPolicy.RELAY
    assert config.bundlePolicy is RTCBundlePolicy.MAX_BUNDLE
    assert rtc_configuration([], "all").iceServers == []


@pytest.mark.parametrize(
    "entry", [{}, {"urls": ""}, {"urls": "turn:x", "username": ["not", "a", "string"]}]
)
def test_unusable_ice_server_is_refused(entry: dict[str, str | list[str]]) -> None:
    """An RTCIceServer dict without urls or with non-string credentials is refused."""
    with pytest.raises(InvalidIceServerError):
        rtc_configuration([entry], "all")
