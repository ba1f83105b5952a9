"""The real server (signaling + the aiortc SFU) and a real coturn, for browser tests.

The server runs in the test's event loop, assembled by ``teleconsult.app.build_server``
exactly as ``teleconsult serve`` does (real ``media.sfu.Sfu``, SQLite Store in a tmp
data dir); coturn runs as a subprocess on loopback with the TURN REST-API shared
secret (``use-auth-secret``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from media.sfu import Sfu
from sessions.tokens import mint_token
from signaling.server import SignalingServer
from teleconsult.app import build_server
from teleconsult.config import Config

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
SECRET = "e2e-secret-" + "x" * 32
TURN_SECRET = "turn-secret-" + "y" * 32


@dataclass
class Consult:
    """A running server and how to open its client."""

    server: SignalingServer
    sfu: Sfu

    def token(self, identity: str, *, moderator: bool = False, room: str = "consult") -> str:
        permissions = {"publish", "subscribe"} | ({"moderate"} if moderator else set())
        return mint_token(
            SECRET,
            identity=identity,
            name=identity.replace("-", " ").title(),
            role="expert" if moderator else "applicant",
            room=room,
            permissions=frozenset(permissions),
        )

    def join_url(self, identity: str, *, moderator: bool = True, extra: str = "") -> str:
        """The client URL that joins at once, with a small camera to spare the CPU."""
        token = self.token(identity, moderator=moderator)
        return f"{self.server.url}/join?token={token}&autojoin=1&lang=en&w=320&h=180&fps=15{extra}"


@asynccontextmanager
async def running_consult(
    data_dir: Path,
    *,
    turn: Turn | None = None,
    relay: bool = False,
) -> AsyncIterator[Consult]:
    """Start the server as ``teleconsult serve`` assembles it, on a free 127.0.0.1 port."""
    config = Config(
        port=0,
        data_dir=data_dir,
        secret=SECRET,
        web_dir=WEB_DIR,
        turn_urls=(turn.url,) if turn else (),
        turn_secret=turn.secret if turn else None,
        ice_transport_policy="relay" if relay else "all",
    )
    server = build_server(config)
    assert isinstance(server.media, Sfu)
    await server.start()
    try:
        yield Consult(server, server.media)
    finally:
        await server.close()


@pytest.fixture
async def consult(tmp_path: Path) -> AsyncIterator[Consult]:
    """The server with embedded defaults (no STUN, no TURN)."""
    async with running_consult(tmp_path / "var") as running:
        yield running


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Turn:
    """A running coturn: where it listens and its shared secret."""

    url: str
    secret: str
    log: Path


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Turn]:
    """coturn on 127.0.0.1 only, REST-API credentials, loopback peers allowed."""
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.skip("turnserver (coturn) not installed (make sysdeps)")
    port = free_udp_port()
    log = tmp_path / "turn.log"
    command = [
        binary,
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--min-port={port + 1}",
        f"--max-port={port + 200}",
        "--allow-loopback-peers",
        "--use-auth-secret",
        f"--static-auth-secret={TURN_SECRET}",
        "--realm=teleconsult.test",
        "--no-tls",
        "--no-dtls",
        "--no-tcp-relay",
        "--no-cli",
        "--no-multicast-peers",
        "--fingerprint",
        f"--log-file={log}",
        "--simple-log",
        f"--pidfile={tmp_path / 'turn.pid'}",
        f"--userdb={tmp_path / 'turn.db'}",
        "--no-stdout-log",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_udp(port, process)
        yield Turn(f"turn:127.0.0.1:{port}?transport=udp", TURN_SECRET, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_udp(port: int, process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Wait until coturn answers a STUN binding request on ``port``."""
    request = bytes.fromhex("000100002112a442") + b"teleconsult!"  # binding, 12-byte id
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"turnserver exited with {process.returncode}")
            probe.sendto(request, ("127.0.0.1", port))
            try:
                probe.recvfrom(2048)
                return
            except TimeoutError:
                continue
    raise RuntimeError("turnserver did not answer in time")
