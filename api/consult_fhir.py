"""A consult as a FHIR R4 ``collection`` Bundle (``GET /api/v1/consults/{id}/fhir``):
Patient, ServiceRequest, Task (status mapped from our states), Appointment, Encounter
(class ``VR``) and, once signed, DiagnosticReport and Provenance (carrying the Ed25519
signature)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from consults.consult_repositories import (
    ConsultRecord,
)
from consults.lifecycle import ConsultState, Priority
from consults.opinions import SignedVersion, iso_utc

__all__ = ["fhir_bundle"]


# FHIR R4

_TASK_STATUS: Final[Mapping[ConsultState, str]] = {
    ConsultState.DRAFT: "draft",
    ConsultState.SUBMITTED: "requested",
    ConsultState.ASSIGNED: "received",
    ConsultState.ACCEPTED: "accepted",
    ConsultState.DECLINED: "rejected",
    ConsultState.SCHEDULED: "ready",
    ConsultState.IN_CONSULT: "in-progress",
    ConsultState.REPORTING: "in-progress",
    ConsultState.REPORTED: "completed",
    ConsultState.CLOSED: "completed",
    ConsultState.CANCELLED: "cancelled",
    ConsultState.EXPIRED: "failed",
}
_PRIORITY: Final = {
    Priority.ROUTINE: "routine",
    Priority.URGENT: "urgent",
    Priority.EMERGENCY: "stat",
}
_DONE: Final = frozenset({ConsultState.REPORTED, ConsultState.CLOSED})
_STOPPED: Final = frozenset({ConsultState.CANCELLED, ConsultState.EXPIRED})
_SYSTEM: Final = "urn:teleconsult"
# Each resource's fullUrl is a UUID made from the consult id and the resource type, so
# two exports of one consult name its resources alike.
_NAMESPACE: Final = uuid.UUID("5d1c3a52-0b7e-4a59-9c3e-2f7a6d8e1b40")


def _fhir_time(moment: dt.datetime | None) -> str | None:
    return None if moment is None else iso_utc(moment)


def _fhir_signature(signed: SignedVersion, code: str, display: str) -> dict[str, Any]:
    doc = signed.document
    return {
        "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": code, "display": display}],
        "when": str(doc["signed_at"]),
        "who": {"display": str(doc["signer"])},
        "targetFormat": "application/json",
        "sigFormat": f"application/x-{signed.signature.algorithm.lower()}"
        f";fingerprint={signed.signature.key_fingerprint.replace(' ', '')}",
        "data": signed.signature.value,
    }


def fhir_bundle(
    record: ConsultRecord,
    versions: Sequence[SignedVersion],
    cosignatures: Sequence[SignedVersion] = (),
) -> dict[str, Any]:
    """The consult as a FHIR R4 ``collection`` Bundle (JSON)."""
    c, r = record.consult, record.request
    state = c.state
    ref = {
        name: f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{c.id}/{name}')}"
        for name in (
            "Patient",
            "ServiceRequest",
            "Task",
            "Appointment",
            "Encounter",
            "DiagnosticReport",
            "Provenance",
        )
    }
    identifier = [{"system": f"{_SYSTEM}:consult", "value": c.id}]
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": f"{_SYSTEM}:patient", "value": r.patient_id},
            {"system": f"{_SYSTEM}:record-number:{c.clinic}", "value": r.record_number},
        ],
        "name": [{"text": r.patient_name}],
        "gender": r.patient_sex,
        "birthDate": r.patient_birth_date.isoformat(),
    }
    subject = {"reference": ref["Patient"]}
    service_request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": identifier,
        "status": "completed" if state in _DONE else "revoked" if state in _STOPPED else "active",
        "intent": "order",
        "priority": _PRIORITY[c.priority],
        "category": [{"text": r.specialty}],
        "code": {"text": "远程会诊 Teleconsultation"},
        "subject": subject,
        "authoredOn": _fhir_time(c.submitted_at or c.created_at),
        "requester": {"display": c.requester},
        "reasonCode": [{"text": r.reason}],
        "note": [{"text": f"目的 Purpose: {r.purpose}"}, {"text": r.summary}],
    }
    if r.title_wanted or r.expert_wanted:
        service_request["performerType"] = {"text": r.title_wanted or r.expert_wanted}
    task: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": identifier,
        "status": _TASK_STATUS[state],
        "businessStatus": {"text": state.value},
        "intent": "order",
        "priority": _PRIORITY[c.priority],
        "basedOn": [{"reference": ref["ServiceRequest"]}],
        "focus": {"reference": ref["ServiceRequest"]},
        "for": subject,
        "authoredOn": _fhir_time(c.created_at),
        "requester": {"display": c.requester},
    }
    if c.experts:
        task["owner"] = {"display": c.lead_expert or c.experts[0]}
    if c.reason and state in (ConsultState.DECLINED, ConsultState.CANCELLED):
        task["statusReason"] = {"text": c.reason}
    appointment_status = (
        "cancelled"
        if state in _STOPPED
        else "fulfilled"
        if state in _DONE | {ConsultState.IN_CONSULT, ConsultState.REPORTING}
        else "booked"
        if c.scheduled_start is not None
        else "proposed"
    )
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "identifier": identifier,
        "status": appointment_status,
        "serviceType": [{"text": r.specialty}],
        "basedOn": [{"reference": ref["ServiceRequest"]}],
        "participant": [
            {"actor": subject, "status": "accepted"},
            *(
                {
                    "actor": {"display": name},
                    "status": "accepted" if c.accepted_at else "needs-action",
                }
                for name in c.experts
            ),
        ],
    }
    if c.scheduled_start is not None:
        appointment["start"] = _fhir_time(c.scheduled_start)
        appointment["end"] = _fhir_time(c.scheduled_start + dt.timedelta(minutes=30))
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": identifier,
        "status": "finished"
        if state in _DONE
        else "cancelled"
        if state in _STOPPED
        else "in-progress"
        if state in (ConsultState.IN_CONSULT, ConsultState.REPORTING)
        else "planned",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "VR",
            "display": "virtual",
        },
        "subject": subject,
        "basedOn": [{"reference": ref["ServiceRequest"]}],
        "appointment": [{"reference": ref["Appointment"]}],
    }
    resources: list[dict[str, Any]] = [patient, service_request, task, appointment, encounter]
    if versions:
        last = versions[-1]
        doc = last.document
        cosigners = [c for c in cosignatures if c.document.get("version") == doc["version"]]
        opinion = doc.get("opinion")
        conclusion = str(opinion.get("diagnosis", "")) if isinstance(opinion, Mapping) else ""
        signed_json = json.dumps(dict(doc), sort_keys=True, ensure_ascii=False).encode()
        resources.append(
            {
                "resourceType": "DiagnosticReport",
                "identifier": identifier,
                "status": "final" if len(versions) == 1 else "amended",
                "code": {
                    "coding": [
                        {"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}
                    ],
                    "text": "会诊意见 Consultation opinion",
                },
                "subject": subject,
                "encounter": {"reference": ref["Encounter"]},
                "basedOn": [{"reference": ref["ServiceRequest"]}],
                "issued": str(doc["signed_at"]),
                "performer": [{"display": str(doc["signer"])}],
                "conclusion": conclusion,
                "presentedForm": [
                    {
                        "contentType": "application/json",
                        "data": base64.b64encode(signed_json).decode("ascii"),
                        "title": f"signed opinion v{doc['version']}",
                    }
                ],
            }
        )
        resources.append(
            {
                "resourceType": "Provenance",
                "target": [{"reference": ref["DiagnosticReport"]}],
                "recorded": str(doc["signed_at"]),
                "agent": [
                    {"who": {"display": str(doc["signer"])}},
                    *({"who": {"display": str(c.document["signer"])}} for c in cosigners),
                ],
                "signature": [
                    _fhir_signature(last, "1.2.840.10065.1.12.1.1", "Author's Signature"),
                    *(
                        _fhir_signature(c, "1.2.840.10065.1.12.1.2", "Coauthor's Signature")
                        for c in cosigners
                    ),
                ],
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": _fhir_time(record.consult.signed_at or record.consult.created_at),
        "entry": [{"fullUrl": ref[res["resourceType"]], "resource": res} for res in resources],
    }
