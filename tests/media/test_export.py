"""Export of a whole consult: layout, wall-clock offsets, and A/V sync measured by decoding."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from media import export as export_mod
from media.exceptions import RecordingError
from media.export import export, export_command, placements
from media.recorder import Manifest, Recorder, TrackEntry, parse_utc, read_manifest, utc_iso
from tests.media import synthetic
from tests.media.probe import ffprobe

PERIOD_S = 1.0
AUDIO_LATE_S = 0.5  # the microphone's track starts this much after the camera's


async def paced(recorder: Recorder, source_id: str, frames: list[synthetic.Encoded]) -> None:
    """Hand ``frames`` to the recorder at the wall-clock pace of their media time."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for frame in frames:
        await asyncio.sleep(max(0.0, start + frame.time_s - loop.time()))
        recorder.write(source_id, frame.mime_type, frame.data, frame.pts, frame.keyframe)


def late_audio(duration_s: float) -> list[synthetic.Encoded]:
    """Audio of the same timeline as the video, whose track starts ``AUDIO_LATE_S`` later.

    Its timestamps start at 0 again, as an RTP receiver maps them.
    """
    skip = round(AUDIO_LATE_S * 48000)
    frames = [f for f in synthetic.audio(duration_s, period_s=PERIOD_S) if f.pts >= skip]
    return [
        synthetic.Encoded(f.kind, f.mime_type, f.data, f.pts - skip, f.keyframe) for f in frames
    ]


def onsets(times: np.ndarray, on: np.ndarray) -> list[float]:
    """Times at which ``on`` turns true."""
    rising = np.flatnonzero(on[1:] & ~on[:-1]) + 1
    return [float(times[i]) for i in rising]


def flash_and_beep_onsets(path: Path) -> tuple[list[float], list[float]]:
    """Onsets of bright frames (left tile) and of loud 10 ms audio windows in ``path``."""
    frame_times, brightness = [], []
    samples: list[np.ndarray] = []
    first_sample_s: float | None = None
    with av.open(str(path)) as container:
        for frame in container.decode(video=0, audio=0):
            if isinstance(frame, av.VideoFrame):
                image = frame.to_ndarray(format="gray")
                frame_times.append(float(frame.time or 0.0))
                brightness.append(float(image[:, : image.shape[1] // 2].mean()))
            else:
                if first_sample_s is None:
                    first_sample_s = float(frame.time or 0.0)
                samples.append(frame.to_ndarray().astype(np.float64).reshape(-1, frame.samples)[0])
    audio = np.concatenate(samples)
    rate = 48000
    window = rate // 100
    usable = len(audio) // window * window
    rms = np.sqrt((audio[:usable].reshape(-1, window) ** 2).mean(axis=1))
    audio_times = (first_sample_s or 0.0) + np.arange(len(rms)) * window / rate
    light = np.array(brightness)
    flashes = onsets(np.array(frame_times), light > (light.max() + light.min()) / 2)
    beeps = onsets(audio_times, rms > rms.max() / 4)
    return flashes, beeps


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".webm", ".mp4"])
async def test_export_keeps_sound_and_picture_in_sync(tmp_path: Path, suffix: str) -> None:
    """A source that beeps when it flashes, audio track started 0.5 s late: in sync < 100 ms."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make sysdeps installs it)")
    duration_s = 3.6
    recorder = Recorder(tmp_path)
    recorder.start("room")
    recorder.add_track("room", "clinic", 0, "v", "video")
    recorder.add_track("room", "clinic", 0, "a", "audio")
    video = list(synthetic.video(duration_s, period_s=PERIOD_S))
    audio = late_audio(duration_s)

    async def audio_later() -> None:
        await asyncio.sleep(AUDIO_LATE_S)
        await paced(recorder, "a", audio)

    await asyncio.gather(paced(recorder, "v", video), audio_later())
    await recorder.close()
    (directory,) = (tmp_path / "recordings").iterdir()
    out = tmp_path / f"consult{suffix}"
    export(directory, out)
    flashes, beeps = flash_and_beep_onsets(out)
    assert len(flashes) >= 3
    assert len(beeps) == len(flashes)
    offsets = [b - f for f, b in zip(flashes, beeps, strict=True)]
    assert max(abs(x) for x in offsets) < 0.1, offsets


def _track(participant: str, kind: str, start_s: float, file: str) -> TrackEntry:
    return TrackEntry(participant, 0, kind, "vp8", file, utc_iso(start_s), None, 2.0, 10, 10)


def test_participants_side_by_side_and_offsets_from_the_earliest_track() -> None:
    """Each participant gets a column; offsets count from the earliest track."""
    manifest = Manifest("r", "room", utc_iso(100.0))
    manifest.tracks = [
        _track("a", "video", 100.2, "a.webm"),
        _track("a", "audio", 100.25, "aa.webm"),
        _track("b", "video", 101.0, "b.webm"),
        _track("a", "video", 105.0, "a1.webm"),  # a's second segment, same column
    ]
    placed = placements(manifest)
    assert [(p.tile, round(p.offset_s, 3)) for p in placed] == [
        (0, 0.0),
        (-1, 0.05),
        (1, 0.8),
        (0, 4.8),
    ]
    command = export_command(manifest, Path("/r"), Path("out.webm"), tile=(320, 240))
    graph = command[command.index("-filter_complex") + 1]
    assert "s=640x240" in graph
    assert "adelay=50:all=1" in graph
    assert "overlay=x=320:y=0" in graph


def test_bad_exports_are_refused(tmp_path: Path) -> None:
    """A wrong suffix, an empty recording or a missing manifest raise RecordingError."""
    manifest = Manifest("r", "room", utc_iso(0.0))
    with pytest.raises(RecordingError, match="no media"):
        export_command(manifest, tmp_path, tmp_path / "x.mp4")
    manifest.tracks = [_track("a", "video", 1.0, "a.webm")]
    with pytest.raises(RecordingError, match=r"\.mp4 or \.webm"):
        export_command(manifest, tmp_path, tmp_path / "x.avi")
    with pytest.raises(RecordingError, match="no manifest"):
        export(tmp_path, tmp_path / "x.mp4")


def frame_at(path: Path, time_s: float) -> np.ndarray:
    """The grey levels of the first frame of ``path`` at or after ``time_s``."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if float(frame.time or 0.0) >= time_s:
                image: np.ndarray = frame.to_ndarray(format="gray").astype(np.int16)
                return image
    raise AssertionError(f"no frame at {time_s} s in {path}")


@pytest.mark.slow
async def test_export_draws_each_participants_name_on_its_tile(tmp_path: Path) -> None:
    """With names, the bottom-left corner of the tile shows text (Chinese included) and
    the rest of the picture is what it is without them."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make sysdeps installs it)")
    recorder = Recorder(tmp_path)
    recorder.start("room")
    recorder.add_track("room", "clinic", 0, "v", "video")
    await paced(recorder, "v", list(synthetic.video(1.5, period_s=PERIOD_S)))
    await recorder.close()
    (directory,) = (tmp_path / "recordings").iterdir()
    named, plain = tmp_path / "named.webm", tmp_path / "plain.webm"
    command = export(directory, named, names={"clinic": "张丽 Dr Zhang"})
    export(directory, plain)
    assert any("drawtext" in part for part in command)
    with_name, without = frame_at(named, 0.5), frame_at(plain, 0.5)
    height, _ = with_name.shape
    changed = np.abs(with_name - without) > 40
    label = (slice(height - 60, height), slice(0, 320))
    assert changed[label].mean() > 0.02  # the letters (white on the dark box)
    elsewhere = (slice(0, height - 80), slice(0, 640))
    assert changed[elsewhere].mean() < 0.005


def test_camera_off_spans_join_turned_off_stale_and_missing_video() -> None:
    """Off is the manifest's camera-off spans, gaps over STALE_S between frames, and time
    with sound but no video file; a short gap or a second segment's video is not off."""
    manifest = Manifest("r", "room", utc_iso(100.0))
    manifest.tracks = [
        TrackEntry("a", 0, "video", "vp8", "a.webm", utc_iso(100.0), None, 4.0, 10, 10),
        TrackEntry("a", 0, "audio", "opus", "aa.webm", utc_iso(100.0), None, 8.0, 10, 10),
        TrackEntry("b", 0, "video", "vp8", "b.webm", utc_iso(100.0), None, 8.0, 10, 10),
    ]
    manifest.participants = {
        "a": {"segments": [0]},
        "b": {"segments": [0], "camera_off_utc": [[utc_iso(102.0), utc_iso(103.0)]]},
    }
    every_frame = [i / 30 for i in range(241)]
    frames = {
        "a.webm": [t for t in every_frame if t <= 4.0 and not 1.0 < t < 2.5],  # 1.5 s gap
        "b.webm": [t for t in every_frame if not 5.0 < t < 5.5],  # 0.5 s gap: a slow link
    }
    spans = export_mod.camera_off_spans(manifest, frames)
    assert set(spans) == {"a", "b"}
    (gap_a, after_a) = spans["a"]
    assert gap_a == pytest.approx((1.0, 2.5), abs=0.04)
    assert after_a == pytest.approx((4.0, 8.0), abs=0.04)  # sound goes on, no video
    assert spans["b"] == [pytest.approx((2.0, 3.0), abs=0.001)]
    assert export_mod.initials("张丽 Dr Zhang") == "张Z"
    assert export_mod.initials("wang_wei") == "WW"
    assert export_mod.initials("李明") == "李明"


def _paint(image: np.ndarray, box: tuple[slice, slice]) -> tuple[float, float]:
    """Median grey level and share of near-white pixels of ``image`` in ``box``."""
    part = image[box]
    return float(np.median(part)), float((part > 200).mean())


@pytest.mark.slow
async def test_camera_off_shows_initials_and_name_in_the_export(tmp_path: Path) -> None:
    """A camera turned off for 1 s and then a publisher silent for 2 s: the export shows a
    slate tile with large white initials at both times (never the grey picture frozen),
    the picture before and after, the name in the corner throughout; ffprobe reads it."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (make sysdeps installs it)")
    recorder = Recorder(tmp_path)
    recorder.start("room")
    recorder.add_track("room", "clinic", 0, "v", "video")
    frames = list(synthetic.video(6.0, period_s=100.0))  # never flashes: grey 40 throughout
    loop = asyncio.get_running_loop()
    start = loop.time()
    camera_off = False
    for frame in frames:
        await asyncio.sleep(max(0.0, start + frame.time_s - loop.time()))
        if not camera_off and frame.time_s >= 1.5:
            recorder.set_camera_off("room", "clinic", True)
            camera_off = True
        if frame.time_s >= 2.5:
            recorder.set_camera_off("room", "clinic", False)  # again: ignored
        if 3.0 <= frame.time_s < 5.0:
            continue  # the publisher stopped sending (resumes at a keyframe at 5 s)
        recorder.write("v", frame.mime_type, frame.data, frame.pts, frame.keyframe)
    await recorder.close()
    (directory,) = (tmp_path / "recordings").iterdir()
    manifest = read_manifest(directory)
    (span,) = manifest.participants["clinic"]["camera_off_utc"]
    assert parse_utc(span[1]) - parse_utc(span[0]) == pytest.approx(1.0, abs=0.2)
    out = tmp_path / "consult.mp4"
    command = export(directory, out, names={"clinic": "张丽 Dr Zhang"})
    graph = command[command.index("-filter_complex") + 1]
    assert "drawbox" in graph
    assert "initials" in graph
    probed = ffprobe(out)
    (video,) = [s for s in probed["streams"] if s["codec_type"] == "video"]
    assert (video["width"], video["height"]) == (640, 360)
    assert float(probed["format"]["duration"]) == pytest.approx(6.0, abs=0.2)
    centre = (slice(120, 240), slice(220, 420))
    corner = (slice(10, 60), slice(100, 150))  # inside the 4:3 picture, padded to 16:9
    name = (slice(300, 360), slice(0, 320))
    for time_s in (0.7, 2.6 - 0.4, 4.0, 5.7):
        image = frame_at(out, time_s)
        off = 1.5 + 0.2 < time_s < 2.5 - 0.1 or 3.0 + 0.1 < time_s < 5.0 - 0.1  # the whole gap
        level, white = _paint(image, corner)
        _, letters = _paint(image, centre)
        _, named = _paint(image, name)
        if off:
            assert abs(level - 55) < 15, (time_s, level)  # slate #2b3a4d, not grey 40
            assert letters > 0.03, (time_s, letters)  # the initials
        else:
            assert abs(level - 40) < 8, (time_s, level)
            assert letters == 0.0, (time_s, letters)
        assert white == 0.0
        assert named > 0.02, (time_s, named)
