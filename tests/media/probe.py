"""ffprobe and PyAV readers for the recording tests (ffprobe is a system program)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import av
import pytest


def ffprobe(path: Path) -> dict[str, Any]:
    """ffprobe's streams (with packet counts) and format of ``path``; fails if unreadable."""
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed (make sysdeps installs ffmpeg)")
    result = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_packets",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    probed: dict[str, Any] = json.loads(result.stdout)
    return probed


def last_packet_s(path: Path) -> float:
    """Media time in seconds of the last packet that can be read from ``path``."""
    with av.open(str(path)) as container:
        stream = container.streams[0]
        last = 0.0
        for packet in container.demux(stream):
            if packet.pts is not None:
                last = max(last, float(packet.pts * stream.time_base))
    return last


def payloads(path: Path) -> list[bytes]:
    """The encoded packets of the first stream of ``path``, as stored."""
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams[0]) if p.size]
