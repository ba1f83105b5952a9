"""``POST /api/v1/ecg/records``: a clinic (or its ECG centre) uploads a stored 12-lead
record in WFDB (``.hea`` + ``.dat``, multipart), which becomes a reading task of the
centre serving the clinic.

Design notes
------------
- **The parser trusts nothing.** :func:`parse_wfdb` reads the header itself (``wfdb``
  would open whatever file names the header gives, and raises arbitrary exceptions on
  a malformed one): UTF-8 (comments may be Chinese), one record line, exactly as many
  signal lines as the record declares, one signal file, formats 16 and 212 only (what
  carts write), no skew, byte offset or multiplier, a voltage unit on every lead, the
  sampling rate and the length stated, both within the configured limits
  (:class:`RecordUploadConfig`). The signal file must have exactly the bytes the header
  implies (a header that lies about its lead count, length or format is caught here),
  and each lead's checksum, when the header gives one, must match. Each refusal is a
  4xx with a stable code (:data:`REFUSALS`), audited (``record.upload``, ``denied``),
  and nothing is stored.
- **The body streams to disk.** :func:`receive_form` pushes the request's chunks
  through a multipart parser: the signal part goes to a temporary file under the
  record store's folder, bounded while it arrives (413 ``signal_too_large`` at the
  first byte over), the header and the short fields to memory, bounded too; the file is
  removed whatever the outcome. (Litestar's own form parsing would spool the file to
  the system's temporary folder and the handler then read it whole.) The check reads
  that file a chunk at a time (:func:`_convert`: 16 Ki frames), writing the canonical
  format 16 file and summing the checksums as it goes, and keeps only the engine's
  first seconds: a 24-hour Holter is checked in a few MiB of memory.
- **Stored as received, in one canonical form.** The digital samples are written
  unchanged as WFDB format 16 (a 212 sample fits 16 bits; its "no sample" value stays
  one) with the header's gains, baselines, units, lead names, base time and comments,
  under ``<data dir>/records/<id>`` (:class:`RecordStore`), so ``ecg.record.read_record``
  reads back exactly the physical values the upload meant. Written to a temporary name,
  fsynced and renamed before the task exists: a task never points to a missing record.
  If the task cannot be made (no centre serves the clinic), the files are removed.
- **Who may upload.** A person with a clinical role whose institution is the clinic or
  serves it for ECG (the rule of who sees the clinic's ECGs,
  :func:`consults.rights.serves`); the clinic defaults to the uploader's institution.
- **The engine reads it at once** (the record's first
  :data:`api.readings.MEASURED_S` seconds): its critical findings are raised with the
  task (told to the clinic's doctors and the readers, first in the worklist) and its
  first statements are the worklist's top statements.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import anyio.to_thread
import msgspec
from litestar import Controller, Request, Router, post
from litestar.di import NamedDependency, Provide
from litestar.enums import RequestEncodingType
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from msgspec import Meta

from api.edge_config import RecordUploadConfig
from api.errors import ApiError
from api.readings import (
    MEASURED_S,
    EcgSignals,
    ReadingApi,
    annotate_ahead,
    file_length,
    file_window,
    measured_signal,
)
from api.schemas import AUTH_ERRORS, documented
from api.session import consults_error
from consults.accounts import Principal
from consults.directory import Person, ServiceKind
from consults.errors import ConsultsError
from consults.reading_repositories import ReadingRecord
from consults.reading_service import ReadingService
from consults.repositories import AuditEvent, AuditSink
from consults.rights import CLINICAL_ROLES, Tree, serves
from consults.service import Directory

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from ecg.annotate import AnnotateConfig
    from ecg.record import Record

__all__ = [
    "REFUSALS",
    "ParsedRecord",
    "RecordStore",
    "RecordUploadConfig",
    "RecordUploadController",
    "RecordUploaded",
    "RecordUploads",
    "UploadRefused",
    "UploadedOrStreamed",
    "parse_wfdb",
    "record_upload_api",
]

UPLOAD_PATH: Final = "/ecg/records"

# The stable codes of a refused upload, with their status and what they mean.
REFUSALS: Final = {
    "missing_file": (400, "the form lacks the header or the signal file"),
    "bad_form": (400, "the body is not the multipart form described"),
    "header_too_large": (413, "the header file is over the configured size"),
    "signal_too_large": (413, "the signal file is over the configured size"),
    "not_utf8": (400, "the header is not UTF-8 text"),
    "bad_header": (400, "the header is not a WFDB header"),
    "unsupported_record": (400, "a WFDB feature this server does not take"),
    "too_many_leads": (400, "more leads than the configured maximum"),
    "too_many_samples": (413, "more samples per lead than the configured maximum"),
    "bad_sampling_rate": (400, "the sampling rate is outside the supported range"),
    "not_voltage": (400, "a lead is not in a voltage unit"),
    "wrong_length": (400, "the signal file's size is not what the header implies"),
    "checksum_mismatch": (400, "a lead's samples do not match the header's checksum"),
}


class UploadRefused(ApiError):
    """A refused upload: a code of :data:`REFUSALS` and a reason naming what is wrong."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason, status=REFUSALS[code][0])


# The header's parts (PhysioNet's header(5) format, the subset carts write).
_NAME: Final = r"[A-Za-z0-9_.\-]{1,64}"
_RECORD_LINE: Final = re.compile(
    rf"(?P<name>{_NAME})(?P<segments>/\S+)?\s+(?P<nsig>\d{{1,4}})"
    r"(?:\s+(?P<fs>[0-9.eE+\-]+)(?P<counter>/\S+)?(?:\((?P<base>[^)]*)\))?"
    r"(?:\s+(?P<nsamp>\d{1,12})"
    r"(?:\s+(?P<time>\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)"
    r"(?:\s+(?P<date>\d{1,2}/\d{1,2}/\d{4}))?)?)?)?\s*"
)
_SIGNAL_LINE: Final = re.compile(
    rf"(?P<file>{_NAME})\s+(?P<fmt>\d{{1,3}})(?P<spf>x\d+)?(?P<skew>:\d+)?(?P<offset>\+\d+)?"
    r"(?:\s+(?P<gain>[0-9.eE+\-]+)(?:\((?P<baseline>-?\d{1,7})\))?(?:/(?P<units>\S{1,16}))?"
    r"(?:\s+(?P<adcres>\d{1,2})(?:\s+(?P<adczero>-?\d{1,7})(?:\s+(?P<initval>-?\d{1,7})"
    r"(?:\s+(?P<checksum>-?\d{1,7})(?:\s+(?P<blocksize>\d{1,7})"
    r"(?:\s+(?P<description>.{0,64}))?)?)?)?)?)?)?\s*"
)
_FORMATS: Final = {"16": (2.0, -32768), "212": (1.5, -2048)}
_MV_PER_UNIT: Final = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}
_DEFAULT_GAIN: Final = 200.0


@dataclass(frozen=True, eq=False)
class ParsedRecord:
    """An uploaded record as its header and signal file say: the digital samples
    (``invalid`` where the format's "no sample" value stands) and how to make them mV."""

    fs_hz: float
    lead_names: tuple[str, ...]
    n_samples: int
    head: NDArray[np.int16]  # the first MEASURED_S s (n, n_leads), "no sample" as -32768
    sums: tuple[int, ...]  # each lead's sum, as WFDB's checksum is
    signal_file: Path  # every sample in format 16, written as it was checked
    gains: tuple[float, ...]  # digital units per physical unit
    baselines: tuple[int, ...]
    units: tuple[str, ...]
    adc_resolution: tuple[int, ...]
    base_time: str | None = None
    base_date: str | None = None
    comments: tuple[str, ...] = field(default=())

    @property
    def leads(self) -> tuple[str, ...]:
        """The lead names normalised (``ecg.record.normalise_lead_name``)."""
        from ecg.record import normalise_lead_name

        return tuple(normalise_lead_name(n) for n in self.lead_names)

    def to_record(self, name: str, seconds: float | None = None) -> Record:
        """The first :data:`~api.readings.MEASURED_S` seconds (or fewer ``seconds``) in
        mV, NaN where there is no sample; lead names normalised."""
        import numpy as np

        from ecg.record import Record

        kept = self.head if seconds is None else self.head[: int(seconds * self.fs_hz)]
        digital = kept.astype(np.float64)
        gains = np.asarray(self.gains)
        mv = np.asarray([_MV_PER_UNIT[u.lower()] for u in self.units])
        signal = (digital - np.asarray(self.baselines, dtype=np.float64)) / gains * mv
        signal[kept == -32768] = np.nan
        return Record(
            name=name,
            fs_hz=self.fs_hz,
            signal_mv=np.ascontiguousarray(signal),
            lead_names=self.leads,
            comments=self.comments,
        )


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UploadRefused("bad_header", f"{what} {text[:20]!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UploadRefused("bad_header", f"{what} {text[:20]!r} is not a number")
    return value


def _decode(data: bytes, fmt: str, n_values: int) -> NDArray[np.int16]:
    """The digital values of a format 16 or 212 file (length checked by the caller),
    "no sample" mapped to -32768."""
    import numpy as np

    if fmt == "16":
        return np.frombuffer(data, dtype="<i2", count=n_values).astype(np.int16)
    raw = np.frombuffer(data, dtype=np.uint8).astype(np.int32)
    pairs = n_values // 2
    triples = raw[: pairs * 3].reshape(pairs, 3)
    out = np.empty(n_values, dtype=np.int32)
    out[0 : pairs * 2 : 2] = triples[:, 0] | ((triples[:, 1] & 0x0F) << 8)
    out[1 : pairs * 2 : 2] = triples[:, 2] | ((triples[:, 1] & 0xF0) << 4)
    if n_values % 2:
        out[-1] = raw[pairs * 3] | ((raw[pairs * 3 + 1] & 0x0F) << 8)
    out = np.where(out >= 2048, out - 4096, out)
    out[out == -2048] = -32768
    return out.astype(np.int16)


# Frames read, checked and written at a time (even: a 212 pair never splits): 16 Ki
# frames of 15 leads are 480 KiB of format 16, ~6 MiB while decoded.
_CHUNK_FRAMES: Final = 16384


def _convert(
    source: Path, target: Path, fmt: str, n_leads: int, head_frames: int
) -> tuple[list[int], NDArray[np.int16]]:
    """Decode ``source`` a chunk at a time into ``target`` (format 16, fsynced): each
    lead's checksum (the values as stored: 212's "no sample" as -2048) and the first
    ``head_frames`` frames."""
    import numpy as np

    bytes_per_chunk = (
        _CHUNK_FRAMES * n_leads * (2 if fmt == "16" else 3) // (1 if fmt == "16" else 2)
    )
    sums = np.zeros(n_leads, dtype=np.int64)
    heads: list[NDArray[np.int16]] = []
    kept = 0
    with open(source, "rb") as given, open(target, "wb") as out:
        while data := given.read(bytes_per_chunk):
            n_values = len(data) // 2 if fmt == "16" else (len(data) // 3) * 2 + (len(data) % 3 > 0)
            n_values -= n_values % n_leads
            digital = _decode(data, fmt, n_values).reshape(-1, n_leads)
            stored = digital.astype(np.int64)
            if fmt == "212":
                stored[digital == -32768] = -2048
            sums += stored.sum(axis=0)
            if kept < head_frames:
                heads.append(digital[: head_frames - kept].copy())
                kept += heads[-1].shape[0]
            out.write(digital.astype("<i2").tobytes())
        out.flush()
        os.fsync(out.fileno())
    return [int(v) for v in sums], np.concatenate(heads)


def parse_wfdb(
    header: bytes, signal: Path, config: RecordUploadConfig, canonical: Path
) -> ParsedRecord:
    """An uploaded WFDB record (the ``.hea`` bytes, the received ``.dat`` file), checked
    against itself and ``config``; its samples are written to ``canonical`` in format
    16 as they are checked, a chunk at a time (the signal is never whole in memory).
    Blocking. On a refusal ``canonical`` is removed.

    Raises
    ------
    UploadRefused
        With a code of :data:`REFUSALS` and a reason naming the line or lead at fault.
    """

    from ecg.record import MAX_FS_HZ, MIN_FS_HZ

    if len(header) > config.max_header_bytes:
        raise UploadRefused("header_too_large", f"header over {config.max_header_bytes} bytes")
    signal_size = signal.stat().st_size
    if signal_size > config.max_signal_bytes:
        raise UploadRefused("signal_too_large", f"signal over {config.max_signal_bytes} bytes")
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UploadRefused("not_utf8", f"the header is not UTF-8 (byte {exc.start})") from None
    if "\x00" in text:
        raise UploadRefused("bad_header", "the header holds a NUL character")
    comments: list[str] = []
    lines: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped[1:].strip()[:500])
        elif stripped:
            lines.append((number, stripped.split("#", 1)[0].strip()))
    if not lines:
        raise UploadRefused("bad_header", "no record line")
    record_number, record_line = lines[0]
    found = _RECORD_LINE.fullmatch(record_line)
    if found is None:
        raise UploadRefused("bad_header", f"line {record_number}: not a WFDB record line")
    if found["segments"]:
        raise UploadRefused("unsupported_record", "multi-segment records are not taken")
    n_leads = int(found["nsig"])
    if n_leads < 1:
        raise UploadRefused("bad_header", "the record declares no signal")
    if n_leads > config.max_leads:
        raise UploadRefused("too_many_leads", f"{n_leads} signals; at most {config.max_leads}")
    if found["fs"] is None or found["nsamp"] is None:
        raise UploadRefused("bad_header", "the record line must state the sampling rate and length")
    fs_hz = _number(found["fs"], "sampling rate")
    if not MIN_FS_HZ <= fs_hz <= MAX_FS_HZ:
        raise UploadRefused(
            "bad_sampling_rate", f"{fs_hz:g} Hz outside {MIN_FS_HZ:g}-{MAX_FS_HZ:g} Hz"
        )
    n_samples = int(found["nsamp"])
    if n_samples < 1:
        raise UploadRefused("bad_header", "the record holds no sample (length 0)")
    if n_samples > config.max_samples_per_lead:
        raise UploadRefused(
            "too_many_samples",
            f"{n_samples} samples per lead; at most {config.max_samples_per_lead}",
        )
    signal_lines = lines[1:]
    if len(signal_lines) != n_leads:
        raise UploadRefused(
            "bad_header", f"declares {n_leads} signals but describes {len(signal_lines)}"
        )
    files, formats, names, units = set(), set(), [], []
    gains, baselines, resolutions, checksums = [], [], [], []
    for lead, (number, line) in enumerate(signal_lines):
        sig = _SIGNAL_LINE.fullmatch(line)
        if sig is None:
            raise UploadRefused("bad_header", f"line {number}: not a WFDB signal line")
        if sig["fmt"] not in _FORMATS:
            raise UploadRefused(
                "unsupported_record", f"line {number}: format {sig['fmt']} (16 or 212 only)"
            )
        if sig["spf"] or sig["skew"] or sig["offset"]:
            raise UploadRefused(
                "unsupported_record", f"line {number}: multiplier, skew or byte offset"
            )
        files.add(sig["file"])
        formats.add(sig["fmt"])
        gain = _number(sig["gain"], f"line {number}: gain") if sig["gain"] else 0.0
        gains.append(gain if gain != 0 else _DEFAULT_GAIN)
        if gain < 0:
            raise UploadRefused("bad_header", f"line {number}: negative gain")
        zero = int(sig["adczero"]) if sig["adczero"] else 0
        baselines.append(int(sig["baseline"]) if sig["baseline"] is not None else zero)
        unit = sig["units"] or "mV"
        if unit.lower() not in _MV_PER_UNIT:
            raise UploadRefused("not_voltage", f"line {number}: unit {unit!r} is not a voltage")
        units.append(unit)
        resolutions.append(int(sig["adcres"]) if sig["adcres"] else 0)
        checksums.append(int(sig["checksum"]) if sig["checksum"] else None)
        names.append((sig["description"] or "").strip() or f"signal {lead}")
    if len(files) != 1 or len(formats) != 1:
        raise UploadRefused(
            "unsupported_record", "every signal must be in the one file, in one format"
        )
    [fmt] = formats
    n_values = n_samples * n_leads
    expected = n_values * 2 if fmt == "16" else (n_values // 2) * 3 + 2 * (n_values % 2)
    if signal_size != expected:
        raise UploadRefused(
            "wrong_length",
            f"the signal file has {signal_size} bytes; {n_samples} samples of {n_leads} leads "
            f"in format {fmt} are {expected}",
        )
    head_frames = min(n_samples, int(MEASURED_S * fs_hz))
    try:
        sums, head = _convert(signal, canonical, fmt, n_leads, head_frames)
        for lead, checksum in enumerate(checksums):
            if checksum is not None and sums[lead] & 0xFFFF != checksum & 0xFFFF:
                raise UploadRefused(
                    "checksum_mismatch", f"lead {lead + 1} ({names[lead]!r}): checksum differs"
                )
    except BaseException:
        canonical.unlink(missing_ok=True)
        raise
    return ParsedRecord(
        fs_hz=fs_hz,
        lead_names=tuple(names),
        n_samples=n_samples,
        head=head,
        sums=tuple(sums),
        signal_file=canonical,
        gains=tuple(gains),
        baselines=tuple(baselines),
        units=tuple(units),
        adc_resolution=tuple(resolutions),
        base_time=found["time"],
        base_date=found["date"] if found["time"] else None,
        comments=tuple(comments),
    )


_RECORD_ID: Final = re.compile(r"[0-9a-f]{32}")


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".part")
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


class RecordStore:
    """The uploaded records, as WFDB format 16 under ``root`` (``<id>.hea``,
    ``<id>.dat``); also the reading API's signal of a task made from one. Blocking."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def part_of(self, record_id: str) -> Path:
        """Where a record's signal is written while it is checked (the folder made)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.root / f".{record_id}.dat.part"

    def path_of(self, record_id: str) -> Path | None:
        """The record path (no extension), None for an id that is not one of ours."""
        return self.root / record_id if _RECORD_ID.fullmatch(record_id) else None

    def put(self, record_id: str, parsed: ParsedRecord) -> None:
        """Write the record, durable (fsynced, the folder too) before this returns."""
        path = self.path_of(record_id)
        if path is None:
            raise ValueError("not a record id")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        lines = [
            " ".join(
                filter(
                    None,
                    [
                        record_id,
                        str(len(parsed.lead_names)),
                        f"{parsed.fs_hz:.12g}",
                        str(parsed.n_samples),
                        parsed.base_time,
                        parsed.base_date,
                    ],
                )
            )
        ]
        sums = parsed.sums
        for lead, name in enumerate(parsed.lead_names):
            resolution = parsed.adc_resolution[lead] or 16
            checksum = int(sums[lead]) & 0xFFFF  # WFDB's: a signed 16-bit sum
            checksum -= 0x10000 if checksum >= 0x8000 else 0
            lines.append(
                f"{record_id}.dat 16 {parsed.gains[lead]:.12g}({parsed.baselines[lead]})"
                f"/{parsed.units[lead]} {resolution} 0 {int(parsed.head[0, lead])} "
                f"{checksum} 0 {name}"
            )
        lines += [f"# {comment}" for comment in parsed.comments]
        os.replace(parsed.signal_file, path.with_suffix(".dat"))  # fsynced when written
        _write_durably(path.with_suffix(".hea"), ("\n".join(lines) + "\n").encode())
        folder = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def remove(self, record_id: str) -> None:
        path = self.path_of(record_id)
        if path is not None:
            for suffix in (".hea", ".dat"):
                path.with_suffix(suffix).unlink(missing_ok=True)

    def read(self, record_id: str) -> Record | None:
        """The stored record in mV, None when there is none."""
        from ecg.errors import EcgError
        from ecg.record import read_record

        path = self.path_of(record_id)
        if path is None or not path.with_suffix(".hea").exists():
            return None
        try:
            return read_record(path)
        except (EcgError, OSError):
            return None

    def signal_of(self, record: ReadingRecord) -> Record | None:
        """:class:`api.readings.EcgSignals` for tasks made from an upload."""
        return None if record.record is None else self.read(record.record)

    def length_of(self, record: ReadingRecord) -> tuple[int, float] | None:
        path = None if record.record is None else self.path_of(record.record)
        return None if path is None else file_length(path)

    def window_of(self, record: ReadingRecord, start: int, stop: int) -> Record | None:
        path = None if record.record is None else self.path_of(record.record)
        return None if path is None else file_window(path, start, stop)


@dataclass(frozen=True)
class UploadedOrStreamed:
    """The reading API's :class:`api.readings.EcgSignals` for both kinds of task: one
    made from an upload reads :class:`RecordStore`, any other ``streams``."""

    records: RecordStore
    streams: EcgSignals | None = None

    def signal_of(self, record: ReadingRecord) -> Record | None:
        if record.record is not None:
            return self.records.signal_of(record)
        return None if self.streams is None else self.streams.signal_of(record)

    def length_of(self, record: ReadingRecord) -> tuple[int, float] | None:
        if record.record is not None:
            return self.records.length_of(record)
        return None if self.streams is None else self.streams.length_of(record)

    def window_of(self, record: ReadingRecord, start: int, stop: int) -> Record | None:
        if record.record is not None:
            return self.records.window_of(record, start, stop)
        return None if self.streams is None else self.streams.window_of(record, start, stop)


def _engine_findings(found: Record, config: AnnotateConfig | None) -> tuple[list[str], list[str]]:
    """The engine's critical codes and first statements of the measured window, made
    with ``config`` (None: the engine's defaults)."""
    from api.reading_fhir import measured_window
    from ecg.annotate import annotate

    annotation = annotate(measured_window(found), config)
    critical = [str(c["code"]) for c in annotation.critical or ()]
    statements = [str(s["code"]) for s in annotation.statements or ()]
    return list(dict.fromkeys(critical)), statements[:3]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as given:
        while chunk := given.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class RecordUploads:
    """The use case behind the endpoint: check, store, make the task (blocking)."""

    service: ReadingService
    store: RecordStore
    directory: Directory
    audit: AuditSink
    config: RecordUploadConfig = field(default_factory=RecordUploadConfig)
    # The engine's settings, an ecg.annotate.AnnotateConfig (the server's [ecg]: mains
    # notch, QTc shown first), or None for the engine's defaults. Typed Any: Litestar
    # resolves this dependency's annotations, and the engine's type brings numpy.
    annotate_config: Any = None
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)

    def _clinic_for(self, person: Person, clinic: str | None) -> str:
        chosen = clinic or person.institution
        if chosen is None or not person.roles & CLINICAL_ROLES or person.institution is None:
            raise ApiError(
                "forbidden", "only a clinic's or its ECG centre's staff upload ECGs", status=403
            )
        tree = Tree(self.directory.all_institutions())
        if chosen not in tree.by_code or not serves(
            tree, self.directory.all_relations(), person.institution, chosen, ServiceKind.ECG
        ):
            raise ApiError(
                "forbidden",
                f"you do not record or read ECGs for clinic {chosen[:64]!r}",
                status=403,
            )
        return chosen

    def _audit(
        self, person: Person, clinic: str | None, patient: str | None, outcome: str, **details: str
    ) -> None:
        self.audit.append(
            AuditEvent(
                at_s=self.service.now().timestamp(),
                action="record.upload",
                actor=person.id,
                target=f"record:{details.get('record', '')}",
                outcome=outcome,
                details=details,
                institution=clinic or person.institution,
                patient=patient,
            )
        )

    def audit_refused(self, person: Person, code: str) -> None:
        """Audit an upload refused while its body arrived (nothing of it was kept)."""
        self._audit(person, None, None, "denied", code=code)

    def upload(
        self,
        person: Person,
        header: bytes,
        signal: Path,
        *,
        clinic: str | None = None,
        patient: str | None = None,
        stat: bool = False,
    ) -> tuple[ReadingRecord, ParsedRecord]:
        """Parse, check the right, store durably, make the reading task.

        Raises
        ------
        UploadRefused, ApiError
            A bad record (its code) or no right (403 ``forbidden``): audited, nothing
            stored.
        InvalidInput
            No ECG centre serves the clinic (the stored files are removed).
        """
        sums = {"header_sha256": _sha256(header), "signal_sha256": _sha256_file(signal)}
        record_id = self.new_id()
        try:
            chosen = self._clinic_for(person, clinic)
            parsed = parse_wfdb(header, signal, self.config, self.store.part_of(record_id))
        except ApiError as exc:
            self._audit(person, clinic, patient, "denied", code=exc.code, **sums)
            raise
        # The engine reads the first seconds only (not a whole hour in float64).
        try:
            critical, statements = _engine_findings(
                parsed.to_record(record_id, MEASURED_S), self.annotate_config
            )
        except BaseException:
            parsed.signal_file.unlink(missing_ok=True)
            raise
        self.store.put(record_id, parsed)
        try:
            made = self.service.task_for_record(
                record_id, chosen, patient, self.service.now(), critical, statements, stat=stat
            )
        except ConsultsError as exc:
            self.store.remove(record_id)
            self._audit(person, chosen, patient, "denied", code=exc.code, record=record_id, **sums)
            raise
        self._audit(
            person,
            chosen,
            patient,
            "ok",
            record=record_id,
            reading=made.task.id,
            leads=str(len(parsed.lead_names)),
            samples=str(parsed.n_samples),
            fs_hz=f"{parsed.fs_hz:g}",
            **sums,
        )
        # The reading page's engine reading of the record, made before a reader opens it.
        load = functools.partial(measured_signal, self.store, made)
        annotate_ahead(made.task.id, load, self.annotate_config)
        return made, parsed


@dataclass
class ReceivedForm:
    """What :func:`receive_form` kept of the body: the header's bytes and the short
    fields (the signal is in the file it was given)."""

    header: bytes
    fields: dict[str, str]


_FIELDS: Final = ("clinic", "patient", "stat")
_MAX_FIELD_BYTES: Final = 1024


async def receive_form(
    request: Request[Any, Any, Any], config: RecordUploadConfig, signal_path: Path
) -> ReceivedForm:
    """Stream the multipart body: the ``signal`` part into ``signal_path`` chunk by
    chunk (never whole in memory), the ``header`` and the short fields into memory,
    each bounded while it arrives (over: :class:`UploadRefused` at once, the rest not
    read). The caller removes ``signal_path`` whatever happens.

    Raises
    ------
    UploadRefused
        ``header_too_large``, ``signal_too_large``, ``missing_file``, or ``bad_form``
        (not a multipart form, a field over 1 KiB, a part not expected).
    """
    # Litestar's own multipart parser (a dependency of it), pushed chunk by chunk.
    from multipart import (  # type: ignore[import-untyped]
        MultipartError,
        MultipartSegment,
        PushMultipartParser,
    )

    kind, options = request.content_type
    boundary = options.get("boundary")
    if kind != RequestEncodingType.MULTI_PART or not boundary:
        raise UploadRefused("bad_form", "the body must be multipart/form-data with a boundary")
    header = bytearray()
    fields: dict[str, bytearray] = {}
    got_signal = got_header = False
    signal_bytes = 0
    current: str | None = None
    async with await anyio.open_file(signal_path, "wb") as out:
        try:
            with PushMultipartParser(boundary.encode(), max_segment_count=8) as parser:
                async for chunk in request.stream():
                    for event in parser.parse(chunk):
                        if isinstance(event, MultipartSegment):
                            current = event.name
                            if current == "signal":
                                got_signal = True
                            elif current == "header":
                                got_header = True
                                header.clear()
                            elif current in _FIELDS:
                                fields[current] = bytearray()
                            else:
                                raise UploadRefused("bad_form", f"unexpected part {current[:64]!r}")
                        elif event and current == "signal":
                            signal_bytes += len(event)
                            if signal_bytes > config.max_signal_bytes:
                                raise UploadRefused(
                                    "signal_too_large",
                                    f"signal over {config.max_signal_bytes} bytes",
                                )
                            await out.write(event)
                        elif event and current == "header":
                            header += event
                            if len(header) > config.max_header_bytes:
                                raise UploadRefused(
                                    "header_too_large",
                                    f"header over {config.max_header_bytes} bytes",
                                )
                        elif event and current is not None:
                            fields[current] += event
                            if len(fields[current]) > _MAX_FIELD_BYTES:
                                raise UploadRefused(
                                    "bad_form", f"{current}: over {_MAX_FIELD_BYTES} bytes"
                                )
                        elif event is None:
                            current = None
                    if parser.closed:
                        break
        except MultipartError as exc:
            raise UploadRefused("bad_form", f"not a valid multipart form: {exc}") from None
    if not got_signal or not got_header:
        raise UploadRefused("missing_file", "the form needs the header and the signal files")
    try:
        texts = {name: value.decode("utf-8") for name, value in fields.items()}
    except UnicodeDecodeError:
        raise UploadRefused("bad_form", "a form field is not UTF-8") from None
    return ReceivedForm(bytes(header), texts)


class RecordUploaded(msgspec.Struct):
    """The reading task made from the upload, and the record as stored."""

    reading: Annotated[str, Meta(examples=["3f2b9c1e7d4a4f0e9a1b2c3d4e5f6a7b"])]
    record: Annotated[str, Meta(examples=["9c1e7d4a4f0e9a1b2c3d4e5f6a7b3f2b"])]
    clinic: Annotated[str, Meta(examples=["village-1"])]
    centre: Annotated[str, Meta(examples=["county-ecg"])]
    state: Annotated[str, Meta(examples=["new"])]
    critical: Annotated[list[str], Meta(examples=[["PAUSE"]])]
    top_statements: Annotated[list[str], Meta(examples=[["SR"]])]
    fs_hz: Annotated[float, Meta(examples=[500.0])]
    leads: Annotated[list[str], Meta(examples=[["I", "II", "III"]])]
    n_samples: Annotated[int, Meta(examples=[5000])]
    duration_s: Annotated[float, Meta(examples=[10.0])]


def _bounded(text: str | None, field_name: str) -> str | None:
    if text is None or not text.strip():
        return None
    if len(text) > 64:
        raise ApiError("invalid_input", f"{field_name}: at most 64 characters")
    return text.strip()


@dataclass
class _UploadOperation(Operation):
    """The endpoint's OpenAPI operation: the handler reads the stream itself
    (:func:`receive_form`), so the multipart form it takes is described here."""

    def __post_init__(self) -> None:
        def text(description: str, fmt: OpenAPIFormat | None = None) -> Schema:
            return Schema(type=OpenAPIType.STRING, format=fmt, description=description)

        form = Schema(
            type=OpenAPIType.OBJECT,
            required=["header", "signal"],
            properties={
                "header": text("the .hea file (at most max_header_bytes)", OpenAPIFormat.BINARY),
                "signal": text("the .dat file (at most max_signal_bytes)", OpenAPIFormat.BINARY),
                "clinic": text("default: the uploader's institution"),
                "patient": text("an opaque patient id"),
                "stat": Schema(type=OpenAPIType.BOOLEAN, description="urgent (STAT)"),
            },
        )
        self.request_body = RequestBody(
            content={"multipart/form-data": OpenAPIMediaType(schema=form)}, required=True
        )


class RecordUploadController(Controller):
    """Upload a stored record; it becomes a reading task."""

    path = "/"
    tags = ["readings"]  # noqa: RUF012 - Litestar's own class attribute
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @post(
        "/",
        status_code=201,
        summary="Upload a WFDB record (.hea + .dat); it becomes a reading task",
        operation_class=_UploadOperation,
        responses=documented(
            201,
            RecordUploaded,
            None,
            *AUTH_ERRORS,
            (403, "forbidden", "you do not record or read ECGs for clinic 'village-9'"),
            (400, "invalid_input", "clinic: no ECG centre serves this clinic"),
            (413, "too_large", "the request body is over the size limit"),
            *((status, code, reason) for code, (status, reason) in REFUSALS.items()),
        ),
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        record_uploads: NamedDependency[RecordUploads],
    ) -> RecordUploaded:
        """Form fields ``header`` (the ``.hea`` file), ``signal`` (its ``.dat``),
        optional ``clinic`` (default: the uploader's institution), ``patient`` and
        ``stat``. A bad record is refused with its code and nothing is stored."""
        folder = record_uploads.store.root
        await anyio.to_thread.run_sync(
            functools.partial(folder.mkdir, parents=True, exist_ok=True, mode=0o700)
        )
        received = folder / f".upload-{uuid.uuid4().hex}.part"
        try:
            try:
                form = await receive_form(request, record_uploads.config, received)
            except UploadRefused as exc:
                await anyio.to_thread.run_sync(
                    functools.partial(record_uploads.audit_refused, principal.person, exc.code)
                )
                raise
            fields = form.fields
            made, parsed = await anyio.to_thread.run_sync(
                functools.partial(
                    record_uploads.upload,
                    principal.person,
                    form.header,
                    received,
                    clinic=_bounded(fields.get("clinic"), "clinic"),
                    patient=_bounded(fields.get("patient"), "patient"),
                    stat=fields.get("stat", "").strip().lower() in ("true", "1", "on", "yes"),
                )
            )
        finally:
            await anyio.to_thread.run_sync(functools.partial(received.unlink, missing_ok=True))
        task = made.task
        return RecordUploaded(
            reading=task.id,
            record=made.record or "",
            clinic=task.clinic,
            centre=task.centre,
            state=task.state.value,
            critical=list(task.critical),
            top_statements=list(made.top_statements),
            fs_hz=parsed.fs_hz,
            leads=list(parsed.leads),
            n_samples=parsed.n_samples,
            duration_s=parsed.n_samples / parsed.fs_hz,
        )


def record_upload_api(uploads: RecordUploads) -> ReadingApi:
    """The upload route (``POST /api/v1/ecg/records``, its body bounded by the
    configuration) and its dependency."""
    return ReadingApi(
        route_handlers=[
            Router(
                UPLOAD_PATH,
                route_handlers=[RecordUploadController],
                request_max_body_size=uploads.config.max_request_bytes,
            )
        ],
        dependencies={
            "record_uploads": Provide(lambda: uploads, use_cache=True, sync_to_thread=False)
        },
        middleware=[],
    )
