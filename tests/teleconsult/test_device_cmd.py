"""The reference device against a small websockets server that speaks the protocol through ecg/.

The server here is the seed of the real ``/device`` endpoint: it verifies the token,
makes one :class:`~ecg.resume.DeviceSession` per connection and pumps messages through
:class:`~ecg.streamstore.StreamService`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import wfdb
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ecg.device import Error, encode_message
from ecg.resume import Close, DeviceSession, Send
from ecg.streamstore import Outgoing, StreamService, StreamStore
from sessions.tokens import mint_token, verify_token
from teleconsult import device_cmd
from teleconsult.device_cmd import SimulatedRecord, SimulationFailed, simulate

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-" + "x" * 32
DEVICE = "cart-sim-1"


@dataclass
class DeviceServer:
    """A /device endpoint on 127.0.0.1 storing into ``root``; counts connections."""

    root: Path
    service: StreamService = field(init=False)
    server: Server | None = None
    connections: int = 0
    sockets: dict[int, ServerConnection] = field(default_factory=dict)
    tasks: set[asyncio.Task[bool]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.service = StreamService(StreamStore(self.root), on_takeover=self._takeover)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/device"

    def _authenticate(self, connection: ServerConnection, request: Request) -> Response | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            claims = verify_token(SECRET, token)
        except Exception:
            return connection.respond(401, "invalid token\n")
        if claims.role != "device":
            return connection.respond(403, "not a device token\n")
        connection.device = claims.identity  # type: ignore[attr-defined]
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        session = DeviceSession(ws.device)  # type: ignore[attr-defined]
        self.sockets[id(session)] = ws
        try:
            async for message in ws:
                if isinstance(message, str):
                    out = self.service.receive_text(session, message)
                else:
                    out = self.service.receive_bytes(session, message)
                if await deliver(ws, out):
                    break
        except ConnectionClosed:
            pass  # the device dropped: it resumes on its next connection
        finally:
            self.service.connection_lost(session)
            del self.sockets[id(session)]

    def _takeover(self, old: DeviceSession, out: list[Outgoing]) -> None:
        ws = self.sockets.get(id(old))
        if ws is not None:
            task = asyncio.get_running_loop().create_task(deliver(ws, out))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


async def deliver(ws: ServerConnection, out: list[Outgoing]) -> bool:
    """Send the service's output on ``ws``; True when it asked to close (or ``ws`` is gone)."""
    try:
        for item in out:
            if isinstance(item, Send):
                await ws.send(encode_message(item.message))
            elif isinstance(item, Close):
                await ws.close(item.code, item.reason)
                return True
    except ConnectionClosed:
        return True
    return False


@pytest.fixture
async def device_server(tmp_path: Path) -> AsyncIterator[DeviceServer]:
    """A running device endpoint on an ephemeral loopback port."""
    state = DeviceServer(tmp_path / "streams")
    async with serve(state._handle, "127.0.0.1", 0, process_request=state._authenticate) as server:
        state.server = server
        yield state


def device_token(identity: str = DEVICE, role: str = "device") -> str:
    """A signed token for ``identity``."""
    return mint_token(SECRET, identity=identity, name="ECG cart", role=role, room="ecg")


def synthetic_record(seconds: float, fs_hz: float = 500.0, leads: int = 12) -> SimulatedRecord:
    """A deterministic record whose every sample differs from its neighbours."""
    n = int(seconds * fs_hz)
    rng = np.random.default_rng(7)
    samples = rng.integers(-2000, 2000, size=(n, leads)).astype(np.int16)
    return SimulatedRecord(
        samples=samples,
        fs_hz=fs_hz,
        leads=[f"L{i}" for i in range(leads)],
        adc_gain=[200.0] * leads,
        baseline=[0] * leads,
        resolution_bits=12,
        start_time=datetime(2026, 11, 23, 1, 0, tzinfo=UTC),
    )


def stored_digital(server: DeviceServer, stream: uuid.UUID) -> np.ndarray:
    """The finalised WFDB record's digital samples."""
    path = server.service.store.record_path(stream)
    return wfdb.rdrecord(str(path), physical=False).d_signal


async def test_stream_with_forced_drops_is_bit_exact(device_server: DeviceServer) -> None:
    """20 s of 12-lead signal at 40x with a drop every 0.1 s is stored bit-exact."""
    record = synthetic_record(20.0)
    sent: list[tuple[int, int, float]] = []
    result = await simulate(
        record,
        url=device_server.url,
        token=device_token(),
        device=DEVICE,
        speed=40.0,
        drop_every_s=0.1,
        on_frame_sent=lambda first, n, at: sent.append((first, n, at)),
    )
    covered = np.zeros(len(record.samples), bool)
    for first, n, _ in sent:
        covered[first : first + n] = True
    assert covered.all()
    # Real time at 40x: the last frame leaves no earlier than 0.5 s after the first.
    assert sent[-1][2] - sent[0][2] >= 0.45
    assert result.forced_drops >= 1  # how many depends on the machine's load
    assert device_server.connections >= result.forced_drops + 1
    np.testing.assert_array_equal(stored_digital(device_server, result.stream), record.samples)


async def test_mitdb_100_through_the_command(
    device_server: DeviceServer, ecg_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI streams MIT-BIH 100's first 30 s with drops; the stored record equals the source."""
    parser = argparse.ArgumentParser()
    device_cmd.register(parser.add_subparsers())
    path = str(ecg_dir / "mitdb" / "100")
    args = parser.parse_args(
        ["device", "simulate", path, "--url", device_server.url, "--token", device_token(),
         "--speed", "60", "--drop-every", "0.15", "--duration", "30"]
    )  # fmt: skip
    status = await asyncio.to_thread(args.handler, args)
    captured = capsys.readouterr()
    assert status == 0, captured.err
    stream = uuid.UUID(captured.out.splitlines()[0])
    source = wfdb.rdrecord(path, physical=False, sampto=30 * 360)
    stored = wfdb.rdrecord(str(device_server.service.store.record_path(stream)), physical=False)
    np.testing.assert_array_equal(stored.d_signal, source.d_signal)
    assert (stored.adc_gain, stored.baseline, stored.sig_name) == (
        source.adc_gain, source.baseline, source.sig_name
    )  # fmt: skip
    assert "forced drops" in captured.err


async def test_server_restart_mid_stream_resumes(tmp_path: Path) -> None:
    """The server goes away mid-stream and comes back on the same port; the record is whole."""
    record = synthetic_record(6.0, leads=2)
    first = DeviceServer(tmp_path / "streams")
    async with serve(first._handle, "127.0.0.1", 0, process_request=first._authenticate) as srv:
        first.server = srv
        url = first.url
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        acked = asyncio.Event()
        task = asyncio.create_task(
            simulate(
                record, url=url, token=device_token(), device=DEVICE, speed=6.0,
                on_acked=lambda _: acked.set(),
            )
        )  # fmt: skip
        await asyncio.wait_for(acked.wait(), 30)  # mid-stream: something is stored
    await asyncio.sleep(0.3)  # the device retries against a closed port meanwhile
    second = DeviceServer(tmp_path / "streams")  # a new process would reopen the same folder
    async with serve(
        second._handle, "127.0.0.1", port, process_request=second._authenticate
    ) as srv:
        second.server = srv
        result = await asyncio.wait_for(task, 10)
    assert result.connections >= 2
    np.testing.assert_array_equal(stored_digital(second, result.stream), record.samples)


async def serve_forever(root: str, port: int) -> None:
    """Run the test endpoint until killed, printing its port (a server process for SIGKILL)."""
    state = DeviceServer(Path(root))
    async with serve(state._handle, "127.0.0.1", port, process_request=state._authenticate) as srv:
        state.server = srv
        print(state.url.rsplit(":", 1)[1].split("/")[0], flush=True)
        await asyncio.Future()


async def start_server_process(root: Path, port: int) -> tuple[asyncio.subprocess.Process, int]:
    """The test endpoint in its own process; returns it and its port once it listens."""
    code = (
        "import asyncio; from tests.teleconsult.test_device_cmd import serve_forever; "
        f"asyncio.run(serve_forever({str(root)!r}, {port}))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, cwd=REPO
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert line, "the server process did not start"
    return process, int(line)


async def test_server_killed_mid_stream_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL of the server process mid-stream, then a restart: the stored record is bit-exact."""
    record = synthetic_record(8.0)
    root = tmp_path / "streams"
    first, port = await start_server_process(root, 0)
    url = f"ws://127.0.0.1:{port}/device"
    acked = asyncio.Event()
    task = asyncio.create_task(
        simulate(
            record, url=url, token=device_token(), device=DEVICE, speed=8.0,
            on_acked=lambda _: acked.set(),
        )
    )  # fmt: skip
    processes = [first]
    try:
        await asyncio.wait_for(acked.wait(), 30)  # mid-stream: something is durable
        first.send_signal(signal.SIGKILL)
        await first.wait()
        (stream,) = (info.stream for info in StreamStore(root).streams())
        at_kill = StreamStore(root).info(stream).durable_samples
        assert 0 < at_kill < len(record.samples)
        second, _ = await start_server_process(root, port)
        processes.append(second)
        result = await asyncio.wait_for(task, 20)
    finally:
        task.cancel()
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert result.connections >= 2
    store = StreamStore(root)
    assert store.info(result.stream).total_samples == len(record.samples)
    stored = wfdb.rdrecord(str(store.record_path(result.stream)), physical=False).d_signal
    np.testing.assert_array_equal(stored, record.samples)


async def test_resuming_an_ended_stream_answers_at_once(device_server: DeviceServer) -> None:
    """Simulating again with the id of an ended stream finishes with no new samples."""
    record = synthetic_record(1.0, leads=1)
    options = {"url": device_server.url, "token": device_token(), "device": DEVICE}
    first = await simulate(record, speed=math.inf, **options)
    again = await simulate(record, speed=math.inf, stream=first.stream, **options)
    assert again.connections == 1
    np.testing.assert_array_equal(stored_digital(device_server, first.stream), record.samples)


async def test_refusals_end_the_run_with_the_reason(device_server: DeviceServer) -> None:
    """A bad token, a non-device token and another device's stream fail with a clear reason."""
    record = synthetic_record(0.5, leads=1)
    with pytest.raises(SimulationFailed, match="token"):
        await simulate(record, url=device_server.url, token="garbage", device=DEVICE)
    with pytest.raises(SimulationFailed, match="token"):
        await simulate(
            record, url=device_server.url, token=device_token(role="expert"), device=DEVICE
        )
    mine = await simulate(
        record, url=device_server.url, token=device_token(), device=DEVICE, speed=math.inf
    )
    with pytest.raises(SimulationFailed, match="stream_owned"):
        await simulate(
            record,
            url=device_server.url,
            token=device_token("cart-other"),
            device="cart-other",
            stream=mine.stream,
        )
    with pytest.raises(SimulationFailed, match="device_mismatch"):
        await simulate(record, url=device_server.url, token=device_token(), device="cart-other")


async def test_unreachable_server_gives_up() -> None:
    """With nothing listening, the device retries with backoff, then fails saying why."""
    record = synthetic_record(0.5, leads=1)
    with pytest.raises(SimulationFailed, match=r"no progress for 0\.5 s"):
        await simulate(
            record, url="ws://127.0.0.1:9/device", token="t", device=DEVICE, give_up_s=0.5
        )


async def test_takeover_closes_the_stale_connection(device_server: DeviceServer) -> None:
    """A second connection resuming the same stream supersedes the first, which is told."""
    from websockets.asyncio.client import connect

    from ecg.device import Start, Started, decode_server_message
    from tests.ecg.test_device import make_start

    start: Start = make_start(device=DEVICE)
    headers = {"Authorization": f"Bearer {device_token()}"}
    async with connect(device_server.url, additional_headers=headers) as old:
        await old.send(encode_message(start))
        assert isinstance(decode_server_message(await old.recv()), Started)
        async with connect(device_server.url, additional_headers=headers) as new:
            await new.send(encode_message(start))
            await new.recv()
            error = decode_server_message(await asyncio.wait_for(old.recv(), 5))
            assert isinstance(error, Error)
            assert error.code == "superseded"


def test_record_reading_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing or corrupt record fails the command with status 1 and the path in the reason."""
    with pytest.raises(ValueError, match="cannot read"):
        SimulatedRecord.read(str(tmp_path / "missing"))
    (tmp_path / "bad.hea").write_text("this is not a header\n")
    parser = argparse.ArgumentParser()
    device_cmd.register(parser.add_subparsers())
    args = parser.parse_args(
        ["device", "simulate", str(tmp_path / "bad"), "--url", "ws://127.0.0.1:9/device",
         "--token", device_token()]
    )  # fmt: skip
    assert args.handler(args) == 1
    assert "bad: cannot read the record" in capsys.readouterr().err
