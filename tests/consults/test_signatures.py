"""Ed25519 signatures over canonical JSON: stable bytes, any change detected."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consults.signatures import (
    KeyPair,
    Signature,
    SignatureError,
    canonical_json,
    digest,
    fingerprint,
    sign,
    verify,
)

OPINION = {
    "consult": "c-20261202-0001",
    "patient": "p-17",
    "signed_at": "2026-12-02T09:30:00Z",
    "signer": "ex-chen",
    "opinion": {
        "findings": "窦性心律，一度房室传导阻滞",
        "diagnosis": "First-degree AV block",
        "recommendations": "Follow-up ECG in 3 months",
    },
    "version": 1,
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def test_canonical_form_is_sorted_compact_utf8() -> None:
    """Keys sorted, no white space, non-ASCII kept as UTF-8."""
    assert (
        canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode()
    )


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_canonical_form_does_not_depend_on_key_order(document: dict[str, object]) -> None:
    """The same document built in another key order gives the same bytes and parses back."""
    reordered = dict(reversed(list(document.items())))
    assert canonical_json(reordered) == canonical_json(document)
    assert json.loads(canonical_json(document)) == document


@pytest.mark.parametrize("bad", [{"x": 1.5}, {"x": float("nan")}, {"x": object()}, {"x": {1: 2}}])
def test_what_cannot_be_canonical_is_refused(bad: dict[str, object]) -> None:
    """Floats, non-string keys and non-JSON values raise SignatureError."""
    with pytest.raises(SignatureError):
        canonical_json(bad)


def test_sign_and_verify() -> None:
    """A signature verifies with the signer's key and names its fingerprint."""
    keys = KeyPair.generate()
    signature = sign(OPINION, keys)
    assert signature.key_fingerprint == fingerprint(keys.public_key)
    assert len(signature.key_fingerprint.split()) == 16
    verify(OPINION, signature, keys.public_key)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(signer="ex-sun"),
        lambda d: d["opinion"].update(diagnosis="Normal ECG"),
        lambda d: d.update(version=2),
        lambda d: d.pop("patient"),
    ],
)
def test_any_change_to_the_document_fails(change: object) -> None:
    """Changing, adding or removing any field breaks the signature."""
    keys = KeyPair.generate()
    signature = sign(OPINION, keys)
    altered = json.loads(json.dumps(OPINION))
    change(altered)  # type: ignore[operator]
    with pytest.raises(SignatureError, match="does not match"):
        verify(altered, signature, keys.public_key)


def test_another_key_or_a_forged_value_fails() -> None:
    """A signature checked against another key, or with its value altered, is refused."""
    keys, other = KeyPair.generate(), KeyPair.generate()
    signature = sign(OPINION, keys)
    with pytest.raises(SignatureError, match="another key"):
        verify(OPINION, signature, other.public_key)
    forged = dataclasses.replace(signature, value=sign(OPINION, other).value)
    with pytest.raises(SignatureError, match="does not match"):
        verify(OPINION, forged, keys.public_key)
    with pytest.raises(SignatureError):
        verify(OPINION, dataclasses.replace(signature, value="not base64!"), keys.public_key)
    with pytest.raises(SignatureError, match="algorithm"):
        verify(OPINION, Signature(algorithm="RSA", key_fingerprint="", value=""), keys.public_key)


def test_digest_names_the_document() -> None:
    """An addendum's reference: the same for equal documents, different after any change."""
    assert digest(OPINION) == digest(json.loads(json.dumps(OPINION)))
    assert digest(OPINION) != digest({**OPINION, "version": 2})
