"""The live ECG service: device sessions, stream storage, live annotation, viewer feed.

The ECG side of the edge's ``/device`` endpoint and of the viewers on ``/ws``: it
implements, structurally, the Protocols ``DeviceStreams`` and (through the edge's
adapter, ``api.ws_ecg``) ``EcgCatalog`` of ``signaling.ports``, on top of
:mod:`ecg.streamstore`, :mod:`ecg.live` and :mod:`ecg.annotate`. It imports nothing of
ours but ``ecg``: the viewers' JSON is written by a :class:`LiveEncoder` that the
wiring hands in (the edge's wire format), and viewers are reached through
:class:`Viewers`.

- Storage effects run on the event loop (writes only; fsyncs are group-committed in a
  thread by the endpoint).
- Live annotation runs in worker processes (one per CPU, at most 4; or in one thread), fed
  blocks of ~200 ms per watched stream and ~1 s per stream nobody watches
  (:class:`ecg.live.LiveChunker`); each stream is pinned to one worker, which keeps its
  state and encodes the viewers' JSON; results are handed back to the loop and
  broadcast. If annotation falls behind, acks do not: the device is never slowed by
  viewers.
- **Why one worker per CPU, not one fewer.** The event loop's process needs far less
  than a core (about 0.15 % of one per stream), the annotation the rest: with one fewer
  the single worker of a 2-core machine was the bottleneck (at commit 918f2bb, 200
  streams fell behind while the server used 135 % of the 200 %); with one per CPU the
  scheduler shares both cores between them.
- **Why unwatched streams step by 1 s.** A step's cost is mostly fixed (filters,
  detector, flags: 254 us for 200 ms of 12-lead 500 Hz, 475 us for 1 s, 40 streams
  interleaved, commit 9aa08f5), and nobody waits for the annotation of a stream nobody
  watches: stepping it every second costs 2.7 times less CPU per second of signal, and
  chunked equals batch, so its beats and flags are the same (at most 1 s later).
  A viewer who subscribes gets the next frame's block at once (the pending samples in
  one step), then 200 ms steps: the latency to a viewer is unchanged.
- **A viewer's step first**: a worker defers the steps of streams nobody watches
  until it has nothing else to do (:class:`LiveOrder`), so a watched stream's step
  never waits behind a burst of them.
- **Jobs travel in batches**: the jobs one turn of the event loop makes go to each
  worker as one message (a list), and a worker returns one list of results per batch.
  Per chunk, that saves the queue's lock, pipe write, wake-up and read on both sides.
- When a stream ends, the record is re-annotated by the batch engine in another worker
  thread (``ecg-batch``) and ``<stream>.qrs`` / ``<stream>.json`` are written beside it.
- A stream resumed after a server restart restarts its live pipeline at the resume
  index (beats and flags keep absolute indices; the filters settle within a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.process
import os
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from ecg.annotate import AnnotateConfig, Annotation, annotate
from ecg.device import Error as DeviceError
from ecg.device import ErrorCode, Start, encode_message
from ecg.errors import EcgError
from ecg.live import (
    LiveChunker,
    LiveConfig,
    LiveState,
    LiveUpdate,
    live_flush,
    live_start,
    live_step,
    live_warm_up,
)
from ecg.output import write_annotations
from ecg.record import read_record
from ecg.resume import Close, DeviceSession
from ecg.streamstore import Commit, Outgoing, StreamInfo, StreamService, StreamStore

logger = logging.getLogger(__name__)

# One event loop feeds the workers, and it tops out near 600 streams (~0.15 % of a core
# each on this machine), which 4 workers annotate with room to spare; more would only
# cost memory (~300 MB RSS each, numpy, scipy and numba loaded).
MAX_LIVE_PROCESSES: Final = 4
MESSAGE_TOO_BIG: Final = 1009  # WebSocket close code

# What the /device endpoint sends on a device's socket: a text message, or a close as
# (WebSocket close code, reason) (``signaling.ports.DeviceOutput``, restated here).
DeviceOutput = str | tuple[int, str]
StreamState = Literal["live", "ended", "finalised"]
EndState = Literal["ended", "finalised"]


def default_live_processes() -> int:
    """Worker processes for live annotation: one per CPU, at most :data:`MAX_LIVE_PROCESSES`."""
    return min(os.cpu_count() or 1, MAX_LIVE_PROCESSES)


@dataclass(frozen=True, kw_only=True)
class StreamSummary:
    """A stored or live stream as viewers and ``teleconsult ecg streams`` see it."""

    stream: str
    device: str
    patient: str | None
    consult: str | None
    room: str | None
    start_time: str  # UTC, ISO 8601 with Z
    fs_hz: float
    leads: list[str]
    samples: int
    duration_s: float
    state: StreamState


class LiveEncoder(Protocol):
    """Writes what viewers receive (the edge's JSON); must be picklable (worker processes)."""

    def data(
        self, start: Start, origin: int, display_origin: int, update: LiveUpdate, received: int
    ) -> str:
        """A live update of the stream ``start`` (``origin``: its first sample index)."""

    def ended(self, stream: str, samples: int, state: EndState) -> str:
        """The stream ended (``ended``) or its record was re-annotated (``finalised``)."""


class Viewers(Protocol):
    """Who watches which stream, and how to reach them (the edge's viewer hub)."""

    def subscribers(self, stream: str) -> int:
        """How many connections watch ``stream``."""

    def publish_text(self, stream: str, text: str, *, skippable: bool = False) -> None:
        """Send already encoded JSON to the stream's subscribers (never waits).

        ``skippable``: a live chunk that a subscriber whose connection lags may be spared
        (it then sees a gap in ``first_index``) rather than queue behind the others.
        """


class GroupCommit(Protocol):
    """The fsyncs of one commit (``signaling.ports.GroupCommit``)."""

    def run(self) -> None:
        """Make the written samples durable."""


def stream_state(store: StreamStore, info: StreamInfo) -> StreamState:
    """``live`` (not ended), ``ended`` (record written) or ``finalised`` (annotated too)."""
    if not info.ended:
        return "live"
    folder = store.path(info.stream)
    annotated = all((folder / f"{info.stream}{ext}").exists() for ext in (".qrs", ".json"))
    return "finalised" if annotated else "ended"


def stream_info(store: StreamStore, info: StreamInfo, samples: int | None = None) -> StreamSummary:
    """What viewers and ``teleconsult ecg streams`` show of a stored stream."""
    start = info.start
    n = info.durable_samples if samples is None else samples
    return StreamSummary(
        stream=str(info.stream),
        device=info.device,
        patient=start.patient,
        consult=start.consult,
        room=start.room,
        start_time=utc_text(start.start_time),
        fs_hz=start.fs_hz,
        leads=list(start.leads),
        samples=n,
        duration_s=round(n / start.fs_hz, 3),
        state=stream_state(store, info),
    )


def utc_text(moment: datetime) -> str:
    """``2026-12-02T09:30:00.123Z``: UTC, milliseconds, as on the wire."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _outputs(out: list[Outgoing]) -> list[DeviceOutput]:
    return [(o.code, o.reason) if isinstance(o, Close) else encode_message(o.message) for o in out]


@dataclass(eq=False)
class Link:
    """One device connection: a :class:`DeviceSession` driven by the service.

    The ``DeviceLink`` of ``signaling.ports``, structurally.
    """

    service: StreamService
    session: DeviceSession
    superseded: Callable[[list[DeviceOutput]], None]

    def receive_text(self, text: str) -> list[DeviceOutput]:
        """A text message from the device; what to send back."""
        return _outputs(self.service.receive_text(self.session, text))

    def receive_bytes(self, data: bytes) -> list[DeviceOutput]:
        """A binary frame: stored now, acked by a later commit."""
        return _outputs(self.service.receive_bytes(self.session, data, sync=False))

    @property
    def received_signal_s(self) -> float:
        """Seconds of signal taken on this connection so far (the edge's pacing)."""
        return self.session.received_signal_s

    def connection_lost(self) -> None:
        """The socket is gone: release the streams (they stay resumable)."""
        self.service.connection_lost(self.session)

    def too_large(self, size_bytes: int, limit_bytes: int) -> list[DeviceOutput]:
        """The fatal error for a message over the transport's limit, then close 1009."""
        reason = f"a message of {size_bytes} bytes is over the limit of {limit_bytes}"
        error = DeviceError(code=ErrorCode.FRAME_TOO_LARGE, reason=reason, fatal=True)
        return [encode_message(error), (MESSAGE_TOO_BIG, "message too big")]


@dataclass
class _Feed:
    """What the loop keeps of a stream's live pipeline: where it started, its chunker."""

    start: Start
    stream: str  # str(start.stream), made once (a UUID's str costs ~1 us per frame)
    origin: int  # the first sample the pipeline saw (0, or the resume index)
    chunker: LiveChunker
    watched_samples: int  # block size while someone watches the stream
    idle_samples: int  # block size while nobody does
    received: int = 0


@dataclass
class _Live:
    """The live pipeline of one stream, where the annotation runs."""

    start: Start
    origin: int
    display_origin: int
    state: LiveState


# Jobs for the live annotation; picklable, since they may go to worker processes.


@dataclass(frozen=True)
class StartJob:
    """Open a stream's pipeline at sample ``origin`` (``start``: the start message JSON)
    with the server's live settings ``config`` (the mains notch)."""

    stream: str
    start: bytes
    origin: int
    config: LiveConfig = field(default_factory=LiveConfig)


@dataclass(frozen=True, eq=False)
class StepJob:
    """Annotate a block; ``received`` samples had come.

    The block travels as its int16 bytes, row-major with ``n_leads`` columns: pickling
    them costs 1 us where pickling the ndarray cost 13 us, on the event loop's process
    (the queue's feeder thread) for every chunk of every stream.
    """

    stream: str
    block: bytes
    n_leads: int
    received: int
    watched: bool = True  # False: annotate (the state moves on) but encode nothing

    @classmethod
    def of(
        cls,
        stream: str,
        block: npt.NDArray[np.int16],
        received: int,
        *,
        watched: bool = True,
    ) -> StepJob:
        """The job for ``block``, shape (n, leads)."""
        data = np.ascontiguousarray(block, dtype=np.int16).tobytes()
        return cls(stream, data, block.shape[1], received, watched)

    def samples(self) -> npt.NDArray[np.int16]:
        """The block, shape (n, leads) (read-only)."""
        return np.frombuffer(self.block, dtype=np.int16).reshape(-1, self.n_leads)


@dataclass(frozen=True)
class EndJob:
    """The stream ended with ``received`` samples."""

    stream: str
    received: int


@dataclass(frozen=True)
class NoteJob:
    """Pass ``text`` to the stream's viewers after the jobs queued before it."""

    stream: str
    text: str


LiveJob = StartJob | StepJob | EndJob | NoteJob
# (stream, encoded JSON for the viewers ("" when nobody watches), whether a lagging viewer
# may be spared it (a chunk that makes no flag final: the next one carries the heart rate
# and the provisional flags anew), the codes of the critical values this step proves:
# _critical_codes)
LiveResult = tuple[str, str, bool, tuple[str, ...]]


class LiveRunner:
    """Runs live jobs for many streams (in a thread, or inside a worker process).

    Parameters
    ----------
    encoder : LiveEncoder
        Writes the viewers' JSON (picklable: it travels to the worker processes).
    """

    def __init__(self, encoder: LiveEncoder) -> None:
        self.encoder = encoder
        self.lives: dict[str, _Live | None] = {}

    def handle_all(self, batch: list[LiveJob]) -> list[LiveResult]:
        """Run a batch of jobs in order; their results, in order."""
        out: list[LiveResult] = []
        for job in batch:
            out += self.handle(job)
        return out

    def handle(self, job: LiveJob) -> list[LiveResult]:
        """Run one job; never raises (a failing stream loses its live view only)."""
        try:
            if isinstance(job, StartJob):
                start = msgspec.json.decode(job.start, type=Start)
                self.lives[job.stream] = _open_live(start, job.origin, job.config)
                return []
            if isinstance(job, StepJob):
                return self._step(job)
            if isinstance(job, NoteJob):
                return [(job.stream, job.text, False, ())]
            return self._end(job)
        except Exception:
            logger.exception("stream %s: live annotation failed", job.stream)
            self.lives[job.stream] = None
            return []

    def _step(self, job: StepJob) -> list[LiveResult]:
        live = self.lives.get(job.stream)
        if live is None:
            return []
        update, live.state = live_step(job.samples(), live.state)
        critical = _critical_codes(update)
        if not job.watched:
            # Critical findings are told whether anyone watches (the reading task).
            return [(job.stream, "", True, critical)] if critical else []
        text = self._encode(live, update, job.received)
        return [(job.stream, text, not update.flags, critical)]

    def _end(self, job: EndJob) -> list[LiveResult]:
        live = self.lives.pop(job.stream, None)
        out: list[LiveResult] = []
        if live is not None:
            update = live_flush(live.state)
            critical = _critical_codes(update)
            out.append((job.stream, self._encode(live, update, job.received), False, critical))
        ended = self.encoder.ended(job.stream, job.received, "ended")
        return [*out, (job.stream, ended, False, ())]

    def _encode(self, live: _Live, update: LiveUpdate, received: int) -> str:
        return self.encoder.data(live.start, live.origin, live.display_origin, update, received)


class LiveOrder:
    """The order a worker runs its jobs in: what a viewer waits for first.

    A step of a stream nobody watches is deferred (:meth:`add` keeps it) and run when
    the worker has nothing else to do (:meth:`take_deferred`, the stream deferred
    longest first). Every other job (a watched step, a start, an end, a note) runs at
    once, after the deferred jobs of its own stream: a stream's jobs always run in the
    order they came. Why: the 1 s steps of the unwatched streams come due together
    (carts started together), and 100 of them cost a worker ~110 ms; run in arrival
    order, a viewer's 200 ms step waited behind them (live p95 56 ms against 20 ms at
    200 carts, bench/api.py --part edge). Nobody waits for an unwatched step but a
    critical value, and the deferred steps run as soon as the worker is free: within
    the same second unless the worker cannot keep up at all.
    """

    __slots__ = ("_deferred",)

    def __init__(self) -> None:
        self._deferred: dict[str, list[LiveJob]] = {}

    def __bool__(self) -> bool:
        return bool(self._deferred)

    def add(self, batch: list[LiveJob]) -> list[LiveJob]:
        """Take a batch; the jobs to run now, in order (the rest are deferred)."""
        now: list[LiveJob] = []
        for job in batch:
            if isinstance(job, StepJob) and not job.watched:
                self._deferred.setdefault(job.stream, []).append(job)
                continue
            waiting = self._deferred.pop(job.stream, None)
            if waiting:
                now += waiting
            now.append(job)
        return now

    def take_deferred(self) -> list[LiveJob]:
        """The deferred jobs of the stream deferred longest (empty when none is)."""
        if not self._deferred:
            return []
        stream = next(iter(self._deferred))
        return self._deferred.pop(stream)


def _critical_codes(update: LiveUpdate) -> tuple[str, ...]:
    """The codes of the critical values proven so far by this step: final, and going on
    now (a pause past its limit without its next beat yet, VF), once each."""
    return tuple(dict.fromkeys(c.code for c in (*update.critical, *update.provisional_critical)))


def _open_live(start: Start, origin: int, config: LiveConfig) -> _Live | None:
    try:
        state = live_start(start.fs_hz, start.adc_gain, start.baseline, config)
    except EcgError as error:
        logger.warning("stream %s: no live annotation: %s", start.stream, error)
        return None
    return _Live(start, origin, origin // state.factor, state)


def _live_worker(
    jobs: multiprocessing.Queue[list[LiveJob] | None], results: Any, encoder: LiveEncoder
) -> None:
    """A worker process: run batches of jobs until None, put each batch's results as one list.

    It also ends when the server process is gone (killed): an orphan would keep the
    server's standard streams open, hold its few hundred MB and annotate for nobody
    (seen after a SIGKILL under load: a worker holding 430 MB 25 minutes later). Two
    things kept it: a batch the server was writing when it died leaves a message cut
    short, and the worker's read of it waited for the rest for ever, since the worker
    held the write end of its own jobs pipe (a queue sent to a process brings both
    ends) and so never saw the end of file; and its last results, stuck in its queue's
    feeder thread on a full pipe nobody reads, which the process waits for on its way
    out. So the worker closes its copy of the jobs' write end (it never puts there), a
    read that meets the end of file ends it, and it does not wait for that thread.
    """
    jobs._writer.close()  # type: ignore[attr-defined]  # the queue's pipe; see above
    _warm_up()
    runner = LiveRunner(encoder)
    order = LiveOrder()
    parent = multiprocessing.parent_process()
    while True:
        try:
            # With deferred work, only look whether a batch came (see LiveOrder).
            batch = jobs.get(timeout=1.0) if not order else jobs.get_nowait()
        except queue.Empty:
            if order:
                out = runner.handle_all(order.take_deferred())
            elif parent is not None and not parent.is_alive():
                results.cancel_join_thread()
                return
            else:
                continue
        except (EOFError, OSError):  # the server died, maybe in the middle of a batch
            results.cancel_join_thread()
            return
        else:
            if batch is None:
                return
            out = runner.handle_all(order.add(batch))
        if out:
            results.put(out)


def _warm_up() -> None:
    """Load the live pipeline's compiled kernels before the first stream (a failure only logs)."""
    try:
        live_warm_up()
    except Exception:
        logger.exception("live annotation warm-up failed")


class LiveWorkers:
    """Where live annotation runs: one thread (``processes=0``) or worker processes.

    In processes, each stream is pinned to one worker (its state lives there) and the
    worker encodes the viewers' JSON, so the event loop's process only moves bytes;
    with N cores, N workers annotate in parallel (numpy work under one GIL would not).
    Jobs submitted during one turn of the event loop go to each worker as one batch.
    ``publish(stream, text, skippable)`` is called on the loop's thread (``skippable``:
    a live chunk a lagging viewer may be spared, see :meth:`Viewers.publish_text`), and so is
    ``on_critical(stream, codes)`` when a step proves critical values (final, or going
    on now), watched or not: the same code may come again with later steps.
    """

    def __init__(
        self,
        publish: Callable[[str, str, bool], None],
        processes: int = 0,
        *,
        encoder: LiveEncoder,
    ) -> None:
        self.publish = publish
        self.on_critical: Callable[[str, tuple[str, ...]], None] | None = None
        self.processes = processes
        self.encoder = encoder
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._runner = LiveRunner(encoder)
        self._queues: list[multiprocessing.Queue[list[LiveJob] | None]] = []
        self._workers: list[multiprocessing.process.BaseProcess] = []
        self._results: Any = None
        self._reader: threading.Thread | None = None
        self._batches: list[list[LiveJob]] = [[] for _ in range(max(1, processes))]
        self._flush_due = False

    def submit(self, job: LiveJob) -> None:
        """Queue a job (from the loop's thread); its results are published in order.

        The job leaves with the others of this turn of the event loop.
        """
        self.begin()
        index = hash(job.stream) % self.processes if self.processes else 0
        self._batches[index].append(job)
        if not self._flush_due:
            self._flush_due = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        for index, batch in enumerate(self._batches):
            if not batch:
                continue
            self._batches[index] = []
            if self.processes:
                self._queues[index].put(batch)
            elif self._thread is not None:
                self._thread.submit(self._run_here, batch)

    def close(self, join_timeout_s: float = 5.0) -> None:
        """Stop the workers (pending jobs are dropped: only the live view loses them).

        A worker that has not ended ``join_timeout_s`` after its end marker (busy with a
        backlog, or still loading its kernels) is terminated. Its queue's feeder thread
        may then be stuck writing jobs nobody will read into a full pipe: the queue is
        told not to join it, or this process could never exit.
        """
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)
        for jobs in self._queues:
            jobs.put(None)
        for worker in self._workers:
            worker.join(join_timeout_s)
            if worker.is_alive():
                worker.terminate()
                worker.join(join_timeout_s)
        for jobs in self._queues:
            jobs.cancel_join_thread()
        if self._results is not None:
            self._results.put(None)
        if self._reader is not None:
            self._reader.join(join_timeout_s)

    @property
    def started(self) -> bool:
        """Whether the thread or the processes have been started."""
        return self._loop is not None

    def begin(self) -> None:
        """Start the thread or the processes, if not yet (from the loop's thread)."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        if not self.processes:
            self._thread = ThreadPoolExecutor(1, "ecg-live")
            self._thread.submit(_warm_up)
            return
        # forkserver: never fork this process (threads, sockets, an event loop).
        context = multiprocessing.get_context("forkserver")
        self._results = context.Queue()
        for index in range(self.processes):
            jobs: multiprocessing.Queue[list[LiveJob] | None] = context.Queue()
            worker = context.Process(
                target=_live_worker,
                args=(jobs, self._results, self.encoder),
                name=f"ecg-live-{index}",
            )
            worker.daemon = True
            worker.start()
            self._queues.append(jobs)
            self._workers.append(worker)
        self._reader = threading.Thread(target=self._read, name="ecg-live-results", daemon=True)
        self._reader.start()

    def _run_here(self, batch: list[LiveJob]) -> None:
        self._hand_over(self._runner.handle_all(batch))

    def _read(self) -> None:
        while (results := self._results.get()) is not None:
            self._hand_over(results)

    def _hand_over(self, results: list[LiveResult]) -> None:
        loop = self._loop
        if results and loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._publish_all, results)

    def _publish_all(self, results: list[LiveResult]) -> None:
        for stream, text, skippable, critical in results:
            if text:
                self.publish(stream, text, skippable)
            if critical and self.on_critical is not None:
                try:
                    self.on_critical(stream, critical)
                except Exception:  # the viewers' results must still be published
                    logger.exception("stream %s: a live critical finding was not told", stream)


class EcgService:
    """The ECG side of ``/device`` and of the viewers (see the module notes).

    Parameters
    ----------
    root : Path
        Where streams are stored.
    encoder : LiveEncoder
        Writes the viewers' JSON (the edge's wire format).
    chunk_s : float
        Signal per live step of a stream someone watches, in s.
    idle_chunk_s : float
        Signal per live step of a stream nobody watches, in s (see the module notes).
    live_processes : int
        Worker processes for live annotation (0: one thread in this process).
    live_config : LiveConfig, optional
        The live pipeline's settings (the server's ``[ecg]``); the engine's defaults.
    annotate_config : AnnotateConfig, optional
        The batch re-annotation's settings when a stream ends; the engine's defaults.
    """

    def __init__(
        self,
        root: Path,
        *,
        encoder: LiveEncoder,
        chunk_s: float = 0.2,
        idle_chunk_s: float = 1.0,
        live_processes: int = 0,
        live_config: LiveConfig | None = None,
        annotate_config: AnnotateConfig | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.store = StreamStore(root)
        # What viewers list, kept in memory so that a listing never reads the disk on the
        # event loop: every stored stream once at start (the scan of unfinished ones
        # included), then updated as streams start and end.
        self._catalog: dict[uuid.UUID, StreamInfo] = {i.stream: i for i in self.store.streams()}
        # A stream's WFDB record is written off the event loop (a long one takes a while);
        # its ``ended`` goes out with a group commit after that.
        self.service = StreamService(
            self.store, listener=self, on_takeover=self._takeover, finalise_threads=2
        )
        self.chunk_s = chunk_s
        self.idle_chunk_s = idle_chunk_s
        self.live_config = live_config or LiveConfig()
        self.annotate_config = annotate_config or AnnotateConfig()
        self.hub: Viewers | None = None
        self.encoder = encoder
        self._links: dict[DeviceSession, Link] = {}
        self._live: dict[uuid.UUID, _Feed] = {}
        self.workers = LiveWorkers(self._publish_text, live_processes, encoder=encoder)
        self._batch_pool = ThreadPoolExecutor(1, "ecg-batch")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ended: dict[uuid.UUID, StreamSummary] = {}
        # Told ("stream.started" | "stream.resumed" | "stream.ended", start): the audit trail.
        self.on_stream: Callable[[str, Start], None] | None = None
        # Told (start, annotation) once a finished stream's record is annotated, from the
        # batch thread (blocking work may be done there): the reading tasks' findings.
        self.on_annotated: Callable[[Start, Annotation], None] | None = None

    # -- DeviceStreams -------------------------------------------------------------

    def connect(self, device_id: str, superseded: Callable[[list[DeviceOutput]], None]) -> Link:
        self._loop = asyncio.get_running_loop()
        self.workers.begin()  # worker processes take a second or two to import numpy
        link = Link(self.service, DeviceSession(device_id), superseded)
        self._links[link.session] = link
        return link

    def begin_commit(self) -> GroupCommit:
        return self.service.begin_commit()

    def end_commit(self, commit: GroupCommit) -> list[tuple[Link, list[DeviceOutput]]]:
        assert isinstance(commit, Commit)
        acks: list[tuple[Link, list[DeviceOutput]]] = []
        for session, out in self.service.end_commit(commit):
            link = self._links.get(session)
            if link is not None:
                acks.append((link, _outputs(out)))
        for session in [s for s in self._links if s.closed]:
            del self._links[session]
        return acks

    def close(self) -> None:
        self.service.close()
        self.workers.close()
        self._batch_pool.shutdown(wait=True)

    def _takeover(self, old: DeviceSession, out: list[Outgoing]) -> None:
        link = self._links.get(old)
        if link is not None:
            link.superseded(_outputs(out))

    # -- StreamListener -------------------------------------------------------------

    def samples_appended(
        self, start: Start, first_index: int, samples: npt.NDArray[np.int16]
    ) -> None:
        feed = self._live.get(start.stream)
        if feed is None or feed.origin + feed.received != first_index:
            feed = self._open_feed(start, first_index)
        feed.received += len(samples)
        watched = self.hub is not None and self.hub.subscribers(feed.stream) > 0
        feed.chunker.chunk_samples = feed.watched_samples if watched else feed.idle_samples
        block = feed.chunker.push(samples)
        if block is not None:
            self._step(feed, block, watched=watched)

    def _open_feed(self, start: Start, first_index: int) -> _Feed:
        """A fresh pipeline from ``first_index`` (a new stream, or resumed after a restart)."""
        stream = str(start.stream)
        chunker = LiveChunker(start.n_leads, start.fs_hz, self.chunk_s)
        idle = max(1, round(self.idle_chunk_s * start.fs_hz))
        feed = _Feed(start, stream, first_index, chunker, chunker.chunk_samples, idle)
        self._live[start.stream] = feed
        if start.stream not in self._catalog:
            self._catalog[start.stream] = StreamInfo(
                start.stream, start.device, start, first_index, None
            )
        start_job = StartJob(stream, encode_message(start).encode(), first_index, self.live_config)
        self.workers.submit(start_job)
        if self.on_stream is not None:
            self.on_stream("stream.started" if first_index == 0 else "stream.resumed", start)
        return feed

    def stream_ended(self, start: Start, record: Path) -> None:
        feed = self._live.pop(start.stream, None)
        if feed is not None:
            block = feed.chunker.take()
            if block is not None:
                watched = self.hub is not None and self.hub.subscribers(feed.stream) > 0
                self._step(feed, block, watched=watched)
            received = feed.origin + feed.received
            self.workers.submit(EndJob(feed.stream, received))
            known = self._catalog.get(start.stream)
            if known is not None:
                self._catalog[start.stream] = dataclasses.replace(
                    known, durable_samples=received, total_samples=received
                )
        if self.on_stream is not None:
            self.on_stream("stream.ended", start)
        self._batch_pool.submit(self._reannotate, start, record)

    # -- EcgCatalog --------------------------------------------------------------------

    def ecg_streams(self) -> list[StreamSummary]:
        infos = sorted(self._catalog.values(), key=lambda info: info.start.start_time)
        return [self._info(info) for info in infos]

    def ecg_stream(self, stream: str) -> StreamSummary | None:
        try:
            info = self._catalog.get(uuid.UUID(stream))
        except ValueError:
            return None
        return None if info is None else self._info(info)

    def _info(self, info: StreamInfo) -> StreamSummary:
        if info.stream in self._ended:
            return self._ended[info.stream]
        live = self._live.get(info.stream)
        described = stream_info(
            self.store, info, None if live is None else live.origin + live.received
        )
        if described.state == "finalised":
            self._ended[info.stream] = described
        return described

    # -- the live pipeline --------------------------------------------------------------

    def _step(self, feed: _Feed, block: npt.NDArray[np.int16], *, watched: bool) -> None:
        received = feed.origin + feed.received
        # Most streams have no viewer most of the time: their chunks are annotated but
        # not encoded nor sent back (a sixth of a worker's time per chunk, and the result
        # queue's traffic on the loop's process). A viewer who subscribes gets the next
        # chunk on, which carries the heart rate and the provisional flags anew.
        job = StepJob.of(feed.stream, block, received, watched=watched)
        self.workers.submit(job)

    def _publish_text(self, stream: str, text: str, skippable: bool) -> None:
        if self.hub is not None:
            self.hub.publish_text(stream, text, skippable=skippable)

    def _publish_finalised(self, stream: str, samples: int) -> None:
        """From the batch thread: after the stream's live output (same worker queue)."""
        loop = self._loop
        job = NoteJob(stream, self.encoder.ended(stream, samples, "finalised"))
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.workers.submit, job)

    def _reannotate(self, start: Start, record: Path) -> None:
        try:
            annotation = annotate(read_record(record), self.annotate_config)
            write_annotations(annotation, record.parent)
        except Exception:
            logger.exception("stream %s: batch annotation failed", start.stream)
            return
        self._publish_finalised(str(start.stream), annotation.n_samples)
        if self.on_annotated is not None:
            try:
                self.on_annotated(start, annotation)
            except Exception:
                logger.exception("stream %s: an annotation listener failed", start.stream)
