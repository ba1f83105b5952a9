"""ECG critical values (危急值): the findings that must reach a doctor at once.

Design notes
------------
- The rules are those of the critical-value lists Chinese ECG centres publish (the
  Zhejiang provincial list and its like); every threshold is a field of
  :class:`CriticalConfig`, defaulting to the list's value:

  =================  =====================================================  ==========
  code               finding                                                from
  =================  =====================================================  ==========
  ``PAUSE``          an RR interval (no beat) of ``pause_s`` (3.0 s) or     beats
                     more; also while it lasts, provisionally
  ``BRADY_35``       mean ventricular rate below ``low_rate_bpm`` (35/min)  beats
                     over ``low_rate_rr`` consecutive RR intervals
  ``VT``             ventricular rate >= ``vt_bpm`` (150/min) for           beats, QRS
                     ``vt_s`` (30 s) or more with wide QRS (>= 120 ms)      width
  ``VF``             ventricular fibrillation or flutter                    detector
  ``SVT_230``        narrow-QRS (or unknown) rate >= ``svt_bpm`` (230/min)  beats
                     over ``fast_rr`` consecutive intervals
  ``AF_RVR_180``     AF or flutter with ventricular rate >= ``af_rvr_bpm``  rhythm,
                     (180/min) over ``fast_rr`` intervals                   beats
  ``PREEXC_AF``      AF with pre-excitation (WPW) and shortest RR < 250 ms  statements
  ``3AVB_40``        third-degree AV block with rate < 40/min               statements
  ``STEMI``          a pattern of acute ST-elevation MI: ST elevation with  statements
                     reciprocal depression, or twice the threshold
  ``LQT_RONT``       long QT (QTc >= 500 ms) with R-on-T (a premature beat  statements,
                     within the QT of the beat before)                       beats
  =================  =====================================================  ==========

  Polymorphic VT and torsades are not told apart from VF/VFL here: the detector's
  VF/VFL episodes cover them when they fill the trace (``VF``).
- **Streams.** The beat rules look back only (each window ends at the newest beat),
  so a finding is known with the beat that completes it: within the detector's 0.3 s
  of that beat. A pause is shown provisionally as soon as ``pause_s`` have passed
  without a beat, well within 2 s of the signal that proves it. ``critical_step`` is
  incremental and its final findings equal :func:`critical_values` on the whole
  stream (``tests/ecg/test_critical.py``).
- A finding is ``[onset, offset)`` in samples: from the first beat of the first window
  that met the rule to the last beat of the last one (a pause: between its two beats).
  Findings of one code that touch are merged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ecg.errors import ConfigError, SignalError

__all__ = [
    "CRITICAL_TEXT",
    "STEMI_PATTERN",
    "Critical",
    "CriticalConfig",
    "CriticalState",
    "critical_flush",
    "critical_start",
    "critical_step",
    "critical_values",
]

#: English and Chinese text of each code.
CRITICAL_TEXT: dict[str, tuple[str, str]] = {
    "PAUSE": ("Pause of 3 s or more", "心脏停搏/长间歇 ≥3.0 秒"),
    "BRADY_35": ("Mean ventricular rate below 35/min", "平均心室率 <35 次/分"),
    "VT": ("Sustained ventricular tachycardia", "持续性室性心动过速"),
    "VF": ("Ventricular fibrillation or flutter", "心室颤动/心室扑动"),
    "SVT_230": ("Supraventricular tachycardia at 230/min or more", "室上性心动过速 ≥230 次/分"),
    "AF_RVR_180": (
        "Atrial fibrillation or flutter with ventricular rate of 180/min or more",
        "心房颤动/心房扑动伴快速心室率 ≥180 次/分",
    ),
    "PREEXC_AF": (
        "Pre-excited atrial fibrillation with shortest RR below 250 ms",
        "预激综合征合并心房颤动，最短 RR <250 毫秒",
    ),
    "3AVB_40": (
        "Third-degree AV block with rate below 40/min",
        "三度房室传导阻滞，心室率 <40 次/分",
    ),
    "STEMI": (
        "Pattern of acute ST-elevation myocardial infarction",
        "急性 ST 段抬高型心肌梗死图形",
    ),
    "LQT_RONT": ("Long QT with R-on-T", "QT 间期延长伴 R-on-T 现象"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CriticalConfig:
    """Thresholds of the critical values (rates in bpm, times in s)."""

    pause_s: float = 3.0
    low_rate_bpm: float = 35.0
    low_rate_rr: int = 8
    vt_bpm: float = 150.0
    vt_s: float = 30.0
    svt_bpm: float = 230.0
    af_rvr_bpm: float = 180.0
    fast_rr: int = 8
    preexcited_rr_s: float = 0.25
    avb3_bpm: float = 40.0
    long_qtc_ms: float = 500.0
    wide_qrs_ms: float = 120.0

    def __post_init__(self) -> None:
        for name in (
            "pause_s",
            "low_rate_bpm",
            "vt_bpm",
            "vt_s",
            "svt_bpm",
            "af_rvr_bpm",
            "preexcited_rr_s",
            "avb3_bpm",
            "long_qtc_ms",
            "wide_qrs_ms",
        ):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name!r} must be a positive finite number, got {value!r}")
        if self.low_rate_rr < 1 or self.fast_rr < 1:
            raise ConfigError("'low_rate_rr' and 'fast_rr' must be >= 1")


@dataclass(frozen=True, slots=True)
class Critical:
    """One critical finding.

    Attributes
    ----------
    code : str
        A key of :data:`CRITICAL_TEXT`.
    onset, offset : int
        First sample, first sample after (``offset > onset``).
    evidence : dict of str to float
        The measure that met the rule and its threshold (``rate_bpm``, ``limit_bpm``,
        ``pause_s``...).
    """

    code: str
    onset: int
    offset: int
    evidence: dict[str, float] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.code not in CRITICAL_TEXT:
            raise SignalError(f"unknown critical code {self.code!r}")
        if not 0 <= self.onset < self.offset:
            raise SignalError(
                f"critical needs 0 <= onset < offset, got {self.onset}, {self.offset}"
            )

    @property
    def text_en(self) -> str:
        """English text."""
        return CRITICAL_TEXT[self.code][0]

    @property
    def text_zh(self) -> str:
        """Chinese text."""
        return CRITICAL_TEXT[self.code][1]

    def seconds(self, fs_hz: float) -> tuple[float, float]:
        """Onset and offset in seconds from the record's start."""
        return self.onset / fs_hz, self.offset / fs_hz


@dataclass(slots=True)
class _Run:
    onset: int
    offset: int
    worst: float
    limits: dict[str, float]


@dataclass(slots=True, eq=False)
class CriticalState:
    """State of the streaming critical values (updated in place by each step)."""

    fs_hz: float
    config: CriticalConfig
    wide_qrs: bool | None
    recent: list[int] = field(default_factory=list)
    n_samples: int = 0
    runs: dict[str, _Run] = field(default_factory=dict)
    fast_since: int | None = None  # first beat of the current run of VT-rate intervals
    fast_rates: list[float] = field(default_factory=list)
    af: tuple[tuple[int, int], ...] = ()
    vf_seen: int = 0
    ready: list[Critical] = field(default_factory=list)


def critical_start(
    fs_hz: float, config: CriticalConfig = CriticalConfig(), *, wide_qrs: bool | None = None
) -> CriticalState:
    """Start the streaming critical values of a stream at ``fs_hz`` Hz.

    ``wide_qrs``: whether the stream's QRS is wide (>= ``wide_qrs_ms``), when known;
    sustained fast rates are VT only with wide QRS, SVT_230 only without.
    """
    if not (math.isfinite(fs_hz) and fs_hz > 0):
        raise SignalError(f"fs_hz must be > 0, got {fs_hz}")
    return CriticalState(float(fs_hz), config, wide_qrs)


def critical_step(
    new_beats: npt.ArrayLike,
    n_samples: int,
    state: CriticalState,
    *,
    vf_episodes: Sequence[tuple[int, int | None]] = (),
    af_episodes: Sequence[tuple[int, int]] = (),
) -> tuple[list[Critical], list[Critical], CriticalState]:
    """Add beats, time, and the episodes known so far; return final and provisional findings.

    Parameters
    ----------
    new_beats : array_like of int
        Beats since the previous step (absolute samples, increasing).
    n_samples : int
        Samples of the stream so far.
    state : CriticalState
    vf_episodes : sequence of (onset, offset or None)
        Every VF/VFL episode of the stream so far (``DetectorState.vf_episodes``:
        an open one has offset None).
    af_episodes : sequence of (onset, offset)
        AF episodes known so far (final and the open one), for ``AF_RVR_180``.

    Returns
    -------
    final : list of Critical
        Findings that can no longer change, each once over the stream.
    provisional : list of Critical
        Findings going on now (a pause still without its next beat, a fast run, VF).
    state : CriticalState
    """
    if n_samples < state.n_samples:
        raise SignalError(f"n_samples went back from {state.n_samples} to {n_samples}")
    state.n_samples = n_samples
    state.af = tuple((int(a), int(b)) for a, b in af_episodes)
    for beat in np.asarray(new_beats, dtype=np.int64).reshape(-1).tolist():
        if state.recent and beat <= state.recent[-1]:
            raise SignalError("beats must be strictly increasing")
        _add_beat(state, int(beat))
    final = _vf(state, vf_episodes, at_end=False)
    final += state.ready
    state.ready = []
    return _sorted(final), _sorted(_provisional(state, vf_episodes)), state


def critical_flush(
    state: CriticalState, vf_episodes: Sequence[tuple[int, int | None]] = ()
) -> list[Critical]:
    """End of stream: close every open finding."""
    final = _vf(state, vf_episodes, at_end=True)
    for code in list(state.runs):
        _close(state, code)
    final += state.ready
    state.ready = []
    return _sorted(final)


def critical_values(
    beats: npt.ArrayLike,
    fs_hz: float,
    n_samples: int,
    *,
    config: CriticalConfig = CriticalConfig(),
    vf_episodes: Sequence[tuple[int, int]] = (),
    af_episodes: Sequence[tuple[int, int]] = (),
    wide_qrs: bool | None = None,
    statement_codes: Sequence[str] = (),
    qtc_ms: float | None = None,
    qt_ms: float | None = None,
) -> list[Critical]:
    """Critical values of a record (the streaming form in one step, plus the
    statement-based rules, which hold for the whole record).

    Parameters
    ----------
    beats : array_like of int
        R peaks, increasing, inside the record.
    fs_hz : float
    n_samples : int
    config : CriticalConfig
    vf_episodes, af_episodes : sequence of (onset, offset)
    wide_qrs : bool or None
        QRS duration >= ``wide_qrs_ms`` (None: unknown).
    statement_codes : sequence of str
        Codes of the record's statements (``3AVB``, ``WPW``, ``STEMI`` pattern codes,
        ``AFIB``, ``AFLT``, ``LNGQT``).
    qtc_ms, qt_ms : float or None
        The record's QTc and QT, for ``LQT_RONT``.
    """
    peaks = np.asarray(beats, dtype=np.int64).reshape(-1)
    if peaks.size and (peaks[0] < 0 or peaks[-1] >= max(n_samples, 1)):
        raise SignalError("beats must lie inside the record")
    state = critical_start(fs_hz, config, wide_qrs=wide_qrs)
    vf = [(int(a), int(b)) for a, b in vf_episodes]
    final, _, state = critical_step(
        peaks, n_samples, state, vf_episodes=vf, af_episodes=af_episodes
    )
    final += critical_flush(state, vf)
    final += _statement_rules(peaks, fs_hz, n_samples, config, statement_codes, qtc_ms, qt_ms)
    return _sorted(final)


# --------------------------------------------------------------------------- beat rules


def _add_beat(state: CriticalState, beat: int) -> None:
    config, fs = state.config, state.fs_hz
    previous = state.recent[-1] if state.recent else None
    state.recent.append(beat)
    keep = max(config.low_rate_rr, config.fast_rr) + 1
    del state.recent[:-keep]
    if previous is None:
        return
    rr_s = (beat - previous) / fs
    _rule(state, "PAUSE", rr_s >= config.pause_s, previous, beat, rr_s, {"limit_s": config.pause_s})
    rate = _window_rate(state, config.low_rate_rr)
    if rate is not None:
        first = state.recent[-config.low_rate_rr - 1]
        _rule(
            state,
            "BRADY_35",
            rate < config.low_rate_bpm,
            first,
            beat,
            rate,
            {"limit_bpm": config.low_rate_bpm},
            worst_is_low=True,
        )
    fast = _window_rate(state, config.fast_rr)
    if fast is not None:
        first = state.recent[-config.fast_rr - 1]
        in_af = any(a <= first and beat <= b for a, b in state.af)
        _rule(
            state,
            "AF_RVR_180",
            in_af and fast >= config.af_rvr_bpm,
            first,
            beat,
            fast,
            {"limit_bpm": config.af_rvr_bpm},
        )
        _rule(
            state,
            "SVT_230",
            state.wide_qrs is not True and not in_af and fast >= config.svt_bpm,
            first,
            beat,
            fast,
            {"limit_bpm": config.svt_bpm},
        )
    # Sustained VT: consecutive intervals at the VT rate for vt_s, wide QRS.
    rate_now = 60.0 / rr_s
    if rate_now >= config.vt_bpm:
        if state.fast_since is None:
            state.fast_since, state.fast_rates = previous, []
        state.fast_rates.append(rate_now)
    else:
        state.fast_since, state.fast_rates = None, []
    sustained = (
        state.wide_qrs is True
        and state.fast_since is not None
        and (beat - state.fast_since) / fs >= config.vt_s
    )
    since = state.fast_since if state.fast_since is not None else previous
    median = float(np.median(state.fast_rates)) if state.fast_rates else rate_now
    _rule(
        state,
        "VT",
        sustained,
        since,
        beat,
        median,
        {"limit_bpm": config.vt_bpm, "min_s": config.vt_s},
    )


def _window_rate(state: CriticalState, n_rr: int) -> float | None:
    """Mean rate (bpm) of the last ``n_rr`` intervals, None before that many."""
    if len(state.recent) < n_rr + 1:
        return None
    span = state.recent[-1] - state.recent[-n_rr - 1]
    return 60.0 * state.fs_hz * n_rr / span


def _rule(
    state: CriticalState,
    code: str,
    met: bool,
    onset: int,
    offset: int,
    value: float,
    limits: dict[str, float],
    *,
    worst_is_low: bool = False,
) -> None:
    run = state.runs.get(code)
    if met:
        if run is None or onset > run.offset:
            if run is not None:
                _close(state, code)
            state.runs[code] = _Run(onset, offset, value, limits)
        else:
            run.offset = max(run.offset, offset)
            run.worst = min(run.worst, value) if worst_is_low else max(run.worst, value)
    elif run is not None:
        _close(state, code)


# The evidence key of each beat rule's measure.
_MEASURE_KEY = {
    "PAUSE": "pause_s",
    "BRADY_35": "rate_bpm",
    "VT": "rate_bpm",
    "SVT_230": "rate_bpm",
    "AF_RVR_180": "rate_bpm",
}


def _close(state: CriticalState, code: str) -> None:
    run = state.runs.pop(code)
    state.ready.append(_finding(code, run))


def _finding(code: str, run: _Run) -> Critical:
    evidence = {_MEASURE_KEY[code]: run.worst, **run.limits}
    return Critical(code, run.onset, max(run.offset, run.onset + 1), evidence)


def _vf(
    state: CriticalState, episodes: Sequence[tuple[int, int | None]], *, at_end: bool
) -> list[Critical]:
    """VF/VFL episodes that have ended since the last call (all at the end)."""
    found = []
    closed = [(a, b) for a, b in episodes if b is not None or at_end]
    for onset, offset in closed[state.vf_seen :]:
        end = state.n_samples if offset is None else offset
        if end > onset:
            found.append(Critical("VF", int(onset), int(end), {}))
    state.vf_seen = max(state.vf_seen, len(closed))
    return found


def _provisional(
    state: CriticalState, vf_episodes: Sequence[tuple[int, int | None]]
) -> list[Critical]:
    shown = [_finding(code, run) for code, run in state.runs.items()]
    last = state.recent[-1] if state.recent else None
    if last is not None:
        gap_s = (state.n_samples - last) / state.fs_hz
        if gap_s >= state.config.pause_s and "PAUSE" not in state.runs:
            shown.append(
                Critical(
                    "PAUSE",
                    last,
                    state.n_samples,
                    {"pause_s": gap_s, "limit_s": state.config.pause_s},
                )
            )
    shown += [
        Critical("VF", int(a), max(int(a) + 1, state.n_samples), {})
        for a, b in vf_episodes
        if b is None and state.n_samples > a
    ]
    return shown


def _sorted(found: list[Critical]) -> list[Critical]:
    return sorted(found, key=lambda c: (c.onset, c.code))


# --------------------------------------------------------------------------- statement rules

#: The code the statement rules pass for an acute ST-elevation pattern: ST elevation in
#: a territory with reciprocal depression elsewhere, or twice its threshold in two
#: contiguous leads (``ecg.statements.stemi_pattern``).
STEMI_PATTERN = "STEMI_PATTERN"


def _statement_rules(
    beats: npt.NDArray[np.int64],
    fs_hz: float,
    n_samples: int,
    config: CriticalConfig,
    codes: Sequence[str],
    qtc_ms: float | None,
    qt_ms: float | None,
) -> list[Critical]:
    if n_samples <= 0:
        return []
    found = []
    present = set(codes)
    rr_s = np.diff(beats) / fs_hz
    rate = 60.0 / float(np.mean(rr_s)) if rr_s.size else math.nan
    whole = (0, n_samples)
    if "3AVB" in present and math.isfinite(rate) and rate < config.avb3_bpm:
        found.append(Critical("3AVB_40", *whole, {"rate_bpm": rate, "limit_bpm": config.avb3_bpm}))
    if "WPW" in present and present & {"AFIB", "AFLT"} and rr_s.size:
        shortest = float(rr_s.min())
        if shortest < config.preexcited_rr_s:
            found.append(
                Critical(
                    "PREEXC_AF",
                    *whole,
                    {"shortest_rr_s": shortest, "limit_s": config.preexcited_rr_s},
                )
            )
    if STEMI_PATTERN in present:
        territories = sum(code.startswith("STE_") for code in present)
        found.append(Critical("STEMI", *whole, {"ste_territories": float(territories)}))
    if (
        qtc_ms is not None
        and qt_ms is not None
        and math.isfinite(qtc_ms + qt_ms)
        and qtc_ms >= config.long_qtc_ms
        and rr_s.size >= 2
    ):
        # R-on-T: a beat within the QT of the beat before it.
        early = np.flatnonzero(rr_s * 1000.0 < qt_ms)
        if early.size:
            k = int(early[0])
            found.append(
                Critical(
                    "LQT_RONT",
                    int(beats[k]),
                    int(beats[k + 1]) + 1,
                    {
                        "qtc_ms": qtc_ms,
                        "limit_ms": config.long_qtc_ms,
                        "coupling_ms": 1000.0 * float(rr_s[k]),
                    },
                )
            )
    return found
