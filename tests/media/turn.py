"""A real coturn on loopback for relay-only tests (media, sessions and end to end).

Started with the TURN REST-API shared secret (``use-auth-secret``), listening on
127.0.0.1 only, loopback peers allowed, every file it writes in the test's tmp dir.
It reads no configuration file (``-n``), not the system's ``/etc/turnserver.conf``:
Debian's sends the log to syslog, so a coturn that failed to start left nothing to read.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

TURN_SECRET = "turn-secret-" + "y" * 32
START_ATTEMPTS = 3  # each on a new port: another process may take a probed free port
ANSWER_TIMEOUT_S = 10.0


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

    @property
    def port(self) -> int:
        return int(self.url.split(":")[2].split("?")[0])


def coturn_command(binary: str, folder: Path, port: int, secret: str) -> list[str]:
    return [
        binary,
        "-n",
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--min-port={port + 1}",
        f"--max-port={port + 200}",
        "--allow-loopback-peers",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        "--realm=teleconsult.test",
        "--no-tls",
        "--no-dtls",
        "--no-tcp-relay",
        "--no-cli",
        "--no-multicast-peers",
        "--fingerprint",
        f"--log-file={folder / 'turn.log'}",
        "--simple-log",
        f"--pidfile={folder / 'turn.pid'}",
        f"--userdb={folder / 'turn.db'}",
        "--no-stdout-log",
    ]


@contextmanager
def running_coturn(folder: Path, secret: str = TURN_SECRET) -> Iterator[Turn]:
    """coturn on 127.0.0.1, once it answers a STUN binding request; stopped on exit.

    Skips the test when coturn is not installed; fails it with the tail of coturn's
    log when no attempt answers.
    """
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.skip("turnserver (coturn) not installed (make sysdeps)")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "turn.log"
    failures: list[str] = []
    for _ in range(START_ATTEMPTS):
        port = free_udp_port()
        process = subprocess.Popen(
            coturn_command(binary, folder, port, secret),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            failure = wait_for_udp(port, process)
            if failure is None:
                yield Turn(f"turn:127.0.0.1:{port}?transport=udp", secret, log)
                return
            failures.append(f"port {port}: {failure}")
        finally:
            stop(process)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log written)"
    pytest.fail(f"coturn did not start: {'; '.join(failures)}\n--- turn.log ---\n{tail}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Turn]:
    """coturn on 127.0.0.1 only, REST-API credentials, loopback peers allowed."""
    with running_coturn(tmp_path / "coturn") as turn:
        yield turn


def wait_for_udp(
    port: int, process: subprocess.Popen[bytes], timeout_s: float = ANSWER_TIMEOUT_S
) -> str | None:
    """None once coturn answers a STUN binding request on ``port``; else why not."""
    request = bytes.fromhex("000100002112a442") + b"teleconsult!"  # binding, 12-byte id
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return f"turnserver exited with {process.returncode}"
            probe.sendto(request, ("127.0.0.1", port))
            try:
                probe.recvfrom(2048)
                return None
            except (TimeoutError, ConnectionRefusedError):
                continue
    return f"no STUN answer in {timeout_s:.0f} s"
