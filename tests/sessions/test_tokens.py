"""Tokens: minting, verification and every kind of refusal; the server secret file."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import jwt
import pytest

from sessions.errors import InvalidToken, SecretError, TokenExpired, TokenNotYetValid
from sessions.tokens import load_secret, mint_token, verify_token

SECRET = "s" * 40


def _mint(**overrides: object) -> str:
    kwargs: dict[str, object] = {
        "identity": "dr-wang",
        "name": "Dr Wang",
        "role": "expert",
        "room": "r1",
    }
    kwargs.update(overrides)
    return mint_token(SECRET, **kwargs)  # type: ignore[arg-type]


def test_round_trip_carries_every_claim() -> None:
    """A minted token verifies and yields its claims, with role default permissions."""
    claims = verify_token(SECRET, _mint(permissions=frozenset({"publish", "moderate"})))
    assert (claims.identity, claims.name, claims.role, claims.room) == (
        "dr-wang",
        "Dr Wang",
        "expert",
        "r1",
    )
    assert claims.permissions == {"publish", "moderate"}
    assert claims.moderator
    assert verify_token(SECRET, _mint(role="observer")).permissions == {"subscribe"}


def test_expired_token_is_refused() -> None:
    """A token past its exp (beyond the leeway) is refused as expired."""
    token = _mint(now_s=time.time() - 3600, ttl_s=60)
    with pytest.raises(TokenExpired):
        verify_token(SECRET, token)


def test_not_yet_valid_token_is_refused() -> None:
    """A token whose nbf is in the future is refused."""
    token = _mint(not_before_s=time.time() + 600)
    with pytest.raises(TokenNotYetValid):
        verify_token(SECRET, token)


def test_wrong_signature_is_refused() -> None:
    """A token signed with another secret is refused."""
    token = mint_token("x" * 40, identity="a", name="A", role="expert", room="r")
    with pytest.raises(InvalidToken):
        verify_token(SECRET, token)


def test_wrong_audience_is_refused() -> None:
    """A token for another audience is refused."""
    now = int(time.time())
    payload = {"sub": "a", "role": "expert", "room": "r", "aud": "other", "exp": now + 60}
    payload |= {"nbf": now, "iat": now, "jti": "j"}
    with pytest.raises(InvalidToken):
        verify_token(SECRET, jwt.encode(payload, SECRET, algorithm="HS256"))


def _unsigned(payload: dict[str, object]) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def test_alg_none_is_refused() -> None:
    """An unsigned token (alg=none) with otherwise valid claims is refused."""
    claims = jwt.decode(_mint(), SECRET, algorithms=["HS256"], audience="teleconsult")
    with pytest.raises(InvalidToken):
        verify_token(SECRET, _unsigned(claims))


def test_unknown_role_and_missing_claims_are_refused() -> None:
    """A validly signed token with an unknown role, or without jti, is refused."""
    claims = jwt.decode(_mint(), SECRET, algorithms=["HS256"], audience="teleconsult")
    with pytest.raises(InvalidToken, match="role"):
        verify_token(SECRET, jwt.encode(claims | {"role": "admin"}, SECRET, algorithm="HS256"))
    del claims["jti"]
    with pytest.raises(InvalidToken):
        verify_token(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"))


def test_mint_refuses_bad_arguments() -> None:
    """Minting refuses an unknown role or permission and a non-positive lifetime."""
    with pytest.raises(ValueError, match="role"):
        _mint(role="admin")
    with pytest.raises(ValueError, match="permissions"):
        _mint(permissions=frozenset({"fly"}))
    with pytest.raises(ValueError, match="ttl"):
        _mint(ttl_s=0)


def test_secret_generated_once_with_mode_0600(tmp_path: Path) -> None:
    """Without configuration or environment the secret is generated into the data dir, 0600."""
    first = load_secret(tmp_path / "var", environ={})
    path = tmp_path / "var" / "secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret(tmp_path / "var", environ={}) == first
    assert len(first) >= 32


def test_secret_precedence_and_length(tmp_path: Path) -> None:
    """Configuration beats the environment; a short secret is refused."""
    env = {"TELECONSULT_SECRET": "e" * 32}
    assert load_secret(tmp_path, "c" * 32, env) == "c" * 32
    assert load_secret(tmp_path, None, env) == "e" * 32
    assert not (tmp_path / "secret").exists()
    with pytest.raises(SecretError, match="32 bytes"):
        load_secret(tmp_path, "short", env)
