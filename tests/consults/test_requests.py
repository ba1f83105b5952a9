"""Consult request values: patient, national id, consent, attachments typed by content."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consults.errors import InvalidInput
from consults.lifecycle import Mode, Priority
from consults.requests import (
    CLOCK_SKEW,
    AttachmentTooLarge,
    AttachmentType,
    Consent,
    ConsentKind,
    ConsultRequest,
    FieldCipher,
    MediaType,
    Patient,
    Sex,
    check_attachment,
    mask_national_id,
    national_id_valid,
    sniff,
)

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def with_check(first17: str) -> str:
    """Append the GB 11643 check character, computed here independently of the module."""
    remainder = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11
    return first17 + "10X98765432"[remainder]


def patient(**kw: object) -> Patient:
    fields: dict[str, object] = {
        "name": "王小明",
        "sex": Sex.MALE,
        "birth_date": date(1950, 3, 1),
        "record_number": "MZ-2026-0042",
    }
    fields.update(kw)
    return Patient(**fields)  # type: ignore[arg-type]


def test_published_example_ids() -> None:
    """The standard's example numbers pass; one changed digit fails."""
    assert national_id_valid("11010519491231002X")
    assert national_id_valid("440524188001010014")
    assert not national_id_valid("11010519491231003X")
    assert not national_id_valid("1101051949123100")


@given(st.from_regex(r"[1-9]\d{16}", fullmatch=True), st.integers(0, 16), st.integers(1, 9))
def test_any_single_digit_change_is_caught(first17: str, position: int, delta: int) -> None:
    """MOD 11-2 catches every change of one digit."""
    good = with_check(first17)
    assert national_id_valid(good)
    digit = (int(good[position]) + delta) % 10
    changed = good[:position] + str(digit) + good[position + 1 :]
    assert not national_id_valid(changed)


def test_mask_shows_region_and_last_four() -> None:
    """Birth date and sequence are hidden."""
    assert mask_national_id("11010519491231002X") == "110105********002X"


def test_field_cipher_round_trip_and_binding() -> None:
    """Encrypted values decrypt under their own field name only, and never show the plain."""
    cipher = FieldCipher(FieldCipher.new_key())
    sealed = cipher.encrypt("national_id", "11010519491231002X")
    assert "1101051949" not in sealed
    assert cipher.decrypt("national_id", sealed) == "11010519491231002X"
    assert cipher.encrypt("national_id", "x") != cipher.encrypt("national_id", "x")
    with pytest.raises(ValueError, match="authenticate"):
        cipher.decrypt("patient_name", sealed)
    with pytest.raises(ValueError, match="authenticate"):
        FieldCipher(FieldCipher.new_key()).decrypt("national_id", sealed)
    with pytest.raises(ValueError, match="32 bytes"):
        FieldCipher(b"short")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "   "}, "patient.name"),
        ({"name": "a" * 65}, "patient.name"),
        ({"name": "x\x00y"}, "patient.name"),
        ({"national_id": "110105194912310021"}, "patient.national_id"),
        ({"record_number": ""}, "patient.record_number"),
    ],
)
def test_patient_refuses_bad_values(change: dict[str, object], field: str) -> None:
    """Each bad value names its field."""
    with pytest.raises(InvalidInput) as caught:
        patient(**change)
    assert caught.value.field == field


def test_consent_rules() -> None:
    """Verbal consent names a witness; a consent time is never naive."""
    now = datetime.now(UTC)
    Consent(kind=ConsentKind.WRITTEN, recorded_by="dr-wang", time=now - timedelta(minutes=5))
    with pytest.raises(InvalidInput, match="witness"):
        Consent(kind=ConsentKind.VERBAL, recorded_by="dr-wang", time=now)
    with pytest.raises(InvalidInput, match="time zone"):
        Consent(kind=ConsentKind.WRITTEN, recorded_by="dr-wang", time=datetime(2026, 1, 1))


def request_at(now: datetime, *, consent_s: float = 0, **kw: object) -> ConsultRequest:
    consent = Consent(
        kind=ConsentKind.WRITTEN, recorded_by="dr-wang", time=now + timedelta(seconds=consent_s)
    )
    fields: dict[str, object] = {
        "patient": patient(),
        "reason": "胸痛两小时",
        "purpose": "明确诊断",
        "summary": "ECG: ST elevation V1-V4",
        "specialty": "cardiology",
        "priority": Priority.URGENT,
        "mode": Mode.REALTIME,
        "consent": consent,
    }
    fields.update(kw)
    return ConsultRequest(**fields)  # type: ignore[arg-type]


NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "field", "fine_at"),
    [
        ({"patient": patient(birth_date=date(2026, 6, 2))}, "patient.birth_date",
         NOW + timedelta(days=1)),
        ({"consent_s": CLOCK_SKEW.total_seconds() + 1}, "consent.time",
         NOW + timedelta(seconds=1)),
        ({"proposed_times": (NOW - timedelta(minutes=1),)}, "proposed_times[0]",
         NOW - timedelta(minutes=1)),
    ],
)  # fmt: skip
def test_times_are_checked_against_the_service_clock(
    change: dict[str, object], field: str, fine_at: datetime
) -> None:
    """The times that must not lie ahead (birth, consent, beyond the allowed skew of a
    clinic's clock) or behind (a proposed slot) are judged by the clock the service passes
    at submission, not by the value's constructor: the same request passes at another
    moment."""
    request_at(NOW, consent_s=CLOCK_SKEW.total_seconds()).check_times(NOW)
    request = request_at(NOW, **change)
    request.check_times(fine_at)
    with pytest.raises(InvalidInput) as caught:
        request.check_times(NOW)
    assert caught.value.field == field


def test_request_trims_texts() -> None:
    """Texts are trimmed."""
    assert request_at(NOW, reason="  胸痛两小时 ").reason == "胸痛两小时"


PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(20)
JPEG = b"\xff\xd8\xff\xe0" + bytes(20)
DICOM = bytes(128) + b"DICM" + bytes(20)
HEADER = b"100 2 360 650000\n100.dat 212 200 11 1024 995 -22131 0 MLII\n"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (PDF, MediaType.PDF),
        (PNG, MediaType.PNG),
        (JPEG, MediaType.JPEG),
        (DICOM, MediaType.DICOM),
        (HEADER, MediaType.WFDB_HEADER),
        (b"# comment\n" + HEADER, MediaType.WFDB_HEADER),
        (b"MZ\x90\x00", None),
        (b"<html><script>", None),
        (b"", None),
    ],
)
def test_sniff_by_content(data: bytes, kind: MediaType | None) -> None:
    """The type comes from the magic bytes."""
    assert sniff(data) is kind


def test_check_attachment_refuses_lies_and_oversize() -> None:
    """A PNG claimed to be a PDF is 415; an oversize PDF is 413; a right one passes."""
    assert check_attachment("application/pdf", PDF) is MediaType.PDF
    with pytest.raises(AttachmentType) as lie:
        check_attachment("application/pdf", PNG)
    assert lie.value.code == "unsupported_attachment"
    with pytest.raises(AttachmentType):
        check_attachment("application/x-msdownload", b"MZ\x90\x00")
    with pytest.raises(AttachmentTooLarge) as big:
        check_attachment("application/pdf", PDF + bytes(100), {MediaType.PDF: 50})
    assert big.value.code == "attachment_too_large"
