"""What a consult request holds, validated: the patient, the consent, the attachments.

The national rules for remote medical services say what an invitation must record: the
reason (事由), the purpose (目的), a case summary (病历摘要), the specialty and title
wanted (or a named expert), the proposed times, and the patient's informed consent (who
recorded it, when, and how: a scanned signed form or a witnessed verbal consent). The
values here are checked in their constructors (:class:`~consults.errors.InvalidInput`
naming the field), so a request that exists is a valid one.

Design notes:

- **The national id** (居民身份证号, GB 11643: 17 digits and an ISO 7064 MOD 11-2 check
  character) is validated, stored only encrypted (:class:`FieldCipher`, AES-256-GCM
  with the field's name as associated data, so a value cannot be moved to another
  field) and shown masked (:func:`mask_national_id`: the region and the last four).
- **Attachments are typed by their content**, never by the name or the claimed type:
  :func:`sniff` reads the magic bytes (PDF, PNG, JPEG, DICOM, a WFDB header); an
  attachment whose content is not what it claims, or of a type we do not take, is
  refused (415), one over its type's size limit too (413).
"""

from __future__ import annotations

import base64
import enum
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import ClassVar, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from consults.errors import InvalidInput
from consults.lifecycle import Mode, Priority


class AttachmentTooLarge(InvalidInput):
    """An attachment over its type's size limit (HTTP 413)."""

    code: ClassVar[str] = "attachment_too_large"


class AttachmentType(InvalidInput):
    """An attachment of a type we do not take, or not the type it claims (HTTP 415)."""

    code: ClassVar[str] = "unsupported_attachment"


def _text(name: str, value: str, *, max_chars: int, required: bool = True) -> str:
    cleaned = value.strip()
    if required and not cleaned:
        raise InvalidInput(name, "is required")
    if len(cleaned) > max_chars:
        raise InvalidInput(name, f"is longer than {max_chars} characters")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in cleaned) or "\x7f" in cleaned:
        raise InvalidInput(name, "holds control characters")
    return cleaned


class Sex(enum.Enum):
    """Administrative sex as the request records it."""

    MALE = "male"
    FEMALE = "female"
    UNKNOWN = "unknown"


# GB 11643-1999: weights of the 17 digits, and the check character for sum mod 11.
# How far ahead of the server's clock a clinic computer's consent time may be.
CLOCK_SKEW: Final = timedelta(minutes=5)
_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK: Final = "10X98765432"
_ID_FORM: Final = re.compile(r"[1-9]\d{16}[\dX]")


def national_id_valid(value: str) -> bool:
    """A well-formed 18-character resident id with the right check character."""
    if not _ID_FORM.fullmatch(value):
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == value[17]


def mask_national_id(value: str) -> str:
    """The region (6 digits) and the last four; the birth date and sequence hidden."""
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


class FieldCipher:
    """AES-256-GCM for identifying fields at rest; the field's name is authenticated.

    Parameters
    ----------
    key : bytes
        32 bytes, the deployment's field key (kept beside the signing keys, 0600).
    """

    PREFIX: Final = "v1:"

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the field key must be 32 bytes")
        self._aead = AESGCM(key)

    @staticmethod
    def new_key() -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def encrypt(self, field_name: str, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), field_name.encode())
        return self.PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, field_name: str, token: str) -> str:
        """Raises ValueError when the value is not ours, was altered or moved."""
        if not token.startswith(self.PREFIX):
            raise ValueError("not an encrypted field")
        raw = base64.b64decode(token[len(self.PREFIX) :], validate=True)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], field_name.encode()).decode()
        except InvalidTag as exc:
            raise ValueError("the encrypted field does not authenticate") from exc


@dataclass(frozen=True, kw_only=True)
class Patient:
    """The minimal patient record a request carries.

    ``national_id`` is the plain value only while the request is being made; the store
    keeps :meth:`FieldCipher.encrypt` of it and pages show :func:`mask_national_id`.
    """

    name: str
    sex: Sex
    birth_date: date
    record_number: str
    national_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _text("patient.name", self.name, max_chars=64))
        object.__setattr__(
            self,
            "record_number",
            _text("patient.record_number", self.record_number, max_chars=64),
        )
        if self.birth_date.year < 1890:
            raise InvalidInput("patient.birth_date", "is before 1890")
        if self.national_id is not None and not national_id_valid(self.national_id):
            raise InvalidInput("patient.national_id", "is not a valid resident id number")


class ConsentKind(enum.Enum):
    """How the patient's informed consent was given."""

    WRITTEN = "written"  # a scanned signed form is attached
    VERBAL = "verbal"  # witnessed, the witness named


@dataclass(frozen=True, kw_only=True)
class Consent:
    """The patient's informed consent to the remote consult."""

    kind: ConsentKind
    recorded_by: str
    time: datetime
    witness: str | None = None
    form_attachment: str | None = None  # the id of the scanned form, for written consent

    def __post_init__(self) -> None:
        _text("consent.recorded_by", self.recorded_by, max_chars=64)
        if self.time.tzinfo is None:
            raise InvalidInput("consent.time", "needs a time zone (RFC 3339)")
        if self.kind is ConsentKind.VERBAL and not (self.witness or "").strip():
            raise InvalidInput("consent.witness", "a verbal consent names its witness")


@dataclass(frozen=True, kw_only=True)
class ConsultRequest:
    """What the clinic asks: the content of a consult beside its lifecycle."""

    patient: Patient
    reason: str
    purpose: str
    summary: str
    specialty: str
    priority: Priority
    mode: Mode
    consent: Consent
    title_wanted: str | None = None
    expert_wanted: str | None = None
    proposed_times: tuple[datetime, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", _text("reason", self.reason, max_chars=500))
        object.__setattr__(self, "purpose", _text("purpose", self.purpose, max_chars=500))
        object.__setattr__(self, "summary", _text("summary", self.summary, max_chars=20_000))
        object.__setattr__(self, "specialty", _text("specialty", self.specialty, max_chars=64))
        for i, moment in enumerate(self.proposed_times):
            if moment.tzinfo is None:
                raise InvalidInput(f"proposed_times[{i}]", "needs a time zone (RFC 3339)")

    def check_times(self, now: datetime) -> None:
        """Refuse a request whose times contradict the service's clock ``now``: a birth
        date or a consent in the future, a proposed time in the past.

        The consent's time comes from the clinic's computer, whose clock may run a little
        ahead; up to :data:`CLOCK_SKEW` is allowed.

        Raises
        ------
        InvalidInput
            Naming the field.
        """
        if self.patient.birth_date > now.date():
            raise InvalidInput("patient.birth_date", "is in the future")
        if self.consent.time > now + CLOCK_SKEW:
            raise InvalidInput("consent.time", "is in the future")
        for i, moment in enumerate(self.proposed_times):
            if moment < now:
                raise InvalidInput(f"proposed_times[{i}]", "is in the past")


class MediaType(enum.Enum):
    """The attachment types a consult takes, by content."""

    PDF = "application/pdf"
    PNG = "image/png"
    JPEG = "image/jpeg"
    DICOM = "application/dicom"
    WFDB_HEADER = "text/x-wfdb-header"


# Size limits per type, bytes: scans and images are small; DICOM holds waveforms.
DEFAULT_LIMITS_BYTES: Final = {
    MediaType.PDF: 20 * 2**20,
    MediaType.PNG: 10 * 2**20,
    MediaType.JPEG: 10 * 2**20,
    MediaType.DICOM: 50 * 2**20,
    MediaType.WFDB_HEADER: 64 * 2**10,
}

# A WFDB header's record line: name[/segments] nsig [fs[/counter][(base)] [nsamp ...]]
_WFDB_RECORD_LINE: Final = re.compile(rb"^[A-Za-z0-9_\-]+(/\d+)? +\d+( +[0-9.]+)?", re.M)


def sniff(data: bytes) -> MediaType | None:
    """The type of an attachment by its first bytes, or None when it is none we take."""
    if data.startswith(b"%PDF-"):
        return MediaType.PDF
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return MediaType.PNG
    if data.startswith(b"\xff\xd8\xff"):
        return MediaType.JPEG
    if len(data) >= 132 and data[128:132] == b"DICM":
        return MediaType.DICOM
    head = data[:4096]
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")
    if _WFDB_RECORD_LINE.match(first.encode()):
        return MediaType.WFDB_HEADER
    return None


def check_attachment(
    claimed: str,
    data: bytes,
    limits_bytes: dict[MediaType, int] | None = None,
) -> MediaType:
    """The attachment's type, when its content is the type it claims and within limits.

    Raises
    ------
    AttachmentType
        The content is of no type we take, or not of the claimed type.
    AttachmentTooLarge
        Over the type's size limit.
    """
    limits = limits_bytes or DEFAULT_LIMITS_BYTES
    found = sniff(data)
    if found is None:
        raise AttachmentType("attachment", "is not a PDF, PNG, JPEG, DICOM file or WFDB header")
    if claimed.split(";")[0].strip().lower() != found.value:
        raise AttachmentType("attachment", f"claims {claimed!r} but its content is {found.value}")
    if len(data) > limits[found]:
        raise AttachmentTooLarge("attachment", f"is over {limits[found]} bytes for {found.value}")
    return found
