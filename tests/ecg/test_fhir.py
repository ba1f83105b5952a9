"""FHIR R4 export: validated by fhir.resources (its R4B models, which R4's Bundle,
DiagnosticReport, Observation and Patient match), LOINC codes and UCUM units as issued,
and read back."""

from __future__ import annotations

import ast
import datetime as dt
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient as FhirPatient

import ecg.fhir
from ecg.fhir import CRITICAL_SYSTEM, LOINC, FhirError, fhir_bundle, read_bundle
from ecg.paper_content import (
    Measurement,
    Patient,
    ReportInfo,
    critical_from,
    measurements_from,
    statements_from,
)

ISSUED = dt.datetime(2026, 12, 2, 2, 0, tzinfo=dt.UTC)
MODELS: dict[str, Any] = {
    "DiagnosticReport": DiagnosticReport,
    "Observation": Observation,
    "Patient": FhirPatient,
}


def _ids() -> Any:
    counter = iter(range(1, 10_000))
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


def _info() -> ReportInfo:
    return ReportInfo(
        patient=Patient("张三", "P0001", "M", 63, dt.date(1963, 5, 1)),
        acquired_at=dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8))),
        measurements=measurements_from(
            {"hr_bpm": 72.0, "rr_ms": 833.0, "pr_ms": 164.0, "p_ms": 102.0, "qrs_ms": 96.0,
             "qt_ms": 388.0, "qtc_ms": {"bazett": 425.0, "fridericia": 412.0},
             "p_axis_deg": None, "qrs_axis_deg": {"value": None, "reason": "noisy limb leads"},
             "t_axis_deg": 40.0}
        ),
        statements=statements_from(
            [{"code": "SR", "text_en": "Sinus rhythm", "text_zh": "窦性心律"},
             {"code": "1AVB", "text_en": "First-degree AV block", "text_zh": "一度房室传导阻滞"}]
        ),
        critical=critical_from(["LNGQT"]),
    )  # fmt: skip


def _validated(bundle: dict[str, Any]) -> None:
    text = json.dumps(bundle, ensure_ascii=False)
    Bundle.model_validate_json(text)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        MODELS[resource["resourceType"]].model_validate(resource)


def test_bundle_validates_and_carries_loinc_codes_in_ucum() -> None:
    """fhir.resources accepts the Bundle and every resource; the report is LOINC 11524-6
    and each measurement has the LOINC code and UCUM unit it should."""
    bundle = fhir_bundle(_info(), issued=ISSUED, new_id=_ids())
    _validated(bundle)
    resources = [entry["resource"] for entry in bundle["entry"]]
    report = resources[0]
    assert report["resourceType"] == "DiagnosticReport"
    assert report["code"]["coding"][0] == {"system": LOINC, "code": "11524-6",
                                           "display": "EKG study"}  # fmt: skip
    urls = {entry["fullUrl"] for entry in bundle["entry"]}
    assert all(ref["reference"] in urls for ref in report["result"])
    assert report["subject"]["reference"] in urls
    found = {}
    for resource in resources:
        if resource["resourceType"] != "Observation":
            continue
        coding = resource["code"]["coding"][0]
        if coding["system"] == LOINC:
            unit = resource.get("valueQuantity", {}).get("code")
            found.setdefault(coding["code"], []).append(unit)
    assert found == {
        "8867-4": ["/min"], "8637-1": ["ms"], "8625-6": ["ms"], "8633-0": ["ms"],
        "8634-8": ["ms"], "8636-3": ["ms", "ms"], "8632-2": [None], "8638-9": ["deg"],
    }  # fmt: skip
    assert "窦性心律" in report["conclusion"]
    assert {"system": CRITICAL_SYSTEM, "code": "LNGQT", "display": "LNGQT"} in [
        c["coding"][0] for c in report["conclusionCode"]
    ]


def test_absent_measurements_have_a_reason_and_no_value() -> None:
    """A measurement that could not be made is an Observation with dataAbsentReason and
    no valueQuantity; one never given is not there at all."""
    info = ReportInfo(measurements=measurements_from({"qrs_axis_deg": None, "hr_bpm": 60.0}))
    bundle = fhir_bundle(info, issued=ISSUED, new_id=_ids())
    _validated(bundle)
    observations = [e["resource"] for e in bundle["entry"]
                    if e["resource"]["resourceType"] == "Observation"]  # fmt: skip
    assert len(observations) == 2
    axis = next(o for o in observations if o["code"]["coding"][0]["code"] == "8632-2")
    assert "valueQuantity" not in axis
    assert axis["dataAbsentReason"]["coding"][0]["code"] == "unknown"


def test_round_trip_reads_back_every_value() -> None:
    """Through JSON text and back: measurements (absent ones absent with their reason),
    statements, critical codes, patient and status."""
    info = _info()
    info = replace(info, signed_by="李医生", conclusion="建议复查")
    bundle = fhir_bundle(info, status="final", issued=ISSUED, new_id=_ids())
    _validated(bundle)
    assert "建议复查" in bundle["entry"][0]["resource"]["conclusion"]
    text = json.dumps(bundle)
    report = read_bundle(json.loads(text))
    expected = dict(info.measurements.values)
    expected["p_axis_deg"] = Measurement(None, "not measurable")
    assert dict(report.measurements.values) == expected
    assert report.statements == info.statements
    assert report.critical == info.critical
    assert report.status == "final"
    assert report.signed_by == "李医生"
    assert report.patient == Patient("张三", "P0001", "M", None, dt.date(1963, 5, 1))


def test_not_a_report_is_refused() -> None:
    """A document that is not a Bundle, or a Bundle without an EKG report: FhirError."""
    with pytest.raises(FhirError, match="not a FHIR Bundle"):
        read_bundle({"resourceType": "Patient"})
    with pytest.raises(FhirError, match="11524-6"):
        read_bundle({"resourceType": "Bundle", "type": "collection", "entry": []})
    with pytest.raises(FhirError, match="status"):
        fhir_bundle(ReportInfo(), status="signed")


def test_runtime_code_does_not_import_fhir_resources() -> None:
    """ecg/fhir.py builds plain dicts: fhir.resources is a test dependency only."""
    tree = ast.parse(Path(ecg.fhir.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.startswith("fhir") for name in imported)


def test_the_validator_would_catch_a_broken_observation() -> None:
    """The validation above means something: an Observation of ours without its status
    is refused by fhir.resources."""
    from pydantic import ValidationError

    bundle = fhir_bundle(_info(), issued=ISSUED, new_id=_ids())
    observation = dict(bundle["entry"][-1]["resource"])
    del observation["status"]
    with pytest.raises(ValidationError):
        Observation.model_validate(observation)
