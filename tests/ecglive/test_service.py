"""The live ECG service (ecglive): jobs, LiveRunner, LiveWorkers and the chunking, with the
edge's viewer messages as the encoder."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import select
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from hypothesis import given
from hypothesis import strategies as st

from api.ws_ecg import ViewerCatalog, ViewerMessages
from ecg.device import Frame, Start, encode_message
from ecglive.service import (
    EcgService,
    EndJob,
    LiveJob,
    LiveOrder,
    LiveRunner,
    LiveWorkers,
    NoteJob,
    StartJob,
    StepJob,
)
from fixtures.make_fixtures import regular_beats, synthetic_ecg
from signaling import messages as m
from signaling.device import ViewerHub
from signaling.effects import EcgRequest

FS_HZ = 500.0
GAIN = 200.0  # ADC units per mV
CHUNK = 100


def _start() -> Start:
    return Start(
        version=1,
        device="cart-1",
        stream=uuid.uuid4(),
        patient="p-1",
        fs_hz=FS_HZ,
        leads=[f"L{i}" for i in range(12)],
        adc_gain=[GAIN] * 12,
        baseline=[0] * 12,
        resolution_bits=16,
        start_time=datetime(2026, 1, 1, tzinfo=UTC),
        room="r1",
    )


def _digital(duration_s: float) -> npt.NDArray[np.int16]:
    mv = synthetic_ecg(FS_HZ, duration_s, regular_beats(duration_s, 75.0))
    return np.round(mv * GAIN).astype(np.int16)


def _texts(start: Start, samples: npt.NDArray[np.int16], watched_from: int) -> list[str]:
    """Encoded results of every chunk, the first ``watched_from`` chunks unwatched."""
    runner = LiveRunner(ViewerMessages())
    stream = str(start.stream)
    runner.handle(StartJob(stream, encode_message(start).encode(), 0))
    texts = []
    for number, first in enumerate(range(0, len(samples), CHUNK)):
        block = samples[first : first + CHUNK]
        job = StepJob.of(stream, block, first + len(block), watched=number >= watched_from)
        for _, text, _, _ in runner.handle(pickle.loads(pickle.dumps(job))):
            texts.append(text)
    return texts


def test_only_chunks_that_make_no_flag_final_are_skippable() -> None:
    """A lagging viewer may be spared a chunk, never the one that makes a flag final
    (each flag comes once per stream), nor the end of the stream."""
    start = _start()
    samples = _digital(14.0)
    samples[int(3 * FS_HZ) : int(10 * FS_HZ), :] = 0  # every lead flat for 7 s, then back
    runner = LiveRunner(ViewerMessages())
    stream = str(start.stream)
    runner.handle(StartJob(stream, encode_message(start).encode(), 0))
    results = []
    for first in range(0, len(samples), CHUNK):
        block = samples[first : first + CHUNK]
        results += runner.handle(StepJob.of(stream, block, first + len(block)))
    results += runner.handle(EndJob(stream, len(samples)))
    data = [(json.loads(text), skippable) for _, text, skippable, _ in results]
    chunks = [(message, skippable) for message, skippable in data if message["type"] == "ecg_data"]
    assert all(skippable == (not message["flags"]) for message, skippable in chunks[:-1])
    assert any(message["flags"] for message, _ in chunks)
    assert sum(skippable for _, skippable in chunks) > len(chunks) // 2
    assert [skippable for message, skippable in data[-2:]] == [False, False]  # flush, end
    assert data[-1][0]["type"] == "ecg_ended"


def test_step_job_round_trips_its_block_through_pickle() -> None:
    """A StepJob pickled as a worker queue does gives back the int16 block, bit for bit."""
    block = _digital(1.0)[:CHUNK]
    job = pickle.loads(pickle.dumps(StepJob.of("s", block, CHUNK)))
    np.testing.assert_array_equal(job.samples(), block)
    assert job.samples().dtype == np.int16
    assert (job.received, job.watched) == (CHUNK, True)


def test_unwatched_chunks_are_annotated_but_not_encoded() -> None:
    """Unwatched chunks give no message, yet the watched ones after them are unchanged."""
    start = _start()
    samples = _digital(12.0)
    every = _texts(start, samples, watched_from=0)
    later = _texts(start, samples, watched_from=30)
    assert len(every) == len(samples) // CHUNK
    assert later == every[30:]
    assert any('"beats":[[' in text for text in later)  # beats still found after the gap


class _RecordingWorkers(LiveWorkers):
    """LiveWorkers that run nothing and keep every job submitted."""

    def __init__(self) -> None:
        super().__init__(lambda stream, text, skippable: None, encoder=ViewerMessages())
        self.jobs: list[LiveJob] = []

    def submit(self, job: LiveJob) -> None:
        self.jobs.append(job)


async def test_unwatched_streams_step_by_the_second_watched_ones_by_200_ms(
    tmp_path: Path,
) -> None:
    """Nobody watching: 1 s blocks; once a viewer subscribes: the pending part, then 200 ms."""
    service = EcgService(tmp_path, encoder=ViewerMessages(), chunk_s=0.2, idle_chunk_s=1.0)
    workers = service.workers = _RecordingWorkers()
    texts: list[str] = []
    hub = service.hub = ViewerHub(
        ViewerCatalog(service), lambda conn, text, skippable: texts.append(text)
    )
    start = _start()
    samples = _digital(3.0)
    link = service.connect(start.device, lambda out: None)
    assert json.loads(link.receive_text(encode_message(start))[0])["type"] == "started"
    frame = CHUNK // 2  # 100 ms frames
    for first in range(0, len(samples), frame):
        if first == 14 * frame:  # 1.4 s in: 0.4 s pending in the idle block
            hub.request(EcgRequest(1, "viewer", "r1", m.EcgSubscribe(stream=str(start.stream))))
        block = samples[first : first + frame]
        link.receive_bytes(Frame(1, first, block).serialize())
    steps = [job for job in workers.jobs if isinstance(job, StepJob)]
    # 1 s idle block; at 1.5 s the 0.4 s pending + that frame; then 200 ms blocks, the
    # last 100 ms still pending (the stream has not ended).
    assert [len(job.samples()) for job in steps] == [500, 250] + [100] * 7
    assert [job.watched for job in steps] == [False] + [True] * 8
    stepped = np.concatenate([job.samples() for job in steps])
    np.testing.assert_array_equal(stepped, samples[: len(samples) - frame])
    assert json.loads(texts[0])["type"] == "ecg_subscribed"
    service.close()


def _container_sizes(service: EcgService) -> dict[str, int]:
    return {
        name: len(value)
        for name, value in vars(service).items()
        if isinstance(value, list | dict | set)
    }


async def test_publishing_to_viewers_keeps_nothing_per_text(tmp_path: Path) -> None:
    """Each text reaches the viewer and leaves nothing behind in the service. A history
    per text is memory that grows while anyone watches: the latency list kept once for
    a benchmark that no longer read it took 3 MiB of the soak's first minutes (100,000
    floats, its cap, filled at 430-750 texts per second)."""
    service = EcgService(tmp_path, encoder=ViewerMessages())
    texts: list[str] = []
    skips: list[bool] = []

    def send(conn: int, text: str, skippable: bool) -> None:
        texts.append(text)
        skips.append(skippable)

    hub = service.hub = ViewerHub(ViewerCatalog(service), send)
    start = _start()
    link = service.connect(start.device, lambda out: None)
    link.receive_text(encode_message(start))
    link.receive_bytes(Frame(1, 0, _digital(1.0)[:CHUNK]).serialize())
    hub.request(EcgRequest(1, "viewer", "r1", m.EcgSubscribe(stream=str(start.stream))))
    assert json.loads(texts[0])["type"] == "ecg_subscribed"
    before = _container_sizes(service)
    for number in range(1000):
        service.workers.publish(str(start.stream), f"text {number}", number % 2 == 0)
    assert texts[1:] == [f"text {number}" for number in range(1000)]
    assert skips[1:] == [number % 2 == 0 for number in range(1000)]  # passed on as it came
    assert _container_sizes(service) == before
    service.close()


async def test_a_worker_process_returns_a_batch_of_jobs_in_order() -> None:
    """Jobs of one loop turn go to a worker process as a batch; results come back in order."""
    start = _start()
    stream = str(start.stream)
    samples = _digital(4.0)
    published: list[tuple[str, str]] = []
    done = asyncio.Event()

    def publish(to: str, text: str, skippable: bool) -> None:
        published.append((to, text))
        if '"ecg_ended"' in text:
            done.set()

    workers = LiveWorkers(publish, processes=1, encoder=ViewerMessages())
    try:
        workers.submit(StartJob(stream, encode_message(start).encode(), 0))
        for first in range(0, len(samples), CHUNK):
            workers.submit(StepJob.of(stream, samples[first : first + CHUNK], first + CHUNK))
        workers.submit(EndJob(stream, len(samples)))
        await asyncio.wait_for(done.wait(), 60.0)
    finally:
        workers.close()
    expected = _texts(start, samples, watched_from=0)
    kinds = [json.loads(text)["type"] for _, text in published]
    assert [text for _, text in published[: len(expected)]] == expected
    assert kinds[len(expected) :] == ["ecg_data", "ecg_ended"]  # the flush, then the end
    assert {to for to, _ in published} == {stream}


_BACKLOG_THEN_EXIT = """
import asyncio, sys, uuid
from datetime import UTC, datetime
import numpy as np
from ecg.device import Start, encode_message
from api.ws_ecg import ViewerMessages
from ecglive.service import LiveWorkers, StartJob, StepJob

async def main() -> None:
    start = Start(version=1, device="c", stream=uuid.uuid4(), patient="p", fs_hz=500.0,
                  leads=["I"], adc_gain=[200.0], baseline=[0], resolution_bits=16,
                  start_time=datetime.now(UTC))
    workers = LiveWorkers(lambda *args: None, processes=1, encoder=ViewerMessages())
    workers.submit(StartJob(str(start.stream), encode_message(start).encode(), 0))
    block = np.zeros((1, 1), np.int16)
    for k in range(30_000):  # seconds of work, and more bytes than a pipe holds
        workers.submit(StepJob.of(str(start.stream), block, k + 1, watched=False))
    await asyncio.sleep(0.5)
    workers.close(join_timeout_s=0.5)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_a_process_whose_worker_had_a_backlog_still_exits(tmp_path: Path) -> None:
    """close() terminates a busy worker and the process exits: no join of a stuck queue feeder."""
    script = tmp_path / "backlog.py"
    script.write_text(_BACKLOG_THEN_EXIT)
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(script)], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)},
        timeout=60, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


_WORKERS_WITH_A_BACKLOG = """
import asyncio, sys, uuid
from datetime import UTC, datetime
import numpy as np
from ecg.device import Start, encode_message
from api.ws_ecg import ViewerMessages
from ecglive.service import LiveWorkers, StartJob, StepJob

async def main() -> None:
    start = Start(version=1, device="c", stream=uuid.uuid4(), patient="p", fs_hz=500.0,
                  leads=["I"], adc_gain=[200.0], baseline=[0], resolution_bits=16,
                  start_time=datetime.now(UTC))
    workers = LiveWorkers(lambda *args: None, processes=1, encoder=ViewerMessages())
    workers.submit(StartJob(str(start.stream), encode_message(start).encode(), 0))
    block = (np.sin(np.arange(100) / 8.0) * 1000).astype(np.int16).reshape(100, 1)
    for k in range(3_000):  # watched: each step has a result to send back (~3 MB)
        workers.submit(StepJob.of(str(start.stream), block, 100 * (k + 1), watched=True))
    # Told once the batch is handed to the queue: the loop runs its callbacks in order,
    # and the batch's flush was scheduled first.
    pids = " ".join(str(w.pid) for w in workers._workers)
    asyncio.get_running_loop().call_soon(lambda: print(pids, flush=True))
    await asyncio.Event().wait()  # until killed

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_the_workers_of_a_killed_server_end(tmp_path: Path) -> None:
    """A server SIGKILLed (no close) while its worker has results to send back leaves no
    worker behind: the worker sees its parent gone and ends without waiting for its
    queue's feeder thread, stuck on a pipe nobody reads (waited on with a pidfd, the
    kernel's event of the process's end). Before, such a worker never ended."""
    script = tmp_path / "workers.py"
    script.write_text(_WORKERS_WITH_A_BACKLOG)
    repo = Path(__file__).resolve().parents[2]
    server = subprocess.Popen(
        [sys.executable, str(script)], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        pids = [int(pid) for pid in server.stdout.readline().split()]
        assert len(pids) == 1
        ends = [os.pidfd_open(pid) for pid in pids]
    finally:
        server.kill()
        server.wait()
    try:
        ready, _, _ = select.select(ends, [], [], 30.0)
        while len(ready) < len(ends):
            more, _, _ = select.select([e for e in ends if e not in ready], [], [], 30.0)
            assert more, "a worker outlived the killed server by 30 s"
            ready += more
    finally:
        for end in ends:
            os.close(end)


def _step(stream: str, number: int, *, watched: bool) -> StepJob:
    return StepJob(stream, b"", 12, number, watched)


def test_live_order_runs_a_watched_step_before_the_unwatched_burst() -> None:
    """Unwatched steps wait; a watched stream's step of the same batch runs at once."""
    order = LiveOrder()
    burst: list[LiveJob] = [_step(f"idle-{k}", k, watched=False) for k in range(100)]
    watched = _step("seen", 0, watched=True)
    assert order.add([*burst, watched]) == [watched]
    assert order
    deferred = [order.take_deferred() for _ in range(100)]
    assert deferred == [[job] for job in burst]  # the stream deferred longest first
    assert not order
    assert order.take_deferred() == []


def test_live_order_keeps_a_streams_jobs_in_order() -> None:
    """A start, end or note of a stream, or a step once a viewer came, runs after the
    stream's deferred steps."""
    order = LiveOrder()
    early = [_step("s", k, watched=False) for k in range(3)]
    assert order.add(list(early)) == []
    note = NoteJob("s", "{}")
    assert order.add([note]) == [*early, note]
    later = _step("s", 4, watched=False)
    end = EndJob("s", 5)
    assert order.add([later, end]) == [later, end]


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.sampled_from(["idle", "watched", "note"])),
        max_size=60,
    ),
    st.lists(st.integers(0, 5), max_size=60),
)
def test_live_order_runs_every_job_once_and_each_stream_in_order(
    arrivals: list[tuple[str, str]], batch_sizes: list[int]
) -> None:
    """Whatever the batches and the idle moments, every job runs exactly once and the
    jobs of one stream run in the order they came."""
    jobs: list[LiveJob] = []
    for number, (stream, kind) in enumerate(arrivals):
        if kind == "note":
            jobs.append(NoteJob(stream, str(number)))
        else:
            jobs.append(_step(stream, number, watched=kind == "watched"))
    order = LiveOrder()
    ran: list[LiveJob] = []
    rest = list(jobs)
    for size in batch_sizes:
        if size == 0:
            ran += order.take_deferred()  # the worker found its queue empty
        else:
            ran += order.add(rest[:size])
            rest = rest[size:]
    ran += order.add(rest)
    while order:
        ran += order.take_deferred()
    assert sorted(map(id, ran)) == sorted(map(id, jobs))
    for stream in "abc":
        assert [j for j in ran if j.stream == stream] == [j for j in jobs if j.stream == stream]
