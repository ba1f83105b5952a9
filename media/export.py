"""One reviewable file of a whole recorded consult, built by an ffmpeg filter graph.

Layout: one tile per participant, side by side, in the order participants first
appear in the manifest; each of a participant's video files (one per segment) is
overlaid onto its tile from its wall-clock offset, and disappears when it ends.
All audio files are delayed to their wall-clock offsets and mixed.

The offset of a track is ``start_utc - origin``, where ``start_utc`` is the
manifest's estimate of the wall clock of the track's media time 0 (see
:mod:`media.recorder`) and ``origin`` the earliest of them: sound and picture of a
participant are placed independently, each by its own clock, so that a track that
started late (a microphone enabled after the camera, a reconnect) stays in sync.

Building the command is pure (:func:`export_command`); :func:`export` runs ffmpeg
(a system program: ``make sysdeps`` installs it) and reports a clear error when it
is missing or fails.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from media.exceptions import RecordingError
from media.recorder import Manifest, TrackEntry, parse_utc, read_manifest

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


def export_command(
    manifest: Manifest,
    directory: Path,
    out: Path,
    *,
    tile: tuple[int, int] = (640, 360),
    fps: int = 30,
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
    maps = []
    video_codec, audio_codec = _ENCODERS[suffix]
    if columns:
        maps += ["-map", f"[{last}]", *video_codec]
    if audio:
        graph.append(f"{''.join(audio)}amix=inputs={len(audio)}:duration=longest:normalize=0[mix]")
        maps += ["-map", "[mix]", *audio_codec]
    command += ["-filter_complex", ";".join(graph), *maps, "-t", f"{duration_s:.3f}", str(out)]
    return command


def export(directory: Path, out: Path, *, timeout_s: float = 3600.0) -> list[str]:
    """Write the export of the recording in ``directory`` to ``out``; the command run.

    Raises
    ------
    RecordingError
        When the manifest is unreadable, the recording holds no media, ffmpeg is
        missing or ffmpeg fails (its message included).
    """
    manifest = read_manifest(directory)
    command = export_command(manifest, directory, out)
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
