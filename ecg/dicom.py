"""DICOM 12-lead ECG waveforms: export with the measurements and statements, and import.

Design notes
------------
- Export writes one 12-Lead ECG Waveform Storage instance (SOP class
  1.2.840.10008.5.1.4.1.1.9.1.1, PS3.3 A.34.3) with pydicom, Explicit VR Little Endian,
  UTF-8 (``ISO_IR 192``, so Chinese names and statements need no other character set).
  One multiplex group (``RHYTHM``): samples as signed 16-bit integers (``SS``),
  channels interleaved; per channel the lead as an SCP-ECG code (``SCPECG``
  ``5.6.3-9-N``, N as in ISO/IEEE 11073 ``2:N``, PS3.16 CID 3001), the sensitivity in
  µV per count (UCUM ``uV``), correction factor 1, baseline 0, the filter band and the
  notch. A lead with a name outside the code table is "Unspecified lead" with its name
  in the channel label. NaN samples are the padding value (-32768).
- The 12-lead IOD's limits (1–13 channels, at most 16384 samples per channel) decide
  the SOP class: a longer record, or one of 14–24 leads (PTB's 15), is a General ECG
  Waveform (…9.1.2) with the same modules, never cut. Both are sampled at
  200–1000 Hz: outside that, or beyond 24 leads, export refuses with a
  :class:`DicomError` whose code says which limit; it never resamples.
- Integer samples with a gain are written as they are (bit for bit); float samples in
  mV are quantised at ``uv_per_count`` (1 µV by default, ±32.767 mV), refused with
  ``sample_range`` when they do not fit.
- Measurements go to the Waveform Annotation Sequence (group 1): the concept name as
  an ISO/IEEE 11073 (``MDC``) code where one is standard (heart rate ``2:16770``, RR
  ``2:16168``, PR ``2:15872``, P ``2:16184``, QRS ``2:16156``, QT ``2:16160``, QTc
  Bazett ``2:15880``, Fridericia ``2:15892``, frontal P/QRS/T axes ``2:16128``,
  ``2:16132``, ``2:16136``), else a local code (``99TCECG``, the DICOM convention for
  private schemes); the value with its UCUM unit; an absent measurement as the same
  concept with no number and the coded value "Measurement failure" (DCM 114006; the
  reason is not kept). Statements (group 2) carry their
  code (``99TCECG``, English text as code meaning, cut to the 64 characters DICOM
  allows) and their Chinese text (or English) as unformatted text; critical findings
  have a group of their own; severity other than critical is not kept.
- Import (:func:`read_dicom`) accepts 12-lead and General ECG waveforms, takes the
  first multiplex group that is not a median beat, and checks what a file could lie
  about before trusting it: the channel count against the channel definitions, the
  data length against channels × samples, the sampling frequency, the sample format;
  each failure is a :class:`DicomError` with a stable code. Lead codes are read in
  SCPECG and MDC spellings, measurements in MDC and the legacy SCP-ECG codes other
  writers use (``5.13.5-7`` PR...), statements that are only text as statements.
- :func:`write_dicom_to` writes a file a window at a time (memory holds one window,
  whatever the record's length; :func:`write_dicom` is it into bytes). pydicom encodes
  a whole sequence in memory before writing it, so the dataset is written by pydicom
  without its WaveformSequence, which is the last element (as WaveformData is the
  last of the group), and the sequence, its item and the WaveformData header follow
  by hand with the explicit lengths pydicom would have computed: the same bytes.
- UIDs and the creation time are injected (``new_uid``, ``now``) so that export is a
  pure function of its arguments.
"""

from __future__ import annotations

import datetime as dt
import enum
import io
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ecg.errors import EcgError
from ecg.paper_content import (
    QTC_FORMULAS,
    Measurement,
    Measurements,
    Patient,
    ReportInfo,
    Statement,
    qtc_key,
)

__all__ = [
    "GENERAL_ECG_SOP_CLASS",
    "MAX_CHANNELS",
    "MAX_GENERAL_CHANNELS",
    "MAX_SAMPLES",
    "PADDING",
    "TWELVE_LEAD_SOP_CLASS",
    "DicomEcg",
    "DicomError",
    "DicomErrorCode",
    "check_iod",
    "quantise_mv",
    "read_dicom",
    "write_dicom",
    "write_dicom_to",
]

TWELVE_LEAD_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.9.1.1"
GENERAL_ECG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.9.1.2"
_ACCEPTED = {TWELVE_LEAD_SOP_CLASS: 13, GENERAL_ECG_SOP_CLASS: 24}  # channels at most
# The 12-lead IOD's limits; past them a record is written as a General ECG.
MAX_CHANNELS = 13
MAX_SAMPLES = 16384
MAX_GENERAL_CHANNELS = 24
# WaveformData is one OW element: it and the rest of its sequence item and sequence
# must fit the sequence's 32-bit length field (1 MiB is left for the group's other
# elements, which take ~10 kB for 24 channels).
_MAX_DATA_BYTES = 2**32 - 2 - 2**20
MIN_FS_HZ = 200.0
MAX_FS_HZ = 1000.0
PADDING = -32768
LOCAL_SCHEME = "99TCECG"
_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
_CHARACTER_SET = "ISO_IR 192"  # UTF-8


class DicomErrorCode(enum.StrEnum):
    """Why a DICOM waveform cannot be written or read."""

    NOT_DICOM = "not_dicom"
    NOT_ECG_WAVEFORM = "not_ecg_waveform"
    MISSING_ATTRIBUTE = "missing_attribute"
    CHANNEL_COUNT = "channel_count"
    DATA_LENGTH = "data_length"
    SAMPLING_FREQUENCY = "sampling_frequency"
    SAMPLE_FORMAT = "sample_format"
    SAMPLE_RANGE = "sample_range"
    TOO_LONG = "too_long"
    BAD_SIGNAL = "bad_signal"


class DicomError(EcgError):
    """A waveform that cannot be exported, or a file that is not one we can read.

    Parameters
    ----------
    code : DicomErrorCode
        Stable, for programs and API clients.
    reason : str
        What is wrong, safe to show to the uploader.
    """

    def __init__(self, code: DicomErrorCode, reason: str) -> None:
        super().__init__(f"{code.value}: {reason}")
        self.code = code
        self.reason = reason


# Leads: SCP-ECG / ISO/IEEE 11073 lead numbers (PS3.16 CID 3001).
_LEAD_NUMBERS: dict[str, int] = {
    "I": 1, "II": 2, "V1": 3, "V2": 4, "V3": 5, "V4": 6, "V5": 7, "V6": 8, "V7": 9,
    "V3R": 11, "V4R": 12, "X": 16, "Y": 17, "Z": 18,
    "III": 61, "aVR": 62, "aVL": 63, "aVF": 64,
}  # fmt: skip
_LEAD_BY_NUMBER = {number: name for name, number in _LEAD_NUMBERS.items()}
_UNSPECIFIED_LEAD = 0


@dataclass(frozen=True)
class _Concept:
    value: str
    scheme: str
    meaning: str
    unit: str  # UCUM


_MEASUREMENT_CODES: dict[str, _Concept] = {
    "hr_bpm": _Concept("2:16770", "MDC", "ECG heart rate", "/min"),
    "rr_ms": _Concept("2:16168", "MDC", "RR interval global", "ms"),
    "pr_ms": _Concept("2:15872", "MDC", "PR interval global", "ms"),
    "p_ms": _Concept("2:16184", "MDC", "P duration global", "ms"),
    "qrs_ms": _Concept("2:16156", "MDC", "QRS duration global", "ms"),
    "qt_ms": _Concept("2:16160", "MDC", "QT interval global", "ms"),
    qtc_key("bazett"): _Concept("2:15880", "MDC", "QTc interval global, Bazett", "ms"),
    qtc_key("fridericia"): _Concept("2:15892", "MDC", "QTc interval global, Fridericia", "ms"),
    qtc_key("framingham"): _Concept("QTCFRA", LOCAL_SCHEME, "QTc global, Framingham", "ms"),
    qtc_key("hodges"): _Concept("QTCHOD", LOCAL_SCHEME, "QTc global, Hodges", "ms"),
    "p_axis_deg": _Concept("2:16128", "MDC", "P axis frontal", "deg"),
    "qrs_axis_deg": _Concept("2:16132", "MDC", "QRS axis frontal", "deg"),
    "t_axis_deg": _Concept("2:16136", "MDC", "T axis frontal", "deg"),
}
_MEASUREMENT_BY_CODE = {(c.scheme, c.value): name for name, c in _MEASUREMENT_CODES.items()}
# What other writers use: the legacy SCP-ECG measurement codes (read, never written).
_MEASUREMENT_BY_CODE.update(
    {
        ("SCPECG", "5.10.2.1-1"): "hr_bpm",
        ("SCPECG", "5.10.2.1-3"): "rr_ms",
        ("SCPECG", "5.13.5-7"): "pr_ms",
        ("SCPECG", "5.13.5-9"): "qrs_ms",
        ("SCPECG", "5.13.5-11"): "qt_ms",
        ("SCPECG", "5.10.2.5-5"): qtc_key("bazett"),
        ("SCPECG", "5.10.3-11"): "p_axis_deg",
        ("SCPECG", "5.10.3-13"): "qrs_axis_deg",
        ("SCPECG", "5.10.3-15"): "t_axis_deg",
    }
)
# Units a reader may meet, as factors to ours.
_UNIT_FACTORS = {"ms": 1.0, "s": 1000.0, "/min": 1.0, "{beats}/min": 1.0, "deg": 1.0}
_MEASUREMENT_FAILURE = ("114006", "DCM", "Measurement failure")
_VOLT_UNITS_UV = {"uV": 1.0, "mV": 1000.0, "V": 1e6}

# Annotation groups: what kind of item each is.
_MEASUREMENT_GROUP = 1
_STATEMENT_GROUP = 2
_CRITICAL_STATEMENT_GROUP = 3  # a statement of severity "critical"
_CRITICAL_FINDING_GROUP = 4  # a critical finding's code (ReportInfo.critical)


@dataclass(frozen=True, eq=False)
class DicomEcg:
    """A DICOM ECG waveform in the project's record form.

    Attributes
    ----------
    samples : ndarray of int16, shape (n_samples, n_leads)
        The stored samples, bit for bit; :data:`PADDING` where no sample was recorded.
    uv_per_count : ndarray of float64, shape (n_leads,)
        Sensitivity × correction factor, in µV per count.
    baseline_uv : ndarray of float64, shape (n_leads,)
        Channel baseline in µV (added after scaling, as PS3.3 and pydicom do).
    fs_hz : float
    lead_names : tuple of str
    info : ReportInfo
        Patient, time, filter band, measurements, statements, critical findings.
    sop_instance_uid : str
    """

    samples: NDArray[np.int16]
    uv_per_count: NDArray[np.float64]
    baseline_uv: NDArray[np.float64]
    fs_hz: float
    lead_names: tuple[str, ...]
    info: ReportInfo = field(default_factory=ReportInfo)
    sop_instance_uid: str = ""

    @property
    def counts_per_mv(self) -> NDArray[np.float64]:
        """Gain per lead in counts per mV."""
        return np.asarray(1000.0 / self.uv_per_count, dtype=np.float64)

    @property
    def signal_mv(self) -> NDArray[np.float64]:
        """Samples in mV, NaN at padding."""
        mv = (self.samples * self.uv_per_count + self.baseline_uv) / 1000.0
        mv[self.samples == PADDING] = np.nan
        return np.asarray(mv, dtype=np.float64)


# Export.


def quantise_mv(signal_mv: ArrayLike, uv_per_count: float = 1.0) -> NDArray[np.int16]:
    """Samples in mV as :func:`write_dicom` stores them: counts of ``uv_per_count`` µV,
    NaN as the padding value. Element-wise, so a long record quantised a window at a
    time equals it quantised whole (``write_dicom(..., quantised=True)`` takes those).

    Raises
    ------
    DicomError
        ``sample_range`` (a sample beyond ±32767 counts), ``bad_signal``.
    """
    data = np.asarray(signal_mv)
    if not (math.isfinite(uv_per_count) and uv_per_count > 0):
        raise DicomError(DicomErrorCode.BAD_SIGNAL, f"uv_per_count {uv_per_count!r}")
    # One float64 temporary, rounded in place: a window's quantisation takes about its
    # own size again, not four times it.
    scaled: NDArray[np.float64] = np.multiply(data, 1000.0 / uv_per_count, dtype=np.float64)
    missing = ~np.isfinite(scaled)
    scaled[missing] = 0.0
    np.round(scaled, out=scaled)
    if scaled.size and (scaled.min() <= PADDING or scaled.max() > 32767):
        raise DicomError(
            DicomErrorCode.SAMPLE_RANGE,
            f"samples beyond ±{32767 * uv_per_count / 1000:g} mV at {uv_per_count:g} µV/count",
        )
    counts = scaled.astype(np.int16)
    counts[missing] = PADDING
    return counts


def _counts(
    signal: ArrayLike,
    n_leads: int,
    counts_per_mv: float | Sequence[float] | None,
    uv_per_count: float,
    quantised: bool = False,
) -> tuple[NDArray[np.int16], NDArray[np.float64]]:
    data = np.asarray(signal)
    if data.ndim != 2 or data.shape[1] != n_leads:
        raise DicomError(
            DicomErrorCode.BAD_SIGNAL,
            f"signal of shape {data.shape} for {n_leads} leads (expected (samples, leads))",
        )
    if quantised:
        if data.dtype != np.int16:
            raise DicomError(DicomErrorCode.BAD_SIGNAL, "quantised samples must be int16")
        return data, np.full(n_leads, float(uv_per_count))
    if np.issubdtype(data.dtype, np.integer):
        if counts_per_mv is None:
            raise DicomError(DicomErrorCode.BAD_SIGNAL, "integer samples need counts_per_mv")
        gains = np.broadcast_to(np.asarray(counts_per_mv, dtype=np.float64), (n_leads,))
        if not np.all(np.isfinite(gains) & (gains > 0)):
            raise DicomError(DicomErrorCode.BAD_SIGNAL, f"counts_per_mv {gains.tolist()}")
        if data.size and (data.min() <= PADDING or data.max() > 32767):
            raise DicomError(
                DicomErrorCode.SAMPLE_RANGE, "samples must lie in -32767..32767 (16 bits)"
            )
        return data.astype(np.int16), np.asarray(1000.0 / gains, dtype=np.float64)
    if not np.issubdtype(data.dtype, np.floating):
        raise DicomError(DicomErrorCode.BAD_SIGNAL, f"samples of type {data.dtype}")
    return quantise_mv(data, uv_per_count), np.full(n_leads, float(uv_per_count))


def _code(value: str, scheme: str, meaning: str, version: str | None = None) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    if version is not None:
        item.CodingSchemeVersion = version
    item.CodeMeaning = meaning[:64]
    return item


def _ds(value: float) -> str:
    """A decimal string (DS, at most 16 characters) as exact as it can be."""
    from pydicom.valuerep import format_number_as_ds

    return str(format_number_as_ds(float(value)))


def _lead_code(name: str) -> Any:
    number = _LEAD_NUMBERS.get(name, _UNSPECIFIED_LEAD)
    meaning = f"Lead {name}" if number != _UNSPECIFIED_LEAD else "Unspecified lead"
    return _code(f"5.6.3-9-{number}", "SCPECG", meaning, "1.3")


def write_dicom(
    signal: ArrayLike,
    fs_hz: float,
    lead_names: Sequence[str],
    info: ReportInfo | None = None,
    *,
    counts_per_mv: float | Sequence[float] | None = None,
    baseline_counts: float | Sequence[float] = 0.0,
    uv_per_count: float = 1.0,
    quantised: bool = False,
    new_uid: Callable[[], str] | None = None,
    now: dt.datetime | None = None,
) -> bytes:
    """A DICOM ECG waveform file of a signal, its measurements and statements.

    The file :func:`write_dicom_to` writes of ``signal`` as one window, in memory; the
    other parameters are its.

    Parameters
    ----------
    signal : array_like, shape (n_samples, n_leads)
        Integer counts (with ``counts_per_mv``), written bit for bit; or floats in mV,
        quantised at ``uv_per_count`` (NaN becomes padding).

    Returns
    -------
    bytes
        A DICOM Part 10 file.

    Raises
    ------
    DicomError
        As :func:`write_dicom_to`.
    """
    data = np.asarray(signal)
    out = io.BytesIO()
    write_dicom_to(
        out,
        [data],
        data.shape[0] if data.ndim else 0,
        fs_hz,
        lead_names,
        info,
        counts_per_mv=counts_per_mv,
        baseline_counts=baseline_counts,
        uv_per_count=uv_per_count,
        quantised=quantised,
        new_uid=new_uid,
        now=now,
    )
    return out.getvalue()


def write_dicom_to(
    file: BinaryIO,
    windows: Iterable[ArrayLike],
    n_samples: int,
    fs_hz: float,
    lead_names: Sequence[str],
    info: ReportInfo | None = None,
    *,
    counts_per_mv: float | Sequence[float] | None = None,
    baseline_counts: float | Sequence[float] = 0.0,
    uv_per_count: float = 1.0,
    quantised: bool = False,
    new_uid: Callable[[], str] | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Write a DICOM ECG waveform file of a signal given a window at a time.

    A 12-Lead ECG Waveform (1–13 leads, at most 16384 samples: 32.8 s at 500 Hz);
    a longer record or one of 14–24 leads is a General ECG Waveform
    (1.2.840.10008.5.1.4.1.1.9.1.2) with the same modules. Each window is converted and
    written before the next is taken, so memory holds one window whatever the record's
    length; the file's bytes do not depend on how the signal is cut.

    Parameters
    ----------
    file : binary file object
        Written from its current position (pydicom asks its position: a file or a
        buffer, not a pipe).
    windows : iterable of array_like, each of shape (samples, n_leads)
        Consecutive parts of the signal, all of one kind: integer counts (with
        ``counts_per_mv``), written bit for bit; or floats in mV, quantised at
        ``uv_per_count`` (NaN becomes padding).
    n_samples : int
        Samples per lead in all the windows together (the header precedes the data).
    fs_hz : float
        Sampling frequency in Hz, 200–1000.
    lead_names : sequence of str
        One per column, standard spelling (``I``, ``aVR``, ``V1``...).
    info : ReportInfo, optional
        Patient, acquisition time, filter band, measurements, statements.
    counts_per_mv : float or sequence of float, optional
        Gain of integer samples, one or one per lead.
    baseline_counts : float or sequence of float
        The count that stands for 0 mV in integer samples (WFDB's baseline): the value
        in mV is ``(count - baseline_counts) / counts_per_mv``.
    uv_per_count : float
        Quantisation step of float samples in µV.
    quantised : bool
        The windows are int16 counts of :func:`quantise_mv` at ``uv_per_count`` (a long
        record quantised a window at a time, never whole in float64).
    new_uid : callable, optional
        Returns a fresh UID (default :func:`pydicom.uid.generate_uid`).
    now : datetime, optional
        Creation time of the instance (default: the current UTC time).

    Raises
    ------
    DicomError
        ``channel_count`` (0 or more than 24 leads), ``too_long`` (no sample, or more
        than one OW element holds), ``sampling_frequency`` (outside 200–1000 Hz),
        ``sample_range``, ``bad_signal`` (also: the windows hold other than
        ``n_samples`` samples, or are not of one kind). Raised before anything is
        written when the first window or the arguments are at fault; a later window at
        fault leaves a partial file, for the caller to discard.
    """
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import generate_uid

    info = info or ReportInfo()
    names = [str(name) for name in lead_names]
    if not 1 <= len(names) <= MAX_GENERAL_CHANNELS:
        raise DicomError(
            DicomErrorCode.CHANNEL_COUNT,
            f"{len(names)} leads; an ECG waveform holds 1 to {MAX_GENERAL_CHANNELS}",
        )
    if not (math.isfinite(fs_hz) and MIN_FS_HZ <= fs_hz <= MAX_FS_HZ):
        raise DicomError(
            DicomErrorCode.SAMPLING_FREQUENCY,
            f"{fs_hz!r} Hz; an ECG waveform is sampled at {MIN_FS_HZ:g}–{MAX_FS_HZ:g} Hz",
        )
    remaining = iter(windows)
    first = next(remaining, None)
    integer = first is not None and np.issubdtype(np.asarray(first).dtype, np.integer)
    counts, uv = (
        _counts(first, len(names), counts_per_mv, uv_per_count, quantised)
        if first is not None
        else (np.empty((0, len(names)), dtype=np.int16), np.full(len(names), uv_per_count))
    )
    data_bytes = n_samples * len(names) * 2
    if n_samples < 1 or data_bytes > _MAX_DATA_BYTES:
        raise DicomError(
            DicomErrorCode.TOO_LONG,
            f"{n_samples} samples per lead; a waveform holds 1 to "
            f"{_MAX_DATA_BYTES // (2 * len(names))}",
        )
    zero = np.broadcast_to(np.asarray(baseline_counts, dtype=np.float64), (len(names),))
    if quantised or not integer:
        zero = np.zeros(len(names))
    ds, group = _datasets(
        n_samples,
        fs_hz,
        names,
        info,
        uv,
        zero,
        new_uid or generate_uid,
        now or dt.datetime.now(dt.UTC),
    )
    # The group's elements but WaveformData, encoded as pydicom encodes them in a file.
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, group, parent_encoding=_CHARACTER_SET)
    item_bytes = body.tell() + 12 + data_bytes  # WaveformData: tag, VR, reserved, length

    ds.save_as(file, enforce_file_format=True)
    # WaveformSequence is the dataset's last element and WaveformData its item's last:
    # written by hand after the rest, with the explicit lengths pydicom would compute
    # (PS3.5 7.1.2, 7.5), so that the data can follow a window at a time.
    file.write(struct.pack("<HH2sHI", 0x5400, 0x0100, b"SQ", 0, 8 + item_bytes))
    file.write(struct.pack("<HHI", 0xFFFE, 0xE000, item_bytes))
    file.write(body.getvalue())
    file.write(struct.pack("<HH2sHI", 0x5400, 0x1010, b"OW", 0, data_bytes))
    written = 0
    while True:
        if written + counts.shape[0] > n_samples:
            raise DicomError(
                DicomErrorCode.BAD_SIGNAL, f"the windows hold more than {n_samples} samples"
            )
        file.write(np.ascontiguousarray(counts, dtype="<i2").tobytes())
        written += counts.shape[0]
        window = next(remaining, None)
        if window is None:
            break
        counts, window_uv = _counts(window, len(names), counts_per_mv, uv_per_count, quantised)
        if np.issubdtype(np.asarray(window).dtype, np.integer) != integer or not np.array_equal(
            window_uv, uv
        ):
            raise DicomError(DicomErrorCode.BAD_SIGNAL, "windows of different kinds or scales")
    if written != n_samples:
        raise DicomError(
            DicomErrorCode.BAD_SIGNAL, f"the windows hold {written} samples, not {n_samples}"
        )


def _datasets(
    n_samples: int,
    fs_hz: float,
    names: list[str],
    info: ReportInfo,
    uv: NDArray[np.float64],
    zero: NDArray[np.float64],
    new_uid: Callable[[], str],
    now: dt.datetime,
) -> tuple[Any, Any]:
    """The file's dataset without its WaveformSequence, and that sequence's one item
    (the multiplex group) without its WaveformData."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import UID

    twelve_lead = len(names) <= MAX_CHANNELS and n_samples <= MAX_SAMPLES
    sop_class = TWELVE_LEAD_SOP_CLASS if twelve_lead else GENERAL_ECG_SOP_CLASS

    sop_uid = new_uid()
    ds = Dataset()
    ds.SpecificCharacterSet = _CHARACTER_SET
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    _patient_module(ds, info.patient)
    acquired = info.acquired_at or now
    ds.StudyInstanceUID = new_uid()
    ds.StudyDate = acquired.strftime("%Y%m%d")
    ds.StudyTime = acquired.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = (info.record_name or "1")[:16]
    ds.AccessionNumber = ""
    ds.Modality = "ECG"
    ds.SeriesInstanceUID = new_uid()
    ds.SeriesNumber = 1
    ds.SeriesDescription = info.record_name[:64]
    ds.Manufacturer = "teleconsult"
    ds.InstitutionName = info.institution[:64]
    ds.StationName = info.device[:16]
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = _dicom_datetime(acquired)
    ds.AcquisitionContextSequence = DicomSequence([])
    scheme = Dataset()
    scheme.CodingSchemeDesignator = LOCAL_SCHEME
    scheme.CodingSchemeName = "teleconsult ECG statements and measurements"
    scheme.CodingSchemeResponsibleOrganization = "teleconsult"
    ds.CodingSchemeIdentificationSequence = DicomSequence([scheme])

    group = Dataset()
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = len(names)
    group.NumberOfWaveformSamples = n_samples
    group.SamplingFrequency = _ds(fs_hz)
    group.MultiplexGroupLabel = "RHYTHM"
    channels = []
    for index, name in enumerate(names):
        channel = Dataset()
        channel.ChannelLabel = name[:16]
        channel.ChannelSourceSequence = DicomSequence([_lead_code(name)])
        channel.ChannelSensitivity = _ds(uv[index])
        channel.ChannelSensitivityUnitsSequence = DicomSequence([_code("uV", "UCUM", "microvolt")])
        channel.ChannelSensitivityCorrectionFactor = "1"
        # DICOM adds the baseline after scaling (PS3.3 C.10.9.1.4.3, as pydicom does).
        channel.ChannelBaseline = _ds(-zero[index] * uv[index]) if zero[index] else "0"
        channel.ChannelTimeSkew = "0"
        channel.WaveformBitsStored = 16
        if info.filter_low_hz is not None:
            channel.FilterLowFrequency = _ds(info.filter_low_hz)
        if info.filter_high_hz is not None:
            channel.FilterHighFrequency = _ds(info.filter_high_hz)
        if info.mains_hz:
            channel.NotchFilterFrequency = _ds(info.mains_hz)
        channels.append(channel)
    group.ChannelDefinitionSequence = DicomSequence(channels)
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    group.add_new(0x5400100A, "OW", struct.pack("<h", PADDING))  # WaveformPaddingValue
    annotations = _annotations(info)
    if annotations:
        ds.WaveformAnnotationSequence = DicomSequence(annotations)

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = UID(_EXPLICIT_VR_LITTLE_ENDIAN)
    return ds, group


def _patient_module(ds: Any, patient: Patient) -> None:
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id[:64]
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
    ds.PatientSex = patient.sex if patient.sex in ("M", "F", "O") else ""
    if patient.age_years is not None and 0 <= patient.age_years <= 999:
        ds.PatientAge = f"{patient.age_years:03d}Y"


def _dicom_datetime(when: dt.datetime) -> str:
    text = when.strftime("%Y%m%d%H%M%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}"
    offset = when.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        text += f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return text


def _annotations(info: ReportInfo) -> list[Any]:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    items = []
    measurements = info.measurements
    for name, concept in _MEASUREMENT_CODES.items():
        if name not in measurements.values:
            continue
        measured = measurements.values[name]
        item = Dataset()
        item.ConceptNameCodeSequence = DicomSequence(
            [_code(concept.value, concept.scheme, concept.meaning)]
        )
        if measured.value is None:
            # No number: the concept with the coded value "Measurement failure".
            item.ConceptCodeSequence = DicomSequence([_code(*_MEASUREMENT_FAILURE)])
        else:
            item.NumericValue = _ds(measured.value)
            item.MeasurementUnitsCodeSequence = DicomSequence(
                [_code(concept.unit, "UCUM", concept.unit)]
            )
        item.AnnotationGroupNumber = _MEASUREMENT_GROUP
        items.append(item)
    for statement in info.statements:
        item = Dataset()
        item.ConceptCodeSequence = DicomSequence(
            [_code(statement.code[:16], LOCAL_SCHEME, statement.text_en or statement.code)]
        )
        item.UnformattedTextValue = statement.text_zh or statement.text_en or statement.code
        item.AnnotationGroupNumber = (
            _CRITICAL_STATEMENT_GROUP if statement.severity == "critical" else _STATEMENT_GROUP
        )
        items.append(item)
    for finding in info.critical:
        item = Dataset()
        item.ConceptCodeSequence = DicomSequence(
            [_code(finding.code[:16], LOCAL_SCHEME, finding.text_en or finding.code)]
        )
        item.UnformattedTextValue = finding.text_zh or finding.text_en or finding.code
        item.AnnotationGroupNumber = _CRITICAL_FINDING_GROUP
        items.append(item)
    for item in items:
        item.ReferencedWaveformChannels = [1, 0]  # multiplex group 1, all its channels
    return items


# Validation.

# (keyword, type): type 1 must be present and not empty, type 2 present (may be empty).
_IOD_ATTRIBUTES = (
    ("SOPClassUID", 1), ("SOPInstanceUID", 1), ("PatientName", 2), ("PatientID", 2),
    ("PatientBirthDate", 2), ("PatientSex", 2), ("StudyInstanceUID", 1), ("StudyDate", 2),
    ("StudyTime", 2), ("ReferringPhysicianName", 2), ("StudyID", 2), ("AccessionNumber", 2),
    ("Modality", 1), ("SeriesInstanceUID", 1), ("SeriesNumber", 2), ("Manufacturer", 2),
    ("InstanceNumber", 1), ("ContentDate", 1), ("ContentTime", 1),
    ("AcquisitionDateTime", 1), ("AcquisitionContextSequence", 2), ("WaveformSequence", 1),
)  # fmt: skip
_GROUP_ATTRIBUTES = (
    ("WaveformOriginality", 1), ("NumberOfWaveformChannels", 1),
    ("NumberOfWaveformSamples", 1), ("SamplingFrequency", 1),
    ("ChannelDefinitionSequence", 1), ("WaveformBitsAllocated", 1),
    ("WaveformSampleInterpretation", 1), ("WaveformData", 1),
)  # fmt: skip
_CHANNEL_ATTRIBUTES = (
    ("ChannelSourceSequence", 1), ("ChannelSensitivity", 1),
    ("ChannelSensitivityUnitsSequence", 1), ("ChannelSensitivityCorrectionFactor", 1),
    ("ChannelBaseline", 1), ("WaveformBitsStored", 1),
)  # fmt: skip


def _missing(item: Any, attributes: Sequence[tuple[str, int]], where: str) -> list[str]:
    problems = []
    for keyword, kind in attributes:
        if keyword not in item:
            problems.append(f"{where}{keyword} (type {kind}) missing")
        elif kind == 1 and item[keyword].is_empty:
            problems.append(f"{where}{keyword} (type 1) empty")
    return problems


def check_iod(ds: Any) -> list[str]:
    """The required attributes of the 12-lead ECG IOD that a dataset lacks.

    Parameters
    ----------
    ds : pydicom.Dataset

    Returns
    -------
    list of str
        One line per problem (type 1 missing or empty, type 2 missing, in the dataset,
        each multiplex group and each channel definition); empty when none.
    """
    problems = _missing(ds, _IOD_ATTRIBUTES, "")
    if ds.get("Modality") not in (None, "ECG"):
        problems.append(f"Modality is {ds.Modality!r}, not 'ECG'")
    for g, group in enumerate(ds.get("WaveformSequence") or []):
        problems += _missing(group, _GROUP_ATTRIBUTES, f"WaveformSequence[{g}].")
        for c, channel in enumerate(group.get("ChannelDefinitionSequence") or []):
            where = f"WaveformSequence[{g}].ChannelDefinitionSequence[{c}]."
            problems += _missing(channel, _CHANNEL_ATTRIBUTES, where)
    return problems


# Import.


def read_dicom(data: bytes) -> DicomEcg:
    """Read a DICOM 12-lead (or General) ECG waveform file.

    Parameters
    ----------
    data : bytes
        The file's content.

    Returns
    -------
    DicomEcg

    Raises
    ------
    DicomError
        ``not_dicom``, ``not_ecg_waveform`` (another SOP class), ``missing_attribute``,
        ``channel_count`` (the count disagrees with the channel definitions, or too
        many), ``data_length`` (the data are not channels × samples), ``sampling_frequency``
        (absent, not a number, or outside 200–1000 Hz), ``sample_format`` (not 16-bit
        signed).
    """
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(io.BytesIO(data))
        sop_class = str(ds.get("SOPClassUID", ""))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, struct.error):
        raise DicomError(DicomErrorCode.NOT_DICOM, "the file is not a DICOM file") from None
    except Exception as error:  # pydicom meets bytes it cannot parse in many ways
        raise DicomError(
            DicomErrorCode.NOT_DICOM, f"the file cannot be parsed as DICOM ({type(error).__name__})"
        ) from None
    if sop_class not in _ACCEPTED:
        raise DicomError(
            DicomErrorCode.NOT_ECG_WAVEFORM,
            f"SOP class {sop_class or 'absent'} is not a 12-lead or general ECG waveform",
        )
    try:
        return _read_dataset(ds, _ACCEPTED[sop_class])
    except DicomError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as error:
        raise DicomError(
            DicomErrorCode.MISSING_ATTRIBUTE, f"malformed waveform ({type(error).__name__})"
        ) from None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _choose_group(ds: Any) -> Any:
    groups = list(ds.get("WaveformSequence") or [])
    if not groups:
        raise DicomError(DicomErrorCode.MISSING_ATTRIBUTE, "no WaveformSequence item")
    for group in groups:
        if "MEDIAN" not in str(group.get("MultiplexGroupLabel", "")).upper():
            return group
    return groups[0]


def _read_dataset(ds: Any, max_channels: int) -> DicomEcg:
    group = _choose_group(ds)
    problems = _missing(group, _GROUP_ATTRIBUTES, "")
    if problems:
        raise DicomError(DicomErrorCode.MISSING_ATTRIBUTE, "; ".join(problems))
    n_channels = int(group.NumberOfWaveformChannels)
    n_samples = int(group.NumberOfWaveformSamples)
    definitions = list(group.ChannelDefinitionSequence)
    if n_channels != len(definitions):
        raise DicomError(
            DicomErrorCode.CHANNEL_COUNT,
            f"NumberOfWaveformChannels is {n_channels} but {len(definitions)} channels are defined",
        )
    if not 1 <= n_channels <= max_channels:
        raise DicomError(
            DicomErrorCode.CHANNEL_COUNT, f"{n_channels} channels; at most {max_channels}"
        )
    fs_hz = _number(group.SamplingFrequency)
    if fs_hz is None or not MIN_FS_HZ <= fs_hz <= MAX_FS_HZ:
        raise DicomError(
            DicomErrorCode.SAMPLING_FREQUENCY,
            f"SamplingFrequency {group.SamplingFrequency!r} outside {MIN_FS_HZ:g}–{MAX_FS_HZ:g} Hz",
        )
    bits = int(group.WaveformBitsAllocated)
    kind = str(group.WaveformSampleInterpretation)
    if bits != 16 or kind != "SS":
        raise DicomError(
            DicomErrorCode.SAMPLE_FORMAT, f"{bits}-bit {kind} samples; 16-bit SS expected"
        )
    raw = bytes(group.WaveformData)
    expected = n_samples * n_channels * 2
    if n_samples < 1 or len(raw) not in (expected, expected + 1):  # OW may be padded even
        raise DicomError(
            DicomErrorCode.DATA_LENGTH,
            f"WaveformData holds {len(raw)} bytes; {n_channels} channels × {n_samples} "
            f"samples × 2 bytes is {expected}",
        )
    samples = np.frombuffer(raw[:expected], dtype="<i2").reshape(n_samples, n_channels)
    samples = samples.astype(np.int16)
    uv = np.empty(n_channels)
    baseline = np.empty(n_channels)
    names = []
    for index, channel in enumerate(definitions):
        names.append(_lead_name(channel, index))
        uv[index], baseline[index] = _channel_scale(channel, index)
    padding = group.get("WaveformPaddingValue")
    if padding is not None and len(bytes(padding)) >= 2:
        stored = struct.unpack("<h", bytes(padding)[:2])[0]
        if stored != PADDING:  # another padding value: ours is the one signal_mv knows
            samples = samples.copy()
            samples[samples == stored] = PADDING
    first = definitions[0]
    info = ReportInfo(
        patient=_patient(ds),
        acquired_at=_acquired(ds),
        record_name=str(ds.get("SeriesDescription", "")),
        institution=str(ds.get("InstitutionName", "")),
        device=str(ds.get("StationName", "")),
        filter_low_hz=_number(first.get("FilterLowFrequency")),
        filter_high_hz=_number(first.get("FilterHighFrequency")),
        mains_hz=_number(first.get("NotchFilterFrequency")),
        **_read_annotations(ds),
    )
    return DicomEcg(
        samples=samples,
        uv_per_count=uv,
        baseline_uv=baseline,
        fs_hz=fs_hz,
        lead_names=tuple(names),
        info=info,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
    )


def _lead_name(channel: Any, index: int) -> str:
    label = str(channel.get("ChannelLabel", "")).strip()
    sources = channel.get("ChannelSourceSequence") or []
    if sources:
        value = str(sources[0].get("CodeValue", ""))
        number_text = value.rsplit("-", 1)[-1] if value.startswith("5.6.3-9-") else ""
        if value.startswith("2:"):
            number_text = value[2:]
        if number_text.isdigit() and int(number_text) in _LEAD_BY_NUMBER:
            return _LEAD_BY_NUMBER[int(number_text)]
    return label or f"channel {index + 1}"


def _channel_scale(channel: Any, index: int) -> tuple[float, float]:
    sensitivity = _number(channel.get("ChannelSensitivity"))
    correction = _number(channel.get("ChannelSensitivityCorrectionFactor", 1.0))
    baseline = _number(channel.get("ChannelBaseline", 0.0))
    units = channel.get("ChannelSensitivityUnitsSequence") or []
    unit = str(units[0].get("CodeValue", "")) if units else ""
    if sensitivity is None or sensitivity == 0 or correction is None or baseline is None:
        raise DicomError(
            DicomErrorCode.MISSING_ATTRIBUTE, f"channel {index + 1}: no usable sensitivity"
        )
    if unit not in _VOLT_UNITS_UV:
        raise DicomError(
            DicomErrorCode.SAMPLE_FORMAT, f"channel {index + 1}: unit {unit!r} is not a voltage"
        )
    factor = _VOLT_UNITS_UV[unit]
    return sensitivity * correction * factor, baseline * factor


def _patient(ds: Any) -> Patient:
    age_text = str(ds.get("PatientAge", ""))  # "063Y"; days, weeks, months are not years
    is_years = len(age_text) == 4 and age_text[:3].isdigit() and age_text[3] == "Y"
    age = int(age_text[:3]) if is_years else None
    birth_text = str(ds.get("PatientBirthDate", ""))
    try:
        birth = dt.datetime.strptime(birth_text, "%Y%m%d").date() if birth_text else None
    except ValueError:
        birth = None
    sex = str(ds.get("PatientSex", ""))
    return Patient(
        name=str(ds.get("PatientName", "")),
        patient_id=str(ds.get("PatientID", "")),
        sex=sex if sex in ("M", "F", "O") else "",
        age_years=age,
        birth_date=birth,
    )


def _acquired(ds: Any) -> dt.datetime | None:
    from pydicom.valuerep import DT

    text = str(ds.get("AcquisitionDateTime", "")).strip()
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(DT(text).isoformat())
    except ValueError:
        return None


def _read_annotations(ds: Any) -> dict[str, Any]:
    values: dict[str, Measurement] = {}
    statements: list[Statement] = []
    critical: list[Statement] = []
    for item in ds.get("WaveformAnnotationSequence") or []:
        group = int(item.get("AnnotationGroupNumber", 0) or 0)
        names = item.get("ConceptNameCodeSequence") or []
        codes = item.get("ConceptCodeSequence") or []
        text = str(item.get("UnformattedTextValue", ""))
        if names:
            concept = names[0]
            key = (
                str(concept.get("CodingSchemeDesignator", "")),
                str(concept.get("CodeValue", "")),
            )
            name = _MEASUREMENT_BY_CODE.get(key)
            if name is None:
                continue
            value = _number(item.get("NumericValue"))
            units = item.get("MeasurementUnitsCodeSequence") or []
            unit = str(units[0].get("CodeValue", "")) if units else ""
            if value is not None and unit in _UNIT_FACTORS:
                values[name] = Measurement(value * _UNIT_FACTORS[unit])
            else:
                values[name] = Measurement(None, "not measurable")
        elif codes and group == _CRITICAL_FINDING_GROUP:
            critical.append(_statement(codes[0], text, "critical"))
        elif codes and group == _CRITICAL_STATEMENT_GROUP:
            statements.append(_statement(codes[0], text, "critical"))
        elif codes:
            statements.append(_statement(codes[0], text, ""))
        elif text:
            statements.append(Statement(text[:16], text, "", ""))
    formula = next((f for f in QTC_FORMULAS if qtc_key(f) in values), "bazett")
    return {
        "measurements": Measurements(values, formula),
        "statements": tuple(statements),
        "critical": tuple(critical),
    }


def _statement(code: Any, text: str, severity: str) -> Statement:
    value = str(code.get("CodeValue", ""))
    english = str(code.get("CodeMeaning", ""))
    chinese = text if text and text != english else ""
    return Statement(value, english, chinese, severity)
