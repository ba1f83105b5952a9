"""TURN credentials against a real coturn (use-auth-secret) on loopback: accepted, or refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from aioice import stun, turn

from sessions.turn import IceConfig, turn_credentials
from tests.media.turn import running_coturn

SECRET = "coturn-shared-secret"


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A coturn on 127.0.0.1 with the REST-API shared secret, answering; yields its port."""
    with running_coturn(tmp_path_factory.mktemp("coturn"), SECRET) as turn_server:
        yield turn_server.port


async def _allocate(port: int, username: str, password: str) -> tuple[str, int]:
    """Allocate a relay on coturn with these credentials; the relayed address."""
    transport, _ = await turn.create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", port), username, password, lifetime=60
    )
    relayed: tuple[str, int] = transport.get_extra_info("sockname")
    transport.close()
    return relayed


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
