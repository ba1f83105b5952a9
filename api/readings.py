"""``/api/v1/readings`` and ``/api/v1/criticals``: the ECG centre over REST, and
:func:`reading_api`, what the lead wires.

Design notes
------------
- Thin handlers, as in :mod:`api.consults`: each turns its Struct into a call of
  :class:`consults.reading_service.ReadingService` (which applies the tables, the rights
  and the audit) and the result back into a Struct. Synchronous, run in a worker thread
  (``sync_to_thread=True``); the caller is the ``principal`` dependency of
  :func:`api.auth.account_api`, CSRF its middleware; errors go through
  :func:`api.session.consults_error` (the one status mapping).
- A transition is ``POST /readings/{id}/{event}`` with the table's name of the event
  (``claim``, ``release``, ``return``, ``amend``, ``sign``); ``edit`` is
  ``PUT /readings/{id}/report``. The table's refusals keep their codes: 409
  ``transition_not_allowed`` (the reason names the party, the event and the state),
  403 ``forbidden``, 403 ``claimed_by_another`` (naming the claimant), 404
  ``not_found`` (a task of a clinic the caller's institution does not serve, answered
  as if it did not exist), 409 ``reading_changed`` (someone moved it first).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import functools
import hashlib
import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, Final, Literal, Protocol

import msgspec
from litestar import Controller, Response, get, post, put
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency, Provide
from litestar.params import Parameter, QueryParameter
from litestar.response import File
from litestar.types import ControllerRouterHandler, Middleware
from msgspec import Meta

from api.consults import SignatureOut, VersionAnswer
from api.errors import ApiError
from api.schemas import body, documented
from api.session import consults_error
from consults.accounts import Principal
from consults.errors import ConsultsError
from consults.opinions import SignedVersion
from consults.reading_repositories import (
    CriticalRecord,
    ReadingBeatLabels,
    ReadingFiducials,
    ReadingRecord,
    ReadingReport,
)
from consults.reading_service import FiducialsRefused, ReadingService, ReadingView
from consults.readings import (
    ESCALATION_LEVELS,
    BeatLabel,
    CriticalState,
    ReadingEvent,
    ReadingState,
    beat_counts,
    beat_labels,
)
from consults.repositories import PageRequest

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from ecg.annotate import AnnotateConfig
    from ecg.measure import Measurements
    from ecg.paper_content import ReportInfo
    from ecg.record import Record
    from ecg.statements import Interpretation

__all__ = [
    "BeatLabelIn",
    "BeatLabelsAnswer",
    "CriticalController",
    "EcgLibraryController",
    "EcgSignals",
    "FiducialsIn",
    "FiducialsState",
    "MedianAnswer",
    "ReadingApi",
    "ReadingController",
    "ReadingEcg",
    "SignalSource",
    "annotate_ahead",
    "reading_api",
    "reading_ecg",
    "report_info",
]

# Schemas

Code = Annotated[str, Meta(min_length=1, max_length=32, examples=["STE_ANT"])]
TotpCode = Annotated[str, Meta(min_length=1, max_length=10, examples=["123456"])]
PathId = Annotated[str, Parameter(max_length=64)]
_NO_STORE: Final = {"cache-control": "no-store"}


class StepBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /readings/{id}/{event}``: ``return`` takes a ``reason``, ``sign`` its
    ``totp``; the others ``{}`` (or no body)."""

    reason: Annotated[str, Meta(min_length=1, max_length=500)] | None = None
    totp: TotpCode | None = None


class ReportIn(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /readings/{id}/report``: the draft, replaced whole: coded statements (of the
    statement library) and free text."""

    statements: Annotated[list[Code], Meta(max_length=50)]
    text: Annotated[str, Meta(max_length=4_000)] = ""


class CriticalIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /readings/{id}/criticals``: a reader marks a critical finding."""

    code: Annotated[str, Meta(min_length=1, max_length=32, examples=["VT"])]


class AcknowledgeIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /criticals/{id}/acknowledge``: the finding said back as understood."""

    read_back: Annotated[str, Meta(max_length=500, examples=["室颤，李医生已知悉"])]


class ReadingItem(msgspec.Struct):
    """One line of the worklist (``stream`` or ``record`` says where the ECG is)."""

    id: Annotated[str, Meta(examples=["3f2b9c1e7d4a4f0e9a1b2c3d4e5f6a7b"])]
    stream: str | None
    record: str | None
    clinic: str
    centre: str
    patient: str | None
    critical: list[str]
    state: ReadingState
    stat: bool
    received_at: dt.datetime
    top_statements: list[str]
    claimant: str | None
    signer: str | None
    version: int
    signed_at: dt.datetime | None
    reason: str | None


class ReadingPage(msgspec.Struct):
    """A page of the worklist, most urgent first, and the size of the whole list."""

    items: list[ReadingItem]
    total: int
    limit: int
    offset: int


class CriticalAnswer(msgspec.Struct):
    """A critical value (危急值) and who was told, who acknowledged and when."""

    id: Annotated[str, Meta(examples=["9c1e7d4a4f0e9a1b2c3d4e5f6a7b3f2b"])]
    reading: str
    code: str
    state: CriticalState
    clinic: str
    centre: str
    patient: str | None
    raised_by: str | None
    detected_at: dt.datetime
    notified: list[str]
    notified_at: dt.datetime | None
    level: str | None
    escalate_at: dt.datetime | None
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None
    read_back: str | None


class CriticalPage(msgspec.Struct):
    """A page of the critical-value register, newest first."""

    items: list[CriticalAnswer]
    total: int
    limit: int
    offset: int


class ReadingAnswer(ReadingItem):
    """A task as the caller may see it: ``allowed`` are the events they may take now,
    ``parties`` their relations to it, ``criticals`` its critical values."""

    allowed: list[ReadingEvent]
    parties: list[str]
    criticals: list[CriticalAnswer]
    revision: int


class ReportAnswer(msgspec.Struct):
    """The draft report as saved."""

    statements: list[str]
    text: str
    updated_by: str
    updated_at: dt.datetime


class ReportsAnswer(msgspec.Struct):
    """The draft (for the centre's readers and coordinators; null for the clinic) and
    every signed version, version 1 first."""

    draft: ReportAnswer | None
    versions: list[VersionAnswer]


Band = Literal["diagnostic", "monitoring"]


class EngineStatement(msgspec.Struct):
    """A statement the engine proposes, with its texts, severity and the evidence that
    produced it (measurements with their units in the names, the thresholds they met as
    ``*_min``/``*_max``, or words as ``reason``)."""

    code: Annotated[str, Meta(examples=["1AVB"])]
    text_en: str
    text_zh: str
    severity: str
    evidence: Annotated[
        dict[str, float | str | None], Meta(examples=[{"pr_ms": 232.0, "pr_min_ms": 200.0}])
    ] = {}


class EngineCritical(msgspec.Struct):
    """A critical finding the engine made in the measured window (samples of the
    record)."""

    code: Annotated[str, Meta(examples=["PAUSE"])]
    text_en: str
    text_zh: str
    onset: int
    offset: int


class EngineMeasurements(msgspec.Struct):
    """The engine's global measurements of the measured window (null: not measurable:
    too few beats, no P wave...)."""

    hr_bpm: Annotated[float | None, Meta(examples=[68.9])]
    rr_ms: float | None
    pr_ms: float | None
    p_ms: float | None
    qrs_ms: float | None
    qt_ms: float | None
    qtc_ms: float | None
    qtc_formula: str
    p_axis_deg: float | None
    qrs_axis_deg: float | None
    t_axis_deg: float | None


class ReadingEcg(msgspec.Struct):
    """A window of the task's ECG for the reading page, and what the engine found.

    ``samples_uv[lead][i]`` is sample ``first_index + i`` of that lead (record samples
    from its start) in µV, filtered in ``band`` (null where the record holds no valid
    sample); ``beats`` are the R peaks of the measured window (record samples);
    ``measurements``, ``statements`` and ``critical`` are the engine's, on the first
    ``measured_s`` seconds (the standard 10 s of a diagnostic ECG)."""

    reading: str
    fs_hz: Annotated[float, Meta(examples=[500.0])]
    leads: list[str]
    total_s: float
    first_index: int
    start_s: float
    duration_s: float
    band: Band
    samples_uv: list[list[int | None]]
    measured_s: float
    beats: list[int]
    measurements: EngineMeasurements | None
    statements: list[EngineStatement]
    critical: list[EngineCritical]
    # Each beat's label (the reader's, else N) and how many beats bear each label.
    beat_labels: list[BeatLabel] = []
    beat_counts: Annotated[dict[str, int], Meta(examples=[{"N": 10, "V": 2}])] = {}


class BeatLabelIn(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /readings/{id}/beats/{beat}``: the beat's new label: ``N`` (normal), ``S``
    (supraventricular), ``V`` (ventricular), ``P`` (paced) or ``Q`` (artefact)."""

    label: Annotated[str, Meta(min_length=1, max_length=16, examples=["V"])]


class BeatLabelsAnswer(msgspec.Struct):
    """The beats of the measured window (R peaks, record samples), each one's label,
    the count of each label, which beats the reader labelled, by whom and when."""

    beats: Annotated[list[int], Meta(examples=[[312, 748, 1190]])]
    labels: list[BeatLabel]
    counts: Annotated[dict[str, int], Meta(examples=[{"N": 2, "V": 1}])]
    labelled: list[int]
    labelled_by: str | None
    labelled_at: dt.datetime | None


class LibraryStatement(msgspec.Struct):
    """A statement of the coded library the report takes."""

    code: Annotated[str, Meta(examples=["STE_ANT"])]
    text_en: str
    text_zh: str
    severity: str


class LibraryCritical(msgspec.Struct):
    """A critical finding a reader may mark."""

    code: Annotated[str, Meta(examples=["VT"])]
    text_en: str
    text_zh: str


class EcgLibrary(msgspec.Struct):
    """The coded statement library and the critical findings, with their texts."""

    statements: list[LibraryStatement]
    criticals: list[LibraryCritical]


FiducialName = Literal["p_on", "p_off", "qrs_on", "qrs_off", "t_off"]


class FiducialsIn(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /readings/{id}/fiducials``: corrected global fiducials, ms from the median
    beat's first sample (any of ``p_on``, ``p_off``, ``qrs_on``, ``qrs_off``,
    ``t_off``; null: back to the engine's). Those not named keep their position."""

    fiducials_ms: Annotated[
        dict[FiducialName, float | None], Meta(min_length=1, examples=[{"qrs_off": 542.0}])
    ]


class FiducialsMs(msgspec.Struct):
    """Global fiducials, ms from the median beat's first sample (null: none found)."""

    p_on: Annotated[float | None, Meta(examples=[322.0])]
    p_off: float | None
    qrs_on: float | None
    qrs_off: float | None
    t_off: float | None


class FiducialsState(msgspec.Struct):
    """The fiducials in effect (the engine's, with the reader's corrections over them)
    and the measurements made on them; ``corrected`` names the corrected ones."""

    fiducials_ms: FiducialsMs
    engine_ms: FiducialsMs
    corrected: list[FiducialName]
    corrected_by: str | None
    corrected_at: dt.datetime | None
    measurements: EngineMeasurements | None
    # The engine's statements, those resting on the measurements made again on the
    # fiducials in effect (api.reading_statements).
    statements: list[EngineStatement] = []


class MedianLead(msgspec.Struct):
    """One lead's median beat on the diagnostic band: ``samples_uv[i]`` is sample ``i``
    of the beat, µV, at the record's rate (empty where the lead has none); ``iso_uv``
    its isoelectric level."""

    lead: Annotated[str, Meta(examples=["II"])]
    usable: bool
    samples_uv: list[int]
    iso_uv: int


class MedianAnswer(msgspec.Struct):
    """The median beat of every lead and the global fiducials on it.

    Every beat has ``length`` samples at ``fs_hz``; its R peak is sample ``r_index``
    (the detector's R peaks align the beats), so sample ``i`` lies
    ``(i - r_index) / fs_hz`` s from the R; ``fiducials`` are in ms from sample 0."""

    reading: str
    fs_hz: Annotated[float, Meta(examples=[500.0])]
    length: int
    r_index: int
    leads: list[MedianLead]
    fiducials: FiducialsState


def _item_fields(record: ReadingRecord) -> dict[str, Any]:
    t = record.task
    return {
        "id": t.id,
        "stream": record.stream,
        "record": record.record,
        "clinic": t.clinic,
        "centre": t.centre,
        "patient": record.patient,
        "critical": list(t.critical),
        "state": t.state,
        "stat": t.stat,
        "received_at": t.received_at,
        "top_statements": list(record.top_statements),
        "claimant": t.claimant,
        "signer": t.signer,
        "version": t.version,
        "signed_at": t.signed_at,
        "reason": t.reason,
    }


def _critical(found: CriticalRecord) -> CriticalAnswer:
    v = found.value
    return CriticalAnswer(
        id=v.id,
        reading=v.reading,
        code=v.code,
        state=v.state,
        clinic=found.clinic,
        centre=found.centre,
        patient=found.patient,
        raised_by=found.raised_by,
        detected_at=v.detected_at,
        notified=list(v.notified),
        notified_at=v.notified_at,
        level=ESCALATION_LEVELS[v.level] if v.level >= 0 else None,
        escalate_at=found.escalate_at,
        acknowledged_by=v.acknowledged_by,
        acknowledged_at=v.acknowledged_at,
        read_back=v.read_back,
    )


def _answer(view: ReadingView) -> ReadingAnswer:
    return ReadingAnswer(
        **_item_fields(view.record),
        allowed=list(view.allowed),
        parties=sorted(p.value for p in view.parties),
        criticals=[_critical(c) for c in view.criticals],
        revision=view.record.revision,
    )


def _report(found: ReadingReport) -> ReportAnswer:
    return ReportAnswer(
        statements=list(found.statements),
        text=found.text,
        updated_by=found.updated_by,
        updated_at=found.updated_at,
    )


def _version(signed: SignedVersion) -> VersionAnswer:
    doc = signed.document
    corrects = doc.get("corrects")
    return VersionAnswer(
        version=int(str(doc["version"])),
        signer=str(doc["signer"]),
        signed_at=str(doc["signed_at"]),
        corrects=None if corrects is None else str(corrects),
        document=dict(doc),
        signature=SignatureOut(**signed.signature.as_dict()),
        public_key=base64.b64encode(signed.public_key).decode("ascii"),
    )


class EcgSignals(Protocol):
    """Where the signal of a task's ECG is (the live ECG service's stream store, the
    uploaded records); blocking, called from a worker thread."""

    def signal_of(self, record: ReadingRecord) -> Record | None:
        """The task's ECG in mV (its stream or record), or None when it is not kept."""

    def length_of(self, record: ReadingRecord) -> tuple[int, float] | None:
        """Samples per lead and rate (Hz) of the task's ECG, or None when it is not kept:
        read from its header, not its samples."""

    def window_of(self, record: ReadingRecord, start: int, stop: int) -> Record | None:
        """Samples ``[start, stop)`` of the task's ECG (clamped to it), read without the
        rest: a window of a 24-hour record is milliseconds, the whole record seconds
        and ~500 MB. None when it is not kept."""


def file_length(path: Path) -> tuple[int, float] | None:
    """:meth:`EcgSignals.length_of` of a stored WFDB record (``path`` without extension):
    None when it is absent or unreadable."""
    from ecg.errors import EcgError
    from ecg.record import record_length

    if not path.with_suffix(".hea").exists():
        return None
    try:
        return record_length(path)
    except (EcgError, OSError):
        return None


def file_window(path: Path, start: int, stop: int) -> Record | None:
    """:meth:`EcgSignals.window_of` of a stored WFDB record: None when it is absent or
    unreadable, or the window holds no sample."""
    from ecg.errors import EcgError
    from ecg.record import read_record

    if not path.with_suffix(".hea").exists():
        return None
    try:
        return read_record(path, start=start, stop=stop)
    except (EcgError, OSError):
        return None


class WholeRecordSignals:
    """:meth:`EcgSignals.length_of` and :meth:`EcgSignals.window_of` of a source that
    has the whole record at hand (in memory, tests): cut from :meth:`signal_of`."""

    def signal_of(self, record: ReadingRecord) -> Record | None:
        raise NotImplementedError

    def length_of(self, record: ReadingRecord) -> tuple[int, float] | None:
        found = self.signal_of(record)
        return None if found is None else (found.n_samples, found.fs_hz)

    def window_of(self, record: ReadingRecord, start: int, stop: int) -> Record | None:
        found = self.signal_of(record)
        if found is None:
            return None
        return dataclasses.replace(found, signal_mv=found.signal_mv[max(start, 0) : stop])


@dataclass(frozen=True)
class SignalSource:
    """The handlers' dependency: the :class:`EcgSignals` wired, or None (a Protocol
    cannot be a dependency's type: Litestar checks dependencies with isinstance), and the
    engine's settings every reading of a task's ECG is made with (the server's ``[ecg]``:
    mains notch, the QTc formula shown first; None: the engine's defaults)."""

    signals: EcgSignals | None
    # An ecg.annotate.AnnotateConfig or None. Typed Any: Litestar resolves this
    # dependency's annotations when it serves a request, and the engine's type is not
    # imported at this module's import (it brings numpy).
    annotate_config: Any = None

    def signal_of(self, record: ReadingRecord) -> Record | None:
        return None if self.signals is None else self.signals.signal_of(record)

    def length_of(self, record: ReadingRecord) -> tuple[int, float] | None:
        return None if self.signals is None else self.signals.length_of(record)

    def window_of(self, record: ReadingRecord, start: int, stop: int) -> Record | None:
        return None if self.signals is None else self.signals.window_of(record, start, stop)

    @property
    def engine(self) -> AnnotateConfig:
        """The engine's settings (:attr:`annotate_config`, else the defaults)."""
        return engine_config(self.annotate_config)


def engine_config(config: AnnotateConfig | None) -> AnnotateConfig:
    """``config``, else the engine's default settings (imported here: numpy)."""
    from ecg.annotate import AnnotateConfig

    return config if config is not None else AnnotateConfig()


def report_info(signed: Mapping[str, object], acquired_at: dt.datetime | None) -> ReportInfo:
    """What the paper and the DICOM file print of a signed version: only what is
    signed (statements with the library's texts, critical findings, the reader's
    text, the signer and the signing time)."""
    from ecg.critical import CRITICAL_TEXT
    from ecg.paper_content import ReportInfo, Statement
    from ecg.statements import LIBRARY

    report = signed.get("report")
    codes = report.get("statements", []) if isinstance(report, Mapping) else []
    text = str(report.get("text", "")) if isinstance(report, Mapping) else ""
    context = signed.get("context")
    names = context if isinstance(context, Mapping) else {}
    statements = []
    for code in codes if isinstance(codes, list) else []:
        known = LIBRARY.get(str(code))
        statements.append(
            Statement(str(code), known.text_en, known.text_zh, known.severity.value)
            if known is not None
            else Statement(str(code))
        )
    criticals = signed.get("critical")
    critical = []
    for code in criticals if isinstance(criticals, list) else []:
        en, zh = CRITICAL_TEXT.get(str(code), ("", ""))
        critical.append(Statement(str(code), en, zh, "critical"))
    counts = signed.get("beat_counts")
    if isinstance(counts, Mapping) and set(counts) - {BeatLabel.NORMAL.value}:
        # The reader's beat labels, where the report lists things: after their words.
        line = "心搏 Beats: " + ", ".join(f"{k} {v}" for k, v in counts.items())
        text = f"{text}\n{line}" if text else line
    signer = f"{names.get('signer_name', '')} ({signed.get('signer')}), v{signed.get('version')}"
    return ReportInfo(
        acquired_at=acquired_at,
        record_name=str(signed.get("stream") or signed.get("record") or ""),
        institution=str(names.get("clinic", "")),
        statements=tuple(statements),
        critical=tuple(critical),
        conclusion=text,
        signed_by=signer,
        signed_at=dt.datetime.fromisoformat(str(signed["signed_at"])),
    )


# The reading page's window of the ECG: at most this long (the page shows 10 s at a
# time and pages through longer records); the engine measures the first MEASURED_S.
MAX_WINDOW_S: Final = 30.0
MEASURED_S: Final = 10.0
# Filtered with this much of the record on either side of the window, so that the
# filter's edges fall outside what is shown.
_FILTER_PAD_S: Final = 5.0


def _num(value: object) -> float | None:
    """A measurement as a number, None when the engine could not make it."""
    from ecg.measure import is_value

    if not is_value(value):  # type: ignore[arg-type]
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def reading_ecg(
    reading_id: str,
    found: Record,
    start_s: float,
    duration_s: float,
    band: Band,
    corrections: Mapping[str, float] | None = None,
    config: AnnotateConfig | None = None,
    labels: Mapping[int, BeatLabel] | None = None,
) -> ReadingEcg:
    """The window ``[start_s, start_s + duration_s)`` of ``found`` filtered in ``band``
    (and the mains notch of ``config``), with the engine's beats, measurements,
    statements and critical findings of its first :data:`MEASURED_S` seconds made with
    ``config`` (None: the engine's defaults); the measurements and the statements that
    depend on them made on the reader's corrected fiducials where ``corrections`` are
    given; every beat's label the reader's ``labels`` (by beat index) or N. Pure: no I/O
    (the caller brings the record)."""
    span = window_span(found.n_samples, found.fs_hz, start_s, duration_s)
    lo, hi = span.padded
    head = dataclasses.replace(found, signal_mv=found.signal_mv[: int(MEASURED_S * found.fs_hz)])
    padded = dataclasses.replace(found, signal_mv=found.signal_mv[lo:hi])
    return window_answer(reading_id, head, padded, span, band, corrections, config, labels)


@dataclass(frozen=True)
class WindowSpan:
    """Where a window of ``[first, last)`` lies in a record of ``total`` samples, and
    the samples read around it so that the zero-phase filter settles (``padded``)."""

    total: int
    fs_hz: float
    first: int
    last: int
    padded: tuple[int, int]


def window_span(total: int, fs_hz: float, start_s: float, duration_s: float) -> WindowSpan:
    """The window from ``start_s`` for ``duration_s`` of a record of ``total`` samples
    (clamped: at least one sample, within the record)."""
    first = min(round(start_s * fs_hz), max(total - 1, 0))
    last = min(total, first + max(1, round(duration_s * fs_hz)))
    pad = int(_FILTER_PAD_S * fs_hz)
    return WindowSpan(total, fs_hz, first, last, (max(0, first - pad), min(total, last + pad)))


def window_answer(
    reading_id: str,
    head: Record,
    padded: Record,
    span: WindowSpan,
    band: Band,
    corrections: Mapping[str, float] | None = None,
    config: AnnotateConfig | None = None,
    labels: Mapping[int, BeatLabel] | None = None,
) -> ReadingEcg:
    """:func:`reading_ecg` from what it needs of the record: its first
    :data:`MEASURED_S` seconds (``head``, for the engine) and the samples ``span.padded``
    (``padded``). Pure: no I/O."""
    import numpy as np  # here, not at import: the server's commands start without numpy

    from ecg.filters import filter_zero_phase

    config = engine_config(config)
    fs, n, first, last = span.fs_hz, span.total, span.first, span.last
    lo = span.padded[0]
    window = filter_zero_phase(padded.signal_mv, fs, band, config.mains_hz)
    filtered = window[first - lo : last - lo]
    uv = np.round(filtered * 1000.0)
    finite = np.isfinite(uv)
    samples: list[list[int | None]] = np.where(finite, uv, 0).astype(np.int64).T.tolist()
    for sample, lead in zip(*np.nonzero(~finite), strict=True):  # a gap: null, not a number
        samples[int(lead)][int(sample)] = None
    engine = _engine_of(reading_id, head, config)
    measurements, statements = engine.measurements, engine.statements
    if corrections:
        corrected = _corrected(engine, corrections)
        measurements = None if corrected is None else _engine_measurements(corrected)
        statements = _statements_on(engine, corrected)
    return ReadingEcg(
        reading=reading_id,
        fs_hz=fs,
        leads=list(head.lead_names),
        total_s=n / fs,
        first_index=first,
        start_s=first / fs,
        duration_s=(last - first) / fs,
        band=band,
        samples_uv=samples,
        measured_s=min(n, int(MEASURED_S * fs)) / fs,
        beats=engine.beats,
        measurements=measurements,
        statements=statements,
        critical=engine.critical,
        **_labelled(engine.beats, labels or {}),
    )


def _labelled(beats: Sequence[int], labels: Mapping[int, BeatLabel]) -> dict[str, Any]:
    """The window's ``beat_labels`` and ``beat_counts``."""
    every = beat_labels(len(beats), labels)
    return {"beat_labels": list(every), "beat_counts": beat_counts(every)}


def beat_labels_answer(beats: Sequence[int], kept: ReadingBeatLabels | None) -> BeatLabelsAnswer:
    """Every beat's label, their counts and who labelled which."""
    labels = dict(kept.labels) if kept is not None else {}
    found = _labelled(beats, labels)
    return BeatLabelsAnswer(
        beats=list(beats),
        labels=found["beat_labels"],
        counts=found["beat_counts"],
        labelled=sorted(i for i in labels if i < len(beats)),
        labelled_by=kept.updated_by if kept is not None else None,
        labelled_at=kept.updated_at if kept is not None else None,
    )


@dataclass(frozen=True)
class _Engine:
    beats: list[int]
    measurements: EngineMeasurements | None
    statements: list[EngineStatement]
    critical: list[EngineCritical]
    measured: Measurements | None = None  # with the delineation (median beats)
    interpretation: Interpretation | None = None  # the statements' rules' inputs


def _statements_on(engine: _Engine, found: Measurements | None) -> list[EngineStatement]:
    """The engine's statements, those resting on the measurements made again on
    ``found`` (the measurements on the reader's fiducials; the engine's own: unchanged)."""
    from api.reading_statements import restate
    from ecg.statements import statements_to_json

    if found is None or found is engine.measured or engine.interpretation is None:
        return engine.statements
    fs_hz = found.delineation.fs_hz
    again = restate(engine.interpretation, found, engine.beats, fs_hz)
    return msgspec.convert(statements_to_json(again), list[EngineStatement])


_ENGINE_KEPT: Final = 256
_engine_kept: collections.OrderedDict[tuple[str, bytes, AnnotateConfig], _Engine] = (
    collections.OrderedDict()
)
_engine_lock = threading.Lock()


def _engine_summary(
    reading_id: str, digest: bytes, measured: Any, config: AnnotateConfig
) -> _Engine:
    """The engine's reading of a task's first seconds, kept (the last 64) for the task's
    next windows: the same for every window, and most of a window's cost (the
    annotation, about 80 ms of 130). ``digest`` of the samples makes a changed record a
    new entry, and so do other settings (``config`` is hashable: a frozen dataclass)."""
    key = (reading_id, digest, config)
    with _engine_lock:
        kept = _engine_kept.get(key)
        if kept is not None:
            _engine_kept.move_to_end(key)
            return kept
    made = _annotate(measured, config)
    with _engine_lock:
        _engine_kept[key] = made
        while len(_engine_kept) > _ENGINE_KEPT:
            _engine_kept.popitem(last=False)
    return made


def _engine_measurements(found: Measurements) -> EngineMeasurements:
    g = found.global_
    return EngineMeasurements(
        hr_bpm=_num(g.hr_bpm),
        rr_ms=_num(g.rr_ms),
        pr_ms=_num(g.pr_ms),
        p_ms=_num(g.p_ms),
        qrs_ms=_num(g.qrs_ms),
        qt_ms=_num(g.qt_ms),
        p_axis_deg=_num(g.p_axis_deg),
        qrs_axis_deg=_num(g.qrs_axis_deg),
        t_axis_deg=_num(g.t_axis_deg),
        # QTc by the engine's first formula (configuration).
        qtc_ms=_num(g.qtc_ms.get(g.qtc_first)),
        qtc_formula=g.qtc_first.value,
    )


def _annotate(measured: Any, config: AnnotateConfig) -> _Engine:
    from ecg.annotate import annotate

    annotation = annotate(measured, config)
    found = annotation.measurements
    return _Engine(
        beats=[int(b) for b in annotation.beats],
        measurements=None if found is None else _engine_measurements(found),
        statements=msgspec.convert(annotation.statements or [], list[EngineStatement]),
        critical=msgspec.convert(annotation.critical or [], list[EngineCritical]),
        measured=found,
        interpretation=annotation.interpretation,
    )


_ahead: ThreadPoolExecutor | None = None
_ahead_lock = threading.Lock()
logger = logging.getLogger(__name__)


def annotate_ahead(
    reading_id: str, load: Callable[[], Record | None], config: AnnotateConfig | None = None
) -> Future[None]:
    """Make and keep the engine's reading of task ``reading_id`` as soon as its record is
    stored, in a thread of its own, so that the reader's first window of it does not wait
    for the annotation (``bench/reading_paint.py`` against its ``--cold``: p50 351/416 ms
    against 501/421 ms in two runs). ``load`` reads the record (None: not
    there, nothing done); ``config``: the engine's settings, as the reading API's (None:
    the defaults). The readings of the last :data:`_ENGINE_KEPT` tasks are kept; a
    failure is logged and means only that the first window annotates."""
    global _ahead
    with _ahead_lock:
        if _ahead is None:
            _ahead = ThreadPoolExecutor(1, "annotate-ahead")
        pool = _ahead

    def make() -> None:
        try:
            found = load()
            if found is not None:
                _engine_of(reading_id, found, engine_config(config))
        except Exception as exc:  # the first window annotates instead
            logger.warning("a task's record not annotated ahead: %s", type(exc).__name__)

    return pool.submit(make)


def measured_signal(source: EcgSignals, record: ReadingRecord) -> Record | None:
    """The first :data:`MEASURED_S` of the task's ECG, which the engine reads (the median
    beat, the measurements, the signed figures), read without the rest of the record: a
    24-hour record's whole signal is ~500 MB in mV. None when it is not kept."""
    length = source.length_of(record)
    if length is None:
        return None
    return source.window_of(record, 0, int(MEASURED_S * length[1]))


def _engine_of(reading_id: str, found: Record, config: AnnotateConfig) -> _Engine:
    """The engine's reading of the first :data:`MEASURED_S` of ``found`` with ``config``
    (kept)."""
    import numpy as np

    from ecg.record import Record as EcgRecord

    measured = found.signal_mv[: int(MEASURED_S * found.fs_hz)]
    return _engine_summary(
        reading_id,
        hashlib.blake2b(np.ascontiguousarray(measured).tobytes(), digest_size=16).digest(),
        EcgRecord(
            name=found.name, fs_hz=found.fs_hz, signal_mv=measured, lead_names=found.lead_names
        ),
        config,
    )


def _corrected(engine: _Engine, corrections: Mapping[str, float]) -> Measurements | None:
    """The engine's measurements with the reader's corrections (None: not measured)."""
    from ecg.correct import FiducialError, remeasure

    if engine.measured is None:
        return None
    if not corrections:
        return engine.measured
    try:
        return remeasure(engine.measured.delineation, corrections)
    except FiducialError:
        # Kept corrections were checked on this very delineation; a changed engine
        # that no longer agrees shows its own figures rather than none.
        return engine.measured


_SIGNED_FIGURES: Final = (
    "hr_bpm",
    "rr_ms",
    "pr_ms",
    "p_ms",
    "qrs_ms",
    "qt_ms",
    "p_axis_deg",
    "qrs_axis_deg",
    "t_axis_deg",
)


def signable_measurements(found: Measurements) -> dict[str, object]:
    """The global measurements as a signed version carries them: whole numbers in the
    unit of their name (floats are not signed; a cart prints whole ms, bpm and degrees
    too), null where not measured; ``qtc_ms`` by formula and ``qtc_first``, as
    :func:`ecg.paper_content.measurements_from` reads them."""
    g = found.global_

    def whole(value: object) -> int | None:
        number = _num(value)
        return None if number is None else round(number)

    figures: dict[str, object] = {name: whole(getattr(g, name)) for name in _SIGNED_FIGURES}
    figures["qtc_ms"] = {str(f.value): whole(v) for f, v in g.qtc_ms.items()}
    figures["qtc_first"] = g.qtc_first.value
    return figures


def _ms_of(values: Mapping[str, float | None]) -> FiducialsMs:
    return FiducialsMs(**{k: None if v is None else round(v, 1) for k, v in values.items()})


def fiducials_state(
    engine: _Engine, found: Measurements | None, kept: ReadingFiducials | None
) -> FiducialsState:
    """What the page shows of the fiducials: in effect, the engine's, who corrected, and
    the measurements and statements made on those in effect (``found``)."""
    from ecg.correct import correct_delineation, fiducials_ms

    assert engine.measured is not None  # callers answer not_measured first
    dl = engine.measured.delineation
    corrections = dict(kept.fiducials_ms) if kept is not None else {}
    in_effect = found.delineation if found is not None else correct_delineation(dl, corrections)
    return FiducialsState(
        fiducials_ms=_ms_of(fiducials_ms(in_effect)),
        engine_ms=_ms_of(fiducials_ms(dl)),
        corrected=sorted(corrections),  # type: ignore[arg-type]
        corrected_by=kept.updated_by if kept is not None else None,
        corrected_at=kept.updated_at if kept is not None else None,
        measurements=None if found is None else _engine_measurements(found),
        statements=_statements_on(engine, found),
    )


def median_answer(reading_id: str, engine: _Engine, kept: ReadingFiducials | None) -> MedianAnswer:
    """The median beats of the engine's delineation and the fiducials in effect; 404
    ``not_measured`` when the engine made no median beat."""
    import numpy as np

    from ecg.correct import beat_length

    if engine.measured is None or beat_length(engine.measured.delineation) == 0:
        raise ApiError("not_measured", "the engine found no median beat in this ECG", status=404)
    dl = engine.measured.delineation
    leads = []
    for t in dl.templates:
        usable = bool(t.usable and np.all(np.isfinite(t.wide_mv)))
        leads.append(
            MedianLead(
                lead=t.lead,
                usable=usable,
                samples_uv=np.round(t.wide_mv * 1000.0).astype(np.int64).tolist() if usable else [],
                iso_uv=round(t.iso_mv * 1000.0) if usable and math.isfinite(t.iso_mv) else 0,
            )
        )
    found = _corrected(engine, dict(kept.fiducials_ms) if kept is not None else {})
    return MedianAnswer(
        reading=reading_id,
        fs_hz=dl.fs_hz,
        length=beat_length(dl),
        r_index=dl.r_index,
        leads=leads,
        fiducials=fiducials_state(engine, found, kept),
    )


@functools.cache
def ecg_library(statement_codes: frozenset[str] | None = None) -> EcgLibrary:
    """The statement library (only ``statement_codes`` when given: the codes the
    service accepts) and the critical findings, with their texts."""
    from ecg.critical import CRITICAL_TEXT
    from ecg.statements import LIBRARY

    return EcgLibrary(
        statements=[
            LibraryStatement(code, info.text_en, info.text_zh, info.severity.value)
            for code, info in LIBRARY.items()
            if statement_codes is None or code in statement_codes
        ],
        criticals=[LibraryCritical(code, en, zh) for code, (en, zh) in CRITICAL_TEXT.items()],
    )


# Controllers

_SAMPLE_FIDUCIALS: Final = FiducialsMs(
    p_on=322.0, p_off=420.0, qrs_on=452.0, qrs_off=542.0, t_off=852.0
)
_MEDIAN_SAMPLE: Final = MedianAnswer(
    reading="3f2b9c1e7d4a4f0e9a1b2c3d4e5f6a7b",
    fs_hz=500.0,
    length=600,
    r_index=225,
    leads=[MedianLead(lead="II", usable=True, samples_uv=[12, 14, 15], iso_uv=10)],
    fiducials=FiducialsState(
        fiducials_ms=_SAMPLE_FIDUCIALS,
        engine_ms=FiducialsMs(p_on=322.0, p_off=420.0, qrs_on=452.0, qrs_off=530.0, t_off=852.0),
        corrected=["qrs_off"],
        corrected_by="liu.reader",
        corrected_at=dt.datetime(2026, 12, 3, 8, 30, tzinfo=dt.UTC),
        measurements=EngineMeasurements(
            hr_bpm=68.9,
            rr_ms=871.0,
            pr_ms=130.0,
            p_ms=98.0,
            qrs_ms=90.0,
            qt_ms=400.0,
            qtc_ms=428.6,
            qtc_formula="bazett",
            p_axis_deg=55.0,
            qrs_axis_deg=40.0,
            t_axis_deg=35.0,
        ),
    ),
)

_AUTH = (
    (401, "session_invalid", "not logged in or the session has expired"),
    (403, "csrf_failed", "missing or wrong CSRF token: send the X-CSRF-Token header"),
)
_NO_READING = (404, "not_found", "no reading '3f2b9c1e'")
_NO_SIGNAL = (404, "no_signal", "no ECG kept for reading '3f2b9c1e' yet (still arriving?)")
_TABLE = (
    (409, "transition_not_allowed", "reader cannot claim a reading in state signed"),
    (403, "forbidden", "outsider may not claim a reading in state new"),
    (403, "claimed_by_another", "claimed by liu.reader"),
    (409, "reading_changed", "the reading changed meanwhile: reload it and try again"),
)
# The events taken by POST (``edit`` is PUT .../report).
_EVENTS: Final = {e.value: e for e in ReadingEvent if e is not ReadingEvent.EDIT}


def _page(limit: int, offset: int, page_number: int | None) -> PageRequest:
    if page_number is not None:
        offset = (page_number - 1) * limit
    return PageRequest(limit=limit, offset=offset)


# Samples per lead read at a time for an export of the whole record: a window of 12
# leads is 6 MB in float64 mV, ~18 MB traced while quantised and written.
_EXPORT_CHUNK: Final = 1 << 16


def _export(
    principal: Principal,
    service: ReadingService,
    source: SignalSource,
    reading_id: str,
    form: str,
    stop_s: float | None = None,
) -> tuple[Record, ReportInfo, float, ReadingRecord]:
    """The task's signal (its first ``stop_s`` seconds only, when given: read without the
    rest), what its latest signed version prints (the export audited), the whole
    record's duration in s and the task; 404 when nothing is signed, the task is not the
    caller's, or no signal is kept."""
    record, versions = service.export(principal.person, reading_id, form)
    length = source.length_of(record)
    found = None
    if length is not None:
        # Only the seconds the export shows (and one sample more: a trace's end).
        stop = None if stop_s is None else math.ceil(stop_s * length[1]) + 1
        found = source.signal_of(record) if stop is None else source.window_of(record, 0, stop)
    if found is None:
        raise ApiError("not_found", f"no ECG signal kept for reading {reading_id!r}", status=404)
    from ecg.paper_content import measurements_from

    whole_s = length[0] / length[1] if length is not None else found.n_samples / found.fs_hz
    signed = versions[-1].document
    info = report_info(signed, record.task.received_at)
    # The measurements printed are those signed (made on the reader's corrected
    # fiducials): the figures the reader saw when signing.
    figures = signed.get("measurements")
    if isinstance(figures, Mapping):
        return (
            found,
            dataclasses.replace(info, measurements=measurements_from(figures)),
            whole_s,
            record,
        )
    kept = signed.get("fiducials_ms")
    corrections = (
        {str(k): float(str(v)) for k, v in kept.items()} if isinstance(kept, Mapping) else {}
    )
    head = measured_signal(source, record)
    engine = None if head is None else _engine_of(reading_id, head, source.engine)
    measured = None if engine is None else _corrected(engine, corrections)
    if measured is not None:
        info = dataclasses.replace(info, measurements=measurements_from(measured.global_))
    return found, info, whole_s, record


def _engine_beats(source: SignalSource, record: ReadingRecord) -> list[int] | None:
    """The engine's beats of a task's measured window, None when its ECG is not kept."""
    found = measured_signal(source, record)
    return None if found is None else _engine_of(record.task.id, found, source.engine).beats


def _file(data: bytes, media_type: str, disposition: str) -> Response[bytes]:
    return Response(
        data, media_type=media_type, headers={**_NO_STORE, "content-disposition": disposition}
    )


def _written_file(write: Callable[[BinaryIO], None], media_type: str, filename: str) -> File:
    """An attachment of what ``write`` writes, made in a temporary file first (so the
    answer is never whole in memory) and streamed from it; the file is removed once
    sent, or at once when ``write`` fails."""
    handle, name = tempfile.mkstemp(prefix="teleconsult-", suffix=Path(filename).suffix)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return File(
        path,
        filename=filename,
        media_type=media_type,
        headers=_NO_STORE,
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


class ReadingController(Controller):
    """The reading worklist, a task, its steps, its report and its critical values."""

    path = "/readings"
    tags = ["readings"]  # noqa: RUF012 - Litestar's own class attribute
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @get(
        "/",
        sync_to_thread=True,
        summary="The reading worklist",
        responses=documented(200, ReadingPage, None, *_AUTH),
    )
    def worklist(
        self,
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
        states: Annotated[
            list[ReadingState] | None,
            QueryParameter(name="state", description="only these states (repeatable)"),
        ] = None,
        clinic: Annotated[str | None, Parameter(max_length=64)] = None,
        reader: Annotated[
            str | None, Parameter(max_length=64, description="claimed or signed by")
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        offset: Annotated[int, Parameter(ge=0)] = 0,
        page_number: Annotated[
            int | None,
            QueryParameter(
                name="page", ge=1, description="1-based page of limit items (instead of offset)"
            ),
        ] = None,
    ) -> ReadingPage:
        """The tasks of the clinics the caller's institution serves for ECG: critical
        findings first, then STAT, then the longest waiting."""
        request = _page(limit, offset, page_number)
        found = reading_service.worklist(
            principal.person,
            request,
            clinic=clinic,
            states=None if not states else frozenset(states),
            reader=reader,
        )
        return ReadingPage(
            [ReadingItem(**_item_fields(r)) for r in found.items],
            found.total,
            request.limit,
            request.offset,
        )

    @get(
        "/{reading_id:str}",
        sync_to_thread=True,
        summary="One reading task",
        responses=documented(200, ReadingAnswer, None, *_AUTH, _NO_READING),
    )
    def get_one(
        self,
        reading_id: PathId,
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
    ) -> Response[ReadingAnswer]:
        """The task with its state, critical values and the events the caller may take."""
        view = reading_service.get(principal.person, reading_id)
        return Response(_answer(view), headers=_NO_STORE)

    @get(
        "/{reading_id:str}/previous",
        sync_to_thread=True,
        summary="The same patient's previous ECGs",
        responses=documented(200, ReadingPage, None, *_AUTH, _NO_READING),
    )
    def previous(
        self,
        reading_id: PathId,
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
        states: Annotated[
            list[ReadingState] | None,
            QueryParameter(name="state", description="only these states (repeatable)"),
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        offset: Annotated[int, Parameter(ge=0)] = 0,
    ) -> Response[ReadingPage]:
        """The tasks of the same patient received before this one, newest first, of the
        clinics the caller sees (``state=signed&state=amended``: the signed ones), for
        the reading page's side-by-side comparison; none when the task names no patient.
        Audited (``reading.previous``)."""
        request = PageRequest(limit=limit, offset=offset)
        found = reading_service.previous(
            principal.person, reading_id, request, states=None if not states else frozenset(states)
        )
        page = ReadingPage(
            [ReadingItem(**_item_fields(r)) for r in found.items],
            found.total,
            request.limit,
            request.offset,
        )
        return Response(page, headers=_NO_STORE)

    @post(
        "/{reading_id:str}/{event:str}",
        status_code=200,
        sync_to_thread=True,
        summary="Take a step of the reading table",
        responses=documented(
            200,
            ReadingAnswer,
            None,
            *_AUTH,
            *_TABLE,
            _NO_READING,
            (404, "unknown_event", "no event 'approve'"),
            (400, "invalid_input", "reason: return needs a reason"),
            (401, "totp_required", "a one-time code (totp) is required for this account"),
        ),
    )
    def step(
        self,
        reading_id: PathId,
        event: Annotated[str, Parameter(max_length=32)],
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
        ecg_signals: NamedDependency[SignalSource],
        data: Annotated[StepBody | None, body(StepBody(reason="导联脱落，请重新采集"))] = None,
    ) -> ReadingAnswer:
        """``claim``, ``release``, ``return`` ``{"reason"}``, ``amend``, ``sign``
        ``{"totp"}`` (the signed version carries the measurements made on the reader's
        corrected fiducials). A step the table does not have in this state answers 409
        naming the state and the event."""
        chosen = _EVENTS.get(event)
        if chosen is None:
            raise ApiError("unknown_event", f"no event {event!r}", status=404)
        given = data or StepBody()
        person = principal.person
        if chosen is ReadingEvent.SIGN:

            def measure(
                record: ReadingRecord, corrections: Mapping[str, float]
            ) -> Mapping[str, object] | None:
                found = measured_signal(ecg_signals, record)
                if found is None:
                    return None
                engine = _engine_of(record.task.id, found, ecg_signals.engine)
                measured = _corrected(engine, corrections)
                return None if measured is None else signable_measurements(measured)

            view = reading_service.sign(
                person,
                reading_id,
                given.totp,
                measure,
                lambda record: _engine_beats(ecg_signals, record),
            )
        else:
            view = reading_service.step(person, reading_id, chosen, reason=given.reason)
        return _answer(view)

    @put(
        "/{reading_id:str}/report",
        sync_to_thread=True,
        summary="Save the draft report",
        responses=documented(
            200,
            ReportAnswer,
            None,
            *_AUTH,
            *_TABLE,
            _NO_READING,
            (400, "invalid_input", "statements: 'NOPE' is not a known code"),
        ),
    )
    def save_report(
        self,
        reading_id: PathId,
        data: Annotated[ReportIn, body(ReportIn(statements=["SR", "STE_ANT"], text="急性前壁"))],
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
    ) -> ReportAnswer:
        """The claimant's draft, replaced whole (the table's ``edit``): in states
        ``claimed``, ``draft`` and ``amended`` only; a signed report answers 409 (amend
        it first)."""
        saved = reading_service.save_report(
            principal.person, reading_id, data.statements, data.text
        )
        return _report(saved)

    @get(
        "/{reading_id:str}/report",
        sync_to_thread=True,
        summary="The draft and the signed versions",
        responses=documented(200, ReportsAnswer, None, *_AUTH, _NO_READING),
    )
    def reports(
        self,
        reading_id: PathId,
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
    ) -> Response[ReportsAnswer]:
        """The draft for the centre's readers and coordinators, every signed version for
        anyone who sees the task."""
        person = principal.person
        draft = reading_service.report(person, reading_id)
        versions = reading_service.versions(person, reading_id)
        return Response(
            ReportsAnswer(
                draft=None if draft is None else _report(draft),
                versions=[_version(v) for v in versions],
            ),
            headers=_NO_STORE,
        )

    @get(
        "/{reading_id:str}/report.pdf",
        sync_to_thread=True,
        summary="The signed report on ECG paper (PDF)",
        media_type="application/pdf",
        responses=documented(
            200, None, None, *_AUTH, (404, "not_found", "no signed report '3f2b9c1e'")
        ),
    )
    def report_pdf(
        self,
        reading_id: PathId,
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
        ecg_signals: NamedDependency[SignalSource],
    ) -> Response[bytes]:
        """The ECG on A4 at 25 mm/s and 10 mm/mV (3x4 and rhythm strip), with the latest
        signed version's statements, critical findings, text, signer and time."""
        from ecg.paper import PaperOptions, layout_pages, render_pdf

        options = PaperOptions()
        # The pages print at most max_pages × page_s seconds: only those are read; the
        # footer says of how long a record.
        shown_s = options.max_pages * options.page_s
        found, info, whole_s, _ = _export(
            principal, reading_service, ecg_signals, reading_id, "pdf", shown_s
        )
        pages = layout_pages(
            found.signal_mv, found.fs_hz, found.lead_names, info, options, duration_s=whole_s
        )
        pdf = render_pdf(pages)
        return _file(pdf, "application/pdf", f'inline; filename="ecg-{reading_id}.pdf"')

    @get(
        "/{reading_id:str}/report.dcm",
        sync_to_thread=True,
        summary="The signed report as a DICOM 12-lead ECG waveform",
        media_type="application/dicom",
        responses=documented(
            200, None, None, *_AUTH, (404, "not_found", "no signed report '3f2b9c1e'")
        ),
    )
    def report_dcm(
        self,
        reading_id: PathId,
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
        ecg_signals: NamedDependency[SignalSource],
    ) -> File:
        """The samples (1 µV steps) with the latest signed version's statements and
        critical findings, and the signer, in the waveform's annotations."""
        from ecg.dicom import quantise_mv, write_dicom_to

        first, info, whole_s, record = _export(
            principal, reading_service, ecg_signals, reading_id, "dicom", 0.0
        )
        n = round(whole_s * first.fs_hz)

        # The record is read, quantised and written a window at a time: memory holds one
        # window of it, not the record nor the file.
        def windows() -> Iterator[NDArray[np.int16]]:
            for start in range(0, n, _EXPORT_CHUNK):
                window = ecg_signals.window_of(record, start, start + _EXPORT_CHUNK)
                if window is None:
                    raise ApiError(
                        "not_found", f"no ECG signal kept for reading {reading_id!r}", status=404
                    )
                yield quantise_mv(window.signal_mv)

        def write(file: BinaryIO) -> None:
            write_dicom_to(
                file, windows(), n, first.fs_hz, first.lead_names, info,
                quantised=True, now=info.signed_at,
            )  # fmt: skip

        return _written_file(write, "application/dicom", f"ecg-{reading_id}.dcm")

    @get(
        "/{reading_id:str}/ecg",
        sync_to_thread=True,
        summary="The task's ECG for the reading page, with the engine's findings",
        responses=documented(
            200,
            ReadingEcg,
            None,
            *_AUTH,
            _NO_READING,
            _NO_SIGNAL,
            (400, "invalid_body", "duration_s: must be <= 30"),
        ),
    )
    def ecg(
        self,
        reading_id: PathId,
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
        ecg_signals: NamedDependency[SignalSource],
        start_s: Annotated[float, Parameter(ge=0, description="window start, s")] = 0.0,
        duration_s: Annotated[
            float, Parameter(gt=0, le=MAX_WINDOW_S, description="window length, s")
        ] = 10.0,
        band: Annotated[
            Band, Parameter(description="diagnostic (0.05-150 Hz) or monitoring (0.5-40 Hz)")
        ] = "diagnostic",
    ) -> Response[ReadingEcg]:
        """A window of the stored record in µV, filtered zero-phase in the chosen band,
        and the engine's beats, measurements, statements and critical findings of its
        first 10 s. The read is audited (``reading.viewed``); a stream still arriving
        has no stored record yet (404 ``no_signal``: watch it live over ``/ws``)."""
        view = reading_service.get(principal.person, reading_id)
        missing = ApiError("no_signal", f"no ECG kept for reading {reading_id!r} yet", status=404)
        # Only what the answer shows is read: the engine's first 10 s and the window.
        length = ecg_signals.length_of(view.record)
        if length is None:
            raise missing
        span = window_span(*length, start_s, duration_s)
        head = ecg_signals.window_of(view.record, 0, int(MEASURED_S * span.fs_hz))
        padded = ecg_signals.window_of(view.record, *span.padded)
        if head is None or padded is None:
            raise missing
        kept = reading_service.fiducials(principal.person, reading_id)
        corrections = dict(kept.fiducials_ms) if kept is not None else None
        labelled = reading_service.beat_labels(principal.person, reading_id)
        answer = window_answer(
            reading_id,
            head,
            padded,
            span,
            band,
            corrections,
            ecg_signals.engine,
            labelled.labels if labelled is not None else None,
        )
        return Response(answer, headers=_NO_STORE)

    @get(
        "/{reading_id:str}/median",
        sync_to_thread=True,
        summary="The median beat of every lead, its fiducials and the measurements",
        responses=documented(
            200,
            MedianAnswer,
            _MEDIAN_SAMPLE,
            *_AUTH,
            _NO_READING,
            _NO_SIGNAL,
            (404, "not_measured", "the engine found no median beat in this ECG"),
        ),
    )
    def median(
        self,
        reading_id: PathId,
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
        ecg_signals: NamedDependency[SignalSource],
    ) -> Response[MedianAnswer]:
        """The engine's median beat per lead (µV, the record's rate, the R at
        ``r_index``) of the first 10 s, the global fiducials in ms from the beat's first
        sample (the engine's, and in effect with the reader's corrections) and the
        measurements made on those in effect."""
        view = reading_service.get(principal.person, reading_id)
        found = measured_signal(ecg_signals, view.record)
        if found is None:
            raise ApiError("no_signal", f"no ECG kept for reading {reading_id!r} yet", status=404)
        kept = reading_service.fiducials(principal.person, reading_id)
        answer = median_answer(reading_id, _engine_of(reading_id, found, ecg_signals.engine), kept)
        return Response(answer, headers=_NO_STORE)

    @put(
        "/{reading_id:str}/fiducials",
        sync_to_thread=True,
        summary="Correct the global fiducials and measure again",
        responses=documented(
            200,
            FiducialsState,
            _MEDIAN_SAMPLE.fiducials,
            *_AUTH,
            *_TABLE,
            _NO_READING,
            (400, "fiducial_outside_beat", "qrs_off at 1300 ms is outside the median beat"),
            (400, "fiducials_out_of_order", "qrs_off (80 ms) must come before t_off (60 ms)"),
            (400, "fiducials_incomplete", "the engine found no P wave: give p_on and p_off"),
            (400, "invalid_body", "Invalid enum value 'r_peak' - at `key` in `$.fiducials_ms`"),
            _NO_SIGNAL,
            (404, "not_measured", "the engine found no median beat in this ECG"),
        ),
    )
    def correct_fiducials(
        self,
        reading_id: PathId,
        data: Annotated[FiducialsIn, body(FiducialsIn(fiducials_ms={"qrs_off": 542.0}))],
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
        ecg_signals: NamedDependency[SignalSource],
    ) -> FiducialsState:
        """The claimant moves global fiducials on the median beat (the table's ``edit``:
        claimed, draft or amended; a signed task answers 409, another's claim 403). The
        intervals, QTc and axes are measured again at once; the correction is kept with
        the draft (the ECG window and the signed report use it) and audited
        (``reading.fiducials``: who, each position before and after). Refused, nothing
        changes and the attempt is audited."""
        engines: list[_Engine] = []

        def remeasure(
            record: ReadingRecord, previous: Mapping[str, float], merged: Mapping[str, float]
        ) -> tuple[Mapping[str, float | None], Measurements]:
            from ecg.correct import FiducialError, correct_delineation, fiducials_ms
            from ecg.correct import remeasure as measure_again

            found = measured_signal(ecg_signals, record)
            if found is None:
                raise ApiError("no_signal", f"no ECG kept for reading {reading_id!r}", status=404)
            engine = _engine_of(reading_id, found, ecg_signals.engine)
            if engine.measured is None:
                raise ApiError("not_measured", "the engine found no median beat", status=404)
            engines.append(engine)
            dl = engine.measured.delineation
            try:
                before = fiducials_ms(correct_delineation(dl, previous))
                return before, measure_again(dl, merged)
            except FiducialError as exc:
                raise FiducialsRefused(exc.code, exc.reason) from None

        saved, measured = reading_service.correct_fiducials(
            principal.person,
            reading_id,
            {str(k): v for k, v in data.fiducials_ms.items()},
            remeasure,
        )
        [engine] = engines
        return fiducials_state(engine, measured, saved)

    @put(
        "/{reading_id:str}/beats/{beat:int}",
        sync_to_thread=True,
        summary="Label a beat (N, S, V, paced, artefact)",
        responses=documented(
            200,
            BeatLabelsAnswer,
            BeatLabelsAnswer(
                beats=[312, 748, 1190],
                labels=[BeatLabel.NORMAL, BeatLabel.VENTRICULAR, BeatLabel.NORMAL],
                counts={"N": 2, "V": 1},
                labelled=[1],
                labelled_by="liu.reader",
                labelled_at=dt.datetime(2026, 12, 4, 8, 30, tzinfo=dt.UTC),
            ),
            *_AUTH,
            *_TABLE,
            _NO_READING,
            (400, "unknown_beat_label", "label: 'X' is not a beat label (N, S, V, P, Q)"),
            (400, "beat_out_of_range", "beat: beat 14 is not one of the 12 beats (0-11)"),
            (400, "invalid_body", "Object missing required field `label`"),
            _NO_SIGNAL,
        ),
    )
    def label_beat(
        self,
        reading_id: PathId,
        beat: Annotated[int, Parameter(description="the beat's index in the ECG window's beats")],
        data: Annotated[BeatLabelIn, body(BeatLabelIn(label="V"))],
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
        ecg_signals: NamedDependency[SignalSource],
    ) -> BeatLabelsAnswer:
        """The claimant labels one of the engine's beats of the measured window (its
        index in ``GET …/ecg``'s ``beats``): the table's ``edit`` (claimed, draft or
        amended; a signed task answers 409, another's claim 403). Kept with the draft
        (the ECG window and the signed report carry the labels and their counts) and
        audited (``reading.beat_label``: the beat, its sample, the label before and
        after). Refused, nothing changes and the attempt is audited."""

        def beats_of(record: ReadingRecord) -> Sequence[int]:
            found = _engine_beats(ecg_signals, record)
            if found is None:
                raise ApiError("no_signal", f"no ECG kept for reading {reading_id!r}", status=404)
            return found

        saved, beats = reading_service.label_beat(
            principal.person, reading_id, beat, data.label, beats_of
        )
        return beat_labels_answer(beats, saved)

    @post(
        "/{reading_id:str}/criticals",
        status_code=201,
        sync_to_thread=True,
        summary="Mark a critical finding",
        responses=documented(
            201,
            CriticalAnswer,
            None,
            *_AUTH,
            _NO_READING,
            (403, "forbidden", "only the centre's ECG readers and coordinators raise one"),
            (409, "conflict", "critical value 'VT' exists already"),
            (400, "invalid_input", "code: 'X' is not a known code"),
        ),
    )
    def raise_critical(
        self,
        reading_id: PathId,
        data: Annotated[CriticalIn, body(CriticalIn(code="VT"))],
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
    ) -> CriticalAnswer:
        """A reader's critical finding on the task, told at once to the clinic's doctors
        and the centre's readers."""
        return _critical(reading_service.raise_critical(principal.person, reading_id, data.code))


class CriticalController(Controller):
    """The critical-value register and acknowledgement by read-back."""

    path = "/criticals"
    tags = ["readings"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @get(
        "/",
        sync_to_thread=True,
        summary="The critical-value register (危急值登记)",
        responses=documented(200, CriticalPage, None, *_AUTH),
    )
    def register(
        self,
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
        states: Annotated[
            list[CriticalState] | None,
            QueryParameter(name="state", description="only these states (repeatable)"),
        ] = None,
        clinic: Annotated[str | None, Parameter(max_length=64)] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        offset: Annotated[int, Parameter(ge=0)] = 0,
        page_number: Annotated[int | None, QueryParameter(name="page", ge=1)] = None,
    ) -> CriticalPage:
        """Every critical value of the clinics the caller's institution serves for ECG,
        newest first: the finding, when detected, who was told, who acknowledged and
        when, with the read-back."""
        request = _page(limit, offset, page_number)
        found = reading_service.criticals(
            principal.person,
            request,
            states=None if not states else frozenset(states),
            clinic=clinic,
        )
        return CriticalPage(
            [_critical(c) for c in found.items], found.total, request.limit, request.offset
        )

    @get(
        "/{critical_id:str}",
        sync_to_thread=True,
        summary="One critical value",
        responses=documented(
            200, CriticalAnswer, None, *_AUTH, (404, "not_found", "no critical value 'x'")
        ),
    )
    def get_one(
        self,
        critical_id: PathId,
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
    ) -> Response[CriticalAnswer]:
        """For someone who sees its task or was told of it."""
        found = reading_service.critical(principal.person, critical_id)
        return Response(_critical(found), headers=_NO_STORE)

    @post(
        "/{critical_id:str}/acknowledge",
        status_code=200,
        sync_to_thread=True,
        summary="Acknowledge a critical value by read-back",
        responses=documented(
            200,
            CriticalAnswer,
            None,
            *_AUTH,
            (404, "not_found", "no critical value 'x'"),
            (403, "not_notified", "you were not notified of this critical value"),
            (400, "invalid_input", "read_back: say the finding back as you understood it"),
            (
                409,
                "transition_not_allowed",
                "notified cannot acknowledge a critical value in state acknowledged",
            ),
        ),
    )
    def acknowledge(
        self,
        critical_id: PathId,
        data: Annotated[AcknowledgeIn, body(AcknowledgeIn(read_back="室颤，李医生已知悉"))],
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
    ) -> CriticalAnswer:
        """Only someone who was told may acknowledge; the read-back, who and when are
        kept and shown in the register."""
        return _critical(reading_service.acknowledge(principal.person, critical_id, data.read_back))


class EcgLibraryController(Controller):
    """The coded library a report's statements and a reader's critical findings come
    from, for the reading page's editor (search in Chinese or English)."""

    path = "/ecg/library"
    tags = ["readings"]  # noqa: RUF012
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @get(
        "/",
        sync_to_thread=False,
        summary="The ECG statement library and the critical findings",
        responses=documented(
            200,
            EcgLibrary,
            EcgLibrary(
                [LibraryStatement("SR", "Sinus rhythm", "窦性心律", "normal")],
                [LibraryCritical("VT", "Sustained ventricular tachycardia", "持续性室性心动过速")],
            ),
            *_AUTH,
        ),
    )
    def library(self, principal: NamedDependency[Principal]) -> EcgLibrary:
        """Every statement code with its English and Chinese text and severity, and
        every critical finding a reader may mark."""
        del principal  # asked for the session only: the library is no patient data
        return ecg_library()


@dataclass(frozen=True)
class ReadingApi:
    """What the server wires for the ECG centre, in the shape of
    :class:`api.consults.ConsultApi`: add ``route_handlers`` and ``dependencies`` to the
    account API's (its ``principal`` dependency and CSRF middleware serve these too)."""

    route_handlers: Sequence[ControllerRouterHandler]
    dependencies: dict[str, Provide]
    middleware: Sequence[Middleware]


def reading_api(
    service: ReadingService,
    signals: EcgSignals | None = None,
    annotate_config: AnnotateConfig | None = None,
) -> ReadingApi:
    """The reading and critical-value controllers and their dependencies; ``signals``
    gives ``report.pdf`` and ``report.dcm`` the ECG (without it they answer 404);
    ``annotate_config``: the engine's settings for every reading of a task's ECG (the
    server's ``[ecg]``; None: the engine's defaults)."""
    source = SignalSource(signals, annotate_config)
    return ReadingApi(
        route_handlers=[ReadingController, CriticalController, EcgLibraryController],
        dependencies={
            "reading_service": Provide(lambda: service, use_cache=True, sync_to_thread=False),
            "ecg_signals": Provide(lambda: source, use_cache=True, sync_to_thread=False),
        },
        middleware=[],
    )
