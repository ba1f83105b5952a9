"""The consult API over real uvicorn on 127.0.0.1 and the real store (SQLite and
PostgreSQL), composed as the lead will wire it (account API + consult API): the fixed
contract of the issue step by step, refusals with their codes, attachments, worklists,
the signed PDF that ``teleconsult report verify`` accepts (and an altered one it
refuses), and the FHIR R4 Bundle validated by fhir.resources."""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from api.app import create_app, openapi_gaps
from api.auth import account_api
from api.consult_pdf import PAYLOAD_MARKER, read_payload, render_opinion_pdf, versions_of
from api.consults import consult_api
from api.edge import Edge, EdgeConfig
from api.reading_stats import reading_stats_api
from api.session import CSRF_COOKIE
from consults.lifecycle import ConsultState
from consults.opinions import SignedVersion
from consults.requests import MediaType
from consults.signatures import KeyPair, sign
from sessions.store import ChatLine
from store.reading_stats import SqlReadingStatistics
from store.streams import StreamRecord
from teleconsult.opinion_report_cmd import register, run_verify
from tests.consults.test_service import reach
from tests.consults.test_service_world import PASSWORD, World, make_world
from tests.pg import Database, database

__all__ = ["database"]

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@dataclass
class Api:
    """The running app and its world."""

    url: str
    world: World

    async def client(self, username: str) -> httpx.AsyncClient:
        """A client logged in as ``username`` (cookie session, CSRF header set)."""
        client = httpx.AsyncClient(base_url=self.url, timeout=30)
        login: dict[str, Any] = {"username": username, "password": PASSWORD}
        if username in self.world.totp_secrets:
            login["totp"] = self.world.totp(username)
        answer = await client.post("/api/v1/auth/login", json=login)
        assert answer.status_code == 200, answer.text
        client.headers["x-csrf-token"] = client.cookies[CSRF_COOKIE]
        return client


@pytest.fixture
async def api(database: Database) -> AsyncIterator[Api]:
    """The account and consult APIs on a free loopback port over the world's store."""
    world = make_world(database)
    accounts_wiring = account_api(world.accounts, world.directory)
    consults_wiring = consult_api(world.service, chat=world.stores.signaling)
    # The dashboard shows the ECG centre's statistics beside the consults'.
    stats_wiring = reading_stats_api(SqlReadingStatistics(world.stores.engine))
    app = create_app(
        route_handlers=[
            *accounts_wiring.route_handlers,
            *consults_wiring.route_handlers,
            *stats_wiring.route_handlers,
        ],
        dependencies={
            **accounts_wiring.dependencies,
            **consults_wiring.dependencies,
            **stats_wiring.dependencies,
        },
        middleware=[*accounts_wiring.middleware, *consults_wiring.middleware],
        web_dir=WEB_DIR,
    )
    edge = Edge(app, EdgeConfig(port=0), ws_max_size_bytes=1 << 20)
    await edge.start()
    try:
        yield Api(edge.url, world)
    finally:
        await edge.close()
        world.stores.close()


def error_of(response: httpx.Response) -> tuple[int, str]:
    """The status and stable code of an error answer, checking its shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "reason"}
    assert body["error"]["reason"]
    return response.status_code, body["error"]["code"]


REQUEST: dict[str, Any] = {
    "patient": {
        "name": "张三",
        "sex": "male",
        "birth_date": "1960-05-01",
        "record_number": "MZ-2026-0001",
    },
    "reason": "胸痛两小时",
    "purpose": "明确诊断，指导治疗",
    "summary": "男，66岁，胸骨后压榨样疼痛两小时，心电图示 V1-V4 ST 段抬高。",
    "specialty": "心内科",
    "priority": "urgent",
    "mode": "realtime",
    "consent": {
        "kind": "written",
        "recorded_by": "li.doctor",
        "time": (datetime.now(UTC) - timedelta(minutes=10)).isoformat().replace("+00:00", "Z"),
    },
}
OPINION = {
    "findings": "窦性心律，V1-V4 ST 段抬高 0.3 mV。",
    "diagnosis": "急性前壁 ST 段抬高型心肌梗死",
    "recommendations": "立即转诊至县医院胸痛中心行急诊 PCI。",
}


def verify(path: Path, world: World | None = None) -> int:
    """``teleconsult report verify PATH`` (with ``--check-keys`` on the world's store)."""
    args = argparse.Namespace(
        file=path,
        check_keys=world is not None,
        data_dir=world.data_dir if world else Path("var"),
        database_url=world.stores.engine.url.render_as_string(hide_password=False)
        if world
        else None,
    )
    return run_verify(args)


async def test_the_contract_from_request_to_signed_pdf(api: Api, tmp_path: Path) -> None:
    """Request (201, submitted), assign, accept, schedule, start, draft, sign with TOTP,
    close, by the parties of the issue's contract; the PDF verifies, the FHIR Bundle
    validates."""
    world = api.world
    doctor = await api.client("li.doctor")
    coordinator = await api.client("zhao.coord")
    expert = await api.client("wang.expert")
    made = await doctor.post("/api/v1/consults", json=REQUEST)
    assert made.status_code == 201, made.text
    consult_id = made.json()["id"]
    assert made.json()["state"] == "submitted"
    got = await doctor.get(f"/api/v1/consults/{consult_id}")
    assert got.json()["state"] == "submitted"
    assert got.json()["allowed"] == ["cancel"]
    url = f"/api/v1/consults/{consult_id}"
    steps: list[tuple[httpx.AsyncClient, str, dict[str, Any], str]] = [
        (coordinator, "assign", {"experts": ["wang.expert", "chen.expert"]}, "assigned"),
        (expert, "accept", {}, "accepted"),
        (
            expert,
            "schedule",
            {"start": (world.clock.now + timedelta(hours=1)).isoformat()},
            "scheduled",
        ),
        (expert, "start", {}, "in_consult"),
    ]
    for client, event, body, state in steps:
        answer = await client.post(f"{url}/{event}", json=body)
        assert answer.status_code == 200, (event, answer.text)
        assert answer.json()["state"] == state
    saved = await expert.put(f"{url}/opinion", json=OPINION)
    assert saved.status_code == 200, saved.text
    world.clock.advance(30)
    signed = await expert.post(f"{url}/sign", json={"totp": world.totp("wang.expert")})
    assert signed.status_code == 200, signed.text
    assert signed.json()["state"] == "reported"
    seen = await doctor.get(f"{url}/opinion")
    assert seen.json()["draft"] is None
    [version] = seen.json()["versions"]
    assert version["document"]["opinion"]["diagnosis"] == OPINION["diagnosis"]
    pdf = await doctor.get(f"{url}/opinion.pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    path = tmp_path / "opinion.pdf"
    path.write_bytes(pdf.content)
    assert verify(path) == 0
    assert verify(path, world=world) == 0
    payload = read_payload(pdf.content)
    assert payload["versions"][0]["signature"]["value"] == version["signature"]["value"]
    fhir = await doctor.get(f"{url}/fhir")
    assert fhir.status_code == 200
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate_json(fhir.text)
    kinds = [entry.resource.__resource_type__ for entry in bundle.entry]
    assert kinds == [
        "Patient",
        "ServiceRequest",
        "Task",
        "Appointment",
        "Encounter",
        "DiagnosticReport",
        "Provenance",
    ]
    resources = {e["resource"]["resourceType"]: e["resource"] for e in fhir.json()["entry"]}
    assert resources["Task"]["status"] == "completed"
    assert resources["Encounter"]["class"]["code"] == "VR"
    assert resources["Provenance"]["signature"][0]["data"] == version["signature"]["value"]
    assert resources["DiagnosticReport"]["conclusion"] == OPINION["diagnosis"]
    closed = await doctor.post(f"{url}/close", json={})
    assert closed.json()["state"] == "closed"
    actions = [a for a, _ in world.actions(consult_id)]
    assert actions.count("consult.exported") == 2  # the PDF and the FHIR Bundle
    assert "consult.viewed" in actions
    for client in (doctor, coordinator, expert):
        await client.aclose()


async def test_an_altered_or_foreign_pdf_is_refused(api: Api, tmp_path: Path) -> None:
    """A changed byte on the page, a changed signed word, or a key not on record:
    ``report verify`` exits 1."""
    world = api.world
    consult_id = reach(world, ConsultState.REPORTED)
    doctor = await api.client("li.doctor")
    pdf = (await doctor.get(f"/api/v1/consults/{consult_id}/opinion.pdf")).content
    await doctor.aclose()
    good = tmp_path / "good.pdf"
    good.write_bytes(pdf)
    assert verify(good) == 0
    # A byte of the page content changed (outside the embedded payload).
    page = tmp_path / "page.pdf"
    at = pdf.index(b"stream") + 20
    page.write_bytes(pdf[:at] + bytes([pdf[at] ^ 0x01]) + pdf[at + 1 :])
    assert verify(page) == 1
    # The embedded signed document changed (a new diagnosis): the signature fails.
    payload = read_payload(pdf)
    payload["versions"][0]["document"]["opinion"]["diagnosis"] = "正常心电图"
    raw = base64.b64encode(
        json.dumps(payload, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()
    )
    old = pdf[pdf.index(PAYLOAD_MARKER) :].split(b"\n")[0].split(b"\r")[0]
    forged = tmp_path / "forged.pdf"
    forged.write_bytes(pdf.replace(old, PAYLOAD_MARKER + raw))
    assert verify(forged) == 1
    # Re-signed with another key: verifies alone, refused against the store.
    [original] = versions_of(read_payload(pdf))
    mallory = KeyPair.generate()
    document = dict(original.document)
    resigned = render_opinion_pdf(
        [
            SignedVersion(
                document=document, signature=sign(document, mallory), public_key=mallory.public_key
            )
        ]
    )
    other = tmp_path / "other-key.pdf"
    other.write_bytes(resigned)
    assert verify(other) == 0
    assert verify(other, world=world) == 1
    assert verify(good, world=world) == 0
    not_pdf = tmp_path / "none.pdf"
    not_pdf.write_bytes(b"%PDF-1.4\n%%EOF\n")
    assert verify(not_pdf) == 1


async def test_refusals_answer_their_codes_and_change_nothing(api: Api) -> None:
    """Out of order 409 naming state and event; wrong role 403; another county 404;
    an unknown event 404; missing reason and bad bodies 400; a wrong TOTP 401; editing
    a signed opinion 409 opinion_signed."""
    world = api.world
    doctor = await api.client("li.doctor")
    coordinator = await api.client("zhao.coord")
    expert = await api.client("wang.expert")
    outsider = await api.client("zhou.doctor")
    consult_id = (await doctor.post("/api/v1/consults", json=REQUEST)).json()["id"]
    url = f"/api/v1/consults/{consult_id}"
    answer = await expert.post(f"{url}/accept", json={})
    assert error_of(answer) == (409, "transition_not_allowed")
    assert "accept" in answer.json()["error"]["reason"]
    assert "submitted" in answer.json()["error"]["reason"]
    assert error_of(await doctor.post(f"{url}/assign", json={"experts": ["wang.expert"]})) == (
        403,
        "forbidden",
    )
    assert error_of(await outsider.get(url)) == (404, "not_found")
    assert error_of(await outsider.post(f"{url}/cancel", json={"reason": "x"})) == (
        404,
        "not_found",
    )
    assert error_of(await doctor.post(f"{url}/approve", json={})) == (404, "unknown_event")
    assert error_of(await doctor.post(f"{url}/cancel", json={})) == (400, "missing_field")
    assert error_of(await doctor.post(f"{url}/cancel", json={"why": "x"})) == (
        400,
        "invalid_body",
    )
    assert error_of(await coordinator.post(f"{url}/assign", json={"experts": ["li.doctor"]})) == (
        400,
        "invalid_input",
    )
    bad_request = {**REQUEST, "priority": "whenever"}
    assert error_of(await doctor.post("/api/v1/consults", json=bad_request))[0] == 400
    assert error_of(await coordinator.post("/api/v1/consults", json=REQUEST)) == (
        403,
        "forbidden",
    )
    assert (await doctor.get(url)).json()["state"] == "submitted"
    # To signing: a wrong code is 401 totp_required, the consult unchanged.
    await coordinator.post(f"{url}/assign", json={"experts": ["wang.expert"]})
    await expert.post(f"{url}/accept", json={})
    past = (world.clock.now - timedelta(minutes=5)).isoformat()
    assert error_of(await expert.post(f"{url}/schedule", json={"start": past})) == (
        400,
        "invalid_input",
    )
    naive = (world.clock.now + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert error_of(await expert.post(f"{url}/schedule", json={"start": naive})) == (
        400,
        "invalid_body",
    )
    start = (world.clock.now + timedelta(hours=1)).isoformat()
    await expert.post(f"{url}/schedule", json={"start": start})
    await expert.post(f"{url}/start", json={})
    assert error_of(await doctor.put(f"{url}/opinion", json=OPINION)) == (403, "forbidden")
    await expert.put(f"{url}/opinion", json=OPINION)
    world.clock.advance(30)
    assert error_of(await expert.post(f"{url}/sign", json={"totp": "000000"})) == (
        401,
        "totp_required",
    )
    assert (await doctor.get(url)).json()["state"] == "in_consult"
    assert (
        await expert.post(f"{url}/sign", json={"totp": world.totp("wang.expert")})
    ).status_code == 200
    assert error_of(await expert.put(f"{url}/opinion", json=OPINION)) == (409, "opinion_signed")
    world.clock.advance(30)
    addendum = await expert.post(
        f"{url}/opinion/addenda", json={**OPINION, "totp": world.totp("wang.expert")}
    )
    assert addendum.status_code == 201, addendum.text
    assert addendum.json()["version"] == 2
    denied = [a for a in world.actions(consult_id) if a[1] == "denied"]
    assert ("consult.accept", "denied") in denied
    assert ("consult.assign", "denied") in denied
    assert ("consult.sign", "denied") in denied
    for client in (doctor, coordinator, expert, outsider):
        await client.aclose()


async def test_attachments_over_http(api: Api) -> None:
    """Upload with the claimed type as Content-Type: 201; a lie 415; over the limit 413;
    the expert downloads the same bytes; another county's doctor 404."""
    world = api.world
    doctor = await api.client("li.doctor")
    expert = await api.client("wang.expert")
    outsider = await api.client("zhou.doctor")
    consult_id = (await doctor.post("/api/v1/consults", json=REQUEST)).json()["id"]
    url = f"/api/v1/consults/{consult_id}/attachments"
    made = await doctor.post(
        url, params={"name": "ecg.png"}, content=PNG, headers={"content-type": "image/png"}
    )
    assert made.status_code == 201, made.text
    attachment = made.json()
    lie = await doctor.post(url, content=PNG, headers={"content-type": "application/pdf"})
    assert error_of(lie) == (415, "unsupported_attachment")
    world.service.attachment_limits_bytes[MediaType.PNG] = 10
    big = await doctor.post(url, content=PNG, headers={"content-type": "image/png"})
    assert error_of(big) == (413, "attachment_too_large")
    listed = await expert.get(url)
    assert [a["id"] for a in listed.json()] == [attachment["id"]]
    down = await expert.get(f"{url}/{attachment['id']}")
    assert down.status_code == 200
    assert down.content == PNG
    assert down.headers["content-type"] == "image/png"
    assert error_of(await outsider.get(f"{url}/{attachment['id']}")) == (404, "not_found")
    for client in (doctor, expert, outsider):
        await client.aclose()


async def test_the_room_chat_is_part_of_the_consult(api: Api) -> None:
    """What was said in the consult's room comes back in order, for those who may see
    the consult; another county's doctor gets 404; the read is audited."""
    world = api.world
    doctor = await api.client("li.doctor")
    outsider = await api.client("zhou.doctor")
    consult_id = (await doctor.post("/api/v1/consults", json=REQUEST)).json()["id"]
    room = f"consult-{consult_id}"
    said = [("li.doctor", "李医生", "胸痛仍在持续"), ("wang.expert", "王主任", "请复查心电图")]
    world.stores.signaling.write(
        [
            ChatLine(
                time=f"2026-12-03T08:0{i}:00.000Z", room=room, identity=who, name=name, text=text
            )
            for i, (who, name, text) in enumerate(said)
        ]
        + [
            ChatLine(
                time="2026-12-03T08:00:00Z", room="consult-x", identity="a", name="A", text="x"
            )
        ]
    )
    answer = await doctor.get(f"/api/v1/consults/{consult_id}/chat")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["room"] == room
    assert [(line["identity"], line["name"], line["text"]) for line in body["lines"]] == said
    assert body["lines"][1]["time"] == "2026-12-03T08:01:00Z"
    assert answer.headers["cache-control"] == "no-store"
    last = await doctor.get(f"/api/v1/consults/{consult_id}/chat", params={"limit": 1})
    assert [line["text"] for line in last.json()["lines"]] == ["请复查心电图"]
    refused = await outsider.get(f"/api/v1/consults/{consult_id}/chat")
    assert error_of(refused) == (404, "not_found")
    too_many = await doctor.get(f"/api/v1/consults/{consult_id}/chat", params={"limit": 5000})
    assert too_many.status_code == 400
    readers = [r.actor for r in world.audit(consult_id) if r.action == "consult.chat_viewed"]
    assert readers == [world["li.doctor"].id] * 2
    for client in (doctor, outsider):
        await client.aclose()


async def test_worklists_over_http(api: Api) -> None:
    """The coordinator's untriaged queue with a state filter; the doctor's own; an
    expert asking for the overdue queue is 403; a bad queue name 400."""
    doctor = await api.client("li.doctor")
    coordinator = await api.client("zhao.coord")
    expert = await api.client("wang.expert")
    first = (await doctor.post("/api/v1/consults", json=REQUEST)).json()["id"]
    second = (
        await doctor.post("/api/v1/consults", json={**REQUEST, "priority": "emergency"})
    ).json()["id"]
    await coordinator.post(f"/api/v1/consults/{first}/assign", json={"experts": ["wang.expert"]})
    queue = await coordinator.get(
        "/api/v1/consults", params={"queue": "untriaged", "state": "submitted"}
    )
    assert queue.status_code == 200, queue.text
    assert [i["id"] for i in queue.json()["items"]] == [second]
    both = await coordinator.get("/api/v1/consults", params={"queue": "untriaged"})
    assert [i["id"] for i in both.json()["items"]] == [second, first]  # earliest due first
    mine = await doctor.get("/api/v1/consults", params={"queue": "mine", "limit": 1})
    assert mine.json()["total"] == 2
    assert len(mine.json()["items"]) == 1
    page2 = await doctor.get("/api/v1/consults", params={"queue": "mine", "limit": 1, "page": 2})
    assert page2.json()["offset"] == 1
    assert page2.json()["items"][0]["id"] != mine.json()["items"][0]["id"]
    assigned = await expert.get("/api/v1/consults")
    assert [i["id"] for i in assigned.json()["items"]] == [first]
    assert error_of(await expert.get("/api/v1/consults", params={"queue": "overdue"})) == (
        403,
        "forbidden",
    )
    assert error_of(await expert.get("/api/v1/consults", params={"queue": "nope"}))[0] == 400
    for client in (doctor, coordinator, expert):
        await client.aclose()


async def test_referral_over_http(api: Api) -> None:
    """A slot published, a referral to it, a second to the same slot 409 slot_taken, the
    receiving side accepts."""
    world = api.world
    receiver = await api.client("heart.doctor")
    doctor = await api.client("li.doctor")
    other = await api.client("sun.doctor")
    start = world.clock.now + timedelta(days=1)
    slot = await receiver.post(
        "/api/v1/referral-slots",
        json={
            "department": "cardio",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
        },
    )
    assert slot.status_code == 201, slot.text
    slot_id = slot.json()["id"]
    made = await doctor.post("/api/v1/referrals", json={"slot": slot_id, "reason": "急诊 PCI"})
    assert made.status_code == 201, made.text
    assert error_of(
        await other.post("/api/v1/referrals", json={"slot": slot_id, "reason": "急诊 PCI"})
    ) == (409, "slot_taken")
    slots = await doctor.get("/api/v1/referral-slots", params={"institution": "county-1"})
    assert [s["taken"] for s in slots.json()] == [True]
    incoming = await receiver.get("/api/v1/referrals", params={"direction": "incoming"})
    assert [r["id"] for r in incoming.json()["items"]] == [made.json()["id"]]
    accepted = await receiver.post(f"/api/v1/referrals/{made.json()['id']}/accept", json={})
    assert accepted.json()["state"] == "accepted"
    for client in (receiver, doctor, other):
        await client.aclose()


async def test_the_openapi_document_says_everything(api: Api) -> None:
    """Every consult and referral endpoint documents its schemas, errors and an example
    (the files it answers, the PDF, the FHIR Bundle, an attachment, the CSV, as files)."""
    async with httpx.AsyncClient(base_url=api.url) as client:
        document = (await client.get("/api/v1/openapi.json")).json()
    ours = [
        gap
        for gap in openapi_gaps(document)
        if "/consults" in gap or "/referral" in gap or "/stats" in gap
    ]
    assert ours == []
    assert "/api/v1/consults/{consult_id}/{event}" in document["paths"]


def test_report_verify_parses_as_the_cli_registers_it(tmp_path: Path) -> None:
    """``report verify FILE`` through the parser the CLI builds: a file that is no
    signed opinion exits 1, a missing file 2."""
    parser = argparse.ArgumentParser(prog="teleconsult")
    register(parser.add_subparsers(dest="command", required=True))
    bogus = tmp_path / "x.pdf"
    bogus.write_bytes(b"%PDF-1.4\n%%EOF\n")
    args = parser.parse_args(["report", "verify", str(bogus)])
    assert args.handler(args) == 1
    args = parser.parse_args(["report", "verify", str(tmp_path / "missing.pdf"), "--check-keys"])
    assert args.check_keys
    assert args.handler(args) == 2


async def test_statistics_and_their_csv(api: Api) -> None:
    """The coordinator's statistics by clinic as JSON and as CSV (the same numbers, a BOM
    for spreadsheets); a doctor is 403; a reversed period is 400."""
    doctor = await api.client("li.doctor")
    coordinator = await api.client("zhao.coord")
    consult_id = (await doctor.post("/api/v1/consults", json=REQUEST)).json()["id"]
    await coordinator.post(
        f"/api/v1/consults/{consult_id}/assign", json={"experts": ["wang.expert"]}
    )
    await doctor.post("/api/v1/consults", json=REQUEST)
    api.world.clock.advance(1)  # until (default now) is exclusive
    answer = await coordinator.get("/api/v1/stats/consults", params={"by": "clinic"})
    assert answer.status_code == 200, answer.text
    [group] = answer.json()["groups"]
    assert (group["key"], group["total"], group["accepted"]) == ("village-1", 2, 0)
    as_csv = await coordinator.get("/api/v1/stats/consults/csv", params={"by": "clinic"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.content.startswith("\ufeff".encode())
    lines = as_csv.content.decode("utf-8-sig").splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    assert dict(zip(header, row, strict=True))["total"] == str(group["total"])
    assert len(lines) == 2
    assert error_of(await doctor.get("/api/v1/stats/consults")) == (403, "forbidden")
    now = datetime.now(UTC)
    reversed_period = {"since": now.isoformat(), "until": (now - timedelta(days=1)).isoformat()}
    assert error_of(await coordinator.get("/api/v1/stats/consults", params=reversed_period)) == (
        400,
        "invalid_input",
    )
    for client in (doctor, coordinator):
        await client.aclose()


async def test_a_multidisciplinary_opinion_is_co_signed(api: Api, tmp_path: Path) -> None:
    """The second expert co-signs over HTTP; the opinion lists it, the PDF prints and
    carries it and verifies (keys on record too), an altered remark does not; the FHIR
    Provenance holds both signatures."""
    world = api.world
    consult_id = reach(world, ConsultState.REPORTED)
    url = f"/api/v1/consults/{consult_id}"
    world.clock.advance(30)
    second = await api.client("chen.expert")
    world.clock.advance(30)
    made = await second.post(
        f"{url}/opinion/cosign", json={"totp": world.totp("chen.expert"), "comment": "同意"}
    )
    assert made.status_code == 201, made.text
    again = await second.post(f"{url}/opinion/cosign", json={"totp": "000000"})
    assert error_of(again) == (409, "conflict")
    doctor = await api.client("li.doctor")
    opinion = (await doctor.get(f"{url}/opinion")).json()
    assert [(c["signer"], c["comment"]) for c in opinion["cosignatures"]] == [
        ("chen.expert", "同意")
    ]
    pdf = (await doctor.get(f"{url}/opinion.pdf")).content
    path = tmp_path / "opinion.pdf"
    path.write_bytes(pdf)
    assert verify(path) == 0
    assert verify(path, world=world) == 0
    payload = read_payload(pdf)
    assert payload["cosignatures"][0]["document"]["comment"] == "同意"
    payload["cosignatures"][0]["document"]["comment"] = "不同意"
    raw = base64.b64encode(
        json.dumps(payload, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()
    )
    old = pdf[pdf.index(PAYLOAD_MARKER) :].split(b"\n")[0].split(b"\r")[0]
    forged = tmp_path / "forged.pdf"
    forged.write_bytes(pdf.replace(old, PAYLOAD_MARKER + raw))
    assert verify(forged) == 1
    fhir = await doctor.get(f"{url}/fhir")
    Bundle.model_validate_json(fhir.text)
    provenance = next(
        e["resource"] for e in fhir.json()["entry"] if e["resource"]["resourceType"] == "Provenance"
    )
    assert [s["who"]["display"] for s in provenance["signature"]] == ["wang.expert", "chen.expert"]
    for client in (second, doctor):
        await client.aclose()


async def test_ecg_streams_over_http(api: Api) -> None:
    """The doctor attaches the cart's stream; the expert lists it; another county's
    stream is 404."""
    world = api.world
    world.stores.streams.add_stream(
        StreamRecord(id="s-cart", started_at_s=world.clock.epoch(), institution="village-1")
    )
    world.stores.streams.add_stream(
        StreamRecord(id="s-other", started_at_s=world.clock.epoch(), institution="town-2")
    )
    doctor = await api.client("li.doctor")
    expert = await api.client("wang.expert")
    consult_id = (await doctor.post("/api/v1/consults", json=REQUEST)).json()["id"]
    url = f"/api/v1/consults/{consult_id}/streams"
    made = await doctor.post(url, json={"stream": "s-cart"})
    assert made.status_code == 201, made.text
    assert made.json()["attached_by"] == "li.doctor"
    assert error_of(await doctor.post(url, json={"stream": "s-other"})) == (404, "not_found")
    listed = await expert.get(url)
    assert [s["id"] for s in listed.json()] == ["s-cart"]
    for client in (doctor, expert):
        await client.aclose()
