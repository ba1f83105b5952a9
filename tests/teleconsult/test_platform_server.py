"""The server as ``teleconsult serve`` assembles it (``teleconsult.app.assemble``), over
real uvicorn on loopback and the real SQL store: accounts and the directory through the
REST API, a registered cart streaming with its credential, viewing rights that follow
from institutions, and revocations closing live connections at once."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyotp
import pytest
from sqlalchemy import func, select
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api.app import openapi_gaps
from api.edge import EdgeConfig
from consults.accounts import AccountPolicy
from consults.directory import Role
from fixtures.make_fixtures import synthetic12
from store.audit import AuditQuery, query
from store.reading_schema import reading_tasks
from teleconsult.app import Assembly, assemble
from teleconsult.config import Config, DataSection, load_config
from teleconsult.device_cmd import SimulatedRecord, SimulationFailed, simulate
from tests.consults.test_service_world import FAST_POLICY
from tests.signaling.conftest import Client, FakeMedia
from tests.store_changes import StoreChanges

ADMIN_PASSWORD = "deployment passphrase 1"
PASSWORD = "a long passphrase"
WEB_DIR = Path(__file__).resolve().parents[2] / "web"


@dataclass
class Running:
    """The assembled server and an HTTP client on it."""

    assembly: Assembly
    http: httpx.AsyncClient
    changes: StoreChanges

    @property
    def url(self) -> str:
        return self.assembly.server.url

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.assembly.server.port}{path}"

    async def login(self, username: str, password: str = PASSWORD) -> str:
        """The bearer form of a new login session."""
        answer = await self.http.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token

    async def login_totp(self, username: str, totp: pyotp.TOTP) -> str:
        """A login with the second factor (the current code)."""
        answer = await self.http.post(
            "/api/v1/auth/login",
            json={"username": username, "password": PASSWORD, "totp": totp.now()},
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token

    async def call(self, bearer: str, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {bearer}"}
        return await self.http.request(method, f"/api/v1{path}", json=body, headers=headers)

    async def room_token(self, bearer: str, room: str) -> str:
        answer = await self.call(bearer, "POST", f"/rooms/{room}/token")
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["token"]
        return token

    def audited(self, where: AuditQuery | None = None) -> list[str]:
        with self.assembly.platform.stores.engine.connect() as conn:
            return [row.action for row in query(conn, where or AuditQuery(), limit=100_000)]

    async def until_audited(
        self, action: str, where: AuditQuery | None = None, count: int = 1
    ) -> None:
        """Wait until the trail holds ``count`` rows of ``action`` (the server writes off
        the event loop: each of its commits wakes the check)."""
        await self.changes.until(
            lambda: self.audited(where).count(action) >= count, f"{count} × {action}"
        )

    def reading_tasks_of(self, stream: str) -> int:
        """How many reading tasks the store holds for ``stream``."""
        with self.assembly.platform.stores.engine.connect() as conn:
            held = conn.execute(
                select(func.count()).where(reading_tasks.c.stream == stream)
            ).scalar_one()
            return int(held)


# What must never reach the server's log: credentials, addresses, patient identifiers
# and names (the tests' own patients).
SECRET_MARKS = re.compile(
    r"tc[sad]_[A-Za-z0-9_-]{8}|eyJ[A-Za-z0-9_-]{10}|127\.0\.0\.1|SIMULATED|patient-8f3c|"
    r"张三|李四|王五|MZ-000"
)


CLIENT_LOGGERS = ("httpx", "httpcore", "websockets.client")


@pytest.fixture(autouse=True)
def clean_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test here runs with the whole log captured at DEBUG; none of the server's
    records (the test's own HTTP and WebSocket clients aside) may name a credential, an
    address or a patient."""
    caplog.set_level(logging.DEBUG)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    server = [r for r in records if not r.name.startswith(CLIENT_LOGGERS)]
    # The one address the server may name is its own (where it listens), not a client's.
    server = [r for r in server if not r.getMessage().startswith("listening on ")]
    assert records  # the log was captured and read
    leaks = [f"{r.name}: {r.getMessage()}" for r in server if SECRET_MARKS.search(r.getMessage())]
    assert leaks == [], leaks[:5]


def server_config(tmp_path: Path) -> Config:
    """The configuration of the tests' server: any free port, a data dir in ``tmp_path``,
    argon2 at its cheapest (``[accounts]``): a hash at the default cost takes 0.3-0.4 s
    of CPU on CI's two cores, and every login and new person of a test makes one."""
    return Config(
        server=EdgeConfig(port=0),
        data=DataSection(data_dir=tmp_path / "var", web_dir=WEB_DIR),
        accounts=FAST_POLICY,
    )


def assembled(config: Config) -> Assembly:
    """The server of ``teleconsult serve`` (not started) with its first admin ``root``."""
    assembly = assemble(config, media=FakeMedia())
    assembly.platform.directory.create_first_admin(
        username="root", display_name="Root", password=ADMIN_PASSWORD
    )
    return assembly


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """The server with a deployment admin ``root``, two counties with a township clinic
    each, a doctor per clinic, an expert and an ECG reader at county 1, and the cart
    ``cart-1`` of township 1 (its credential in ``running.cart``)."""
    assembly = assembled(server_config(tmp_path))
    server = assembly.server
    await server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        with StoreChanges(assembly.platform.stores.engine) as changes:
            yield Running(assembly, http, changes)
    await server.close()


async def build_directory(run: Running) -> str:
    """The directory of the fixture's docstring through the REST API; the cart credential."""
    root = await run.login("root", ADMIN_PASSWORD)
    for code, level, parent in [
        ("county-1", "county", None),
        ("town-1", "township", "county-1"),
        ("county-2", "county", None),
        ("town-2", "township", "county-2"),
    ]:
        body: dict[str, Any] = {
            "code": code,
            "name": f"{code} 卫生院",
            "level": level,
            "parent": parent,
        }
        answer = await run.call(root, "POST", "/institutions", body)
        assert answer.status_code == 201, answer.text
    for username, institution, role in [
        ("li.doctor", "town-1", Role.DOCTOR),
        ("zhao.doctor", "town-2", Role.DOCTOR),
        ("wang.expert", "county-1", Role.EXPERT),
        ("chen.reader", "county-1", Role.ECG_READER),
        ("sun.coordinator", "county-1", Role.COORDINATOR),
    ]:
        body = {
            "username": username,
            "display_name": username.split(".")[0].title(),
            "password": PASSWORD,
            "roles": [role.value],
            "institution": institution,
        }
        answer = await run.call(root, "POST", "/people", body)
        assert answer.status_code == 201, answer.text
    answer = await run.call(
        root, "POST", "/devices", {"id": "cart-1", "name": "ECG cart", "institution": "town-1"}
    )
    assert answer.status_code == 201, answer.text
    credential: str = answer.json()["credential"]
    # Viewing rights read the directory from a snapshot refreshed every few seconds;
    # the test refreshes it now rather than wait for the next round.
    await asyncio.to_thread(run.assembly.platform.directory_view.refresh)
    return credential


def record(seconds: float) -> SimulatedRecord:
    """The 10 s synthetic 12-lead fixture, cut or repeated to last ``seconds``."""
    once = SimulatedRecord.read(str(synthetic12()))
    times = int(np.ceil(seconds * once.fs_hz / len(once.samples)))
    samples = np.tile(once.samples, (times, 1))[: round(seconds * once.fs_hz)]
    return dataclasses.replace(once, samples=samples)


async def watch(run: Running, token: str) -> Client:
    client = Client(await connect(run.ws_url("/ws")))
    await client.send(type="watch", token=token)
    await client.expect("watching")
    return client


async def listed(viewer: Client) -> list[dict[str, Any]]:
    await viewer.send(type="ecg_list")
    streams: list[dict[str, Any]] = (await viewer.expect("ecg_streams"))["streams"]
    return streams


async def test_a_registered_cart_streams_and_only_who_serves_its_clinic_sees_it(
    running: Running,
) -> None:
    """The cart streams with its credential; the stream belongs to township 1; the county
    above it (expert, reader) and the clinic's doctor see it, the other county's clinic
    does not (not listed, and to subscribe it does not exist)."""
    credential = await build_directory(running)
    result = await simulate(
        record(2.0), url=running.ws_url("/device"), token=credential, device="cart-1",
        speed=math.inf,
    )  # fmt: skip
    stream = str(result.stream)
    seen: dict[str, list[str]] = {}
    for username in ("li.doctor", "zhao.doctor", "wang.expert", "chen.reader"):
        token = await running.room_token(await running.login(username), "ecg-worklist")
        viewer = await watch(running, token)
        streams = await listed(viewer)
        seen[username] = [s["stream"] for s in streams]
        assert all(s["institution"] == "town-1" for s in streams)
        await viewer.send(type="ecg_subscribe", stream=stream, ref="s")
        answer = await viewer.recv()
        assert answer["type"] == ("ecg_subscribed" if seen[username] else "error")
        await viewer.ws.close()
    assert seen == {
        "li.doctor": [stream],
        "zhao.doctor": [],
        "wang.expert": [stream],
        "chen.reader": [stream],
    }
    # The trail: the stream started and ended, and who viewed the patient's ECG.
    patient = AuditQuery(patient="SIMULATED")
    await running.until_audited("stream.ended", patient)
    await running.until_audited("ecg.viewed", patient, count=3)
    actions = running.audited(patient)
    assert actions.count("ecg.viewed") == 3  # not the other county's doctor
    assert actions.count("stream.started") == 1


async def test_revoking_the_cart_closes_its_stream_and_refuses_it(running: Running) -> None:
    """Revoked mid-stream: the open connection gets error revoked and closes, the next
    connection is refused 401, the cart gives up; what was acknowledged is kept."""
    credential = await build_directory(running)
    started: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    cart = asyncio.create_task(
        simulate(
            record(60.0), url=running.ws_url("/device"), token=credential, device="cart-1",
            speed=1.0, on_started=started.put_nowait,
        )
    )  # fmt: skip
    stream = str(await asyncio.wait_for(started.get(), 10))
    expert = await watch(
        running, await running.room_token(await running.login("wang.expert"), "ecg-worklist")
    )
    # The stream is listed with its first samples, as the server audits its start.
    await running.until_audited("stream.started", AuditQuery(patient="SIMULATED"))
    await expert.send(type="ecg_subscribe", stream=stream)
    await expert.expect("ecg_subscribed")
    # The first live chunk waits for the live workers to start (a process, warm-up).
    await expert.expect("ecg_data", timeout_s=30)
    root = await running.login("root", ADMIN_PASSWORD)
    answer = await running.call(root, "POST", "/devices/cart-1/revoke", {})
    assert answer.status_code in (200, 204), answer.text
    with pytest.raises(SimulationFailed, match="refused"):
        await asyncio.wait_for(cart, 30)
    with pytest.raises(InvalidStatus) as refused:
        await connect(
            running.ws_url("/device"), additional_headers={"authorization": f"Bearer {credential}"}
        )
    assert refused.value.response.status_code == 401
    info = running.assembly.server.signaling.viewers
    assert info is not None
    kept = info.catalog.ecg_stream(stream)
    assert kept is not None
    assert kept.samples > 0
    actions = running.audited()
    assert "directory.device_revoked" in actions
    assert "device.credential_refused" in actions  # the refused reconnection


async def test_logout_closes_the_connections_of_its_room_tokens(running: Running) -> None:
    """A viewer opened with a room token of a session is closed (revoked, 4401) when that
    session logs out; one of another session of the same person stays open."""
    await build_directory(running)
    first = await running.login("wang.expert")
    second = await running.login("wang.expert")
    ended = await watch(running, await running.room_token(first, "ecg-worklist"))
    stays = await watch(running, await running.room_token(second, "ecg-worklist"))
    answer = await running.call(first, "POST", "/auth/logout", {})
    assert answer.status_code in (200, 204), answer.text
    error = await ended.expect("error")
    assert error["code"] == "revoked"
    await ended.ws.wait_closed()
    assert ended.ws.close_code == 4401
    assert await listed(stays) == []
    # the logged-out session mints no more tokens
    assert (await running.call(first, "POST", "/rooms/ecg-worklist/token")).status_code == 401


async def test_a_password_reset_closes_every_connection_of_the_person(running: Running) -> None:
    """An admin gives the expert a new password (their sessions end): both of their
    viewers, opened over two sessions, close at once."""
    await build_directory(running)
    viewers = [
        await watch(
            running, await running.room_token(await running.login("wang.expert"), "ecg-worklist")
        )
        for _ in range(2)
    ]
    root = await running.login("root", ADMIN_PASSWORD)
    people = (await running.call(root, "GET", "/people?search=wang")).json()
    (person,) = [p for p in people["items"] if p["username"] == "wang.expert"]
    answer = await running.call(
        root, "POST", f"/people/{person['id']}/password", {"password": "another passphrase"}
    )
    assert answer.status_code == 204, answer.text
    for viewer in viewers:
        assert (await viewer.expect("error"))["code"] == "revoked"
        await viewer.ws.wait_closed()
        assert viewer.ws.close_code == 4401


async def test_the_accounts_section_sets_the_password_hashing(tmp_path: Path) -> None:
    """``[accounts]`` from the environment reaches the server's accounts: the first
    admin's password is hashed with its argon2 parameters."""
    environ = {
        "TELECONSULT_DATA__DATA_DIR": str(tmp_path / "var"),
        "TELECONSULT_ACCOUNTS__ARGON2_TIME_COST": "2",
        "TELECONSULT_ACCOUNTS__ARGON2_MEMORY_KIB": "2048",
        "TELECONSULT_ACCOUNTS__ARGON2_PARALLELISM": "1",
    }
    config = load_config(environ=environ)
    expected = AccountPolicy(argon2_time_cost=2, argon2_memory_kib=2048, argon2_parallelism=1)
    assert config.accounts == expected
    assembly = assembled(config)
    admin = assembly.platform.stores.directory.person_by_username("root")
    assert admin is not None
    credentials = assembly.platform.stores.credentials.get_credentials(admin.id)
    assert credentials is not None
    assert credentials.password_hash.startswith("$argon2id$v=19$m=2048,t=2,p=1$")
    await assembly.server.start()
    await assembly.server.close()


async def test_a_room_token_of_an_ended_session_stays_refused_after_a_restart(
    tmp_path: Path,
) -> None:
    """Logged out, then the server restarts: the room token minted over that session is
    refused (revoked), one of a live session is not."""
    config = server_config(tmp_path)
    first = assembled(config)
    await first.server.start()
    async with httpx.AsyncClient(base_url=first.server.url, timeout=30) as http:
        run = Running(first, http, StoreChanges(first.platform.stores.engine))
        await build_directory(run)
        ended_session = await run.login("wang.expert")
        ended = await run.room_token(ended_session, "ecg-worklist")
        live = await run.room_token(await run.login("wang.expert"), "ecg-worklist")
        assert (await run.call(ended_session, "POST", "/auth/logout", {})).status_code == 204
        run.changes.close()
    await first.server.close()

    second = assemble(config, media=FakeMedia())
    await second.server.start()
    try:
        url = f"ws://127.0.0.1:{second.server.port}/ws"
        refused = Client(await connect(url))
        await refused.send(type="watch", token=ended)
        assert (await refused.expect("error"))["code"] == "revoked"
        await refused.ws.wait_closed()
        assert refused.ws.close_code == 4401
        kept = Client(await connect(url))
        await kept.send(type="watch", token=live)
        await kept.expect("watching")
    finally:
        await second.server.close()


async def test_a_consult_request_reaches_the_centre_s_coordinator_live(running: Running) -> None:
    """The consult API is mounted on the server: the township doctor's request (the
    contract's body) is 201 submitted, routed to the county that serves the clinic,
    and its coordinator, connected on /ws, is notified at once (no patient data in it);
    the other county's doctor does not see the consult (404)."""
    await build_directory(running)
    coordinator = await watch(
        running,
        await running.room_token(await running.login("sun.coordinator"), "ecg-worklist"),
    )
    doctor = await running.login("li.doctor")
    body = {
        "patient": {"name": "张三", "sex": "male", "birth_date": "1956-03-02",
                    "record_number": "MZ-0001"},
        "reason": "胸痛两小时", "purpose": "明确诊断", "summary": "ST 段抬高",
        "specialty": "心内科", "priority": "urgent", "mode": "realtime",
        "consent": {"kind": "written", "recorded_by": "li.doctor",
                    "time": "2026-12-02T08:00:00Z"},
    }  # fmt: skip
    answer = await running.call(doctor, "POST", "/consults", body)
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["state"] == "submitted"
    notice = await coordinator.expect("notify", timeout_s=10)
    assert notice["topic"] == "consult.submit"
    assert notice["data"]["consult"] == made["id"]
    assert "张三" not in str(notice)
    other = await running.login("zhao.doctor")
    assert (await running.call(other, "GET", f"/consults/{made['id']}")).status_code == 404
    mine = await running.call(doctor, "GET", f"/consults/{made['id']}")
    assert mine.status_code == 200
    assert mine.json()["state"] == "submitted"


async def test_auditors_search_the_trail_within_their_reach(running: Running) -> None:
    """A county auditor reads the rows of the county and its clinic, not another
    county's; a deployment-wide admin and auditor reads all, paging newest first;
    a doctor is refused; each search is itself a row."""
    credential = await build_directory(running)
    root = await running.login("root", ADMIN_PASSWORD)
    for username, extra in (
        ("qian.auditor", {"roles": ["auditor"], "institution": "county-1"}),
        ("wu.auditor", {"roles": ["admin", "auditor"], "admin_scope": "deployment"}),
    ):
        body = {"username": username, "display_name": username, "password": PASSWORD, **extra}
        answer = await running.call(root, "POST", "/people", body)
        assert answer.status_code == 201, answer.text
    await simulate(
        record(1.0), url=running.ws_url("/device"), token=credential, device="cart-1",
        patient="patient-8f3c", speed=math.inf,
    )  # fmt: skip
    await running.until_audited("stream.ended", AuditQuery(patient="patient-8f3c"))

    county = await running.login("qian.auditor")
    rows = (await running.call(county, "GET", "/audit?patient=patient-8f3c")).json()["items"]
    assert {r["action"] for r in rows} >= {"stream.started", "stream.ended"}
    streams = [r for r in rows if r["action"].startswith("stream.")]
    assert {r["institution"] for r in streams} == {"town-1"}
    assert "audit.searched" in {r["action"] for r in rows}  # the auditor's own search
    assert all(r["time"].endswith("Z") for r in rows)
    other = await running.call(county, "GET", "/audit?institution=county-2")
    assert other.json()["items"] == []

    everything = await running.login("wu.auditor")
    seen: list[int] = []
    before: int | None = None
    while True:
        query_text = "/audit?limit=7" + (f"&before={before}" if before else "")
        page = (await running.call(everything, "GET", query_text)).json()
        seen += [r["seq"] for r in page["items"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == len(set(seen)) > 20

    doctor = await running.login("li.doctor")
    refused = await running.call(doctor, "GET", "/audit")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert (await running.call(county, "GET", "/audit?limit=0")).status_code == 400
    assert "audit.searched" in running.audited()


async def test_what_a_registered_cart_may_declare(running: Running) -> None:
    """The township cart may stream for a consult of its clinic (into that consult's
    room); another clinic's consult, an unknown one, or a room of its own choosing is
    refused with not_permitted, and nothing is stored for it."""
    credential = await build_directory(running)
    body = {
        "patient": {"name": "李四", "sex": "female", "birth_date": "1960-01-01",
                    "record_number": "MZ-0002"},
        "reason": "心悸", "purpose": "会诊", "summary": "阵发性心悸", "specialty": "心内科",
        "priority": "routine", "mode": "realtime",
        "consent": {"kind": "written", "recorded_by": "li.doctor",
                    "time": "2026-12-02T08:00:00Z"},
    }  # fmt: skip
    ours = (await running.call(await running.login("li.doctor"), "POST", "/consults", body)).json()
    theirs = (
        await running.call(await running.login("zhao.doctor"), "POST", "/consults", body)
    ).json()
    url = running.ws_url("/device")
    for consult, room in (
        (theirs["id"], None),
        ("no-such-consult", None),
        (None, "any-room"),
        (ours["id"], "consult-other"),
    ):
        with pytest.raises(SimulationFailed, match="not_permitted"):
            await simulate(
                record(1.0), url=url, token=credential, device="cart-1", consult=consult,
                room=room, speed=math.inf,
            )  # fmt: skip
    viewers = running.assembly.server.signaling.viewers
    assert viewers is not None
    assert viewers.catalog.ecg_streams() == []
    done = await simulate(
        record(1.0), url=url, token=credential, device="cart-1", consult=ours["id"],
        room=f"consult-{ours['id']}", speed=math.inf,
    )  # fmt: skip
    (stored,) = viewers.catalog.ecg_streams()
    assert stored.stream == str(done.stream)
    assert stored.consult == ours["id"]


async def test_a_consult_room_s_parts_follow_the_consult(running: Running) -> None:
    """Tokens for consult-<id>: the requesting doctor waits (applicant), the centre's
    coordinator moderates, an expert of the centre observes until assigned and then
    moderates as expert; another county's doctor is told there is no such consult."""
    await build_directory(running)
    body = {
        "patient": {"name": "王五", "sex": "male", "birth_date": "1970-05-05",
                    "record_number": "MZ-0003"},
        "reason": "晕厥", "purpose": "会诊", "summary": "一过性黑矇", "specialty": "心内科",
        "priority": "urgent", "mode": "realtime",
        "consent": {"kind": "written", "recorded_by": "li.doctor",
                    "time": "2026-12-02T08:00:00Z"},
    }  # fmt: skip
    doctor = await running.login("li.doctor")
    consult = (await running.call(doctor, "POST", "/consults", body)).json()["id"]
    room = f"/rooms/consult-{consult}/token"

    async def part(bearer: str) -> tuple[str, bool]:
        answer = await running.call(bearer, "POST", room)
        assert answer.status_code == 200, answer.text
        return answer.json()["role"], answer.json()["moderator"]

    coordinator = await running.login("sun.coordinator")
    expert = await running.login("wang.expert")
    assert await part(doctor) == ("applicant", False)
    assert await part(coordinator) == ("coordinator", True)
    assert await part(expert) == ("observer", False)
    assigned = await running.call(
        coordinator, "POST", f"/consults/{consult}/assign", {"experts": ["wang.expert"]}
    )
    assert assigned.status_code == 200, assigned.text
    assert await part(expert) == ("expert", True)
    outsider = await running.call(await running.login("zhao.doctor"), "POST", room)
    assert outsider.status_code == 404
    assert outsider.json()["error"]["code"] == "not_found"


async def test_the_served_openapi_document_is_complete(running: Running) -> None:
    """GET /api/v1/openapi.json of the server as serve builds it: every endpoint of every
    controller mounted has its schemas, a 4xx error and an example (files as files)."""
    answer = await running.http.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    assert document["openapi"].startswith("3.1")
    for path in ("/api/v1/auth/login", "/api/v1/consults", "/api/v1/audit", "/api/v1/webhooks"):
        assert path in document["paths"]
    assert openapi_gaps(document) == []


async def test_a_registered_cart_s_stream_becomes_a_reading_task(running: Running) -> None:
    """The township cart's stream is, from its start, a reading task of the county that
    serves the clinic: the county's ECG reader lists it and claims it; the other
    county's doctor does not see it (404)."""
    credential = await build_directory(running)
    done = await simulate(
        record(2.0), url=running.ws_url("/device"), token=credential, device="cart-1",
        speed=math.inf,
    )  # fmt: skip
    reader = await running.login("chen.reader")
    # The task is made off the event loop as the stream starts.
    stream = str(done.stream)
    await running.changes.until(lambda: running.reading_tasks_of(stream) == 1, "the task")
    items = (await running.call(reader, "GET", "/readings?state=new")).json()["items"]
    (task,) = items
    assert task["stream"] == str(done.stream)
    assert task["clinic"] == "town-1"
    assert task["state"] == "new"
    claimed = await running.call(reader, "POST", f"/readings/{task['id']}/claim", {})
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["state"] == "claimed"
    other = await running.login("zhao.doctor")
    assert (await running.call(other, "GET", f"/readings/{task['id']}")).status_code == 404
    # The reader reports and signs (second factor); the PDF and the DICOM file of the
    # report draw the stream's stored record.
    secret = (await running.call(reader, "POST", "/me/totp", {})).json()["secret"]
    reader = await running.login_totp("chen.reader", pyotp.TOTP(secret))
    drafted = await running.call(
        reader, "PUT", f"/readings/{task['id']}/report", {"statements": [], "text": "窦性心律"}
    )
    assert drafted.status_code == 200, drafted.text
    # The login used this window's code, and a code counts once: the next window's
    # code (accepted within the one-step drift) signs.
    signed = await running.call(
        reader,
        "POST",
        f"/readings/{task['id']}/sign",
        {"totp": pyotp.TOTP(secret).at(time.time() + 30)},
    )
    assert signed.status_code == 200, signed.text
    for suffix, magic in (("report.pdf", b"%PDF"), ("report.dcm", b"DICM")):
        answer = await running.call(reader, "GET", f"/readings/{task['id']}/{suffix}")
        assert answer.status_code == 200, (suffix, answer.text[:200])
        assert magic in answer.content[:200]
