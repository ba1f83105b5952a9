"""The durable stream store and the service that drives device sessions against it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import wfdb

from ecg.device import (
    Ack,
    End,
    Ended,
    Error,
    ErrorCode,
    Frame,
    Start,
    Started,
    StoreError,
    StreamRefused,
    encode_message,
)
from ecg.resume import Close, DeviceSession, Send
from ecg.streamstore import SAMPLES_FILE, Outgoing, StreamService, StreamStore
from tests.ecg.test_device import make_start
from tests.ecg.test_resume import block

DEVICE = "cart-0042"


def sent(outgoing: list[Outgoing]) -> list[object]:
    """The messages among the service's output."""
    return [item.message for item in outgoing if isinstance(item, Send)]


def stream_through_service(
    service: StreamService, start: Start, samples: npt.NDArray[np.int16], frame_samples: int
) -> DeviceSession:
    """Stream ``samples`` through a fresh session of ``service`` from its resume point."""
    session = DeviceSession(start.device)
    (started,) = sent(service.receive_text(session, encode_message(start)))
    assert isinstance(started, Started)
    for first in range(started.next_index, len(samples), frame_samples):
        frame = Frame(started.handle, first, samples[first : first + frame_samples])
        (ack,) = sent(service.receive_bytes(session, bytes(frame)))
        assert ack == Ack(start.stream, min(first + frame_samples, len(samples)))
    return session


def test_append_sync_reopen(tmp_path: Path) -> None:
    """Synced samples survive closing and reopening the store, and appending continues."""
    start = make_start()
    store = StreamStore(tmp_path)
    writer = store.open(DEVICE, start)
    writer.append(0, block(0, 5000))
    assert writer.sync() == 5000
    store.release(writer)
    reopened = StreamStore(tmp_path)
    writer = reopened.open(DEVICE, start)
    assert writer.durable == 5000
    writer.append(5000, block(5000, 10))
    writer.sync()
    np.testing.assert_array_equal(reopened.read_samples(start.stream), block(0, 5010))
    with pytest.raises(StoreError, match="continues at 5010"):
        writer.append(5000, block(5000, 10))


@pytest.mark.parametrize(
    "tail",
    [
        lambda good: good[:30],  # a frame cut inside its payload
        lambda good: good[:10],  # a frame cut inside its header
        lambda good: bytes(len(good)),  # the file grew but the data never arrived (zeros)
        lambda good: good[:-1] + b"\x00",  # the last byte is wrong
        lambda good: good,  # a frame that repeats an index (not contiguous)
    ],
)
def test_torn_tail_is_truncated_on_reopen(tmp_path: Path, tail) -> None:  # type: ignore[no-untyped-def]
    """A torn write past the last sync is detected by checksum and contiguity and cut off."""
    start = make_start()
    store = StreamStore(tmp_path)
    writer = store.open(DEVICE, start)
    writer.append(0, block(0, 100))
    writer.sync()
    store.release(writer)
    path = store.path(start.stream) / SAMPLES_FILE
    good_size = path.stat().st_size
    last = bytes(Frame(0, 0, block(0, 100)))
    with open(path, "ab") as file:
        file.write(tail(last))
    writer = StreamStore(tmp_path).open(DEVICE, start)
    assert writer.durable == 100
    assert path.stat().st_size == good_size
    writer.append(100, block(100, 7))
    writer.sync()
    np.testing.assert_array_equal(store.read_samples(start.stream), block(0, 107))


def test_killed_writer_keeps_every_synced_sample(tmp_path: Path) -> None:
    """A process killed with SIGKILL mid-stream leaves at least every synced sample, bit-exact."""
    start = make_start(leads=["I"], adc_gain=[200.0], baseline=[0])
    script = f"""
import sys
from ecg.streamstore import StreamStore
from ecg.device import decode_client_message
from tests.ecg.test_resume import block
start = decode_client_message({encode_message(start)!r})
writer = StreamStore({str(tmp_path)!r}).open("{DEVICE}", start)
first = 0
while True:
    writer.append(first, block(first, 50, leads=1))
    first += 50
    if first % 200 == 0:
        print(writer.sync(), flush=True)
"""
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.stdout is not None
    synced = [int(child.stdout.readline()) for _ in range(20)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    info = StreamStore(tmp_path).open(DEVICE, start)
    assert info.durable >= synced[-1]
    samples = StreamStore(tmp_path).read_samples(start.stream)
    np.testing.assert_array_equal(samples, block(0, len(samples), leads=1))


def test_owner_and_start_are_checked(tmp_path: Path) -> None:
    """Another device cannot open a stream id, nor the owner with changed parameters."""
    store = StreamStore(tmp_path)
    start = make_start()
    store.open(DEVICE, start)
    with pytest.raises(StreamRefused) as owned:
        store.open("cart-9999", make_start(device="cart-9999"))
    assert owned.value.code is ErrorCode.STREAM_OWNED
    with pytest.raises(StreamRefused) as changed:
        store.open(DEVICE, make_start(fs_hz=250.0))
    assert changed.value.code is ErrorCode.START_MISMATCH


def test_reopening_supersedes_the_old_writer(tmp_path: Path) -> None:
    """Only the newest writer of a stream may append."""
    store = StreamStore(tmp_path)
    old = store.open(DEVICE, make_start())
    new = store.open(DEVICE, make_start())
    with pytest.raises(StoreError, match="superseded"):
        old.append(0, block(0, 1))
    new.append(0, block(0, 1))


def test_synthetic_record_is_bit_exact(tmp_path: Path) -> None:
    """A stream of random int16 (extremes included) finalises to a WFDB record equal to it."""
    rng = np.random.default_rng(4)
    samples = rng.integers(-32768, 32768, size=(3001, 12)).astype(np.int16)
    samples[0] = -32768
    samples[1] = 32767
    start = make_start(baseline=list(range(-6, 6)), adc_gain=[100.0 + i for i in range(12)])
    service = StreamService(StreamStore(tmp_path))
    session = stream_through_service(service, start, samples, frame_samples=250)
    ended = sent(service.receive_text(session, encode_message(End(start.stream, len(samples)))))
    assert ended == [Ended(start.stream, len(samples))]
    record = wfdb.rdrecord(str(service.store.record_path(start.stream)), physical=False)
    np.testing.assert_array_equal(record.d_signal, samples)
    assert record.fs == start.fs_hz
    assert record.sig_name == start.leads
    assert record.adc_gain == start.adc_gain
    assert record.baseline == start.baseline
    assert f"patient: {start.patient}" in record.comments
    info = service.store.info(start.stream)
    assert info.ended
    assert info.total_samples == len(samples)


def test_record_files_are_those_wfdb_writes(tmp_path: Path) -> None:
    """The store writes the record's signal file itself (wfdb's writer packs one sample
    at a time: seconds for a long stream); header and signal file are byte for byte what
    ``wfdb.wrsamp`` writes from the same samples and fields (its checksums included)."""
    rng = np.random.default_rng(7)
    samples = rng.integers(-32768, 32768, size=(5003, 12)).astype(np.int16)
    samples[0], samples[-1] = -32768, 32767
    start = make_start(baseline=list(range(-6, 6)), adc_gain=[100.0 + i for i in range(12)])
    store = StreamStore(tmp_path / "store")
    writer = store.open(DEVICE, start)
    writer.append(0, samples)
    record = writer.finalise(len(samples))
    reference = tmp_path / "wfdb"
    reference.mkdir()
    wfdb.wrsamp(
        str(start.stream), fs=start.fs_hz, units=["mV"] * 12, sig_name=list(start.leads),
        d_signal=samples, fmt=["16"] * 12, adc_gain=list(start.adc_gain),
        baseline=list(start.baseline), comments=wfdb.rdheader(str(record)).comments,
        base_date=start.start_time.date(), base_time=start.start_time.time().replace(tzinfo=None),
        write_dir=str(reference),
    )  # fmt: skip
    for suffix in (".hea", ".dat"):
        ours = record.with_suffix(suffix).read_bytes()
        assert ours == (reference / f"{start.stream}{suffix}").read_bytes(), suffix


def test_mitdb_100_record_is_bit_exact_after_drops(ecg_dir: Path, tmp_path: Path) -> None:
    """MIT-BIH 100's first 30 s, with reconnects and a store restart, is stored bit-exact."""
    source = wfdb.rdrecord(str(ecg_dir / "mitdb" / "100"), physical=False, sampto=30 * 360)
    samples = source.d_signal.astype(np.int16)
    start = make_start(
        leads=source.sig_name,
        fs_hz=float(source.fs),
        adc_gain=[float(g) for g in source.adc_gain],
        baseline=[int(b) for b in source.baseline],
        resolution_bits=11,
    )
    third = len(samples) // 3
    service = StreamService(StreamStore(tmp_path))
    stream_through_service(service, start, samples[:third], frame_samples=36)
    service = StreamService(StreamStore(tmp_path))  # a server restart
    stream_through_service(service, start, samples[: 2 * third], frame_samples=100)
    session = stream_through_service(service, start, samples, frame_samples=360)
    end = encode_message(End(start.stream, len(samples)))
    assert sent(service.receive_text(session, end)) == [Ended(start.stream, len(samples))]
    stored = wfdb.rdrecord(str(service.store.record_path(start.stream)), physical=False)
    np.testing.assert_array_equal(stored.d_signal, source.d_signal)
    assert (stored.adc_gain, stored.baseline, stored.fs) == (
        source.adc_gain, source.baseline, source.fs
    )  # fmt: skip
    physical = wfdb.rdrecord(str(service.store.record_path(start.stream)))
    np.testing.assert_allclose(
        physical.p_signal, wfdb.rdrecord(str(ecg_dir / "mitdb" / "100"), sampto=30 * 360).p_signal
    )


def test_takeover_tells_the_old_connection(tmp_path: Path) -> None:
    """A device resuming on a new connection supersedes the old one, which is told and closed."""
    told: list[tuple[DeviceSession, list[Outgoing]]] = []
    service = StreamService(StreamStore(tmp_path), on_takeover=lambda s, out: told.append((s, out)))
    start = make_start()
    old = stream_through_service(service, start, block(0, 100), frame_samples=50)
    new = stream_through_service(service, start, block(0, 200), frame_samples=50)
    ((session, messages),) = told
    assert session is old
    error = messages[0]
    assert isinstance(error, Send)
    assert isinstance(error.message, Error)
    assert error.message.code == "superseded"
    assert isinstance(messages[-1], Close)
    assert service.receive_bytes(old, bytes(Frame(1, 100, block(100, 5)))) == []
    end = encode_message(End(start.stream, 200))
    assert sent(service.receive_text(new, end)) == [Ended(start.stream, 200)]


def test_group_commit_acks_on_flush(tmp_path: Path) -> None:
    """Frames received without sync are acked only by the next flush, per session."""
    service = StreamService(StreamStore(tmp_path))
    starts = [make_start(), make_start(stream=uuid.uuid4())]
    sessions = [DeviceSession(DEVICE) for _ in starts]
    for session, start in zip(sessions, starts, strict=True):
        (started,) = sent(service.receive_text(session, encode_message(start)))
        assert isinstance(started, Started)
        for first in (0, 50):
            frame = bytes(Frame(started.handle, first, block(first, 50)))
            assert service.receive_bytes(session, frame, sync=False) == []
    acks = {id(session): sent(out) for session, out in service.flush()}
    for session, start in zip(sessions, starts, strict=True):
        assert acks[id(session)] == [Ack(start.stream, 100)]
    assert service.flush() == []
    service.close()


def test_takeover_of_an_ended_stream_answers_ended(tmp_path: Path) -> None:
    """A device that missed ``ended`` and reconnects while the old connection lingers is told."""
    told: list[DeviceSession] = []
    service = StreamService(StreamStore(tmp_path), on_takeover=lambda s, out: told.append(s))
    start = make_start()
    old = stream_through_service(service, start, block(0, 30), frame_samples=10)
    service.receive_text(old, encode_message(End(start.stream, 30)))
    new = DeviceSession(DEVICE)
    assert sent(service.receive_text(new, encode_message(start))) == [Ended(start.stream, 30)]
    assert told == [old]


def test_storage_failure_is_an_internal_error_without_details(tmp_path: Path) -> None:
    """When the store fails under a session the device gets a generic internal error, a close."""
    service = StreamService(StreamStore(tmp_path))
    start = make_start()
    session = stream_through_service(service, start, block(0, 20), frame_samples=10)
    service.store.open(DEVICE, start)  # someone else takes the writer: appends now fail
    out = service.receive_bytes(session, bytes(Frame(1, 20, block(20, 10))))
    error = sent(out)[0]
    assert isinstance(error, Error)
    assert (error.code, error.reason) == ("internal", "internal server error; resume later")
    assert out[-1] == Close(1011, "internal error")
    assert service.store.info(start.stream).durable_samples == 20


def test_refused_start_and_lost_connection(tmp_path: Path) -> None:
    """Another device's stream id is refused; a lost connection keeps what was stored."""
    service = StreamService(StreamStore(tmp_path))
    start = make_start()
    session = stream_through_service(service, start, block(0, 10), frame_samples=10)
    service.connection_lost(session)
    thief = DeviceSession("cart-9999")
    out = service.receive_text(thief, encode_message(make_start(device="cart-9999")))
    error = sent(out)[0]
    assert isinstance(error, Error)
    assert error.code == "stream_owned"
    assert isinstance(out[-1], Close)
    assert service.store.info(start.stream).durable_samples == 10


class Recorder:
    """A StreamListener that keeps what it is told."""

    def __init__(self) -> None:
        self.appended: list[tuple[int, np.ndarray]] = []
        self.ended: list[Path] = []

    def samples_appended(self, start: Start, first_index: int, samples: np.ndarray) -> None:
        self.appended.append((first_index, samples.copy()))

    def stream_ended(self, start: Start, record: Path) -> None:
        self.ended.append(record)


async def test_split_commit_acks_only_what_its_fsync_covered(tmp_path: Path) -> None:
    """Frames arriving while a commit's fsyncs run in a thread are acked by the next commit."""
    service = StreamService(StreamStore(tmp_path))
    start = make_start()
    session = DeviceSession(DEVICE)
    (started,) = sent(service.receive_text(session, encode_message(start)))
    assert isinstance(started, Started)
    service.receive_bytes(session, bytes(Frame(started.handle, 0, block(0, 50))), sync=False)
    commit = service.begin_commit()
    running = asyncio.create_task(asyncio.to_thread(commit.run))
    service.receive_bytes(session, bytes(Frame(started.handle, 50, block(50, 50))), sync=False)
    await running
    ((who, out),) = service.end_commit(commit)
    assert who is session
    assert sent(out) == [Ack(start.stream, 50)]
    ((_, out),) = service.flush()
    assert sent(out) == [Ack(start.stream, 100)]
    service.close()


def test_listener_sees_each_sample_once_and_the_end(tmp_path: Path) -> None:
    """Despite resends and overlaps the listener gets every sample once, in order, then the end."""
    recorder = Recorder()
    service = StreamService(StreamStore(tmp_path), listener=recorder)
    start = make_start()
    session = DeviceSession(DEVICE)
    (started,) = sent(service.receive_text(session, encode_message(start)))
    assert isinstance(started, Started)
    for first, n in [(0, 50), (0, 50), (25, 50), (75, 25)]:
        service.receive_bytes(session, bytes(Frame(started.handle, first, block(first, n))))
    service.receive_text(session, encode_message(End(start.stream, 100)))
    assert [first for first, _ in recorder.appended] == [0, 50, 75]
    np.testing.assert_array_equal(np.concatenate([s for _, s in recorder.appended]), block(0, 100))
    assert recorder.ended == [service.store.record_path(start.stream)]


def test_export_copies_the_finalised_record(tmp_path: Path) -> None:
    """An ended stream exports as a readable WFDB record; an open one is refused."""
    service = StreamService(StreamStore(tmp_path / "store"))
    start = make_start()
    session = stream_through_service(service, start, block(0, 40), frame_samples=20)
    with pytest.raises(StoreError, match="not ended"):
        service.store.export(start.stream, tmp_path / "out")
    service.receive_text(session, encode_message(End(start.stream, 40)))
    path = service.store.export(start.stream, tmp_path / "out")
    exported = wfdb.rdrecord(str(path), physical=False)
    np.testing.assert_array_equal(exported.d_signal, block(0, 40))


def test_streams_lists_stored_streams(tmp_path: Path) -> None:
    """The store lists its streams with owner, durable count and end state."""
    service = StreamService(StreamStore(tmp_path))
    first, second = make_start(), make_start(stream=uuid.uuid4())
    stream_through_service(service, first, block(0, 30), frame_samples=10)
    session = stream_through_service(service, second, block(0, 20), frame_samples=10)
    service.receive_text(session, encode_message(End(second.stream, 20)))
    (tmp_path / "not-a-stream").mkdir()
    infos = {info.stream: info for info in service.store.streams()}
    assert set(infos) == {first.stream, second.stream}
    assert (infos[first.stream].durable_samples, infos[first.stream].ended) == (30, False)
    assert (infos[second.stream].total_samples, infos[second.stream].device) == (20, DEVICE)


def _bytes_read() -> int:
    """Bytes this process has read through read(2) and friends (Linux ``/proc/self/io``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")  # pragma: no cover


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_resume_reads_nothing_of_the_stored_signal(tmp_path: Path) -> None:
    """A device that drops and reconnects reopens its stream from what the store remembers:
    the resume reads none of the ~10 MB stored (the scan happens once, at the first open)."""
    start = make_start()
    samples = np.random.default_rng(7).integers(-3000, 3000, (400_000, 12)).astype(np.int16)
    service = StreamService(StreamStore(tmp_path))
    session = stream_through_service(service, start, samples[:399_000], frame_samples=1000)
    service.connection_lost(session)
    before = _bytes_read()
    session = stream_through_service(service, start, samples, frame_samples=1000)
    resume_read = _bytes_read() - before
    assert resume_read < 64 * 1024, f"the resume read {resume_read} bytes"
    end = encode_message(End(start.stream, len(samples)))
    assert sent(service.receive_text(session, end)) == [Ended(start.stream, len(samples))]
    stored = wfdb.rdrecord(str(service.store.record_path(start.stream)), physical=False)
    np.testing.assert_array_equal(stored.d_signal, samples)


def test_released_appends_are_synced_by_the_next_commit(tmp_path: Path) -> None:
    """Frames written but not yet acked when the connection went are not acked on it; the
    next group commit fsyncs them, and the resume continues after them."""
    service = StreamService(StreamStore(tmp_path))
    start = make_start()
    session = DeviceSession(DEVICE)
    (started,) = sent(service.receive_text(session, encode_message(start)))
    assert isinstance(started, Started)
    assert service.receive_bytes(session, bytes(Frame(started.handle, 0, block(0, 300))),
                                 sync=False) == []  # fmt: skip
    service.connection_lost(session)
    assert service.flush() == []  # synced, but nobody to ack
    again = DeviceSession(DEVICE)
    (resumed,) = sent(service.receive_text(again, encode_message(start)))
    assert isinstance(resumed, Started)
    assert resumed.next_index == 300
    np.testing.assert_array_equal(service.store.read_samples(start.stream), block(0, 300))


def test_supersede_keeps_what_the_old_writer_had_buffered(tmp_path: Path) -> None:
    """A writer superseded with appends still in its file buffer flushes them before the
    new writer measures the file: the stream continues after them, contiguous."""
    store = StreamStore(tmp_path)
    start = make_start()
    old = store.open(DEVICE, start)
    old.append(0, block(0, 10))  # a small frame: in the writer's buffer, not the file
    new = store.open(DEVICE, start)
    assert new.written == 10
    new.append(10, block(10, 5))
    new.sync()
    store.release(new)
    restarted = StreamStore(tmp_path)  # a scan of the file as a restart does it
    assert restarted.info(start.stream).durable_samples == 15
    np.testing.assert_array_equal(restarted.read_samples(start.stream), block(0, 15))


def test_torn_tail_found_at_start_is_cut_at_the_first_open(tmp_path: Path) -> None:
    """A torn tail (a crash mid-write) that the start-up listing found is cut off when the
    stream is next opened, and the stream continues from its last whole frame."""
    store = StreamStore(tmp_path)
    start = make_start()
    writer = store.open(DEVICE, start)
    writer.append(0, block(0, 100))
    writer.sync()
    store.release(writer)
    path = store.path(start.stream) / SAMPLES_FILE
    whole = path.stat().st_size
    with path.open("ab") as file:
        file.write(bytes(Frame(0, 100, block(100, 50)))[:-7])  # cut short by the crash
    restarted = StreamStore(tmp_path)
    (listed,) = restarted.streams()
    assert listed.durable_samples == 100
    reopened = restarted.open(DEVICE, start)
    assert reopened.durable == 100
    assert path.stat().st_size == whole
    reopened.append(100, block(100, 50))
    reopened.sync()
    np.testing.assert_array_equal(StreamStore(tmp_path).read_samples(start.stream), block(0, 150))


class GatedStore(StreamStore):
    """A store whose records wait for ``gate`` before they are written: the tests below
    act while a stream's record is being written in the service's finalise thread."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()

    def write_record(self, stream: uuid.UUID) -> Path:
        assert self.gate.wait(30), "the test never opened the gate"
        return super().write_record(stream)


def finish_records(service: StreamService) -> list[tuple[DeviceSession, list[object]]]:
    """Wait for the records being written, then what the next commit tells each session."""
    concurrent.futures.wait(service.records_in_progress(), timeout=30)
    return [(session, sent(out)) for session, out in service.flush()]


def test_a_record_is_written_off_the_caller_and_ended_at_the_next_commit(tmp_path: Path) -> None:
    """With finalise threads, ``end`` returns at once; the record is written in a thread
    and the next commit answers ``ended``, after the listener is told; the record holds
    every sample."""
    listener = Recorder()
    store = GatedStore(tmp_path)
    service = StreamService(store, listener=listener, finalise_threads=1)
    start = make_start()
    samples = block(0, 300)
    session = stream_through_service(service, start, samples, frame_samples=100)
    assert service.receive_text(session, encode_message(End(start.stream, 300))) == []
    assert service.flush() == []  # still being written: nothing to tell yet
    assert listener.ended == []
    store.gate.set()
    assert finish_records(service) == [(session, [Ended(start.stream, 300)])]
    assert listener.ended == [store.record_path(start.stream)]
    stored = wfdb.rdrecord(str(store.record_path(start.stream)), physical=False)
    np.testing.assert_array_equal(stored.d_signal, samples)
    assert service.flush() == []  # told once
    service.close()


def test_a_resume_while_the_record_is_written_is_answered_ended(tmp_path: Path) -> None:
    """A device that reconnects and resumes its stream while the record is being written
    waits for it and is answered ``ended`` with the total; the old connection, which
    sent the end, gets its ``ended`` and is then superseded."""
    told: list[DeviceSession] = []
    store = GatedStore(tmp_path)
    service = StreamService(
        store, on_takeover=lambda old, out: told.append(old), finalise_threads=1
    )
    start = make_start()
    old = stream_through_service(service, start, block(0, 200), frame_samples=100)
    assert service.receive_text(old, encode_message(End(start.stream, 200))) == []
    new = DeviceSession(DEVICE)
    assert service.receive_text(new, encode_message(start)) == []  # waits for the record
    store.gate.set()
    answers = finish_records(service)
    assert answers == [(old, [Ended(start.stream, 200)]), (new, [Ended(start.stream, 200)])]
    assert told == [old]
    assert store.info(start.stream).total_samples == 200
    service.close()


def test_a_connection_lost_while_the_record_is_written_keeps_the_record(tmp_path: Path) -> None:
    """The connection that ended a stream goes before its record is written: the record
    is written all the same, the listener told, the writer closed; a later resume is
    answered ``ended``."""
    listener = Recorder()
    store = GatedStore(tmp_path)
    service = StreamService(store, listener=listener, finalise_threads=1)
    start = make_start()
    session = stream_through_service(service, start, block(0, 200), frame_samples=100)
    service.receive_text(session, encode_message(End(start.stream, 200)))
    service.connection_lost(session)
    store.gate.set()
    assert finish_records(service) == [(session, [])]
    assert listener.ended == [store.record_path(start.stream)]
    again = DeviceSession(DEVICE)
    assert sent(service.receive_text(again, encode_message(start))) == [Ended(start.stream, 200)]
    service.close()


def test_closing_the_service_finishes_the_records_being_written(tmp_path: Path) -> None:
    """A server stopping while records are written waits for them and tells the listener
    (the finished stream is re-annotated and its end recorded)."""
    listener = Recorder()
    store = GatedStore(tmp_path)
    service = StreamService(store, listener=listener, finalise_threads=1)
    start = make_start()
    session = stream_through_service(service, start, block(0, 100), frame_samples=100)
    service.receive_text(session, encode_message(End(start.stream, 100)))
    store.gate.set()
    service.close()
    assert listener.ended == [store.record_path(start.stream)]
    assert StreamStore(tmp_path).info(start.stream).ended
