"""The Redis Bus against a real redis-server on a free loopback port."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessions.redis_backend import RedisBus


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server (no persistence) for this module, stopped afterwards."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make sysdeps)")
    port = _free_port()
    folder: Path = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


async def test_bus_crosses_clients(redis_url: str) -> None:
    """A message published by one Bus reaches subscribers of another."""
    publisher, subscriber = RedisBus(redis_url), RedisBus(redis_url)
    messages = await subscriber.subscribe("audit")
    await publisher.publish("audit", b"hello")
    await publisher.publish("other", b"not for you")
    await publisher.publish("audit", b"again")
    got = [await asyncio.wait_for(anext(messages), 5) for _ in range(2)]
    assert got == [b"hello", b"again"]
    await publisher.close()
    await subscriber.close()
