"""Tokens: minting, verification and every kind of refusal; key rings and rotation; the
server secret and key-ring files."""

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
from sessions.tokens import (
    KeyRing,
    load_key_ring,
    load_secret,
    mint_token,
    rotate_key_ring,
    save_key_ring,
    verify_token,
)

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


# ----------------------------------------------------------------------------- key ring

RING = KeyRing(keys={"k1": "a" * 40, "k2": "b" * 40}, current="k2", unkeyed="k1")


def _mint_with(ring: KeyRing | str, **overrides: object) -> str:
    kwargs: dict[str, object] = {"identity": "dr-wang", "name": "W", "role": "expert", "room": "r1"}
    return mint_token(ring, **(kwargs | overrides))  # type: ignore[arg-type]


def test_ring_tokens_carry_the_current_kid_and_verify_by_it() -> None:
    """A ring signs with its current key and names it in the header; verification follows it."""
    token = _mint_with(RING)
    assert jwt.get_unverified_header(token)["kid"] == "k2"
    assert verify_token(RING, token).identity == "dr-wang"
    # Signed by k2 indeed: the secret alone of k1 does not verify it, k2's does.
    with pytest.raises(InvalidToken):
        verify_token("a" * 40, token)
    assert verify_token("b" * 40, token).identity == "dr-wang"


def test_rotation_keeps_earlier_tokens_until_their_key_is_retired() -> None:
    """After rotating, tokens of the previous key verify; new ones use the new key;
    retiring the old key refuses its tokens."""
    before = _mint_with(RING)
    rotated = RING.rotated("k3", "c" * 40)
    after = _mint_with(rotated)
    assert jwt.get_unverified_header(after)["kid"] == "k3"
    assert verify_token(rotated, before).identity == "dr-wang"
    assert verify_token(rotated, after).identity == "dr-wang"
    with pytest.raises(InvalidToken, match="unknown key id"):
        verify_token(RING, after)  # a node that has not loaded the new ring yet
    retired = rotated.retired("k2")
    with pytest.raises(InvalidToken, match="unknown key id"):
        verify_token(retired, before)
    assert verify_token(retired, after).identity == "dr-wang"


def test_tokens_without_kid_verify_only_against_the_unkeyed_key() -> None:
    """A token minted with the plain secret (no kid) verifies by the ring's unkeyed key only."""
    legacy = _mint_with("a" * 40)
    assert "kid" not in jwt.get_unverified_header(legacy)
    assert verify_token(RING, legacy).identity == "dr-wang"
    no_unkeyed = KeyRing(keys=dict(RING.keys), current="k2")
    with pytest.raises(InvalidToken, match="no key id"):
        verify_token(no_unkeyed, legacy)
    with pytest.raises(InvalidToken):
        verify_token(RING, _mint_with("b" * 40))  # no kid, signed by another key


def test_a_kid_swapped_in_the_header_breaks_the_signature() -> None:
    """Renaming the kid to another key of the ring does not make a token verify."""
    _, payload, signature = _mint_with(RING).split(".")
    forged_header = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode()
    ).rstrip(b"=")
    with pytest.raises(InvalidToken):
        verify_token(RING, f"{forged_header.decode()}.{payload}.{signature}")


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: _mint_with(RING, now_s=time.time() - 3600, ttl_s=60), TokenExpired),
        (lambda: _mint_with(RING, not_before_s=time.time() + 600), TokenNotYetValid),
        (lambda: _mint_with(KeyRing.single("z" * 40, kid="k2")), InvalidToken),
        (lambda: _mint_with(KeyRing.single("z" * 40, kid="k9")), InvalidToken),
    ],
)
def test_ring_refuses_with_the_same_error_classes(make: object, error: type[Exception]) -> None:
    """Expired, not yet valid, forged under a known kid, or of an unknown kid: refused."""
    with pytest.raises(error):
        verify_token(RING, make())  # type: ignore[operator]


def test_ring_refuses_alg_none_and_other_audiences() -> None:
    """alg=none (even naming a known kid) and a foreign audience are refused with a ring."""
    claims = jwt.decode(_mint_with(RING), "b" * 40, algorithms=["HS256"], audience="teleconsult")

    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    unsigned = f"{part({'alg': 'none', 'kid': 'k2'})}.{part(claims)}."
    with pytest.raises(InvalidToken):
        verify_token(RING, unsigned)
    other = jwt.encode(
        claims | {"aud": "other"}, "b" * 40, algorithm="HS256", headers={"kid": "k2"}
    )
    with pytest.raises(InvalidToken):
        verify_token(RING, other)
    with pytest.raises(InvalidToken):
        verify_token(RING, "not.a.jwt")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"keys": {"k1": "short"}, "current": "k1"},
        {"keys": {"bad id!": "a" * 40}, "current": "bad id!"},
        {"keys": {"k1": "a" * 40}, "current": "k2"},
        {"keys": {"k1": "a" * 40}, "current": "k1", "unkeyed": "k0"},
    ],
)
def test_malformed_rings_are_refused(kwargs: dict[str, object]) -> None:
    """Short secrets, bad key ids, and current/unkeyed keys missing from the ring: ValueError."""
    with pytest.raises(ValueError, match=r"key|secret"):
        KeyRing(**kwargs)  # type: ignore[arg-type]


def test_current_key_cannot_be_retired_nor_a_kid_reused() -> None:
    """Retiring the current key or rotating to an id in use is refused."""
    with pytest.raises(ValueError, match="rotate first"):
        RING.retired("k2")
    with pytest.raises(ValueError, match="already"):
        RING.rotated("k1", "d" * 40)


def test_without_a_key_file_the_ring_is_the_secret(tmp_path: Path) -> None:
    """No keys.json: one key, the server secret, which also verifies tokens without kid."""
    env = {"TELECONSULT_SECRET": "e" * 40}
    ring = load_key_ring(tmp_path, None, env)
    assert list(ring.keys.values()) == ["e" * 40]
    assert ring.unkeyed == ring.current
    assert verify_token(ring, _mint_with("e" * 40)).identity == "dr-wang"


def test_rotate_writes_the_file_0600_and_old_tokens_survive_it(tmp_path: Path) -> None:
    """rotate_key_ring keeps the secret as a key, adds a current one, in keys.json 0600;
    tokens minted before (plain secret) and after (kid) both verify with the loaded ring."""
    env = {"TELECONSULT_SECRET": "e" * 40}
    before = _mint_with(load_key_ring(tmp_path, None, env))
    legacy = _mint_with("e" * 40)
    rotated = rotate_key_ring(tmp_path, None, env)
    path = tmp_path / "keys.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = load_key_ring(tmp_path, None, {})
    assert loaded == rotated
    assert len(loaded.keys) == 2
    after = _mint_with(loaded)
    for token in (before, legacy, after):
        assert verify_token(loaded, token).identity == "dr-wang"
    assert jwt.get_unverified_header(after)["kid"] == loaded.current
    assert loaded.current != jwt.get_unverified_header(before)["kid"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".keys")] == []


def test_key_file_problems_are_secret_errors(tmp_path: Path) -> None:
    """A key file readable by others, or not a ring, is refused with SecretError."""
    path = save_key_ring(tmp_path, RING)
    assert load_key_ring(tmp_path) == RING
    os.chmod(path, 0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        load_key_ring(tmp_path)
    os.chmod(path, 0o600)
    path.write_text('{"current": "k1", "keys": []}')
    with pytest.raises(SecretError, match="not a key ring"):
        load_key_ring(tmp_path)
    path.write_text("{")
    with pytest.raises(SecretError, match="not a key ring"):
        load_key_ring(tmp_path)


def test_tokens_for_a_person_carry_institution_and_directory_roles() -> None:
    """``inst`` and ``proles`` round-trip; command-line tokens have neither."""
    claims = verify_token(
        SECRET, _mint(institution="CH01", person_roles=frozenset({"expert", "ecg_reader"}))
    )
    assert claims.institution == "CH01"
    assert claims.person_roles == {"expert", "ecg_reader"}
    plain = verify_token(SECRET, _mint())
    assert plain.institution is None
    assert plain.person_roles == frozenset()


@pytest.mark.parametrize(("claim", "value"), [("inst", ""), ("inst", 7), ("proles", "expert")])
def test_malformed_person_claims_are_refused(claim: str, value: object) -> None:
    """A signed token with a malformed ``inst`` or ``proles`` is an invalid token."""
    payload = jwt.decode(_mint(), SECRET, algorithms=["HS256"], audience="teleconsult")
    payload[claim] = value
    with pytest.raises(InvalidToken, match=claim):
        verify_token(SECRET, jwt.encode(payload, SECRET, algorithm="HS256"))


def test_a_secret_file_others_may_read_is_refused(tmp_path: Path) -> None:
    """The secret made on first use is 0600; one that group or others may read is
    refused with the fix in the message, rather than trusted."""
    load_secret(tmp_path, environ={})
    secret = tmp_path / "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    secret.chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        load_secret(tmp_path, environ={})
