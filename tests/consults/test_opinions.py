"""Opinions: what is signed, that signed versions never change, and addendum chains."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from consults.errors import InvalidInput
from consults.opinions import (
    OpinionSigned,
    OpinionText,
    SignedVersion,
    check_editable,
    iso_utc,
    signed_document,
    verify_chain,
)
from consults.signatures import KeyPair, SignatureError, digest, sign

T0 = datetime(2026, 12, 2, 9, 30, 12, 345678, tzinfo=UTC)
TEXT = OpinionText(
    findings=" 窦性心律，PR 间期 240 ms ",
    diagnosis="一度房室传导阻滞 First-degree AV block",
    recommendations="3 个月后复查心电图",
)


def version(
    keys: KeyPair, number: int, corrects: str | None, text: OpinionText = TEXT
) -> SignedVersion:
    doc = signed_document(
        consult="c1",
        patient="p1",
        signer="ex-chen",
        signed_at=T0 + timedelta(hours=number),
        opinion=text,
        version=number,
        corrects=corrects,
    )
    return SignedVersion(document=doc, signature=sign(doc, keys), public_key=keys.public_key)


def test_signed_document_holds_what_the_rules_require() -> None:
    """Consult, patient, signer, UTC time to the second, version, trimmed text."""
    doc = signed_document(
        consult="c1", patient="p1", signer="ex-chen", signed_at=T0, opinion=TEXT, version=1
    )
    assert doc["signed_at"] == "2026-12-02T09:30:12Z"
    assert doc["opinion"]["findings"] == "窦性心律，PR 间期 240 ms"  # type: ignore[index]
    assert (doc["consult"], doc["patient"], doc["signer"], doc["corrects"]) == (
        "c1",
        "p1",
        "ex-chen",
        None,
    )


def test_times_are_signed_in_utc() -> None:
    """A local time with an offset is signed as the same instant in UTC; naive is refused."""
    beijing = timezone(timedelta(hours=8))
    assert iso_utc(datetime(2026, 12, 2, 17, 30, tzinfo=beijing)) == "2026-12-02T09:30:00Z"
    with pytest.raises(ValueError, match="time zone"):
        iso_utc(datetime(2026, 12, 2, 17, 30))


def test_a_diagnosis_is_required_and_texts_are_bounded() -> None:
    """No diagnosis, or a text over its limit, is refused naming the field."""
    with pytest.raises(InvalidInput, match="diagnosis"):
        OpinionText(findings="x", diagnosis=" ", recommendations="")
    with pytest.raises(InvalidInput, match="findings"):
        OpinionText(findings="x" * 20_001, diagnosis="d", recommendations="")


def test_version_numbers_and_corrections_must_agree() -> None:
    """Version 1 corrects nothing; later versions name what they correct."""
    with pytest.raises(ValueError, match="corrects"):
        signed_document(consult="c", patient="p", signer="s", signed_at=T0, opinion=TEXT, version=2)
    with pytest.raises(ValueError, match="corrects"):
        signed_document(
            consult="c",
            patient="p",
            signer="s",
            signed_at=T0,
            opinion=TEXT,
            version=1,
            corrects="ab",
        )


def test_signed_opinions_cannot_be_edited() -> None:
    """Once a version is signed, editing is refused with a code."""
    check_editable([], "c1")
    with pytest.raises(OpinionSigned) as caught:
        check_editable([version(KeyPair.generate(), 1, None)], "c1")
    assert caught.value.code == "opinion_signed"


def test_an_addendum_chain_verifies_and_breaks_where_altered() -> None:
    """v1, v2 correcting v1, v3 correcting v2 verify; altering v2 or skipping it is named."""
    keys = KeyPair.generate()
    v1 = version(keys, 1, None)
    v2 = version(keys, 2, digest(v1.document), dataclasses.replace(TEXT, diagnosis="正常心电图"))
    v3 = version(keys, 3, digest(v2.document))
    verify_chain([v1, v2, v3])
    tampered = dataclasses.replace(v2, document={**v2.document, "signer": "ex-sun"})
    with pytest.raises(SignatureError, match="version 2"):
        verify_chain([v1, tampered, v3])
    with pytest.raises(SignatureError, match="version 2"):
        verify_chain([v1, v3])
    orphan = version(keys, 2, "0" * 64)
    with pytest.raises(SignatureError, match="does not name"):
        verify_chain([v1, orphan])
