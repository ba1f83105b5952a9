"""Fixtures of the media tests: a real coturn on loopback, aiortc clients closed after."""

from collections.abc import AsyncIterator

import pytest

from tests.media.peers import Client
from tests.media.turn import coturn

__all__ = ["clients", "coturn"]


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    """A list the test appends its clients to; each is closed after the test."""
    made: list[Client] = []
    yield made
    for client in made:
        await client.close()
