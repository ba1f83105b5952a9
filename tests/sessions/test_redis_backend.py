"""The Redis Bus against a real redis-server on a free loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from sessions.redis_backend import RedisBus
from tests.redis import redis_server


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for this module."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


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
