"""No test, benchmark or command of ours reaches a public server through aiortc.

aiortc reads ``RTCConfiguration(iceServers=None)``, and so a bare
``RTCPeerConnection()``, as "gather against stun.l.google.com": a test doing that
depends on the Internet and on a third party's server (issue 13). Every peer
connection is given a configuration with an explicit list of ICE servers.
"""

from __future__ import annotations

import ast
from pathlib import Path

from aiortc import RTCPeerConnection

from tests.media.peers import MAX_BUNDLE, NO_ICE_SERVERS

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("api", "bench", "media", "signaling", "teleconsult", "tests")


def peer_connections_without_servers(path: Path) -> list[int]:
    """Lines of ``path`` that build an RTCPeerConnection or RTCConfiguration without
    ICE servers (no argument, or a configuration without ``iceServers``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        needed = {"RTCPeerConnection": "configuration", "RTCConfiguration": "iceServers"}
        if name in needed and not node.args and needed[name] not in {k.arg for k in node.keywords}:
            found.append(node.lineno)
    return found


def test_every_peer_connection_names_its_ice_servers() -> None:
    """No bare RTCPeerConnection() or RTCConfiguration() anywhere in our code."""
    offenders = {
        str(path.relative_to(ROOT)): lines
        for package in SCANNED
        for path in sorted((ROOT / package).rglob("*.py"))
        if (lines := peer_connections_without_servers(path))
    }
    assert offenders == {}


def test_the_scan_finds_a_bare_peer_connection(tmp_path: Path) -> None:
    """The scan itself sees the forms it forbids (and passes the ones it allows)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "a = RTCPeerConnection()\n"
        "b = aiortc.RTCPeerConnection()\n"
        "c = RTCConfiguration(bundlePolicy=x)\n"
        "d = RTCPeerConnection(CONFIG)\n"
        "e = RTCConfiguration(iceServers=[])\n"
        "f = RTCPeerConnection(configuration=CONFIG)\n"
    )
    assert peer_connections_without_servers(sample) == [1, 2, 3]


async def test_the_tests_configurations_gather_only_host_candidates() -> None:
    """With the tests' configurations a peer gathers on the host only: no srflx candidate
    (what a reachable public STUN server would add) and no server contacted."""
    for configuration in (NO_ICE_SERVERS, MAX_BUNDLE):
        assert configuration.iceServers == []
        pc = RTCPeerConnection(configuration)
        try:
            pc.addTransceiver("audio", direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            sdp = pc.localDescription.sdp
            assert "a=candidate:" in sdp
            assert "typ srflx" not in sdp
            assert "typ relay" not in sdp
        finally:
            await pc.close()
