"""Annotation files: .qrs round trip through wfdb.rdann, JSON round trip, schema, atomicity."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecg.annotate import Annotation, annotate
from ecg.errors import OutputError
from ecg.flags import FlagKind
from ecg.output import (
    JSON_SCHEMA,
    WFDB_NOTES,
    annotation_to_dict,
    read_json,
    write_annotations,
    write_qrs,
)
from ecg.record import Record
from fixtures.make_fixtures import STANDARD_LEADS, synthetic_ecg

FS_HZ = 250.0


def _flagged_annotation() -> Annotation:
    """A record with beats, a pause, a flat lead and a noisy stretch."""
    times = np.concatenate([np.arange(0.5, 10.0, 0.8), np.arange(12.5, 30.0, 0.8)])
    signal = synthetic_ecg(FS_HZ, 30.0, times, n_leads=3)
    signal[:, 1] = 0.0
    rng = np.random.default_rng(5)
    signal[int(20 * FS_HZ) : int(25 * FS_HZ), 2] += rng.normal(0, 0.2, int(5 * FS_HZ))
    record = Record(
        name="flagged", fs_hz=FS_HZ, signal_mv=signal, lead_names=tuple(STANDARD_LEADS[:3])
    )
    return annotate(record)


@pytest.fixture(scope="module")
def flagged() -> Annotation:
    """One annotated record with rhythm and quality flags, shared by the tests below."""
    return _flagged_annotation()


def test_fixture_has_every_kind_of_row(flagged: Annotation) -> None:
    """The record under test has beats, a rhythm flag and quality flags on two leads."""
    kinds = {flag.kind for flag in flagged.flags}
    assert FlagKind.PAUSE in kinds
    assert {FlagKind.LEAD_OFF, FlagKind.NOISE} <= kinds
    assert flagged.beats.size > 30


def test_qrs_round_trip_through_rdann(flagged: Annotation, tmp_path: Path) -> None:
    """rdann reads every beat as N at its sample, and each flag as a start/end pair."""
    path = write_qrs(flagged, tmp_path)
    assert path == tmp_path / "flagged.qrs"
    read = wfdb.rdann(str(tmp_path / "flagged"), "qrs")
    symbols = np.asarray(read.symbol)
    np.testing.assert_array_equal(read.sample[symbols == "N"], flagged.beats)
    assert read.fs == FS_HZ
    last = flagged.n_samples - 1
    for flag in flagged.flags:
        symbol = "+" if flag.kind.is_rhythm else "~"
        chan = 0 if flag.lead is None else flag.lead
        word = WFDB_NOTES[flag.kind]
        rows = list(zip(read.sample, read.symbol, read.chan, read.aux_note, strict=True))
        assert (min(flag.onset, last), symbol, chan, f"({word}") in rows
        assert (min(flag.offset, last), symbol, chan, f"{word})") in rows
    assert len(read.sample) == flagged.beats.size + 2 * len(flagged.flags)
    assert np.all(np.diff(read.sample) >= 0)


def test_empty_annotation_is_a_valid_file(tmp_path: Path) -> None:
    """A record with no beat and no flag still gets a .qrs that rdann reads as empty."""
    record = Record(
        name="quiet", fs_hz=FS_HZ, signal_mv=np.array([[0.0], [0.5]]), lead_names=("II",)
    )
    empty = np.zeros(0)
    annotation = dataclasses.replace(
        annotate(record), beats=empty.astype(np.int64), rr_ms=empty, hr_bpm=empty, flags=()
    )
    write_qrs(annotation, tmp_path)
    read = wfdb.rdann(str(tmp_path / "quiet"), "qrs")
    assert len(read.sample) == 0


def test_json_round_trip(flagged: Annotation, tmp_path: Path) -> None:
    """read_json gives back what write_json wrote, field by field."""
    _, json_path = write_annotations(flagged, tmp_path)
    back = read_json(json_path)
    np.testing.assert_array_equal(back.beats, flagged.beats)
    np.testing.assert_allclose(back.rr_ms, flagged.rr_ms)
    np.testing.assert_allclose(back.hr_bpm, flagged.hr_bpm)
    assert back.flags == flagged.flags
    assert back.summary == flagged.summary
    assert back.lead_names == flagged.lead_names
    assert (back.record_name, back.fs_hz, back.n_samples) == ("flagged", FS_HZ, 30 * FS_HZ)
    assert annotation_to_dict(back) == annotation_to_dict(flagged)


def test_json_nan_becomes_null_and_back(tmp_path: Path) -> None:
    """A record without beats has null heart rates in JSON and NaN after reading."""
    record = Record(
        name="short", fs_hz=FS_HZ, signal_mv=np.array([[0.0], [0.5]]), lead_names=("II",)
    )
    _, json_path = write_annotations(annotate(record), tmp_path)
    document = json.loads(json_path.read_text())
    assert document["summary"]["hr_median_bpm"] is None
    assert math.isnan(read_json(json_path).summary.hr_median_bpm)


def _check_schema(
    value: object,
    schema: dict[str, object],
    where: str = "$",
    root: dict[str, object] | None = None,
) -> None:
    """A small JSON Schema checker for the keywords JSON_SCHEMA uses."""
    root = schema if root is None else root
    if "$ref" in schema:
        name = str(schema["$ref"]).removeprefix("#/$defs/")
        _check_schema(value, root["$defs"][name], where, root)  # type: ignore[index]
        return
    if "oneOf" in schema:
        matches = 0
        for option in schema["oneOf"]:  # type: ignore[attr-defined]
            try:
                _check_schema(value, option, where, root)
            except AssertionError:
                continue
            matches += 1
        assert matches == 1, f"{where}: {value!r} matches {matches} of oneOf"
    kinds = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
        "null": type(None),
    }
    if "const" in schema:
        assert value == schema["const"], where
    if "enum" in schema:
        assert value in schema["enum"], where  # type: ignore[operator]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        assert any(isinstance(value, kinds[t]) for t in types), f"{where}: {value!r}"  # type: ignore[index,arg-type]
        if "boolean" not in types:
            assert not (isinstance(value, bool)), where
    if isinstance(value, dict):
        for key in schema.get("required", []):  # type: ignore[attr-defined]
            assert key in value, f"{where}.{key} missing"
        properties = schema.get("properties", {})
        for key, item in value.items():
            sub = properties.get(key) or schema.get("additionalProperties")  # type: ignore[attr-defined]
            if isinstance(sub, dict):
                _check_schema(item, sub, f"{where}.{key}", root)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _check_schema(item, schema["items"], f"{where}[{index}]", root)  # type: ignore[arg-type]
    if "minimum" in schema and isinstance(value, int | float):
        assert value >= schema["minimum"], where  # type: ignore[operator]


def test_json_document_follows_schema(flagged: Annotation, tmp_path: Path) -> None:
    """The written JSON satisfies JSON_SCHEMA (required fields, types, enums)."""
    _, json_path = write_annotations(flagged, tmp_path)
    document = json.loads(json_path.read_text())
    _check_schema(document, JSON_SCHEMA)
    assert document["flags"][0]["unit"]
    lead_flags = [f for f in document["flags"] if f["lead"] is not None]
    assert all(f["lead_name"] == STANDARD_LEADS[f["lead"]] for f in lead_flags)


def test_schema_is_in_the_docs() -> None:
    """docs/ecg-annotations.md carries the schema exactly as the code defines it."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "ecg-annotations.md").read_text()
    block = doc.split("```json schema\n", 1)[1].split("```", 1)[0]
    assert json.loads(block) == JSON_SCHEMA


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "cannot read"),
        ('{"format": "something else"}', "not a teleconsult"),
        ('{"format": "teleconsult-ecg-annotations", "format_version": 99}', "format_version"),
        ('{"format": "teleconsult-ecg-annotations", "format_version": 1}', "missing field"),
    ],
)
def test_read_json_refuses_bad_files(tmp_path: Path, content: str, reason: str) -> None:
    """Bad or foreign JSON is an OutputError naming the file and the reason."""
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(OutputError, match=reason) as info:
        read_json(path)
    assert "bad.json" in str(info.value)


def test_read_json_missing_file(tmp_path: Path) -> None:
    """A missing JSON file is an OutputError."""
    with pytest.raises(OutputError, match="cannot read"):
        read_json(tmp_path / "absent.json")


def test_writes_leave_no_temporary_files(flagged: Annotation, tmp_path: Path) -> None:
    """After writing (twice, replacing), the folder holds exactly the two files."""
    write_annotations(flagged, tmp_path / "out")
    write_annotations(flagged, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["flagged.json", "flagged.qrs"]


def test_unwritable_destination(flagged: Annotation, tmp_path: Path) -> None:
    """A destination that is a file is an OutputError, not an OSError."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        write_annotations(flagged, blocker)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d["flags"].append({**d["flags"][-1], "lead": 7}), "not a lead"),
        (lambda d: d["flags"].append({**d["flags"][-1], "kind": "hiccup"}), "malformed"),
        (lambda d: d["flags"].append({**d["flags"][-1], "offset": -1}), "malformed"),
        (lambda d: d["beats"]["sample"].append(10**9), "outside the record"),
        (lambda d: d["beats"]["sample"].reverse(), "increasing"),
        (lambda d: d["beats"]["rr_ms"].pop(), "one value per interval"),
        (lambda d: d["summary"].update(beat_count="many"), "malformed"),
        (lambda d: d["record"].pop("fs_hz"), "fs_hz"),
    ],
    ids=["lead", "kind", "offset", "beat-outside", "unsorted", "rr-length", "count", "no-fs"],
)
def test_read_json_refuses_inconsistent_content(
    flagged: Annotation, tmp_path: Path, change: object, reason: str
) -> None:
    """A well-formed file whose content contradicts itself is an OutputError with the reason."""
    document = annotation_to_dict(flagged)
    change(document)  # type: ignore[operator]
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(document))
    with pytest.raises(OutputError, match=reason):
        read_json(path)
