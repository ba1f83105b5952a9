"""The log of a whole small story on the assembled server names no patient, credential,
sample or address.

The story: the admin registers a township cart, a doctor requests a consult for a named
patient, the cart streams a few seconds for it in real time under a patient id, an
expert of the county views it live, the cart's next stream cannot be stored (its folder
is taken by a file: the storage error path, which must not log what it failed to
store), both log out, the server stops. Our own packages
log at DEBUG, everything else at INFO (the levels an operator raises to look into a
problem); every record of the server (the test's own HTTP and WebSocket clients aside)
is read after the stop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import uuid
from pathlib import Path

import httpx
import pytest

from store.audit import AuditQuery
from teleconsult.app import STREAMS_DIR
from teleconsult.device_cmd import SimulationFailed, simulate
from tests.store_changes import StoreChanges
from tests.teleconsult.test_platform_server import (
    ADMIN_PASSWORD,
    CLIENT_LOGGERS,
    PASSWORD,
    SECRET_MARKS,
    Running,
    assembled,
    build_directory,
    record,
    server_config,
    watch,
)

pytestmark = pytest.mark.slow

OUR_PACKAGES = (
    "teleconsult", "api", "signaling", "consults", "sessions", "store", "ecglive", "ecg",
    "media",
)  # fmt: skip
PATIENT_ID = "P-7d41e2c9"
PATIENT_NAME = "赵六一"
RECORD_NUMBER = "MZ-8817"
# A dump of samples: eight or more integers in a row, as a list or a numpy array prints.
SAMPLE_RUN = re.compile(r"(?:-?\d+(?:,\s*|\s+)){7}-?\d+")


async def test_a_whole_story_logs_no_patient_credential_sample_or_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Login, a cart registered, a named patient's consult, a live stream viewed, logout:
    no patient id or name, password, token, sample run or 127.0.0.1 in any server record."""
    caplog.set_level(logging.INFO)
    for name in OUR_PACKAGES:
        caplog.set_level(logging.DEBUG, logger=name)
    secrets = [ADMIN_PASSWORD, PASSWORD, PATIENT_ID, PATIENT_NAME, RECORD_NUMBER, "127.0.0.1"]

    config = server_config(tmp_path)
    assembly = assembled(config)
    await assembly.server.start()
    try:
        async with httpx.AsyncClient(base_url=assembly.server.url, timeout=30) as http:
            with StoreChanges(assembly.platform.stores.engine) as changes:
                run = Running(assembly, http, changes)
                secrets += await story(run, config.data_dir)
    finally:
        await assembly.server.close()

    records = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    assert any(r.levelno == logging.DEBUG for r in records)  # DEBUG was on and captured
    # The one address the server names is where it listens (its own, as configured).
    records = [r for r in records if not r.getMessage().startswith("listening on ")]
    leaks = []
    for r in records:
        text = r.getMessage() + (r.exc_text or "")
        found = [s for s in secrets if s in text] + SECRET_MARKS.findall(text)
        found += SAMPLE_RUN.findall(text)
        if found:
            leaks.append(f"{r.levelname} {r.name}: {found[:3]} in {text[:200]!r}")
    assert leaks == [], leaks[:10]


async def story(run: Running, data_dir: Path) -> list[str]:
    """The story of the module's docstring; the credentials it used."""
    credential = await build_directory(run)
    doctor = await run.login("li.doctor")
    body = {
        "patient": {"name": PATIENT_NAME, "sex": "female", "birth_date": "1958-07-09",
                    "record_number": RECORD_NUMBER},
        "reason": "胸闷", "purpose": "会诊", "summary": "心电图异常", "specialty": "心内科",
        "priority": "urgent", "mode": "realtime",
        "consent": {"kind": "written", "recorded_by": "li.doctor",
                    "time": "2026-12-02T08:00:00Z"},
    }  # fmt: skip
    answer = await run.call(doctor, "POST", "/consults", body)
    assert answer.status_code == 201, answer.text
    consult = answer.json()["id"]

    expert = await run.login("wang.expert")
    room_token = await run.room_token(expert, "ecg-worklist")
    viewer = await watch(run, room_token)
    started: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    cart = asyncio.create_task(
        simulate(
            record(3.0), url=run.ws_url("/device"), token=credential, device="cart-1",
            patient=PATIENT_ID, consult=consult, room=f"consult-{consult}", speed=1.0,
            on_started=started.put_nowait,
        )
    )  # fmt: skip
    stream = str(await asyncio.wait_for(started.get(), 10))
    patient = AuditQuery(patient=PATIENT_ID)
    await run.until_audited("stream.started", patient)
    await viewer.send(type="ecg_subscribe", stream=stream)
    await viewer.expect("ecg_subscribed")
    await viewer.expect("ecg_data", timeout_s=30)  # after the live workers start
    await asyncio.wait_for(cart, 30)
    await run.until_audited("stream.ended", patient)
    await run.until_audited("ecg.viewed", patient)
    # A stream the store cannot create: the server logs the error, not the start.
    blocked = uuid.uuid4()
    (data_dir / STREAMS_DIR / str(blocked)).touch(mode=0o600)
    with pytest.raises(SimulationFailed, match="no progress"):
        await simulate(
            record(1.0), url=run.ws_url("/device"), token=credential, device="cart-1",
            patient=PATIENT_ID, stream=blocked, speed=math.inf, give_up_s=1.0,
        )  # fmt: skip
    # The expert reads the consult (the patient's name comes back, and is not logged).
    seen = await run.call(expert, "GET", f"/consults/{consult}")
    assert seen.status_code in (200, 404), seen.text

    for bearer in (expert, doctor):
        assert (await run.call(bearer, "POST", "/auth/logout", {})).status_code == 204
    assert (await viewer.expect("error"))["code"] == "revoked"
    await viewer.ws.wait_closed()
    return [credential, doctor, expert, room_token]
