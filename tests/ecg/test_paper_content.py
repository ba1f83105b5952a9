"""The report content read from every form it comes in: the annotation JSON's plain
data, and the result types of ecg.measure computed on a real record."""

from __future__ import annotations

from pathlib import Path

from ecg.annotate import annotate
from ecg.measure import measure
from ecg.paper import PaperOptions, layout_pages
from ecg.paper_content import (
    GlobalMeasurementsLike,
    Measurement,
    ReportInfo,
    content_from_annotations,
    critical_from,
    measurements_from,
    patient_from_comments,
    statements_from,
)
from ecg.record import read_record
from ecg.statements import interpret


def test_measurements_of_ecg_measure_on_a_real_record(ecg_dir: Path) -> None:
    """ecg.measure's GlobalMeasurements of LUDB record 1 convert value for value: numbers
    stay numbers, Absent becomes absent with its reason code, QTc by formula."""
    record = read_record(ecg_dir / "ludb-dev" / "1")
    beats = annotate(record).beats
    found: GlobalMeasurementsLike = measure(
        record.signal_mv, record.fs_hz, record.lead_names, beats
    ).global_
    converted = measurements_from(found)
    for name in ("hr_bpm", "rr_ms", "pr_ms", "p_ms", "qrs_ms", "qt_ms", "p_axis_deg",
                 "qrs_axis_deg", "t_axis_deg"):  # fmt: skip
        original = getattr(found, name)
        if isinstance(original, float):
            assert converted.value(name) == original
        else:
            assert converted.value(name) is None
            assert converted.get(name).reason.startswith(str(original.reason))
    assert converted.qtc_formula == str(found.qtc_first)
    hr = converted.value("hr_bpm")
    assert hr is not None
    assert 40 < hr < 50  # LUDB 1 is a sinus bradycardia
    page = layout_pages(
        record.signal_mv, record.fs_hz, record.lead_names,
        ReportInfo(measurements=converted), PaperOptions(lang="en"),
    )[0]  # fmt: skip
    assert f"{hr:.0f} bpm" in [label.text for label in page.labels]


def test_statements_of_ecg_statements_on_a_real_record(ecg_dir: Path) -> None:
    """ecg.statements' interpretation of LUDB record 1 (sinus bradycardia) reads as
    statements with their codes, texts and severities, and prints on the page."""
    record = read_record(ecg_dir / "ludb-dev" / "1")
    annotation = annotate(record)
    measured = measure(record.signal_mv, record.fs_hz, record.lead_names, annotation.beats)
    found = interpret(measured, annotation.beats, annotation.flags, record.fs_hz,
                      signal_mv=record.signal_mv)  # fmt: skip
    statements = statements_from(found.statements)
    assert [s.code for s in statements] == found.codes
    assert "SBRAD" in found.codes
    assert all(s.text_zh and s.text_en and s.severity for s in statements)
    critical = critical_from(found.critical)
    assert [c.code for c in critical] == list(dict.fromkeys(c.code for c in found.critical))
    page = layout_pages(
        record.signal_mv, record.fs_hz, record.lead_names,
        ReportInfo(statements=statements, critical=critical), PaperOptions(lang="zh"),
    )[0]  # fmt: skip
    assert "窦性心动过缓 (SBRAD)" in [label.text for label in page.labels]


def test_annotation_document_in_its_shapes() -> None:
    """Global measurements flat or under "global", QTc as number or by formula, the
    summary's median HR as fallback, statements without a code left out, critical
    codes once each."""
    measurements, statements, critical = content_from_annotations(
        {
            "summary": {"hr_median_bpm": 61.2},
            "measurements": {"global": {"qtc_ms": 430, "qrs_ms": {"value": None,
                                                                  "reason": "paced"},
                                        "pr_ms": {"absent": "no_p_wave", "detail": "AF"}}},
            "statements": [{"code": "SR", "text_en": "Sinus rhythm"}, {"text_en": "x"}, 7],
            "critical": [{"code": "PAUSE"}, {"code": "PAUSE"}, "VF", {"onset": 1}, 3, None],
        }
    )  # fmt: skip
    assert measurements.get("hr_bpm") == Measurement(61.2)
    assert measurements.get("qtc_ms") == Measurement(430.0)
    assert measurements.get("qrs_ms") == Measurement(None, "paced")
    assert measurements.get("pr_ms") == Measurement(None, "no_p_wave: AF")
    by_formula = measurements_from(
        {"qtc_ms": {"bazett": 440.0, "hodges": {"absent": "too_few_beats"}},
         "qtc_first": "hodges"}
    )  # fmt: skip
    assert by_formula.qtc_formula == "hodges"
    assert by_formula.get("qtc_ms") == Measurement(None, "too_few_beats")
    assert by_formula.value("qtc_bazett_ms") == 440.0
    assert [s.code for s in statements] == ["SR"]
    assert [finding.code for finding in critical] == ["PAUSE", "VF"]
    assert {finding.severity for finding in critical} == {"critical"}
    flat, _, _ = content_from_annotations({"measurements": {"hr_bpm": True, "pr_ms": "160"}})
    assert flat.value("hr_bpm") is None
    assert flat.value("pr_ms") is None
    assert content_from_annotations({"measurements": [1, 2]})[0].values == {}


def test_statements_and_critical_from_objects() -> None:
    """Statement objects (code, texts, severity) and critical objects (code) are read by
    their attributes."""

    class Found:  # the shape of ecg.statements.Statement and ecg.critical.Critical
        code = "3AVB"
        text_en = "Third-degree AV block"
        text_zh = "三度房室传导阻滞"
        severity = "critical"

    (statement,) = statements_from([Found()])
    assert statement.text("zh") == "三度房室传导阻滞"
    assert statement.severity == "critical"
    (finding,) = critical_from([Found()])
    assert (finding.code, finding.text_zh, finding.severity) == ("3AVB", "三度房室传导阻滞",
                                                                 "critical")  # fmt: skip


def test_patient_from_wfdb_comments() -> None:
    """LUDB and PTB-XL spell age and sex differently; both are read."""
    ludb = patient_from_comments(["<age>: 51", "<sex>: F", "<diagnoses>:"])
    assert (ludb.age_years, ludb.sex) == (51, "F")
    ptbxl = patient_from_comments(["Age: 59", "Sex: Male", "Dx: 164934002"])
    assert (ptbxl.age_years, ptbxl.sex) == (59, "M")
    assert patient_from_comments(["Age: unknown"]).age_years is None
