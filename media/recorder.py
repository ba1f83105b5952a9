"""Crash-safe recording of consults: encoded frames written as they arrive, never re-encoded.

Layout under the data directory::

    recordings/<recording id>/manifest.json
    recordings/<recording id>/<participant>-s<segment>-<kind>-<n>.webm|.mp4

Design notes
------------
- One file per received track: VP8 and Opus into WebM (Matroska), H.264 into
  fragmented MP4 (``frag_keyframe+empty_moov+default_base_moof``). Neither needs a
  trailer: WebM is written in ``live`` mode with clusters of at most
  ``cluster_s`` and every packet flushed to the OS, fragmented MP4 in fragments of at
  most ``cluster_s``; so a SIGKILL loses at most the cluster being written, and
  the file opens with ffprobe and plays up to it.
- The encoded frames are the ones the passthrough forwarder already has
  (:attr:`media.passthrough.PassthroughForwarder.on_frame`): recording costs a copy
  of the bytes and a mux, no decode and no encode.
- The event loop only puts ``(bytes, pts, keyframe, arrival time)`` on a queue; one
  writer thread owns every container and the manifests, so a slow disk never
  blocks forwarding.
- A video file starts at a keyframe (a file starting with delta frames shows
  nothing until one comes); the caller asks the publisher for one when a track
  starts recording.
- Each track's wall-clock start is ``min(arrival - media time)`` over its frames:
  the earliest arrival relative to the media clock is the one least delayed by the
  network and by aiortc's jitter buffer (audio waits for four packets before its
  first frame), so the estimate improves as frames come and A/V offsets stay well
  under 100 ms. It is written to the manifest as UTC ISO 8601 with microseconds.
- The manifest is rewritten whole (tmp file, fsync, rename) when a track opens or
  closes, on error, and at most every ``manifest_interval_s`` otherwise: a reader
  always sees a complete JSON document describing files that exist.
- A participant who reconnects comes back as a new media session: the SFU gives it
  the next segment number, so its new files sit beside the old ones, never
  overwrite them.
- Any ``OSError`` while writing (``ENOSPC`` disk full, ``EFBIG`` over a file-size
  limit) fails the whole recording: its files are closed as far as possible, the
  manifest says ``failed`` with the reason, ``on_error`` is called on the event loop,
  and forwarding carries on untouched.
- After a crash the files hold more than the manifest says (up to
  ``manifest_interval_s``, and a file opened just before may be unlisted):
  :func:`rebuild_manifest` reads them, the export uses it, and the next recorder made
  on the data directory closes such a recording with its rebuilt manifest (``failed``,
  ``INTERRUPTED``), in a thread of its own as it starts.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import fractions
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av

from media.exceptions import RecordingError

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# What Opus needs in a Matroska CodecPrivate (RFC 7845 5.1): version 1, 2 channels,
# pre-skip 0 (an RTP stream joins mid-stream: nothing to skip, and timing stays
# exact), 48 kHz, gain 0, mapping family 0.
OPUS_HEAD = b"OpusHead\x01\x02\x00\x00" + (48000).to_bytes(4, "little") + b"\x00\x00\x00"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class RecordingState(enum.StrEnum):
    """A recording's state, as the manifest states it."""

    RECORDING = "recording"
    STOPPED = "stopped"
    FAILED = "failed"


# Pure helpers


@dataclass(frozen=True)
class ContainerSpec:
    """How one codec is stored: file suffix, FFmpeg muxer and options, codec name."""

    suffix: str
    format: str
    codec: str
    options: dict[str, str]


def container_for(mime_type: str, *, cluster_s: float = 1.0) -> ContainerSpec:
    """The container a codec is recorded into.

    Raises
    ------
    RecordingError
        For a codec that is not recorded (not VP8, H.264 or Opus).
    """
    cluster_ms = str(max(1, round(cluster_s * 1000)))
    webm = {"live": "1", "cluster_time_limit": cluster_ms, "flush_packets": "1"}
    name = mime_type.lower()
    if name == "video/vp8":
        return ContainerSpec(".webm", "webm", "vp8", webm)
    if name == "audio/opus":
        return ContainerSpec(".webm", "webm", "opus", webm)
    if name == "video/h264":
        fragments = {
            "movflags": "frag_keyframe+empty_moov+default_base_moof",
            "frag_duration": str(max(1, round(cluster_s * 1_000_000))),
            "flush_packets": "1",
        }
        return ContainerSpec(".mp4", "mp4", "h264", fragments)
    raise RecordingError(f"cannot record codec {mime_type!r}")


def vp8_dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height in pixels from a VP8 key frame header (RFC 6386 9.1)."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


def utc_iso(epoch_s: float) -> str:
    """``epoch_s`` (seconds since 1970, UTC) as ISO 8601 with microseconds and ``Z``."""
    moment = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc(text: str) -> float:
    """Seconds since 1970 from :func:`utc_iso` output."""
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=datetime.UTC).timestamp()


def safe_name(text: str) -> str:
    """``text`` usable in a file name (anything else becomes ``_``)."""
    return _SAFE.sub("_", text)[:64] or "_"


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader sees the old or the new, whole."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass
class TrackEntry:
    """One recorded file, as the manifest lists it."""

    participant_id: str
    segment: int
    kind: str
    codec: str
    file: str
    start_utc: str | None = None  # wall clock of media time 0 (see module notes)
    end_utc: str | None = None  # set when the track closed cleanly
    duration_s: float = 0.0  # media time of the last frame written
    bytes: int = 0
    packets: int = 0


@dataclass
class Manifest:
    """Everything a reader needs to find and align a recording's files."""

    recording_id: str
    room_id: str
    started_utc: str
    state: RecordingState = RecordingState.RECORDING
    stopped_utc: str | None = None
    error: str | None = None
    participants: dict[str, dict[str, Any]] = field(default_factory=dict)
    tracks: list[TrackEntry] = field(default_factory=list)
    version: int = MANIFEST_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse a manifest.

        Raises
        ------
        RecordingError
            For a document that is not a manifest of this version.
        """
        try:
            raw = json.loads(data)
            tracks = [TrackEntry(**t) for t in raw.pop("tracks")]
            raw["state"] = RecordingState(raw["state"])
            manifest = cls(**raw, tracks=tracks)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise RecordingError(f"not a recording manifest: {exc}") from None
        if manifest.version != MANIFEST_VERSION:
            raise RecordingError(f"manifest version {manifest.version} is not supported")
        return manifest


def read_manifest(directory: Path) -> Manifest:
    """The manifest of the recording in ``directory``.

    Raises
    ------
    RecordingError
        When it is missing or unreadable.
    """
    try:
        data = (directory / MANIFEST).read_bytes()
    except OSError as exc:
        raise RecordingError(f"no manifest in {directory}: {exc.strerror}") from None
    return Manifest.from_json(data)


# A recorded file's name, as _Recording._do_add makes it (the participant id made safe).
_TRACK_FILE = re.compile(
    r"(?P<participant>[A-Za-z0-9_.-]{1,64})-s(?P<segment>[0-9]+)-(?P<kind>audio|video)"
    r"-[0-9]+\.(?:webm|mp4)"
)
INTERRUPTED = "interrupted: the server stopped while recording; the manifest was rebuilt"


@dataclass(frozen=True)
class FileContents:
    """What one recorded file holds, as far as it can be read."""

    codec: str
    duration_s: float  # media time of the last readable packet
    packets: int
    bytes: int


def read_contents(path: Path) -> FileContents | None:
    """The packets ``path`` holds up to the first unreadable byte (a file cut by a crash
    reads to its last whole cluster or fragment); None when it holds none."""
    packets = size = 0
    last_s = 0.0
    try:
        with av.open(str(path)) as container:
            stream = container.streams[0]
            codec = stream.codec_context.name
            try:
                for packet in container.demux(stream):
                    if packet.pts is None or packet.time_base is None or not packet.size:
                        continue  # the demuxer's flush packet
                    last_s = max(last_s, float(packet.pts * packet.time_base))
                    packets += 1
                    size += packet.size
            except av.FFmpegError:
                pass  # the cut end: what came before it stands
    except (OSError, av.FFmpegError, IndexError):
        return None
    if not packets:
        return None
    return FileContents(codec, round(last_s, 3), packets, size)


def rebuild_manifest(directory: Path) -> Manifest:
    """The manifest of ``directory`` with every track as its file holds it.

    A recording that stopped or failed wrote its manifest last: it is returned as it is.
    One still ``recording`` is either live or was cut by a crash (SIGKILL, power), and
    its manifest is then up to ``manifest_interval_s`` stale and may lack a file opened
    just before: each listed track's duration, packets and bytes are read from its
    file, and a file of ours the manifest does not list is added (its start estimated
    as the file's last write less its duration). Nothing is written.

    Raises
    ------
    RecordingError
        When the manifest is missing or unreadable.
    """
    manifest = read_manifest(directory)
    if manifest.state is not RecordingState.RECORDING:
        return manifest
    listed = {t.file for t in manifest.tracks}
    for track in manifest.tracks:
        found = read_contents(directory / track.file)
        if found is not None and found.packets > track.packets:
            track.duration_s, track.packets, track.bytes = (
                found.duration_s,
                found.packets,
                found.bytes,
            )
    for path in sorted(directory.iterdir()):
        named = _TRACK_FILE.fullmatch(path.name)
        if named is None or path.name in listed:
            continue
        found = read_contents(path)
        if found is None:
            continue
        participant_id, segment = named["participant"], int(named["segment"])
        manifest.tracks.append(
            TrackEntry(
                participant_id, segment, named["kind"], found.codec, path.name,
                start_utc=utc_iso(path.stat().st_mtime - found.duration_s),
                duration_s=found.duration_s, bytes=found.bytes, packets=found.packets,
            )
        )  # fmt: skip
        person = manifest.participants.setdefault(participant_id, {"segments": []})
        if segment not in person["segments"]:
            person["segments"].append(segment)
    return manifest


# The writer thread's side


@dataclass
class RecordStats:
    """Counters of the recorder (exported as metrics)."""

    recording_bytes: int = 0
    recording_packets: int = 0
    recording_errors: int = 0
    recordings_started: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _Frame:
    """One encoded frame on its way to the writer thread."""

    mime_type: str
    data: bytes
    pts: int  # RTP clock of its kind, from 0
    keyframe: bool
    arrival_s: float  # wall clock, seconds since 1970


class _TrackFile:
    """One container with one stream; opened at the first usable frame."""

    def __init__(self, stem: Path, entry: TrackEntry, kind: str, cluster_s: float) -> None:
        self.path = stem  # gets the container's suffix when opened
        self.entry = entry
        self.kind = kind
        self._cluster_s = cluster_s
        self._container: Any = None
        self._stream: Any = None
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        self._offset_s: float | None = None  # min(arrival - media time), epoch seconds

    def write(self, frame: _Frame) -> int:
        """Mux one frame; the bytes written to the file (0 if skipped)."""
        data = frame.data
        if self._container is None:
            if self.kind == "video" and not frame.keyframe:
                return 0
            self._open(frame.mime_type, data)
        if self._first_pts is None:
            self._first_pts = frame.pts
        rel = frame.pts - self._first_pts
        if self._last_pts is not None and rel <= self._last_pts:
            return 0  # a muxer refuses time going back; a late frame is dropped
        time_base = fractions.Fraction(1, 90000 if self.kind == "video" else 48000)
        packet = av.Packet(data)
        packet.pts = packet.dts = rel
        packet.time_base = time_base
        packet.is_keyframe = frame.keyframe
        packet.stream = self._stream
        self._container.mux(packet)
        self._last_pts = rel
        media_s = float(rel * time_base)
        offset_s = frame.arrival_s - media_s
        if self._offset_s is None or offset_s < self._offset_s:
            self._offset_s = offset_s
            self.entry.start_utc = utc_iso(offset_s)
        self.entry.duration_s = round(media_s, 3)
        self.entry.bytes += len(data)
        self.entry.packets += 1
        return len(data)

    def _open(self, mime_type: str, data: bytes) -> None:
        spec = container_for(mime_type, cluster_s=self._cluster_s)
        self.path = self.path.with_name(self.path.name + spec.suffix)
        self.entry.codec = spec.codec
        self.entry.file = self.path.name
        container = av.open(str(self.path), "w", format=spec.format, options=spec.options)
        try:
            stream: Any = container.add_stream(spec.codec)
            if spec.codec == "vp8":
                dimensions = vp8_dimensions(data)
                if dimensions is not None:
                    stream.width, stream.height = dimensions
            elif spec.codec == "opus":
                stream.codec_context.extradata = OPUS_HEAD
            stream.time_base = fractions.Fraction(1, 90000 if self.kind == "video" else 48000)
            container.start_encoding()
        except BaseException:
            container.close()
            raise
        self._container, self._stream = container, stream

    @property
    def opened(self) -> bool:
        return self._container is not None

    def close(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            container.close()


@dataclass(eq=False)
class _Recording:
    """A recording and the manifest the writer thread keeps for it."""

    directory: Path
    manifest: Manifest
    files: dict[str, _TrackFile] = field(default_factory=dict)  # by source id
    manifest_written_s: float = 0.0


class Recorder:
    """Records tracks of rooms into ``<data_dir>/recordings/<id>/`` from a writer thread.

    All public methods are called on the event loop and never block on the disk.

    Parameters
    ----------
    data_dir
        Recordings go under ``data_dir / "recordings"``.
    on_error
        ``on_error(room_id, recording_id, reason)`` on the event loop when a recording
        fails (disk full, ...); the recording is then stopped.
    cluster_s
        Longest media time a crash can lose from the end of each file, in seconds.
    manifest_interval_s
        Longest time between manifest rewrites while frames are being written.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        on_error: Callable[[str, str, str], None] | None = None,
        cluster_s: float = 1.0,
        manifest_interval_s: float = 2.0,
    ) -> None:
        self.root = Path(data_dir) / "recordings"
        self.on_error = on_error
        self.stats = RecordStats()
        self._cluster_s = cluster_s
        self._manifest_interval_s = manifest_interval_s
        self._loop: asyncio.AbstractEventLoop | None = None  # set when the first recording starts
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._by_room: dict[str, str] = {}  # room id -> recording id (loop side)
        self._sources: dict[str, str] = {}  # source id -> recording id (loop side)
        self._recordings: dict[str, _Recording] = {}  # writer thread side
        self._thread: threading.Thread | None = None
        self._closed = False
        # Recordings a killed predecessor left open are closed off the event loop, now
        # (not at the first recording: `recording list` would show them recording).
        self._opened_s = time.time()
        self._recovery = threading.Thread(target=self._recover, name="recorder-recovery")
        self._recovery.daemon = True
        self._recovery.start()

    # Event loop side

    def recording_id(self, room_id: str) -> str | None:
        """The id of the room's current recording, if it is being recorded."""
        return self._by_room.get(room_id)

    def start(self, room_id: str) -> str:
        """Start recording ``room_id`` (no tracks yet); its recording id."""
        existing = self._by_room.get(room_id)
        if existing is not None:
            return existing
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
            self._thread.start()
        now_s = time.time()
        stamp = datetime.datetime.fromtimestamp(now_s, tz=datetime.UTC)
        recording_id = f"{stamp:%Y%m%dT%H%M%S%fZ}-{safe_name(room_id)}"
        self._by_room[room_id] = recording_id
        manifest = Manifest(recording_id, room_id, utc_iso(now_s))
        self.stats.recordings_started += 1
        self._submit(lambda: self._do_start(manifest))
        return recording_id

    def stop(self, room_id: str) -> None:
        """Stop recording ``room_id``: close its files, mark the manifest stopped."""
        recording_id = self._by_room.pop(room_id, None)
        if recording_id is None:
            return
        for source_id in [s for s, r in self._sources.items() if r == recording_id]:
            del self._sources[source_id]
        self._submit(lambda: self._do_stop(recording_id, RecordingState.STOPPED, None))

    def add_track(
        self, room_id: str, participant_id: str, segment: int, source_id: str, kind: str
    ) -> None:
        """Record ``source_id`` (a track of ``participant_id``) while the room records."""
        recording_id = self._by_room.get(room_id)
        if recording_id is None or source_id in self._sources:
            return
        self._sources[source_id] = recording_id
        self._submit(lambda: self._do_add(recording_id, participant_id, segment, source_id, kind))

    def end_track(self, source_id: str) -> None:
        """The track ended (unpublished, participant left): close its file."""
        recording_id = self._sources.pop(source_id, None)
        if recording_id is not None:
            self._submit(lambda: self._do_end(recording_id, source_id))

    def write(self, source_id: str, mime_type: str, data: bytes, pts: int, keyframe: bool) -> None:
        """One encoded frame of ``source_id`` (ignored unless it is being recorded)."""
        recording_id = self._sources.get(source_id)
        if recording_id is None:
            return
        frame = _Frame(mime_type, data, pts, keyframe, time.time())
        self._submit(lambda: self._do_write(recording_id, source_id, frame))

    def set_camera_off(self, room_id: str, participant_id: str, off: bool) -> None:
        """The participant's camera went off (``True``) or on again, now.

        Kept in the manifest (``participants[id]["camera_off_utc"]``: ``[off, on]`` pairs,
        ``on`` ``None`` while still off) because what a browser sends for a camera turned
        off is black or no frames at all, which the export would show as a black or frozen
        tile: the export draws the person's initials and name over those spans instead.
        """
        recording_id = self._by_room.get(room_id)
        if recording_id is None:
            return
        at_utc = utc_iso(time.time())
        self._submit(lambda: self._do_camera(recording_id, participant_id, off, at_utc))

    def recording(self, source_id: str) -> bool:
        """Whether frames of ``source_id`` are recorded."""
        return source_id in self._sources

    async def close(self) -> None:
        """Stop every recording and wait for the writer thread to finish."""
        if self._closed:
            return
        for room_id in list(self._by_room):
            self.stop(room_id)
        self._closed = True
        self._jobs.put(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._recovery.join)

    def _submit(self, job: Callable[[], None]) -> None:
        if not self._closed:
            self._jobs.put(job)

    # Writer thread side

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                logger.exception("recorder job failed")

    def _recover(self) -> None:
        """Close the recordings a previous process left ``recording`` (it was killed):
        their manifests rebuilt from the files, marked failed, ``INTERRUPTED``. Those
        this recorder started (from ``_opened_s`` on) are its own, never touched."""
        try:
            folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        except OSError:
            return  # no recordings yet
        for folder in folders:
            try:
                manifest = read_manifest(folder)
                if manifest.state is not RecordingState.RECORDING:
                    continue
                if parse_utc(manifest.started_utc) >= self._opened_s:
                    continue
                manifest = rebuild_manifest(folder)
                ends = [
                    parse_utc(t.start_utc) + t.duration_s for t in manifest.tracks if t.start_utc
                ]
                manifest.state = RecordingState.FAILED
                manifest.stopped_utc = utc_iso(max(ends, default=parse_utc(manifest.started_utc)))
                manifest.error = INTERRUPTED
                write_atomic(folder / MANIFEST, manifest.to_json())
            except (OSError, RecordingError) as exc:
                logger.warning("recording %s left as it is: %s", folder.name, _reason(exc))
                continue
            logger.info("recording %s was interrupted: manifest rebuilt", folder.name)

    def _do_start(self, manifest: Manifest) -> None:
        directory = self.root / manifest.recording_id
        recording = _Recording(directory, manifest)
        self._recordings[manifest.recording_id] = recording
        self._guarded(recording, lambda: self._create(recording))

    def _create(self, recording: _Recording) -> None:
        recording.directory.mkdir(parents=True, exist_ok=True)
        self._write_manifest(recording)

    def _do_add(
        self, recording_id: str, participant_id: str, segment: int, source_id: str, kind: str
    ) -> None:
        recording = self._live(recording_id)
        if recording is None:
            return
        number = sum(1 for t in recording.manifest.tracks if t.participant_id == participant_id)
        stem = f"{safe_name(participant_id)}-s{segment}-{kind}-{number}"
        entry = TrackEntry(participant_id, segment, kind, codec="", file=stem)
        person = recording.manifest.participants.setdefault(participant_id, {"segments": []})
        if segment not in person["segments"]:
            person["segments"].append(segment)
        recording.files[source_id] = _TrackFile(
            recording.directory / stem, entry, kind, self._cluster_s
        )

    def _do_camera(self, recording_id: str, participant_id: str, off: bool, at_utc: str) -> None:
        recording = self._live(recording_id)
        if recording is None:
            return
        person = recording.manifest.participants.setdefault(participant_id, {"segments": []})
        spans: list[list[str | None]] = person.setdefault("camera_off_utc", [])
        still_off = bool(spans) and spans[-1][1] is None
        if off and not still_off:
            spans.append([at_utc, None])
        elif not off and still_off:
            spans[-1][1] = at_utc
        else:
            return
        self._guarded(recording, lambda: self._write_manifest(recording))

    def _do_write(self, recording_id: str, source_id: str, frame: _Frame) -> None:
        recording = self._live(recording_id)
        track = None if recording is None else recording.files.get(source_id)
        if recording is None or track is None:
            return
        self._guarded(recording, lambda: self._write_frame(recording, track, frame))

    def _write_frame(self, recording: _Recording, track: _TrackFile, frame: _Frame) -> None:
        was_open = track.opened
        written = track.write(frame)
        if not was_open and track.opened:
            recording.manifest.tracks.append(track.entry)
            self._write_manifest(recording)
        self.stats.recording_bytes += written
        self.stats.recording_packets += written > 0
        if time.monotonic() - recording.manifest_written_s > self._manifest_interval_s:
            self._write_manifest(recording)

    def _do_end(self, recording_id: str, source_id: str) -> None:
        recording = self._live(recording_id)
        if recording is None:
            return
        track = recording.files.pop(source_id, None)
        if track is None:
            return

        def end() -> None:
            if track.opened:
                track.close()
                track.entry.end_utc = utc_iso(time.time())
                self._write_manifest(recording)

        self._guarded(recording, end)

    def _do_stop(self, recording_id: str, state: RecordingState, error: str | None) -> None:
        recording = self._recordings.pop(recording_id, None)
        if recording is None:
            return
        now = utc_iso(time.time())
        for track in recording.files.values():
            try:
                if track.opened:
                    track.close()
                    track.entry.end_utc = now
            except (OSError, av.FFmpegError) as exc:
                logger.warning("closing %s: %s", track.path, exc)
        recording.files.clear()
        recording.manifest.state = state
        recording.manifest.stopped_utc = now
        recording.manifest.error = error
        try:
            self._write_manifest(recording)
        except OSError as exc:
            logger.error("cannot write the manifest of %s: %s", recording_id, exc)

    def _live(self, recording_id: str) -> _Recording | None:
        return self._recordings.get(recording_id)

    def _guarded(self, recording: _Recording, action: Callable[[], None]) -> None:
        """Run ``action``; an OS or muxer error fails the whole recording."""
        try:
            action()
        except (OSError, av.FFmpegError, RecordingError) as exc:
            reason = _reason(exc)
            recording_id = recording.manifest.recording_id
            logger.error("recording %s failed: %s", recording_id, reason)
            self.stats.recording_errors += 1
            self._do_stop(recording_id, RecordingState.FAILED, reason)
            assert self._loop is not None  # set before the thread started
            self._loop.call_soon_threadsafe(
                self._failed, recording.manifest.room_id, recording_id, reason
            )

    def _failed(self, room_id: str, recording_id: str, reason: str) -> None:
        if self._by_room.get(room_id) == recording_id:
            self.stop(room_id)
        if self.on_error is not None:
            self.on_error(room_id, recording_id, reason)

    def _write_manifest(self, recording: _Recording) -> None:
        write_atomic(recording.directory / MANIFEST, recording.manifest.to_json())
        recording.manifest_written_s = time.monotonic()


def _reason(exc: BaseException) -> str:
    """A short reason for an error, naming the OS error (``ENOSPC``...) when there is one."""
    errno_ = getattr(exc, "errno", None)
    name = os.strerror(errno_) if isinstance(errno_, int) else type(exc).__name__
    code = {28: "ENOSPC", 27: "EFBIG", 122: "EDQUOT"}.get(errno_ or 0, "")
    return f"{code + ': ' if code else ''}{name}"
