"""The expert's opinion: a draft that changes, a signed version that never does, addenda.

- A *draft* (findings, diagnosis, recommendations, referral advice) is edited by the
  consult's lead expert until signed; each save replaces the draft.
- *Signing* freezes it: :func:`signed_document` is what is signed (the opinion, the
  consult id, the patient id, the signer, the signing time in UTC, the version, and for
  an addendum the digest of the version it corrects); the signature is
  :mod:`consults.signatures`' Ed25519 over its canonical JSON, with the signer's public
  key on record. A signed version is never edited: :func:`check_editable` refuses.
- A *correction* is an addendum: a new version, signed anew, whose document names the
  digest of the one it corrects (``corrects``); versions form a chain that
  :func:`verify_chain` checks end to end.
- In a multidisciplinary consult the other experts *co-sign* a signed version
  (:func:`cosignature_document`: its digest and their own remark, signed with their
  key); :func:`verify_cosignatures` checks them against the chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from consults.errors import Conflict, ConsultsError, InvalidInput
from consults.signatures import Signature, SignatureError, digest, verify

_LIMITS_CHARS: dict[str, int] = {
    "findings": 20_000,
    "diagnosis": 4_000,
    "recommendations": 20_000,
    "referral_advice": 4_000,
}


class OpinionSigned(Conflict):
    """A signed opinion cannot be edited; write an addendum."""

    code: ClassVar[str] = "opinion_signed"

    def __init__(self, consult: str) -> None:
        ConsultsError.__init__(self, "the opinion is signed and cannot change: write an addendum")
        self.kind = "opinion"
        self.key = consult


@dataclass(frozen=True, kw_only=True)
class OpinionText:
    """What the expert writes."""

    findings: str
    diagnosis: str
    recommendations: str
    referral_advice: str = ""

    def __post_init__(self) -> None:
        for name, limit in _LIMITS_CHARS.items():
            value: str = getattr(self, name)
            if len(value) > limit:
                raise InvalidInput(name, f"is longer than {limit} characters")
            object.__setattr__(self, name, value.strip())
        if not self.diagnosis:
            raise InvalidInput("diagnosis", "is required to sign")

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in _LIMITS_CHARS}


def iso_utc(moment: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, to the second: the form that is signed."""
    if moment.tzinfo is None:
        raise ValueError("a signing time needs a time zone")
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def signed_document(
    *,
    consult: str,
    patient: str,
    signer: str,
    signed_at: datetime,
    opinion: OpinionText,
    version: int,
    corrects: str | None = None,
    context: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """The document a signature covers.

    ``context`` (optional) is what the printed page shows beside the opinion (the
    patient's name, sex and birth date, the institutions, the signer's name and title),
    signed with it so that nothing on the page is unsigned.
    """
    if version < 1 or (version == 1) != (corrects is None):
        raise ValueError("version 1 corrects nothing; every later version names its original")
    document: dict[str, object] = {
        "kind": "teleconsult.opinion",
        "consult": consult,
        "patient": patient,
        "signer": signer,
        "signed_at": iso_utc(signed_at),
        "version": version,
        "corrects": corrects,
        "opinion": opinion.as_dict(),
    }
    if context is not None:
        document["context"] = dict(context)
    return document


@dataclass(frozen=True, kw_only=True)
class SignedVersion:
    """One signed version as kept: the document, its signature, the signer's key."""

    document: Mapping[str, object]
    signature: Signature
    public_key: bytes


def check_editable(versions: Sequence[SignedVersion], consult: str) -> None:
    """Raise :class:`OpinionSigned` once any version is signed (drafts only change)."""
    if versions:
        raise OpinionSigned(consult)


def verify_chain(versions: Sequence[SignedVersion]) -> None:
    """Every version verifies, numbers run 1, 2, …, and each addendum names its original.

    Raises
    ------
    SignatureError
        The first version that fails, named by its number.
    """
    previous: Mapping[str, object] | None = None
    for number, version in enumerate(versions, start=1):
        doc = version.document
        if doc.get("version") != number:
            raise SignatureError(f"version {number}: numbered {doc.get('version')!r}")
        expected = None if previous is None else digest(previous)
        if doc.get("corrects") != expected:
            raise SignatureError(f"version {number}: does not name the version it corrects")
        try:
            verify(doc, version.signature, version.public_key)
        except SignatureError as exc:
            raise SignatureError(f"version {number}: {exc}") from exc
        previous = doc


def cosignature_document(
    *,
    cosigns: Mapping[str, object],
    signer: str,
    signed_at: datetime,
    comment: str = "",
    context: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """What a co-signing expert of a multidisciplinary consult signs: the digest of the
    signed version they agree with, and their own remark (their opinion beside it).

    Raises
    ------
    InvalidInput
        A remark over 4,000 characters.
    """
    if len(comment) > 4_000:
        raise InvalidInput("comment", "is longer than 4000 characters")
    document: dict[str, object] = {
        "kind": "teleconsult.cosignature",
        "consult": cosigns["consult"],
        "version": cosigns["version"],
        "cosigns": digest(cosigns),
        "signer": signer,
        "signed_at": iso_utc(signed_at),
        "comment": comment.strip(),
    }
    if context is not None:
        document["context"] = dict(context)
    return document


def verify_cosignatures(
    versions: Sequence[SignedVersion], cosignatures: Sequence[SignedVersion]
) -> None:
    """Every co-signature verifies and names a version of the chain signed by someone
    else; nobody co-signs one version twice.

    Raises
    ------
    SignatureError
        The first co-signature that fails, named by its signer and version.
    """
    by_digest = {digest(v.document): v.document for v in versions}
    seen: set[tuple[object, object]] = set()
    for cosignature in cosignatures:
        doc = cosignature.document
        where = f"co-signature of {doc.get('signer')!r} on version {doc.get('version')!r}"
        if doc.get("kind") != "teleconsult.cosignature":
            raise SignatureError(f"{where}: not a co-signature")
        target = by_digest.get(str(doc.get("cosigns")))
        if target is None or target.get("version") != doc.get("version"):
            raise SignatureError(f"{where}: names no version of this opinion")
        if target.get("signer") == doc.get("signer"):
            raise SignatureError(f"{where}: the signer co-signs their own version")
        key = (doc.get("signer"), doc.get("version"))
        if key in seen:
            raise SignatureError(f"{where}: given twice")
        seen.add(key)
        try:
            verify(doc, cosignature.signature, cosignature.public_key)
        except SignatureError as exc:
            raise SignatureError(f"{where}: {exc}") from exc
