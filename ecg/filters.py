"""ECG band-pass and mains-notch filters, zero-phase for records and causal for streams.

Design notes
------------
- Two modes. ``diagnostic``: 0.05 Hz to ``min(150, 0.4 * fs)`` Hz, the AHA bandwidth
  for a diagnostic 12-lead ECG (keeps the ST segment and notches). ``monitoring``:
  0.5 Hz to ``min(40, 0.4 * fs)`` Hz, the usual monitor bandwidth (calm baseline, less
  muscle noise, distorts ST). Both are a Butterworth high-pass (order 2) cascaded with a
  Butterworth low-pass (order 4), designed as separate sections so that each edge is
  exactly where it is designed, plus a mains notch (``scipy.signal.iirnotch``, Q = 30,
  about 1.7 Hz wide at 50 Hz) at 50 Hz by default or 60 Hz, skipped when the mains
  frequency is at or above the Nyquist frequency.
- The band edges are -3 dB points of the filter *as applied*: the causal filter is
  designed with its cut-offs at the edges; the zero-phase filter runs forwards and
  backwards, which squares the magnitude, so its cut-offs are moved (in the
  bilinear-warped frequency axis, where the Butterworth formula is exact) until the
  squared response is -3 dB at the edges.
- Zero-phase start-up: mirror padding of up to 2 s at each end, and each pass starts at
  the steady state of the median of its first second (``_filtfilt``), not scipy's
  ``sosfiltfilt`` whose first-sample start leaves a 0.05 Hz high-pass settling for tens
  of seconds (0.2 mV errors in a 10 s ECG starting on a QRS; 0.02 mV here).
- Designs are cached per ``(fs_hz, mode, mains_hz)``: a province re-annotating millions
  of records at a handful of sampling rates designs each filter once.
- Streaming: ``state = filter_start(...)``, ``y, state = filter_step(x, state)``. The
  state of each lead starts at the steady state of its first valid sample, so a stream
  does not open with a step transient of the electrode offset; ``filter_causal`` is the
  same computation in one call, and chunked equals one-shot to float rounding.
- NaN (no sample: a gap, a lead off) never poisons the stream: NaN samples give NaN
  output, and the lead's filter restarts at the next valid sample as at the start of a
  stream. The zero-phase form filters each run of valid samples on its own. So a
  missing stretch costs that stretch and a short settling, never the rest of the record.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import signal as sps

from ecg._filters_kernels import (
    N_SECTIONS,
    N_SECTIONS_SHORT,
    pad_sections,
    sosfilt_samples,
    sosfilt_samples_short,
)
from ecg.errors import ConfigError, SignalError

__all__ = [
    "FilterDesign",
    "FilterMode",
    "FilterState",
    "design_filter",
    "filter_causal",
    "filter_leads_causal",
    "filter_start",
    "filter_step",
    "filter_zero_phase",
    "highpass_zero_phase",
    "sosfilt_rows_zi",
    "true_runs",
]

HIGHPASS_ORDER = 2
LOWPASS_ORDER = 4
NOTCH_Q = 30.0
# Upper edge at most this fraction of fs: keeps the low-pass away from Nyquist, where
# a Butterworth design degenerates.
MAX_EDGE_FRACTION_OF_FS = 0.4
# Zero-phase form: mirror padding at each end, and the window whose median sets the
# start-up state of each pass (see _filtfilt).
PAD_S = 2.0
INIT_WINDOW_S = 1.0

FloatArray = NDArray[np.float64]


class FilterMode(enum.StrEnum):
    """Filter bandwidth: ``diagnostic`` (0.05–150 Hz) or ``monitoring`` (0.5–40 Hz)."""

    DIAGNOSTIC = "diagnostic"
    MONITORING = "monitoring"


_BAND_HZ = {FilterMode.DIAGNOSTIC: (0.05, 150.0), FilterMode.MONITORING: (0.5, 40.0)}


@dataclass(frozen=True, eq=False)
class FilterDesign:
    """One designed filter, in both forms.

    Attributes
    ----------
    fs_hz : float
        Sampling frequency in Hz.
    mode : FilterMode
    mains_hz : float or None
        Notch frequency in Hz, ``None`` when no notch is applied.
    low_hz, high_hz : float
        Band edges in Hz: -3 dB points of each form as applied.
    sos_causal : ndarray, shape (n_sections, 6)
        Sections of the causal filter.
    sos_zero_phase : ndarray, shape (n_sections, 6)
        Sections to run forwards and backwards.
    zi_unit : ndarray, shape (n_sections, 2)
        Causal state at steady state for a constant input of 1.
    zi_unit_zero_phase : ndarray, shape (n_sections, 2)
        The same for ``sos_zero_phase``.
    """

    fs_hz: float
    mode: FilterMode
    mains_hz: float | None
    low_hz: float
    high_hz: float
    sos_causal: FloatArray
    sos_zero_phase: FloatArray
    zi_unit: FloatArray
    zi_unit_zero_phase: FloatArray


def design_filter(
    fs_hz: float, mode: FilterMode | str = FilterMode.DIAGNOSTIC, mains_hz: float | None = 50.0
) -> FilterDesign:
    """Design (or fetch from the cache) the filter for a sampling rate and mode.

    Parameters
    ----------
    fs_hz : float
        Sampling frequency in Hz (> 0).
    mode : FilterMode or str
        ``"diagnostic"`` or ``"monitoring"``.
    mains_hz : float or None
        Mains frequency to notch in Hz (50 or 60); ``None`` or 0 for no notch. Ignored
        when at or above the Nyquist frequency.

    Returns
    -------
    FilterDesign

    Raises
    ------
    ConfigError
        For a non-positive or non-finite ``fs_hz``, an unknown mode or a negative
        ``mains_hz``.
    """
    if not (math.isfinite(fs_hz) and fs_hz > 0):
        raise ConfigError(f"fs_hz must be a positive number, got {fs_hz!r}")
    try:
        mode = FilterMode(mode)
    except ValueError:
        raise ConfigError(
            f"mode must be one of {[m.value for m in FilterMode]}, got {mode!r}"
        ) from None
    if mains_hz is not None and not (math.isfinite(mains_hz) and mains_hz >= 0):
        raise ConfigError(f"mains_hz must be >= 0 or None, got {mains_hz!r}")
    notch = mains_hz if mains_hz and mains_hz < fs_hz / 2 else None
    return _design(float(fs_hz), mode, None if notch is None else float(notch))


@functools.lru_cache(maxsize=64)
def _design(fs_hz: float, mode: FilterMode, mains_hz: float | None) -> FilterDesign:
    low_hz, high_hz = _BAND_HZ[mode]
    high_hz = min(high_hz, MAX_EDGE_FRACTION_OF_FS * fs_hz)
    # Zero-phase: the squared response must be -3 dB at the edge, so each pass is
    # -1.5 dB there; for a Butterworth of order N, |H|^2 = 1 / (1 + (w / wc)^(2N)) in
    # the warped axis w = tan(pi f / fs), hence wc = w / (sqrt(2) - 1)^(1 / 2N).
    spread_high = (math.sqrt(2.0) - 1.0) ** (1.0 / (2 * HIGHPASS_ORDER))
    spread_low = (math.sqrt(2.0) - 1.0) ** (1.0 / (2 * LOWPASS_ORDER))
    low_zp = _unwarp(_warp(low_hz, fs_hz) * spread_high, fs_hz)
    high_zp = _unwarp(_warp(high_hz, fs_hz) / spread_low, fs_hz)
    notch = _notch_sos(mains_hz, fs_hz)
    sos_causal = np.vstack([_band_sos(low_hz, high_hz, fs_hz), notch])
    sos_zero_phase = np.vstack([_band_sos(low_zp, high_zp, fs_hz), notch])
    zi_unit = np.asarray(sps.sosfilt_zi(sos_causal), dtype=np.float64)
    zi_unit_zero_phase = np.asarray(sps.sosfilt_zi(sos_zero_phase), dtype=np.float64)
    # Not made read-only: scipy's sosfilt needs writable section arrays.
    return FilterDesign(
        fs_hz=fs_hz,
        mode=mode,
        mains_hz=mains_hz,
        low_hz=low_hz,
        high_hz=high_hz,
        sos_causal=sos_causal,
        sos_zero_phase=sos_zero_phase,
        zi_unit=zi_unit,
        zi_unit_zero_phase=zi_unit_zero_phase,
    )


@functools.lru_cache(maxsize=64)
def _highpass_design(fs_hz: float, mode: FilterMode) -> FilterDesign:
    low_hz = _BAND_HZ[mode][0]
    spread_high = (math.sqrt(2.0) - 1.0) ** (1.0 / (2 * HIGHPASS_ORDER))
    low_zp = _unwarp(_warp(low_hz, fs_hz) * spread_high, fs_hz)
    sos_causal = sps.butter(HIGHPASS_ORDER, low_hz, btype="highpass", fs=fs_hz, output="sos")
    sos_zero_phase = sps.butter(HIGHPASS_ORDER, low_zp, btype="highpass", fs=fs_hz, output="sos")
    return FilterDesign(
        fs_hz=fs_hz,
        mode=mode,
        mains_hz=None,
        low_hz=low_hz,
        high_hz=fs_hz / 2,
        sos_causal=np.asarray(sos_causal, dtype=np.float64),
        sos_zero_phase=np.asarray(sos_zero_phase, dtype=np.float64),
        zi_unit=np.asarray(sps.sosfilt_zi(sos_causal), dtype=np.float64),
        zi_unit_zero_phase=np.asarray(sps.sosfilt_zi(sos_zero_phase), dtype=np.float64),
    )


def highpass_zero_phase(
    x: NDArray[np.floating], fs_hz: float, mode: FilterMode | str = FilterMode.DIAGNOSTIC
) -> FloatArray:
    """The high-pass edge of ``mode`` alone, zero-phase, along axis 0.

    For slow measures taken at a low rate, such as a baseline sampled every 0.5 s
    (``ecg.flags``): at 2 Hz the band's low-pass and the mains notch have nothing left
    to do, and the high-pass costs next to nothing.

    Parameters
    ----------
    x : ndarray, shape (n_samples,) or (n_samples, n_columns)
        NaN-free signal.
    fs_hz : float
        Its sampling rate in Hz; the mode's high-pass edge must be below ``fs_hz / 2``.
    mode : FilterMode or str

    Returns
    -------
    ndarray of float64, same shape as ``x``
    """
    if not (math.isfinite(fs_hz) and fs_hz > 2 * _BAND_HZ[FilterMode(mode)][0]):
        raise ConfigError(f"fs_hz must be above twice the {mode} high-pass edge, got {fs_hz!r}")
    data = np.asarray(x, dtype=np.float64)
    if data.shape[0] == 0:
        return data.copy()
    return _filtfilt(_highpass_design(float(fs_hz), FilterMode(mode)), data)


def _warp(f_hz: float, fs_hz: float) -> float:
    return math.tan(math.pi * f_hz / fs_hz)


def _unwarp(w: float, fs_hz: float) -> float:
    return math.atan(w) * fs_hz / math.pi


def _band_sos(low_hz: float, high_hz: float, fs_hz: float) -> FloatArray:
    high = sps.butter(HIGHPASS_ORDER, low_hz, btype="highpass", fs=fs_hz, output="sos")
    low = sps.butter(LOWPASS_ORDER, high_hz, btype="lowpass", fs=fs_hz, output="sos")
    return np.vstack([high, low]).astype(np.float64)


def _notch_sos(mains_hz: float | None, fs_hz: float) -> FloatArray:
    if mains_hz is None:
        return np.empty((0, 6))
    b, a = sps.iirnotch(mains_hz, NOTCH_Q, fs=fs_hz)
    return np.asarray(sps.tf2sos(b, a), dtype=np.float64)


def _as_2d(x: NDArray[np.floating] | NDArray[np.integer]) -> FloatArray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim == 1:
        return array[:, None]
    if array.ndim != 2:
        raise SignalError(f"signal must be (n_samples,) or (n_samples, n_leads), got {array.shape}")
    return array


def filter_zero_phase(
    x: NDArray[np.floating] | NDArray[np.integer],
    fs_hz: float,
    mode: FilterMode | str = FilterMode.DIAGNOSTIC,
    mains_hz: float | None = 50.0,
    *,
    lead_major: bool = False,
) -> FloatArray:
    """Filter a recorded signal forwards and backwards (no phase shift).

    Parameters
    ----------
    x : ndarray, shape (n_samples,) or (n_samples, n_leads)
        Signal in mV (any unit: the filter is linear). NaN marks missing samples.
    fs_hz : float
        Sampling frequency in Hz.
    mode : FilterMode or str
        ``"diagnostic"`` or ``"monitoring"``.
    mains_hz : float or None
        Mains frequency to notch in Hz; ``None`` for none.
    lead_major : bool
        Return a 2-D signal lead-major, shape (n_leads, n_samples), each row
        contiguous: the backward pass writes it so, in place of a transposing copy
        (the delineation works on rows).

    Returns
    -------
    ndarray of float64, same shape as ``x`` (transposed with ``lead_major``)
        Filtered signal; NaN where ``x`` is NaN. Each run of valid samples between NaN
        is filtered on its own.
    """
    design = design_filter(fs_hz, mode, mains_hz)
    data = _as_2d(x)
    lead_major = lead_major and np.ndim(x) == 2
    finite = np.isfinite(data)
    if data.shape[0] and finite.all():
        return _filtfilt(design, data, lead_major=lead_major).reshape(
            np.shape(x)[::-1] if lead_major else np.shape(x)
        )
    out = np.full(data.shape, np.nan)
    for lead in range(data.shape[1]):
        for start, stop in true_runs(finite[:, lead]):
            out[start:stop, lead] = _filtfilt(design, data[start:stop, lead])
    return np.ascontiguousarray(out.T) if lead_major else out.reshape(np.shape(x))


def _filtfilt(design: FilterDesign, x: FloatArray, *, lead_major: bool = False) -> FloatArray:
    """Forward-backward filtering of a NaN-free signal along axis 0 (2-D: returned
    lead-major with ``lead_major``).

    Not ``scipy.signal.sosfiltfilt``: its start-up state is the steady state of the
    first (padded) sample, and with a 0.05 Hz high-pass the error of that guess decays
    over tens of seconds (0.2 mV in the middle of a 10 s ECG). Here the signal is
    extended by mirror images of up to ``PAD_S`` seconds and each pass starts at the
    steady state of the median of its first ``INIT_WINDOW_S`` seconds, a good guess of
    the baseline even when the record starts on a QRS complex.
    """
    n_samples = x.shape[0]
    pad = min(n_samples - 1, int(PAD_S * design.fs_hz))
    window = max(1, int(INIT_WINDOW_S * design.fs_hz))
    extended = np.concatenate([x[pad:0:-1], x, x[-2 : -pad - 2 : -1]])
    sos = design.sos_zero_phase
    zi_unit = design.zi_unit_zero_phase.reshape(sos.shape[0], 2, *([1] * (x.ndim - 1)))
    if x.ndim == 1:  # one lead (a run between NaN) on scipy's sosfilt
        forward, _ = _sosfilt_axis0(sos, extended, zi_unit * np.median(extended[:window]))
        backward = forward[::-1]
        result, _ = _sosfilt_axis0(sos, backward, zi_unit * np.median(backward[:window]))
        return np.asarray(result[::-1][pad : pad + n_samples], dtype=np.float64)
    # Leads at once on the compiled kernel (bit for bit scipy's sosfilt). The backward
    # pass reads the forward one reversed and writes its output reversed (strided
    # views): the result comes out in time order, in the layout asked for, without
    # reversing or transposing copies.
    forward, _ = _sosfilt_columns(sos, extended, zi_unit * np.median(extended[:window], axis=0))
    backward = forward[::-1]
    zi = zi_unit * np.median(backward[:window], axis=0)
    if lead_major:
        rows = np.empty(extended.shape[::-1])
        _sosfilt_samples(sos, backward, zi, rows.T[::-1])
        return rows[:, pad : pad + n_samples]
    result = np.empty(extended.shape)
    _sosfilt_samples(sos, backward, zi, result[::-1])
    return result[pad : pad + n_samples]


def _sosfilt_axis0(sos: FloatArray, x: FloatArray, zi: FloatArray) -> tuple[FloatArray, FloatArray]:
    y, zf = sps.sosfilt(sos, x, axis=0, zi=zi)
    return np.asarray(y), np.asarray(zf)


def filter_leads_causal(
    x_leads: NDArray[np.floating],
    fs_hz: float,
    mode: FilterMode | str = FilterMode.DIAGNOSTIC,
    mains_hz: float | None = 50.0,
    *,
    dtype: type[np.float32] | type[np.float64] = np.float64,
) -> NDArray[np.floating]:
    """Filter a recorded signal causally in one pass, for measuring rather than display.

    Half the cost of :func:`filter_zero_phase` (one pass instead of two, no padding),
    and the same filter as a live stream's (:func:`filter_step`). Unlike a stream, a
    record is known in advance, so each run of valid samples starts at the steady state
    of the median of its first ``INIT_WINDOW_S`` seconds (as the zero-phase form does),
    not of its first sample, which may sit on a QRS complex.

    Parameters
    ----------
    x_leads : ndarray, shape (n_leads, n_samples)
        Signal in mV, **lead-major** (one row per lead). NaN marks missing samples.
    fs_hz, mode, mains_hz
        As for :func:`design_filter`.
    dtype : numpy float type
        Of the result: float32 halves the memory of a measure that needs no more (the
        quality flags); the values are the float64 ones, rounded once.

    Returns
    -------
    ndarray of ``dtype``, shape (n_leads, n_samples)
        Filtered rows; NaN where ``x_leads`` is NaN.
    """
    design = design_filter(fs_hz, mode, mains_hz)
    data = np.asarray(x_leads, dtype=np.float64)
    if data.ndim != 2:
        raise SignalError(f"x_leads must be (n_leads, n_samples), got {data.shape}")
    sos = design.sos_causal
    window = max(1, int(INIT_WINDOW_S * design.fs_hz))
    out = np.empty(data.shape, dtype=dtype)
    if data.shape[1] == 0:
        return out
    start = np.median(data[:, :window], axis=1)
    zi = design.zi_unit[:, :, None] * start[None, None, :]
    _sosfilt_samples(sos, data.T, zi, out.T)
    # A NaN sample leaves the recursion NaN to the end of its row: the last output
    # tells which rows hold one, without a pass over the input. Only those are redone,
    # run by run.
    for lead in np.flatnonzero(np.isnan(out[:, -1])).tolist():
        row = data[lead]
        out[lead] = np.nan
        for start_index, stop in true_runs(np.isfinite(row)):
            run = row[start_index:stop]
            run_zi = design.zi_unit * float(np.median(run[:window]))
            out[lead, start_index:stop], _ = sps.sosfilt(sos, run, zi=run_zi)
    return out


def _sosfilt_samples(
    sos: FloatArray, x: FloatArray, zi: FloatArray, out: NDArray[np.floating]
) -> None:
    """``sosfilt`` along axis 0 of ``x`` (n_samples, n_leads) into ``out``, bit for bit.

    ``zi`` (n_sections, 2, n_leads) is updated in place. The compiled kernel
    (``ecg._filters_kernels``) when the design has at most its number of sections,
    else scipy's (same result, slower).
    """
    n_sections = sos.shape[0]
    if n_sections > N_SECTIONS:  # pragma: no cover - ecg's designs have 3 or 4
        y, zi[...] = sps.sosfilt(sos, x, axis=0, zi=zi)
        out[...] = y
        return
    # The short kernel for the one- and two-section designs (the delineation's low-pass
    # and band-passes): identity sections cost as much as real ones in the recursion.
    kernel, width = (
        (sosfilt_samples_short, N_SECTIONS_SHORT)
        if n_sections <= N_SECTIONS_SHORT
        else (sosfilt_samples, N_SECTIONS)
    )
    if n_sections == width:
        kernel(sos, x, zi, out)
        return
    padded = np.zeros((width, 2, zi.shape[2]))
    padded[:n_sections] = zi
    kernel(pad_sections(sos, width), x, padded, out)
    zi[...] = padded[:n_sections]


def true_runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True in a 1-D boolean ``mask`` (stop exclusive)."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


@dataclass(frozen=True, eq=False)
class FilterState:
    """State of the causal filter between chunks.

    Attributes
    ----------
    design : FilterDesign
    zi : ndarray, shape (n_sections, 2, n_leads)
        ``sosfilt`` state per lead.
    started : ndarray of bool, shape (n_leads,)
        False for a lead whose filter waits for its next valid sample (at the start and
        after NaN) to initialise at that sample's steady state.
    n_samples : int
        Samples consumed so far.
    """

    design: FilterDesign
    zi: FloatArray
    started: NDArray[np.bool_]
    n_samples: int = 0

    @property
    def n_leads(self) -> int:
        """Number of leads the state was started for."""
        return int(self.started.shape[0])


def filter_start(
    n_leads: int,
    fs_hz: float,
    mode: FilterMode | str = FilterMode.DIAGNOSTIC,
    mains_hz: float | None = 50.0,
) -> FilterState:
    """Start a causal filter for a stream of ``n_leads`` leads.

    Parameters
    ----------
    n_leads : int
        Number of leads (columns of each chunk), >= 1.
    fs_hz, mode, mains_hz
        As for :func:`design_filter`.

    Returns
    -------
    FilterState
    """
    if n_leads < 1:
        raise ConfigError(f"n_leads must be >= 1, got {n_leads}")
    design = design_filter(fs_hz, mode, mains_hz)
    zi = np.zeros((design.sos_causal.shape[0], 2, n_leads))
    return FilterState(design=design, zi=zi, started=np.zeros(n_leads, dtype=bool))


def filter_step(
    x: NDArray[np.floating] | NDArray[np.integer], state: FilterState
) -> tuple[FloatArray, FilterState]:
    """Filter one chunk of a stream causally.

    Parameters
    ----------
    x : ndarray, shape (n_samples, n_leads)
        The next samples in mV (``n_samples`` may be 0). NaN marks missing samples.
    state : FilterState
        From :func:`filter_start` or the previous call.

    Returns
    -------
    y : ndarray of float64, shape (n_samples, n_leads)
        Filtered chunk, NaN where ``x`` is NaN.
    state : FilterState
        The state to pass with the next chunk (``state`` itself is not modified).

    Raises
    ------
    SignalError
        When the chunk's lead count differs from the state's.
    """
    data = _as_2d(x)
    if data.shape[1] != state.n_leads:
        raise SignalError(f"chunk has {data.shape[1]} leads, the stream has {state.n_leads}")
    if data.shape[0] == 0:
        return np.empty(data.shape), state
    sos = state.design.sos_causal
    finite = np.isfinite(data)
    if finite.all() and state.started.all():
        # The common case: every lead running, no gap; one compiled call, on a copy of
        # the state (``started`` is shared: nothing changes it in place).
        y, zi = _sosfilt_columns(sos, data, state.zi)
        return y, FilterState(state.design, zi, state.started, state.n_samples + data.shape[0])
    zi = state.zi.copy()
    started = state.started.copy()
    y = np.full(data.shape, np.nan)
    for lead in range(data.shape[1]):
        column = data[:, lead]
        lead_zi = zi[:, :, lead]
        cursor = 0
        for start, stop in true_runs(finite[:, lead]):
            if start > cursor or not started[lead]:
                # A gap (or the very start): restart at this sample's steady state.
                lead_zi = state.design.zi_unit * column[start]
            y[start:stop, lead], lead_zi = sps.sosfilt(sos, column[start:stop], zi=lead_zi)
            started[lead] = True
            cursor = stop
        if cursor < data.shape[0]:
            started[lead] = False
        zi[:, :, lead] = lead_zi
    return y, FilterState(state.design, zi, started, state.n_samples + data.shape[0])


def _sosfilt_columns(
    sos: FloatArray, data: NDArray[np.floating] | NDArray[np.integer], zi: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``sps.sosfilt(sos, data, axis=0, zi=zi)``, bit-identical, without its overhead.

    On a live chunk (100 samples x 12 leads) the public function spends four fifths of
    its time checking arguments and moving axes, and its kernel filters one lead after
    the other; the compiled kernel filters the sample-major chunk as it comes, two
    leads at a time (``ecg._filters_kernels``); the test of this module compares both.
    """
    x = np.ascontiguousarray(data, dtype=np.float64)
    y = np.empty(x.shape)
    zf = zi.copy()
    _sosfilt_samples(sos, x, zf, y)
    return y, zf


def sosfiltfilt_columns(sos: FloatArray, x: FloatArray, *, lead_major: bool = False) -> FloatArray:
    """``scipy.signal.sosfiltfilt(sos, x, axis=0)`` (odd padding of scipy's length),
    bit for bit, for finite ``x`` of shape (n_samples, n_leads).

    The same steps as scipy's, with the steady state of the design computed once (a
    linear solve per call, a third of a 10 s record's filtering) and both passes on the
    compiled kernel (:func:`_sosfilt_columns`). Input that is not finite or not longer
    than the padding goes to scipy (which filters it, or raises, as it did).
    ``lead_major``: the result transposed, (n_leads, n_samples) with contiguous rows,
    written so by the backward pass (no transposing copy).
    """
    data = np.asarray(x, dtype=np.float64)
    n_sections = sos.shape[0]
    ntaps = 2 * n_sections + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    edge = 3 * ntaps
    if data.ndim != 2 or data.shape[0] <= edge or not np.isfinite(data).all():
        filtered = np.asarray(sps.sosfiltfilt(sos, data, axis=0), dtype=np.float64)
        return np.ascontiguousarray(filtered.T) if lead_major and data.ndim == 2 else filtered
    # scipy's odd extension (scipy.signal._arraytools.odd_ext), the same operations.
    ext = np.concatenate(
        (2 * data[0:1] - data[edge:0:-1], data, 2 * data[-1:] - data[-2 : -(edge + 2) : -1]),
        axis=0,
    )
    zi = _zi_unit(sos.tobytes(), n_sections)[:, :, None]
    forward, _ = _sosfilt_columns(sos, ext, zi * ext[0:1])
    # The backward pass reads the forward one reversed (a strided view, no copy).
    if lead_major:
        rows = np.empty(ext.shape[::-1])
        _sosfilt_samples(sos, forward[::-1], zi * forward[-1:], rows.T[::-1])
        return rows[:, edge:-edge]
    # The layout of scipy's result too (lead-major, reversed), so that reductions over
    # it sum in the same order.
    backward = np.empty(ext.shape, order="F")
    _sosfilt_samples(sos, forward[::-1], zi * forward[-1:], backward)
    result: FloatArray = backward[::-1][edge:-edge]
    return result


@functools.lru_cache(maxsize=64)
def _zi_unit(sos_bytes: bytes, n_sections: int) -> FloatArray:
    """``scipy.signal.sosfilt_zi`` of the sections whose bytes these are (read-only)."""
    sos = np.frombuffer(sos_bytes, dtype=np.float64).reshape(n_sections, 6)
    zi = np.asarray(sps.sosfilt_zi(sos), dtype=np.float64)
    zi.flags.writeable = False
    return zi


def sosfilt_rows_zi(sos: FloatArray, first: FloatArray) -> FloatArray:
    """Steady-state filter memory ``(n_rows, n_sections, 2)`` for rows starting at ``first``."""
    return np.ascontiguousarray(sps.sosfilt_zi(sos)[None, :, :] * first[:, None, None])


def filter_causal(
    x: NDArray[np.floating] | NDArray[np.integer],
    fs_hz: float,
    mode: FilterMode | str = FilterMode.DIAGNOSTIC,
    mains_hz: float | None = 50.0,
) -> FloatArray:
    """Filter a whole signal causally: ``filter_step`` on one chunk from a fresh start.

    Parameters and return as for :func:`filter_zero_phase`.
    """
    data = _as_2d(x)
    y, _ = filter_step(data, filter_start(data.shape[1], fs_hz, mode, mains_hz))
    return y.reshape(np.shape(x))
