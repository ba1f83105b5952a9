"""A real coturn on loopback for relay-only tests (media and end to end).

Started with the TURN REST-API shared secret (``use-auth-secret``), listening on
127.0.0.1 only, loopback peers allowed, every file it writes in the test's tmp dir.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TURN_SECRET = "turn-secret-" + "y" * 32


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
