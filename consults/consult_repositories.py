"""What the consult service needs from storage: the records it keeps and its Protocols
(:class:`ConsultRepository`, :class:`ConsultStatistics`, :class:`WebhookRepository`).

Design notes
------------
- A consult is kept as two parts: :class:`consults.lifecycle.Consult` (the state the
  transition table reads) and :class:`StoredRequest` (what the clinic asked, the
  national id only sealed). The service computes the acceptance deadline and expiry
  at submission (:class:`~consults.lifecycle.DeadlinePolicy`) and hands them down, so
  the store orders worklists by a plain indexed column: overdue first is "earliest
  due first".
- Every write that changes a consult takes the :class:`~consults.repositories.AuditEvent`
  that records it and stores both in ONE transaction: a step is audited or not taken.
- A transition is stored only if the consult is still in the state the service read
  (compare-and-set on ``state`` and ``revision``): of two coordinators assigning at
  once, one wins and the other gets :class:`StaleConsult` (409), nothing changed.
- A referral slot is held by at most one live referral: the store decides (a unique
  key), so two requests racing for a slot get one success and one
  :class:`~consults.referrals.SlotTaken`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar, Protocol

from consults.errors import Conflict, ConsultsError
from consults.lifecycle import Consult, ConsultState
from consults.opinions import OpinionText, SignedVersion
from consults.referrals import Referral, Slot
from consults.repositories import AuditEvent, Page, PageRequest
from consults.signatures import KeyPair

__all__ = [
    "Attachment",
    "ConsultFilter",
    "ConsultRecord",
    "ConsultRepository",
    "ConsultStatistics",
    "ConsultStream",
    "Queue",
    "ReferralStatsRow",
    "StaleConsult",
    "StatsGroup",
    "StatsQuery",
    "StatsRow",
    "StoredRequest",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookRepository",
]


class StaleConsult(Conflict):
    """The consult changed since it was read (another step was taken first)."""

    code: ClassVar[str] = "consult_changed"

    def __init__(self, consult: str) -> None:
        ConsultsError.__init__(self, "the consult changed meanwhile: reload it and try again")
        self.kind = "consult"
        self.key = consult


@dataclass(frozen=True, kw_only=True)
class StoredRequest:
    """The request's content as kept: the national id sealed (or None)."""

    patient_id: str  # opaque, what signatures, streams and the audit trail name
    patient_name: str
    patient_sex: str
    patient_birth_date: date
    record_number: str
    national_id_sealed: str | None
    reason: str
    purpose: str
    summary: str
    specialty: str
    title_wanted: str | None
    expert_wanted: str | None
    consent_kind: str
    consent_recorded_by: str
    consent_time: datetime
    consent_witness: str | None
    consent_form: str | None = None  # the attachment id of the scanned signed form
    proposed_times: tuple[datetime, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ConsultRecord:
    """One consult: its lifecycle, its request, its deadlines and its revision."""

    consult: Consult
    request: StoredRequest
    accept_due: datetime | None = None
    expires_at: datetime | None = None
    escalated_at: datetime | None = None  # when the overdue consult was escalated
    warn_at: datetime | None = None  # when to warn that the acceptance deadline nears
    remind_at: datetime | None = None  # when to remind both sides the consult starts soon
    revision: int = 0


class Queue(enum.Enum):
    """Which worklist to list."""

    MINE = "mine"  # the doctor's own requests, newest first
    CLINIC = "clinic"  # every request of the doctor's institution, newest first
    UNTRIAGED = "untriaged"  # a centre's requests waiting for an expert, earliest due first
    OVERDUE = "overdue"  # of those, past their acceptance deadline
    ASSIGNED = "assigned"  # an expert's consults, by deadline (due, else start)


@dataclass(frozen=True, kw_only=True)
class ConsultFilter:
    """A worklist: the queue, whose it is, and optional state and text filters.

    ``who`` is a username for ``MINE`` and ``ASSIGNED``, an institution code otherwise;
    ``now`` decides what is overdue; ``search`` matches the patient's name or record
    number or the specialty, as literal text.
    """

    queue: Queue
    who: str
    now: datetime
    states: frozenset[ConsultState] | None = None
    search: str | None = None


@dataclass(frozen=True, kw_only=True)
class Attachment:
    """An attachment's metadata; its bytes are in the data dir under ``id``."""

    id: str
    consult: str
    media_type: str
    size_bytes: int
    sha256: str
    name: str
    uploaded_by: str
    uploaded_at: datetime


class StatsGroup(enum.Enum):
    """What supervision statistics are grouped by."""

    CLINIC = "clinic"  # the requesting institution
    CENTRE = "centre"  # the consult centre
    LEVEL = "level"  # the requesting institution's level (village, township, …)
    SPECIALTY = "specialty"
    MONTH = "month"  # of submission, UTC, ``YYYY-MM``
    DAY = "day"  # of submission, UTC, ``YYYY-MM-DD``


@dataclass(frozen=True, kw_only=True)
class StatsQuery:
    """Which consults to count: submitted in ``[since, until)``, whose clinic or centre
    is within ``scope`` (``None``: all), grouped by ``by``; ``now`` decides overdue."""

    since: datetime
    until: datetime
    by: StatsGroup
    now: datetime
    scope: frozenset[str] | None = None


@dataclass(frozen=True, kw_only=True)
class StatsRow:
    """One group's counts and turnaround (seconds from submission; nearest-rank
    median and 90th percentile, None when no consult of the group got that far)."""

    key: str
    total: int
    accepted: int  # ever accepted
    signed: int  # reported or closed
    declined: int  # in state declined now (waiting for another expert)
    cancelled: int
    expired: int
    overdue: int  # awaiting acceptance past the deadline now
    accept_median_s: float | None
    accept_p90_s: float | None
    sign_median_s: float | None
    sign_p90_s: float | None


@dataclass(frozen=True, kw_only=True)
class ReferralStatsRow:
    """Referrals made in the period, per institution: sent up, received, sent back."""

    institution: str
    sent: int
    received: int
    referred_back: int  # 回转: back to the clinic with a discharge summary


class ConsultStatistics(Protocol):
    """Supervision statistics computed by the store (in SQL). Blocking."""

    def consult_stats(self, query: StatsQuery) -> Sequence[StatsRow]:
        """One row per group, ordered by key."""

    def referral_stats(self, query: StatsQuery) -> Sequence[ReferralStatsRow]:
        """One row per institution that sent or received a referral, by code."""


@dataclass(frozen=True, kw_only=True)
class ConsultStream:
    """An ECG stream of a consult: one its cart declared it for, or one attached later."""

    id: str
    institution: str | None  # the cart's institution
    device_id: str | None
    started_at: datetime
    ended_at: datetime | None
    state: str  # live, ended, interrupted
    samples: int
    attached_by: str | None = None  # the username who attached it; None: declared


@dataclass(frozen=True, kw_only=True)
class WebhookEndpoint:
    """A hospital system's receiver of our events (its SMS gateway, its HIS).

    ``events`` are the notice kinds it wants (``consult.assign``, …), empty for all;
    ``institution`` whose consults (as clinic or centre) it hears of.
    """

    id: str
    institution: str
    url: str
    events: frozenset[str]
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class WebhookDelivery:
    """One event for one endpoint, and where its delivery stands (the delivery log)."""

    id: str
    endpoint: str
    event: str
    body: bytes
    created_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None  # None: delivered or given up
    delivered_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None


class WebhookRepository(Protocol):
    """Webhook endpoints and the delivery log. Blocking, one transaction per method."""

    def add_endpoint(self, endpoint: WebhookEndpoint, secret: str, event: AuditEvent) -> None:
        """Store an endpoint with its shared secret (sealed at rest), audited."""

    def endpoints(self, institution: str) -> Sequence[WebhookEndpoint]:
        """An institution's endpoints, revoked ones too, oldest first."""

    def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        """An endpoint, or None."""

    def revoke_endpoint(self, endpoint_id: str, at: datetime, event: AuditEvent) -> None:
        """Stop delivering to an endpoint (pending deliveries are given up), audited."""

    def enqueue(self, deliveries: Sequence[WebhookDelivery]) -> None:
        """Store new deliveries, due at their ``next_attempt_at``."""

    def due(self, now: datetime, limit: int) -> Sequence[tuple[WebhookDelivery, str, str]]:
        """Deliveries due now with their endpoint's URL and secret, earliest first."""

    def record_attempt(
        self,
        delivery: WebhookDelivery,
        at: datetime,
        status: int | None,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> None:
        """Log one attempt and when to try again (None: delivered, or given up)."""

    def deliveries(self, endpoint_id: str, limit: int) -> Sequence[WebhookDelivery]:
        """An endpoint's deliveries, newest first."""


class ConsultRepository(Protocol):
    """The consults on a store. Every method is one transaction; blocking (call from a
    worker thread). Database failures raise :class:`~consults.errors.RepositoryError`."""

    def create(self, record: ConsultRecord, event: AuditEvent) -> None:
        """Store a new consult and its audit row."""

    def get(self, consult_id: str) -> ConsultRecord | None:
        """The consult, or None."""

    def transition(self, before: ConsultRecord, after: ConsultRecord, event: AuditEvent) -> None:
        """Store ``after`` if the consult is still at ``before.revision``, with its row.

        Raises
        ------
        StaleConsult
            It changed meanwhile.
        """

    def list(self, where: ConsultFilter, page: PageRequest) -> Page[ConsultRecord]:
        """A worklist page."""

    def due_to_expire(self, now: datetime, limit: int) -> Sequence[ConsultRecord]:
        """Consults still awaiting acceptance whose expiry time has passed."""

    def due_to_escalate(self, now: datetime, limit: int) -> Sequence[ConsultRecord]:
        """Consults still awaiting acceptance, past their acceptance deadline and not yet
        escalated, earliest due first."""

    def due_to_warn(self, now: datetime, limit: int) -> Sequence[ConsultRecord]:
        """Consults awaiting acceptance whose ``warn_at`` has passed, earliest first."""

    def due_to_remind(self, now: datetime, limit: int) -> Sequence[ConsultRecord]:
        """Scheduled consults whose ``remind_at`` has passed, earliest first."""

    def save_draft(self, consult_id: str, text: OpinionText, event: AuditEvent) -> None:
        """Replace the opinion draft, with its audit row."""

    def draft(self, consult_id: str) -> OpinionText | None:
        """The opinion draft, or None."""

    def versions(self, consult_id: str) -> Sequence[SignedVersion]:
        """The signed versions, version 1 first."""

    def add_version(
        self,
        version: SignedVersion,
        event: AuditEvent,
        transition: tuple[ConsultRecord, ConsultRecord] | None = None,
    ) -> None:
        """Store a signed version (and the ``sign`` transition it completes) and its row.

        Raises
        ------
        consults.errors.Conflict
            That version number is stored already (two signatures raced).
        StaleConsult
            The transition's consult changed meanwhile.
        """

    def add_cosignature(self, cosignature: SignedVersion, event: AuditEvent) -> None:
        """Store a co-signature of a signed version, with its audit row.

        Raises
        ------
        consults.errors.Conflict
            This expert co-signed that version already.
        """

    def cosignatures(self, consult_id: str) -> Sequence[SignedVersion]:
        """The co-signatures, by version then signing time."""

    def stream(self, stream_id: str) -> ConsultStream | None:
        """A stored ECG stream (of any consult or none), or None."""

    def attach_stream(self, consult_id: str, stream: ConsultStream, event: AuditEvent) -> None:
        """Attach a stream (``attached_by`` set) to a consult, with its audit row.

        Raises
        ------
        consults.errors.Conflict
            It is attached already.
        """

    def streams_of(self, consult_id: str) -> Sequence[ConsultStream]:
        """The streams declared for or attached to the consult, oldest first."""

    def signer_key(self, person_id: str) -> KeyPair | None:
        """The person's signing key (the private part unsealed), or None."""

    def public_keys(self, person_id: str) -> Sequence[bytes]:
        """Every public key the person has signed with (for verification)."""

    def add_signer_key(self, person_id: str, keys: KeyPair, event: AuditEvent) -> None:
        """Keep a new signing key for the person (the private part sealed at rest)."""

    def add_attachment(self, attachment: Attachment, event: AuditEvent) -> None:
        """Store an attachment's metadata (its bytes are written first)."""

    def attachments(self, consult_id: str) -> Sequence[Attachment]:
        """The consult's attachments, oldest first."""

    def add_slot(self, slot: Slot, event: AuditEvent) -> None:
        """Publish an appointment slot, with its audit row."""

    def get_slot(self, slot_id: str) -> Slot | None:
        """A slot, or None."""

    def add_referral(self, referral: Referral, event: AuditEvent) -> None:
        """Store a new referral holding its slot.

        Raises
        ------
        consults.referrals.SlotTaken
            Another live referral holds the slot.
        """

    def get_referral(self, referral_id: str) -> Referral | None:
        """A referral, or None."""

    def update_referral(self, before: Referral, after: Referral, event: AuditEvent) -> None:
        """Store a referral's step (a slot is freed when it no longer holds it).

        Raises
        ------
        consults.errors.Conflict
            The referral changed meanwhile.
        """

    def list_referrals(
        self, institution: str, *, incoming: bool, page: PageRequest
    ) -> Page[Referral]:
        """The referrals to (``incoming``) or from an institution, newest first."""

    def list_slots(
        self, institution: str, department: str | None, since: datetime
    ) -> Sequence[tuple[Slot, bool]]:
        """An institution's slots starting after ``since``, by start, each with whether
        a live referral holds it."""

    def audit(self, event: AuditEvent) -> None:
        """Record an attempt that changed nothing (a refused step)."""
