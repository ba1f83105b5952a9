"""One reviewable file of a whole recorded consult, built by an ffmpeg filter graph.

Layout: one tile per participant, side by side, in the order participants first
appear in the manifest; each of a participant's video files (one per segment) is
overlaid onto its tile from its wall-clock offset, and disappears when it ends.
All audio files are delayed to their wall-clock offsets and mixed. Each tile carries the
participant's name (when the caller knows it: the manifest holds ids only) in its
bottom-left corner, drawn from a text file so that no name needs escaping in the graph.

A camera that is off shows the person's initials (large, centred, on a slate tile) and
their name, as the room does, never a black or frozen last frame. Off is: the spans
the manifest records as camera off (the participant turned it off, or a moderator did,
or audio only), every gap longer than ``stale_s`` between two recorded frames of the
participant (a publisher that stopped sending, a frozen link), and any time the
participant is recorded (their sound) with no video file running.

The offset of a track is ``start_utc - origin``, where ``start_utc`` is the
manifest's estimate of the wall clock of the track's media time 0 (see
:mod:`media.recorder`) and ``origin`` the earliest of them: sound and picture of a
participant are placed independently, each by its own clock, so that a track that
started late (a microphone enabled after the camera, a reconnect) stays in sync.

A recording cut by a crash is exported as its files hold it, not as its last manifest
said (up to ``manifest_interval_s`` stale): :func:`export` reads the manifest through
:func:`media.recorder.rebuild_manifest`.

Building the command is pure (:func:`export_command`); :func:`export` runs ffmpeg
(a system program: ``make sysdeps`` installs it) and reports a clear error when it
is missing or fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from media.exceptions import RecordingError
from media.recorder import Manifest, TrackEntry, parse_utc, rebuild_manifest

# The font of the names on the tiles (Debian's fonts-noto-cjk: Chinese and Latin).
NAME_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")

# A participant's video with no frame for longer than this is shown as a camera off.
STALE_S = 1.0

# The tile of a camera that is off: the room's avatar background (web/style.css .avatar).
AVATAR_COLOR = "0x2b3a4d"

# Encoders per output container: (video codec options, audio codec options).
_ENCODERS = {
    ".webm": (
        [
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "1M",
            "-pix_fmt",
            "yuv420p",
        ],
        ["-c:a", "libopus", "-b:a", "96k"],
    ),
    ".mp4": (
        ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"],
        ["-c:a", "aac", "-b:a", "128k"],
    ),
}


@dataclass(frozen=True)
class Placement:
    """Where a recorded file goes in the export: its tile (video) and offset."""

    track: TrackEntry
    offset_s: float  # from the start of the export
    tile: int  # participant column (video), -1 for audio


def placements(manifest: Manifest) -> list[Placement]:
    """Every recorded file with its offset and tile, in manifest order.

    Raises
    ------
    RecordingError
        When the recording holds no file with a start time.
    """
    tracks = [t for t in manifest.tracks if t.start_utc is not None and t.packets > 0]
    if not tracks:
        raise RecordingError(f"recording {manifest.recording_id} holds no media")
    starts = [parse_utc(t.start_utc or "") for t in tracks]
    origin = min(starts)
    columns: dict[str, int] = {}
    for track in tracks:
        if track.kind == "video":
            columns.setdefault(track.participant_id, len(columns))
    return [
        Placement(t, round(s - origin, 6), columns[t.participant_id] if t.kind == "video" else -1)
        for t, s in zip(tracks, starts, strict=True)
    ]


Span = tuple[float, float]  # seconds from the start of the export, start < end


def initials(name: str) -> str:
    """The letters of a camera-off tile, as the room draws them (web/app.js ``initials``):
    first and last word's first letters, or a single word's first two."""
    words = re.sub(r"[-_.]", " ", name).split() or ["?"]
    letters = words[0][0] + words[-1][0] if len(words) > 1 else words[0][:2]
    return letters.upper()


def _union(spans: Iterable[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _subtract(spans: Sequence[Span], holes: Sequence[Span]) -> list[Span]:
    """``spans`` minus ``holes`` (both merged and sorted)."""
    left: list[Span] = []
    for start, end in spans:
        cursor = start
        for hole_start, hole_end in holes:
            if hole_end <= cursor or hole_start >= end:
                continue
            if hole_start > cursor:
                left.append((cursor, hole_start))
            cursor = max(cursor, hole_end)
        if cursor < end:
            left.append((cursor, end))
    return left


def camera_off_spans(
    manifest: Manifest,
    frame_times: Mapping[str, Sequence[float]],
    *,
    fps: int = 30,
    stale_s: float = STALE_S,
) -> dict[str, list[Span]]:
    """Participant id -> the spans of the export in which their camera is off.

    ``frame_times``: recorded file name -> media times in seconds of its video frames
    (a file missing from it counts as showing from its first to its last frame).
    Only participants with a tile (some video recorded) are in the answer.
    """
    placed = placements(manifest)
    first = placed[0]
    origin = parse_utc(first.track.start_utc or "") - first.offset_s
    end_s = max(p.offset_s + p.track.duration_s for p in placed) + 1 / fps
    present: dict[str, list[Span]] = {}
    showing: dict[str, list[Span]] = {}
    for p in placed:
        pid, offset = p.track.participant_id, p.offset_s
        present.setdefault(pid, []).append((offset, offset + p.track.duration_s + 1 / fps))
        if p.tile < 0:
            continue
        spans = showing.setdefault(pid, [])
        times = list(frame_times.get(p.track.file, ()))
        if not times:  # not read: shown from its first to its last frame
            spans.append((offset, offset + p.track.duration_s + 1 / fps))
            continue
        following = [*times[1:], times[-1] + 1 / fps]
        for this, after in zip(times, following, strict=True):
            if after - this <= stale_s:
                spans.append((offset + this - times[0], offset + after - times[0]))
    answer: dict[str, list[Span]] = {}
    for pid, shown in showing.items():
        turned_off = []
        for off_utc, on_utc in manifest.participants.get(pid, {}).get("camera_off_utc", []):
            on_s = end_s if on_utc is None else parse_utc(on_utc) - origin
            turned_off.append((parse_utc(off_utc) - origin, on_s))
        visible = _subtract(_union(shown), _union(turned_off))
        off = _subtract(_union(present[pid]), visible)
        answer[pid] = [(round(a, 3), round(b, 3)) for a, b in off if b - a >= 1 / fps]
    return answer


def export_command(
    manifest: Manifest,
    directory: Path,
    out: Path,
    *,
    tile: tuple[int, int] = (640, 360),
    fps: int = 30,
    name_files: Mapping[str, Path] | None = None,
    initials_files: Mapping[str, Path] | None = None,
    camera_off: Mapping[str, Sequence[Span]] | None = None,
    font: Path = NAME_FONT,
) -> list[str]:
    """The ffmpeg command line that writes the export of ``manifest`` to ``out``.

    Parameters
    ----------
    manifest, directory
        The recording and the folder its files are in.
    out
        ``.mp4`` (H.264 + AAC) or ``.webm`` (VP8 + Opus).
    tile
        Width and height in pixels of each participant's picture.
    fps
        Frame rate of the export in frames per second.
    name_files, font
        Participant id -> a UTF-8 file holding the name to draw on its tile, in ``font``.
    initials_files, camera_off
        Participant id -> a file holding their initials, and the spans in which their
        camera is off (:func:`camera_off_spans`): the tile is slate with the initials.

    Raises
    ------
    RecordingError
        For another suffix, or a recording without media.
    """
    suffix = out.suffix.lower()
    if suffix not in _ENCODERS:
        raise RecordingError(f"export to .mp4 or .webm, not {out.name!r}")
    placed = placements(manifest)
    width, height = tile
    duration_s = max(p.offset_s + p.track.duration_s for p in placed) + 1 / fps
    columns = max((p.tile for p in placed), default=-1) + 1
    command = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y"]
    for placement in placed:
        command += ["-i", str(directory / placement.track.file)]
    graph = []
    last = "canvas"
    if columns:
        graph.append(
            f"color=c=black:s={width * columns}x{height}:r={fps}:d={duration_s:.3f}[canvas]"
        )
    audio = []
    for index, placement in enumerate(placed):
        offset = placement.offset_s
        if placement.tile >= 0:
            graph.append(
                f"[{index}:v]setpts=PTS-STARTPTS+{offset:.6f}/TB,"
                f"scale={width}:{height}:force_original_aspect_ratio=decrease,"
                f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2[v{index}]"
            )
            graph.append(
                f"[{last}][v{index}]overlay=x={placement.tile * width}:y=0:eof_action=pass"
                f"[o{index}]"
            )
            last = f"o{index}"
        else:
            delay_ms = round(offset * 1000)
            graph.append(
                f"[{index}:a]aresample=48000,asetpts=PTS-STARTPTS,adelay={delay_ms}:all=1[a{index}]"
            )
            audio.append(f"[a{index}]")
    tiles = {p.track.participant_id: p.tile for p in placed if p.tile >= 0}
    for participant_id, spans in sorted((camera_off or {}).items()):
        column = tiles.get(participant_id)
        if column is None or not spans:
            continue
        enable = "+".join(f"between(t,{a:.3f},{b:.3f})" for a, b in spans)
        graph.append(
            f"[{last}]drawbox=x={column * width}:y=0:w={width}:h={height}:color={AVATAR_COLOR}"
            f":t=fill:enable='{enable}'[c{column}]"
        )
        last = f"c{column}"
        letters = (initials_files or {}).get(participant_id)
        if letters is not None:
            graph.append(
                f"[{last}]drawtext=fontfile={_filter_path(font)}:textfile={_filter_path(letters)}"
                f":fontsize={height // 4}:fontcolor=white"
                f":x={column * width}+({width}-tw)/2:y=({height}-th)/2:enable='{enable}'"
                f"[i{column}]"
            )
            last = f"i{column}"
    for participant_id, path in sorted((name_files or {}).items()):
        column = tiles.get(participant_id)
        if column is None:
            continue
        graph.append(
            f"[{last}]drawtext=fontfile={_filter_path(font)}:textfile={_filter_path(path)}"
            f":fontsize={max(12, height // 18)}:fontcolor=white:box=1:boxcolor=black@0.6"
            f":boxborderw=6:x={column * width + 12}:y=h-th-12[n{column}]"
        )
        last = f"n{column}"
    maps = []
    video_codec, audio_codec = _ENCODERS[suffix]
    if columns:
        maps += ["-map", f"[{last}]", *video_codec]
    if audio:
        graph.append(f"{''.join(audio)}amix=inputs={len(audio)}:duration=longest:normalize=0[mix]")
        maps += ["-map", "[mix]", *audio_codec]
    command += ["-filter_complex", ";".join(graph), *maps, "-t", f"{duration_s:.3f}", str(out)]
    return command


def video_frame_times(directory: Path, manifest: Manifest) -> dict[str, list[float]]:
    """Recorded video file name -> the media time in seconds of each of its frames
    (read from the container, nothing decoded; an unreadable file is left out)."""
    import av

    found: dict[str, list[float]] = {}
    for track in manifest.tracks:
        if track.kind != "video" or track.packets == 0:
            continue
        try:
            with av.open(str(directory / track.file)) as container:
                found[track.file] = [
                    float(packet.pts * packet.time_base)
                    for packet in container.demux(video=0)
                    if packet.pts is not None and packet.time_base is not None
                ]
        except (OSError, av.FFmpegError):
            continue
    return found


def _filter_path(path: Path) -> str:
    """A path as a filter option value (``\\``, ``:`` and ``'`` escaped)."""
    return str(path).replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'")


def export(
    directory: Path,
    out: Path,
    *,
    names: Mapping[str, str] | None = None,
    timeout_s: float = 3600.0,
) -> list[str]:
    """Write the export of the recording in ``directory`` to ``out``; the command run.

    ``names``: participant id -> the name drawn on its tile (and whose initials show
    while the camera is off; the id's when no name is known).

    Raises
    ------
    RecordingError
        When the manifest is unreadable, the recording holds no media, ffmpeg is
        missing or ffmpeg fails (its message included).
    """
    manifest = rebuild_manifest(directory)
    with tempfile.TemporaryDirectory(prefix="tc-export-") as names_dir:
        name_files, initials_files = {}, {}
        for index, participant_id in enumerate(sorted(manifest.participants)):
            name = (names or {}).get(participant_id)
            if name is not None:
                name_files[participant_id] = Path(names_dir) / f"name-{index}.txt"
                name_files[participant_id].write_text(name, encoding="utf-8")
            initials_files[participant_id] = Path(names_dir) / f"initials-{index}.txt"
            initials_files[participant_id].write_text(
                initials(name or participant_id), encoding="utf-8"
            )
        command = export_command(
            manifest,
            directory,
            out,
            name_files=name_files,
            initials_files=initials_files,
            camera_off=camera_off_spans(manifest, video_frame_times(directory, manifest)),
        )
        if shutil.which(command[0]) is None:
            raise RecordingError("ffmpeg is not installed (Debian: apt-get install ffmpeg)")
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise RecordingError(f"ffmpeg took longer than {timeout_s:.0f} s") from None
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1:] or ["no message"]
        raise RecordingError(f"ffmpeg failed ({result.returncode}): {message[0]}")
    return command
