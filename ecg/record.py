"""Reading WFDB records into one in-memory shape: :class:`Record`.

Design notes
------------
- Everything ``wfdb.rdrecord`` reads is accepted: any storage format (MIT-BIH 212,
  16-bit, PTB-XL ``.mat``, several signal files per record as in PTB's ``.dat`` +
  ``.xyz``), 1 to 15 leads, 100 to 2000 Hz. Outside those ranges the record is refused
  with a :class:`~ecg.errors.RecordError`, because the filters and the detector are
  designed and validated for them.
- Samples are converted to physical units and then to millivolts (``uV``, ``V`` and the
  usual spellings are converted; a lead in a non-voltage unit is refused, because every
  threshold of ``ecg/`` is in mV). Invalid samples (the format's reserved "no sample"
  value) are NaN, exactly as ``wfdb`` returns them, and stay NaN.
- Lead names are normalised to the standard 12-lead spelling (``I, II, III, aVR, aVL,
  aVF, V1..V6``) from any case and the usual decorations (``'avr'``, ``'AVR'``,
  ``'lead V1'``, ``'v1'``); any other name (``'MLII'``, ``'vx'``) is kept as it is.
- The physical limits of the ADC per lead (``adc_limits_mv``) travel with the signal so
  that the quality flags can recognise clipping at the converter's rails.
- Every failure (missing file, corrupt header, truncated or unreadable data, a record
  outside the supported ranges) becomes ``RecordError(path, reason)``: one record's
  problem never surfaces as a ``wfdb`` internal exception.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ecg.errors import RecordError

__all__ = [
    "MAX_FS_HZ",
    "MAX_LEADS",
    "MIN_FS_HZ",
    "Record",
    "normalise_lead_name",
    "read_record",
    "record_length",
    "record_paths",
]

MIN_FS_HZ = 100.0
MAX_FS_HZ = 2000.0
MAX_LEADS = 15

_STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_LEAD_BY_KEY = {name.lower(): name for name in _STANDARD_LEADS}
# Decorations seen in the wild around a standard name: "lead II", "V-1", "avr ", "D_II".
_LEAD_DECORATION = re.compile(r"^(lead|ecg)|[\s_\-.]")

# Factor from a unit string (lower case) to millivolts.
_MV_PER_UNIT = {
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "nv": 1e-6,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
}


@dataclass(frozen=True, eq=False)
class Record:
    """An ECG record in millivolts.

    Parameters
    ----------
    name : str
        The record name (the file name without extension).
    path : str
        The record path as given to :func:`read_record` (without extension).
    fs_hz : float
        Sampling frequency in Hz.
    signal_mv : ndarray of float64, shape (n_samples, n_leads)
        Samples in mV; NaN where the record holds no valid sample.
    lead_names : tuple of str
        Normalised lead names, one per column of ``signal_mv``.
    base_datetime : datetime or None
        Date and time of the first sample when the header gives both.
    adc_limits_mv : ndarray of float64, shape (2, n_leads), or None
        Lowest and highest physical value the ADC can represent per lead, in mV (NaN
        where unknown); ``None`` for records not read from a file.
    comments : tuple of str
        The header's comment lines.
    """

    name: str
    fs_hz: float
    signal_mv: NDArray[np.float64]
    lead_names: tuple[str, ...]
    path: str = ""
    base_datetime: dt.datetime | None = None
    adc_limits_mv: NDArray[np.float64] | None = None
    comments: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        signal = self.signal_mv
        if signal.ndim != 2:
            raise RecordError(self.path or self.name, f"signal must be 2-D, got {signal.ndim}-D")
        if signal.shape[1] != len(self.lead_names):
            raise RecordError(
                self.path or self.name,
                f"{signal.shape[1]} signal columns but {len(self.lead_names)} lead names",
            )
        if not self.fs_hz > 0:
            raise RecordError(self.path or self.name, f"sampling rate {self.fs_hz} Hz")

    @property
    def n_samples(self) -> int:
        """Number of samples per lead."""
        return int(self.signal_mv.shape[0])

    @property
    def n_leads(self) -> int:
        """Number of leads."""
        return int(self.signal_mv.shape[1])

    @property
    def duration_s(self) -> float:
        """Duration in seconds (``n_samples / fs_hz``)."""
        return self.n_samples / self.fs_hz


def normalise_lead_name(name: str) -> str:
    """Return the standard spelling of a 12-lead name, or ``name`` stripped.

    Parameters
    ----------
    name : str
        A lead name as found in a header (``'avr'``, ``'AVR'``, ``'lead V1'``, ``'MLII'``).

    Returns
    -------
    str
        ``'aVR'``, ``'V1'``... for the twelve standard leads; any other name unchanged
        apart from surrounding white space.
    """
    key = _LEAD_DECORATION.sub("", name.strip().lower())
    return _LEAD_BY_KEY.get(key, name.strip())


def record_paths(path: str | os.PathLike[str]) -> list[str]:
    """Expand a record path or a folder into record paths (without extension).

    A folder yields one record per ``.hea`` file directly inside it, in natural order
    (``2`` before ``10``). A path ending in ``.hea`` loses the extension. Any other path
    is returned as it is, so that a missing record is reported when it is read.

    Parameters
    ----------
    path : str or PathLike
        A record path as ``wfdb`` takes it, or a folder.

    Returns
    -------
    list of str
    """
    text = os.fspath(path)
    if os.path.isdir(text):
        names = [entry[:-4] for entry in os.listdir(text) if entry.endswith(".hea")]
        names.sort(key=_natural_key)
        return [os.path.join(text, name) for name in names]
    if text.endswith(".hea"):
        text = text[:-4]
    return [text]


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    # (0, number) and (1, text) so that mixed parts still compare.
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name)]


def read_record(path: str | os.PathLike[str], *, start: int = 0, stop: int | None = None) -> Record:
    """Read a WFDB record in mV with normalised lead names.

    Parameters
    ----------
    path : str or PathLike
        Record path without extension (``'mitdb/100'``); a trailing ``.hea`` is dropped.
    start, stop : int
        Only the samples ``[start, stop)`` of each lead (``stop`` None: to the end),
        clamped to the record: a window of a long record, read without the rest (a
        24-hour record's 10 s are read in milliseconds, not its ~500 MB in seconds).
        A window that holds no sample is a :class:`RecordError`.

    Returns
    -------
    Record

    Raises
    ------
    RecordError
        The header or a signal file is missing, the header is corrupt, the data are
        truncated or unreadable, a lead is not in a voltage unit, or the record has no
        lead, more than 15 leads, or a sampling rate outside 100–2000 Hz.
    """
    record_path = record_paths(path)[0] if not os.path.isdir(os.fspath(path)) else ""
    if not record_path:
        raise RecordError(os.fspath(path), "is a folder, not a record (use record_paths)")
    header_file = record_path + ".hea"
    if not os.path.isfile(header_file):
        raise RecordError(header_file, "header file not found")
    raw = _read_wfdb(record_path, start, stop)
    return _to_record(raw, record_path)


def record_length(path: str | os.PathLike[str]) -> tuple[int, float]:
    """Samples per lead and sampling rate (Hz) of a WFDB record, from its header alone.

    Raises
    ------
    RecordError
        As :func:`read_record` for the header.
    """
    record_path = record_paths(path)[0]
    if not os.path.isfile(record_path + ".hea"):
        raise RecordError(record_path + ".hea", "header file not found")
    header = _read_header(record_path)
    return int(header.sig_len), float(header.fs)


def _read_header(record_path: str) -> Any:
    import wfdb  # imported here: `teleconsult serve` should not pay for it

    try:
        header = wfdb.rdheader(record_path)
    except Exception as error:  # wfdb raises many unrelated types for a bad header
        raise RecordError(record_path + ".hea", f"corrupt header: {_describe(error)}") from None
    _check_header(header, record_path)
    return header


def _read_wfdb(record_path: str, start: int = 0, stop: int | None = None) -> Any:
    import wfdb

    header = _read_header(record_path)
    expected = header.sig_len
    window = start != 0 or stop is not None
    if window and expected is None:
        raise RecordError(record_path + ".hea", "the header gives no length: read it whole")
    first, last = 0, expected
    if window:
        first = min(max(start, 0), expected)
        last = expected if stop is None else min(max(stop, 0), expected)
        if last <= first:
            raise RecordError(record_path, f"no sample in [{start}, {stop}) of {expected}")
        expected = last - first
    try:
        if window:
            raw = wfdb.rdrecord(
                record_path, sampfrom=first, sampto=last, physical=True, return_res=64
            )
        else:
            raw = wfdb.rdrecord(record_path, physical=True, return_res=64)
    except FileNotFoundError as error:
        raise RecordError(str(error.filename or record_path), "signal file not found") from None
    except Exception as error:  # truncated or corrupt data, in whatever form wfdb reports it
        raise RecordError(
            record_path, f"signal data unreadable or truncated: {_describe(error)}"
        ) from None
    got = 0 if raw.p_signal is None else raw.p_signal.shape[0]
    if expected is not None and got != expected:
        raise RecordError(record_path, f"truncated data: {got} of {expected} samples")
    return raw


def _check_header(header: Any, record_path: str) -> None:
    n_leads = int(header.n_sig or 0)
    if n_leads < 1:
        raise RecordError(record_path + ".hea", "the record has no signal")
    if n_leads > MAX_LEADS:
        raise RecordError(
            record_path + ".hea", f"{n_leads} signals; at most {MAX_LEADS} are supported"
        )
    described = len(header.sig_name or [])
    if described != n_leads:
        raise RecordError(
            record_path + ".hea",
            f"corrupt header: declares {n_leads} signals but describes {described}",
        )
    if header.sig_len == 0:
        raise RecordError(record_path + ".hea", "the record holds no sample (length 0)")
    fs_hz = float(header.fs or 0)
    if not MIN_FS_HZ <= fs_hz <= MAX_FS_HZ:
        raise RecordError(
            record_path + ".hea",
            f"sampling rate {fs_hz:g} Hz outside the supported {MIN_FS_HZ:g}–{MAX_FS_HZ:g} Hz",
        )


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _to_record(raw: Any, record_path: str) -> Record:
    n_leads = int(raw.n_sig)
    units = list(raw.units or [None] * n_leads)
    scale = np.empty(n_leads)
    for lead, unit in enumerate(units):
        key = (unit or "mV").strip().lower()
        if key not in _MV_PER_UNIT:
            raise RecordError(
                record_path + ".hea",
                f"signal {lead} ({raw.sig_name[lead]!r}) is in {unit!r}, not a voltage",
            )
        scale[lead] = _MV_PER_UNIT[key]
    signal = np.asarray(raw.p_signal, dtype=np.float64)
    if np.any(scale != 1.0):
        signal = signal * scale
    limits = _adc_limits_mv(raw) * scale
    names = tuple(normalise_lead_name(str(name)) for name in raw.sig_name)
    comments = tuple(str(line) for line in (raw.comments or []))
    return Record(
        name=os.path.basename(record_path),
        path=record_path,
        fs_hz=float(raw.fs),
        signal_mv=np.ascontiguousarray(signal),
        lead_names=names,
        base_datetime=raw.base_datetime,
        adc_limits_mv=limits,
        comments=comments,
    )


def _adc_limits_mv(raw: Any) -> NDArray[np.float64]:
    """Physical value of the lowest and highest valid digital sample, per lead."""
    from wfdb.io._signal import SAMPLE_VALUE_RANGE

    n_leads = int(raw.n_sig)
    limits = np.full((2, n_leads), np.nan)
    for lead in range(n_leads):
        fmt = str(raw.fmt[lead]) if raw.fmt else ""
        digital = SAMPLE_VALUE_RANGE.get(fmt)
        if digital is None:
            continue
        # The lowest value of each format is reserved for "no sample" (NaN).
        low, high = digital[0] + 1, digital[1]
        resolution = int(raw.adc_res[lead] or 0) if raw.adc_res else 0
        if 0 < resolution < 32:
            zero = int(raw.adc_zero[lead] or 0) if raw.adc_zero else 0
            low = max(low, zero - 2 ** (resolution - 1))
            high = min(high, zero + 2 ** (resolution - 1) - 1)
        gain = float(raw.adc_gain[lead]) or 200.0
        baseline = float(raw.baseline[lead])
        limits[:, lead] = ((low - baseline) / gain, (high - baseline) / gain)
    return limits
