"""A signed ECG report as FHIR R4 (``GET /api/v1/readings/{id}/report.fhir``): a
``collection`` Bundle whose first entry is the DiagnosticReport (LOINC 11524-6 "EKG
study"), then the Patient, the Observations of the measurements it refers to
(``result``) and a Provenance carrying the reader's signature.

Design notes
------------
- The resources are :func:`ecg.fhir.fhir_bundle`'s (the LOINC codes and UCUM units of
  HR, RR, PR, QRS, QT, QTc and the axes, the coded statements and critical findings
  as ``conclusionCode``), filled from **the latest signed version only**: its
  statements, text, critical findings, signer and signing time (``issued``), as the
  PDF and the DICOM file print them (:func:`api.readings.report_info`). This module
  adds what only the ECG centre knows: the task as ``identifier`` (with the version),
  ``performer`` (the signing reader and the centre), ``status`` ``final`` for
  version 1 and ``amended`` after, the cardiology category beside HL7's ``EC``, and
  the signed JSON document as ``presentedForm`` (and the PDF's address) with its
  Ed25519 signature in a Provenance, so a receiver can verify what it got.
- The measurements are those the signed version carries (``measurements``, when it
  has them); otherwise the engine's over the record's first
  :data:`api.readings.MEASURED_S` seconds, as the reading page showed them. A task
  whose signal is not kept has a report without Observations.
- Resource ids are UUIDs made from the task, the version and the resource's place, so
  two exports of one version are the same document.
- Who may read it is the reading service's rule (a task of a clinic the caller's
  institution does not serve is 404 ``not_found``); a task with nothing signed yet is
  409 ``not_signed``; each export is audited (``reading.exported``, format ``fhir``).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from litestar import Controller, Response, get
from litestar.di import NamedDependency

from api.errors import ApiError
from api.readings import MEASURED_S, SignalSource, measured_signal, report_info
from api.schemas import AUTH_ERRORS, NO_STORE, PathId, documented
from api.session import consults_error
from consults.accounts import Principal
from consults.errors import ConsultsError
from consults.opinions import SignedVersion
from consults.reading_repositories import ReadingRecord
from consults.reading_service import ReadingService

if TYPE_CHECKING:
    from ecg.annotate import AnnotateConfig
    from ecg.paper_content import Measurements
    from ecg.record import Record

__all__ = [
    "FHIR_MEDIA_TYPE",
    "ReadingFhirController",
    "engine_measurements",
    "measured_window",
    "reading_report_bundle",
]

FHIR_MEDIA_TYPE: Final = "application/fhir+json"
_SYSTEM: Final = "urn:teleconsult"
# LOINC's part code for cardiology, the category US Core and IHE use for ECG reports.
_CARDIOLOGY: Final = {"system": "http://loinc.org", "code": "LP29708-2", "display": "Cardiology"}
_NAMESPACE: Final = uuid.UUID("0f6f1b8e-3c1d-4b8a-9a57-6c2e7d1f4a93")


def measured_window(found: Record) -> Record:
    """The record's first :data:`~api.readings.MEASURED_S` seconds, which the engine
    measures (as the reading page shows them)."""
    from ecg.record import Record as EcgRecord

    measured = found.signal_mv[: int(MEASURED_S * found.fs_hz)]
    return EcgRecord(
        name=found.name, fs_hz=found.fs_hz, signal_mv=measured, lead_names=found.lead_names
    )


def engine_measurements(found: Record, config: AnnotateConfig | None = None) -> Measurements:
    """The engine's global measurements of :func:`measured_window`, made with ``config``
    (the server's ``[ecg]``; None: the engine's defaults)."""
    from ecg.annotate import annotate
    from ecg.paper_content import measurements_from

    annotation = annotate(measured_window(found), config)
    if annotation.measurements is None:
        return measurements_from(None)
    return measurements_from(annotation.measurements.global_)


def _ids(reading_id: str, version: int) -> Callable[[], str]:
    """Fresh ids for one export, the same for every export of that version."""
    counter = iter(range(1_000_000))
    return lambda: str(uuid.uuid5(_NAMESPACE, f"{reading_id}/v{version}/{next(counter)}"))


def reading_report_bundle(
    record: ReadingRecord,
    versions: Sequence[SignedVersion],
    measurements: Measurements | None,
) -> dict[str, Any]:
    """The latest signed version of ``record``'s report as a FHIR R4 Bundle (JSON-ready
    values). Pure: the caller brings the versions and the measurements.

    Raises
    ------
    ValueError
        ``versions`` is empty (nothing is signed).
    """
    from ecg.fhir import fhir_bundle
    from ecg.paper_content import Patient, measurements_from

    if not versions:
        raise ValueError("nothing is signed")
    last = versions[-1]
    doc = last.document
    task = record.task
    version = int(str(doc["version"]))
    info = report_info(doc, task.received_at)
    signed = doc.get("measurements")
    info = replace(
        info,
        patient=Patient(patient_id=record.patient or ""),
        measurements=measurements_from(signed)
        if isinstance(signed, Mapping)
        else measurements or measurements_from(None),
    )
    new_id = _ids(task.id, version)
    bundle = fhir_bundle(
        info,
        status="final" if version == 1 else "amended",
        issued=info.signed_at,
        new_id=new_id,
    )
    report: dict[str, Any] = bundle["entry"][0]["resource"]
    context = doc.get("context")
    names: Mapping[str, object] = context if isinstance(context, Mapping) else {}
    signer = str(doc["signer"])
    report["identifier"] = [
        {"system": f"{_SYSTEM}:reading", "value": task.id},
        {"system": f"{_SYSTEM}:reading-version", "value": f"{task.id}/v{version}"},
    ]
    report["category"].append({"coding": [_CARDIOLOGY], "text": "心电图 Cardiology"})
    report["performer"] = [
        {
            "identifier": {"system": f"{_SYSTEM}:username", "value": signer},
            "display": str(names.get("signer_name") or signer),
        },
        {
            "identifier": {"system": f"{_SYSTEM}:institution", "value": task.centre},
            "display": str(names.get("centre") or task.centre),
        },
    ]
    signed_json = json.dumps(dict(doc), sort_keys=True, ensure_ascii=False).encode()
    signature = last.signature
    report["presentedForm"] = [
        {
            "contentType": "application/json",
            "data": base64.b64encode(signed_json).decode("ascii"),
            "title": f"signed ECG report v{version}",
        },
        {
            "contentType": "application/pdf",
            "url": f"/api/v1/readings/{task.id}/report.pdf",
            "title": f"ECG report v{version} (PDF)",
        },
    ]
    # The signature over that JSON, as the consult's export carries it.
    bundle["entry"].append(
        {
            "fullUrl": f"urn:uuid:{new_id()}",
            "resource": {
                "resourceType": "Provenance",
                "target": [{"reference": bundle["entry"][0]["fullUrl"]}],
                "recorded": str(doc["signed_at"]),
                "agent": [{"who": report["performer"][0]}],
                "signature": [
                    {
                        "type": [
                            {
                                "system": "urn:iso-astm:E1762-95:2013",
                                "code": "1.2.840.10065.1.12.1.1",
                                "display": "Author's Signature",
                            }
                        ],
                        "when": str(doc["signed_at"]),
                        "who": {"display": signer},
                        "targetFormat": "application/json",
                        "sigFormat": f"application/x-{signature.algorithm.lower()}"
                        f";fingerprint={signature.key_fingerprint.replace(' ', '')}",
                        "data": signature.value,
                    }
                ],
            },
        }
    )
    if doc.get("corrects"):
        report["extension"] = [
            {
                "url": "urn:teleconsult:fhir:corrects-sha256",
                "valueString": str(doc["corrects"]),
            }
        ]
    return bundle


class ReadingFhirController(Controller):
    """The signed ECG report as FHIR R4, beside its PDF and DICOM file (its
    dependencies are the reading API's: ``reading_service``, ``ecg_signals``)."""

    path = "/readings"
    tags = ["readings"]  # noqa: RUF012 - Litestar's own class attribute
    exception_handlers = {ConsultsError: consults_error}  # noqa: RUF012

    @get(
        "/{reading_id:str}/report.fhir",
        sync_to_thread=True,
        summary="The signed report as a FHIR R4 DiagnosticReport with its Observations",
        media_type=FHIR_MEDIA_TYPE,
        responses=documented(
            200,
            None,
            None,
            *AUTH_ERRORS,
            (404, "not_found", "no reading '3f2b9c1e'"),
            (409, "not_signed", "reading '3f2b9c1e' has no signed report yet"),
        ),
    )
    def report_fhir(
        self,
        reading_id: PathId,
        principal: NamedDependency[Principal],
        reading_service: NamedDependency[ReadingService],
        ecg_signals: NamedDependency[SignalSource],
    ) -> Response[bytes]:
        """A ``collection`` Bundle: the DiagnosticReport of the latest signed version
        (``final``, ``amended`` after an amendment) with the measurements' Observations
        (LOINC, UCUM) and the Patient; 409 ``not_signed`` before the first signature."""
        person = principal.person
        if not reading_service.versions(person, reading_id):  # 404 if not theirs
            raise ApiError(
                "not_signed", f"reading {reading_id!r} has no signed report yet", status=409
            )
        record, versions = reading_service.export(person, reading_id, "fhir")
        found = measured_signal(ecg_signals, record)
        measured = None if found is None else engine_measurements(found, ecg_signals.engine)
        bundle = reading_report_bundle(record, versions, measured)
        return Response(
            json.dumps(bundle, ensure_ascii=False).encode(),
            media_type=FHIR_MEDIA_TYPE,
            headers={
                **NO_STORE,
                "content-disposition": f'inline; filename="ecg-{reading_id}.fhir.json"',
            },
        )
