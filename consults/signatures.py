"""Signatures over clinical documents: Ed25519 over canonical JSON.

A signed opinion or ECG report is a JSON document (the opinion, the consult id, the
patient id, the signing time, the signer); its signature is Ed25519 (RFC 8032, the
``cryptography`` package) over the document's canonical form:

- UTF-8, object keys sorted by code point, no insignificant white space, no NaN or
  infinities, strings as they are (``ensure_ascii=False``); integers as integers,
  floats in Python's shortest round-trip form. This is the JSON Canonicalization
  Scheme (RFC 8785) for the documents we sign, which hold strings, integers, booleans,
  null, lists and objects; floats are refused so that no two encoders can disagree.
- The signer's public key is kept on record with its *fingerprint*: the SHA-256 of the
  raw 32-byte public key, shown as 16 groups of four hex digits (printed on the PDF).

A signed thing never changes: a correction is an addendum, a new document that names
the original's digest (:func:`digest`) and is signed anew.

No I/O: keys come in and go out as bytes; the store keeps them (the private key
encrypted at rest by the caller).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

ALGORITHM: Final = "Ed25519"


class SignatureError(Exception):
    """A document cannot be signed, or a signature does not verify."""


def _check(value: object, path: str) -> None:
    if isinstance(value, float):
        raise SignatureError(f"{path}: floats are not signed (use a string or integer)")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SignatureError(f"{path}: object keys must be strings")
            _check(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
    elif value is not None and not isinstance(value, str | int | bool):
        raise SignatureError(f"{path}: {type(value).__name__} is not JSON")


def canonical_json(document: Mapping[str, object]) -> bytes:
    """The bytes that are signed: sorted keys, no white space, UTF-8.

    Raises
    ------
    SignatureError
        The document holds a float, a non-string key or something that is not JSON.
    """
    _check(document, "$")
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def digest(document: Mapping[str, object]) -> str:
    """SHA-256 of the canonical form, hex: how an addendum names what it corrects."""
    return hashlib.sha256(canonical_json(document)).hexdigest()


def fingerprint(public_key: bytes) -> str:
    """SHA-256 of the raw public key as 16 groups of 4 hex digits."""
    hexed = hashlib.sha256(public_key).hexdigest()
    return " ".join(hexed[i : i + 4] for i in range(0, 64, 4))


@dataclass(frozen=True)
class KeyPair:
    """A signer's key pair, raw 32-byte keys."""

    private_key: bytes
    public_key: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        """A new key pair from the operating system's CSPRNG."""
        private = Ed25519PrivateKey.generate()
        return cls(
            private_key=private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()),
            public_key=private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


@dataclass(frozen=True, kw_only=True)
class Signature:
    """A detached signature: algorithm, the key's fingerprint, the value in base64."""

    algorithm: str
    key_fingerprint: str
    value: str

    def as_dict(self) -> dict[str, str]:
        return {
            "algorithm": self.algorithm,
            "key_fingerprint": self.key_fingerprint,
            "value": self.value,
        }


def sign(document: Mapping[str, object], keys: KeyPair) -> Signature:
    """Sign the canonical form of ``document``."""
    private = Ed25519PrivateKey.from_private_bytes(keys.private_key)
    value = private.sign(canonical_json(document))
    return Signature(
        algorithm=ALGORITHM,
        key_fingerprint=keys.fingerprint,
        value=base64.b64encode(value).decode("ascii"),
    )


def verify(document: Mapping[str, object], signature: Signature, public_key: bytes) -> None:
    """Check ``signature`` over ``document`` with the signer's public key on record.

    Raises
    ------
    SignatureError
        Another algorithm, another key, a malformed value, or a document that is not the
        one signed (any change, however small).
    """
    if signature.algorithm != ALGORITHM:
        raise SignatureError(f"unsupported algorithm {signature.algorithm!r}")
    if signature.key_fingerprint != fingerprint(public_key):
        raise SignatureError("the signature names another key")
    try:
        raw = base64.b64decode(signature.value, validate=True)
        Ed25519PublicKey.from_public_bytes(public_key).verify(raw, canonical_json(document))
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("the signature does not match the document") from exc
