"""Pre-annotation of a recorded ECG: beats, RR, heart rate, rhythm and quality flags.

Design notes
------------
- :func:`annotate` is pure: a :class:`~ecg.record.Record` in, an :class:`Annotation` out;
  reading and writing files is ``ecg.record`` and ``ecg.output``'s business.
- Beats come from :func:`ecg.detect.detect_qrs` on the record as read (it filters for
  itself and ignores unusable leads). The quality flags need a filtered signal too, for
  two measures only, and get the cheapest one that serves (issue 2's speed target is
  10 M samples/s per lead for the whole path): the high-frequency noise measure runs
  on one causal pass of the configured band and notch
  (:func:`ecg.filters.filter_leads_causal`, the live stream's filter, started at the
  baseline, compiled, two leads at a time, kept in float32, all the measure uses),
  and the baseline-wander measure on the 0.5 s block medians of the raw
  signal high-passed zero-phase at the block rate (``wander_mode``), so no zero-phase
  filter of the whole record is run. The mode still decides whether slow wander and
  muscle noise that the monitoring band would hide are flagged. Lead-off and
  saturation are measured on the raw samples.
- The stages (:data:`STAGES`: filter, detect, quality, rhythm, measure, interpret,
  summary) hand their
  results to each other in a :class:`Work`; ``bench/ecg_speed.py`` times each one.
  Lead-major copies (one row per lead) are made once, in the filter stage.
- RR intervals (ms) and instantaneous heart rate (bpm) are per interval: ``rr_ms[i]``
  is from ``beats[i]`` to ``beats[i + 1]``. The median heart rate is ``60000 /
  median(rr_ms)``. The minimum and maximum heart rates of the summary are taken from
  the rate smoothed by the running median the rate flags use (``rate_median_beats``),
  so that one premature beat does not become "max HR 180".
- **Measurements** (:mod:`ecg.measure`: delineation, intervals, axes, amplitudes) are
  made on the first ``measure_window_s`` seconds of the record (10 s, the length of
  a diagnostic 12-lead ECG; ``None`` for the whole record), with the beats detected
  there: a 12-lead program reports one set of figures for the standard 10 s, and
  delineating a 24 h Holter beat by beat is not what the batch speed target is for.
  The window starts at sample 0, so fiducials are in record samples.
- **Statements and critical values** come from :func:`ecg.statements.interpret` (the
  statement rules' one call), given the measurements, beats, flags and signal of the
  same window; the annotation keeps them in their JSON form
  (:func:`ecg.statements.statements_to_json`, :func:`ecg.statements.critical_to_json`)
  for the annotation file. Beats are reported as detected even when the
  interpretation finds no ECG (its ``NOECG`` statement says so).
- Where every lead is flagged lead-off at once, the absence of beats is not asystole:
  those stretches (:func:`ecg.flags.all_leads_off`) are handed to
  :func:`ecg.flags.rhythm_flags` as unreadable.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ecg.detect import DetectorConfig, detect_qrs
from ecg.errors import ConfigError, EcgError
from ecg.filters import FilterMode, filter_leads_causal
from ecg.flags import (
    Flag,
    FlagConfig,
    FlagKind,
    all_leads_off,
    quality_flags,
    rhythm_flags,
    running_median,
)
from ecg.measure import MeasureConfig, Measurements, measure
from ecg.record import Record
from ecg.statements import Interpretation, critical_to_json, interpret, statements_to_json

__all__ = [
    "DETECTOR_NAME",
    "STAGES",
    "AnnotateConfig",
    "Annotation",
    "Summary",
    "Work",
    "annotate",
    "annotator_version",
    "heart_rate",
]

DETECTOR_NAME = "teleconsult.ecg.detect"


@functools.lru_cache(maxsize=1)
def annotator_version() -> str:
    """Version of the installed ``teleconsult`` distribution (``"unknown"`` if none).

    Looked up once per process: the lookup reads package metadata from disk (about a
    millisecond, as much as the rhythm flags of a 30 min record).
    """
    try:
        return metadata.version("teleconsult")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnotateConfig:
    """Settings of :func:`annotate`.

    Parameters
    ----------
    mode : FilterMode or str
        Filter band for the quality measures: ``"diagnostic"`` (0.05–150 Hz) or
        ``"monitoring"`` (0.5–40 Hz).
    mains_hz : float or None
        Mains frequency to notch, Hz (50 or 60); ``None`` for no notch.
    flags : FlagConfig
        Rhythm and quality thresholds.
    detector : DetectorConfig
        QRS detector settings.
    measure : MeasureConfig
        Delineation and measurement settings.
    measure_window_s : float or None
        Measurements are made on the record's first ``measure_window_s`` seconds (10 s);
        ``None`` for the whole record; 0 for no measurements.
    interpret : bool
        Also make the coded statements and critical values of the measured window.
    """

    mode: FilterMode = FilterMode.DIAGNOSTIC
    mains_hz: float | None = 50.0
    flags: FlagConfig = field(default_factory=FlagConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    measure_window_s: float | None = 10.0
    interpret: bool = True

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mode", FilterMode(self.mode))
        except ValueError:
            raise ConfigError(
                f"mode must be one of {[m.value for m in FilterMode]}, got {self.mode!r}"
            ) from None
        if self.mains_hz is not None and not (math.isfinite(self.mains_hz) and self.mains_hz > 0):
            raise ConfigError(f"mains_hz must be > 0 or None, got {self.mains_hz!r}")
        window = self.measure_window_s
        if window is not None and not (math.isfinite(window) and window >= 0):
            raise ConfigError(f"measure_window_s must be >= 0 or None, got {window!r}")


@dataclass(frozen=True, slots=True)
class Summary:
    """Figures an expert reads first.

    Attributes
    ----------
    duration_s : float
    beat_count : int
    hr_min_bpm, hr_median_bpm, hr_max_bpm : float
        NaN with fewer than two beats.
    flag_counts : dict of str to int
        Number of flags per kind (every kind present, zeros included).
    detector : str
    version : str
        Version of the annotator (the ``teleconsult`` distribution).
    filter_mode : str
    mains_hz : float or None
    """

    duration_s: float
    beat_count: int
    hr_min_bpm: float
    hr_median_bpm: float
    hr_max_bpm: float
    flag_counts: dict[str, int]
    detector: str
    version: str
    filter_mode: str
    mains_hz: float | None


@dataclass(frozen=True, eq=False)
class Annotation:
    """Everything the pre-annotation found in one record.

    Attributes
    ----------
    record_name : str
    fs_hz : float
    n_samples : int
    lead_names : tuple of str
    base_datetime : datetime or None
    beats : ndarray of int64
        R-peak sample indices, increasing.
    rr_ms : ndarray of float64, shape (n_beats - 1,)
        RR intervals in ms.
    hr_bpm : ndarray of float64, shape (n_beats - 1,)
        Instantaneous heart rate of each RR interval, bpm.
    flags : tuple of Flag
        Rhythm and quality flags, by onset.
    summary : Summary
    measurements : Measurements or None
        Delineation and measurements of the measured window (None when not measured;
        read back from JSON, the delineation holds the per-beat and global fiducials
        but no median beats).
    statements, critical : tuple of dict, or None
        The coded statements and critical values of the measured window in their JSON
        form (``ecg.statements.statements_to_json`` / ``critical_to_json``); None when
        not interpreted.
    interpretation : Interpretation or None
        The full interpretation (in memory only; None when read back from JSON).
    """

    record_name: str
    fs_hz: float
    n_samples: int
    lead_names: tuple[str, ...]
    base_datetime: dt.datetime | None
    beats: NDArray[np.int64]
    rr_ms: NDArray[np.float64]
    hr_bpm: NDArray[np.float64]
    flags: tuple[Flag, ...]
    summary: Summary
    measurements: Measurements | None = None
    statements: tuple[dict[str, Any], ...] | None = None
    critical: tuple[dict[str, Any], ...] | None = None
    interpretation: Interpretation | None = None

    @property
    def median_hr_bpm(self) -> float:
        """Median heart rate in bpm (NaN with fewer than two beats)."""
        return self.summary.hr_median_bpm


def heart_rate(
    beats: NDArray[np.integer], fs_hz: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """RR intervals (ms) and instantaneous heart rate (bpm) of consecutive beats.

    Parameters
    ----------
    beats : array of int
        R-peak samples, increasing.
    fs_hz : float
        Sampling frequency in Hz.

    Returns
    -------
    rr_ms, hr_bpm : ndarray of float64, shape (n_beats - 1,)
    """
    rr_ms = np.diff(np.asarray(beats, dtype=np.int64)).astype(np.float64) * (1000.0 / fs_hz)
    return rr_ms, 60000.0 / rr_ms


@dataclass(eq=False)
class Work:
    """What the stages of :func:`annotate` hand to each other (see :data:`STAGES`)."""

    record: Record
    config: AnnotateConfig
    raw_leads: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    filtered_leads: NDArray[np.float32] = field(
        default_factory=lambda: np.zeros((0, 0), dtype=np.float32)
    )
    beats: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    quality: list[Flag] = field(default_factory=list)
    rhythm: list[Flag] = field(default_factory=list)
    summary: Summary | None = None
    measurements: Measurements | None = None
    interpretation: Interpretation | None = None
    window_stop: int = 0


def _filter_stage(work: Work) -> None:
    record, config = work.record, work.config
    # Lead-major once, for the filter and every quality measure.
    work.raw_leads = np.ascontiguousarray(record.signal_mv.T)
    # float32: the noise measure needs no more (ecg.flags), and it halves the memory.
    work.filtered_leads = filter_leads_causal(
        work.raw_leads, record.fs_hz, config.mode, config.mains_hz, dtype=np.float32
    )


def _detect_stage(work: Work) -> None:
    work.beats = _detect(work.record, work.config)


def _quality_stage(work: Work) -> None:
    record = work.record
    # Transposed views of lead-major arrays: quality_flags uses them without a copy.
    work.quality = quality_flags(
        work.raw_leads.T,
        work.filtered_leads.T,
        record.fs_hz,
        work.config.flags,
        adc_limits_mv=record.adc_limits_mv,
        wander_mode=work.config.mode,
    )


def _rhythm_stage(work: Work) -> None:
    record = work.record
    unreadable = all_leads_off(work.quality, record.n_leads)
    work.rhythm = rhythm_flags(
        work.beats, record.fs_hz, record.n_samples, work.config.flags, unreadable
    )


def _summary_stage(work: Work) -> None:
    _, hr_bpm = heart_rate(work.beats, work.record.fs_hz)
    work.summary = _summarise(work.record, work.config, work.beats, hr_bpm, _all_flags(work))


def _measure_stage(work: Work) -> None:
    record, config = work.record, work.config
    window_s = config.measure_window_s
    if window_s == 0 or record.n_samples == 0:
        return
    stop = (
        record.n_samples
        if window_s is None
        else min(record.n_samples, round(window_s * record.fs_hz))
    )
    work.window_stop = stop
    beats = work.beats[work.beats < stop]
    measure_config = config.measure
    if measure_config.delineate.mains_hz != config.mains_hz:  # one mains setting for all
        measure_config = dataclasses.replace(
            measure_config,
            delineate=dataclasses.replace(measure_config.delineate, mains_hz=config.mains_hz),
        )
    work.measurements = measure(
        record.signal_mv[:stop], record.fs_hz, record.lead_names, beats, measure_config
    )


def _interpret_stage(work: Work) -> None:
    if not work.config.interpret or work.measurements is None:
        return
    stop = work.window_stop
    flags = [f for f in work.rhythm + work.quality if f.onset < stop]
    work.interpretation = interpret(
        work.measurements,
        work.beats[work.beats < stop],
        flags,
        work.record.fs_hz,
        signal_mv=work.record.signal_mv[:stop],
    )


def _all_flags(work: Work) -> tuple[Flag, ...]:
    flags = work.rhythm + work.quality
    # FlagKind is a StrEnum: a kind sorts as its value, without the enum's attribute
    # lookup (``.value``: a third of the summary stage's time on MIT-BIH).
    return tuple(sorted(flags, key=lambda f: (f.onset, f.lead or 0, f.kind)))


#: The stages of :func:`annotate` in order, by name; ``bench/ecg_speed.py`` times each.
STAGES: tuple[tuple[str, Callable[[Work], None]], ...] = (
    ("filter", _filter_stage),
    ("detect", _detect_stage),
    ("quality", _quality_stage),
    ("rhythm", _rhythm_stage),
    ("measure", _measure_stage),
    ("interpret", _interpret_stage),
    ("summary", _summary_stage),
)


def annotate(record: Record, config: AnnotateConfig | None = None) -> Annotation:
    """Pre-annotate a record.

    Parameters
    ----------
    record : Record
        The record in mV (``ecg.record.read_record``).
    config : AnnotateConfig, optional
        Defaults: diagnostic band, 50 Hz notch, the issue's thresholds.

    Returns
    -------
    Annotation
    """
    work = Work(record, config or AnnotateConfig())
    for _, stage in STAGES:
        stage(work)
    if work.summary is None:  # pragma: no cover - the last stage makes it
        raise EcgError("annotate: the summary stage did not run")
    rr_ms, hr_bpm = heart_rate(work.beats, record.fs_hz)
    return Annotation(
        record_name=record.name,
        fs_hz=record.fs_hz,
        n_samples=record.n_samples,
        lead_names=record.lead_names,
        base_datetime=record.base_datetime,
        beats=work.beats,
        rr_ms=rr_ms,
        hr_bpm=hr_bpm,
        flags=_all_flags(work),
        summary=work.summary,
        measurements=work.measurements,
        statements=(
            None if work.interpretation is None else tuple(statements_to_json(work.interpretation))
        ),
        critical=(
            None
            if work.interpretation is None
            else tuple(critical_to_json(work.interpretation, record.fs_hz))
        ),
        interpretation=work.interpretation,
    )


def _detect(record: Record, config: AnnotateConfig) -> NDArray[np.int64]:
    if record.n_samples == 0:
        return np.zeros(0, dtype=np.int64)
    beats = np.asarray(detect_qrs(record.signal_mv, record.fs_hz, config.detector), np.int64)
    # Defensive: the output format needs strictly increasing samples inside the record.
    beats = np.unique(beats)
    return beats[(beats >= 0) & (beats < record.n_samples)]


def _summarise(
    record: Record,
    config: AnnotateConfig,
    beats: NDArray[np.int64],
    hr_bpm: NDArray[np.float64],
    flags: tuple[Flag, ...],
) -> Summary:
    counts = Counter(flag.kind for flag in flags)
    if hr_bpm.size:
        width = config.flags.rate_median_beats
        smooth = running_median(hr_bpm, width)
        hr = (float(smooth.min()), 60.0 / float(np.median(60.0 / hr_bpm)), float(smooth.max()))
    else:
        hr = (math.nan, math.nan, math.nan)
    return Summary(
        duration_s=record.duration_s,
        beat_count=int(beats.size),
        hr_min_bpm=hr[0],
        hr_median_bpm=hr[1],
        hr_max_bpm=hr[2],
        flag_counts={kind.value: counts.get(kind, 0) for kind in FlagKind},
        detector=DETECTOR_NAME,
        version=annotator_version(),
        filter_mode=config.mode.value,
        mains_hz=config.mains_hz,
    )
