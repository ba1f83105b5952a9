"""``/api/v1/consults``, ``/api/v1/referrals`` and ``/api/v1/referral-slots``: the consult
service over REST, the signed opinion as PDF, the FHIR R4 export; and
:func:`consult_api`, what the lead wires.

Design notes
------------
- Thin handlers, as in :mod:`api.directory`: each turns its Struct into a call of
  :class:`consults.service.ConsultService` (which applies the table, the rights and the
  audit) and the result back into a Struct. Synchronous, run in a worker thread
  (``sync_to_thread=True``); the caller is the ``principal`` dependency of
  :func:`api.auth.account_api`, CSRF its middleware.
- A transition is ``POST /consults/{id}/{event}`` with the table's name of the event.
  The table's refusals keep their codes: 409 ``transition_not_allowed`` (the reason
  names the party, the event and the state), 403 ``forbidden`` (the actor's relation
  to the consult does not allow it), 404 ``not_found`` (a consult of another branch of
  the tree, answered as if it did not exist), 409 ``consult_changed`` (someone moved
  it first).
- **The PDF** (:func:`render_opinion_pdf`) prints only what is signed: every version's
  document (the opinion, the patient and institutions of its ``context``, the signer,
  the signing time in UTC, the key fingerprint). The signed versions ride inside it
  (:data:`PAYLOAD_MARKER`), and rendering is deterministic (the PDF's dates are the
  signing time), so ``teleconsult report verify`` checks the signatures and then
  renders the page again from them: any change to the file, seen or not, fails.
- **FHIR** (:func:`fhir_bundle`): a ``collection`` Bundle of Patient, ServiceRequest,
  Task (status mapped from our states), Appointment, Encounter (class ``VR``) and, once
  signed, DiagnosticReport and Provenance (carrying the Ed25519 signature).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime as dt
import functools
import io
import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import Body, FromQuery, Parameter, QueryParameter
from litestar.types import ControllerRouterHandler, Middleware
from msgspec import Meta

from api.errors import ApiError
from api.schemas import body, documented
from api.session import consults_error
from consults.accounts import Principal
from consults.consult_repositories import (
    Attachment,
    ConsultRecord,
    ConsultStream,
    Queue,
    StatsGroup,
    StatsRow,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookRepository,
)
from consults.directory import Role
from consults.errors import Conflict, ConsultsError, Forbidden, NotFound
from consults.lifecycle import ConsultEvent, ConsultState, Mode, Priority
from consults.opinions import OpinionText, SignedVersion, iso_utc
from consults.referrals import Referral, ReferralEvent, ReferralState, Slot
from consults.repositories import PageRequest
from consults.requests import (
    DEFAULT_LIMITS_BYTES,
    Consent,
    ConsentKind,
    ConsultRequest,
    Patient,
    Sex,
)
from consults.service import ConsultService, ConsultView, Webhooks
from consults.signatures import Signature
from consults.webhooks import Attempt, RetryPolicy, next_attempt_at
from consults.webhooks import headers as webhook_headers

__all__ = [
    "PAYLOAD_MARKER",
    "RENDERER",
    "ConsultApi",
    "ConsultController",
    "ReferralController",
    "StatsController",
    "WebhookController",
    "WebhookSender",
    "consult_api",
    "cosignatures_of",
    "fhir_bundle",
    "payload_of",
    "read_payload",
    "render_opinion_pdf",
    "renderer_id",
    "versions_of",
]

# Schemas

Short = Annotated[str, Meta(min_length=1, max_length=64)]
Username = Annotated[str, Meta(min_length=1, max_length=64, examples=["wang.expert"])]
Reason = Annotated[str, Meta(min_length=1, max_length=500, examples=["本院无相关专科"])]
LongText = Annotated[str, Meta(max_length=20_000)]
Moment = Annotated[dt.datetime, Meta(tz=True, examples=["2026-12-02T08:30:00Z"])]
TotpCode = Annotated[str, Meta(min_length=1, max_length=10, examples=["123456"])]
PathId = Annotated[str, Parameter(max_length=64)]


class PatientIn(msgspec.Struct, forbid_unknown_fields=True):
    """The patient: ``national_id`` (GB 11643, optional) is stored sealed, shown masked."""

    name: Annotated[str, Meta(min_length=1, max_length=64, examples=["张三"])]
    sex: Sex
    birth_date: dt.date
    record_number: Short
    national_id: Annotated[str, Meta(min_length=18, max_length=18)] | None = None


class ConsentIn(msgspec.Struct, forbid_unknown_fields=True):
    """The informed consent: a written form, or a verbal one with its witness."""

    kind: ConsentKind
    recorded_by: Short
    time: Moment
    witness: Short | None = None
    form_attachment: Short | None = None


class ConsultCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /consults``: the request (事由, 目的, 病历摘要, specialty, consent)."""

    patient: PatientIn
    reason: Reason
    purpose: Reason
    summary: Annotated[str, Meta(min_length=1, max_length=20_000)]
    specialty: Short
    priority: Priority
    mode: Mode
    consent: ConsentIn
    title_wanted: Short | None = None
    expert_wanted: Username | None = None
    proposed_times: Annotated[list[Moment], Meta(max_length=10)] = msgspec.field(
        default_factory=list
    )


class StepBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /consults/{id}/{event}``: ``assign`` takes ``experts`` (the first signs),
    ``decline`` and ``cancel`` a ``reason``, ``schedule`` a ``start``, ``sign`` its
    ``totp``; the others ``{}``."""

    reason: Reason | None = None
    experts: Annotated[list[Username], Meta(min_length=1, max_length=10)] | None = None
    start: Moment | None = None
    totp: TotpCode | None = None


class OpinionIn(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /consults/{id}/opinion``: the draft (replaced whole at each save)."""

    findings: LongText
    diagnosis: Annotated[str, Meta(min_length=1, max_length=4_000)]
    recommendations: LongText
    referral_advice: Annotated[str, Meta(max_length=4_000)] = ""

    def text(self) -> OpinionText:
        return OpinionText(
            findings=self.findings,
            diagnosis=self.diagnosis,
            recommendations=self.recommendations,
            referral_advice=self.referral_advice,
        )


class AddendumIn(OpinionIn, forbid_unknown_fields=True):
    """``POST /consults/{id}/opinion/addenda``: a correction, signed with ``totp``."""

    totp: TotpCode | None = None


class PatientOut(msgspec.Struct):
    name: str
    sex: str
    birth_date: dt.date
    record_number: str
    national_id_masked: str | None


class ConsentOut(msgspec.Struct):
    kind: str
    recorded_by: str
    time: dt.datetime
    witness: str | None
    form_attachment: str | None


class ConsultAnswer(msgspec.Struct):
    """A consult as the caller may see it; ``allowed`` are the events they may take now."""

    id: Annotated[str, Meta(examples=["3f2b9c1e7d4a4f0e9a1b2c3d4e5f6a7b"])]
    state: ConsultState
    priority: Priority
    mode: Mode
    requester: str
    clinic: str
    centre: str
    experts: list[str]
    lead_expert: str | None
    created_at: dt.datetime
    submitted_at: dt.datetime | None
    accepted_at: dt.datetime | None
    scheduled_start: dt.datetime | None
    signed_at: dt.datetime | None
    closed_at: dt.datetime | None
    last_reason: str | None
    accept_due: dt.datetime | None
    expires_at: dt.datetime | None
    overdue: bool
    escalated_at: dt.datetime | None
    patient: PatientOut
    reason: str
    purpose: str
    summary: str
    specialty: str
    title_wanted: str | None
    expert_wanted: str | None
    proposed_times: list[dt.datetime]
    consent: ConsentOut
    allowed: list[ConsultEvent]
    parties: list[str]
    revision: int


class ConsultItem(msgspec.Struct):
    """One line of a worklist."""

    id: Annotated[str, Meta(examples=["3f2b9c1e7d4a4f0e9a1b2c3d4e5f6a7b"])]
    state: ConsultState
    priority: Priority
    mode: Mode
    patient_name: str
    record_number: str
    specialty: str
    clinic: str
    centre: str
    requester: str
    experts: list[str]
    created_at: dt.datetime
    accept_due: dt.datetime | None
    overdue: bool
    scheduled_start: dt.datetime | None


class ConsultPage(msgspec.Struct):
    """A page of a worklist and the size of the whole worklist."""

    items: list[ConsultItem]
    total: int
    limit: int
    offset: int


class DraftAnswer(msgspec.Struct):
    """The opinion draft as saved."""

    findings: str
    diagnosis: Annotated[str, Meta(examples=["急性前壁 ST 段抬高型心肌梗死"])]
    recommendations: str
    referral_advice: str


class SignatureOut(msgspec.Struct):
    algorithm: str
    key_fingerprint: str
    value: str


class VersionAnswer(msgspec.Struct):
    """One signed version: the document signed (canonical JSON of it is what the
    signature covers), the signature and the signer's public key (raw, base64)."""

    version: Annotated[int, Meta(examples=[1])]
    signer: str
    signed_at: str
    corrects: str | None
    document: dict[str, Any]
    signature: SignatureOut
    public_key: str


class CosignIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /consults/{id}/opinion/cosign``: another expert's co-signature of the latest
    version, with an optional remark (their own opinion beside it)."""

    totp: TotpCode | None = None
    comment: Annotated[str, Meta(max_length=4_000)] = ""


class CosignatureAnswer(msgspec.Struct):
    """A co-signature: the document signed (it names the version's digest), the
    signature and the co-signer's public key (raw, base64)."""

    version: Annotated[int, Meta(examples=[1])]
    signer: str
    signed_at: str
    comment: str
    document: dict[str, Any]
    signature: SignatureOut
    public_key: str


class OpinionAnswer(msgspec.Struct):
    """The draft (for the consult's experts and coordinators until signed, else null),
    the signed versions, version 1 first, and the other experts' co-signatures."""

    draft: DraftAnswer | None
    versions: list[VersionAnswer]
    cosignatures: list[CosignatureAnswer]


class AttachmentAnswer(msgspec.Struct):
    """An attachment's metadata (its bytes at ``.../attachments/{id}``)."""

    id: Annotated[str, Meta(examples=["3f2b9c1e7d4a4f0e9a1b2c3d4e5f6a7b"])]
    media_type: str
    size_bytes: int
    sha256: str
    name: str
    uploaded_by: str
    uploaded_at: dt.datetime


class StreamAttach(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /consults/{id}/streams``: an ECG stream the clinic's cart sent."""

    stream: Short


class StreamAnswer(msgspec.Struct):
    """An ECG stream of the consult: declared by the cart (``attached_by`` null) or
    attached afterwards."""

    id: Annotated[str, Meta(examples=["0b8f5a4e-6c1d-4d2e-9a77-3c0f8e1d2b6a"])]
    institution: str | None
    device_id: str | None
    started_at: dt.datetime
    ended_at: dt.datetime | None
    state: str
    samples: int
    attached_by: str | None


class SlotCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /referral-slots``: a slot of the caller's institution's department."""

    department: Short
    start: Moment
    end: Moment


class SlotAnswer(msgspec.Struct):
    id: Annotated[str, Meta(examples=["3f2b9c1e7d4a4f0e9a1b2c3d4e5f6a7b"])]
    institution: str
    department: str
    start: dt.datetime
    end: dt.datetime
    taken: bool


class ReferralCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /referrals``: to a published slot, from a consult or directly."""

    slot: Short
    reason: Reason
    consult: Short | None = None


class ReferralStepBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /referrals/{id}/{event}``: ``decline`` and ``cancel`` take a ``reason``,
    ``refer_back`` the discharge ``summary``."""

    reason: Reason | None = None
    summary: Annotated[str, Meta(min_length=1, max_length=20_000)] | None = None


class ReferralAnswer(msgspec.Struct):
    id: Annotated[str, Meta(examples=["3f2b9c1e7d4a4f0e9a1b2c3d4e5f6a7b"])]
    state: ReferralState
    from_institution: str
    to_institution: str
    to_department: str
    slot: str | None
    reason: str
    created_at: dt.datetime
    consult: str | None
    decline_reason: str | None
    arrived_at: dt.datetime | None
    discharge_summary: str | None


class ReferralPage(msgspec.Struct):
    items: list[ReferralAnswer]
    total: int
    limit: int
    offset: int


def _item(record: ConsultRecord, now: dt.datetime) -> ConsultItem:
    c, r = record.consult, record.request
    return ConsultItem(
        id=c.id,
        state=c.state,
        priority=c.priority,
        mode=c.mode,
        patient_name=r.patient_name,
        record_number=r.record_number,
        specialty=r.specialty,
        clinic=c.clinic,
        centre=c.centre,
        requester=c.requester,
        experts=list(c.experts),
        created_at=c.created_at,
        accept_due=record.accept_due,
        overdue=record.accept_due is not None and now > record.accept_due,
        scheduled_start=c.scheduled_start,
    )


def _answer(view: ConsultView, now: dt.datetime) -> ConsultAnswer:
    record = view.record
    c, r = record.consult, record.request
    return ConsultAnswer(
        id=c.id,
        state=c.state,
        priority=c.priority,
        mode=c.mode,
        requester=c.requester,
        clinic=c.clinic,
        centre=c.centre,
        experts=list(c.experts),
        lead_expert=c.lead_expert,
        created_at=c.created_at,
        submitted_at=c.submitted_at,
        accepted_at=c.accepted_at,
        scheduled_start=c.scheduled_start,
        signed_at=c.signed_at,
        closed_at=c.closed_at,
        last_reason=c.reason,
        accept_due=record.accept_due,
        expires_at=record.expires_at,
        overdue=record.accept_due is not None and now > record.accept_due,
        escalated_at=record.escalated_at,
        patient=PatientOut(
            name=r.patient_name,
            sex=r.patient_sex,
            birth_date=r.patient_birth_date,
            record_number=r.record_number,
            national_id_masked=view.national_id_masked,
        ),
        reason=r.reason,
        purpose=r.purpose,
        summary=r.summary,
        specialty=r.specialty,
        title_wanted=r.title_wanted,
        expert_wanted=r.expert_wanted,
        proposed_times=list(r.proposed_times),
        consent=ConsentOut(
            kind=r.consent_kind,
            recorded_by=r.consent_recorded_by,
            time=r.consent_time,
            witness=r.consent_witness,
            form_attachment=r.consent_form,
        ),
        allowed=list(view.allowed),
        parties=sorted(p.value for p in view.parties),
        revision=record.revision,
    )


def _version(version: SignedVersion) -> VersionAnswer:
    doc = version.document
    corrects = doc.get("corrects")
    return VersionAnswer(
        version=int(str(doc["version"])),
        signer=str(doc["signer"]),
        signed_at=str(doc["signed_at"]),
        corrects=None if corrects is None else str(corrects),
        document=dict(doc),
        signature=SignatureOut(**version.signature.as_dict()),
        public_key=base64.b64encode(version.public_key).decode("ascii"),
    )


def _stream(found: ConsultStream) -> StreamAnswer:
    return StreamAnswer(**dataclasses.asdict(found))


def _cosignature(cosignature: SignedVersion) -> CosignatureAnswer:
    doc = cosignature.document
    return CosignatureAnswer(
        version=int(str(doc["version"])),
        signer=str(doc["signer"]),
        signed_at=str(doc["signed_at"]),
        comment=str(doc.get("comment") or ""),
        document=dict(doc),
        signature=SignatureOut(**cosignature.signature.as_dict()),
        public_key=base64.b64encode(cosignature.public_key).decode("ascii"),
    )


def _attachment(found: Attachment) -> AttachmentAnswer:
    return AttachmentAnswer(
        id=found.id,
        media_type=found.media_type,
        size_bytes=found.size_bytes,
        sha256=found.sha256,
        name=found.name,
        uploaded_by=found.uploaded_by,
        uploaded_at=found.uploaded_at,
    )


def _referral(referral: Referral) -> ReferralAnswer:
    # The answer has the record's fields, one for one.
    return ReferralAnswer(**dataclasses.asdict(referral))


def _slot(slot: Slot, taken: bool) -> SlotAnswer:
    return SlotAnswer(**dataclasses.asdict(slot), taken=taken)


# The PDF

RENDERER: Final = "teleconsult-opinion-pdf/1"
# The signed versions ride in the PDF as one embedded file whose content is this marker
# and the base64 of their JSON (ASCII, uncompressed: found again by a plain search).
PAYLOAD_MARKER: Final = b"TELECONSULT-SIGNED-OPINION:"
_PAYLOAD_RE: Final = re.compile(re.escape(PAYLOAD_MARKER) + rb"([A-Za-z0-9+/=]+)")

_SEX_TEXT: Final = {"male": "男 male", "female": "女 female", "unknown": "未知 unknown"}
_SECTIONS: Final = (
    ("findings", "所见 Findings"),
    ("diagnosis", "诊断 Diagnosis"),
    ("recommendations", "建议 Recommendations"),
    ("referral_advice", "转诊建议 Referral advice"),
)


def renderer_id() -> str:
    import fpdf

    return f"{RENDERER} fpdf2/{fpdf.__version__}"


def _items(signed: Sequence[SignedVersion]) -> list[dict[str, Any]]:
    return [
        {
            "document": dict(v.document),
            "signature": v.signature.as_dict(),
            "public_key": base64.b64encode(v.public_key).decode("ascii"),
        }
        for v in signed
    ]


def payload_of(
    versions: Sequence[SignedVersion], cosignatures: Sequence[SignedVersion] = ()
) -> dict[str, Any]:
    """What the PDF carries: the renderer, and each version's and co-signature's
    document, signature and key."""
    return {
        "kind": "teleconsult.signed_opinion",
        "renderer": renderer_id(),
        "versions": _items(versions),
        "cosignatures": _items(cosignatures),
    }


def versions_of(payload: Mapping[str, Any]) -> list[SignedVersion]:
    """The signed versions of a payload (:func:`payload_of`).

    Raises
    ------
    ValueError
        The payload is not of that shape.
    """
    if payload.get("kind") != "teleconsult.signed_opinion":
        raise ValueError("not a signed opinion")
    out = _signed_of(payload.get("versions") or [])
    if not out:
        raise ValueError("no signed version")
    return out


def cosignatures_of(payload: Mapping[str, Any]) -> list[SignedVersion]:
    """The co-signatures of a payload (none in one made before there were any)."""
    return _signed_of(payload.get("cosignatures") or [])


def _signed_of(items: Sequence[Any]) -> list[SignedVersion]:
    out: list[SignedVersion] = []
    for item in items:
        signature = item["signature"]
        out.append(
            SignedVersion(
                document=dict(item["document"]),
                signature=Signature(
                    algorithm=str(signature["algorithm"]),
                    key_fingerprint=str(signature["key_fingerprint"]),
                    value=str(signature["value"]),
                ),
                public_key=base64.b64decode(str(item["public_key"]), validate=True),
            )
        )
    return out


def read_payload(pdf: bytes) -> dict[str, Any]:
    """The payload embedded in an opinion PDF.

    Raises
    ------
    ValueError
        None, or more than one, or one that is not JSON.
    """
    found = _PAYLOAD_RE.findall(pdf)
    if len(found) != 1:
        raise ValueError("the file carries no signed opinion (or more than one)")
    try:
        payload = json.loads(base64.b64decode(found[0], validate=True))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("the signed opinion in the file cannot be read") from exc
    if not isinstance(payload, dict):
        raise ValueError("the signed opinion in the file cannot be read")
    return payload


def _text(document: Mapping[str, Any], *path: str) -> str:
    value: Any = document
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def render_opinion_pdf(
    versions: Sequence[SignedVersion], cosignatures: Sequence[SignedVersion] = ()
) -> bytes:
    """The opinion's PDF: one section per signed version, nothing on it unsigned.

    A4 portrait, Noto Sans CJK; Chinese and English labels; the signer, the signing
    time (UTC) and the key fingerprint under each version. The same versions always
    give the same bytes (the document dates are the last signing time).

    Raises
    ------
    ValueError
        No version.
    """
    from fpdf import FPDF

    from ecg.paper import CJK_FONT, CJK_FONT_BOLD

    if not versions:
        raise ValueError("nothing is signed")
    last = versions[-1].document
    latest = max(_text(v.document, "signed_at") for v in (*versions, *cosignatures))
    signed_at = dt.datetime.fromisoformat(latest.replace("Z", "+00:00"))
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_creation_date(signed_at)
    pdf.set_creator("teleconsult")
    pdf.set_title(f"会诊意见 Consultation opinion {_text(last, 'consult')}")
    pdf.set_margins(18, 16, 18)
    pdf.set_auto_page_break(True, margin=16)
    pdf.add_font("cjk", "", CJK_FONT.path, collection_font_number=CJK_FONT.index)
    pdf.add_font("cjk", "B", CJK_FONT_BOLD.path, collection_font_number=CJK_FONT_BOLD.index)
    pdf.add_page()
    width = pdf.epw

    def line(label: str, value: str, *, size: float = 10.0) -> None:
        pdf.set_font("cjk", "B", size)
        pdf.cell(44, 6, label)
        pdf.set_font("cjk", "", size)
        pdf.multi_cell(width - 44, 6, value or "—", new_x="LMARGIN", new_y="NEXT")

    first = versions[0].document
    pdf.set_font("cjk", "B", 16)
    pdf.cell(width, 10, "远程会诊意见书  Teleconsultation Opinion", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", "", 9)
    pdf.cell(width, 5, f"会诊编号 Consult {_text(first, 'consult')}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    line("患者 Patient", _text(first, "context", "patient_name"))
    line("性别 Sex", _SEX_TEXT.get(_text(first, "context", "patient_sex"), ""))
    line("出生日期 Born", _text(first, "context", "patient_birth_date"))
    line("病历号 Record no.", _text(first, "context", "record_number"))
    line("申请机构 Clinic", _text(first, "context", "clinic"))
    line("会诊中心 Centre", _text(first, "context", "centre"))
    line("专科 Specialty", _text(first, "context", "specialty"))
    for version in versions:
        doc = version.document
        number = _text(doc, "version")
        pdf.ln(4)
        pdf.set_draw_color(120, 120, 120)
        pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
        pdf.ln(2)
        pdf.set_font("cjk", "B", 12)
        title = "会诊意见 Opinion" if number == "1" else f"补充更正 Addendum (v{number})"
        pdf.cell(width, 8, title, new_x="LMARGIN", new_y="NEXT")
        if doc.get("corrects"):
            pdf.set_font("cjk", "", 8)
            pdf.multi_cell(
                width, 4, f"更正 Corrects SHA-256 {_text(doc, 'corrects')}", new_x="LMARGIN"
            )
            pdf.ln(1)
        for key, label in _SECTIONS:
            value = _text(doc, "opinion", key)
            if key == "referral_advice" and not value:
                continue
            pdf.set_font("cjk", "B", 10)
            pdf.cell(width, 6, label, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("cjk", "", 10)
            pdf.multi_cell(width, 5.5, value or "—", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        signer = " ".join(
            part
            for part in (
                _text(doc, "context", "signer_name"),
                _text(doc, "context", "signer_title"),
                _text(doc, "context", "signer_institution"),
            )
            if part
        )
        line("签名医师 Signed by", f"{signer} ({_text(doc, 'signer')})", size=9)
        line("签名时间 Signed at", f"{_text(doc, 'signed_at')} (UTC)", size=9)
        line("签名算法 Algorithm", version.signature.algorithm, size=9)
        line("公钥指纹 Key SHA-256", version.signature.key_fingerprint, size=9)
        for cosignature in cosignatures:
            co = cosignature.document
            if _text(co, "version") != number:
                continue
            pdf.ln(1)
            names = (_text(co, "context", k) for k in ("signer_name", "signer_title"))
            who = " ".join(n for n in names if n)
            line("会签专家 Co-signed by", f"{who} ({_text(co, 'signer')})", size=9)
            if _text(co, "comment"):
                line("会签意见 Remark", _text(co, "comment"), size=9)
            line("签名时间 Signed at", f"{_text(co, 'signed_at')} (UTC)", size=9)
            line("公钥指纹 Key SHA-256", cosignature.signature.key_fingerprint, size=9)
    pdf.ln(4)
    pdf.set_font("cjk", "", 8)
    pdf.multi_cell(
        width,
        4,
        "本意见书经电子签名；以 teleconsult report verify 文件名 核验。"
        " This opinion is electronically signed; check it with "
        "`teleconsult report verify FILE`.",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    payload = json.dumps(
        payload_of(versions, cosignatures), sort_keys=True, ensure_ascii=True, separators=(",", ":")
    ).encode("ascii")
    pdf.embed_file(
        bytes=PAYLOAD_MARKER + base64.b64encode(payload),
        basename="signed-opinion.txt",
        modification_date=signed_at,
        mime_type="text/plain",
        compress=False,
    )
    return bytes(pdf.output())


# FHIR R4

_TASK_STATUS: Final[Mapping[ConsultState, str]] = {
    ConsultState.DRAFT: "draft",
    ConsultState.SUBMITTED: "requested",
    ConsultState.ASSIGNED: "received",
    ConsultState.ACCEPTED: "accepted",
    ConsultState.DECLINED: "rejected",
    ConsultState.SCHEDULED: "ready",
    ConsultState.IN_CONSULT: "in-progress",
    ConsultState.REPORTING: "in-progress",
    ConsultState.REPORTED: "completed",
    ConsultState.CLOSED: "completed",
    ConsultState.CANCELLED: "cancelled",
    ConsultState.EXPIRED: "failed",
}
_PRIORITY: Final = {
    Priority.ROUTINE: "routine",
    Priority.URGENT: "urgent",
    Priority.EMERGENCY: "stat",
}
_DONE: Final = frozenset({ConsultState.REPORTED, ConsultState.CLOSED})
_STOPPED: Final = frozenset({ConsultState.CANCELLED, ConsultState.EXPIRED})
_SYSTEM: Final = "urn:teleconsult"
# Each resource's fullUrl is a UUID made from the consult id and the resource type, so
# two exports of one consult name its resources alike.
_NAMESPACE: Final = uuid.UUID("5d1c3a52-0b7e-4a59-9c3e-2f7a6d8e1b40")


def _fhir_time(moment: dt.datetime | None) -> str | None:
    return None if moment is None else iso_utc(moment)


def _fhir_signature(signed: SignedVersion, code: str, display: str) -> dict[str, Any]:
    doc = signed.document
    return {
        "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": code, "display": display}],
        "when": str(doc["signed_at"]),
        "who": {"display": str(doc["signer"])},
        "targetFormat": "application/json",
        "sigFormat": f"application/x-{signed.signature.algorithm.lower()}"
        f";fingerprint={signed.signature.key_fingerprint.replace(' ', '')}",
        "data": signed.signature.value,
    }


def fhir_bundle(
    record: ConsultRecord,
    versions: Sequence[SignedVersion],
    cosignatures: Sequence[SignedVersion] = (),
) -> dict[str, Any]:
    """The consult as a FHIR R4 ``collection`` Bundle (JSON)."""
    c, r = record.consult, record.request
    state = c.state
    ref = {
        name: f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{c.id}/{name}')}"
        for name in (
            "Patient",
            "ServiceRequest",
            "Task",
            "Appointment",
            "Encounter",
            "DiagnosticReport",
            "Provenance",
        )
    }
    identifier = [{"system": f"{_SYSTEM}:consult", "value": c.id}]
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": f"{_SYSTEM}:patient", "value": r.patient_id},
            {"system": f"{_SYSTEM}:record-number:{c.clinic}", "value": r.record_number},
        ],
        "name": [{"text": r.patient_name}],
        "gender": r.patient_sex,
        "birthDate": r.patient_birth_date.isoformat(),
    }
    subject = {"reference": ref["Patient"]}
    service_request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": identifier,
        "status": "completed" if state in _DONE else "revoked" if state in _STOPPED else "active",
        "intent": "order",
        "priority": _PRIORITY[c.priority],
        "category": [{"text": r.specialty}],
        "code": {"text": "远程会诊 Teleconsultation"},
        "subject": subject,
        "authoredOn": _fhir_time(c.submitted_at or c.created_at),
        "requester": {"display": c.requester},
        "reasonCode": [{"text": r.reason}],
        "note": [{"text": f"目的 Purpose: {r.purpose}"}, {"text": r.summary}],
    }
    if r.title_wanted or r.expert_wanted:
        service_request["performerType"] = {"text": r.title_wanted or r.expert_wanted}
    task: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": identifier,
        "status": _TASK_STATUS[state],
        "businessStatus": {"text": state.value},
        "intent": "order",
        "priority": _PRIORITY[c.priority],
        "basedOn": [{"reference": ref["ServiceRequest"]}],
        "focus": {"reference": ref["ServiceRequest"]},
        "for": subject,
        "authoredOn": _fhir_time(c.created_at),
        "requester": {"display": c.requester},
    }
    if c.experts:
        task["owner"] = {"display": c.lead_expert or c.experts[0]}
    if c.reason and state in (ConsultState.DECLINED, ConsultState.CANCELLED):
        task["statusReason"] = {"text": c.reason}
    appointment_status = (
        "cancelled"
        if state in _STOPPED
        else "fulfilled"
        if state in _DONE | {ConsultState.IN_CONSULT, ConsultState.REPORTING}
        else "booked"
        if c.scheduled_start is not None
        else "proposed"
    )
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "identifier": identifier,
        "status": appointment_status,
        "serviceType": [{"text": r.specialty}],
        "basedOn": [{"reference": ref["ServiceRequest"]}],
        "participant": [
            {"actor": subject, "status": "accepted"},
            *(
                {
                    "actor": {"display": name},
                    "status": "accepted" if c.accepted_at else "needs-action",
                }
                for name in c.experts
            ),
        ],
    }
    if c.scheduled_start is not None:
        appointment["start"] = _fhir_time(c.scheduled_start)
        appointment["end"] = _fhir_time(c.scheduled_start + dt.timedelta(minutes=30))
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": identifier,
        "status": "finished"
        if state in _DONE
        else "cancelled"
        if state in _STOPPED
        else "in-progress"
        if state in (ConsultState.IN_CONSULT, ConsultState.REPORTING)
        else "planned",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "VR",
            "display": "virtual",
        },
        "subject": subject,
        "basedOn": [{"reference": ref["ServiceRequest"]}],
        "appointment": [{"reference": ref["Appointment"]}],
    }
    resources: list[dict[str, Any]] = [patient, service_request, task, appointment, encounter]
    if versions:
        last = versions[-1]
        doc = last.document
        cosigners = [c for c in cosignatures if c.document.get("version") == doc["version"]]
        opinion = doc.get("opinion")
        conclusion = str(opinion.get("diagnosis", "")) if isinstance(opinion, Mapping) else ""
        signed_json = json.dumps(dict(doc), sort_keys=True, ensure_ascii=False).encode()
        resources.append(
            {
                "resourceType": "DiagnosticReport",
                "identifier": identifier,
                "status": "final" if len(versions) == 1 else "amended",
                "code": {
                    "coding": [
                        {"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}
                    ],
                    "text": "会诊意见 Consultation opinion",
                },
                "subject": subject,
                "encounter": {"reference": ref["Encounter"]},
                "basedOn": [{"reference": ref["ServiceRequest"]}],
                "issued": str(doc["signed_at"]),
                "performer": [{"display": str(doc["signer"])}],
                "conclusion": conclusion,
                "presentedForm": [
                    {
                        "contentType": "application/json",
                        "data": base64.b64encode(signed_json).decode("ascii"),
                        "title": f"signed opinion v{doc['version']}",
                    }
                ],
            }
        )
        resources.append(
            {
                "resourceType": "Provenance",
                "target": [{"reference": ref["DiagnosticReport"]}],
                "recorded": str(doc["signed_at"]),
                "agent": [
                    {"who": {"display": str(doc["signer"])}},
                    *({"who": {"display": str(c.document["signer"])}} for c in cosigners),
                ],
                "signature": [
                    _fhir_signature(last, "1.2.840.10065.1.12.1.1", "Author's Signature"),
                    *(
                        _fhir_signature(c, "1.2.840.10065.1.12.1.2", "Coauthor's Signature")
                        for c in cosigners
                    ),
                ],
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": _fhir_time(record.consult.signed_at or record.consult.created_at),
        "entry": [{"fullUrl": ref[res["resourceType"]], "resource": res} for res in resources],
    }


# Controllers

_AUTH = (
    (401, "session_invalid", "not logged in or the session has expired"),
    (403, "csrf_failed", "missing or wrong CSRF token: send the X-CSRF-Token header"),
)
_NO_CONSULT = (404, "not_found", "no consult '3f2b9c1e'")
_TABLE = (
    (409, "transition_not_allowed", "lead_expert cannot accept a consult in state reported"),
    (403, "forbidden", "requester may not assign a consult in state submitted"),
    (409, "consult_changed", "the consult changed meanwhile: reload it and try again"),
)
_MAX_UPLOAD_BYTES: Final = max(DEFAULT_LIMITS_BYTES.values()) + 1
_NO_STORE: Final = {"cache-control": "no-store"}

_EXAMPLE_CREATE = ConsultCreate(
    patient=PatientIn(
        name="张三", sex=Sex.MALE, birth_date=dt.date(1960, 5, 1), record_number="MZ-0001"
    ),
    reason="胸痛两小时",
    purpose="明确诊断，指导治疗",
    summary="男，66岁，胸骨后压榨样疼痛两小时。",
    specialty="心内科",
    priority=Priority.URGENT,
    mode=Mode.REALTIME,
    consent=ConsentIn(
        kind=ConsentKind.WRITTEN,
        recorded_by="li.doctor",
        time=dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.UTC),
    ),
)


class ConsultController(Controller):
    """Consult requests, their lifecycle, opinion, attachments and exports."""

    path = "/consults"
    tags = ["consults"]  # noqa: RUF012 - Litestar's own class attribute
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        summary="Request a consult (submitted at once)",
        responses=documented(
            201,
            ConsultAnswer,
            None,
            *_AUTH,
            (400, "invalid_input", "consent.witness: a verbal consent names its witness"),
            (403, "forbidden", "only a clinic's doctor may request a consult"),
        ),
    )
    def create(
        self,
        data: Annotated[ConsultCreate, body(_EXAMPLE_CREATE)],
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> ConsultAnswer:
        """A clinic doctor's request, routed to the consult centre serving the clinic;
        answers the consult (``state`` ``submitted``)."""
        request = ConsultRequest(
            patient=Patient(
                name=data.patient.name,
                sex=data.patient.sex,
                birth_date=data.patient.birth_date,
                record_number=data.patient.record_number,
                national_id=data.patient.national_id,
            ),
            reason=data.reason,
            purpose=data.purpose,
            summary=data.summary,
            specialty=data.specialty,
            priority=data.priority,
            mode=data.mode,
            consent=Consent(
                kind=data.consent.kind,
                recorded_by=data.consent.recorded_by,
                time=data.consent.time,
                witness=data.consent.witness,
                form_attachment=data.consent.form_attachment,
            ),
            title_wanted=data.title_wanted,
            expert_wanted=data.expert_wanted,
            proposed_times=tuple(data.proposed_times),
        )
        view = consult_service.create(principal.person, request)
        return _answer(view, consult_service.now())

    @get(
        "/",
        sync_to_thread=True,
        summary="A worklist",
        responses=documented(
            200,
            ConsultPage,
            None,
            *_AUTH,
            (403, "forbidden", "the overdue worklist is for a coordinator"),
        ),
    )
    def worklist(
        self,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        queue: Annotated[
            Queue | None, Parameter(description="mine, clinic, untriaged, overdue, assigned")
        ] = None,
        states: Annotated[
            list[ConsultState] | None,
            QueryParameter(name="state", description="only these states"),
        ] = None,
        search: Annotated[str | None, Parameter(max_length=100)] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        offset: Annotated[int, Parameter(ge=0)] = 0,
        page_number: Annotated[
            int | None,
            QueryParameter(
                name="page", ge=1, description="1-based page of limit items (instead of offset)"
            ),
        ] = None,
    ) -> ConsultPage:
        """One of the caller's worklists: ``mine`` and ``clinic`` (a doctor's, newest
        first), ``untriaged`` and ``overdue`` (a coordinator's centre, earliest due
        first: the overdue lead), ``assigned`` (an expert's, by deadline). Without
        ``queue``: the first of the caller's roles (coordinator, expert, doctor).
        ``page`` (from 1) counts pages of ``limit`` instead of ``offset``."""
        person = principal.person
        chosen = queue or _default_queue(principal)
        if page_number is not None:
            offset = (page_number - 1) * limit
        page = consult_service.worklist(
            person,
            chosen,
            PageRequest(limit=limit, offset=offset),
            states=None if not states else frozenset(states),
            search=search,
        )
        now = consult_service.now()
        return ConsultPage([_item(r, now) for r in page.items], page.total, limit, offset)

    @get(
        "/{consult_id:str}",
        sync_to_thread=True,
        summary="One consult",
        responses=documented(200, ConsultAnswer, None, *_AUTH, _NO_CONSULT),
    )
    def get_one(
        self,
        consult_id: PathId,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> Response[ConsultAnswer]:
        """The consult with ``state`` and the events the caller may take (``allowed``)."""
        view = consult_service.get(principal.person, consult_id)
        return Response(_answer(view, consult_service.now()), headers=_NO_STORE)

    @post(
        "/{consult_id:str}/{event:str}",
        status_code=200,
        sync_to_thread=True,
        summary="Take a step of the lifecycle",
        responses=documented(
            200,
            ConsultAnswer,
            None,
            *_AUTH,
            *_TABLE,
            _NO_CONSULT,
            (404, "unknown_event", "no event 'approve'"),
            (400, "missing_field", "reason: decline needs it"),
            (401, "totp_required", "a one-time code (totp) is required for this account"),
        ),
    )
    def step(
        self,
        consult_id: PathId,
        event: Annotated[str, Parameter(max_length=32)],
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        data: Annotated[StepBody | None, body(StepBody(reason="本院无相关专科"))] = None,
    ) -> ConsultAnswer:
        """``submit``, ``assign`` ``{"experts"}``, ``accept``, ``decline`` ``{"reason"}``,
        ``schedule`` ``{"start"}``, ``start``, ``review``, ``finish``, ``sign``
        ``{"totp"}``, ``close``, ``cancel`` ``{"reason"}``. A step the table does not
        have in this state answers 409 naming the state and the event."""
        try:
            chosen = ConsultEvent(event)
        except ValueError:
            raise ApiError("unknown_event", f"no event {event!r}", status=404) from None
        given = data or StepBody()
        person = principal.person
        if chosen is ConsultEvent.SIGN:
            view = consult_service.sign(person, consult_id, given.totp)
        else:
            view = consult_service.step(
                person,
                consult_id,
                chosen,
                reason=given.reason,
                experts=given.experts,
                start=given.start,
            )
        return _answer(view, consult_service.now())

    @put(
        "/{consult_id:str}/opinion",
        sync_to_thread=True,
        summary="Save the opinion draft",
        responses=documented(
            200,
            DraftAnswer,
            None,
            *_AUTH,
            _NO_CONSULT,
            (403, "forbidden", "only the consult's lead expert may write the opinion"),
            (409, "opinion_signed", "the opinion is signed and cannot change: write an addendum"),
            (
                409,
                "transition_not_allowed",
                "lead_expert cannot finish a opinion in state assigned",
            ),
        ),
    )
    def save_draft(
        self,
        consult_id: PathId,
        data: Annotated[OpinionIn, Body()],
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> DraftAnswer:
        """The lead expert replaces the draft; refused once signed (write an addendum)."""
        text = data.text()
        consult_service.save_draft(principal.person, consult_id, text)
        return DraftAnswer(**text.as_dict())

    @get(
        "/{consult_id:str}/opinion",
        sync_to_thread=True,
        summary="The opinion: draft and signed versions",
        responses=documented(200, OpinionAnswer, None, *_AUTH, _NO_CONSULT),
    )
    def opinion(
        self,
        consult_id: PathId,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> Response[OpinionAnswer]:
        """The signed versions for anyone who sees the consult; the draft for its
        experts and coordinators (``null`` for the others)."""
        person = principal.person
        versions = consult_service.versions(person, consult_id)
        try:
            draft = consult_service.draft(person, consult_id)
        except Forbidden:
            draft = None
        answer = OpinionAnswer(
            draft=None if draft is None else DraftAnswer(**draft.as_dict()),
            versions=[_version(v) for v in versions],
            cosignatures=[
                _cosignature(c) for c in consult_service.cosignatures(person, consult_id)
            ],
        )
        return Response(answer, headers=_NO_STORE)

    @post(
        "/{consult_id:str}/opinion/addenda",
        status_code=201,
        sync_to_thread=True,
        summary="Correct a signed opinion (a new signed version)",
        responses=documented(
            201,
            VersionAnswer,
            None,
            *_AUTH,
            _NO_CONSULT,
            (400, "invalid_input", "opinion: nothing is signed yet: edit the draft"),
            (401, "totp_required", "a one-time code (totp) is required for this account"),
            (403, "forbidden", "only the consult's lead expert may correct the opinion"),
        ),
    )
    def addendum(
        self,
        consult_id: PathId,
        data: Annotated[AddendumIn, Body()],
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> VersionAnswer:
        """A correction: the next version, naming the digest of the last, signed anew."""
        version = consult_service.addendum(principal.person, consult_id, data.text(), data.totp)
        return _version(version)

    @post(
        "/{consult_id:str}/opinion/cosign",
        status_code=201,
        sync_to_thread=True,
        summary="Co-sign the latest signed version (another expert)",
        responses=documented(
            201,
            CosignatureAnswer,
            None,
            *_AUTH,
            _NO_CONSULT,
            (400, "invalid_input", "opinion: nothing is signed yet"),
            (401, "totp_required", "a one-time code (totp) is required for this account"),
            (403, "forbidden", "only the consult's experts co-sign"),
            (409, "conflict", "co-signature 'chen.expert' exists already"),
        ),
    )
    def cosign(
        self,
        consult_id: PathId,
        data: Annotated[CosignIn, Body()],
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> CosignatureAnswer:
        """A multidisciplinary consult's other expert agrees with the signed opinion
        (and may add a remark): signed with their key after the second factor."""
        found = consult_service.cosign(principal.person, consult_id, data.totp, data.comment)
        return _cosignature(found)

    @get(
        "/{consult_id:str}/opinion.pdf",
        sync_to_thread=True,
        summary="The signed opinion as PDF",
        media_type="application/pdf",
        responses=documented(
            200, None, None, *_AUTH, _NO_CONSULT, (404, "not_found", "no signed opinion '3f2b'")
        ),
    )
    def opinion_pdf(
        self,
        consult_id: PathId,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> Response[bytes]:
        """Every signed version on A4, Chinese and English, with the signer, the time
        and the key fingerprint; the signed documents ride inside it for
        ``teleconsult report verify``."""
        _, versions, cosignatures = consult_service.export(principal.person, consult_id, "pdf")
        if not versions:
            raise NotFound("signed opinion", consult_id)
        return Response(
            render_opinion_pdf(versions, cosignatures),
            media_type="application/pdf",
            headers={
                "content-disposition": f'attachment; filename="opinion-{consult_id}.pdf"',
                **_NO_STORE,
            },
        )

    @get(
        "/{consult_id:str}/fhir",
        sync_to_thread=True,
        summary="The consult as a FHIR R4 Bundle",
        media_type="application/fhir+json",
        responses=documented(200, None, None, *_AUTH, _NO_CONSULT),
    )
    def fhir(
        self,
        consult_id: PathId,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> Response[bytes]:
        """ServiceRequest, Task, Appointment, Encounter (class VR) and, once signed,
        DiagnosticReport and Provenance with the signature, in a ``collection``."""
        view, versions, cosignatures = consult_service.export(principal.person, consult_id, "fhir")
        return Response(
            json.dumps(
                fhir_bundle(view.record, versions, cosignatures), ensure_ascii=False
            ).encode(),
            media_type="application/fhir+json",
            headers=_NO_STORE,
        )

    @post(
        "/{consult_id:str}/attachments",
        status_code=201,
        request_max_body_size=_MAX_UPLOAD_BYTES,
        summary="Attach a file (the body is the file)",
        responses=documented(
            201,
            AttachmentAnswer,
            None,
            *_AUTH,
            _NO_CONSULT,
            (413, "attachment_too_large", "attachment: is over 10485760 bytes for image/png"),
            (
                415,
                "unsupported_attachment",
                "attachment: claims 'application/pdf' but its content is image/png",
            ),
        ),
    )
    async def attach(
        self,
        request: Request[Any, Any, Any],
        consult_id: PathId,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        name: Annotated[str, Parameter(max_length=200)] = "attachment",
    ) -> AttachmentAnswer:
        """The request body is the file, its ``Content-Type`` the type it claims
        (PDF, PNG, JPEG, DICOM, a WFDB header); the content must be that type."""
        claimed = request.headers.get("content-type", "")
        data = await request.body()
        found = await anyio.to_thread.run_sync(
            functools.partial(
                consult_service.add_attachment, principal.person, consult_id, claimed, name, data
            )
        )
        return _attachment(found)

    @get(
        "/{consult_id:str}/attachments",
        sync_to_thread=True,
        summary="The consult's attachments",
        responses=documented(200, None, None, *_AUTH, _NO_CONSULT),
    )
    def attachments(
        self,
        consult_id: PathId,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> list[AttachmentAnswer]:
        """Oldest first."""
        return [_attachment(a) for a in consult_service.attachments(principal.person, consult_id)]

    @post(
        "/{consult_id:str}/streams",
        status_code=201,
        sync_to_thread=True,
        summary="Attach an ECG stream the clinic's cart sent",
        responses=documented(
            201,
            StreamAnswer,
            None,
            *_AUTH,
            _NO_CONSULT,
            (404, "not_found", "no stream '0b8f5a4e'"),
            (403, "forbidden", "only the consult's parties attach ECGs"),
            (409, "conflict", "stream '0b8f5a4e' exists already"),
        ),
    )
    def attach_stream(
        self,
        consult_id: PathId,
        data: Annotated[StreamAttach, Body()],
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> StreamAnswer:
        """A stream of the consult's clinic (its cart), stored by the ECG service."""
        return _stream(consult_service.attach_stream(principal.person, consult_id, data.stream))

    @get(
        "/{consult_id:str}/streams",
        sync_to_thread=True,
        summary="The consult's ECG streams",
        responses=documented(200, None, None, *_AUTH, _NO_CONSULT),
    )
    def streams(
        self,
        consult_id: PathId,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> list[StreamAnswer]:
        """Declared by the cart for this consult, or attached; oldest first."""
        return [_stream(x) for x in consult_service.streams(principal.person, consult_id)]

    @get(
        "/{consult_id:str}/attachments/{attachment_id:str}",
        sync_to_thread=True,
        media_type="application/octet-stream",  # documented so; sent as its own type
        summary="Download an attachment",
        responses=documented(200, None, None, *_AUTH, _NO_CONSULT),
    )
    def download(
        self,
        consult_id: PathId,
        attachment_id: PathId,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> Response[bytes]:
        """The file as uploaded, for those who see the consult (the read is audited)."""
        found, data = consult_service.attachment(principal.person, consult_id, attachment_id)
        return Response(
            data,
            media_type=found.media_type,
            headers={
                "content-disposition": f'attachment; filename="{found.id}"',
                "x-content-type-options": "nosniff",
                **_NO_STORE,
            },
        )


def _default_queue(principal: Principal) -> Queue:
    roles = principal.person.roles
    if Role.COORDINATOR in roles:
        return Queue.UNTRIAGED
    if Role.EXPERT in roles:
        return Queue.ASSIGNED
    return Queue.CLINIC


class ReferralController(Controller):
    """Two-way referral: published slots, referrals up and back down."""

    path = "/"
    tags = ["referrals"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @post(
        "/referral-slots",
        status_code=201,
        sync_to_thread=True,
        summary="Publish an appointment slot",
        responses=documented(
            201,
            SlotAnswer,
            None,
            *_AUTH,
            (403, "forbidden", "slots are published by a department's doctors or coordinators"),
        ),
    )
    def publish(
        self,
        data: Annotated[SlotCreate, Body()],
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> SlotAnswer:
        """A slot of the caller's institution's ``department``."""
        slot = consult_service.publish_slot(principal.person, data.department, data.start, data.end)
        return _slot(slot, False)

    @get(
        "/referral-slots",
        sync_to_thread=True,
        summary="An institution's slots from now on",
        responses=documented(200, None, None, *_AUTH),
    )
    def slots(
        self,
        institution: Annotated[str, Parameter(max_length=64)],
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        department: Annotated[str | None, Parameter(max_length=64)] = None,
    ) -> list[SlotAnswer]:
        """By start, each with ``taken``."""
        found = consult_service.slots(principal.person, institution, department)
        return [_slot(s, taken) for s, taken in found]

    @post(
        "/referrals",
        status_code=201,
        sync_to_thread=True,
        summary="Refer a patient to a slot",
        responses=documented(
            201,
            ReferralAnswer,
            None,
            *_AUTH,
            (404, "not_found", "no slot 'x'"),
            (409, "slot_taken", "slot 'x' exists already"),
        ),
    )
    def refer(
        self,
        data: Annotated[ReferralCreate, Body()],
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> ReferralAnswer:
        """Of two referrals racing for one slot exactly one wins; the other 409."""
        made = consult_service.refer(principal.person, data.slot, data.reason, data.consult)
        return _referral(made)

    @get(
        "/referrals",
        sync_to_thread=True,
        summary="Referrals to or from the caller's institution",
        responses=documented(200, ReferralPage, None, *_AUTH),
    )
    def referrals(
        self,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        direction: Annotated[str, Parameter(pattern="^(incoming|outgoing)$")] = "incoming",
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        offset: Annotated[int, Parameter(ge=0)] = 0,
    ) -> ReferralPage:
        """``incoming`` (the receiving department's worklist) or ``outgoing``, newest first."""
        page = consult_service.referrals(
            principal.person,
            incoming=direction == "incoming",
            page=PageRequest(limit=limit, offset=offset),
        )
        return ReferralPage([_referral(r) for r in page.items], page.total, limit, offset)

    @get(
        "/referrals/{referral_id:str}",
        sync_to_thread=True,
        summary="One referral",
        responses=documented(
            200, ReferralAnswer, None, *_AUTH, (404, "not_found", "no referral 'x'")
        ),
    )
    def get_referral(
        self,
        referral_id: PathId,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> ReferralAnswer:
        """For the people of either institution."""
        return _referral(consult_service.get_referral(principal.person, referral_id))

    @post(
        "/referrals/{referral_id:str}/{event:str}",
        status_code=200,
        sync_to_thread=True,
        summary="Take a step of a referral",
        responses=documented(
            200,
            ReferralAnswer,
            None,
            *_AUTH,
            (404, "not_found", "no referral 'x'"),
            (409, "transition_not_allowed", "receiver cannot arrive a referral in state requested"),
        ),
    )
    def referral_step(
        self,
        referral_id: PathId,
        event: Annotated[str, Parameter(max_length=32)],
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        data: Annotated[ReferralStepBody | None, Body()] = None,
    ) -> ReferralAnswer:
        """``accept``, ``decline`` ``{"reason"}``, ``arrive``, ``refer_back``
        ``{"summary"}``, ``cancel`` ``{"reason"}``."""
        try:
            chosen = ReferralEvent(event)
        except ValueError:
            raise ApiError("unknown_event", f"no event {event!r}", status=404) from None
        given = data or ReferralStepBody()
        text = given.summary if chosen is ReferralEvent.REFER_BACK else given.reason
        return _referral(consult_service.referral_step(principal.person, referral_id, chosen, text))


class StatsGroupOut(msgspec.Struct):
    """One group's counts and turnaround (seconds from submission)."""

    key: Annotated[str, Meta(examples=["village-1"])]
    total: int
    accepted: int
    signed: int
    declined: int
    cancelled: int
    expired: int
    overdue: int
    accept_median_s: float | None
    accept_p90_s: float | None
    sign_median_s: float | None
    sign_p90_s: float | None
    accepted_rate: float
    declined_rate: float
    cancelled_rate: float
    expired_rate: float


class ReferralStatsOut(msgspec.Struct):
    institution: str
    sent: int
    received: int
    referred_back: int


class StatsAnswer(msgspec.Struct):
    """Supervision statistics of the consults submitted in ``[since, until)``."""

    since: dt.datetime
    until: dt.datetime
    by: StatsGroup
    groups: list[StatsGroupOut]
    referrals: list[ReferralStatsOut]


_CSV_COLUMNS: Final = (
    "key",
    "total",
    "accepted",
    "signed",
    "declined",
    "cancelled",
    "expired",
    "overdue",
    "accept_median_s",
    "accept_p90_s",
    "sign_median_s",
    "sign_p90_s",
    "accepted_rate",
    "declined_rate",
    "cancelled_rate",
    "expired_rate",
)
_MAX_PERIOD: Final = dt.timedelta(days=30)


def _group(row: StatsRow) -> StatsGroupOut:
    def rate(count: int) -> float:
        return round(count / row.total, 4) if row.total else 0.0

    return StatsGroupOut(
        **dataclasses.asdict(row),
        accepted_rate=rate(row.accepted),
        declined_rate=rate(row.declined),
        cancelled_rate=rate(row.cancelled),
        expired_rate=rate(row.expired),
    )


def _stats(
    service: ConsultService,
    principal: Principal,
    since: dt.datetime | None,
    until: dt.datetime | None,
    by: StatsGroup,
) -> StatsAnswer:
    end = until or service.now()
    start = since or end - _MAX_PERIOD
    groups, referrals = service.statistics(principal.person, since=start, until=end, by=by)
    return StatsAnswer(
        since=start,
        until=end,
        by=by,
        groups=[_group(g) for g in groups],
        referrals=[ReferralStatsOut(**dataclasses.asdict(r)) for r in referrals],
    )


_StatsSince = Annotated[
    dt.datetime | None,
    QueryParameter(description="from (inclusive, RFC 3339); default 30 days before until"),
]
_StatsUntil = Annotated[
    dt.datetime | None, QueryParameter(description="to (exclusive, RFC 3339); default now")
]


class StatsController(Controller):
    """Supervision statistics for the health commission and the alliance."""

    path = "/stats/consults"
    tags = ["statistics"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @get(
        "/",
        sync_to_thread=True,
        summary="Consult statistics (computed in SQL)",
        responses=documented(
            200,
            StatsAnswer,
            None,
            *_AUTH,
            (400, "invalid_input", "until: a period is at most 366 days"),
            (403, "forbidden", "statistics are for auditors, admins and coordinators"),
        ),
    )
    def stats(
        self,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        since: _StatsSince = None,
        until: _StatsUntil = None,
        by: FromQuery[StatsGroup] = StatsGroup.CLINIC,
    ) -> StatsAnswer:
        """Counts by outcome, rates, and the median and 90th percentile of the time from
        submission to acceptance and to signature, per ``by`` (clinic, centre, level,
        specialty, month, day); referrals sent, received and referred back per
        institution. Over the institutions the caller oversees."""
        return _stats(consult_service, principal, since, until, by)

    @get(
        "/csv",
        sync_to_thread=True,
        summary="Consult statistics as CSV",
        media_type="text/csv",
        responses=documented(200, None, None, *_AUTH),
    )
    def stats_csv(
        self,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        since: _StatsSince = None,
        until: _StatsUntil = None,
        by: FromQuery[StatsGroup] = StatsGroup.CLINIC,
    ) -> Response[bytes]:
        """The groups of ``GET /stats/consults`` as CSV (UTF-8 with a BOM, so that
        spreadsheet programs read the Chinese right), one row per group."""
        answer = _stats(consult_service, principal, since, until, by)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(_CSV_COLUMNS)
        for group in answer.groups:
            values = msgspec.structs.asdict(group)
            writer.writerow(["" if values[c] is None else values[c] for c in _CSV_COLUMNS])
        name = f"consults-{answer.by.value}-{answer.since:%Y%m%d}-{answer.until:%Y%m%d}.csv"
        return Response(
            ("\ufeff" + out.getvalue()).encode(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}"', **_NO_STORE},
        )


# Outgoing webhooks: the sender and the admin's endpoints


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A receiver's redirect is an answer (3xx, not delivered), never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post_json(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
    """POST ``body`` to ``url``; the HTTP status. Blocking (a worker thread).

    Raises
    ------
    OSError
        The connection failed or timed out (``urllib.error.URLError`` is one).
    """
    opener = urllib.request.build_opener(_NoRedirect())
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with opener.open(request, timeout=timeout_s) as answer:
            status: int = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status


class WebhookSender:
    """Delivers the queued webhooks that are due (the server's sweep, in a thread).

    Each attempt is signed anew (``X-Teleconsult-Signature`` over its timestamp and the
    body, :mod:`consults.webhooks`), logged with its status or our reason, and retried
    with the backoff of the :class:`~consults.webhooks.RetryPolicy` until delivered or
    out of attempts.
    """

    def __init__(
        self,
        repository: WebhookRepository,
        *,
        policy: RetryPolicy | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        post: Callable[[str, bytes, Mapping[str, str], float], int] = post_json,
    ) -> None:
        self._repo = repository
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._post = post

    def deliver_due(self, limit: int = 50) -> int:
        """Attempt every due delivery once; answers how many were delivered."""
        delivered = 0
        for delivery, url, secret in self._repo.due(self._clock(), limit):
            now = self._clock()
            headers = webhook_headers(
                secret=secret.encode(),
                event=delivery.event,
                delivery_id=delivery.id,
                timestamp_s=int(now.timestamp()),
                body=delivery.body,
            )
            status: int | None
            try:
                status = self._post(url, delivery.body, headers, self.policy.timeout_s)
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except (OSError, ValueError) as exc:
                status, error = None, f"not delivered: {type(exc).__name__}"
            attempt = Attempt(
                delivery_id=delivery.id,
                number=delivery.attempts + 1,
                at=now,
                status=status,
                error=error,
            )
            earlier = [
                Attempt(delivery_id=delivery.id, number=n, at=now, status=None)
                for n in range(1, delivery.attempts + 1)
            ]
            again = next_attempt_at([*earlier, attempt], self.policy)
            try:
                self._repo.record_attempt(delivery, now, status, error, again)
            except Conflict:  # another node's sender made this attempt
                continue
            delivered += attempt.succeeded
        return delivered


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /webhooks``: where to deliver and which kinds (empty: all)."""

    url: Annotated[str, Meta(min_length=1, max_length=2000, examples=["https://his.example/hook"])]
    events: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=32)] = (
        msgspec.field(default_factory=list)
    )


class WebhookAnswer(msgspec.Struct):
    """A webhook endpoint (its secret is never shown again)."""

    id: Annotated[str, Meta(examples=["3f2b9c1e7d4a4f0e9a1b2c3d4e5f6a7b"])]
    institution: str
    url: str
    events: list[str]
    created_by: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class WebhookCreated(msgspec.Struct):
    """The new endpoint and its shared secret (hex), shown this once."""

    endpoint: WebhookAnswer
    secret: str


class DeliveryAnswer(msgspec.Struct):
    """One row of the delivery log."""

    id: Annotated[str, Meta(examples=["9c1e7d4a4f0e9a1b2c3d4e5f6a7b3f2b"])]
    event: str
    created_at: dt.datetime
    attempts: int
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    last_status: int | None
    last_error: str | None


def _webhook(endpoint: WebhookEndpoint) -> WebhookAnswer:
    return WebhookAnswer(
        id=endpoint.id,
        institution=endpoint.institution,
        url=endpoint.url,
        events=sorted(endpoint.events),
        created_by=endpoint.created_by,
        created_at=endpoint.created_at,
        revoked_at=endpoint.revoked_at,
    )


def _delivery(found: WebhookDelivery) -> DeliveryAnswer:
    return DeliveryAnswer(
        id=found.id,
        event=found.event,
        created_at=found.created_at,
        attempts=found.attempts,
        next_attempt_at=found.next_attempt_at,
        delivered_at=found.delivered_at,
        last_status=found.last_status,
        last_error=found.last_error,
    )


class WebhookController(Controller):
    """An institution admin's webhook endpoints and their delivery log."""

    path = "/webhooks"
    tags = ["webhooks"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        summary="Register a webhook endpoint",
        responses=documented(
            201,
            WebhookCreated,
            None,
            *_AUTH,
            (400, "invalid_input", "url: an http or https URL of at most 2000 characters"),
            (403, "forbidden", "webhooks are registered by an admin of an institution"),
        ),
    )
    def register(
        self,
        data: Annotated[WebhookCreate, Body()],
        principal: NamedDependency[Principal],
        webhooks: NamedDependency[Webhooks],
    ) -> Response[WebhookCreated]:
        """Deliveries are HTTP POSTs of ``{"event", "consult", "at", "delivery"}`` signed
        with ``X-Teleconsult-Signature: v1=HMAC-SHA256(secret, timestamp.body)``."""
        endpoint, secret = webhooks.register(principal.person, data.url, frozenset(data.events))
        return Response(
            WebhookCreated(endpoint=_webhook(endpoint), secret=secret),
            status_code=201,
            headers=_NO_STORE,
        )

    @get(
        "/",
        sync_to_thread=True,
        summary="The institution's webhook endpoints",
        responses=documented(200, None, None, *_AUTH),
    )
    def listing(
        self, principal: NamedDependency[Principal], webhooks: NamedDependency[Webhooks]
    ) -> list[WebhookAnswer]:
        """Oldest first, revoked ones too."""
        return [_webhook(e) for e in webhooks.endpoints(principal.person)]

    @delete(
        "/{endpoint_id:str}",
        status_code=204,
        sync_to_thread=True,
        summary="Revoke a webhook endpoint",
        responses=documented(204, None, None, *_AUTH, (404, "not_found", "no webhook 'x'")),
    )
    def revoke(
        self,
        endpoint_id: PathId,
        principal: NamedDependency[Principal],
        webhooks: NamedDependency[Webhooks],
    ) -> None:
        """Nothing more is delivered to it; pending deliveries are given up."""
        webhooks.revoke(principal.person, endpoint_id)

    @get(
        "/{endpoint_id:str}/deliveries",
        sync_to_thread=True,
        summary="The delivery log of an endpoint",
        responses=documented(200, None, None, *_AUTH, (404, "not_found", "no webhook 'x'")),
    )
    def deliveries(
        self,
        endpoint_id: PathId,
        principal: NamedDependency[Principal],
        webhooks: NamedDependency[Webhooks],
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    ) -> list[DeliveryAnswer]:
        """Newest first: attempts, the last status or reason, the next attempt."""
        return [_delivery(d) for d in webhooks.deliveries(principal.person, endpoint_id, limit)]


@dataclass(frozen=True)
class ConsultApi:
    """What the server wires for consults, in the shape of :class:`api.auth.AccountApi`:
    add ``route_handlers`` and ``dependencies`` to the account API's (its ``principal``
    dependency and CSRF middleware serve these routes too)."""

    route_handlers: Sequence[ControllerRouterHandler]
    dependencies: dict[str, Provide]
    middleware: Sequence[Middleware]


def consult_api(service: ConsultService, webhooks: Webhooks | None = None) -> ConsultApi:
    """The consult, referral and statistics controllers and the service's dependency;
    with ``webhooks``, the webhook endpoints' controller too."""
    handlers: list[ControllerRouterHandler] = [
        ConsultController,
        ReferralController,
        StatsController,
    ]
    dependencies = {
        "consult_service": Provide(lambda: service, use_cache=True, sync_to_thread=False)
    }
    if webhooks is not None:
        handlers.append(WebhookController)
        dependencies["webhooks"] = Provide(lambda: webhooks, use_cache=True, sync_to_thread=False)
    return ConsultApi(route_handlers=handlers, dependencies=dependencies, middleware=[])
