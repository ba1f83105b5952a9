"""The ``[ecg]`` section (mains notch, the QTc formula shown first) is read as the other
sections are, and honoured wherever the server annotates: the live pipeline, the batch
re-annotation of a finished stream, uploads, the reading page's measurements and the
signed report on paper, on the server as ``teleconsult serve`` assembles it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from api.ws_ecg import ViewerMessages
from ecg.annotate import Annotation
from ecg.device import Start, encode_message
from ecg.measure import QtcFormula
from ecglive.service import EcgService, LiveRunner, StartJob
from fixtures.make_fixtures import synthetic12
from teleconsult.config import ConfigError, EcgSection, load_config
from teleconsult.device_cmd import simulate
from tests.api.test_reading_upload import URL, _files
from tests.store_changes import StoreChanges
from tests.teleconsult.test_platform_server import (
    Running,
    assembled,
    build_directory,
    record,
    server_config,
)

SIXTY_FRIDERICIA = EcgSection(mains_hz=60, qtc_first="fridericia")


def test_the_ecg_section_from_a_file_and_the_environment(tmp_path: Path) -> None:
    """``[ecg]`` from TOML, the environment over the file, ``"none"`` for no notch; the
    engine's settings made from it carry both."""
    path = tmp_path / "teleconsult.toml"
    path.write_text('[ecg]\nmains_hz = 60\nqtc_first = "hodges"\n')
    config = load_config(path, environ={})
    assert config.ecg == EcgSection(mains_hz=60, qtc_first="hodges")
    assert config.ecg.annotate_config().mains_hz == 60.0
    assert config.ecg.annotate_config().measure.qtc_first.value == "hodges"
    assert config.ecg.live_config().mains_hz == 60.0
    off = load_config(path, environ={"TELECONSULT_ECG__MAINS_HZ": "none"})
    assert (off.ecg.notch_hz, off.ecg.qtc_first) == (None, "hodges")
    assert off.ecg.annotate_config().mains_hz is None
    assert off.ecg.live_config().mains_hz is None
    default = load_config(None, environ={}).ecg
    assert (default.notch_hz, default.qtc_first) == (50.0, "bazett")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[ecg]\nmains_hz = 55\n", "mains_hz"),
        ("[ecg]\nmains_hz = 60.5\n", "mains_hz"),
        ("[ecg]\nqtc_first = 'rautaharju'\n", "qtc_first"),
        ("[ecg]\nnotch = 50\n", "ecg.notch"),
    ],
)
def test_bad_ecg_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    """A mains frequency other than 50, 60 or "none", an unknown formula or key: refused."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_the_live_pipeline_opens_with_the_configured_notch() -> None:
    """A stream's live pipeline (in a worker, from its StartJob) notches the server's
    mains frequency, or none."""
    cart = record(1.0)
    start = Start(
        version=1, device="cart-1", stream=uuid.uuid4(), patient="p", fs_hz=cart.fs_hz,
        leads=cart.leads, adc_gain=cart.adc_gain, baseline=cart.baseline,
        resolution_bits=cart.resolution_bits, start_time=cart.start_time,
    )  # fmt: skip
    for section, notch in ((SIXTY_FRIDERICIA, 60.0), (EcgSection(mains_hz="none"), None)):
        runner = LiveRunner(ViewerMessages())
        stream = str(start.stream)
        runner.handle(StartJob(stream, encode_message(start).encode(), 0, section.live_config()))
        live = runner.lives[stream]
        assert live is not None
        assert live.state.config.mains_hz == notch


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """The server of ``teleconsult serve`` with ``[ecg]`` mains 60 Hz and Fridericia first
    (the directory of ``tests.teleconsult.test_platform_server.running``)."""
    config = dataclasses.replace(server_config(tmp_path), ecg=SIXTY_FRIDERICIA)
    assembly = assembled(config)
    server = assembly.server
    await server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        with StoreChanges(assembly.platform.stores.engine) as changes:
            yield Running(assembly, http, changes)
    await server.close()


def _annotated(running: Running) -> asyncio.Future[Annotation]:
    """Resolved with the first finished stream's batch annotation (told from the batch
    thread after the server's own listener)."""
    device = running.assembly.server.device
    assert device is not None
    service = device.streams
    assert isinstance(service, EcgService)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Annotation] = loop.create_future()
    told = service.on_annotated

    def on_annotated(start: Start, annotation: Annotation) -> None:
        if told is not None:
            told(start, annotation)
        loop.call_soon_threadsafe(resolve, annotation)

    def resolve(annotation: Annotation) -> None:
        if not done.done():
            done.set_result(annotation)

    service.on_annotated = on_annotated
    return done


async def test_a_finished_stream_and_its_reading_follow_the_section(
    running: Running, tmp_path: Path
) -> None:
    """A cart's 12 s stream ends: its batch annotation (the file beside the record)
    notches 60 Hz and puts Fridericia first; the reading page's window, the median
    beat's measurements and the signed report (its figures and the PDF's QTc line) show
    QTc by Fridericia."""
    credential = await build_directory(running)
    annotated = _annotated(running)
    done = await simulate(
        record(12.0), url=running.ws_url("/device"), token=credential, device="cart-1",
        speed=math.inf,
    )  # fmt: skip
    annotation = await asyncio.wait_for(annotated, 60)
    assert annotation.summary.mains_hz == 60.0
    assert annotation.measurements is not None
    assert annotation.measurements.global_.qtc_first.value == "fridericia"
    [written] = await asyncio.to_thread(lambda: list(tmp_path.glob(f"**/{done.stream}.json")))
    document = json.loads(await asyncio.to_thread(written.read_text))
    assert document["annotator"]["mains_hz"] == 60.0
    assert document["measurements"]["global"]["qtc_first"] == "fridericia"

    stream = str(done.stream)
    await running.changes.until(lambda: running.reading_tasks_of(stream) == 1, "the task")
    reader = await running.login("chen.reader")
    [task] = (await running.call(reader, "GET", "/readings?state=new")).json()["items"]
    url = f"/readings/{task['id']}"
    window = (await running.call(reader, "GET", f"{url}/ecg")).json()
    figures = window["measurements"]
    assert figures["qtc_formula"] == "fridericia"
    fridericia = annotation.measurements.global_.qtc_ms[QtcFormula.FRIDERICIA]
    assert isinstance(fridericia, float)
    assert figures["qtc_ms"] == pytest.approx(fridericia)
    median = (await running.call(reader, "GET", f"{url}/median")).json()
    assert median["fiducials"]["measurements"]["qtc_formula"] == "fridericia"

    await running.call(reader, "POST", f"{url}/claim", {})
    secret = (await running.call(reader, "POST", "/me/totp", {})).json()["secret"]
    reader = await running.login_totp("chen.reader", pyotp.TOTP(secret))
    await running.call(reader, "PUT", f"{url}/report", {"statements": [], "text": "窦性心律"})
    signed = await running.call(
        reader, "POST", f"{url}/sign", {"totp": pyotp.TOTP(secret).at(time.time() + 30)}
    )
    assert signed.status_code == 200, signed.text
    [version] = (await running.call(reader, "GET", f"{url}/report")).json()["versions"]
    assert version["document"]["measurements"]["qtc_first"] == "fridericia"
    pdf = await running.call(reader, "GET", f"{url}/report.pdf")
    assert pdf.status_code == 200
    text = await asyncio.create_subprocess_exec(
        "pdftotext", "-", "-", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await text.communicate(pdf.content)
    assert "QTc (Fridericia)" in out.decode()


async def test_an_upload_is_read_with_the_section(running: Running) -> None:
    """An uploaded record's task: the engine's findings and the reading page's window
    are made with ``[ecg]`` (QTc by Fridericia first)."""
    await build_directory(running)
    doctor = await running.login("li.doctor")
    reader = await running.login("chen.reader")
    files = _files(Path(synthetic12()))
    answer = await running.http.post(
        URL, files=files, headers={"authorization": f"Bearer {doctor}"}
    )
    assert answer.status_code == 201, answer.text
    window = await running.call(reader, "GET", f"/readings/{answer.json()['reading']}/ecg")
    assert window.status_code == 200, window.text
    measurements: dict[str, Any] | None = window.json()["measurements"]
    assert measurements is not None
    assert measurements["qtc_formula"] == "fridericia"
