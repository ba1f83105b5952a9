"""``/api/v1/consults``, ``/api/v1/referrals`` and ``/api/v1/referral-slots``: the consult
service over REST; and :func:`consult_api`, what the lead wires (with the statistics of
:mod:`api.consult_stats` and the webhooks of :mod:`api.webhooks`).

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
- The signed opinion's PDF is :mod:`api.consult_pdf`, the FHIR R4 export
  :mod:`api.consult_fhir`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Protocol

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import Body, Parameter, QueryParameter
from litestar.types import ControllerRouterHandler, Middleware
from msgspec import Meta

from api.consult_fhir import fhir_bundle
from api.consult_pdf import render_opinion_pdf
from api.consult_stats import StatsController
from api.errors import ApiError
from api.schemas import AUTH_ERRORS, NO_STORE, PathId, body, documented
from api.session import consults_error
from api.webhooks import WebhookController
from consults.accounts import Principal
from consults.consult_repositories import (
    Attachment,
    ConsultRecord,
    ConsultStream,
    Queue,
)
from consults.directory import Role
from consults.errors import ConsultsError, Forbidden, NotFound
from consults.lifecycle import ConsultEvent, ConsultState, Mode, Priority
from consults.opinions import OpinionText, SignedVersion
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
from sessions.store import ChatLine

__all__ = ["ConsultApi", "ConsultController", "ReferralController", "consult_api"]

# Schemas

Short = Annotated[str, Meta(min_length=1, max_length=64)]
Username = Annotated[str, Meta(min_length=1, max_length=64, examples=["wang.expert"])]
Reason = Annotated[str, Meta(min_length=1, max_length=500, examples=["本院无相关专科"])]
LongText = Annotated[str, Meta(max_length=20_000)]
Moment = Annotated[dt.datetime, Meta(tz=True, examples=["2026-12-02T08:30:00Z"])]
TotpCode = Annotated[str, Meta(min_length=1, max_length=10, examples=["123456"])]


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


# Controllers

_NO_CONSULT = (404, "not_found", "no consult '3f2b9c1e'")
_TABLE = (
    (409, "transition_not_allowed", "lead_expert cannot accept a consult in state reported"),
    (403, "forbidden", "requester may not assign a consult in state submitted"),
    (409, "consult_changed", "the consult changed meanwhile: reload it and try again"),
)
_MAX_UPLOAD_BYTES: Final = max(DEFAULT_LIMITS_BYTES.values()) + 1

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
            *AUTH_ERRORS,
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
            *AUTH_ERRORS,
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
        responses=documented(200, ConsultAnswer, None, *AUTH_ERRORS, _NO_CONSULT),
    )
    def get_one(
        self,
        consult_id: PathId,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
    ) -> Response[ConsultAnswer]:
        """The consult with ``state`` and the events the caller may take (``allowed``)."""
        view = consult_service.get(principal.person, consult_id)
        return Response(_answer(view, consult_service.now()), headers=NO_STORE)

    @post(
        "/{consult_id:str}/{event:str}",
        status_code=200,
        sync_to_thread=True,
        summary="Take a step of the lifecycle",
        responses=documented(
            200,
            ConsultAnswer,
            None,
            *AUTH_ERRORS,
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
            *AUTH_ERRORS,
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
        responses=documented(200, OpinionAnswer, None, *AUTH_ERRORS, _NO_CONSULT),
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
        return Response(answer, headers=NO_STORE)

    @post(
        "/{consult_id:str}/opinion/addenda",
        status_code=201,
        sync_to_thread=True,
        summary="Correct a signed opinion (a new signed version)",
        responses=documented(
            201,
            VersionAnswer,
            None,
            *AUTH_ERRORS,
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
            *AUTH_ERRORS,
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
            200,
            None,
            None,
            *AUTH_ERRORS,
            _NO_CONSULT,
            (404, "not_found", "no signed opinion '3f2b'"),
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
                **NO_STORE,
            },
        )

    @get(
        "/{consult_id:str}/fhir",
        sync_to_thread=True,
        summary="The consult as a FHIR R4 Bundle",
        media_type="application/fhir+json",
        responses=documented(200, None, None, *AUTH_ERRORS, _NO_CONSULT),
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
            headers=NO_STORE,
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
            *AUTH_ERRORS,
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
        responses=documented(200, None, None, *AUTH_ERRORS, _NO_CONSULT),
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
            *AUTH_ERRORS,
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
        responses=documented(200, None, None, *AUTH_ERRORS, _NO_CONSULT),
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
        responses=documented(200, None, None, *AUTH_ERRORS, _NO_CONSULT),
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
                **NO_STORE,
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
            *AUTH_ERRORS,
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
        responses=documented(200, None, None, *AUTH_ERRORS),
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
            *AUTH_ERRORS,
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
        responses=documented(200, ReferralPage, None, *AUTH_ERRORS),
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
            200, ReferralAnswer, None, *AUTH_ERRORS, (404, "not_found", "no referral 'x'")
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
            *AUTH_ERRORS,
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


@dataclass(frozen=True)
class ConsultApi:
    """What the server wires for consults, in the shape of :class:`api.auth.AccountApi`:
    add ``route_handlers`` and ``dependencies`` to the account API's (its ``principal``
    dependency and CSRF middleware serve these routes too)."""

    route_handlers: Sequence[ControllerRouterHandler]
    dependencies: dict[str, Provide]
    middleware: Sequence[Middleware]


class ChatSource(Protocol):
    """Where the rooms' chat is kept (the server's ``sessions.store.Store``)."""

    def chat_history(self, room: str, limit: int = 1000) -> Sequence[ChatLine]: ...


class ChatLineOut(msgspec.Struct):
    """A line said in the consult's room."""

    time: Annotated[dt.datetime, Meta(description="as the server stamped it, UTC")]
    identity: str
    name: str
    text: str


class ChatAnswer(msgspec.Struct):
    """The consult room's chat, oldest first (the last ``limit`` lines)."""

    room: str
    lines: list[ChatLineOut]


_EXAMPLE_CHAT = ChatAnswer(
    room="consult-3f2b9c1e",
    lines=[
        ChatLineOut(
            time=dt.datetime(2026, 12, 3, 8, 0, 5, tzinfo=dt.UTC),
            identity="wang.expert",
            name="王主任",
            text="请把 V1-V4 导联再放大看一下",
        )
    ],
)


class ConsultChatController(Controller):
    """The chat of a consult's room, part of the consult's record."""

    path = "/consults"
    tags = ["consults"]  # noqa: RUF012 - Litestar's own class attribute
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @get(
        "/{consult_id:str}/chat",
        sync_to_thread=True,
        summary="The chat said in the consult's room",
        responses=documented(200, ChatAnswer, _EXAMPLE_CHAT, *AUTH_ERRORS, _NO_CONSULT),
    )
    def chat(
        self,
        consult_id: PathId,
        principal: NamedDependency[Principal],
        consult_service: NamedDependency[ConsultService],
        chat_source: NamedDependency[Any],  # a ChatSource (a Protocol: not a signature type)
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 500,
    ) -> Response[ChatAnswer]:
        """What was said in the consult's room (the waiting room says nothing), for
        whoever may see the consult; the read is audited (``consult.chat_viewed``)."""
        room = consult_service.chat_room(principal.person, consult_id)
        lines = [
            ChatLineOut(
                time=dt.datetime.fromisoformat(line.time),
                identity=line.identity,
                name=line.name,
                text=line.text,
            )
            for line in typing.cast(ChatSource, chat_source).chat_history(room, limit)
        ]
        return Response(ChatAnswer(room=room, lines=lines), headers=NO_STORE)


def consult_api(
    service: ConsultService, webhooks: Webhooks | None = None, chat: ChatSource | None = None
) -> ConsultApi:
    """The consult, referral and statistics controllers and the service's dependency;
    with ``webhooks``, the webhook endpoints' controller too; with ``chat``, the consult
    room's chat history."""
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
    if chat is not None:
        handlers.append(ConsultChatController)
        dependencies["chat_source"] = Provide(lambda: chat, use_cache=True, sync_to_thread=False)
    return ConsultApi(route_handlers=handlers, dependencies=dependencies, middleware=[])
