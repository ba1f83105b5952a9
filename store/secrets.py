"""Secrets the store must be able to read back (TOTP seeds), sealed at rest.

A TOTP secret cannot be hashed like a password: the server needs it to compute the
expected code. With a key, it is stored as ``aesgcm1:`` + URL-safe base64 of a 12-byte
random nonce and the AES-256-GCM ciphertext, the person id as associated data (a sealed
secret copied to another person's row does not open). Without a key it is stored as
given; a sealed value read without the key is an error, never returned as is. The key
(32 bytes) is the deployment's to keep outside the database, so that a stolen
database or backup alone does not yield the second factors.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX: Final = "aesgcm1:"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12


class SecretError(ValueError):
    """A sealed value that cannot be opened (no key, another key, altered)."""


def load_or_create_key(path: Path) -> bytes:
    """The 32-byte key in ``path``, made (random, mode 0600) if the file is absent.

    Keep it beside the server (its data directory) and out of the database's backups:
    with PostgreSQL it is then on another machine than the data it protects.

    Raises
    ------
    SecretError
        The file exists but does not hold a key.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            raise SecretError(f"{path} does not hold a {KEY_BYTES}-byte key") from None
        return key
    key = os.urandom(KEY_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key


class SecretBox:
    """Seal and open short secrets with AES-256-GCM, or store them plain without a key."""

    def __init__(self, key: bytes | None) -> None:
        if key is not None and len(key) != KEY_BYTES:
            raise ValueError(f"the key must be {KEY_BYTES} bytes")
        self._aead = None if key is None else AESGCM(key)

    def seal(self, secret: str | None, context: str = "") -> str | None:
        """``secret`` as stored (None stays None)."""
        if secret is None or self._aead is None:
            return secret
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode("utf-8"), context.encode("utf-8"))
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str | None, context: str = "") -> str | None:
        """The secret of a stored value.

        Raises
        ------
        SecretError
            A sealed value without the key, with another key or context, or altered.
        """
        if stored is None or not stored.startswith(PREFIX):
            return stored
        if self._aead is None:
            raise SecretError("a sealed secret is stored but no key was given")
        try:
            raw = base64.urlsafe_b64decode(stored[len(PREFIX) :])
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError) as exc:
            raise SecretError("a sealed secret does not open with this key") from exc
        return plain.decode("utf-8")
