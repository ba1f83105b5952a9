"""Writing and reading annotations: WFDB ``<record>.qrs`` and ``<record>.json``.

Design notes
------------
- ``.qrs`` is a WFDB annotation file written by ``wfdb.wrann`` (so ``wfdb.rdann(path,
  "qrs")``, PhysioNet's ``rdann`` and viewers such as WAVE and LightWAVE read it):

  * every beat is ``N`` at its R-peak sample, channel 0. As with PhysioNet's
    detectors (``gqrs``, ``sqrs``), ``N`` here means "a beat, not classified", not
    "a normal beat";
  * a rhythm flag is a pair of ``+`` (rhythm change) annotations, channel 0, with the
    aux notes ``(BRADY`` at the onset and ``BRADY)`` at the end (``TACHY``, ``PAUSE``,
    ``ASYS``, ``AFIB?``): an explicit end because our episodes may overlap, unlike
    MIT-BIH's rhythm labels where the next label ends the previous one;
  * a quality flag is a pair of ``~`` (signal quality change) annotations with the
    ``chan`` field set to the lead's column and the aux notes ``(LEADOFF``/``LEADOFF)``
    (``SATUR``, ``BLW`` for baseline wander, ``NOISE``);
  * the end annotation sits at the flag's ``offset`` (the first sample after it),
    clamped to the record's last sample. The JSON file keeps the exact values.
  * A record with neither beats nor flags gets a valid empty annotation file (the
    end-of-file marker alone), because ``wrann`` refuses an empty one.
- ``.json`` holds the same and more: the summary, beats with RR and heart rate, every
  flag with its lead name and measure. Its schema is :data:`JSON_SCHEMA` (JSON Schema
  2020-12), printed in ``docs/ecg-annotations.md``; ``format_version`` changes only
  when a field changes meaning or disappears (new fields may appear). NaN becomes
  ``null``.
- ``--fiducials`` files (:func:`write_fiducials`): one WFDB annotation file per lead,
  ``<record>.dl_<lead>`` with the lead in LUDB's lower-case spelling (``1.dl_ii``,
  ``1.dl_v1``; other names lower-cased, letters and digits only), each wave a triplet
  in the LUDB convention: ``(`` at its onset, ``p``/``N``/``t`` at its peak, ``)`` at
  its offset, channel 0. A boundary that was not found is left out of its triplet; a
  wave without a peak is not written. ``wfdb.wrann`` refuses extensions that are not
  letters only, so each file is written under a letters-only extension in the
  staging folder and renamed.
- ``measurements`` (present when the record was measured): ``global`` and
  ``per_lead`` (by lead name) hold every field of
  :class:`ecg.measure.GlobalMeasurements` / :class:`ecg.measure.LeadMeasurements`;
  each value is a number in the unit its name says, or ``{"absent": CODE, "detail":
  TEXT}`` with a stable :class:`ecg.delineate.AbsentReason` code: never a number
  that was not measured. ``qtc_ms`` is an object by formula, ``qtc_first`` the
  formula to show first. ``delineation`` holds the global fiducials of the median
  beats (samples of the median beat, R at ``r_index``) and the per-beat fiducials over
  all leads (record samples, ``null`` where absent) with ``p_present``, ``pr_ms`` and
  ``in_template``; the per-lead per-beat fiducials are in the ``--fiducials`` files.
- Every file is written to a temporary name in the destination folder, flushed to disk
  and renamed over the final name, so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ecg.annotate import Annotation, Summary
from ecg.delineate import (
    FIDUCIALS,
    MISSING,
    Absent,
    AbsentReason,
    BeatFiducials,
    Delineation,
    GlobalFiducials,
)
from ecg.errors import EcgError, OutputError
from ecg.flags import MEASURE_UNITS, Flag, FlagKind
from ecg.measure import (
    GlobalMeasurements,
    LeadMeasurements,
    Measurements,
    QtcFormula,
    Value,
    value_fields,
)
from ecg.statements import CRITICAL_SCHEMA, STATEMENTS_SCHEMA

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "JSON_SCHEMA",
    "QRS_EXTENSION",
    "WFDB_NOTES",
    "annotation_from_dict",
    "annotation_to_dict",
    "fiducial_extension",
    "read_json",
    "write_annotations",
    "write_fiducials",
    "write_json",
    "write_qrs",
]

QRS_EXTENSION = "qrs"
FORMAT_NAME = "teleconsult-ecg-annotations"
FORMAT_VERSION = 1

# Aux-note word per flag kind in the .qrs file.
WFDB_NOTES: dict[FlagKind, str] = {
    FlagKind.BRADYCARDIA: "BRADY",
    FlagKind.TACHYCARDIA: "TACHY",
    FlagKind.PAUSE: "PAUSE",
    FlagKind.ASYSTOLE: "ASYS",
    FlagKind.IRREGULAR: "AFIB?",
    FlagKind.LEAD_OFF: "LEADOFF",
    FlagKind.SATURATION: "SATUR",
    FlagKind.BASELINE_WANDER: "BLW",
    FlagKind.NOISE: "NOISE",
}
BEAT_SYMBOL = "N"
RHYTHM_SYMBOL = "+"
QUALITY_SYMBOL = "~"
# The WFDB annotation file's end-of-file marker: a valid file with no annotation.
_EMPTY_ANNOTATION_FILE = b"\x00\x00"


def write_annotations(annotation: Annotation, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``<record>.qrs`` and ``<record>.json`` into ``out_dir`` (created if needed).

    Returns
    -------
    (qrs_path, json_path)

    Raises
    ------
    OutputError
        When a file cannot be written.
    """
    return write_qrs(annotation, out_dir), write_json(annotation, out_dir)


def write_qrs(annotation: Annotation, out_dir: str | os.PathLike[str]) -> Path:
    """Write the WFDB annotation file ``<record>.qrs`` atomically; returns its path."""
    import wfdb

    final = Path(out_dir) / f"{annotation.record_name}.{QRS_EXTENSION}"
    samples, symbols, chans, notes = _wfdb_rows(annotation)
    with _staging_dir(final) as staging:
        staged = staging / final.name
        if samples:
            wfdb.wrann(
                annotation.record_name,
                QRS_EXTENSION,
                np.asarray(samples, dtype=np.int64),
                symbol=symbols,
                chan=np.asarray(chans, dtype=np.int64),
                aux_note=notes,
                fs=annotation.fs_hz,
                write_dir=str(staging),
            )
        else:
            staged.write_bytes(_EMPTY_ANNOTATION_FILE)
        _commit(staged, final)
    return final


def _wfdb_rows(annotation: Annotation) -> tuple[list[int], list[str], list[int], list[str]]:
    last = max(annotation.n_samples - 1, 0)
    rows: list[tuple[int, int, str, int, str]] = [
        (int(sample), 1, BEAT_SYMBOL, 0, "") for sample in annotation.beats
    ]
    for flag in annotation.flags:
        symbol = RHYTHM_SYMBOL if flag.kind.is_rhythm else QUALITY_SYMBOL
        chan = 0 if flag.lead is None else flag.lead
        word = WFDB_NOTES[flag.kind]
        # Order at one sample: episode ends, then beats, then episode starts.
        rows.append((min(flag.onset, last), 2, symbol, chan, f"({word}"))
        rows.append((min(flag.offset, last), 0, symbol, chan, f"{word})"))
    rows.sort(key=lambda row: (row[0], row[1]))
    return (
        [row[0] for row in rows],
        [row[2] for row in rows],
        [row[3] for row in rows],
        [row[4] for row in rows],
    )


FIDUCIAL_PREFIX = "dl_"
# Peak symbol and the (onset, peak, offset) columns of ecg.delineate.FIDUCIALS per wave.
_WAVE_TRIPLETS = (("p", (0, 1, 2)), ("N", (3, 4, 5)), ("t", (6, 7, 8)))


def fiducial_extension(lead_name: str) -> str:
    """The ``--fiducials`` file extension of a lead (``"II"`` -> ``"dl_ii"``)."""
    key = "".join(ch for ch in lead_name.lower() if ch.isascii() and ch.isalnum())
    return FIDUCIAL_PREFIX + (key or "lead")


def write_fiducials(
    delineation: Delineation, record_name: str, out_dir: str | os.PathLike[str]
) -> list[Path]:
    """Write ``<record>.dl_<lead>`` per lead (LUDB triplets) atomically; returns the paths.

    Raises
    ------
    OutputError
        When a file cannot be written.
    """
    import wfdb

    paths: list[Path] = []
    used: set[str] = set()
    for lead_fid in delineation.per_lead:
        ext = fiducial_extension(lead_fid.lead)
        while ext in used:  # two leads with one spelling: keep both files
            ext += "x"
        used.add(ext)
        final = Path(out_dir) / f"{record_name}.{ext}"
        samples: list[int] = []
        symbols: list[str] = []
        for row in lead_fid.points:
            for symbol, (on, peak, off) in _WAVE_TRIPLETS:
                if row[peak] == MISSING:
                    continue
                for col, sym in ((on, "("), (peak, symbol), (off, ")")):
                    if row[col] != MISSING:
                        samples.append(int(row[col]))
                        symbols.append(sym)
        with _staging_dir(final) as staging:
            staged = staging / final.name
            if samples:
                order = np.argsort(np.asarray(samples), kind="stable")
                wfdb.wrann(
                    record_name,
                    "dlstage",
                    np.asarray(samples, dtype=np.int64)[order],
                    symbol=[symbols[i] for i in order],
                    fs=delineation.fs_hz,
                    write_dir=str(staging),
                )
                os.replace(staging / f"{record_name}.dlstage", staged)
            else:
                staged.write_bytes(_EMPTY_ANNOTATION_FILE)
            _commit(staged, final)
        paths.append(final)
    return paths


def annotation_to_dict(annotation: Annotation) -> dict[str, Any]:
    """The JSON document of an annotation, as plain Python values (see JSON_SCHEMA)."""
    summary = annotation.summary
    fs_hz = annotation.fs_hz
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "record": {
            "name": annotation.record_name,
            "fs_hz": fs_hz,
            "n_samples": annotation.n_samples,
            "duration_s": summary.duration_s,
            "lead_names": list(annotation.lead_names),
            "base_datetime": (
                None if annotation.base_datetime is None else annotation.base_datetime.isoformat()
            ),
        },
        "annotator": {
            "detector": summary.detector,
            "version": summary.version,
            "filter_mode": summary.filter_mode,
            "mains_hz": summary.mains_hz,
        },
        "summary": {
            "beat_count": summary.beat_count,
            "hr_min_bpm": _finite_or_none(summary.hr_min_bpm),
            "hr_median_bpm": _finite_or_none(summary.hr_median_bpm),
            "hr_max_bpm": _finite_or_none(summary.hr_max_bpm),
            "flag_counts": dict(summary.flag_counts),
        },
        "beats": {
            "sample": annotation.beats.tolist(),
            "rr_ms": annotation.rr_ms.tolist(),
            "hr_bpm": annotation.hr_bpm.tolist(),
        },
        "flags": [
            {
                "kind": flag.kind.value,
                "onset": flag.onset,
                "offset": flag.offset,
                "onset_s": flag.onset / fs_hz,
                "offset_s": flag.offset / fs_hz,
                "lead": flag.lead,
                "lead_name": None if flag.lead is None else annotation.lead_names[flag.lead],
                "measure": _finite_or_none(flag.measure),
                "unit": MEASURE_UNITS[flag.kind],
            }
            for flag in annotation.flags
        ],
        **(
            {}
            if annotation.measurements is None
            else {"measurements": measurements_to_dict(annotation.measurements)}
        ),
        **({} if annotation.statements is None else {"statements": list(annotation.statements)}),
        **({} if annotation.critical is None else {"critical": list(annotation.critical)}),
    }


def _value_to_json(value: Value) -> float | dict[str, str]:
    if isinstance(value, Absent):
        return {"absent": value.reason.value, "detail": value.detail}
    return float(value)


def _value_from_json(item: Any) -> Value:
    if isinstance(item, dict):
        return Absent(AbsentReason(item["absent"]), str(item.get("detail", "")))
    if isinstance(item, bool) or not isinstance(item, int | float):
        raise OutputError(f"measurement {item!r} is neither a number nor absent")
    return float(item)


_GLOBAL_FIDUCIALS = ("p_on", "p_off", "qrs_on", "qrs_off", "t_peak", "t_off")
_GLOBAL_ABSENT = ("absent_p", "absent_qrs", "absent_t")


def measurements_to_dict(m: Measurements) -> dict[str, Any]:
    """The ``measurements`` section of the JSON document (see JSON_SCHEMA)."""
    g = m.global_
    global_doc: dict[str, Any] = {
        name: _value_to_json(getattr(g, name)) for name in value_fields(GlobalMeasurements)
    }
    global_doc["qtc_ms"] = {f.value: _value_to_json(v) for f, v in g.qtc_ms.items()}
    global_doc["qtc_first"] = g.qtc_first.value
    per_lead = {
        name: {f: _value_to_json(getattr(lm, f)) for f in value_fields(LeadMeasurements)}
        for name, lm in m.per_lead.items()
    }
    dl = m.delineation
    gf = dl.global_
    bf = dl.beat_fiducials
    beats_doc: dict[str, Any] = {
        name: [None if v == MISSING else int(v) for v in bf.column(name)] for name in FIDUCIALS
    }
    beats_doc["p_present"] = [bool(v) for v in bf.p_present]
    beats_doc["pr_ms"] = [_finite_or_none(float(v)) for v in bf.pr_ms]
    beats_doc["in_template"] = [bool(v) for v in bf.in_template]
    delineation = {
        "r_index": dl.r_index,
        "rr_ms": dl.rr_ms,
        "global": {
            **{
                n: (None if getattr(gf, n) == MISSING else getattr(gf, n))
                for n in _GLOBAL_FIDUCIALS
            },
            **{
                n: (None if getattr(gf, n) is None else _value_to_json(getattr(gf, n)))
                for n in _GLOBAL_ABSENT
            },
        },
        "beats": beats_doc,
    }
    return {"global": global_doc, "per_lead": per_lead, "delineation": delineation}


def measurements_from_dict(
    doc: Any, fs_hz: float, lead_names: tuple[str, ...], beats: np.ndarray[Any, Any]
) -> Measurements:
    """Rebuild :class:`Measurements` from its JSON section (no median beats).

    Raises
    ------
    KeyError, TypeError, ValueError, OutputError
        For a malformed section (the caller names it).
    """
    gd = doc["global"]
    values = {name: _value_from_json(gd[name]) for name in value_fields(GlobalMeasurements)}
    global_ = GlobalMeasurements(
        **values,
        qtc_ms={QtcFormula(k): _value_from_json(v) for k, v in gd["qtc_ms"].items()},
        qtc_first=QtcFormula(gd["qtc_first"]),
    )
    per_lead = {
        str(name): LeadMeasurements(
            lead=str(name),
            **{f: _value_from_json(item[f]) for f in value_fields(LeadMeasurements)},
        )
        for name, item in doc["per_lead"].items()
    }
    dd = doc["delineation"]
    gfd = dd["global"]

    def absent(item: Any) -> Absent | None:
        if item is None:
            return None
        value = _value_from_json(item)
        if not isinstance(value, Absent):
            raise OutputError("an absent_* field holds a number")
        return value

    fid = {n: MISSING if gfd[n] is None else int(gfd[n]) for n in _GLOBAL_FIDUCIALS}
    gf = GlobalFiducials(
        **fid,
        absent_p=absent(gfd["absent_p"]),
        absent_qrs=absent(gfd["absent_qrs"]),
        absent_t=absent(gfd["absent_t"]),
    )
    bd = dd["beats"]
    points = np.array(
        [[MISSING if v is None else int(v) for v in bd[name]] for name in FIDUCIALS],
        dtype=np.int64,
    ).T.reshape(-1, len(FIDUCIALS))
    bf = BeatFiducials(
        points=points,
        p_present=np.asarray(bd["p_present"], dtype=bool).reshape(-1),
        pr_ms=np.asarray([math.nan if v is None else float(v) for v in bd["pr_ms"]]),
        in_template=np.asarray(bd["in_template"], dtype=bool).reshape(-1),
    )
    rr = dd["rr_ms"]
    delineation = Delineation(
        fs_hz=fs_hz,
        lead_names=lead_names,
        beats=np.asarray(beats[: points.shape[0]], dtype=np.int64),
        rr_ms=None if rr is None else float(rr),
        r_index=int(dd["r_index"]),
        templates=(),
        global_=gf,
        per_lead=(),
        beat_fiducials=bf,
    )
    return Measurements(global_=global_, per_lead=per_lead, delineation=delineation)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def write_json(annotation: Annotation, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``<record>.json`` atomically; returns its path."""
    final = Path(out_dir) / f"{annotation.record_name}.json"
    text = json.dumps(annotation_to_dict(annotation), indent=1, allow_nan=False)
    with _staging_dir(final) as staging:
        staged = staging / final.name
        staged.write_text(text + "\n", encoding="utf-8")
        _commit(staged, final)
    return final


def read_json(path: str | os.PathLike[str]) -> Annotation:
    """Read an annotation written by :func:`write_json`.

    Raises
    ------
    OutputError
        When the file is missing, not JSON, or not an annotation of a known version.
    """
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OutputError(f"{path}: cannot read annotation JSON: {error}") from None
    try:
        return annotation_from_dict(document)
    except OutputError as error:
        raise OutputError(f"{path}: {error}") from None


def annotation_from_dict(document: Any) -> Annotation:
    """Rebuild an :class:`Annotation` from its JSON document.

    Raises
    ------
    OutputError
        Naming the first field that is missing or of the wrong type.
    """
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise OutputError(f"not a {FORMAT_NAME} document")
    if document.get("format_version") != FORMAT_VERSION:
        raise OutputError(f"unsupported format_version {document.get('format_version')!r}")
    try:
        record, annotator = document["record"], document["annotator"]
        summary, beats = document["summary"], document["beats"]
        fs_hz = float(record["fs_hz"])
        lead_names = tuple(str(name) for name in record["lead_names"])
        flags = tuple(
            Flag(
                FlagKind(item["kind"]),
                int(item["onset"]),
                int(item["offset"]),
                None if item["lead"] is None else int(item["lead"]),
                _none_to_nan(item["measure"]),
            )
            for item in document["flags"]
        )
        base = record["base_datetime"]
        annotation = Annotation(
            record_name=str(record["name"]),
            fs_hz=fs_hz,
            n_samples=int(record["n_samples"]),
            lead_names=lead_names,
            base_datetime=None if base is None else dt.datetime.fromisoformat(base),
            beats=np.asarray(beats["sample"], dtype=np.int64).reshape(-1),
            rr_ms=np.asarray(beats["rr_ms"], dtype=np.float64).reshape(-1),
            hr_bpm=np.asarray(beats["hr_bpm"], dtype=np.float64).reshape(-1),
            flags=flags,
            statements=_json_list(document, "statements"),
            critical=_json_list(document, "critical"),
            measurements=(
                None
                if "measurements" not in document
                else measurements_from_dict(
                    document["measurements"],
                    fs_hz,
                    lead_names,
                    np.asarray(beats["sample"], dtype=np.int64).reshape(-1),
                )
            ),
            summary=Summary(
                duration_s=float(record["duration_s"]),
                beat_count=int(summary["beat_count"]),
                hr_min_bpm=_none_to_nan(summary["hr_min_bpm"]),
                hr_median_bpm=_none_to_nan(summary["hr_median_bpm"]),
                hr_max_bpm=_none_to_nan(summary["hr_max_bpm"]),
                flag_counts={str(k): int(v) for k, v in summary["flag_counts"].items()},
                detector=str(annotator["detector"]),
                version=str(annotator["version"]),
                filter_mode=str(annotator["filter_mode"]),
                mains_hz=None if annotator["mains_hz"] is None else float(annotator["mains_hz"]),
            ),
        )
        _check_consistent(annotation)
        return annotation
    except KeyError as error:
        raise OutputError(f"missing field {error.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError, EcgError) as error:
        raise OutputError(f"malformed field: {error}") from None


def _json_list(document: dict[str, Any], key: str) -> tuple[dict[str, Any], ...] | None:
    if key not in document:
        return None
    items = document[key]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise OutputError(f"{key} must be a list of objects")
    return tuple(items)


def _check_consistent(annotation: Annotation) -> None:
    beats = annotation.beats
    if beats.size and (beats[0] < 0 or beats[-1] >= annotation.n_samples):
        raise OutputError("beats.sample outside the record")
    if np.any(np.diff(beats) <= 0):
        raise OutputError("beats.sample not strictly increasing")
    expected = max(beats.size - 1, 0)
    if annotation.rr_ms.size != expected or annotation.hr_bpm.size != expected:
        raise OutputError("beats.rr_ms and beats.hr_bpm must have one value per interval")
    for flag in annotation.flags:
        if flag.lead is not None and not 0 <= flag.lead < len(annotation.lead_names):
            raise OutputError(f"flag lead {flag.lead} is not a lead of the record")


def _none_to_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


@contextlib.contextmanager
def _staging_dir(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` (same file system, so rename is atomic)."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as error:
        raise OutputError(f"{final}: cannot write: {error}") from None
    try:
        yield staging
    except OSError as error:
        raise OutputError(f"{final}: cannot write: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _commit(staged: Path, final: Path) -> None:
    """Flush ``staged`` to disk and rename it over ``final``, then flush the folder."""
    with open(staged, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(staged, final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://teleconsult.invalid/schemas/ecg-annotations-1.json",
    "title": "teleconsult ECG pre-annotation",
    "type": "object",
    "required": ["format", "format_version", "record", "annotator", "summary", "beats", "flags"],
    "properties": {
        "format": {"const": FORMAT_NAME},
        "format_version": {"const": FORMAT_VERSION},
        "record": {
            "type": "object",
            "required": ["name", "fs_hz", "n_samples", "duration_s", "lead_names", "base_datetime"],
            "properties": {
                "name": {"type": "string", "description": "record name, no extension"},
                "fs_hz": {"type": "number", "exclusiveMinimum": 0},
                "n_samples": {"type": "integer", "minimum": 0},
                "duration_s": {"type": "number", "minimum": 0},
                "lead_names": {"type": "array", "items": {"type": "string"}},
                "base_datetime": {
                    "type": ["string", "null"],
                    "description": "ISO 8601 time of the first sample, from the header",
                },
            },
        },
        "annotator": {
            "type": "object",
            "required": ["detector", "version", "filter_mode", "mains_hz"],
            "properties": {
                "detector": {"type": "string"},
                "version": {"type": "string"},
                "filter_mode": {"enum": ["diagnostic", "monitoring"]},
                "mains_hz": {"type": ["number", "null"]},
            },
        },
        "summary": {
            "type": "object",
            "required": ["beat_count", "hr_min_bpm", "hr_median_bpm", "hr_max_bpm", "flag_counts"],
            "properties": {
                "beat_count": {"type": "integer", "minimum": 0},
                "hr_min_bpm": {"type": ["number", "null"]},
                "hr_median_bpm": {"type": ["number", "null"]},
                "hr_max_bpm": {"type": ["number", "null"]},
                "flag_counts": {
                    "type": "object",
                    "additionalProperties": {"type": "integer", "minimum": 0},
                },
            },
        },
        "beats": {
            "type": "object",
            "required": ["sample", "rr_ms", "hr_bpm"],
            "description": "rr_ms[i] and hr_bpm[i] are from beat i to beat i + 1",
            "properties": {
                "sample": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "rr_ms": {"type": "array", "items": {"type": "number"}},
                "hr_bpm": {"type": "array", "items": {"type": "number"}},
            },
        },
        "flags": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "kind",
                    "onset",
                    "offset",
                    "onset_s",
                    "offset_s",
                    "lead",
                    "lead_name",
                    "measure",
                    "unit",
                ],
                "properties": {
                    "kind": {"enum": [kind.value for kind in FlagKind]},
                    "onset": {"type": "integer", "minimum": 0, "description": "first sample"},
                    "offset": {"type": "integer", "description": "first sample after"},
                    "onset_s": {"type": "number"},
                    "offset_s": {"type": "number"},
                    "lead": {"type": ["integer", "null"], "description": "null: rhythm"},
                    "lead_name": {"type": ["string", "null"]},
                    "measure": {"type": ["number", "null"]},
                    "unit": {"type": "string"},
                },
            },
        },
        "measurements": {
            "type": "object",
            "description": "present when the record was measured (its first 10 s by default)",
            "required": ["global", "per_lead", "delineation"],
            "properties": {
                "global": {
                    "type": "object",
                    "required": [*value_fields(GlobalMeasurements), "qtc_ms", "qtc_first"],
                    "properties": {
                        **{
                            name: {"$ref": "#/$defs/value"}
                            for name in value_fields(GlobalMeasurements)
                        },
                        "qtc_ms": {
                            "type": "object",
                            "required": [f.value for f in QtcFormula],
                            "additionalProperties": {"$ref": "#/$defs/value"},
                        },
                        "qtc_first": {"enum": [f.value for f in QtcFormula]},
                    },
                },
                "per_lead": {
                    "type": "object",
                    "description": "by lead name, in the record's lead order",
                    "additionalProperties": {
                        "type": "object",
                        "required": list(value_fields(LeadMeasurements)),
                        "additionalProperties": {"$ref": "#/$defs/value"},
                    },
                },
                "delineation": {
                    "type": "object",
                    "required": ["r_index", "rr_ms", "global", "beats"],
                    "properties": {
                        "r_index": {
                            "type": "integer",
                            "description": "sample of the R peak in the median beat",
                        },
                        "rr_ms": {"type": ["number", "null"]},
                        "global": {
                            "type": "object",
                            "description": "global fiducials, samples of the median beat",
                            "required": [*_GLOBAL_FIDUCIALS, *_GLOBAL_ABSENT],
                            "properties": {
                                **{n: {"type": ["integer", "null"]} for n in _GLOBAL_FIDUCIALS},
                                **{
                                    n: {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/absent"}]}
                                    for n in _GLOBAL_ABSENT
                                },
                            },
                        },
                        "beats": {
                            "type": "object",
                            "description": "per beat over all leads, record samples",
                            "required": [*FIDUCIALS, "p_present", "pr_ms", "in_template"],
                            "properties": {
                                **{
                                    n: {"type": "array", "items": {"type": ["integer", "null"]}}
                                    for n in FIDUCIALS
                                },
                                "p_present": {"type": "array", "items": {"type": "boolean"}},
                                "pr_ms": {"type": "array", "items": {"type": ["number", "null"]}},
                                "in_template": {"type": "array", "items": {"type": "boolean"}},
                            },
                        },
                    },
                },
            },
        },
        "statements": {
            **STATEMENTS_SCHEMA,
            "description": "coded statements of the measured window (ecg.statements)",
        },
        "critical": {
            **CRITICAL_SCHEMA,
            "description": "critical values of the measured window (ecg.critical)",
        },
    },
    "$defs": {
        "absent": {
            "type": "object",
            "required": ["absent", "detail"],
            "properties": {
                "absent": {"enum": [r.value for r in AbsentReason]},
                "detail": {"type": "string"},
            },
        },
        "value": {
            "description": "a number in the unit of the field's name, or why there is none",
            "oneOf": [{"type": "number"}, {"$ref": "#/$defs/absent"}],
        },
    },
}
