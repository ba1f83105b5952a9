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
from ecg.errors import EcgError, OutputError
from ecg.flags import MEASURE_UNITS, Flag, FlagKind

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "JSON_SCHEMA",
    "QRS_EXTENSION",
    "WFDB_NOTES",
    "annotation_from_dict",
    "annotation_to_dict",
    "read_json",
    "write_annotations",
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
    }


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
    },
}
