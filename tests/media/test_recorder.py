"""Recording: files checked with ffprobe, the manifest, segments, SIGKILL and a full disk."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from media.exceptions import RecordingError
from media.export import export, placements
from media.passthrough import PassthroughForwarder
from media.recorder import (
    INTERRUPTED,
    MANIFEST,
    Manifest,
    Recorder,
    RecordingState,
    container_for,
    parse_utc,
    read_contents,
    read_manifest,
    rebuild_manifest,
    utc_iso,
    vp8_dimensions,
    write_atomic,
)
from media.sfu import Sfu
from tests.media import synthetic
from tests.media.peers import Client, wait_for
from tests.media.probe import ffprobe, last_packet_s, payloads

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def recorder(tmp_path: Path) -> AsyncIterator[Recorder]:
    made = Recorder(tmp_path)
    yield made
    await made.close()


def feed(recorder: Recorder, source_id: str, frames: Iterable[synthetic.Encoded]) -> list[bytes]:
    """Hand ``frames`` to the recorder; the payloads handed."""
    handed = []
    for frame in frames:
        recorder.write(source_id, frame.mime_type, frame.data, frame.pts, frame.keyframe)
        handed.append(frame.data)
    return handed


def two_seconds_of_dr_li(recorder: Recorder) -> tuple[list[bytes], list[bytes]]:
    """Room "room-1" recording 2 s of VP8 and Opus from "dr-li"; the payloads handed."""
    recorder.start("room-1")
    recorder.add_track("room-1", "dr-li", 0, "v", "video")
    recorder.add_track("room-1", "dr-li", 0, "a", "audio")
    return feed(recorder, "v", synthetic.video(2.0)), feed(recorder, "a", synthetic.audio(2.0))


async def finished(recorder: Recorder, tmp_path: Path) -> tuple[Path, Manifest]:
    """Close the recorder; the only recording's directory and manifest."""
    await recorder.close()
    (directory,) = (tmp_path / "recordings").iterdir()
    return directory, read_manifest(directory)


async def test_vp8_and_opus_are_stored_as_received(recorder: Recorder, tmp_path: Path) -> None:
    """VP8 and Opus go into WebM byte for byte; ffprobe reads codec, size and duration."""
    video, audio = two_seconds_of_dr_li(recorder)
    directory, manifest = await finished(recorder, tmp_path)
    assert manifest.state is RecordingState.STOPPED
    assert manifest.participants == {"dr-li": {"segments": [0]}}
    by_kind = {t.kind: t for t in manifest.tracks}
    assert {t.codec for t in manifest.tracks} == {"vp8", "opus"}
    probed = ffprobe(directory / by_kind["video"].file)
    (stream,) = probed["streams"]
    assert stream["codec_name"] == "vp8"
    assert (stream["width"], stream["height"]) == (synthetic.WIDTH, synthetic.HEIGHT)
    assert int(stream["nb_read_packets"]) == len(video)
    assert payloads(directory / by_kind["video"].file) == video
    assert payloads(directory / by_kind["audio"].file) == audio
    assert ffprobe(directory / by_kind["audio"].file)["streams"][0]["codec_name"] == "opus"
    assert abs(last_packet_s(directory / by_kind["audio"].file) - (2.0 - 0.02)) < 0.01
    assert by_kind["video"].packets == len(video)
    assert by_kind["video"].end_utc is not None
    assert parse_utc(by_kind["video"].start_utc or "") <= time.time()


async def test_h264_goes_into_fragmented_mp4(recorder: Recorder, tmp_path: Path) -> None:
    """H.264 is written to fragmented MP4 that ffprobe reads."""
    recorder.start("room")
    recorder.add_track("room", "p", 0, "v", "video")
    video = feed(recorder, "v", synthetic.video(2.0, codec="h264"))
    directory, manifest = await finished(recorder, tmp_path)
    (track,) = manifest.tracks
    assert track.file.endswith(".mp4")
    (stream,) = ffprobe(directory / track.file)["streams"]
    assert stream["codec_name"] == "h264"
    assert int(stream["nb_read_packets"]) == len(video)
    assert abs(last_packet_s(directory / track.file) - (2.0 - 1 / 30)) < 0.01


async def test_a_video_file_starts_at_a_keyframe(recorder: Recorder, tmp_path: Path) -> None:
    """Delta frames before the first keyframe are not written."""
    frames = list(synthetic.video(2.0))
    second_key = next(i for i, f in enumerate(frames) if f.keyframe and i > 0)
    recorder.start("room")
    recorder.add_track("room", "p", 0, "v", "video")
    feed(recorder, "v", frames[1:])
    directory, manifest = await finished(recorder, tmp_path)
    (track,) = manifest.tracks
    assert payloads(directory / track.file) == [f.data for f in frames[second_key:]]


async def test_unrecorded_sources_and_rooms_are_ignored(recorder: Recorder, tmp_path: Path) -> None:
    """Frames of a source not added, or of a room not recording, write nothing."""
    recorder.add_track("quiet-room", "p", 0, "x", "video")
    recorder.start("room")
    feed(recorder, "x", synthetic.video(0.5))
    assert not recorder.recording("x")
    _, manifest = await finished(recorder, tmp_path)
    assert manifest.tracks == []


def test_codecs_and_containers() -> None:
    """VP8/Opus map to WebM, H.264 to fragmented MP4; anything else is refused."""
    assert container_for("video/VP8").format == "webm"
    assert container_for("audio/opus").suffix == ".webm"
    assert "frag_keyframe" in container_for("video/H264").options["movflags"]
    with pytest.raises(RecordingError, match="cannot record"):
        container_for("video/AV1")


def test_vp8_dimensions_from_a_key_frame() -> None:
    """Width and height come from the key frame header; a delta frame has none."""
    (key, *rest) = list(synthetic.video(0.2))
    assert vp8_dimensions(key.data) == (synthetic.WIDTH, synthetic.HEIGHT)
    assert vp8_dimensions(rest[0].data) is None


def test_manifest_round_trip_and_bad_manifests(tmp_path: Path) -> None:
    """A manifest survives JSON; a bad one is refused with RecordingError."""
    manifest = Manifest("id", "room", utc_iso(1.5))
    write_atomic(tmp_path / MANIFEST, manifest.to_json())
    assert read_manifest(tmp_path) == manifest
    assert parse_utc(manifest.started_utc) == 1.5
    assert not (tmp_path / (MANIFEST + ".tmp")).exists()
    (tmp_path / MANIFEST).write_text('{"tracks": 3}')
    with pytest.raises(RecordingError, match="not a recording manifest"):
        read_manifest(tmp_path)
    with pytest.raises(RecordingError, match="no manifest"):
        read_manifest(tmp_path / "missing")


async def test_sfu_records_each_participant_and_reconnects_in_a_new_segment(
    tmp_path: Path, clients: list[Client]
) -> None:
    """With consent on, each track is recorded undecoded; a rejoin adds segment 1."""
    events: list[tuple[str, bool, str | None]] = []
    forwarder = PassthroughForwarder()
    sfu = Sfu(forwarder=forwarder, data_dir=tmp_path, on_recording=lambda *e: events.append(e))
    a, b = Client(sfu, "a", (200, 0, 0)), Client(sfu, "b", (0, 200, 0))
    clients += [a, b]
    await a.join("room")
    await b.join("room")
    sfu.set_recording("room", True)
    assert events == [("room", True, None)]
    recording_id = sfu.recording("room")
    assert recording_id is not None
    directory = tmp_path / "recordings" / recording_id

    def recorded_s(pattern: str) -> list[float]:
        """Media time each of the matching files holds so far."""
        return [c.duration_s if (c := read_contents(f)) else 0.0 for f in directory.glob(pattern)]

    # More than a second of each of a's tracks on disk (waited on, not slept).
    await wait_for(lambda: len(recorded_s("a-s0-*")) == 2 and min(recorded_s("a-s0-*")) > 1.1)
    await sfu.leave("a")
    await a.close()
    again = Client(sfu, "a", (0, 0, 200))
    clients.append(again)
    await again.join("room")
    assert sfu.recording("room") == recording_id

    def segments() -> list[int]:
        return sorted(
            {t.segment for t in read_manifest(directory).tracks if t.participant_id == "a"}
        )

    await wait_for(lambda: segments() == [0, 1])
    sfu.set_recording("room", False)
    assert events[-1] == ("room", False, None)
    await sfu.close()
    manifest = read_manifest(directory)
    assert manifest.participants == {"a": {"segments": [0, 1]}, "b": {"segments": [0]}}
    for track in manifest.tracks:
        (stream,) = ffprobe(directory / track.file)["streams"]
        assert stream["codec_name"] == track.codec
    first = [t for t in manifest.tracks if t.participant_id == "a" and t.segment == 0]
    assert {t.kind for t in first} == {"audio", "video"}
    assert all(last_packet_s(directory / t.file) > 1.0 for t in first)
    assert forwarder.stats()["decoded_frames"] == 0


async def test_sfu_keeps_when_each_camera_was_off_in_the_manifest(
    tmp_path: Path, clients: list[Client]
) -> None:
    """A camera off before the recording starts opens a span at its start; turning it on
    closes it; a camera turned off while recording opens another (real aiortc peers)."""
    sfu = Sfu(forwarder=PassthroughForwarder(), data_dir=tmp_path)
    a, b = Client(sfu, "a", (200, 0, 0)), Client(sfu, "b", (0, 200, 0))
    clients += [a, b]
    await a.join("room")
    await b.join("room")
    await sfu.set_paused("a", "video", True)
    sfu.set_recording("room", True)
    recording_id = sfu.recording("room")
    assert recording_id is not None
    directory = tmp_path / "recordings" / recording_id

    def spans(participant_id: str) -> list[list[str | None]]:
        try:
            person = read_manifest(directory).participants.get(participant_id, {})
        except RecordingError:
            return []  # not written yet
        found: list[list[str | None]] = person.get("camera_off_utc", [])
        return found

    await wait_for(lambda: len(spans("a")) == 1)
    assert spans("a")[0][1] is None
    await sfu.set_paused("a", "video", False)
    await sfu.set_paused("b", "audio", True)  # a microphone: not a camera
    await sfu.set_paused("b", "video", True)
    await wait_for(lambda: spans("a")[0][1] is not None and len(spans("b")) == 1)
    (off, on) = spans("a")[0]
    assert parse_utc(on or "") >= parse_utc(off or "")
    sfu.set_recording("room", False)
    await sfu.close()
    assert spans("b")[0][1] is None  # still off when the recording stopped


def child(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    """Start tests/media/record_child.py recording into ``tmp_path``."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.media.record_child", "--data-dir", str(tmp_path), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def lines(process: subprocess.Popen[str]) -> Iterable[dict[str, Any]]:
    """The child's JSON lines, as they come."""
    assert process.stdout is not None
    for line in process.stdout:
        yield json.loads(line)


@pytest.mark.slow
def test_sigkill_leaves_playable_files_listed_in_the_manifest(tmp_path: Path) -> None:
    """After SIGKILL mid-consult, every file opens and plays to within 2 s of the kill."""
    process = child(tmp_path)
    try:
        stats = 0
        for event in lines(process):
            # 300 packets written, then five more stats lines (0.2 s apart): the files
            # hold about a second more than the manifest has had time to say.
            stats += event.get("stats", {}).get("recording_packets", 0) > 300
            if stats > 5:
                break
        killed_at = time.time()
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(10)
    (directory,) = (tmp_path / "recordings").iterdir()
    manifest = read_manifest(directory)
    assert manifest.state is RecordingState.RECORDING  # never got to say stopped
    assert {(t.participant_id, t.kind) for t in manifest.tracks} == {
        (p, k) for p in "ab" for k in ("audio", "video")
    }
    for track in manifest.tracks:
        (stream,) = ffprobe(directory / track.file)["streams"]
        assert stream["codec_name"] == track.codec
        end_s = parse_utc(track.start_utc or "") + last_packet_s(directory / track.file)
        assert killed_at - end_s < 2.0, (track.file, killed_at - end_s)
    # The export holds everything the files hold, not what the stale manifest said.
    rebuilt = rebuild_manifest(directory)
    for track in rebuilt.tracks:
        assert track.duration_s == pytest.approx(last_packet_s(directory / track.file), abs=2e-3)
    ends = [p.offset_s + p.track.duration_s for p in placements(rebuilt)]
    out = tmp_path / "export.webm"
    export(directory, out)
    assert float(ffprobe(out)["format"]["duration"]) >= max(ends) - 0.05
    # The next recorder closes it as it is made: failed, interrupted, the rebuilt manifest;
    # a recording of its own, started at once, is not touched.
    asyncio.run(recover_beside_a_new_recording(tmp_path))
    closed = read_manifest(directory)
    assert (closed.state, closed.error) == (RecordingState.FAILED, INTERRUPTED)
    assert closed.tracks == rebuilt.tracks
    assert closed.stopped_utc is not None
    (own,) = [d for d in (tmp_path / "recordings").iterdir() if d != directory]
    assert read_manifest(own).state is RecordingState.STOPPED


async def recover_beside_a_new_recording(tmp_path: Path) -> None:
    """A recorder made on ``tmp_path`` that records a room at once, then closes."""
    recorder = Recorder(tmp_path)
    recorder.start("another-room")
    await recorder.close()


async def test_a_manifest_cut_by_a_crash_is_rebuilt_from_the_files(
    recorder: Recorder, tmp_path: Path
) -> None:
    """Stale durations and an unlisted file (a crash just after it opened) come back from
    the files; a manifest that stopped is trusted as it is."""
    video, audio = two_seconds_of_dr_li(recorder)
    directory, stopped = await finished(recorder, tmp_path)
    assert rebuild_manifest(directory) == stopped
    by_kind = {t.kind: t for t in stopped.tracks}
    crashed = Manifest.from_json(stopped.to_json())
    crashed.state, crashed.stopped_utc = RecordingState.RECORDING, None
    crashed.tracks = [t for t in crashed.tracks if t.kind == "video"]
    crashed.tracks[0].duration_s, crashed.tracks[0].packets = 0.5, 10
    write_atomic(directory / MANIFEST, crashed.to_json())
    rebuilt = rebuild_manifest(directory)
    assert rebuilt.state is RecordingState.RECORDING
    got = {t.kind: t for t in rebuilt.tracks}
    assert (got["video"].duration_s, got["video"].packets) == (
        by_kind["video"].duration_s,
        len(video),
    )
    assert got["video"].start_utc == by_kind["video"].start_utc  # the manifest's estimate
    assert (got["audio"].file, got["audio"].codec, got["audio"].packets) == (
        by_kind["audio"].file,
        "opus",
        len(audio),
    )
    assert got["audio"].duration_s == by_kind["audio"].duration_s
    assert got["audio"].start_utc is not None
    assert rebuilt.participants == {"dr-li": {"segments": [0]}}
    assert read_manifest(directory) == crashed  # nothing written


def test_unreadable_files_hold_nothing(tmp_path: Path) -> None:
    """A file of our name that is empty or not a container adds no track."""
    (tmp_path / "p-s0-video-0.webm").write_bytes(b"")
    (tmp_path / "p-s0-audio-0.webm").write_bytes(b"not a matroska file")
    assert read_contents(tmp_path / "p-s0-video-0.webm") is None
    assert read_contents(tmp_path / "p-s0-audio-0.webm") is None
    write_atomic(tmp_path / MANIFEST, Manifest("r", "room", utc_iso(0.0)).to_json())
    assert rebuild_manifest(tmp_path).tracks == []


@pytest.mark.slow
def test_a_full_disk_stops_recording_and_forwarding_carries_on(tmp_path: Path) -> None:
    """Writes failing at the OS (file size limit) fail the recording, not the consult."""
    process = child(tmp_path, "--max-file-bytes", "4000", "--seconds", "20")
    error: str | None = None
    forwarded_at_error = 0
    try:
        for event in lines(process):
            if event.get("on") is False:
                error = event["error"]
            elif "stats" in event and error is not None:
                if not forwarded_at_error:
                    forwarded_at_error = event["stats"]["forwarded_packets"]
                elif event["stats"]["forwarded_packets"] > forwarded_at_error + 50:
                    assert event["stats"]["recording_errors"] == 1
                    break
    finally:
        process.kill()
        process.wait(10)
    assert error is not None
    assert error.startswith("EFBIG")
    (directory,) = (tmp_path / "recordings").iterdir()
    manifest = read_manifest(directory)
    assert manifest.state is RecordingState.FAILED
    assert manifest.error == error
