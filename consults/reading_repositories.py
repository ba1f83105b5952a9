"""What the ECG centre's reading service needs from storage: the records it keeps and
the Protocols it calls.

Design notes
------------
- A reading task is kept as :class:`~consults.readings.ReadingTask` (what the transition
  table reads) plus where the ECG is (a device ``stream`` or an uploaded ``record``), the
  opaque patient id and the engine's top statements: :class:`ReadingRecord`.
- The worklist order is :func:`consults.readings.worklist_key`; the store keeps it as
  one small integer column (``urgency``: 0 critical and STAT, 1 critical, 2 STAT, 3
  neither) and the arrival time, so the most urgent page is an index scan.
- Every write that changes a task or a critical value takes the
  :class:`~consults.repositories.AuditEvent` that records it and stores both in ONE
  transaction. A step is stored only if the record is still at the revision the service
  read (compare-and-set): of two readers claiming at once, one wins and the other gets
  :class:`StaleReading` (409), nothing changed.
- The signing keys are the consult service's (:class:`SignerKeys`, which
  :class:`store.consults.SqlConsultRepository` implements): one key per signer,
  whatever they sign.
- A critical value's next escalation time (``escalate_at``) is computed by the service
  from :func:`consults.readings.escalation_due` and handed down, so the sweep's query
  is a plain indexed comparison.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol

from consults.errors import Conflict, ConsultsError
from consults.opinions import SignedVersion
from consults.readings import (
    BeatLabel,
    CriticalState,
    CriticalValue,
    ReadingState,
    ReadingTask,
)
from consults.repositories import AuditEvent, Page, PageRequest
from consults.signatures import KeyPair

__all__ = [
    "CriticalFilter",
    "CriticalRecord",
    "ReadingBeatLabels",
    "ReadingFiducials",
    "ReadingFilter",
    "ReadingRecord",
    "ReadingReport",
    "ReadingRepository",
    "SignerKeys",
    "StaleReading",
    "urgency",
]


class StaleReading(Conflict):
    """The task or critical value changed since it was read (another step came first)."""

    code: ClassVar[str] = "reading_changed"

    def __init__(self, key: str) -> None:
        ConsultsError.__init__(self, "the reading changed meanwhile: reload it and try again")
        self.kind = "reading"
        self.key = key


def urgency(task: ReadingTask) -> int:
    """:func:`consults.readings.worklist_key`'s first two parts as one integer (0 first)."""
    return (0 if task.critical else 2) + (0 if task.stat else 1)


@dataclass(frozen=True, kw_only=True)
class ReadingRecord:
    """One reading task: its lifecycle, what ECG it reads, and its revision."""

    task: ReadingTask
    stream: str | None = None  # a device stream's id
    record: str | None = None  # an uploaded record's id
    patient: str | None = None  # opaque patient id (never a national id)
    top_statements: tuple[str, ...] = ()  # the engine's proposal, most important first
    revision: int = 0


@dataclass(frozen=True, kw_only=True)
class ReadingReport:
    """The reader's draft: coded statements and free text."""

    statements: tuple[str, ...]
    text: str
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class ReadingFiducials:
    """The reader's corrections of the global fiducials, kept with the draft: ms from the
    median beat's first sample, by name (``p_on``, ``p_off``, ``qrs_on``, ``qrs_off``,
    ``t_off``; a name not here is the engine's), and who made the last one, when."""

    fiducials_ms: Mapping[str, float]
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class ReadingBeatLabels:
    """The reader's beat labels, kept with the draft: by the beat's index among the
    engine's beats of the measured window (a beat not here is N), and who made the last
    change, when."""

    labels: Mapping[int, BeatLabel]
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class CriticalRecord:
    """One critical value, with what the register and the sweep need."""

    value: CriticalValue
    clinic: str
    centre: str
    patient: str | None = None
    raised_by: str | None = None  # a reader's username; None: the engine
    escalate_at: datetime | None = None  # the next escalation, None: none pending
    revision: int = 0


@dataclass(frozen=True, kw_only=True)
class ReadingFilter:
    """Which tasks to list: of these clinics (every given condition holds), most urgent
    first (:func:`consults.readings.worklist_key`), or the newest first."""

    clinics: frozenset[str]
    states: frozenset[ReadingState] | None = None
    reader: str | None = None  # the claimant or the signer
    patient: str | None = None  # one patient's tasks (the reading page's previous ECGs)
    received_before: datetime | None = None  # received strictly before this time
    newest_first: bool = False  # by received time, newest first, instead of by urgency


@dataclass(frozen=True, kw_only=True)
class CriticalFilter:
    """Which critical values to list (the register): of these clinics, newest first."""

    clinics: frozenset[str]
    states: frozenset[CriticalState] | None = None


class SignerKeys(Protocol):
    """The signers' keys (the consult service's store keeps them)."""

    def signer_key(self, person_id: str) -> KeyPair | None:
        """The person's signing key (the private part unsealed), or None."""

    def add_signer_key(self, person_id: str, keys: KeyPair, event: AuditEvent) -> None:
        """Keep a new signing key for the person (the private part sealed at rest).

        Raises
        ------
        consults.errors.Conflict
            The person has a key already (two first signatures raced).
        """


class ReadingRepository(Protocol):
    """Reading tasks, reports and critical values on a store. Every method is one
    transaction; blocking (call from a worker thread). Database failures raise
    :class:`~consults.errors.RepositoryError`."""

    def create(
        self,
        record: ReadingRecord,
        criticals: Sequence[CriticalRecord],
        events: Sequence[AuditEvent],
    ) -> None:
        """Store a new task, its first critical values and their audit rows.

        Raises
        ------
        consults.errors.Conflict
            A task of that id, stream or record exists already.
        """

    def get(self, reading_id: str) -> ReadingRecord | None:
        """The task, or None."""

    def by_stream(self, stream_id: str) -> ReadingRecord | None:
        """The task of a device stream, or None."""

    def transition(
        self,
        before: ReadingRecord,
        after: ReadingRecord,
        event: AuditEvent,
        report: ReadingReport | None = None,
        fiducials: ReadingFiducials | None = None,
        beat_labels: ReadingBeatLabels | None = None,
    ) -> None:
        """Store ``after`` (and the draft ``report``, the corrected ``fiducials``, the
        ``beat_labels``, if given) if the task is still at ``before.revision``, with its
        audit row.

        Raises
        ------
        StaleReading
            It changed meanwhile.
        """

    def list(self, where: ReadingFilter, page: PageRequest) -> Page[ReadingRecord]:
        """A worklist page, most urgent first, then the longest waiting."""

    def fiducials(self, reading_id: str) -> ReadingFiducials | None:
        """The reader's corrected fiducials, or None (the engine's stand)."""

    def beat_labels(self, reading_id: str) -> ReadingBeatLabels | None:
        """The reader's beat labels, or None (every beat N)."""

    def report(self, reading_id: str) -> ReadingReport | None:
        """The draft, or None."""

    def versions(self, reading_id: str) -> Sequence[SignedVersion]:
        """The signed versions, version 1 first."""

    def add_version(
        self,
        version: SignedVersion,
        event: AuditEvent,
        transition: tuple[ReadingRecord, ReadingRecord],
    ) -> None:
        """Store a signed version and the ``sign`` transition it completes, and its row.

        Raises
        ------
        StaleReading
            The task changed meanwhile.
        consults.errors.Conflict
            That version number is stored already.
        """

    def add_critical(
        self,
        critical: CriticalRecord,
        event: AuditEvent,
        transition: tuple[ReadingRecord, ReadingRecord] | None = None,
    ) -> None:
        """Store a new critical value (and the task's new codes) with its row.

        Raises
        ------
        consults.errors.Conflict
            That finding is raised on that task already.
        StaleReading
            The task changed meanwhile.
        """

    def critical(self, critical_id: str) -> CriticalRecord | None:
        """A critical value, or None."""

    def criticals_of(self, reading_id: str) -> Sequence[CriticalRecord]:
        """A task's critical values, oldest first."""

    def update_critical(
        self, before: CriticalRecord, after: CriticalRecord, event: AuditEvent
    ) -> None:
        """Store a critical value's step if it is still at ``before.revision``.

        Raises
        ------
        StaleReading
            It changed meanwhile.
        """

    def list_criticals(self, where: CriticalFilter, page: PageRequest) -> Page[CriticalRecord]:
        """The register: newest detected first."""

    def due_criticals(self, now: datetime, limit: int) -> Sequence[CriticalRecord]:
        """Critical values not acknowledged whose ``escalate_at`` has passed, earliest
        first."""

    def audit(self, event: AuditEvent) -> None:
        """Record an attempt that changed nothing (a refused step)."""
