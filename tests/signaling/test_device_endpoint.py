"""The /device endpoint and live viewers in the real server, with the reference simulator."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wfdb
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.edge import EdgeServer
from ecg.streamstore import StreamStore
from ecglive.service import EcgService
from fixtures.make_fixtures import synthetic12
from sessions.tokens import load_secret, mint_token, verify_token
from teleconsult.app import install_ecg
from teleconsult.device_cmd import SimulatedRecord, simulate
from tests.signaling.conftest import SECRET, Client, make_token, open_client, ws_url
from tests.signaling.stream_events import StreamEvents

REPO = Path(__file__).resolve().parents[2]
DEVICE = "cart-1"


def device_token(identity: str = DEVICE, secret: str = SECRET) -> str:
    """A device token for ``identity``."""
    return mint_token(secret, identity=identity, name="cart", role="device", room="ecg")


@pytest.fixture(params=[1, 0], ids=["live-process", "live-thread"])
def ecg(server: EdgeServer, tmp_path: Path, request: pytest.FixtureRequest) -> EcgService:
    """The real ECG service on the test server, annotating in a worker process or a thread."""
    verify = functools.partial(verify_token, SECRET)
    return install_ecg(
        server, tmp_path / "streams", verify, commit_interval_s=0.05, live_processes=request.param
    )


def record(seconds: float | None = None) -> SimulatedRecord:
    """The synthetic 12-lead fixture (500 Hz, beats the detector finds)."""
    return SimulatedRecord.read(str(synthetic12()), duration_s=seconds)


async def watcher(server: EdgeServer, room: str = "r1", role: str = "expert") -> Client:
    """A viewer connection that has sent ``watch``."""
    client = await open_client(server)
    await client.send(type="watch", token=make_token(f"viewer-{room}", room=room, role=role))
    assert (await client.expect("watching"))["room"] == room
    return client


async def test_upgrade_refusals(server: EdgeServer, ecg: EcgService) -> None:
    """No or a forged token 401, a viewer token 403 on /device; a device token on /ws refused."""
    url = ws_url(server, "/device")
    forged = device_token(secret="another secret " + "y" * 32)
    cases: list[tuple[dict[str, str], int]] = [
        ({}, 401),
        ({"Authorization": "Bearer not-a-jwt"}, 401),
        ({"Authorization": f"Bearer {forged}"}, 401),
        ({"Authorization": f"Bearer {make_token('doc', role='expert')}"}, 403),
    ]
    for headers, status in cases:
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, additional_headers=headers)
        assert refused.value.response.status_code == status
        assert refused.value.response.body  # the reason
    # A bad token's reason is ours, not the JWT library's words about it.
    for headers, _ in cases[1:3]:
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, additional_headers=headers)
        assert bytes(refused.value.response.body or b"").strip() == b"invalid token"
    async with connect(f"{url}?token={device_token()}") as ws:  # query token accepted
        assert ws.protocol.state.name == "OPEN"
    client = await open_client(server)
    for kind in ("watch", "join"):
        await client.send(type=kind, token=device_token())
        error = await client.expect("error")
        assert error["code"] == "forbidden"
        client = await open_client(server)


async def test_viewer_receives_samples_beats_and_the_end(
    server: EdgeServer, ecg: EcgService
) -> None:
    """A granted viewer lists the stream, gets µV samples, beat marks, HR, then finalised."""
    source = record(12.0)
    viewer = await watcher(server)
    events = StreamEvents(ecg)
    started: asyncio.Queue[uuid.UUID] = asyncio.Queue()
    task = asyncio.create_task(
        simulate(
            source, url=ws_url(server, "/device"), token=device_token(), device=DEVICE,
            room="r1", speed=8.0, on_started=started.put_nowait,
        )
    )  # fmt: skip
    stream = str(await asyncio.wait_for(started.get(), 10))
    # Listed with its first samples (the device connects after it starts).
    await events.until("stream.started", stream)
    await viewer.send(type="ecg_list")
    listed = await viewer.expect("ecg_streams")
    assert [s["stream"] for s in listed["streams"]] == [stream]
    assert listed["streams"][0]["state"] == "live"
    await viewer.send(type="ecg_subscribe", stream=stream, ref="s")
    subscribed = await viewer.expect("ecg_subscribed")
    assert subscribed["info"]["leads"] == source.leads
    beats: list[list[Any]] = []
    samples = 0
    while True:
        message = await viewer.recv(10)
        if message["type"] == "ecg_data":
            assert len(message["samples_uv"]) == 12
            samples += len(message["samples_uv"][0])
            beats += message["beats"]
        elif message["type"] == "ecg_ended" and message["state"] == "finalised":
            break
    result = await task
    assert samples > 0
    assert len(beats) >= 8  # a beat a second or so on the fixture
    assert all(b[0] < len(source.samples) for b in beats)
    assert beats[-1][1].endswith("Z")
    folder = ecg.store.path(result.stream)
    assert (folder / f"{result.stream}.qrs").exists()
    assert (folder / f"{result.stream}.json").exists()
    stored = wfdb.rdrecord(str(ecg.store.record_path(result.stream)), physical=False).d_signal
    np.testing.assert_array_equal(stored, source.samples)


async def test_viewer_without_the_grant_is_refused(server: EdgeServer, ecg: EcgService) -> None:
    """Another room's viewer neither lists the stream nor subscribes to it (to them it does
    not exist: not_found, as for a stream that does not); the name 'ecg-centre' grants
    nothing."""
    source = record(1.0)
    result = await simulate(
        source, url=ws_url(server, "/device"), token=device_token(), device=DEVICE,
        room="r1", speed=math.inf,
    )  # fmt: skip
    other = await watcher(server, room="r2")
    await other.send(type="ecg_list")
    assert (await other.expect("ecg_streams"))["streams"] == []
    await other.send(type="ecg_subscribe", stream=str(result.stream), ref="x")
    refused = await other.expect("error")
    assert (refused["code"], refused["ref"]) == ("not_found", "x")
    await other.send(type="ecg_subscribe", stream=str(uuid.uuid4()), ref="y")
    missing = await other.expect("error")
    assert (missing["code"], missing["reason"]) == (refused["code"], refused["reason"])
    centre = await watcher(server, room="ecg-centre", role="observer")
    await centre.send(type="ecg_list")
    assert (await centre.expect("ecg_streams"))["streams"] == []
    unjoined = await open_client(server)
    await unjoined.send(type="ecg_list")
    assert (await unjoined.expect("error"))["code"] == "not_joined"


async def test_forced_drops_and_takeover_are_bit_exact(server: EdgeServer, ecg: EcgService) -> None:
    """Drops every 0.2 s at 20x: the stored record equals the source sample for sample."""
    source = record(10.0)
    result = await simulate(
        source, url=ws_url(server, "/device"), token=device_token(), device=DEVICE,
        speed=20.0, drop_every_s=0.2,
    )  # fmt: skip
    assert result.forced_drops >= 1
    stored = wfdb.rdrecord(str(ecg.store.record_path(result.stream)), physical=False).d_signal
    np.testing.assert_array_equal(stored, source.samples)


async def start_serve(data_dir: Path, port: int) -> tuple[asyncio.subprocess.Process, int]:
    """``teleconsult serve`` in its own process; returns it and its port once it listens."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "teleconsult", "serve", "--port", str(port),
        "--data-dir", str(data_dir), "--log-level", "WARNING",
        stdout=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert line, "teleconsult serve did not start"
        if line.startswith("teleconsult serving on"):
            return process, int(line.split()[3].rsplit(":", 1)[1])


@pytest.mark.slow
async def test_serve_killed_mid_stream_and_restarted(tmp_path: Path) -> None:
    """SIGKILL of `teleconsult serve` mid-stream, restart on the same port: bit-exact record."""
    data = tmp_path / "var"
    first, port = await start_serve(data, 0)
    processes = [first]
    secret = load_secret(data, None)
    source = record(10.0)
    acked = asyncio.Event()
    task = asyncio.create_task(
        simulate(
            source, url=f"ws://127.0.0.1:{port}/device", token=device_token(secret=secret),
            device=DEVICE, speed=5.0, on_acked=lambda _: acked.set(),
        )
    )  # fmt: skip
    try:
        # Mid-stream: the first ack says samples are durable (not a guess of 1 s).
        await asyncio.wait_for(acked.wait(), 60)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        store = StreamStore(data / "streams")
        (info,) = store.streams()
        assert 0 < info.durable_samples < len(source.samples)
        second, _ = await start_serve(data, port)
        processes.append(second)
        result = await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
        for process in processes:
            if process.returncode is None:
                process.terminate()
                await process.wait()
    assert result.connections >= 2
    store = StreamStore(data / "streams")
    assert store.info(result.stream).total_samples == len(source.samples)
    stored = wfdb.rdrecord(str(store.record_path(result.stream)), physical=False).d_signal
    np.testing.assert_array_equal(stored, source.samples)


async def test_live_workers_wait_for_the_first_device_by_default(ecg: EcgService) -> None:
    """Without start_workers, no live worker runs before a device connects."""
    assert not ecg.workers.started


async def test_live_workers_start_with_the_server_when_asked(
    server: EdgeServer, tmp_path: Path
) -> None:
    """start_workers=True starts the worker processes at once, before any device."""
    verify = functools.partial(verify_token, SECRET)
    eager = install_ecg(server, tmp_path / "streams", verify, live_processes=1, start_workers=True)
    assert eager.workers.started


async def test_over_size_message_gets_an_error_then_1009(
    server: EdgeServer, ecg: EcgService
) -> None:
    """A device message over 1 MiB is answered with fatal frame_too_large, then close 1009."""
    async with connect(f"{ws_url(server, '/device')}?token={device_token()}") as ws:
        await ws.send(b"\x00" * (1024 * 1024 + 1))
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (error["type"], error["code"], error["fatal"]) == ("error", "frame_too_large", True)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1009
