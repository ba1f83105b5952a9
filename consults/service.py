"""The consult service's use cases: request, triage, each step of the lifecycle, the
opinion (draft, sign, addendum, co-signature), attachments and ECG streams, worklists,
the sweep's expiry, escalation and reminders, referral, supervision statistics and the
outgoing webhooks' outbox and endpoints.

Design notes
------------
- Synchronous and blocking (the store is behind :class:`ConsultRepository`): the API
  calls it from worker threads. The rules are the domain's: every step goes through
  :func:`consults.lifecycle.apply`; this layer loads, decides who the actor is to the
  consult (:func:`~consults.lifecycle.parties`), and hands the result and its audit row
  to the store, which writes both in one transaction.
- **Who sees a consult.** Its parties (requester, the clinic's doctors, the centre's
  coordinators, the assigned experts) and the doctors, experts and coordinators of the
  clinic and the centre (not their admins or auditors: no patient data by that role
  alone). An assigned expert must be of an institution that serves the clinic for
  consults. To anyone else it does not exist (:class:`~consults.errors.NotFound`,
  404); someone who sees it but may not take a step gets 403, a step the table does not
  have 409. Each read of a consult and each export is audited too.
- **Where a request goes.** To the consult centre that serves the clinic
  (:func:`consults.rights.providers_of`, kind ``consult``): among the providers, those
  with coordinators first (a request nobody can triage helps nobody), then the nearest
  by the tree (parent first), then by code.
- **Refused steps are audited** (``consult.<event>``, outcome ``denied``) with the
  consult and the patient, so the trail shows the attempt; nothing else changes.
- **Signing** needs the second factor (:class:`SecondFactor`, the accounts' TOTP check,
  a code used once) and the signer's Ed25519 key, made on first signature and kept by
  the store with the private part sealed. The document signed is
  :func:`consults.opinions.signed_document` with the page's context, so the PDF prints
  nothing unsigned. A correction is an addendum: a new version naming the digest of the
  last one, signed anew; signed versions never change. In a multidisciplinary consult
  the other experts co-sign the latest version (their remark beside it), each with the
  second factor and their own key.
- **Notices.** Each stored step, and each of the sweep's (escalation, expiry, a
  deadline near, a start near), yields a :class:`Notice` to the :class:`Notifier` the
  server wires: the live notifications, and :class:`WebhookOutbox`, which queues it for
  the webhook endpoints of the consult's clinic and centre.
- The patient is named in signatures, streams and the audit trail by an opaque id made
  at the request; the national id is kept sealed (:class:`~consults.requests.FieldCipher`)
  and shown masked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol
from urllib.parse import urlsplit

from consults.consult_repositories import (
    Attachment,
    ConsultFilter,
    ConsultRecord,
    ConsultRepository,
    ConsultStatistics,
    ConsultStream,
    Queue,
    ReferralStatsRow,
    StaleConsult,
    StatsGroup,
    StatsQuery,
    StatsRow,
    StoredRequest,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookRepository,
)
from consults.directory import (
    AdminScope,
    Institution,
    Person,
    Role,
    ServiceKind,
    ServiceRelation,
)
from consults.errors import Conflict, Forbidden, InvalidInput, NotFound, TotpRequired
from consults.lifecycle import (
    AWAITING_ACCEPTANCE,
    Actor,
    Consult,
    ConsultEvent,
    ConsultState,
    DeadlinePolicy,
    Party,
    acceptance_due,
    allowed_events,
    apply,
    expires_at,
    parties,
)
from consults.opinions import (
    OpinionText,
    SignedVersion,
    check_editable,
    cosignature_document,
    iso_utc,
    signed_document,
)
from consults.periods import check_period
from consults.referrals import (
    Referral,
    ReferralEvent,
    Slot,
    apply_referral,
    new_referral,
)
from consults.repositories import AuditEvent, Page, PageRequest, PeopleFilter
from consults.requests import (
    ConsultRequest,
    FieldCipher,
    check_attachment,
    mask_national_id,
)
from consults.rights import Tree, providers_of
from consults.settings import ConsultSettings
from consults.signatures import KeyPair, digest, sign
from consults.transitions import NotPermitted, TransitionNotAllowed

__all__ = [
    "WEBHOOK_EVENTS",
    "BlobStore",
    "ConsultService",
    "ConsultView",
    "Directory",
    "NoNotices",
    "Notice",
    "Notifier",
    "SecondFactor",
    "WebhookOutbox",
    "Webhooks",
]

logger = logging.getLogger(__name__)

NATIONAL_ID_FIELD: Final = "patient.national_id"
# The roles whose holders see the consults of their institution (clinic or centre).
_CONSULT_ROLES: Final = frozenset({Role.DOCTOR, Role.EXPERT, Role.COORDINATOR})
# States in which the lead expert writes the draft.
_DRAFTING: Final = frozenset(
    {ConsultState.ACCEPTED, ConsultState.SCHEDULED, ConsultState.IN_CONSULT, ConsultState.REPORTING}
)


class SecondFactor(Protocol):
    """The accounts' second-factor check (:meth:`consults.accounts.Accounts.confirm_totp`)."""

    def confirm_totp(self, person: Person, code: str | None) -> None:
        """Return when ``code`` is the person's current TOTP code, used for the first time;
        raise :class:`~consults.errors.TotpRequired` otherwise."""


class Directory(Protocol):
    """What the service reads of the directory (a ``DirectoryRepository``)."""

    def get_institution(self, code: str) -> Institution | None: ...

    def all_institutions(self) -> Sequence[Institution]: ...

    def all_relations(self) -> Sequence[ServiceRelation]: ...

    def person_by_username(self, username: str) -> Person | None: ...

    def list_people(self, where: PeopleFilter, page: PageRequest) -> Page[Person]: ...


class BlobStore(Protocol):
    """Where attachment bytes live (the data dir): written durably before the row."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...


@dataclass(frozen=True, kw_only=True)
class Notice:
    """Someone must hear of a step: the people named and/or a centre's coordinators.

    ``kind`` is ``consult.<event>`` of the step taken (``consult.submit``,
    ``consult.assign``, ``consult.sign``, …) or ``consult.escalate`` for an overdue
    consult; ``consult`` its id. No patient data: the recipient's page fetches what
    they may see.
    """

    kind: str
    consult: str
    at: datetime
    usernames: frozenset[str] = frozenset()
    coordinators_of: str | None = None  # every coordinator of this institution
    institutions: frozenset[str] = frozenset()  # the clinic and the centre (webhooks)


class Notifier(Protocol):
    """Where notices go (the live notifications, the webhooks).

    Called from the worker thread after the step is stored; an implementation hands
    the notice to the event loop and returns at once.
    """

    def notify(self, notice: Notice) -> None: ...


class NoNotices:
    """A notifier that keeps the notices in a list (commands, tests)."""

    def __init__(self) -> None:
        self.sent: list[Notice] = []

    def notify(self, notice: Notice) -> None:
        self.sent.append(notice)


def _notice(kind: str, consult: Consult, now: datetime) -> Notice:
    """Who hears of a step: the table's counterpart of each event."""
    return replace(
        _recipients(kind, consult, now), institutions=frozenset({consult.clinic, consult.centre})
    )


def _recipients(kind: str, consult: Consult, now: datetime) -> Notice:
    experts = frozenset(consult.experts)
    requester = frozenset({consult.requester})
    centre = consult.centre
    event = kind.removeprefix("consult.")
    if event in ("submit", "escalate"):
        return Notice(kind=kind, consult=consult.id, at=now, coordinators_of=centre)
    if event == "due_soon":
        return Notice(
            kind=kind, consult=consult.id, at=now, usernames=experts, coordinators_of=centre
        )
    if event == "assign":
        return Notice(kind=kind, consult=consult.id, at=now, usernames=experts)
    if event in ("accept", "decline", "expire"):
        return Notice(
            kind=kind, consult=consult.id, at=now, usernames=requester, coordinators_of=centre
        )
    if event == "cancel":
        return Notice(
            kind=kind, consult=consult.id, at=now, usernames=experts, coordinators_of=centre
        )
    if event == "close":
        return Notice(kind=kind, consult=consult.id, at=now, usernames=experts)
    # schedule, start, review, finish, sign: both sides of the consult.
    return Notice(kind=kind, consult=consult.id, at=now, usernames=experts | requester)


@dataclass(frozen=True, kw_only=True)
class ConsultView:
    """A consult as the caller may see it."""

    record: ConsultRecord
    national_id_masked: str | None
    allowed: tuple[ConsultEvent, ...]
    parties: frozenset[Party]


def consult_room(consult_id: str) -> str:
    """The room of a real-time consult (what its page joins, where its chat is said)."""
    return f"consult-{consult_id}"


def actor_of(person: Person) -> Actor:
    """The lifecycle's view of a person."""
    return Actor(
        username=person.username,
        roles=frozenset(r.value for r in person.roles),
        institution=person.institution or "",
    )


def _new_id() -> str:
    return uuid.uuid4().hex


class ConsultService:
    """The consult use cases over a store.

    Parameters
    ----------
    consults
        The store of consults, opinions, keys, attachments and referrals.
    statistics
        The supervision statistics the store computes.
    directory
        Institutions, relations and people.
    second_factor
        Checks the TOTP code that signing requires.
    cipher
        Seals the national id.
    blobs
        Attachment bytes.
    settings
        Acceptance deadlines and expiry per priority, the due-soon warning and the
        reminder before a scheduled consult, attachment limits (the ``[consults]``
        section of the configuration).
    clock
        The time, aware UTC.
    notifier
        Told of every step someone must hear of, after it is stored.
    """

    def __init__(
        self,
        *,
        consults: ConsultRepository,
        statistics: ConsultStatistics,
        directory: Directory,
        second_factor: SecondFactor,
        cipher: FieldCipher,
        blobs: BlobStore,
        settings: ConsultSettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = _new_id,
        notifier: Notifier | None = None,
    ) -> None:
        self._repo = consults
        self._stats = statistics
        self._directory = directory
        self._second_factor = second_factor
        self._cipher = cipher
        self._blobs = blobs
        settings = settings or ConsultSettings()
        self.policy: DeadlinePolicy = settings
        self._clock = clock
        self._new_id = new_id
        self.attachment_limits_bytes = dict(settings.attachment_limits_bytes)
        self._notifier: Notifier = notifier or NoNotices()
        self.warn_fraction = settings.warn_fraction
        self.remind_before_s = settings.remind_before_s

    def now(self) -> datetime:
        """The service's time (aware UTC): what decides overdue in the answers."""
        return self._clock()

    # Helpers
    def _event(
        self,
        record: ConsultRecord,
        action: str,
        actor: Person | None,
        now: datetime,
        outcome: str = "ok",
        **details: str,
    ) -> AuditEvent:
        return AuditEvent(
            at_s=now.timestamp(),
            action=action,
            actor=actor.id if actor is not None else "system",
            target=f"consult:{record.consult.id}",
            outcome=outcome,
            details=details,
            institution=record.consult.clinic,
            patient=record.request.patient_id,
            consult=record.consult.id,
        )

    def _visible(self, person: Person, consult_id: str) -> ConsultRecord:
        record = self._repo.get(consult_id)
        if record is None:
            raise NotFound("consult", consult_id)
        consult = record.consult
        if parties(consult, actor_of(person)):
            return record
        # The clinic's and the centre's clinicians see it; their admins and auditors do
        # not see patient data by their role alone.
        if person.roles & _CONSULT_ROLES and person.institution in (consult.clinic, consult.centre):
            return record
        raise NotFound("consult", consult_id)

    def _view(self, person: Person, record: ConsultRecord) -> ConsultView:
        actor = actor_of(person)
        masked = None
        if record.request.national_id_sealed is not None:
            try:
                plain = self._cipher.decrypt(NATIONAL_ID_FIELD, record.request.national_id_sealed)
            except ValueError:
                plain = None
            masked = None if plain is None else mask_national_id(plain)
        return ConsultView(
            record=record,
            national_id_masked=masked,
            allowed=tuple(allowed_events(record.consult, actor)),
            parties=parties(record.consult, actor),
        )

    def centre_for(self, clinic: str) -> str:
        """The consult centre a clinic's request goes to.

        Raises
        ------
        InvalidInput
            No institution serves the clinic for consults.
        """
        tree = Tree(self._directory.all_institutions())
        providers = providers_of(
            tree, self._directory.all_relations(), clinic, ServiceKind.CONSULT
        ) - {clinic}
        if not providers:
            raise InvalidInput("institution", "no consult centre serves this clinic")
        ancestors = tree.ancestors(clinic)

        def rank(code: str) -> tuple[int, int, str]:
            staffed = self._directory.list_people(
                PeopleFilter(institutions=frozenset({code}), role=Role.COORDINATOR),
                PageRequest(limit=1),
            ).items
            distance = ancestors.index(code) if code in ancestors else len(ancestors)
            return (0 if staffed else 1, distance, code)

        return min(providers, key=rank)

    # Requests
    def create(self, person: Person, request: ConsultRequest) -> ConsultView:
        """A doctor of a clinic requests a consult; it is submitted at once.

        Raises
        ------
        Forbidden
            The person is no doctor of an institution.
        InvalidInput
            No consult centre serves the clinic; a time of the request contradicts the
            service's clock (:meth:`ConsultRequest.check_times`).
        """
        if Role.DOCTOR not in person.roles or person.institution is None:
            raise Forbidden("only a clinic's doctor may request a consult")
        now = self._clock()
        request.check_times(now)
        centre = self.centre_for(person.institution)
        patient = request.patient
        draft = Consult(
            id=self._new_id(),
            state=ConsultState.DRAFT,
            priority=request.priority,
            mode=request.mode,
            requester=person.username,
            clinic=person.institution,
            centre=centre,
            created_at=now,
        )
        consult = apply(draft, ConsultEvent.SUBMIT, actor_of(person), now)
        stored = StoredRequest(
            patient_id=self._new_id(),
            patient_name=patient.name,
            patient_sex=patient.sex.value,
            patient_birth_date=patient.birth_date,
            record_number=patient.record_number,
            national_id_sealed=(
                None
                if patient.national_id is None
                else self._cipher.encrypt(NATIONAL_ID_FIELD, patient.national_id)
            ),
            reason=request.reason,
            purpose=request.purpose,
            summary=request.summary,
            specialty=request.specialty,
            title_wanted=request.title_wanted,
            expert_wanted=request.expert_wanted,
            consent_kind=request.consent.kind.value,
            consent_recorded_by=request.consent.recorded_by,
            consent_time=request.consent.time,
            consent_witness=request.consent.witness,
            consent_form=request.consent.form_attachment,
            proposed_times=request.proposed_times,
        )
        due = acceptance_due(consult, self.policy)
        warn = self.warn_fraction * self.policy.accept_within_s[consult.priority]
        record = ConsultRecord(
            consult=consult,
            request=stored,
            accept_due=due,
            expires_at=expires_at(consult, self.policy),
            warn_at=None if due is None else due - timedelta(seconds=warn),
        )
        self._repo.create(
            record,
            self._event(
                record,
                "consult.submit",
                person,
                now,
                centre=centre,
                priority=consult.priority.value,
                mode=consult.mode.value,
            ),
        )
        self._notifier.notify(_notice("consult.submit", consult, now))
        return self._view(person, record)

    def get(self, person: Person, consult_id: str) -> ConsultView:
        """The consult, for someone who may see it (else NotFound); the read is audited
        (``consult.viewed``: who read which patient's record, and when)."""
        record = self._visible(person, consult_id)
        self._repo.audit(self._event(record, "consult.viewed", person, self._clock()))
        return self._view(person, record)

    def chat_room(self, person: Person, consult_id: str) -> str:
        """The consult's room, whose chat is part of its record, for someone who may see
        the consult (else NotFound); the read is audited (``consult.chat_viewed``)."""
        record = self._visible(person, consult_id)
        self._repo.audit(self._event(record, "consult.chat_viewed", person, self._clock()))
        return consult_room(consult_id)

    def export(
        self, person: Person, consult_id: str, form: str
    ) -> tuple[ConsultView, Sequence[SignedVersion], Sequence[SignedVersion]]:
        """The consult, its signed versions and co-signatures for an export (``form``:
        ``pdf``, ``fhir``), audited as ``consult.exported``.

        Raises
        ------
        NotFound
            The caller does not see the consult.
        """
        record = self._visible(person, consult_id)
        self._repo.audit(
            self._event(record, "consult.exported", person, self._clock(), format=form)
        )
        versions = self._repo.versions(consult_id)
        cosignatures = self._repo.cosignatures(consult_id)
        return self._view(person, record), versions, cosignatures

    def worklist(
        self,
        person: Person,
        queue: Queue,
        page: PageRequest,
        *,
        states: frozenset[ConsultState] | None = None,
        search: str | None = None,
    ) -> Page[ConsultRecord]:
        """A page of one of the caller's worklists.

        Raises
        ------
        Forbidden
            The queue is not one of the caller's roles (a doctor's clinic queue, a
            coordinator's queues, an expert's assigned consults).
        """
        needs = {
            Queue.MINE: Role.DOCTOR,
            Queue.CLINIC: Role.DOCTOR,
            Queue.UNTRIAGED: Role.COORDINATOR,
            Queue.OVERDUE: Role.COORDINATOR,
            Queue.ASSIGNED: Role.EXPERT,
        }[queue]
        if needs not in person.roles:
            raise Forbidden(f"the {queue.value} worklist is for a {needs.value}")
        if queue in (Queue.MINE, Queue.ASSIGNED):
            who = person.username
        else:
            if person.institution is None:
                raise Forbidden("the worklist is an institution's")
            who = person.institution
        return self._repo.list(
            ConsultFilter(queue=queue, who=who, now=self._clock(), states=states, search=search),
            page,
        )

    # The lifecycle
    def step(
        self,
        person: Person,
        consult_id: str,
        event: ConsultEvent,
        *,
        reason: str | None = None,
        experts: Sequence[str] | None = None,
        start: datetime | None = None,
    ) -> ConsultView:
        """Take one step of the table (``sign`` is :meth:`sign`).

        Raises
        ------
        TransitionNotAllowed, NotPermitted, MissingField, InvalidField
            From the table (409, 403, 400); audited as ``denied``.
        InvalidInput
            An assigned username is no expert.
        StaleConsult
            Someone else moved the consult first.
        """
        if event in (ConsultEvent.SIGN, ConsultEvent.EXPIRE):
            raise InvalidInput("event", f"{event.value} is not taken this way")
        before = self._visible(person, consult_id)
        now = self._clock()
        try:
            consult = apply(
                before.consult,
                event,
                actor_of(person),
                now,
                reason=reason,
                experts=None if experts is None else tuple(experts),
                start=start,
            )
        except (TransitionNotAllowed, NotPermitted) as exc:
            self._repo.audit(
                self._event(
                    before,
                    f"consult.{event.value}",
                    person,
                    now,
                    outcome="denied",
                    state=before.consult.state.value,
                    code=exc.code,
                )
            )
            raise
        if event is ConsultEvent.ASSIGN:
            # The table has spoken (a coordinator assigns now); the names must be experts
            # of an institution that serves the clinic for consults.
            serving = providers_of(
                Tree(self._directory.all_institutions()),
                self._directory.all_relations(),
                consult.clinic,
                ServiceKind.CONSULT,
            )
            for name in consult.experts:
                found = self._directory.person_by_username(name)
                if found is None or Role.EXPERT not in found.roles:
                    raise InvalidInput("experts", f"{name!r} is not an expert")
                if found.institution not in serving:
                    raise InvalidInput(
                        "experts", f"{name!r} is of no institution that serves this clinic"
                    )
        # A warning once given is not armed again; a reminder follows the start.
        remind_at = before.remind_at if consult.state is ConsultState.SCHEDULED else None
        if event is ConsultEvent.SCHEDULE and consult.scheduled_start is not None:
            remind_at = consult.scheduled_start - timedelta(seconds=self.remind_before_s)
        after = replace(
            before,
            consult=consult,
            accept_due=acceptance_due(consult, self.policy),
            expires_at=expires_at(consult, self.policy),
            warn_at=before.warn_at if consult.state in AWAITING_ACCEPTANCE else None,
            remind_at=remind_at,
        )
        details = {"from": before.consult.state.value, "to": consult.state.value}
        if event is ConsultEvent.ASSIGN:
            details["experts"] = ",".join(consult.experts)
        if consult.reason is not None and consult.reason != before.consult.reason:
            details["reason"] = consult.reason[:200]
        self._repo.transition(
            before, after, self._event(before, f"consult.{event.value}", person, now, **details)
        )
        self._notifier.notify(_notice(f"consult.{event.value}", consult, now))
        return self._view(person, replace(after, revision=before.revision + 1))

    def _sweep_step(
        self,
        before: ConsultRecord,
        after: ConsultRecord,
        action: str,
        now: datetime,
        **details: str,
    ) -> bool:
        """Store one step the server takes; False when a person moved the consult first."""
        try:
            self._repo.transition(before, after, self._event(before, action, None, now, **details))
        except StaleConsult:
            return False
        self._notifier.notify(_notice(action, after.consult, now))
        return True

    def expire_due(self, limit: int = 100) -> int:
        """Expire the consults not accepted by their expiry time (the server's sweep);
        answers how many. One that a person moved meanwhile is left to them."""
        now = self._clock()
        done = 0
        for before in self._repo.due_to_expire(now, limit):
            consult = apply(before.consult, ConsultEvent.EXPIRE, Actor.system(), now)
            after = replace(before, consult=consult, accept_due=None, expires_at=None, warn_at=None)
            moves = {"from": before.consult.state.value, "to": consult.state.value}
            done += self._sweep_step(before, after, "consult.expire", now, **moves)
        return done

    def escalate_overdue(self, limit: int = 100) -> list[ConsultRecord]:
        """Escalate, once, each consult past its acceptance deadline and still not
        accepted: an audit row and a notice to the centre's coordinators (the server's
        sweep, beside :meth:`expire_due`). Answers the consults escalated."""
        now = self._clock()
        done: list[ConsultRecord] = []
        for before in self._repo.due_to_escalate(now, limit):
            after = replace(before, escalated_at=now)
            due = iso_utc(before.accept_due) if before.accept_due else ""
            facts = {"state": before.consult.state.value, "due": due}
            if self._sweep_step(before, after, "consult.escalate", now, **facts):
                done.append(replace(after, revision=before.revision + 1))
        return done

    def remind(self, limit: int = 100) -> list[Notice]:
        """Send the reminders that are due (the server's sweep): ``consult.due_soon`` to
        the centre's coordinators and the experts of a consult whose acceptance deadline
        nears, ``consult.starting`` to both sides of a scheduled consult about to start;
        each once, audited. Answers the notices sent."""
        now = self._clock()
        sent: list[Notice] = []
        for before in self._repo.due_to_warn(now, limit):
            after = replace(before, warn_at=None)
            due = iso_utc(before.accept_due) if before.accept_due else ""
            if self._sweep_step(before, after, "consult.due_soon", now, due=due):
                sent.append(_notice("consult.due_soon", before.consult, now))
        for before in self._repo.due_to_remind(now, limit):
            after = replace(before, remind_at=None)
            start = before.consult.scheduled_start
            facts = {"start": iso_utc(start) if start else ""}
            if self._sweep_step(before, after, "consult.starting", now, **facts):
                sent.append(_notice("consult.starting", before.consult, now))
        return sent

    # The opinion
    def _lead(self, person: Person, record: ConsultRecord, what: str) -> None:
        if Party.LEAD_EXPERT not in parties(record.consult, actor_of(person)):
            raise Forbidden(f"only the consult's lead expert may {what}")

    def save_draft(self, person: Person, consult_id: str, text: OpinionText) -> None:
        """The lead expert replaces the draft (until the opinion is signed).

        Raises
        ------
        Forbidden
            Not the lead expert.
        OpinionSigned
            The opinion is signed: write an addendum.
        TransitionNotAllowed
            The consult is not in a state where the opinion is written.
        """
        record = self._visible(person, consult_id)
        self._lead(person, record, "write the opinion")
        check_editable(self._repo.versions(consult_id), consult_id)
        if record.consult.state not in _DRAFTING:
            raise TransitionNotAllowed(
                "opinion", "lead_expert", record.consult.state, ConsultEvent.FINISH
            )
        now = self._clock()
        self._repo.save_draft(consult_id, text, self._event(record, "opinion.draft", person, now))

    def draft(self, person: Person, consult_id: str) -> OpinionText | None:
        """The draft, for the consult's experts and coordinators (not yet the clinic's)."""
        record = self._visible(person, consult_id)
        mine = parties(record.consult, actor_of(person))
        if not mine & {Party.EXPERT, Party.LEAD_EXPERT, Party.COORDINATOR}:
            raise Forbidden("the draft is the experts' until it is signed")
        return self._repo.draft(consult_id)

    def versions(self, person: Person, consult_id: str) -> Sequence[SignedVersion]:
        """The signed versions, for anyone who sees the consult."""
        self._visible(person, consult_id)
        return self._repo.versions(consult_id)

    def _keys(self, person: Person, now: datetime) -> KeyPair:
        keys = self._repo.signer_key(person.id)
        if keys is None:
            keys = KeyPair.generate()
            self._repo.add_signer_key(
                person.id,
                keys,
                AuditEvent(
                    at_s=now.timestamp(),
                    action="opinion.key_created",
                    actor=person.id,
                    target=f"person:{person.id}",
                    details={"fingerprint": keys.fingerprint},
                    institution=person.institution,
                ),
            )
        return keys

    def _name_of(self, code: str) -> str:
        found = self._directory.get_institution(code)
        return found.name if found is not None else code

    def _signer_context(self, signer: Person) -> dict[str, str]:
        return {
            "signer_name": signer.display_name,
            "signer_title": signer.title or "",
            "signer_institution": self._name_of(signer.institution) if signer.institution else "",
        }

    def _context(self, record: ConsultRecord, signer: Person) -> dict[str, str]:
        name_of = self._name_of
        r = record.request
        return {
            "patient_name": r.patient_name,
            "patient_sex": r.patient_sex,
            "patient_birth_date": r.patient_birth_date.isoformat(),
            "record_number": r.record_number,
            "clinic": name_of(record.consult.clinic),
            "centre": name_of(record.consult.centre),
            "specialty": r.specialty,
            **self._signer_context(signer),
        }

    def _sign_with_factor(
        self, person: Person, record: ConsultRecord, totp: str | None, action: str
    ) -> None:
        now = self._clock()
        try:
            self._second_factor.confirm_totp(person, totp)
        except TotpRequired as exc:
            self._repo.audit(
                self._event(record, action, person, now, outcome="denied", code=exc.code)
            )
            raise

    def sign(self, person: Person, consult_id: str, totp: str | None) -> ConsultView:
        """The lead expert signs the draft: the consult becomes ``reported``.

        Raises
        ------
        TransitionNotAllowed, NotPermitted
            Not in a state to sign, or not the lead expert (audited).
        TotpRequired
            The second factor is missing or wrong (audited).
        InvalidInput
            There is no draft, or it has no diagnosis.
        """
        before = self._visible(person, consult_id)
        now = self._clock()
        actor = actor_of(person)
        try:
            # The table decides first (409/403), before the second factor is asked.
            apply(before.consult, ConsultEvent.SIGN, actor, now, signed=True)
        except (TransitionNotAllowed, NotPermitted) as exc:
            self._repo.audit(
                self._event(before, "consult.sign", person, now, outcome="denied", code=exc.code)
            )
            raise
        text = self._repo.draft(consult_id)
        if text is None:
            raise InvalidInput("opinion", "write the opinion (PUT .../opinion) before signing")
        self._sign_with_factor(person, before, totp, "consult.sign")
        keys = self._keys(person, now)
        consult = apply(before.consult, ConsultEvent.SIGN, actor, now, signed=True)
        document = signed_document(
            consult=consult_id,
            patient=before.request.patient_id,
            signer=person.username,
            signed_at=now,
            opinion=text,
            version=1,
            context=self._context(before, person),
        )
        version = SignedVersion(
            document=document, signature=sign(document, keys), public_key=keys.public_key
        )
        after = replace(
            before, consult=consult, accept_due=None, expires_at=None, warn_at=None, remind_at=None
        )
        self._repo.add_version(
            version,
            self._event(
                before,
                "consult.sign",
                person,
                now,
                version="1",
                fingerprint=keys.fingerprint,
                signed_at=iso_utc(now),
            ),
            (before, after),
        )
        self._notifier.notify(_notice("consult.sign", consult, now))
        return self._view(person, replace(after, revision=before.revision + 1))

    def addendum(
        self, person: Person, consult_id: str, text: OpinionText, totp: str | None
    ) -> SignedVersion:
        """A correction of a signed opinion: a new version naming the last, signed anew.

        Raises
        ------
        Forbidden
            Not the lead expert.
        InvalidInput
            Nothing is signed yet (edit the draft instead).
        TotpRequired
            The second factor is missing or wrong.
        """
        record = self._visible(person, consult_id)
        self._lead(person, record, "correct the opinion")
        versions = self._repo.versions(consult_id)
        if not versions:
            raise InvalidInput("opinion", "nothing is signed yet: edit the draft")
        self._sign_with_factor(person, record, totp, "opinion.addendum")
        now = self._clock()
        keys = self._keys(person, now)
        number = len(versions) + 1
        document = signed_document(
            consult=consult_id,
            patient=record.request.patient_id,
            signer=person.username,
            signed_at=now,
            opinion=text,
            version=number,
            corrects=digest(versions[-1].document),
            context=self._context(record, person),
        )
        version = SignedVersion(
            document=document, signature=sign(document, keys), public_key=keys.public_key
        )
        self._repo.add_version(
            version,
            self._event(
                record,
                "opinion.addendum",
                person,
                now,
                version=str(number),
                fingerprint=keys.fingerprint,
            ),
        )
        return version

    def cosign(
        self, person: Person, consult_id: str, totp: str | None, comment: str = ""
    ) -> SignedVersion:
        """Another expert of a multidisciplinary consult co-signs the latest signed
        version, with their own remark; signed with their key after the second factor.

        Raises
        ------
        Forbidden
            Not one of the consult's experts, or the signer of that version.
        InvalidInput
            Nothing is signed yet, or the remark is too long.
        Conflict
            They co-signed that version already.
        TotpRequired
            The second factor is missing or wrong (audited).
        """
        record = self._visible(person, consult_id)
        mine = parties(record.consult, actor_of(person))
        if Party.EXPERT not in mine:
            raise Forbidden("only the consult's experts co-sign")
        versions = self._repo.versions(consult_id)
        if not versions:
            raise InvalidInput("opinion", "nothing is signed yet")
        latest = versions[-1].document
        if latest.get("signer") == person.username:
            raise Forbidden("the signer of a version does not co-sign it")
        for done in self._repo.cosignatures(consult_id):
            if (done.document.get("signer"), done.document.get("version")) == (
                person.username,
                latest.get("version"),
            ):
                raise Conflict("co-signature", person.username)
        now = self._clock()
        document = cosignature_document(
            cosigns=latest,
            signer=person.username,
            signed_at=now,
            comment=comment,
            context=self._signer_context(person),
        )
        self._sign_with_factor(person, record, totp, "opinion.cosign")
        keys = self._keys(person, now)
        cosignature = SignedVersion(
            document=document, signature=sign(document, keys), public_key=keys.public_key
        )
        self._repo.add_cosignature(
            cosignature,
            self._event(
                record,
                "opinion.cosign",
                person,
                now,
                version=str(latest.get("version")),
                fingerprint=keys.fingerprint,
            ),
        )
        self._notifier.notify(_notice("consult.cosign", record.consult, now))
        return cosignature

    def cosignatures(self, person: Person, consult_id: str) -> Sequence[SignedVersion]:
        """The co-signatures, for anyone who sees the consult."""
        self._visible(person, consult_id)
        return self._repo.cosignatures(consult_id)

    def public_keys(self, person_id: str) -> Sequence[bytes]:
        """The public keys on record for a signer (for ``report verify``)."""
        return self._repo.public_keys(person_id)

    # Attachments
    def add_attachment(
        self, person: Person, consult_id: str, claimed_type: str, name: str, data: bytes
    ) -> Attachment:
        """Attach a file to an open consult: typed by its content, size-limited.

        Raises
        ------
        AttachmentType, AttachmentTooLarge
            415 / 413 (nothing stored).
        Forbidden
            The caller is no party to the consult.
        """
        record = self._visible(person, consult_id)
        if not parties(record.consult, actor_of(person)):
            raise Forbidden("only the consult's parties may attach files")
        found = check_attachment(claimed_type, data, self.attachment_limits_bytes)
        now = self._clock()
        attachment = Attachment(
            id=self._new_id(),
            consult=consult_id,
            media_type=found.value,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            name=(name.strip() or "attachment")[:200],
            uploaded_by=person.username,
            uploaded_at=now,
        )
        self._blobs.put(f"{consult_id}/{attachment.id}", data)
        self._repo.add_attachment(
            attachment,
            self._event(
                record,
                "consult.attachment_added",
                person,
                now,
                attachment=attachment.id,
                media_type=found.value,
                size_bytes=str(len(data)),
            ),
        )
        return attachment

    def attachments(self, person: Person, consult_id: str) -> Sequence[Attachment]:
        """The consult's attachments, for anyone who sees it."""
        self._visible(person, consult_id)
        return self._repo.attachments(consult_id)

    def attachment(
        self, person: Person, consult_id: str, attachment_id: str
    ) -> tuple[Attachment, bytes]:
        """One attachment and its bytes (the download is audited)."""
        record = self._visible(person, consult_id)
        for found in self._repo.attachments(consult_id):
            if found.id == attachment_id:
                data = self._blobs.get(f"{consult_id}/{found.id}")
                self._repo.audit(
                    self._event(
                        record,
                        "consult.attachment_read",
                        person,
                        self._clock(),
                        attachment=found.id,
                    )
                )
                return found, data
        raise NotFound("attachment", attachment_id)

    # ECG streams
    def attach_stream(self, person: Person, consult_id: str, stream_id: str) -> ConsultStream:
        """Attach an ECG stream the clinic's cart sent to the consult (a party of the
        consult does it; the stream must be of the consult's clinic).

        Raises
        ------
        Forbidden
            The caller is no party to the consult.
        NotFound
            No such stream of the consult's clinic.
        Conflict
            It is attached already.
        """
        record = self._visible(person, consult_id)
        if not parties(record.consult, actor_of(person)):
            raise Forbidden("only the consult's parties attach ECGs")
        found = self._repo.stream(stream_id)
        if found is None or found.institution != record.consult.clinic:
            raise NotFound("stream", stream_id)
        attached = replace(found, attached_by=person.username)
        self._repo.attach_stream(
            consult_id,
            attached,
            self._event(record, "consult.stream_attached", person, self._clock(), stream=found.id),
        )
        return attached

    def streams(self, person: Person, consult_id: str) -> Sequence[ConsultStream]:
        """The consult's ECG streams, for anyone who sees the consult."""
        self._visible(person, consult_id)
        return self._repo.streams_of(consult_id)

    # Referral
    def publish_slot(self, person: Person, department: str, start: datetime, end: datetime) -> Slot:
        """A doctor or coordinator publishes a slot of their institution's department."""
        if person.institution is None or not person.roles & {Role.DOCTOR, Role.COORDINATOR}:
            raise Forbidden("slots are published by a department's doctors or coordinators")
        if start <= self._clock():
            raise InvalidInput("start", "is in the past")
        slot = Slot(
            id=self._new_id(),
            institution=person.institution,
            department=department,
            start=start,
            end=end,
        )
        self._repo.add_slot(
            slot,
            AuditEvent(
                at_s=self._clock().timestamp(),
                action="referral.slot_published",
                actor=person.id,
                target=f"slot:{slot.id}",
                details={"department": department, "start": iso_utc(start)},
                institution=person.institution,
            ),
        )
        return slot

    def refer(
        self, person: Person, slot_id: str, reason: str, consult_id: str | None = None
    ) -> Referral:
        """Refer a patient to a published slot (from a consult or directly).

        Raises
        ------
        SlotTaken
            Another live referral holds the slot (of two racing, one wins).
        """
        if person.institution is None or not person.roles & {Role.DOCTOR, Role.EXPERT}:
            raise Forbidden("a doctor or an expert refers")
        slot = self._repo.get_slot(slot_id)
        if slot is None:
            raise NotFound("slot", slot_id)
        record = None if consult_id is None else self._visible(person, consult_id)
        now = self._clock()
        referral = new_referral(
            id=self._new_id(),
            from_institution=person.institution,
            slot=slot,
            reason=reason,
            now=now,
            consult=consult_id,
        )
        self._repo.add_referral(
            referral,
            AuditEvent(
                at_s=now.timestamp(),
                action="referral.request",
                actor=person.id,
                target=f"referral:{referral.id}",
                details={"slot": slot.id, "to": slot.institution},
                institution=person.institution,
                patient=None if record is None else record.request.patient_id,
                consult=consult_id,
            ),
        )
        return referral

    def referral_step(
        self, person: Person, referral_id: str, event: ReferralEvent, text: str | None = None
    ) -> Referral:
        """Take a step of the referral table (accept, decline, arrive, refer back, cancel)."""
        before = self._repo.get_referral(referral_id)
        if before is None or person.institution not in (
            before.from_institution,
            before.to_institution,
        ):
            raise NotFound("referral", referral_id)
        now = self._clock()
        roles = frozenset(r.value for r in person.roles)
        try:
            after = apply_referral(before, event, person.institution or "", roles, now, text=text)
        except (TransitionNotAllowed, NotPermitted) as exc:
            self._repo.audit(
                AuditEvent(
                    at_s=now.timestamp(),
                    action=f"referral.{event.value}",
                    actor=person.id,
                    target=f"referral:{referral_id}",
                    outcome="denied",
                    details={"state": before.state.value, "code": exc.code},
                    institution=before.from_institution,
                    consult=before.consult,
                )
            )
            raise
        self._repo.update_referral(
            before,
            after,
            AuditEvent(
                at_s=now.timestamp(),
                action=f"referral.{event.value}",
                actor=person.id,
                target=f"referral:{referral_id}",
                details={"from": before.state.value, "to": after.state.value},
                institution=before.from_institution,
                consult=before.consult,
            ),
        )
        return after

    def get_referral(self, person: Person, referral_id: str) -> Referral:
        """A referral, for the people of either institution."""
        found = self._repo.get_referral(referral_id)
        if found is None or person.institution not in (
            found.from_institution,
            found.to_institution,
        ):
            raise NotFound("referral", referral_id)
        return found

    def referrals(self, person: Person, *, incoming: bool, page: PageRequest) -> Page[Referral]:
        """The referrals to (the receiving department's worklist) or from the caller's
        institution, newest first."""
        if person.institution is None or not person.roles & {
            Role.DOCTOR,
            Role.EXPERT,
            Role.COORDINATOR,
        }:
            raise Forbidden("referrals are an institution's doctors' and coordinators'")
        return self._repo.list_referrals(person.institution, incoming=incoming, page=page)

    def slots(
        self, person: Person, institution: str, department: str | None = None
    ) -> Sequence[tuple[Slot, bool]]:
        """The published slots of an institution from now on, each with whether taken."""
        if not person.roles & {Role.DOCTOR, Role.EXPERT, Role.COORDINATOR}:
            raise Forbidden("slots are for doctors, experts and coordinators")
        return self._repo.list_slots(institution, department, self._clock())

    # Supervision
    def statistics_scope(self, person: Person) -> frozenset[str] | None:
        """The institutions whose consults a person's statistics cover (None: all).

        A deployment admin sees all; an auditor, an institution admin or a coordinator
        the consults of their institution and those below it (clinic or centre there).

        Raises
        ------
        Forbidden
            Anyone else.
        """
        if person.admin_scope is AdminScope.DEPLOYMENT:
            return None
        if person.institution is None or not person.roles & {
            Role.AUDITOR,
            Role.ADMIN,
            Role.COORDINATOR,
        }:
            raise Forbidden("statistics are for auditors, admins and coordinators")
        return Tree(self._directory.all_institutions()).subtree(person.institution)

    def statistics(
        self, person: Person, *, since: datetime, until: datetime, by: StatsGroup
    ) -> tuple[Sequence[StatsRow], Sequence[ReferralStatsRow]]:
        """Counts, acceptance and turnaround per group, and referrals per institution,
        of the consults submitted in ``[since, until)`` that the person oversees.

        Raises
        ------
        Forbidden
            Not an auditor, admin or coordinator.
        InvalidInput
            ``until`` not after ``since``, or a period over 366 days.
        """
        scope = self.statistics_scope(person)
        check_period(since, until)
        query = StatsQuery(since=since, until=until, by=by, now=self._clock(), scope=scope)
        return self._stats.consult_stats(query), self._stats.referral_stats(query)


# Outgoing webhooks

# The notice kinds an endpoint may ask for.
WEBHOOK_EVENTS: Final = frozenset(
    {f"consult.{e.value}" for e in ConsultEvent}
    | {"consult.escalate", "consult.due_soon", "consult.starting", "consult.cosign"}
)
_MAX_URL_CHARS: Final = 2000


def _check_url(url: str) -> str:
    """An absolute http(s) URL without credentials, or InvalidInput."""
    cleaned = url.strip()
    parts = urlsplit(cleaned)
    if len(cleaned) > _MAX_URL_CHARS or parts.scheme not in ("http", "https"):
        raise InvalidInput("url", "an http or https URL of at most 2000 characters")
    if not parts.hostname or parts.username or parts.password:
        raise InvalidInput("url", "needs a host and no user or password in it")
    if any(ord(ch) < 33 for ch in cleaned):
        raise InvalidInput("url", "holds spaces or control characters")
    return cleaned


class WebhookOutbox:
    """A :class:`Notifier` that queues each notice for the webhook endpoints of the
    consult's clinic and centre that asked for its kind (the sender delivers them).

    The body is JSON ``{"event", "consult", "at", "delivery"}``: no patient data; the
    receiver fetches the consult with its API token.
    """

    def __init__(self, webhooks: WebhookRepository, *, new_id: Callable[[], str] = _new_id) -> None:
        self._repo = webhooks
        self._new_id = new_id

    def notify(self, notice: Notice) -> None:
        queued: list[WebhookDelivery] = []
        for institution in sorted(notice.institutions):
            for endpoint in self._repo.endpoints(institution):
                if endpoint.revoked_at is not None:
                    continue
                if endpoint.events and notice.kind not in endpoint.events:
                    continue
                delivery_id = self._new_id()
                body = json.dumps(
                    {
                        "event": notice.kind,
                        "consult": notice.consult,
                        "at": iso_utc(notice.at),
                        "delivery": delivery_id,
                    },
                    sort_keys=True,
                    separators=(",", ":"),
                ).encode()
                queued.append(
                    WebhookDelivery(
                        id=delivery_id,
                        endpoint=endpoint.id,
                        event=notice.kind,
                        body=body,
                        created_at=notice.at,
                        next_attempt_at=notice.at,
                    )
                )
        self._repo.enqueue(queued)


class Webhooks:
    """An institution admin's webhook endpoints: register (the secret shown once),
    list, revoke, read the delivery log.

    Parameters
    ----------
    random_bytes
        The source of shared secrets (``secrets.token_bytes``).
    """

    def __init__(
        self,
        webhooks: WebhookRepository,
        *,
        random_bytes: Callable[[int], bytes],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        self._repo = webhooks
        self._random_bytes = random_bytes
        self._clock = clock
        self._new_id = new_id

    @staticmethod
    def _institution(person: Person) -> str:
        if not person.is_admin or person.institution is None:
            raise Forbidden("webhooks are registered by an admin of an institution")
        return person.institution

    def _audit(self, person: Person, action: str, endpoint: WebhookEndpoint) -> AuditEvent:
        return AuditEvent(
            at_s=self._clock().timestamp(),
            action=action,
            actor=person.id,
            target=f"webhook:{endpoint.id}",
            details={"events": ",".join(sorted(endpoint.events)) or "*"},
            institution=endpoint.institution,
        )

    def register(
        self, person: Person, url: str, events: frozenset[str]
    ) -> tuple[WebhookEndpoint, str]:
        """A new endpoint of the admin's institution and its shared secret (hex).

        Raises
        ------
        Forbidden
            Not an admin of an institution.
        InvalidInput
            The URL is not an http(s) URL, or an event kind is unknown.
        """
        institution = self._institution(person)
        unknown = events - WEBHOOK_EVENTS
        if unknown:
            raise InvalidInput("events", f"unknown kinds: {', '.join(sorted(unknown))}")
        endpoint = WebhookEndpoint(
            id=self._new_id(),
            institution=institution,
            url=_check_url(url),
            events=events,
            created_by=person.username,
            created_at=self._clock(),
        )
        secret = self._random_bytes(32).hex()
        self._repo.add_endpoint(endpoint, secret, self._audit(person, "webhook.created", endpoint))
        return endpoint, secret

    def endpoints(self, person: Person) -> Sequence[WebhookEndpoint]:
        """The admin's institution's endpoints."""
        return self._repo.endpoints(self._institution(person))

    def _own(self, person: Person, endpoint_id: str) -> WebhookEndpoint:
        found = self._repo.get_endpoint(endpoint_id)
        if found is None or found.institution != self._institution(person):
            raise NotFound("webhook", endpoint_id)
        return found

    def revoke(self, person: Person, endpoint_id: str) -> None:
        """Stop an endpoint; its pending deliveries are given up."""
        found = self._own(person, endpoint_id)
        self._repo.revoke_endpoint(
            found.id, self._clock(), self._audit(person, "webhook.revoked", found)
        )

    def deliveries(
        self, person: Person, endpoint_id: str, limit: int = 100
    ) -> Sequence[WebhookDelivery]:
        """The delivery log of an endpoint, newest first."""
        return self._repo.deliveries(self._own(person, endpoint_id).id, limit)
