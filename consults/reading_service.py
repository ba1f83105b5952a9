"""The ECG centre's use cases: a reading task for each finished ECG, the worklist, claim
and release, the draft report, signing and amending, returning to the clinic; critical
values raised, told, acknowledged by read-back, and escalated by the server's sweep.

Design notes
------------
- Synchronous and blocking (the store is behind
  :class:`~consults.reading_repositories.ReadingRepository`): the API calls it from
  worker threads. The rules are the domain's (:mod:`consults.readings`): every step goes
  through :func:`~consults.readings.apply_reading` or
  :func:`~consults.readings.apply_critical`; this layer loads, decides who the actor is
  to the task, and hands the result and its audit row to the store, which writes both
  in one transaction (compare-and-set on the revision).
- **Which centre.** A task goes to the ECG centre that serves the clinic
  (:func:`consults.rights.providers_of`, kind ``ecg``): among the providers other than
  the clinic, those with ECG readers first, then the nearest by the tree, then by code.
  Every institution that serves the clinic for ECG (an admin's ``added`` relation
  included) acts as its centre: its readers are the task's readers, its coordinators
  its coordinators (:class:`~consults.readings.Reader` with the task's centre).
- **Who sees a task.** A person with a clinical role whose institution serves the
  clinic for ECG (the clinic serves itself: its doctors see their ECGs and the signed
  reports), as :func:`consults.rights.may_view_stream` decides for the ECG itself. To
  anyone else the task does not exist (:class:`~consults.errors.NotFound`, 404). A step
  the table does not have answers 409 naming the state and event; one it has for other
  parties 403; a claim on a task someone else holds names the claimant
  (:class:`~consults.readings.ClaimedByAnother`).
- **Refused steps are audited** (``reading.<event>`` or ``critical.<event>``, outcome
  ``denied``) with the clinic and the patient, so the trail shows the attempt.
- **Signing** is the consult service's scheme: the second factor
  (:class:`~consults.service.SecondFactor`, a code counts once), then Ed25519 over the
  canonical JSON of the report document with the signer's key (the same key store,
  :class:`~consults.reading_repositories.SignerKeys`). An amendment is a new version
  naming the SHA-256 of the one before (``corrects``); signed versions never change.
- **Critical values.** Raised with the task (the engine's codes at the end of the
  stream) or by a reader; told at once to the clinic's doctors and the centre's ECG
  readers (:class:`ReadingNotice` ``critical.raised``). Only someone told may
  acknowledge, with a read-back. Not acknowledged in ``acknowledge_within``, the sweep
  (:meth:`ReadingService.escalate_due`) escalates, level by level
  (:data:`~consults.readings.ESCALATION_LEVELS`): the clinic's doctors again, the
  centre's coordinators, then the phone gateway (a notice the webhooks carry); after the
  last level nothing more is due.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol, TypeVar

from consults.directory import Person, Role, ServiceKind
from consults.errors import (
    Conflict,
    ConsultsError,
    Forbidden,
    InvalidInput,
    NotFound,
    TotpRequired,
)
from consults.opinions import SignedVersion, iso_utc
from consults.reading_repositories import (
    CriticalFilter,
    CriticalRecord,
    ReadingBeatLabels,
    ReadingFiducials,
    ReadingFilter,
    ReadingRecord,
    ReadingReport,
    ReadingRepository,
    SignerKeys,
)
from consults.readings import (
    ESCALATION_LEVELS,
    READING_TRANSITIONS,
    BeatLabel,
    ClaimedByAnother,
    CriticalEvent,
    CriticalState,
    CriticalTransitionError,
    CriticalValue,
    NotNotified,
    Reader,
    ReadingEvent,
    ReadingParty,
    ReadingState,
    ReadingTask,
    apply_critical,
    apply_reading,
    beat_counts,
    beat_labels,
    escalation_due,
    reading_parties,
    relabel,
)
from consults.repositories import AuditEvent, Page, PageRequest, PeopleFilter
from consults.rights import CLINICAL_ROLES, Tree, providers_of, serves
from consults.service import Directory, SecondFactor
from consults.signatures import KeyPair, digest, sign
from consults.transitions import NotPermitted, TransitionNotAllowed, party_names

__all__ = [
    "DOCUMENT_KIND",
    "EngineBeats",
    "FiducialsRefused",
    "NoReadingNotices",
    "ReadingNotice",
    "ReadingNotifier",
    "ReadingService",
    "ReadingView",
    "SignedMeasurements",
]

logger = logging.getLogger(__name__)

DOCUMENT_KIND: Final = "teleconsult.ecg_report"
MAX_STATEMENTS: Final = 50
MAX_TEXT_CHARS: Final = 4_000
MAX_READ_BACK_CHARS: Final = 500
_CODE: Final = re.compile(r"[A-Z0-9][A-Z0-9_/?]{0,31}")
_PEOPLE_PAGE: Final = 500
# States in which a task is held by its claimant.
_HELD: Final = frozenset({ReadingState.CLAIMED, ReadingState.DRAFT, ReadingState.AMENDED})


_T = TypeVar("_T")


class FiducialsRefused(InvalidInput):
    """A correction of the fiducials the measurement refused (outside the beat, out of
    order...): 400 with the refusal's own stable code (``fiducial_outside_beat``,
    ``fiducials_out_of_order``, ``fiducials_incomplete``, ``unknown_fiducial``)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__("fiducials", reason)
        self.code = code  # type: ignore[misc]  # the instance's, not the class's


#: Measures a task's ECG with corrected fiducials: given the task, the corrections kept
#: so far and the ones to keep now (ms on the median beat), answers the positions in
#: effect before (name -> ms, None: none) and the measurement; raises
#: :class:`FiducialsRefused` (or another :class:`InvalidInput`) when they are refused.
Remeasure = Callable[
    [ReadingRecord, Mapping[str, float], Mapping[str, float]],
    tuple[Mapping[str, float | None], _T],
]


#: The measurements a signed version carries, made on the task's ECG with the reader's
#: corrected fiducials (name -> ms on the median beat): JSON of integers, strings and
#: nulls (floats are not signed), or None when the ECG is not measured or not kept.
SignedMeasurements = Callable[[ReadingRecord, Mapping[str, float]], Mapping[str, object] | None]

#: The engine's beats of a task's measured window (R peaks, record samples), the beats
#: the reader labels by index; raises (the API's 404) when the ECG is not kept.
EngineBeats = Callable[[ReadingRecord], Sequence[int]]


def _ms_text(value: float | None) -> str:
    return "engine" if value is None else f"{value:.0f}"


@dataclass(frozen=True, kw_only=True)
class ReadingNotice:
    """Someone must hear of a reading or a critical value.

    ``kind``: ``reading.sign`` / ``reading.amend`` / ``reading.return`` (the clinic's
    doctors), ``critical.raised``, ``critical.escalate``, ``critical.acknowledge``.
    ``level``: for ``critical.escalate``, the name of the level reached
    (:data:`~consults.readings.ESCALATION_LEVELS`; ``phone_gateway``: the webhooks must
    carry it to the phone gateway). No patient data: the recipient's page fetches what
    they may see.
    """

    kind: str
    reading: str
    at: datetime
    critical: str | None = None
    code: str | None = None  # the finding, for critical.*
    level: str | None = None
    usernames: frozenset[str] = frozenset()
    institutions: frozenset[str] = frozenset()  # the clinic and the centre (webhooks)


class ReadingNotifier(Protocol):
    """Where reading notices go (the live notifications, the webhooks).

    Called from the worker thread after the step is stored; an implementation hands the
    notice to the event loop and returns at once.
    """

    def notify(self, notice: ReadingNotice) -> None: ...


class NoReadingNotices:
    """A notifier that keeps the notices in a list (commands, tests)."""

    def __init__(self) -> None:
        self.sent: list[ReadingNotice] = []

    def notify(self, notice: ReadingNotice) -> None:
        self.sent.append(notice)


@dataclass(frozen=True, kw_only=True)
class ReadingView:
    """A task as the caller may see it: the events they may take now, their parties."""

    record: ReadingRecord
    allowed: tuple[ReadingEvent, ...]
    parties: frozenset[ReadingParty]
    criticals: tuple[CriticalRecord, ...] = ()


def _new_id() -> str:
    return uuid.uuid4().hex


def _check_codes(field: str, codes: Sequence[str], known: frozenset[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for code in codes:
        if not _CODE.fullmatch(code) or (known is not None and code not in known):
            raise InvalidInput(field, f"{code[:40]!r} is not a known code")
        if code not in out:
            out.append(code)
    return tuple(out)


class ReadingService:
    """The ECG centre's use cases over a store.

    Parameters
    ----------
    readings
        The store of tasks, reports, signed versions and critical values.
    keys
        The signers' keys (the consult store's).
    directory
        Institutions, relations and people.
    second_factor
        Checks the TOTP code that signing requires.
    clock
        The time, aware UTC.
    notifier
        Told of every step someone must hear of, after it is stored.
    acknowledge_within_s
        How long a told person has to acknowledge a critical value before it escalates
        (each level the same again).
    statement_codes
        The coded statements a report may carry (``ecg.statements.LIBRARY``'s keys);
        ``None``: any code of the form.
    critical_codes
        The critical findings a reader may raise (``ecg.critical.CRITICAL_TEXT``'s
        keys); ``None``: any code of the form.
    """

    def __init__(
        self,
        *,
        readings: ReadingRepository,
        keys: SignerKeys,
        directory: Directory,
        second_factor: SecondFactor,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = _new_id,
        notifier: ReadingNotifier | None = None,
        acknowledge_within_s: float = 600.0,
        statement_codes: frozenset[str] | None = None,
        critical_codes: frozenset[str] | None = None,
    ) -> None:
        if acknowledge_within_s <= 0:
            raise ValueError("acknowledge_within_s must be positive")
        self._repo = readings
        self._keys = keys
        self._directory = directory
        self._second_factor = second_factor
        self._clock = clock
        self._new_id = new_id
        self._notifier: ReadingNotifier = notifier or NoReadingNotices()
        self.acknowledge_within = timedelta(seconds=acknowledge_within_s)
        self.statement_codes = statement_codes
        self.critical_codes = critical_codes

    def now(self) -> datetime:
        return self._clock()

    # Helpers
    def _tree(self) -> Tree:
        return Tree(self._directory.all_institutions())

    @staticmethod
    def _audit(
        target: str,
        institution: str,
        patient: str | None,
        action: str,
        actor: Person | None,
        now: datetime,
        outcome: str,
        details: dict[str, str],
    ) -> AuditEvent:
        return AuditEvent(
            at_s=now.timestamp(),
            action=action,
            actor=actor.id if actor is not None else "system",
            target=target,
            outcome=outcome,
            details=details,
            institution=institution,
            patient=patient,
        )

    def _event(
        self,
        record: ReadingRecord,
        action: str,
        actor: Person | None,
        now: datetime,
        /,
        outcome: str = "ok",
        **details: str,
    ) -> AuditEvent:
        """The audit row of a step on a task (positional-only before ``outcome``: a
        record's task has a ``record`` detail)."""
        target = f"reading:{record.task.id}"
        return self._audit(
            target, record.task.clinic, record.patient, action, actor, now, outcome, details
        )

    def _critical_event(
        self,
        found: CriticalRecord,
        action: str,
        actor: Person | None,
        now: datetime,
        outcome: str = "ok",
        **details: str,
    ) -> AuditEvent:
        """The audit row of a step on a critical value (naming its task and finding)."""
        facts = {"reading": found.value.reading, "code": found.value.code, **details}
        target = f"critical:{found.value.id}"
        return self._audit(target, found.clinic, found.patient, action, actor, now, outcome, facts)

    def _serves(self, person: Person, clinic: str) -> bool:
        if not person.roles & CLINICAL_ROLES or person.institution is None:
            return False
        return serves(
            self._tree(),
            self._directory.all_relations(),
            person.institution,
            clinic,
            ServiceKind.ECG,
        )

    def _visible(self, person: Person, reading_id: str) -> ReadingRecord:
        record = self._repo.get(reading_id)
        if record is None or not self._serves(person, record.task.clinic):
            raise NotFound("reading", reading_id)
        return record

    def _reader(self, person: Person, task: ReadingTask) -> Reader:
        """The table's view of a person: of any institution serving the clinic for ECG
        (other than the clinic itself), they act for the task's centre."""
        institution = person.institution or ""
        if institution != task.clinic and self._serves(person, task.clinic):
            institution = task.centre
        return Reader(
            username=person.username,
            roles=frozenset(r.value for r in person.roles),
            institution=institution,
        )

    @staticmethod
    def _allowed(reader: Reader, task: ReadingTask) -> tuple[ReadingEvent, ...]:
        mine = reading_parties(task, reader)
        return tuple(
            event for event, rule in READING_TRANSITIONS[task.state].items() if rule.parties & mine
        )

    def _view(self, person: Person, record: ReadingRecord) -> ReadingView:
        reader = self._reader(person, record.task)
        return ReadingView(
            record=record,
            allowed=self._allowed(reader, record.task),
            parties=reading_parties(record.task, reader),
            criticals=tuple(self._repo.criticals_of(record.task.id)),
        )

    def _served_clinics(self, person: Person) -> frozenset[str]:
        if not person.roles & CLINICAL_ROLES or person.institution is None:
            return frozenset()
        tree = self._tree()
        relations = self._directory.all_relations()
        return frozenset(
            code
            for code in tree.by_code
            if serves(tree, relations, person.institution, code, ServiceKind.ECG)
        )

    def _people(self, institution: str, role: Role) -> list[str]:
        found = self._directory.list_people(
            PeopleFilter(institutions=frozenset({institution}), role=role),
            PageRequest(limit=_PEOPLE_PAGE),
        )
        return [p.username for p in found.items]

    def centre_for(self, clinic: str) -> str:
        """The ECG centre a clinic's ECGs go to.

        Raises
        ------
        InvalidInput
            No institution other than the clinic serves it for ECG.
        """
        tree = self._tree()
        providers = providers_of(tree, self._directory.all_relations(), clinic, ServiceKind.ECG) - {
            clinic
        }
        if not providers:
            raise InvalidInput("clinic", "no ECG centre serves this clinic")
        ancestors = tree.ancestors(clinic)

        def rank(code: str) -> tuple[int, int, str]:
            staffed = self._people(code, Role.ECG_READER)
            distance = ancestors.index(code) if code in ancestors else len(ancestors)
            return (0 if staffed else 1, distance, code)

        return min(providers, key=rank)

    # New tasks
    def task_for_stream(
        self,
        stream_id: str,
        clinic: str,
        patient: str | None,
        received_at: datetime,
        critical_codes: Sequence[str],
        top_statements: Sequence[str],
        *,
        stat: bool = False,
    ) -> ReadingRecord:
        """The reading task of a finished device stream (the live ECG service calls it
        when a stream ends); the engine's critical findings are raised and told at once.
        Idempotent: a stream that has a task answers that task.

        Raises
        ------
        InvalidInput
            No ECG centre serves the clinic, or a code is malformed.
        """
        existing = self._repo.by_stream(stream_id)
        if existing is not None:
            return existing
        return self._create(
            clinic,
            patient,
            received_at,
            critical_codes,
            top_statements,
            stat=stat,
            stream=stream_id,
        )

    def task_for_record(
        self,
        record_id: str,
        clinic: str,
        patient: str | None,
        received_at: datetime,
        critical_codes: Sequence[str],
        top_statements: Sequence[str],
        *,
        stat: bool = False,
    ) -> ReadingRecord:
        """The reading task of an uploaded record (WFDB, DICOM waveform).

        Raises
        ------
        InvalidInput
            No ECG centre serves the clinic, or a code is malformed.
        Conflict
            The record has a task already.
        """
        return self._create(
            clinic,
            patient,
            received_at,
            critical_codes,
            top_statements,
            stat=stat,
            record=record_id,
        )

    def _create(
        self,
        clinic: str,
        patient: str | None,
        received_at: datetime,
        critical_codes: Sequence[str],
        top_statements: Sequence[str],
        *,
        stat: bool,
        stream: str | None = None,
        record: str | None = None,
    ) -> ReadingRecord:
        if received_at.tzinfo is None:
            raise InvalidInput("received_at", "needs a time zone")
        codes = _check_codes("critical", critical_codes, None)
        statements = _check_codes("top_statements", top_statements, None)
        centre = self.centre_for(clinic)
        now = self._clock()
        task = ReadingTask(
            id=self._new_id(),
            state=ReadingState.NEW,
            clinic=clinic,
            centre=centre,
            received_at=received_at,
            stat=stat,
            critical=codes,
        )
        made = ReadingRecord(
            task=task, stream=stream, record=record, patient=patient, top_statements=statements
        )
        criticals = [self._told(made, code, None, now) for code in codes]
        source = {"stream": stream} if stream is not None else {"record": record or ""}
        try:
            created = self._event(
                made,
                "reading.created",
                None,
                now,
                centre=centre,
                critical=",".join(codes),
                **source,
            )
            raised = [
                self._critical_event(
                    c, "critical.raised", None, now, told=str(len(c.value.notified))
                )
                for c in criticals
            ]
            self._repo.create(made, criticals, [created, *raised])
        except Conflict:
            if stream is not None:
                raced = self._repo.by_stream(stream)
                if raced is not None:
                    return raced
            raise
        for found in criticals:
            self._tell(found, "critical.raised", now)
        return made

    # Reading
    def get(self, person: Person, reading_id: str) -> ReadingView:
        """The task, for someone who may see it (else NotFound); the read is audited."""
        record = self._visible(person, reading_id)
        self._repo.audit(self._event(record, "reading.viewed", person, self._clock()))
        return self._view(person, record)

    def worklist(
        self,
        person: Person,
        page: PageRequest,
        *,
        clinic: str | None = None,
        states: frozenset[ReadingState] | None = None,
        reader: str | None = None,
    ) -> Page[ReadingRecord]:
        """The tasks of the clinics the caller's institution serves for ECG, most urgent
        first (critical, then STAT, then the longest waiting). ``clinic`` narrows to one
        of them (another is an empty page, as if it had none); ``reader`` to the tasks
        claimed or signed by that username."""
        clinics = self._served_clinics(person)
        if clinic is not None:
            clinics = clinics & {clinic}
        if not clinics:
            return Page(items=(), total=0)
        return self._repo.list(ReadingFilter(clinics=clinics, states=states, reader=reader), page)

    def previous(
        self,
        person: Person,
        reading_id: str,
        page: PageRequest,
        *,
        states: frozenset[ReadingState] | None = None,
    ) -> Page[ReadingRecord]:
        """The same patient's tasks received before task ``reading_id``, newest first, of
        the clinics the caller sees (the reading page's comparison); ``states`` narrows
        them (e.g. signed and amended). A task without a patient has none. The task is
        the caller's to see (else NotFound); the read is audited (``reading.previous``)."""
        record = self._visible(person, reading_id)
        self._repo.audit(self._event(record, "reading.previous", person, self._clock()))
        clinics = self._served_clinics(person)
        if record.patient is None or not clinics:
            return Page(items=(), total=0)
        where = ReadingFilter(
            clinics=clinics,
            states=states,
            patient=record.patient,
            received_before=record.task.received_at,
            newest_first=True,
        )
        return self._repo.list(where, page)

    def allowed(self, person: Person, record: ReadingRecord) -> tuple[ReadingEvent, ...]:
        """The events the caller may take on a listed task now."""
        return self._allowed(self._reader(person, record.task), record.task)

    def _apply(
        self,
        person: Person,
        before: ReadingRecord,
        event: ReadingEvent,
        now: datetime,
        *,
        reason: str | None = None,
        signed: bool = False,
        action: str | None = None,
    ) -> ReadingTask:
        """The table's step, or the refusal audited (as ``action``, default
        ``reading.<event>``) and raised."""
        task = before.task
        reader = self._reader(person, task)
        try:
            if (
                event is ReadingEvent.CLAIM
                and task.state in _HELD
                and task.claimant is not None
                and task.claimant != person.username
                and ReadingParty.READER in reading_parties(task, reader)
            ):
                raise ClaimedByAnother(task.claimant)
            return apply_reading(task, event, reader, now, reason=reason, signed=signed)
        except (TransitionNotAllowed, NotPermitted, ClaimedByAnother, InvalidInput) as exc:
            self._denied(before, action or f"reading.{event.value}", person, now, exc)
            raise

    def _denied(
        self,
        record: ReadingRecord,
        action: str,
        person: Person,
        now: datetime,
        exc: ConsultsError,
        **details: str,
    ) -> None:
        """The audit row of a refused step on a task: the state, the refusal's code and
        what was asked (``details``)."""
        state = record.task.state.value
        self._repo.audit(
            self._event(
                record, action, person, now, outcome="denied", state=state, code=exc.code, **details
            )
        )

    def step(
        self, person: Person, reading_id: str, event: ReadingEvent, *, reason: str | None = None
    ) -> ReadingView:
        """``claim``, ``release``, ``return`` (with a reason) or ``amend`` (``edit`` is
        :meth:`save_report`, ``sign`` :meth:`sign`).

        Raises
        ------
        TransitionNotAllowed, NotPermitted, ClaimedByAnother, InvalidInput
            From the table (409, 403, 403, 400); audited as ``denied``.
        StaleReading
            Someone else moved the task first (409).
        """
        if event in (ReadingEvent.EDIT, ReadingEvent.SIGN):
            raise InvalidInput("event", f"{event.value} is not taken this way")
        before = self._visible(person, reading_id)
        now = self._clock()
        if reason is not None and len(reason) > 500:
            raise InvalidInput("reason", "at most 500 characters")
        task = self._apply(person, before, event, now, reason=reason)
        after = replace(before, task=task)
        details = {"from": before.task.state.value, "to": task.state.value}
        if task.reason is not None and task.reason != before.task.reason:
            details["reason"] = task.reason[:200]
        self._repo.transition(
            before, after, self._event(before, f"reading.{event.value}", person, now, **details)
        )
        if event in (ReadingEvent.RETURN, ReadingEvent.AMEND):
            self._notify_clinic(after, f"reading.{event.value}", now)
        return self._view(person, replace(after, revision=before.revision + 1))

    def save_report(
        self, person: Person, reading_id: str, statements: Sequence[str], text: str
    ) -> ReadingReport:
        """The claimant replaces the draft (``edit``: claimed or draft, or amended).

        Raises
        ------
        TransitionNotAllowed
            Not in a state where the report is written (a signed report: amend first).
        NotPermitted, ClaimedByAnother
            Not the claimant.
        InvalidInput
            An unknown statement code, too many, or a text too long.
        """
        before = self._visible(person, reading_id)
        now = self._clock()
        task = self._apply(person, before, ReadingEvent.EDIT, now)
        try:
            if len(statements) > MAX_STATEMENTS:
                raise InvalidInput("statements", f"at most {MAX_STATEMENTS}")
            if len(text) > MAX_TEXT_CHARS:
                raise InvalidInput("text", f"at most {MAX_TEXT_CHARS} characters")
            codes = _check_codes("statements", statements, self.statement_codes)
        except InvalidInput as exc:
            self._denied(before, "reading.edit", person, now, exc)
            raise
        report = ReadingReport(
            statements=codes, text=text.strip(), updated_by=person.username, updated_at=now
        )
        self._repo.transition(
            before,
            replace(before, task=task),
            self._event(
                before,
                "reading.edit",
                person,
                now,
                statements=",".join(codes),
                **{"from": before.task.state.value, "to": task.state.value},
            ),
            report,
        )
        return report

    def correct_fiducials(
        self,
        person: Person,
        reading_id: str,
        corrections: Mapping[str, float | None],
        remeasure: Remeasure[_T],
    ) -> tuple[ReadingFiducials, _T]:
        """The claimant corrects global fiducials on the median beat (the table's
        ``edit``, as for the draft): ``corrections`` (ms, None: back to the engine's) are
        merged over those kept, measured again by ``remeasure``, and kept with the draft;
        audited as ``reading.fiducials`` with each position before and after.

        Raises
        ------
        TransitionNotAllowed, NotPermitted, ClaimedByAnother
            Not claimed by the caller, or signed (amend first); audited.
        InvalidInput
            The measurement refused the positions (:class:`FiducialsRefused`); audited,
            nothing kept.
        StaleReading
            Someone moved the task first.
        """
        before = self._visible(person, reading_id)
        now = self._clock()
        action = "reading.fiducials"
        task = self._apply(person, before, ReadingEvent.EDIT, now, action=action)
        kept = self._repo.fiducials(reading_id)
        previous = dict(kept.fiducials_ms) if kept is not None else {}
        merged = dict(previous)
        for name, ms in corrections.items():
            if ms is None:
                merged.pop(name, None)
            else:
                merged[name] = float(ms)
        asked = ",".join(f"{n}={_ms_text(v)}" for n, v in sorted(corrections.items()))
        try:
            if not corrections:
                raise InvalidInput("fiducials", "give at least one fiducial to correct")
            positions, measured = remeasure(before, previous, merged)
        except InvalidInput as exc:
            self._denied(before, action, person, now, exc, asked=asked[:400])
            raise
        saved = ReadingFiducials(fiducials_ms=merged, updated_by=person.username, updated_at=now)
        changed = sorted(corrections)
        self._repo.transition(
            before,
            replace(before, task=task),
            self._event(
                before,
                action,
                person,
                now,
                before=",".join(f"{n}={_ms_text(positions.get(n))}" for n in changed),
                after=asked,
                **{"from": before.task.state.value, "to": task.state.value},
            ),
            fiducials=saved,
        )
        return saved, measured

    def fiducials(self, person: Person, reading_id: str) -> ReadingFiducials | None:
        """The corrected fiducials kept with the draft, for anyone who sees the task
        (the signed versions carry theirs)."""
        self._visible(person, reading_id)
        return self._repo.fiducials(reading_id)

    def label_beat(
        self, person: Person, reading_id: str, beat: int, label: str, beats_of: EngineBeats
    ) -> tuple[ReadingBeatLabels, Sequence[int]]:
        """The claimant labels beat ``beat`` (its index among the engine's beats of the
        measured window, as ``beats_of`` gives them) ``label`` (N, S, V, P, Q: the
        table's ``edit``, as for the draft); kept with the draft, audited as
        ``reading.beat_label`` with the beat, its sample and the label before and
        after. Answers the labels kept and the beats.

        Raises
        ------
        TransitionNotAllowed, NotPermitted, ClaimedByAnother
            Not claimed by the caller, or signed (amend first); audited.
        UnknownBeatLabel, BeatOutOfRange
            Not a label, or no such beat (400); audited, nothing kept.
        StaleReading
            Someone moved the task first.
        """
        before = self._visible(person, reading_id)
        now = self._clock()
        action = "reading.beat_label"
        task = self._apply(person, before, ReadingEvent.EDIT, now, action=action)
        beats = beats_of(before)
        kept = self._repo.beat_labels(reading_id)
        previous = dict(kept.labels) if kept is not None else {}
        try:
            merged = relabel(previous, beat, label, len(beats))
        except InvalidInput as exc:
            self._denied(before, action, person, now, exc, beat=str(beat), label=label[:16])
            raise
        saved = ReadingBeatLabels(labels=merged, updated_by=person.username, updated_at=now)
        self._repo.transition(
            before,
            replace(before, task=task),
            self._event(
                before,
                action,
                person,
                now,
                beat=str(beat),
                sample=str(beats[beat]),
                before=previous.get(beat, BeatLabel.NORMAL).value,
                after=merged[beat].value,
                **{"from": before.task.state.value, "to": task.state.value},
            ),
            beat_labels=saved,
        )
        return saved, beats

    def beat_labels(self, person: Person, reading_id: str) -> ReadingBeatLabels | None:
        """The reader's beat labels kept with the draft, for anyone who sees the task
        (the signed versions carry theirs)."""
        self._visible(person, reading_id)
        return self._repo.beat_labels(reading_id)

    def report(self, person: Person, reading_id: str) -> ReadingReport | None:
        """The draft, for the centre's readers and coordinators (the clinic sees the
        signed versions only)."""
        record = self._visible(person, reading_id)
        if not reading_parties(record.task, self._reader(person, record.task)):
            return None
        return self._repo.report(reading_id)

    def versions(self, person: Person, reading_id: str) -> Sequence[SignedVersion]:
        """The signed versions, for anyone who sees the task."""
        self._visible(person, reading_id)
        return self._repo.versions(reading_id)

    def export(
        self, person: Person, reading_id: str, form: str
    ) -> tuple[ReadingRecord, Sequence[SignedVersion]]:
        """The task and its signed versions for an export, audited (``reading.exported``).

        Raises
        ------
        NotFound
            Not the caller's to see, or nothing is signed.
        """
        record = self._visible(person, reading_id)
        versions = self._repo.versions(reading_id)
        if not versions:
            raise NotFound("signed report", reading_id)
        self._repo.audit(
            self._event(record, "reading.exported", person, self._clock(), format=form)
        )
        return record, versions

    def _signing_key(self, person: Person, now: datetime) -> KeyPair:
        keys = self._keys.signer_key(person.id)
        if keys is None:
            keys = KeyPair.generate()
            try:
                self._keys.add_signer_key(
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
            except Conflict:
                found = self._keys.signer_key(person.id)
                assert found is not None
                keys = found
        return keys

    def _name_of(self, code: str) -> str:
        found = self._directory.get_institution(code)
        return found.name if found is not None else code

    def sign(
        self,
        person: Person,
        reading_id: str,
        totp: str | None,
        measure: SignedMeasurements | None = None,
        beats_of: Callable[[ReadingRecord], Sequence[int] | None] | None = None,
    ) -> ReadingView:
        """The claimant signs the draft: a new signed version (``corrects`` the last one
        when amending), the report returns to the clinic. ``measure`` gives the
        measurements the version carries (on the reader's corrected fiducials),
        ``beats_of`` the beats its beat counts are made on (the reader's labels, N
        elsewhere; None: not kept, no counts); both asked only once the table and the
        second factor allowed the signature.

        Raises
        ------
        TransitionNotAllowed, NotPermitted, ClaimedByAnother
            Not in a state to sign, or not the claimant (audited).
        InvalidInput
            No report saved, or one with neither statements nor text.
        TotpRequired
            The second factor is missing or wrong (audited).
        StaleReading
            Someone moved the task first.
        """
        before = self._visible(person, reading_id)
        now = self._clock()
        # The table decides first (409/403), before the second factor is asked.
        self._apply(person, before, ReadingEvent.SIGN, now, signed=True)
        draft = self._repo.report(reading_id)
        if draft is None or not (draft.statements or draft.text):
            refused = InvalidInput("report", "write the report (PUT .../report) before signing")
            self._denied(before, "reading.sign", person, now, refused)
            raise refused
        try:
            self._second_factor.confirm_totp(person, totp)
        except TotpRequired as exc:
            self._denied(before, "reading.sign", person, now, exc)
            raise
        keys = self._signing_key(person, now)
        task = self._apply(person, before, ReadingEvent.SIGN, now, signed=True)
        previous = self._repo.versions(reading_id)
        corrected = self._repo.fiducials(reading_id)
        measured = (
            None
            if measure is None
            else measure(before, dict(corrected.fiducials_ms) if corrected is not None else {})
        )
        labelled = self._repo.beat_labels(reading_id)
        labels = dict(labelled.labels) if labelled is not None else {}
        beats = None if beats_of is None else beats_of(before)
        counted = None if beats is None else beat_counts(beat_labels(len(beats), labels))
        document: dict[str, object] = {
            "kind": DOCUMENT_KIND,
            "reading": reading_id,
            "patient": before.patient,
            "stream": before.stream,
            "record": before.record,
            "received_at": iso_utc(before.task.received_at),
            "signer": person.username,
            "signed_at": iso_utc(now),
            "version": task.version,
            "corrects": digest(previous[-1].document) if previous else None,
            "report": {"statements": list(draft.statements), "text": draft.text},
            # Decimal strings: floats are not signed (their text is not canonical).
            "fiducials_ms": {k: f"{v:.3f}" for k, v in sorted(corrected.fiducials_ms.items())}
            if corrected is not None
            else {},
            "critical": list(before.task.critical),
            **({"measurements": dict(measured)} if measured is not None else {}),
            # The reader's beat labels by beat index, and every label's count.
            "beat_labels": {str(i): v.value for i, v in sorted(labels.items())},
            **({"beat_counts": counted} if counted is not None else {}),
            "context": {
                "clinic": self._name_of(before.task.clinic),
                "centre": self._name_of(before.task.centre),
                "signer_name": person.display_name,
                "signer_title": person.title or "",
                "signer_institution": self._name_of(person.institution)
                if person.institution
                else "",
            },
        }
        version = SignedVersion(
            document=document, signature=sign(document, keys), public_key=keys.public_key
        )
        after = replace(before, task=task)
        self._repo.add_version(
            version,
            self._event(
                before,
                "reading.sign",
                person,
                now,
                version=str(task.version),
                fingerprint=keys.fingerprint,
                signed_at=iso_utc(now),
            ),
            (before, after),
        )
        self._notify_clinic(after, "reading.sign", now)
        return self._view(person, replace(after, revision=before.revision + 1))

    def _notify_clinic(self, record: ReadingRecord, kind: str, now: datetime) -> None:
        task = record.task
        self._notifier.notify(
            ReadingNotice(
                kind=kind,
                reading=task.id,
                at=now,
                usernames=frozenset(self._people(task.clinic, Role.DOCTOR)),
                institutions=frozenset({task.clinic, task.centre}),
            )
        )

    # Critical values
    def _told(
        self, record: ReadingRecord, code: str, raised_by: str | None, now: datetime
    ) -> CriticalRecord:
        """A new critical value, told at once to the clinic's doctors and the centre's
        readers (and the claimant)."""
        task = record.task
        told = self._people(task.clinic, Role.DOCTOR) + self._people(task.centre, Role.ECG_READER)
        if task.claimant is not None:
            told.append(task.claimant)
        raised = CriticalValue(
            id=self._new_id(),
            code=code,
            reading=task.id,
            state=CriticalState.RAISED,
            detected_at=now,
        )
        value = apply_critical(raised, CriticalEvent.NOTIFY, now, told=tuple(dict.fromkeys(told)))
        return CriticalRecord(
            value=value,
            clinic=task.clinic,
            centre=task.centre,
            patient=record.patient,
            raised_by=raised_by,
            escalate_at=escalation_due(value, self.acknowledge_within),
        )

    def _tell(
        self, found: CriticalRecord, kind: str, now: datetime, usernames: Sequence[str] = ()
    ) -> None:
        value = found.value
        self._notifier.notify(
            ReadingNotice(
                kind=kind,
                reading=value.reading,
                critical=value.id,
                code=value.code,
                at=now,
                level=ESCALATION_LEVELS[value.level] if value.level >= 0 else None,
                usernames=frozenset(usernames or value.notified),
                institutions=frozenset({found.clinic, found.centre}),
            )
        )

    def raise_critical(self, person: Person, reading_id: str, code: str) -> CriticalRecord:
        """A reader marks a critical finding on a task; it is told at once.

        Raises
        ------
        Forbidden
            Not a reader or coordinator of the centre.
        InvalidInput
            Not a known critical code.
        Conflict
            That finding is raised on the task already.
        """
        before = self._visible(person, reading_id)
        now = self._clock()
        [checked] = _check_codes("code", [code], self.critical_codes)
        mine = reading_parties(before.task, self._reader(person, before.task))
        if not mine & {ReadingParty.READER, ReadingParty.COORDINATOR}:
            self._repo.audit(
                self._event(
                    before, "critical.raised", person, now, outcome="denied", code="forbidden"
                )
            )
            raise Forbidden("only the centre's ECG readers and coordinators raise a critical value")
        critical = before.task.critical + (() if checked in before.task.critical else (checked,))
        after = replace(before, task=replace(before.task, critical=critical))
        found = self._told(after, checked, person.username, now)
        self._repo.add_critical(
            found,
            self._critical_event(
                found, "critical.raised", person, now, told=str(len(found.value.notified))
            ),
            (before, after),
        )
        self._tell(found, "critical.raised", now)
        return found

    def task_of_stream(self, stream_id: str) -> ReadingRecord | None:
        """The reading task of a device stream, for the server's own work on it (no
        person's right is checked: never answer a request with it); None without one."""
        return self._repo.by_stream(stream_id)

    def engine_critical(self, stream_id: str, code: str) -> CriticalRecord | None:
        """A critical finding the engine made on a stream after its task was made (the
        record's re-annotation): raised and told at once. None when the stream has no
        task or the finding is raised on it already.

        Raises
        ------
        InvalidInput
            A malformed code.
        """
        before = self._repo.by_stream(stream_id)
        [checked] = _check_codes("code", [code], None)
        if before is None or checked in before.task.critical:
            return None
        now = self._clock()
        after = replace(
            before, task=replace(before.task, critical=(*before.task.critical, checked))
        )
        found = self._told(after, checked, None, now)
        try:
            self._repo.add_critical(
                found,
                self._critical_event(
                    found, "critical.raised", None, now, told=str(len(found.value.notified))
                ),
                (before, after),
            )
        except Conflict:
            return None
        self._tell(found, "critical.raised", now)
        return found

    def _visible_critical(self, person: Person, critical_id: str) -> CriticalRecord:
        found = self._repo.critical(critical_id)
        if found is None or not (
            self._serves(person, found.clinic) or person.username in found.value.notified
        ):
            raise NotFound("critical value", critical_id)
        return found

    def critical(self, person: Person, critical_id: str) -> CriticalRecord:
        """One critical value, for someone who sees its task or was told of it."""
        return self._visible_critical(person, critical_id)

    def criticals(
        self,
        person: Person,
        page: PageRequest,
        *,
        states: frozenset[CriticalState] | None = None,
        clinic: str | None = None,
    ) -> Page[CriticalRecord]:
        """The critical-value register (危急值登记) of the clinics the caller's
        institution serves for ECG, newest first."""
        clinics = self._served_clinics(person)
        if clinic is not None:
            clinics = clinics & {clinic}
        if not clinics:
            return Page(items=(), total=0)
        return self._repo.list_criticals(CriticalFilter(clinics=clinics, states=states), page)

    def acknowledge(
        self, person: Person, critical_id: str, read_back: str | None
    ) -> CriticalRecord:
        """A person who was told acknowledges, saying the finding back as understood.

        Raises
        ------
        NotNotified
            The caller was not told of it (403, audited).
        InvalidInput
            No read-back (audited).
        TransitionNotAllowed
            It is acknowledged already (409, audited).
        StaleReading
            Someone else acknowledged it at the same moment.
        """
        before = self._visible_critical(person, critical_id)
        now = self._clock()
        if read_back is not None and len(read_back) > MAX_READ_BACK_CHARS:
            raise InvalidInput("read_back", f"at most {MAX_READ_BACK_CHARS} characters")
        try:
            try:
                value = apply_critical(
                    before.value,
                    CriticalEvent.ACKNOWLEDGE,
                    now,
                    by=person.username,
                    read_back=read_back,
                )
            except CriticalTransitionError as exc:
                told = person.username in before.value.notified
                raise TransitionNotAllowed(
                    "critical value",
                    "notified" if told else party_names(frozenset()),
                    exc.state,
                    exc.event,
                ) from None
        except (NotNotified, InvalidInput, TransitionNotAllowed) as exc:
            self._repo.audit(
                self._critical_event(
                    before,
                    "critical.acknowledge",
                    person,
                    now,
                    outcome="denied",
                    state=before.value.state.value,
                    code=exc.code,
                )
            )
            raise
        after = replace(before, value=value, escalate_at=None)
        self._repo.update_critical(
            before,
            after,
            self._critical_event(
                before,
                "critical.acknowledge",
                person,
                now,
                read_back=value.read_back or "",
                within_s=str(int((now - before.value.detected_at).total_seconds())),
            ),
        )
        # Everyone told hears it is in hand.
        self._tell(after, "critical.acknowledge", now)
        return replace(after, revision=before.revision + 1)

    def escalate_due(self, now: datetime | None = None, limit: int = 100) -> list[CriticalRecord]:
        """Escalate each critical value whose acknowledgement is overdue by one level (the
        server's sweep): level 0 the clinic's doctors again, 1 the centre's
        coordinators, 2 the phone gateway (the notice's ``level``); audited
        (``critical.escalate``). Answers the values escalated; one acknowledged meanwhile
        is left alone."""
        now = now or self._clock()
        done: list[CriticalRecord] = []
        last = len(ESCALATION_LEVELS) - 1
        for before in self._repo.due_criticals(now, limit):
            level = min(before.value.level + 1, last)
            name = ESCALATION_LEVELS[level]
            if name == "clinic_doctors":
                told = self._people(before.clinic, Role.DOCTOR)
            elif name == "centre_coordinators":
                told = self._people(before.centre, Role.COORDINATOR)
            else:
                told = []
            value = apply_critical(before.value, CriticalEvent.ESCALATE, now, told=tuple(told))
            # After the last level nothing more is due: the gateway has it.
            due = None if value.level >= last else escalation_due(value, self.acknowledge_within)
            after = replace(before, value=value, escalate_at=due)
            try:
                self._repo.update_critical(
                    before,
                    after,
                    self._critical_event(
                        before, "critical.escalate", None, now, level=name, told=",".join(told)
                    ),
                )
            except Conflict:
                continue
            self._tell(after, "critical.escalate", now, told or value.notified)
            done.append(replace(after, revision=before.revision + 1))
        return done
