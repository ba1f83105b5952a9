"""The reading API over real uvicorn on 127.0.0.1 and the real store (SQLite and
PostgreSQL), composed as the lead will wire it (account API + reading API): the issue's
fixed contract step by step (worklist, claim, report, sign, criticals, acknowledge),
refusals with their codes and nothing changed, and a complete OpenAPI document."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from litestar.types import ControllerRouterHandler

from api.app import create_app, openapi_gaps
from api.auth import account_api
from api.edge import Edge, EdgeConfig
from api.readings import EcgSignals, WholeRecordSignals, reading_api
from api.session import CSRF_COOKIE
from consults.reading_repositories import ReadingRecord
from consults.signatures import Signature, verify
from ecg.dicom import read_dicom
from ecg.record import Record, read_record
from tests.api.test_consults import error_of
from tests.conftest import ecg_data_dir
from tests.consults.test_reading_service_world import ReadingWorld, make_reading_world
from tests.consults.test_service_world import PASSWORD
from tests.pg import Database, database

__all__ = ["database"]


@dataclass
class Api:
    """The running app and its world."""

    url: str
    rw: ReadingWorld

    async def client(self, username: str) -> httpx.AsyncClient:
        """A client logged in as ``username`` (cookie session, CSRF header set)."""
        world = self.rw.world
        client = httpx.AsyncClient(base_url=self.url, timeout=30)
        login: dict[str, Any] = {"username": username, "password": PASSWORD}
        if username in world.totp_secrets:
            login["totp"] = world.totp(username)
        answer = await client.post("/api/v1/auth/login", json=login)
        assert answer.status_code == 200, answer.text
        client.headers["x-csrf-token"] = client.cookies[CSRF_COOKIE]
        return client

    def fresh_totp(self, username: str) -> str:
        """A code of the next 30 s step (each code counts once)."""
        self.rw.world.clock.advance(30)
        return self.rw.world.totp(username)


RECORD = ecg_data_dir() / "ptbxl-sample" / "HR06000"


class RecordSignals(WholeRecordSignals):
    """Every task's ECG is one PTB-XL 12-lead record read in place (the server's source
    is the stream store); None where the databases are absent."""

    def signal_of(self, record: ReadingRecord) -> Record | None:
        if not RECORD.with_suffix(".hea").exists():
            return None
        return read_record(RECORD)


@contextlib.asynccontextmanager
async def serving(
    database: Database, signals: EcgSignals, *handlers: ControllerRouterHandler
) -> AsyncIterator[Api]:
    """The account and reading APIs (and ``handlers``) over ``signals``, on a free
    loopback port over the world's store."""
    rw = make_reading_world(database)
    accounts_wiring = account_api(rw.world.accounts, rw.world.directory)
    readings_wiring = reading_api(rw.service, signals)
    app = create_app(
        route_handlers=[
            *accounts_wiring.route_handlers,
            *readings_wiring.route_handlers,
            *handlers,
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


@pytest.fixture
async def api(database: Database) -> AsyncIterator[Api]:
    """The account and reading APIs on a free loopback port over the world's store."""
    async with serving(database, RecordSignals()) as served:
        yield served


async def test_the_contract_from_stream_to_signed_report(api: Api) -> None:
    """The critical stream leads ``GET /readings?state=new``; the clinic's doctor finds
    the critical value in the register and acknowledges it by read-back; the reader
    claims (a second reader is refused naming the claimant), writes the report, signs
    with the second factor; the clinic reads the signed version, which verifies; a
    signed report cannot be edited (409 naming state and event)."""
    rw = api.rw
    plain = rw.stream_task("plain", ago_s=3600)
    critical = rw.stream_task("crit", critical=("PAUSE",))
    doctor = await api.client("li.doctor")
    reader = await api.client("liu.reader")
    other = await api.client("ma.reader")
    listed = await reader.get("/api/v1/readings", params={"state": "new"})
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [i["id"] for i in items] == [critical.task.id, plain.task.id]
    top = items[0]
    assert top["stream"] == "crit"
    assert top["record"] is None
    assert top["clinic"] == "village-1"
    assert top["critical"] == ["PAUSE"]
    assert top["state"] == "new"
    assert listed.json()["total"] == 2

    register = await doctor.get("/api/v1/criticals")
    [value] = register.json()["items"]
    assert value["code"] == "PAUSE"
    assert value["state"] == "notified"
    assert "li.doctor" in value["notified"]
    ack_url = f"/api/v1/criticals/{value['id']}/acknowledge"
    assert error_of(await doctor.post(ack_url, json={"read_back": " "})) == (400, "invalid_input")
    acked = await doctor.post(ack_url, json={"read_back": "长间歇 3 秒，李医生已知悉"})
    assert acked.status_code == 200, acked.text
    assert acked.json()["state"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == "li.doctor"
    assert acked.json()["acknowledged_at"] is not None
    assert error_of(await doctor.post(ack_url, json={"read_back": "x"})) == (
        409,
        "transition_not_allowed",
    )

    url = f"/api/v1/readings/{critical.task.id}"
    claimed = await reader.post(f"{url}/claim", json={})
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["state"] == "claimed"
    assert claimed.json()["claimant"] == "liu.reader"
    refused = await other.post(f"{url}/claim")
    assert error_of(refused) == (403, "claimed_by_another")
    assert "liu.reader" in refused.json()["error"]["reason"]
    report = {"statements": ["SR", "PVC"], "text": "窦性心律，长间歇，室性早搏"}
    saved = await reader.put(f"{url}/report", json=report)
    assert saved.status_code == 200, saved.text
    assert saved.json()["statements"] == ["SR", "PVC"]
    assert error_of(await other.put(f"{url}/report", json=report)) == (403, "claimed_by_another")
    assert error_of(await reader.post(f"{url}/sign", json={})) == (401, "totp_required")
    assert (await reader.get(url)).json()["state"] == "draft"
    signed = await reader.post(f"{url}/sign", json={"totp": api.fresh_totp("liu.reader")})
    assert signed.status_code == 200, signed.text
    assert signed.json()["state"] == "signed"
    assert signed.json()["version"] == 1

    seen = await doctor.get(f"{url}/report")
    assert seen.status_code == 200
    assert seen.json()["draft"] is None
    [version] = seen.json()["versions"]
    assert version["document"]["report"] == report
    assert version["signer"] == "liu.reader"
    verify(
        version["document"],
        Signature(**version["signature"]),
        base64.b64decode(version["public_key"]),
    )
    edit = await reader.put(f"{url}/report", json=report)
    assert error_of(edit) == (409, "transition_not_allowed")
    assert "edit" in edit.json()["error"]["reason"]
    assert "signed" in edit.json()["error"]["reason"]
    got = await doctor.get(url)
    assert got.json()["criticals"][0]["read_back"] == "长间歇 3 秒，李医生已知悉"
    assert got.json()["allowed"] == []
    for client in (doctor, reader, other):
        await client.aclose()


async def test_amend_return_and_refusals_over_http(api: Api) -> None:
    """An amendment is version 2 pointing to version 1; return needs a reason; a step
    the table lacks is 409 naming state and event; an unknown event is 404; another
    county is 404; a reader marks a critical finding (201)."""
    rw = api.rw
    one = rw.stream_task("one")
    two = rw.stream_task("two")
    reader = await api.client("liu.reader")
    far = await api.client("far.reader")
    url = f"/api/v1/readings/{one.task.id}"
    await reader.post(f"{url}/claim")
    await reader.put(f"{url}/report", json={"statements": ["SR"], "text": "正常心电图"})
    assert (await reader.post(f"{url}/sign", json={"totp": api.fresh_totp("liu.reader")})).json()[
        "state"
    ] == "signed"
    amended = await reader.post(f"{url}/amend")
    assert amended.json()["state"] == "amended", amended.text
    await reader.put(f"{url}/report", json={"statements": ["SR", "PVC"], "text": "偶发室早"})
    again = await reader.post(f"{url}/sign", json={"totp": api.fresh_totp("liu.reader")})
    assert again.json()["version"] == 2, again.text
    first, second = (await reader.get(f"{url}/report")).json()["versions"]
    assert second["corrects"] is not None
    assert first["corrects"] is None

    url2 = f"/api/v1/readings/{two.task.id}"
    assert error_of(await reader.post(f"{url2}/return", json={})) == (400, "invalid_input")
    wrong = await reader.post(f"{url2}/release")
    assert error_of(wrong) == (409, "transition_not_allowed")
    assert "release" in wrong.json()["error"]["reason"]
    assert "new" in wrong.json()["error"]["reason"]
    assert error_of(await reader.post(f"{url2}/approve")) == (404, "unknown_event")
    assert error_of(await reader.post(f"{url2}/edit")) == (404, "unknown_event")
    assert error_of(await reader.post(f"{url2}/claim", json={"bogus": 1}))[0] == 400
    doctor = await api.client("li.doctor")
    assert error_of(await doctor.post(f"{url2}/claim")) == (403, "forbidden")
    await doctor.aclose()
    assert error_of(await far.get(url2)) == (404, "not_found")
    assert error_of(await far.post(f"{url2}/claim")) == (404, "not_found")
    assert (await far.get("/api/v1/readings")).json()["total"] == 0
    marked = await reader.post(f"{url2}/criticals", json={"code": "VT"})
    assert marked.status_code == 201, marked.text
    assert marked.json()["raised_by"] == "liu.reader"
    assert error_of(await reader.post(f"{url2}/criticals", json={"code": "VT"})) == (
        409,
        "conflict",
    )
    back = await reader.post(f"{url2}/return", json={"reason": "导联脱落，请重新采集"})
    assert back.json()["state"] == "returned", back.text
    assert back.json()["reason"] == "导联脱落，请重新采集"
    by_state = await reader.get("/api/v1/readings", params={"state": "returned"})
    assert [i["id"] for i in by_state.json()["items"]] == [two.task.id]
    paged = await reader.get("/api/v1/readings", params={"limit": 1, "page": 2})
    assert paged.json()["offset"] == 1
    assert len(paged.json()["items"]) == 1
    assert error_of(await reader.get("/api/v1/readings", params={"limit": 0})) == (
        400,
        "invalid_body",
    )
    assert error_of(await reader.get("/api/v1/readings", params={"state": "x"})) == (
        400,
        "invalid_body",
    )
    for client in (reader, far):
        await client.aclose()


async def test_the_openapi_document_says_everything(api: Api) -> None:
    """Every reading and critical endpoint documents its schemas, errors and an example."""
    async with httpx.AsyncClient(base_url=api.url) as client:
        document = (await client.get("/api/v1/openapi.json")).json()
    paths = set(document["paths"])
    assert {
        "/api/v1/readings",
        "/api/v1/readings/{reading_id}",
        "/api/v1/readings/{reading_id}/{event}",
        "/api/v1/readings/{reading_id}/report",
        "/api/v1/readings/{reading_id}/criticals",
        "/api/v1/readings/{reading_id}/median",
        "/api/v1/readings/{reading_id}/fiducials",
        "/api/v1/readings/{reading_id}/beats/{beat}",
        "/api/v1/criticals",
        "/api/v1/criticals/{critical_id}",
        "/api/v1/criticals/{critical_id}/acknowledge",
    } <= paths
    assert [g for g in openapi_gaps(document) if "/readings" in g or "/criticals" in g] == []


async def test_the_signed_report_as_pdf_and_dicom(api: Api) -> None:
    """Before signing there is nothing to export (404); after, the PDF's text layer holds
    the signed statements, text and signer, and the DICOM file reads back with the
    record's leads, rate and samples (to 1 µV) and the signed statements."""
    if not RECORD.with_suffix(".hea").exists():
        pytest.skip(f"PTB-XL sample not found at {RECORD}")
    rw = api.rw
    made = rw.stream_task("s1", critical=("STEMI",))
    reader = await api.client("liu.reader")
    doctor = await api.client("li.doctor")
    url = f"/api/v1/readings/{made.task.id}"
    assert error_of(await doctor.get(f"{url}/report.pdf")) == (404, "not_found")
    await reader.post(f"{url}/claim")
    await reader.put(f"{url}/report", json={"statements": ["SR", "STE_ANT"], "text": "请立即转诊"})
    signed = await reader.post(f"{url}/sign", json={"totp": api.fresh_totp("liu.reader")})
    assert signed.status_code == 200, signed.text
    pdf = await doctor.get(f"{url}/report.pdf")
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    text = (await anyio.run_process(["pdftotext", "-", "-"], input=pdf.content)).stdout.decode()
    assert "窦性心律" in text
    assert "请立即转诊" in text
    assert "liu.reader" in text
    dcm = await doctor.get(f"{url}/report.dcm")
    assert dcm.status_code == 200
    assert dcm.headers["content-type"] == "application/dicom"
    back = read_dicom(dcm.content)
    original = read_record(RECORD)
    assert back.lead_names == original.lead_names
    assert back.fs_hz == original.fs_hz
    assert np.nanmax(np.abs(back.signal_mv - original.signal_mv)) <= 0.001
    assert {"SR", "STE_ANT"} <= {s.code for s in back.info.statements}
    assert [s.code for s in back.info.critical] == ["STEMI"]
    exported = [a for a, _ in rw.actions(f"reading:{made.task.id}") if a == "reading.exported"]
    assert len(exported) == 2
    for client in (reader, doctor):
        await client.aclose()


def _details(rw: ReadingWorld, target: str, action: str) -> list[dict[str, Any]]:
    """The detail objects of the audit rows ``action`` on ``target``, oldest first."""
    from store.audit import AuditQuery, query

    with rw.world.stores.engine.connect() as conn:
        rows = query(conn, AuditQuery(target=target), limit=100_000)
    return [row.detail_object() for row in rows if row.action == action]


async def test_median_beat_and_corrected_fiducials(api: Api) -> None:
    """The median beat of every lead with the engine's fiducials; the claimant moves the
    QRS offset 20 ms later: QRS 20 ms longer at once, kept (the median, the ECG window
    and the signed PDF's figures follow), audited before -> after; refused: outside the
    beat, out of order, another reader's claim, an unclaimed or signed task, each with
    its code, nothing changed, the attempt audited."""
    if not RECORD.with_suffix(".hea").exists():
        pytest.skip(f"PTB-XL sample not found at {RECORD}")
    rw = api.rw
    made = rw.stream_task("med")
    reader = await api.client("liu.reader")
    other = await api.client("ma.reader")
    url = f"/api/v1/readings/{made.task.id}"
    median = await reader.get(f"{url}/median")
    assert median.status_code == 200, median.text
    got = median.json()
    assert got["fs_hz"] == 500.0
    assert [lead["lead"] for lead in got["leads"]][:2] == ["I", "II"]
    ii = next(lead for lead in got["leads"] if lead["lead"] == "II")
    assert ii["usable"]
    assert len(ii["samples_uv"]) == got["length"]
    assert 0 < got["r_index"] < got["length"]
    engine = got["fiducials"]["engine_ms"]
    assert got["fiducials"]["fiducials_ms"] == engine
    assert got["fiducials"]["corrected"] == []
    beat_ms = (got["length"] - 1) * 1000.0 / got["fs_hz"]
    assert 0 <= engine["qrs_on"] < engine["qrs_off"] < engine["t_off"] <= beat_ms
    qrs_before = got["fiducials"]["measurements"]["qrs_ms"]

    body = {"fiducials_ms": {"qrs_off": engine["qrs_off"] + 20.0}}
    refused = await reader.put(f"{url}/fiducials", json=body)
    assert error_of(refused) == (409, "transition_not_allowed")  # not claimed yet
    await reader.post(f"{url}/claim")
    assert error_of(await other.put(f"{url}/fiducials", json=body)) == (403, "claimed_by_another")
    outside = {"fiducials_ms": {"t_off": beat_ms + 50.0}}
    refused = await reader.put(f"{url}/fiducials", json=outside)
    assert error_of(refused) == (400, "fiducial_outside_beat")
    assert "outside the median beat" in refused.json()["error"]["reason"]
    backwards = {"fiducials_ms": {"qrs_off": engine["qrs_on"] - 2.0}}
    assert error_of(await reader.put(f"{url}/fiducials", json=backwards)) == (
        400,
        "fiducials_out_of_order",
    )
    unknown = {"fiducials_ms": {"r_peak": 10.0}}
    assert error_of(await reader.put(f"{url}/fiducials", json=unknown))[0] == 400
    assert (await reader.get(f"{url}/median")).json()["fiducials"]["corrected"] == []

    moved = await reader.put(f"{url}/fiducials", json=body)
    assert moved.status_code == 200, moved.text
    state = moved.json()
    assert state["corrected"] == ["qrs_off"]
    assert state["corrected_by"] == "liu.reader"
    assert state["fiducials_ms"]["qrs_off"] == pytest.approx(engine["qrs_off"] + 20.0, abs=2.0)
    assert state["engine_ms"] == engine
    assert state["measurements"]["qrs_ms"] == pytest.approx(qrs_before + 20.0, abs=2.0)
    assert (await reader.get(url)).json()["state"] == "draft"
    again = (await reader.get(f"{url}/median")).json()["fiducials"]
    assert again["fiducials_ms"] == state["fiducials_ms"]
    window = (await reader.get(f"{url}/ecg")).json()
    assert window["measurements"]["qrs_ms"] == state["measurements"]["qrs_ms"]

    target = f"reading:{made.task.id}"
    audited = _details(rw, target, "reading.fiducials")
    outcomes = [d["outcome"] for d in audited]
    assert outcomes == ["denied"] * 4 + ["ok"]
    assert [d.get("code") for d in audited[:4]] == [
        "transition_not_allowed",
        "claimed_by_another",
        "fiducial_outside_beat",
        "fiducials_out_of_order",
    ]
    done = audited[-1]
    assert done["before"] == f"qrs_off={engine['qrs_off']:.0f}"
    assert done["after"] == f"qrs_off={body['fiducials_ms']['qrs_off']:.0f}"

    await reader.put(f"{url}/report", json={"statements": ["SR"], "text": "QRS 增宽"})
    signed = await reader.post(f"{url}/sign", json={"totp": api.fresh_totp("liu.reader")})
    assert signed.status_code == 200, signed.text
    assert error_of(await reader.put(f"{url}/fiducials", json=body)) == (
        409,
        "transition_not_allowed",
    )
    [version] = (await reader.get(f"{url}/report")).json()["versions"]
    figures = version["document"]["measurements"]
    assert figures["qrs_ms"] == round(state["measurements"]["qrs_ms"])
    assert figures["qtc_ms"]["bazett"] == round(state["measurements"]["qtc_ms"])
    signed_off = version["document"]["fiducials_ms"]["qrs_off"]
    assert float(signed_off) == pytest.approx(body["fiducials_ms"]["qrs_off"])
    pdf = await reader.get(f"{url}/report.pdf")
    assert pdf.status_code == 200
    text = (await anyio.run_process(["pdftotext", "-", "-"], input=pdf.content)).stdout.decode()
    assert f"{state['measurements']['qrs_ms']:.0f}" in text
    for client in (reader, other):
        await client.aclose()


async def test_corrected_fiducials_remake_the_statements_resting_on_them(api: Api) -> None:
    """The claimant lengthens PR past 200 ms: ``1AVB`` is proposed with the corrected PR as
    its evidence (in the answer, the median and the ECG window); PR put back and QT
    lengthened: ``1AVB`` goes, ``LNGQT`` comes with the corrected QTc; the QRS offset
    40 ms later: ``IVCD`` from the corrected QRS duration. The rhythm stays the engine's."""
    if not RECORD.with_suffix(".hea").exists():
        pytest.skip(f"PTB-XL sample not found at {RECORD}")
    made = api.rw.stream_task("restated")
    reader = await api.client("liu.reader")
    url = f"/api/v1/readings/{made.task.id}"
    got = (await reader.get(f"{url}/median")).json()["fiducials"]
    engine = got["engine_ms"]
    engine_codes = [s["code"] for s in got["statements"]]
    assert engine_codes == [
        s["code"] for s in (await reader.get(f"{url}/ecg")).json()["statements"]
    ]
    assert "1AVB" not in engine_codes
    assert "LNGQT" not in engine_codes
    await reader.post(f"{url}/claim")

    def by_code(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {s["code"]: s["evidence"] for s in state["statements"]}

    longer_pr = {"fiducials_ms": {"p_on": engine["p_on"] - 80.0}}
    state = (await reader.put(f"{url}/fiducials", json=longer_pr)).json()
    found = by_code(state)
    assert state["statements"][0]["code"] == engine_codes[0]  # the rhythm
    assert found["1AVB"] == {"pr_ms": state["measurements"]["pr_ms"], "pr_max_ms": 200.0}
    assert state["measurements"]["pr_ms"] > 200.0
    window = (await reader.get(f"{url}/ecg")).json()
    assert window["statements"] == state["statements"]
    assert (await reader.get(f"{url}/median")).json()["fiducials"]["statements"] == state[
        "statements"
    ]

    longer_qt = {"fiducials_ms": {"p_on": engine["p_on"], "t_off": engine["t_off"] + 80.0}}
    state = (await reader.put(f"{url}/fiducials", json=longer_qt)).json()
    found = by_code(state)
    assert "1AVB" not in found
    assert found["LNGQT"]["qtc_bazett_ms"] == pytest.approx(state["measurements"]["qtc_ms"])
    assert found["LNGQT"]["qtc_bazett_ms"] >= found["LNGQT"]["qtc_min_ms"]

    wider = {"fiducials_ms": {"t_off": engine["t_off"], "qrs_off": engine["qrs_off"] + 40.0}}
    state = (await reader.put(f"{url}/fiducials", json=wider)).json()
    found = by_code(state)
    assert "LNGQT" not in found
    assert found["IVCD"]["qrs_ms"] == state["measurements"]["qrs_ms"] >= 110.0
    await reader.aclose()


async def test_the_patient_s_previous_ecgs(api: Api) -> None:
    """``GET /readings/{id}/previous``: the same patient's tasks received before this one,
    newest first (not another patient's, not a later one); ``state=signed`` narrows to
    the signed ones; a reader of another county gets 404; the read is audited."""
    rw = api.rw
    now = rw.world.clock.now

    def task(stream: str, patient: str, ago_s: float) -> str:
        made = rw.service.task_for_stream(
            stream, "village-1", patient, now - dt.timedelta(seconds=ago_s), (), ("SR",)
        )
        return made.task.id

    oldest = task("p-1", "patient-p", 3 * 86400)
    older = task("p-2", "patient-p", 86400)
    task("q-1", "patient-q", 2 * 86400)
    current = task("p-3", "patient-p", 60)
    later = task("p-4", "patient-p", 0)
    reader = await api.client("liu.reader")
    url = f"/api/v1/readings/{current}/previous"
    answer = await reader.get(url)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert [item["id"] for item in got["items"]] == [older, oldest]
    assert got["total"] == 2
    assert {item["patient"] for item in got["items"]} == {"patient-p"}
    assert later not in [item["id"] for item in got["items"]]

    await reader.post(f"/api/v1/readings/{older}/claim")
    await reader.put(f"/api/v1/readings/{older}/report", json={"statements": ["SR"], "text": ""})
    signed = await reader.post(
        f"/api/v1/readings/{older}/sign", json={"totp": api.fresh_totp("liu.reader")}
    )
    assert signed.status_code == 200, signed.text
    only_signed = (await reader.get(url, params={"state": "signed"})).json()
    assert [item["id"] for item in only_signed["items"]] == [older]
    assert only_signed["items"][0]["state"] == "signed"
    first = (await reader.get(f"/api/v1/readings/{oldest}/previous")).json()
    assert (first["items"], first["total"]) == ([], 0)
    far = await api.client("far.reader")
    assert error_of(await far.get(url)) == (404, "not_found")
    assert [a for a, _ in rw.actions(f"reading:{current}")].count("reading.previous") == 2
    for client in (reader, far):
        await client.aclose()


async def test_beat_labels(api: Api) -> None:
    """The claimant labels beats: refused (not claimed, another's claim, an unknown
    label, a beat out of range, no label) with their codes, nothing changed, each
    attempt audited; a beat labelled V then P, another Q: kept, in the ECG window with
    the counts, audited who changed what (before -> after); signed: the document carries
    the labels and counts, the PDF prints the counts, a signed task refuses (409)."""
    if not RECORD.with_suffix(".hea").exists():
        pytest.skip(f"PTB-XL sample not found at {RECORD}")
    rw = api.rw
    made = rw.stream_task("beats")
    reader = await api.client("liu.reader")
    other = await api.client("ma.reader")
    url = f"/api/v1/readings/{made.task.id}"
    window = (await reader.get(f"{url}/ecg")).json()
    n = len(window["beats"])
    assert n >= 8
    assert window["beat_labels"] == ["N"] * n
    assert window["beat_counts"] == {"N": n}

    v = {"label": "V"}
    assert error_of(await reader.put(f"{url}/beats/1", json=v)) == (409, "transition_not_allowed")
    await reader.post(f"{url}/claim")
    assert error_of(await other.put(f"{url}/beats/1", json=v)) == (403, "claimed_by_another")
    unknown = await reader.put(f"{url}/beats/1", json={"label": "X"})
    assert error_of(unknown) == (400, "unknown_beat_label")
    assert "N, S, V, P, Q" in unknown.json()["error"]["reason"]
    outside = await reader.put(f"{url}/beats/{n}", json=v)
    assert error_of(outside) == (400, "beat_out_of_range")
    assert error_of(await reader.put(f"{url}/beats/-1", json=v)) == (400, "beat_out_of_range")
    assert error_of(await reader.put(f"{url}/beats/1", json={}))[0] == 400
    assert (await reader.get(f"{url}/ecg")).json()["beat_labels"] == ["N"] * n
    assert (await reader.get(url)).json()["state"] == "claimed"

    done = await reader.put(f"{url}/beats/1", json=v)
    assert done.status_code == 200, done.text
    got = done.json()
    assert got["beats"] == window["beats"]
    assert got["labels"][:3] == ["N", "V", "N"]
    assert got["counts"] == {"N": n - 1, "V": 1}
    assert (got["labelled"], got["labelled_by"]) == ([1], "liu.reader")
    await reader.put(f"{url}/beats/1", json={"label": "P"})
    last = (await reader.put(f"{url}/beats/{n - 1}", json={"label": "Q"})).json()
    assert last["counts"] == {"N": n - 2, "P": 1, "Q": 1}
    assert last["labelled"] == [1, n - 1]
    window = (await reader.get(f"{url}/ecg")).json()
    assert window["beat_labels"] == last["labels"]
    assert window["beat_counts"] == last["counts"]
    assert (await reader.get(url)).json()["state"] == "draft"

    audited = _details(rw, f"reading:{made.task.id}", "reading.beat_label")
    assert [(d["outcome"], d.get("code")) for d in audited] == [
        ("denied", "transition_not_allowed"),
        ("denied", "claimed_by_another"),
        ("denied", "unknown_beat_label"),
        ("denied", "beat_out_of_range"),
        ("denied", "beat_out_of_range"),
        ("ok", None),
        ("ok", None),
        ("ok", None),
    ]
    first, second = audited[5], audited[6]
    assert (first["beat"], first["before"], first["after"]) == ("1", "N", "V")
    assert first["sample"] == str(window["beats"][1])
    assert (second["before"], second["after"]) == ("V", "P")

    await reader.put(f"{url}/report", json={"statements": ["SR"], "text": "起搏心搏"})
    signed = await reader.post(f"{url}/sign", json={"totp": api.fresh_totp("liu.reader")})
    assert signed.status_code == 200, signed.text
    [version] = (await reader.get(f"{url}/report")).json()["versions"]
    assert version["document"]["beat_labels"] == {"1": "P", str(n - 1): "Q"}
    assert version["document"]["beat_counts"] == {"N": n - 2, "P": 1, "Q": 1}
    assert error_of(await reader.put(f"{url}/beats/2", json=v)) == (409, "transition_not_allowed")
    pdf = await reader.get(f"{url}/report.pdf")
    assert pdf.status_code == 200
    text = (await anyio.run_process(["pdftotext", "-", "-"], input=pdf.content)).stdout.decode()
    assert f"N {n - 2}, P 1, Q 1" in text
    for client in (reader, other):
        await client.aclose()
