"""TURN credentials against a real coturn (use-auth-secret) on loopback: accepted, or refused."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioice import stun, turn

from sessions.turn import IceConfig, turn_credentials

SECRET = "coturn-shared-secret"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A coturn on 127.0.0.1 with the REST-API shared secret; yields its port."""
    if shutil.which("turnserver") is None:
        pytest.skip("turnserver (coturn) is not installed (make sysdeps)")
    port = _free_udp_port()
    # A relay port range of our own, so that coturns of parallel test runs do not collide.
    relay_min = random.randrange(50_000, 60_000, 100)
    folder: Path = tmp_path_factory.mktemp("coturn")
    process = subprocess.Popen(
        [
            "turnserver",
            "-n",
            f"--listening-port={port}",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--min-port={relay_min}",
            f"--max-port={relay_min + 99}",
            "--use-auth-secret",
            f"--static-auth-secret={SECRET}",
            "--realm=teleconsult.test",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--allow-loopback-peers",
            f"--log-file={folder / 'turn.log'}",
            f"--pidfile={folder / 'turn.pid'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    if process.poll() is not None:
        pytest.fail("turnserver did not start")
    yield port
    process.terminate()
    process.wait(10)


async def _allocate(port: int, username: str, password: str) -> tuple[str, int]:
    """Allocate a relay on coturn with these credentials; the relayed address."""
    last: Exception | None = None
    for _ in range(20):  # coturn may need a moment before it answers
        try:
            transport, _ = await turn.create_turn_endpoint(
                asyncio.DatagramProtocol, ("127.0.0.1", port), username, password, lifetime=60
            )
        except (stun.TransactionTimeout, ConnectionError) as exc:
            last = exc
            await asyncio.sleep(0.25)
            continue
        relayed: tuple[str, int] = transport.get_extra_info("sockname")
        transport.close()
        return relayed
    raise AssertionError(f"coturn never answered: {last}")


async def test_coturn_accepts_minted_credentials(coturn: int) -> None:
    """A relay allocation succeeds with the credentials handed to clients."""
    servers = IceConfig(
        turn_urls=[f"turn:127.0.0.1:{coturn}?transport=udp"], turn_secret=SECRET, turn_ttl_s=600
    ).ice_servers("dr-wang", now_s=time.time())
    username, credential = servers[0]["username"], servers[0]["credential"]
    assert isinstance(username, str)
    assert isinstance(credential, str)
    host, _ = await _allocate(coturn, username, credential)
    assert host == "127.0.0.1"


async def test_coturn_refuses_wrong_and_expired_credentials(coturn: int) -> None:
    """Credentials from another secret, or past their expiry, are refused by coturn."""
    await _allocate(coturn, *turn_credentials(SECRET, "warm-up", ttl_s=60, now_s=time.time()))
    wrong = turn_credentials("not-the-secret", "dr-wang", ttl_s=600, now_s=time.time())
    expired = turn_credentials(SECRET, "dr-wang", ttl_s=60, now_s=time.time() - 3600)
    for username, password in (wrong, expired):
        with pytest.raises(stun.TransactionFailed):
            await turn.create_turn_endpoint(
                asyncio.DatagramProtocol, ("127.0.0.1", coturn), username, password, lifetime=60
            )
