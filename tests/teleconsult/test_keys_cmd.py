"""``teleconsult keys``: rotation keeps old tokens valid until their key is retired."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessions.errors import InvalidToken
from sessions.tokens import KEYS_FILE, load_key_ring, mint_token, verify_token
from teleconsult.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_rotate_list_retire(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A token of the first key verifies after a rotation (and is signed without kid by
    the plain secret); the new key signs; retiring the first key refuses its tokens;
    the current key cannot be retired; the ring file is private."""
    data = str(tmp_path)
    before = load_key_ring(tmp_path)
    old = mint_token(before, identity="a", name="A", role="expert", room="r")
    assert run(capsys, "keys", "rotate", "--data-dir", data)[0] == 0
    ring = load_key_ring(tmp_path)
    assert ring.current != before.current
    assert set(ring.keys) == {before.current, ring.current}
    assert (tmp_path / KEYS_FILE).stat().st_mode & 0o077 == 0
    assert verify_token(ring, old).identity == "a"
    code, listing = run(capsys, "keys", "list", "--data-dir", data)
    assert code == 0
    assert f"{ring.current}  signs" in listing
    assert before.current in listing
    assert "secret" not in listing.lower()
    assert ring.keys[ring.current] not in listing
    assert run(capsys, "keys", "retire", ring.current, "--data-dir", data)[0] == 2
    assert run(capsys, "keys", "retire", before.current, "--data-dir", data)[0] == 0
    with pytest.raises(InvalidToken):
        verify_token(load_key_ring(tmp_path), old)
    new = mint_token(load_key_ring(tmp_path), identity="b", name="B", role="expert", room="r")
    assert verify_token(load_key_ring(tmp_path), new).identity == "b"
