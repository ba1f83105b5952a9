"""TURN REST credentials and the ICE server list."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from sessions.turn import IceConfig, turn_credentials


def test_credentials_follow_the_coturn_rest_scheme() -> None:
    """username = expiry:identity, credential = base64(HMAC-SHA1(secret, username))."""
    username, credential = turn_credentials("k", "dr-li", ttl_s=600, now_s=1_000_000.5)
    assert username == "1000600:dr-li"
    expected = hmac.new(b"k", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(credential) == expected


def test_ice_servers_list_stun_and_turn() -> None:
    """STUN URLs come bare; TURN URLs carry fresh credentials."""
    config = IceConfig(
        stun_urls=["stun:127.0.0.1:3478"],
        turn_urls=["turn:127.0.0.1:3478?transport=udp"],
        turn_secret="k",
        turn_ttl_s=60,
    )
    stun, turn = config.ice_servers("a", now_s=100)
    assert stun == {"urls": ["stun:127.0.0.1:3478"]}
    assert turn["username"] == "160:a"
    assert IceConfig().ice_servers("a", now_s=0) == []


def test_bad_ice_configuration_is_refused() -> None:
    """TURN without a secret, or a URL of the wrong scheme, is refused."""
    with pytest.raises(ValueError, match="turn_secret"):
        IceConfig(turn_urls=["turn:x"])
    with pytest.raises(ValueError, match="STUN"):
        IceConfig(stun_urls=["http://x"])
