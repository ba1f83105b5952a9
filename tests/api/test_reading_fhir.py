"""``GET /readings/{id}/report.fhir`` over real uvicorn on 127.0.0.1 and the real store:
the signed report as a FHIR R4 Bundle that fhir.resources parses, with the signed
statements, signer, centre and the measurements' Observations (LOINC, UCUM); amended
after an amendment; 409 ``not_signed`` before signing, 404 for another county."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from api.app import create_app, openapi_gaps
from api.auth import account_api
from api.edge import Edge, EdgeConfig
from api.reading_fhir import ReadingFhirController
from api.readings import reading_api
from consults.signatures import Signature, verify
from tests.api.test_consults import error_of
from tests.api.test_readings import RECORD, Api, RecordSignals
from tests.consults.test_reading_service_world import make_reading_world
from tests.pg import Database, database

__all__ = ["database"]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


@pytest.fixture
async def api(database: Database) -> AsyncIterator[Api]:
    """The account and reading APIs with the FHIR export, on a free loopback port."""
    rw = make_reading_world(database)
    accounts_wiring = account_api(rw.world.accounts, rw.world.directory)
    readings_wiring = reading_api(rw.service, RecordSignals())
    app = create_app(
        route_handlers=[
            *accounts_wiring.route_handlers,
            *readings_wiring.route_handlers,
            ReadingFhirController,
        ],
        dependencies={**accounts_wiring.dependencies, **readings_wiring.dependencies},
        middleware=[*accounts_wiring.middleware, *readings_wiring.middleware],
    )
    edge = Edge(app, EdgeConfig(port=0), ws_max_size_bytes=1 << 20)
    await edge.start()
    try:
        yield Api(edge.url, rw)
    finally:
        await edge.close()
        rw.world.stores.close()


def _resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


async def _sign(api: Api, reader: httpx.AsyncClient, url: str, report: dict[str, Any]) -> None:
    saved = await reader.put(f"{url}/report", json=report)
    assert saved.status_code == 200, saved.text
    signed = await reader.post(f"{url}/sign", json={"totp": api.fresh_totp("liu.reader")})
    assert signed.status_code == 200, signed.text


async def test_the_signed_report_as_fhir(api: Api) -> None:
    """The clinic's doctor reads the signed report as FHIR: a Bundle fhir.resources
    parses; the DiagnosticReport final, EKG study, cardiology, subject, times, the
    reader and centre as performers, the coded statements and critical finding; the
    Observations of HR, PR, QRS, QT, QTc and QRS axis with LOINC codes and UCUM units;
    the signed JSON verifies with the Provenance's signature; two exports are equal;
    after an amendment the report is ``amended`` and says what it corrects."""
    if not RECORD.with_suffix(".hea").exists():
        pytest.skip(f"PTB-XL sample not found at {RECORD}")
    rw = api.rw
    made = rw.stream_task("f1", critical=("STEMI",))
    reader = await api.client("liu.reader")
    doctor = await api.client("li.doctor")
    url = f"/api/v1/readings/{made.task.id}"
    await reader.post(f"{url}/claim")
    await _sign(api, reader, url, {"statements": ["SR", "STE_ANT"], "text": "急性前壁心梗"})

    answer = await doctor.get(f"{url}/report.fhir")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    assert answer.headers["cache-control"] == "no-store"
    Bundle.model_validate_json(answer.content)
    bundle = answer.json()
    assert bundle["entry"][0]["resource"]["resourceType"] == "DiagnosticReport"
    [report] = _resources(bundle, "DiagnosticReport")
    assert report["status"] == "final"
    assert {"system": LOINC, "code": "11524-6", "display": "EKG study"} in report["code"]["coding"]
    categories = {c["code"] for cat in report["category"] for c in cat["coding"]}
    assert {"EC", "LP29708-2"} <= categories
    [patient] = _resources(bundle, "Patient")
    assert patient["identifier"][0]["value"] == "patient-f1"
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"]}
    assert report["subject"]["reference"] == urls["Patient"]
    assert report["effectiveDateTime"].startswith(made.task.received_at.strftime("%Y-%m-%dT%H"))
    assert report["issued"]
    performers = [p["identifier"]["value"] for p in report["performer"]]
    assert performers == ["liu.reader", made.task.centre]
    assert {"value": made.task.id, "system": "urn:teleconsult:reading"} in report["identifier"]
    codes = [c["code"] for concept in report["conclusionCode"] for c in concept["coding"]]
    assert codes == ["SR", "STE_ANT", "STEMI"]
    assert "急性前壁心梗" in report["conclusion"]

    observations = {o["code"]["coding"][0]["code"]: o for o in _resources(bundle, "Observation")}
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    assert {by_url[r["reference"]]["resourceType"] for r in report["result"]} == {"Observation"}
    # HR, PR, QRS, QT, QTc (each formula), QRS axis: LOINC, with UCUM units.
    units = {"8867-4": "/min", "8625-6": "ms", "8633-0": "ms", "8634-8": "ms",
             "8636-3": "ms", "8632-2": "deg"}  # fmt: skip
    for code, unit in units.items():
        found = observations[code]
        assert found["status"] == "final"
        assert found["subject"] == report["subject"]
        quantity = found.get("valueQuantity")
        if quantity is not None:
            assert (quantity["system"], quantity["code"]) == (UCUM, unit)
        else:
            assert found["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    assert 30 < observations["8867-4"]["valueQuantity"]["value"] < 200

    [provenance] = _resources(bundle, "Provenance")
    [signature] = provenance["signature"]
    signed = json.loads(base64.b64decode(report["presentedForm"][0]["data"]))
    fingerprint = signature["sigFormat"].split("fingerprint=")[1]
    versions = (await doctor.get(f"{url}/report")).json()["versions"]
    assert signed == versions[0]["document"]
    assert fingerprint == versions[0]["signature"]["key_fingerprint"].replace(" ", "")
    verify(
        signed,
        Signature(**versions[0]["signature"]),
        base64.b64decode(versions[0]["public_key"]),
    )
    assert signature["data"] == versions[0]["signature"]["value"]
    again = await doctor.get(f"{url}/report.fhir")
    assert again.content == answer.content
    exported = [o for a, o in rw.actions(f"reading:{made.task.id}") if a == "reading.exported"]
    assert len(exported) == 2

    amended = await reader.post(f"{url}/amend")
    assert amended.status_code == 200, amended.text
    await _sign(api, reader, url, {"statements": ["SR", "STE_ANT", "PVC"], "text": "偶发室早"})
    second = (await doctor.get(f"{url}/report.fhir")).json()
    Bundle.model_validate(second)
    [report2] = _resources(second, "DiagnosticReport")
    assert report2["status"] == "amended"
    assert report2["extension"][0]["valueString"]
    assert "PVC" in [c["code"] for concept in report2["conclusionCode"] for c in concept["coding"]]
    for client in (reader, doctor):
        await client.aclose()


async def test_unsigned_and_foreign_reports_are_refused(api: Api) -> None:
    """Before signing: 409 ``not_signed`` (nothing exported, no audit row of an
    export); another county's reader: 404 ``not_found``, as if it did not exist."""
    rw = api.rw
    made = rw.stream_task("f2")
    doctor = await api.client("li.doctor")
    far = await api.client("far.reader")
    url = f"/api/v1/readings/{made.task.id}/report.fhir"
    refused = await doctor.get(url)
    assert error_of(refused) == (409, "not_signed")
    assert made.task.id in refused.json()["error"]["reason"]
    assert error_of(await far.get(url)) == (404, "not_found")
    assert error_of(await far.get("/api/v1/readings/nope/report.fhir")) == (404, "not_found")
    assert [a for a, _ in rw.actions(f"reading:{made.task.id}") if a == "reading.exported"] == []
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        assert error_of(await anonymous.get(url))[0] == 401
        document = (await anonymous.get("/api/v1/openapi.json")).json()
    assert "/api/v1/readings/{reading_id}/report.fhir" in document["paths"]
    assert [g for g in openapi_gaps(document) if "report.fhir" in g] == []
    for client in (doctor, far):
        await client.aclose()
