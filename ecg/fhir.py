"""FHIR R4: an ECG's measurements as Observations with LOINC codes, grouped under a
DiagnosticReport with its statements, in one Bundle; and back.

Design notes
------------
- Plain dicts that ``json.dumps`` writes as FHIR R4 JSON; nothing here imports a FHIR
  library (the tests validate with ``fhir.resources``).
- The Bundle (``type: collection``) holds a DiagnosticReport (LOINC 11524-6 "EKG
  study", category ``EC`` of HL7 v2 table 0074), one Observation per global
  measurement given, referenced from ``DiagnosticReport.result``, and a Patient when
  the report names one. Entries refer to each other by ``urn:uuid:`` full URLs, so a
  server can take the Bundle as a transaction after changing only ``type`` and adding
  ``request``.
- LOINC codes: heart rate 8867-4, RR 8637-1, PR 8625-6, QRS 8633-0, QT 8634-8, QTc
  8636-3 (one Observation per formula given, the formula in ``method.text``), QRS
  axis 8632-2, T axis 8638-9. P duration and P axis have no code here that we are
  sure of and carry a local code (:data:`MEASUREMENT_SYSTEM`). Values are
  ``valueQuantity`` in UCUM (``/min``, ``ms``, ``deg``).
- A measurement that could not be made is an Observation with ``dataAbsentReason``
  (``unknown``, the reason as its text) and no value; one never given is left out.
- Statements are ``DiagnosticReport.conclusionCode`` in :data:`STATEMENT_SYSTEM`
  (display in English, text in Chinese or English) and, one per line,
  ``conclusion``; critical findings are ``conclusionCode`` in :data:`CRITICAL_SYSTEM`
  and make the report's ``status`` no less than ``preliminary``. Statement severity is
  not kept apart from critical findings.
- Ids come from an injected ``new_id`` (default ``uuid4``) and the issue time from
  ``issued``, so the output is a pure function of the arguments.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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
    "CRITICAL_SYSTEM",
    "LOINC",
    "MEASUREMENT_SYSTEM",
    "STATEMENT_SYSTEM",
    "FhirError",
    "FhirReport",
    "fhir_bundle",
    "read_bundle",
]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
STATEMENT_SYSTEM = "https://teleconsult.invalid/fhir/CodeSystem/ecg-statement"
CRITICAL_SYSTEM = "https://teleconsult.invalid/fhir/CodeSystem/ecg-critical"
MEASUREMENT_SYSTEM = "https://teleconsult.invalid/fhir/CodeSystem/ecg-measurement"
_ABSENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
_V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
EKG_STUDY = "11524-6"


@dataclass(frozen=True)
class _Code:
    system: str
    code: str
    display: str
    unit: str


_MEASUREMENTS: dict[str, _Code] = {
    "hr_bpm": _Code(LOINC, "8867-4", "Heart rate", "/min"),
    "rr_ms": _Code(LOINC, "8637-1", "R-R interval by EKG", "ms"),
    "pr_ms": _Code(LOINC, "8625-6", "P-R Interval", "ms"),
    "p_ms": _Code(MEASUREMENT_SYSTEM, "p_ms", "P wave duration", "ms"),
    "qrs_ms": _Code(LOINC, "8633-0", "QRS duration", "ms"),
    "qt_ms": _Code(LOINC, "8634-8", "Q-T interval", "ms"),
    "p_axis_deg": _Code(MEASUREMENT_SYSTEM, "p_axis_deg", "P wave axis", "deg"),
    "qrs_axis_deg": _Code(LOINC, "8632-2", "QRS axis", "deg"),
    "t_axis_deg": _Code(LOINC, "8638-9", "T wave axis", "deg"),
}
_QTC = _Code(LOINC, "8636-3", "Q-T interval corrected", "ms")
_QTC_METHODS = {"bazett": "Bazett", "fridericia": "Fridericia", "framingham": "Framingham",
                "hodges": "Hodges"}  # fmt: skip
_BY_CODE = {(c.system, c.code): name for name, c in _MEASUREMENTS.items()}


class FhirError(EcgError):
    """A document that is not a Bundle of an ECG report as :func:`fhir_bundle` writes."""


@dataclass(frozen=True)
class FhirReport:
    """What :func:`read_bundle` finds in a Bundle."""

    measurements: Measurements
    statements: tuple[Statement, ...]
    critical: tuple[Statement, ...]
    patient: Patient
    status: str
    signed_by: str = ""


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _observation(
    code: _Code, measured: Measurement, common: Mapping[str, Any], method: str | None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        **common,
        "code": {
            "coding": [{"system": code.system, "code": code.code, "display": code.display}],
            "text": code.display,
        },
    }
    if method is not None:
        resource["method"] = {"text": method}
    if measured.value is None:
        resource["dataAbsentReason"] = {
            "coding": [{"system": _ABSENT_SYSTEM, "code": "unknown", "display": "Unknown"}],
            "text": measured.reason or "not measurable",
        }
    else:
        resource["valueQuantity"] = _quantity(measured.value, code.unit)
    return resource


def _patient(patient: Patient, patient_id: str) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    if patient.patient_id:
        resource["identifier"] = [{"value": patient.patient_id}]
    if patient.name:
        resource["name"] = [{"text": patient.name}]
    gender = {"M": "male", "F": "female", "O": "other"}.get(patient.sex)
    if gender:
        resource["gender"] = gender
    if patient.birth_date is not None:
        resource["birthDate"] = patient.birth_date.isoformat()
    return resource


def _instant(when: dt.datetime, naive_tz: dt.tzinfo) -> str:
    if when.tzinfo is None:  # FHIR needs a zone with a time of day
        when = when.replace(tzinfo=naive_tz)
    return when.isoformat()


def fhir_bundle(
    info: ReportInfo,
    *,
    status: str = "preliminary",
    issued: dt.datetime | None = None,
    new_id: Callable[[], str] | None = None,
    naive_tz: dt.tzinfo = dt.UTC,
) -> dict[str, Any]:
    """A FHIR R4 Bundle: the DiagnosticReport, its Observations and the Patient.

    Parameters
    ----------
    info : ReportInfo
        Patient, acquisition time, measurements, statements, critical findings.
    status : str
        The DiagnosticReport's and Observations' status: ``preliminary`` (the
        engine's proposal) or ``final`` (signed by a reader); ``amended`` for an
        amendment.
    issued : datetime, optional
        When the report was made (default now, UTC).
    new_id : callable, optional
        Returns a fresh id for each resource (default a random UUID).
    naive_tz : tzinfo
        The zone of naive times (a cart's local clock: WFDB headers carry no zone).

    Returns
    -------
    dict
        The Bundle as JSON-ready values.
    """
    if status not in ("preliminary", "final", "amended", "corrected"):
        raise FhirError(f"status {status!r} is not preliminary, final, amended or corrected")
    new_id = new_id or (lambda: str(uuid.uuid4()))
    issued = issued or dt.datetime.now(dt.UTC)
    entries: list[dict[str, Any]] = []
    common: dict[str, Any] = {
        "status": status,
        "category": [{"coding": [{"system": _CATEGORY_SYSTEM, "code": "procedure"}]}],
    }
    patient = info.patient
    if patient.name or patient.patient_id or patient.sex or patient.birth_date:
        patient_id = new_id()
        entries.append({"fullUrl": f"urn:uuid:{patient_id}",
                        "resource": _patient(patient, patient_id)})  # fmt: skip
        common["subject"] = {"reference": f"urn:uuid:{patient_id}"}
    if info.acquired_at is not None:
        common["effectiveDateTime"] = _instant(info.acquired_at, naive_tz)

    results = []
    values = info.measurements.values
    for name, code in _MEASUREMENTS.items():
        if name in values:
            results.append(_observation(code, values[name], common, None))
        if name == "qt_ms":  # the QTc after the QT, as on paper
            for formula in QTC_FORMULAS:
                if qtc_key(formula) in values:
                    results.append(
                        _observation(_QTC, values[qtc_key(formula)], common,
                                     _QTC_METHODS[formula])
                    )  # fmt: skip
    references = []
    for resource in results:
        resource_id = new_id()
        resource["id"] = resource_id
        entries.append({"fullUrl": f"urn:uuid:{resource_id}", "resource": resource})
        references.append({"reference": f"urn:uuid:{resource_id}"})

    codes = [
        {"coding": [{"system": STATEMENT_SYSTEM, "code": s.code, "display": s.text_en or s.code}],
         "text": s.text_zh or s.text_en or s.code}
        for s in info.statements
    ] + [
        {"coding": [{"system": CRITICAL_SYSTEM, "code": c.code, "display": c.text_en or c.code}],
         "text": c.text_zh or c.text_en or c.code}
        for c in info.critical
    ]  # fmt: skip
    report_id = new_id()
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "status": status,
        "category": [{"coding": [{"system": _V2_0074, "code": "EC",
                                  "display": "Electrocardiac (e.g., EKG, EEC, Holter)"}]}],
        "code": {"coding": [{"system": LOINC, "code": EKG_STUDY, "display": "EKG study"}],
                 "text": "12-lead ECG"},
        "issued": _instant(issued, naive_tz),
    }  # fmt: skip
    for key in ("subject", "effectiveDateTime"):
        if key in common:
            report[key] = common[key]
    if references:
        report["result"] = references
    if info.signed_by:
        report["resultsInterpreter"] = [{"display": info.signed_by}]
    if codes:
        report["conclusionCode"] = codes
    lines = [
        f"{s.text_en or s.code} / {s.text_zh}" if s.text_zh else (s.text_en or s.code)
        for s in info.statements
    ] + [line for line in info.conclusion.splitlines() if line.strip()]
    if lines or codes:
        report["conclusion"] = "\n".join(lines) or "; ".join(c.code for c in info.critical)
    entries.insert(0, {"fullUrl": f"urn:uuid:{report_id}", "resource": report})
    return {
        "resourceType": "Bundle",
        "id": new_id(),
        "type": "collection",
        "timestamp": _instant(issued, naive_tz),
        "entry": entries,
    }


# Reading back.


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _measurement_name(resource: Mapping[str, Any]) -> str | None:
    for coding in resource.get("code", {}).get("coding", []):
        key = (coding.get("system"), coding.get("code"))
        if key == (_QTC.system, _QTC.code):
            method = str(resource.get("method", {}).get("text", "Bazett")).lower()
            return qtc_key(method) if method in QTC_FORMULAS else None
        if key in _BY_CODE:
            return _BY_CODE[key]
    return None


_UNIT_FACTORS = {"ms": 1.0, "s": 1000.0, "/min": 1.0, "{beats}/min": 1.0, "deg": 1.0}


def read_bundle(bundle: Mapping[str, Any]) -> FhirReport:
    """Measurements, statements, critical codes and patient of a Bundle written by
    :func:`fhir_bundle` (or one shaped like it: a DiagnosticReport 11524-6 whose
    results are Observations in the Bundle).

    Raises
    ------
    FhirError
        When the document is not a Bundle or holds no EKG DiagnosticReport.
    """
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise FhirError("not a FHIR Bundle")
    by_url: dict[str, Mapping[str, Any]] = {}
    reports = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if not isinstance(resource, Mapping):
            continue
        by_url[str(entry.get("fullUrl", ""))] = resource
        codes = resource.get("code", {}).get("coding", [])
        if resource.get("resourceType") == "DiagnosticReport" and any(
            c.get("system") == LOINC and c.get("code") == EKG_STUDY for c in codes
        ):
            reports.append(resource)
    if not reports:
        raise FhirError("the Bundle holds no EKG study DiagnosticReport (LOINC 11524-6)")
    report = reports[0]
    values: dict[str, Measurement] = {}
    for reference in report.get("result") or []:
        resource = by_url.get(str(reference.get("reference", "")))
        if resource is None or resource.get("resourceType") != "Observation":
            continue
        name = _measurement_name(resource)
        if name is None:
            continue
        quantity = resource.get("valueQuantity")
        if isinstance(quantity, Mapping):
            value = _number(quantity.get("value"))
            factor = _UNIT_FACTORS.get(str(quantity.get("code", quantity.get("unit"))))
            if value is not None and factor is not None:
                values[name] = Measurement(value * factor)
                continue
        absent = resource.get("dataAbsentReason", {})
        values[name] = Measurement(None, str(absent.get("text", "not measurable")))
    statements: list[Statement] = []
    critical: list[Statement] = []
    for concept in report.get("conclusionCode") or []:
        for coding in concept.get("coding", []):
            system = coding.get("system")
            if system not in (STATEMENT_SYSTEM, CRITICAL_SYSTEM):
                continue
            code = str(coding.get("code", ""))
            english = str(coding.get("display", ""))
            text = str(concept.get("text", ""))
            chinese = text if text != english else ""
            if system == STATEMENT_SYSTEM:
                statements.append(Statement(code, english, chinese))
            else:
                critical.append(
                    Statement(
                        code,
                        "" if english == code else english,
                        "" if chinese == code else chinese,
                        "critical",
                    )
                )
    formula = next((f for f in QTC_FORMULAS if qtc_key(f) in values), "bazett")
    subject = by_url.get(str(report.get("subject", {}).get("reference", "")), {})
    return FhirReport(
        measurements=Measurements(values, formula),
        statements=tuple(statements),
        critical=tuple(critical),
        patient=_read_patient(subject),
        status=str(report.get("status", "")),
        signed_by=str((report.get("resultsInterpreter") or [{}])[0].get("display", "")),
    )


def _read_patient(resource: Mapping[str, Any]) -> Patient:
    names = resource.get("name") or [{}]
    identifiers = resource.get("identifier") or [{}]
    birth = resource.get("birthDate")
    try:
        birth_date = dt.date.fromisoformat(birth) if isinstance(birth, str) else None
    except ValueError:
        birth_date = None
    return Patient(
        name=str(names[0].get("text", "")),
        patient_id=str(identifiers[0].get("value", "")),
        sex={"male": "M", "female": "F", "other": "O"}.get(str(resource.get("gender")), ""),
        birth_date=birth_date,
    )
