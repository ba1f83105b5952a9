"""Durable, append-only storage of device streams, and the service that drives sessions.

Layout, one folder per stream under the store's root::

    <root>/<stream uuid>/start.json      owner device and the start message (atomic write)
    <root>/<stream uuid>/samples.ecgf    the samples: wire frames (handle 0), back to back
    <root>/<stream uuid>/end.json        total samples, written last when the stream ends
    <root>/<stream uuid>/<uuid>.hea/.dat the finalised WFDB record (format 16)

Design notes
------------
- **The sample file is a sequence of protocol frames** (:class:`ecg.device.Frame`,
  handle 0): each carries its first sample index and a CRC-32, so the store needs no
  index file and no format of its own. On open the file is scanned; the first frame that
  is short, fails its checksum or does not continue where the previous one stopped
  marks a torn tail (a crash during a write that was never acknowledged), and the file
  is truncated there. Scanning reads the file once (about 1 GB/s for CRC-32).
- **Durable before acknowledged.** :meth:`StreamWriter.append` only writes;
  :meth:`StreamWriter.sync` fsyncs and returns the durable index, which is what the
  session acks. Metadata files are written to a temporary name, fsynced, renamed and
  the folder fsynced, so they are either whole or absent.
- **Finalisation writes the WFDB record before ``end.json``**: a crash in between leaves
  the stream open, the device resends ``end`` and the record is written again. An
  endpoint on an event loop has :class:`StreamService` write it in threads of its own
  (``finalise_threads``): 150 carts ending together would otherwise hold the loop for
  their records' whole writing; ``ended`` is then answered by a group commit.
- **One writer per stream.** A second :meth:`StreamStore.open` of a stream (the device
  reconnected before the server noticed the old connection was dead) supersedes the
  first writer, whose next use raises; :class:`StreamService` tells the old connection.
- **Group commit.** With many streams an fsync per frame does not scale (a few ms
  each here); :class:`StreamService` can defer acks and fsync every written stream
  together, in parallel threads, off the event loop (:meth:`StreamService.begin_commit`).
- Samples are bit-exact: the store never converts them; WFDB format 16 holds int16
  as is, with the gain and baseline of the start message.
- One process owns a store root: writers are tracked in memory, so two server
  processes must not share one folder (several nodes each keep their own streams).
- **A resume costs the same whatever is stored.** The store remembers where each
  stream's sample file ends (its :class:`_Tail`: samples, bytes, whether fsynced) once
  it has scanned it or a writer of it has closed, and its start record once read. A
  device that drops and reconnects (every few seconds on a poor line) reopens its stream
  from there: no scan of the file, no read of ``start.json``, no fsync when what was
  written is already durable. The scan, which is proportional to the stored signal (a
  30-minute 12-lead stream is 9,000 frames, ~100 ms of the event loop), is done once per
  stream per process: at start, or at its first open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from ecg.device import (
    FRAME_HEADER_BYTES,
    ErrorCode,
    Frame,
    FrameError,
    Start,
    StoreError,
    StreamRefused,
    frame_size,
)
from ecg.resume import Append, Close, DeviceSession, Effect, Finalise, Open, Release, Send

__all__ = [
    "Commit",
    "Outgoing",
    "PendingSync",
    "StreamInfo",
    "StreamListener",
    "StreamService",
    "StreamStore",
    "StreamWriter",
]

log = logging.getLogger(__name__)

SAMPLES_FILE: Final = "samples.ecgf"
START_FILE: Final = "start.json"
END_FILE: Final = "end.json"
# Frames in the store are at most this long, so one append of a long block is split.
_STORE_FRAME_SAMPLES: Final = 4096

Int16Array = npt.NDArray[np.int16]


class _StartRecord(msgspec.Struct, forbid_unknown_fields=True):
    device: str
    start: Start


class _EndRecord(msgspec.Struct, forbid_unknown_fields=True):
    total_samples: int


@dataclass(frozen=True)
class StreamInfo:
    """What the store knows of one stream.

    Parameters
    ----------
    stream : uuid.UUID
        Stream id.
    device : str
        The device that owns it.
    start : Start
        Its start message.
    durable_samples : int
        Samples per lead stored (after truncating any torn tail).
    total_samples : int or None
        Total samples once the stream has ended, else None.
    """

    stream: uuid.UUID
    device: str
    start: Start
    durable_samples: int
    total_samples: int | None

    @property
    def ended(self) -> bool:
        """Whether the stream has ended and its record is finalised."""
        return self.total_samples is not None


@dataclass(frozen=True)
class _Tail:
    """Where a closed stream's sample file ends, as this process last left or scanned it."""

    samples: int  # per lead, in whole frames that continue one another
    size_bytes: int  # the file up to there; anything past it is a torn tail
    synced: bool  # whether those samples are known to be fsynced
    total_samples: int | None  # once the stream has ended


@dataclass
class PendingSync:
    """An fsync prepared by :meth:`StreamWriter.prepare_sync`; :meth:`run` it anywhere.

    Attributes
    ----------
    writer : StreamWriter
    target : int
        Index past the last sample the fsync makes durable.
    error : OSError or None
        Set by :meth:`run` when the fsync failed.
    """

    writer: StreamWriter
    target: int
    descriptor: int | None
    error: OSError | None = None

    def run(self) -> None:
        """Fsync (blocking; thread-safe: it touches only its own descriptor)."""
        if self.descriptor is None:
            return
        try:
            os.fsync(self.descriptor)
        except OSError as error:
            self.error = error
        finally:
            os.close(self.descriptor)
            self.descriptor = None
        if self.error is not None:
            raise self.error

    def discard(self) -> None:
        """Give the fsync up (another writer of the stream took over)."""
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None


class StreamWriter:
    """Appends one stream's samples; created by :meth:`StreamStore.open`.

    Attributes
    ----------
    written : int
        Index past the last appended sample (durable or not).
    durable : int
        Index past the last sample known to be on disk.
    """

    def __init__(self, store: StreamStore, info: StreamInfo, *, synced: bool = False) -> None:
        self.store = store
        self.stream = info.stream
        self.start = info.start
        self.written = self.durable = info.durable_samples
        self.total_samples = info.total_samples
        self.superseded = False
        self._file = open(store.path(info.stream) / SAMPLES_FILE, "ab")  # noqa: SIM115
        if store.fsync and not synced:
            # What the scan found may sit in the page cache only (written by a process
            # that crashed, or by the writer this one supersedes): it is about to be
            # acknowledged as durable, so make it so.
            os.fsync(self._file.fileno())

    def append(self, first_index: int, samples: npt.NDArray[np.int16]) -> None:
        """Write samples (shape (n, leads), int16) that start at ``first_index``.

        Raises
        ------
        StoreError
            When the writer was superseded, closed, or the samples do not continue the
            stream exactly.
        """
        self._check_usable()
        if first_index != self.written:
            raise StoreError(f"append at {first_index}, but the stream continues at {self.written}")
        for offset in range(0, len(samples), _STORE_FRAME_SAMPLES):
            block = samples[offset : offset + _STORE_FRAME_SAMPLES]
            self._file.write(Frame(0, first_index + offset, block).serialize())
        self.written += len(samples)

    def sync(self) -> int:
        """Make every appended sample durable (fsync) and return the durable index."""
        pending = self.prepare_sync()
        if pending is not None:
            pending.run()
            self.durable = pending.target
        return self.durable

    def prepare_sync(self) -> PendingSync | None:
        """Hand what was appended to the OS; return the fsync still to do, or None.

        The returned :class:`PendingSync` may run in another thread while this writer
        keeps appending: it syncs a duplicate of the file descriptor, and the samples
        it covers end at ``target``, whatever is appended meanwhile.
        """
        self._check_usable()
        if self.durable >= self.written:
            return None
        self._file.flush()
        descriptor = os.dup(self._file.fileno()) if self.store.fsync else None
        return PendingSync(self, self.written, descriptor)

    def finalise(self, total_samples: int) -> Path:
        """End the stream at ``total_samples``: write the WFDB record, then ``end.json``.

        Returns the record path without extension (as ``wfdb`` takes it).
        """
        self.sync()
        if total_samples != self.durable:
            raise StoreError(f"end at {total_samples}, but {self.durable} samples are stored")
        record = self.store.write_record(self.stream)
        self.store._write_atomic(
            self.stream, END_FILE, msgspec.json.encode(_EndRecord(total_samples))
        )
        self.total_samples = total_samples
        return record

    def close(self) -> None:
        """Close the file; the stream stays on disk and resumable."""
        if self._file.closed:
            return
        self._file.flush()  # before the tail is measured: a reopen appends after it
        tail = _Tail(self.written, self._file.tell(), self.durable >= self.written,
                     self.total_samples)  # fmt: skip
        self._file.close()
        self.store._closed(self.stream, tail)

    def _check_usable(self) -> None:
        if self.superseded:
            raise StoreError(f"stream {self.stream}: writer superseded by another connection")
        if self._file.closed:
            raise StoreError(f"stream {self.stream}: writer closed")


@dataclass
class StreamStore:
    """The folder of stored device streams.

    Parameters
    ----------
    root : Path
        Folder holding one sub-folder per stream (created if missing).
    fsync : bool
        Whether :meth:`StreamWriter.sync` calls ``os.fsync`` (tests of throughput may
        turn it off; a server never should).
    """

    root: Path
    fsync: bool = True
    _writers: dict[uuid.UUID, StreamWriter] = field(default_factory=dict)
    # Of streams with no open writer: where their file ends (see the module notes).
    _tails: dict[uuid.UUID, _Tail] = field(default_factory=dict)
    # Start records read or written (they never change once written).
    _records: dict[uuid.UUID, _StartRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, stream: uuid.UUID) -> Path:
        """The stream's folder."""
        return self.root / str(stream)

    def record_path(self, stream: uuid.UUID) -> Path:
        """The finalised WFDB record, without extension."""
        return self.path(stream) / str(stream)

    def open(self, device: str, start: Start) -> StreamWriter:
        """Create the stream of ``start`` for ``device``, or reopen it to resume.

        A torn tail of the sample file is truncated. An open writer of the same stream
        is superseded.

        Raises
        ------
        StreamRefused
            ``stream_owned`` when another device owns the stream id, ``start_mismatch``
            when the start differs from the stored one.
        """
        folder = self.path(start.stream)
        if start.stream in self._records or (folder / START_FILE).exists():
            stored = self._read_start(start.stream)
            if stored.device != device:
                raise StreamRefused(
                    ErrorCode.STREAM_OWNED, f"stream {start.stream} belongs to another device"
                )
            if stored.start != start:
                raise StreamRefused(
                    ErrorCode.START_MISMATCH,
                    f"stream {start.stream} was started with different parameters",
                )
        else:
            folder.mkdir(exist_ok=True)
            _fsync_dir(self.root)
            (folder / SAMPLES_FILE).touch()
            record = _StartRecord(device, start)
            self._write_atomic(start.stream, START_FILE, msgspec.json.encode(record))
            self._records[start.stream] = record
            self._tails[start.stream] = _Tail(0, 0, True, None)
        previous = self._writers.pop(start.stream, None)
        if previous is not None:
            previous.superseded = True
            previous.close()  # flushes what it had buffered, and leaves its tail
        info, synced = self._reopen(start.stream)
        writer = StreamWriter(self, info, synced=synced)
        self._writers[start.stream] = writer
        return writer

    def _reopen(self, stream: uuid.UUID) -> tuple[StreamInfo, bool]:
        """What a new writer of ``stream`` continues from, and whether it is fsynced.

        From the remembered tail when the file is as it was left (a torn tail the scan
        found is cut off); otherwise by scanning and repairing the file.
        """
        tail = self._tails.pop(stream, None)
        path = self.path(stream) / SAMPLES_FILE
        if tail is not None:
            size = path.stat().st_size
            if size >= tail.size_bytes:
                if size > tail.size_bytes:
                    self._truncate(stream, path, tail.size_bytes, size)
                record = self._read_start(stream)
                info = StreamInfo(stream, record.device, record.start, tail.samples,
                                  tail.total_samples)  # fmt: skip
                return info, tail.synced
        info = self.info(stream, repair=True)
        self._tails.pop(stream, None)  # the writer about to open holds it from now on
        return info, False

    def _closed(self, stream: uuid.UUID, tail: _Tail) -> None:
        """A writer of ``stream`` closed, leaving its file at ``tail``."""
        current = self._writers.get(stream)
        if current is None or current._file.closed:
            self._tails[stream] = tail

    def synced(self, stream: uuid.UUID, samples: int) -> None:
        """Samples below ``samples`` of a closed stream were fsynced (a released writer's
        last appends, synced by a later group commit): its next open needs no fsync."""
        tail = self._tails.get(stream)
        if tail is not None and tail.samples == samples and not tail.synced:
            self._tails[stream] = dataclasses.replace(tail, synced=True)

    def release(self, writer: StreamWriter) -> None:
        """Close a writer that its connection no longer uses."""
        writer.close()
        if self._writers.get(writer.stream) is writer:
            del self._writers[writer.stream]

    def info(self, stream: uuid.UUID, *, repair: bool = False) -> StreamInfo:
        """What is stored of ``stream``; ``repair`` truncates a torn tail on disk.

        Raises
        ------
        StoreError
            When the stream does not exist or its metadata is unreadable.
        """
        stored = self._read_start(stream)
        end = self.path(stream) / END_FILE
        total = None
        if end.exists():
            try:
                total = msgspec.json.decode(end.read_bytes(), type=_EndRecord).total_samples
            except msgspec.DecodeError as error:
                raise StoreError(f"{end}: unreadable end record: {error}") from None
        if total is not None and not repair:
            # Finalised: the sample file was verified when the record was written.
            return StreamInfo(stream, stored.device, stored.start, total, total)
        durable, good_bytes = self._scan(stream, stored.start.n_leads, repair=repair)
        if stream not in self._writers:
            self._tails[stream] = _Tail(durable, good_bytes, False, total)
        return StreamInfo(stream, stored.device, stored.start, durable, total)

    def streams(self) -> list[StreamInfo]:
        """Every stored stream, oldest start first (folders without metadata skipped)."""
        infos = []
        for folder in self.root.iterdir():
            try:
                infos.append(self.info(uuid.UUID(folder.name)))
            except (ValueError, StoreError):
                continue
        return sorted(infos, key=lambda info: info.start.start_time)

    def read_samples(self, stream: uuid.UUID) -> npt.NDArray[np.int16]:
        """All durable samples of the stream, shape (n, leads), int16."""
        n_leads = self._read_start(stream).start.n_leads
        blocks = [frame.samples for frame in self._frames(stream, n_leads)]
        if not blocks:
            return np.zeros((0, n_leads), dtype=np.int16)
        return np.concatenate(blocks)

    def write_record(self, stream: uuid.UUID) -> Path:
        """Write the stream's samples as a WFDB record (format 16) and return its path."""
        import wfdb  # lazily: wfdb pulls in pandas and matplotlib

        info = self._read_start(stream)
        start = info.start
        samples = self.read_samples(stream)
        if len(samples) == 0:
            raise StoreError(f"stream {stream} has no samples to write as a record")
        folder = self.path(stream)
        record = wfdb.Record(
            record_name=str(stream),
            fs=start.fs_hz,
            units=["mV"] * start.n_leads,
            sig_name=list(start.leads),
            d_signal=samples,
            fmt=["16"] * start.n_leads,
            adc_gain=list(start.adc_gain),
            baseline=list(start.baseline),
            comments=_record_comments(info.device, start),
            base_date=start.start_time.date(),
            base_time=start.start_time.time().replace(tzinfo=None),
        )
        # What wfdb.wrsamp does, but for the signal file: its header (checksums, initial
        # values) is wfdb's, the .dat is the samples as they are. Format 16 is int16
        # little-endian, interleaved by sample, which wfdb's own writer produces one
        # sample at a time (3.9 s for a 30-minute 12-lead stream, 0.03 s this way).
        record.set_d_features()
        record.set_defaults()
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            record.wrheader(write_dir=scratch, expanded=False)
            samples.astype("<i2", copy=False).tofile(Path(scratch) / f"{stream}.dat")
            for suffix in (".dat", ".hea"):  # header last: a .hea always has its .dat
                name = f"{stream}{suffix}"
                _fsync_file(Path(scratch) / name)
                os.replace(Path(scratch) / name, folder / name)
        _fsync_dir(folder)
        return self.record_path(stream)

    def export(self, stream: uuid.UUID, out_dir: Path) -> Path:
        """Copy the finalised record (``.hea`` + ``.dat``) into ``out_dir``; return its path.

        Raises
        ------
        StoreError
            When the stream does not exist or has not ended.
        """
        info = self.info(stream)
        if not info.ended:
            raise StoreError(f"stream {stream} has not ended: no record to export yet")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for suffix in (".dat", ".hea"):
            name = f"{stream}{suffix}"
            shutil.copyfile(self.path(stream) / name, out_dir / name)
        return out_dir / str(stream)

    # -- internals -----------------------------------------------------------------------

    def _read_start(self, stream: uuid.UUID) -> _StartRecord:
        known = self._records.get(stream)
        if known is not None:
            return known
        path = self.path(stream) / START_FILE
        try:
            record = msgspec.json.decode(path.read_bytes(), type=_StartRecord)
            self._records[stream] = record
            return record
        except FileNotFoundError:
            raise StoreError(f"no stream {stream} in {self.root}") from None
        except (OSError, msgspec.DecodeError) as error:
            raise StoreError(f"{path}: unreadable stream metadata: {error}") from None

    def _frames(self, stream: uuid.UUID, n_leads: int) -> Iterator[Frame]:
        for frame, _ in _read_frames(self.path(stream) / SAMPLES_FILE, n_leads):
            yield frame

    def _scan(self, stream: uuid.UUID, n_leads: int, *, repair: bool) -> tuple[int, int]:
        """Samples per lead in whole contiguous frames, and the bytes they take."""
        path = self.path(stream) / SAMPLES_FILE
        durable, good_bytes = 0, 0
        for frame, end_offset in _read_frames(path, n_leads):
            durable, good_bytes = frame.end_index, end_offset
        size = path.stat().st_size
        if repair and size > good_bytes:
            self._truncate(stream, path, good_bytes, size)
        return durable, good_bytes

    @staticmethod
    def _truncate(stream: uuid.UUID, path: Path, good_bytes: int, size_bytes: int) -> None:
        torn_bytes = size_bytes - good_bytes
        log.warning("stream %s: truncating a torn tail of %d bytes", stream, torn_bytes)
        with open(path, "r+b") as file:
            file.truncate(good_bytes)
            os.fsync(file.fileno())

    def _write_atomic(self, stream: uuid.UUID, name: str, data: bytes) -> None:
        folder = self.path(stream)
        temporary = folder / f".{name}.tmp"
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, folder / name)
        _fsync_dir(folder)


def _read_frames(path: Path, n_leads: int) -> Iterator[tuple[Frame, int]]:
    """The valid, contiguous frames at the start of ``path``, with their end offsets."""
    expected, offset = 0, 0
    with open(path, "rb") as file:
        while header := file.read(FRAME_HEADER_BYTES):
            try:
                size = frame_size(header)
                frame = Frame.parse(header + file.read(size - FRAME_HEADER_BYTES))
            except FrameError:
                return
            if frame.first_index != expected or frame.n_leads != n_leads:
                return
            offset += size
            expected = frame.end_index
            yield frame, offset


@dataclass(frozen=True)
class _CommitItem:
    stream: uuid.UUID
    session: DeviceSession
    writer: StreamWriter
    pending: PendingSync | None
    error: Exception | None


@dataclass
class Commit:
    """The fsyncs of one group commit (from :meth:`StreamService.begin_commit`)."""

    items: list[_CommitItem]
    pool: ThreadPoolExecutor | None = None
    # The last appends of writers released since the last commit: synced, never acked.
    released: dict[uuid.UUID, PendingSync] = field(default_factory=dict)

    def run(self) -> None:
        """Run the fsyncs, in parallel on the pool when there is one; errors are kept."""
        pending = [item.pending for item in self.items if item.pending is not None]
        pending += self.released.values()
        if self.pool is not None:
            list(self.pool.map(_run_quietly, pending))
        else:
            for one in pending:
                _run_quietly(one)


@dataclass
class _Finalising:
    """A stream's record being written in the finalise threads."""

    session: DeviceSession
    writer: StreamWriter
    done: Future[Path]
    # The resumes of the stream that arrived meanwhile (the device missed ``ended``, or
    # reconnected): performed, and answered ``ended``, once the record is there.
    waiting: list[tuple[DeviceSession, Open]] = field(default_factory=list)


def _run_quietly(pending: PendingSync) -> None:
    with contextlib.suppress(OSError):  # kept in pending.error, reported by end_commit
        pending.run()


def _record_comments(device: str, start: Start) -> list[str]:
    comments = [
        f"stream: {start.stream}",
        f"device: {device}",
        f"patient: {start.patient}",
        f"start_time: {start.start_time.isoformat()}",
        f"resolution_bits: {start.resolution_bits}",
    ]
    comments += [
        f"{name}: {value}" for name in ("consult", "room") if (value := getattr(start, name))
    ]
    return comments


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------------------------
# The service: performs a session's storage effects against the store

Outgoing = Send | Close
TakeoverHandler = Callable[[DeviceSession, list[Outgoing]], None]


class StreamListener(Protocol):
    """What happens to streams, for the live pipeline and the batch re-annotation.

    Called synchronously by :class:`StreamService`; keep the work short or hand it off.
    """

    def samples_appended(self, start: Start, first_index: int, samples: Int16Array) -> None:
        """New samples (each sample once, in order, from ``first_index``) were written.

        They are not yet durable: a live view may show them, an ack must not be sent.
        """

    def stream_ended(self, start: Start, record: Path) -> None:
        """The stream ended and its WFDB record (``record``, no extension) is written."""


class StreamService:
    """Drives :class:`~ecg.resume.DeviceSession` objects against a :class:`StreamStore`.

    The ``/device`` endpoint is a pump around it: for each message received call
    :meth:`receive_text` or :meth:`receive_bytes`, send every :class:`~ecg.resume.Send`
    returned (``encode_message(effect.message)``) and close on :class:`~ecg.resume.Close`;
    call :meth:`connection_lost` when the socket goes. Calls block on file I/O (fsync):
    run them in a worker thread, one at a time per store, if the event loop must not wait.
    Many streams: pass ``sync=False`` to :meth:`receive_bytes` and commit on a timer
    (every 50–200 ms) with :meth:`begin_commit`, :meth:`Commit.run` in a worker thread
    and :meth:`end_commit` (or :meth:`flush` in one blocking call): each fsync costs
    milliseconds, a parallel group of them hardly more than one.

    Parameters
    ----------
    store : StreamStore
        Where streams are stored.
    listener : StreamListener, optional
        Told of new samples and of ended streams.
    sync_threads : int
        Threads that fsync in parallel in :meth:`flush`.
    on_takeover : callable, optional
        Called with the old session and the messages for it (an ``error superseded``
        and a close) when a device resumes a stream on a new connection while the old
        one still holds it. The I/O layer sends them on the old connection.
    finalise_threads : int
        0: a stream's ``end`` writes its WFDB record in the calling thread, and the
        ``ended`` answer comes back at once. More: in that many threads of their own,
        and :meth:`end_commit` (or :meth:`flush`) reports ``ended`` once the record is
        written (an endpoint on an event loop: a 30-minute 12-lead record takes ~0.3 s
        to write, and many carts end together). Meanwhile the stream stays held by its
        connection; a resume of it from another connection waits for the record and is
        answered ``ended``.
    """

    def __init__(
        self,
        store: StreamStore,
        *,
        listener: StreamListener | None = None,
        on_takeover: TakeoverHandler | None = None,
        sync_threads: int = 8,
        finalise_threads: int = 0,
    ) -> None:
        self.store = store
        self.listener = listener
        self.on_takeover = on_takeover
        self._owners: dict[uuid.UUID, tuple[DeviceSession, StreamWriter]] = {}
        self.sync_threads = sync_threads
        self._finalise_pool = (
            ThreadPoolExecutor(finalise_threads, "stream-finalise") if finalise_threads else None
        )
        self._finalising: dict[uuid.UUID, _Finalising] = {}
        # Streams appended to but not yet fsynced, with the session to ack.
        self._dirty: dict[uuid.UUID, DeviceSession] = {}
        # Released writers' unsynced appends, for the next commit to fsync: the device
        # resends them, and their stream then reopens without an fsync on the loop.
        self._released: dict[uuid.UUID, PendingSync] = {}
        self._pool: ThreadPoolExecutor | None = None

    def receive_text(self, session: DeviceSession, text: str) -> list[Outgoing]:
        """Handle a text message of ``session``; return what to send or whether to close."""
        return self._run(session, session.receive_text(text), sync=True)

    def receive_bytes(
        self, session: DeviceSession, data: bytes, *, sync: bool = True
    ) -> list[Outgoing]:
        """Handle a binary frame of ``session``: store it and, with ``sync``, fsync and ack.

        With ``sync=False`` the samples are written but neither fsynced nor acked until
        :meth:`flush`: an endpoint serving many streams calls it every few tens of ms
        (group commit) instead of paying an fsync per frame.
        """
        return self._run(session, session.receive_bytes(data), sync=sync)

    def flush(self) -> list[tuple[DeviceSession, list[Outgoing]]]:
        """Fsync every stream written since the last sync; return the acks per session.

        Blocks for the fsyncs. An asyncio endpoint splits it instead, so that the event
        loop never waits on the disk::

            commit = service.begin_commit()            # loop thread, quick
            await asyncio.to_thread(commit.run)        # the fsyncs, in parallel
            for session, out in service.end_commit(commit): ...   # loop thread
        """
        commit = self.begin_commit()
        commit.run()
        return self.end_commit(commit)

    def begin_commit(self) -> Commit:
        """Take every stream written since the last commit; return the fsyncs to run."""
        items = []
        for stream, session in self._dirty.items():
            writer = self._owners[stream][1]
            try:
                pending = writer.prepare_sync()
            except (OSError, StoreError) as error:
                items.append(_CommitItem(stream, session, writer, None, error))
                continue
            if pending is not None:
                items.append(_CommitItem(stream, session, writer, pending, None))
        self._dirty.clear()
        released, self._released = self._released, {}
        pool = self._fsync_pool if len(items) + len(released) > 1 else None
        return Commit(items, pool, released)

    def end_commit(self, commit: Commit) -> list[tuple[DeviceSession, list[Outgoing]]]:
        """After :meth:`Commit.run`: mark the samples durable and return the acks per session."""
        per_session: dict[DeviceSession, list[Effect]] = {}
        for item in commit.items:
            if self._owners.get(item.stream) != (item.session, item.writer):
                continue  # released or taken over meanwhile: nothing to ack on it
            if item.stream in self._finalising:
                continue  # the finalisation's own fsync covers it, and acks it when done
            effects = per_session.setdefault(item.session, [])
            error = item.error or (item.pending.error if item.pending is not None else None)
            if error is None and item.pending is not None:
                item.writer.durable = max(item.writer.durable, item.pending.target)
                effects += item.session.durable(item.stream, item.writer.durable)
            else:
                log.error(
                    "device %s: fsync of %s failed: %s", item.session.device, item.stream, error
                )
                effects += item.session.internal_error(item.stream)
        for stream, pending in commit.released.items():
            if pending.error is None:
                self.store.synced(stream, pending.target)
        answers = [
            (session, self._run(session, effects, sync=False))
            for session, effects in per_session.items()
        ]
        return answers + self._finished()

    def _finished(self) -> list[tuple[DeviceSession, list[Outgoing]]]:
        """What the finalisations done since the last call have to tell, in order."""
        answers = []
        for stream, job in list(self._finalising.items()):
            if not job.done.done():
                continue
            del self._finalising[stream]
            held = self._owners.get(stream) == (job.session, job.writer)
            error = job.done.exception()
            effects: list[Effect] = []
            if error is None:
                if self.listener is not None:
                    self.listener.stream_ended(job.writer.start, job.done.result())
                if held:
                    effects = self._ended(job.session, stream, job.writer)
            else:
                log.error(
                    "device %s: finalising stream %s failed: %s",
                    job.session.device, stream, type(error).__name__,
                    exc_info=not isinstance(error, OSError | StoreError),
                )  # fmt: skip
                if held:
                    effects = job.session.internal_error(stream)
            if not held:  # released while its record was written
                self.store.release(job.writer)
            answers.append((job.session, self._run(job.session, effects, sync=False)))
            for session, resume in job.waiting:
                answers.append((session, self._run(session, [resume], sync=False)))
        return answers

    def _ended(
        self, session: DeviceSession, stream: uuid.UUID, writer: StreamWriter
    ) -> list[Effect]:
        return session.durable(stream, writer.durable) + session.finalised(stream)

    def records_in_progress(self) -> list[Future[Path]]:
        """The records being written in the finalise threads (to wait for them)."""
        return [job.done for job in self._finalising.values()]

    @property
    def _fsync_pool(self) -> ThreadPoolExecutor | None:
        if self.sync_threads <= 1:
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.sync_threads, "stream-fsync")
        return self._pool

    def close(self) -> None:
        """Stop the fsync threads, after the records being written (the store's writers
        stay as they are)."""
        if self._finalise_pool is not None:
            self._finalise_pool.shutdown(wait=True)
            self._finalise_pool = None
            self._finished()  # the listener is told; the connections are gone by now
        for pending in self._released.values():
            pending.discard()
        self._released.clear()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def connection_lost(self, session: DeviceSession) -> None:
        """Release the streams of a connection that is gone."""
        self._run(session, session.connection_lost(), sync=False)

    def _run(self, session: DeviceSession, effects: list[Effect], *, sync: bool) -> list[Outgoing]:
        outgoing: list[Outgoing] = []
        queue = deque(effects)
        while True:
            while queue:
                effect = queue.popleft()
                if isinstance(effect, Send | Close):
                    outgoing.append(effect)
                    continue
                try:
                    queue += self._perform(session, effect)
                except StreamRefused as error:
                    assert isinstance(effect, Open)  # only opening a stream can be refused
                    queue += session.refused(effect.start.stream, error)
                except (OSError, StoreError):
                    # What failed by kind and stream only: an Open holds the patient's
                    # id, an Append the samples, and neither belongs in a log line.
                    stream = effect.start.stream if isinstance(effect, Open) else effect.stream
                    log.exception(
                        "device %s: storage failed on %s of stream %s",
                        session.device, type(effect).__name__.lower(), stream,
                    )  # fmt: skip
                    queue += session.internal_error()
            if not (sync and session in self._dirty.values()):
                return outgoing
            for stream in [s for s, owner in self._dirty.items() if owner is session]:
                del self._dirty[stream]
                try:
                    queue += session.durable(stream, self._owners[stream][1].sync())
                except (OSError, StoreError):
                    log.exception("device %s: fsync of stream %s failed", session.device, stream)
                    queue += session.internal_error(stream)

    def _perform(
        self,
        session: DeviceSession,
        effect: Open | Append | Finalise | Release,
    ) -> list[Effect]:
        if isinstance(effect, Open):
            stream = effect.start.stream
            finalising = self._finalising.get(stream)
            if finalising is not None:
                finalising.waiting.append((session, effect))
                return []
            previous = self._owners.pop(stream, None)
            self._dirty.pop(stream, None)
            released = self._released.pop(stream, None)
            if released is not None:
                released.discard()  # the new writer fsyncs what is not yet known synced
            writer = self.store.open(effect.device, effect.start)
            self._owners[stream] = (session, writer)
            if previous is not None and previous[0] is not session:
                self._tell_takeover(previous[0], stream)
            return session.opened(
                stream, next_index=writer.durable, total_samples=writer.total_samples
            )
        if isinstance(effect, Release):
            owner = self._owners.get(effect.stream)
            if owner is not None and owner[0] is session:
                del self._owners[effect.stream]
                self._dirty.pop(effect.stream, None)  # never acked: the device resends
                self._release(effect.stream, owner[1])
            return []
        writer = self._writer(session, effect)
        if isinstance(effect, Append):
            writer.append(effect.first_index, effect.samples)
            self._dirty[effect.stream] = session
            if self.listener is not None:
                self.listener.samples_appended(writer.start, effect.first_index, effect.samples)
            return []
        if isinstance(effect, Finalise):
            self._dirty.pop(effect.stream, None)
            if self._finalise_pool is not None:
                done = self._finalise_pool.submit(writer.finalise, effect.total_samples)
                self._finalising[effect.stream] = _Finalising(session, writer, done)
                return []
            record = writer.finalise(effect.total_samples)
            if self.listener is not None:
                self.listener.stream_ended(writer.start, record)
            return self._ended(session, effect.stream, writer)
        raise AssertionError(f"unknown effect {effect!r}")  # pragma: no cover

    def _release(self, stream: uuid.UUID, writer: StreamWriter) -> None:
        """Close a released stream's writer; its unsynced appends go to the next commit.
        A writer whose record is being written is closed once that is done."""
        finalising = self._finalising.get(stream)
        if finalising is not None and finalising.writer is writer:
            return
        pending = None
        with contextlib.suppress(OSError, StoreError):
            pending = writer.prepare_sync()
        self.store.release(writer)
        if pending is not None:
            earlier = self._released.pop(stream, None)
            if earlier is not None:
                earlier.discard()
            self._released[stream] = pending

    def _writer(self, session: DeviceSession, effect: Append | Finalise) -> StreamWriter:
        owner = self._owners.get(effect.stream)
        if owner is None or owner[0] is not session:
            raise StoreError(f"stream {effect.stream} is not held by this connection")
        return owner[1]

    def _tell_takeover(self, old: DeviceSession, stream: uuid.UUID) -> None:
        effects = old.superseded(stream)
        messages: list[Outgoing] = [e for e in effects if isinstance(e, Send | Close)]
        # The old session's other streams are released with it (the error is fatal).
        for effect in effects:
            if isinstance(effect, Release) and effect.stream != stream:
                owner = self._owners.pop(effect.stream, None)
                self._dirty.pop(effect.stream, None)
                if owner is not None:
                    self._release(effect.stream, owner[1])
        if self.on_takeover is not None:
            self.on_takeover(old, messages)
