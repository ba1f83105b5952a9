"""Encoded media for recorder tests: VP8/H.264 video that flashes, Opus audio that beeps.

Every ``period_s`` the picture turns white for one frame-time window and a 1 kHz tone
plays for the same window, so that an exported file can be checked for A/V sync by
finding both events.
"""

from __future__ import annotations

import fractions
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)
FPS = 30
WIDTH, HEIGHT = 160, 120
FLASH_S = 0.2  # how long each flash and beep lasts
AUDIO_FRAME_SAMPLES = 960  # 20 ms at 48 kHz


@dataclass(frozen=True)
class Encoded:
    """One encoded frame as the passthrough forwarder hands it on."""

    kind: str
    mime_type: str
    data: bytes
    pts: int  # in the RTP clock of its kind
    keyframe: bool

    @property
    def time_s(self) -> float:
        base = VIDEO_TIME_BASE if self.kind == "video" else AUDIO_TIME_BASE
        return float(self.pts * base)


def flashing(t_s: float, period_s: float) -> bool:
    """Whether the source is flashing/beeping at media time ``t_s``."""
    phase = t_s % period_s
    return t_s >= period_s / 2 and phase < FLASH_S


def video(duration_s: float, *, codec: str = "vp8", period_s: float = 1.0) -> Iterator[Encoded]:
    """Encoded video frames, white while :func:`flashing`, dark grey otherwise."""
    library, mime = {"vp8": ("libvpx", "video/VP8"), "h264": ("libx264", "video/H264")}[codec]
    encoder = av.CodecContext.create(library, "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base = VIDEO_TIME_BASE
    encoder.framerate = FPS
    encoder.gop_size = FPS  # a keyframe a second, as a publisher asked by PLIs would
    encoder.options = (
        {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        if codec == "vp8"
        else {"preset": "ultrafast", "tune": "zerolatency", "bf": "0"}
    )
    for i in range(round(duration_s * FPS)):
        t_s = i / FPS
        level = 235 if flashing(t_s, period_s) else 40
        image = np.full((HEIGHT, WIDTH, 3), level, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * (90000 // FPS)
        frame.time_base = VIDEO_TIME_BASE
        for packet in encoder.encode(frame):
            yield Encoded("video", mime, bytes(packet), int(packet.pts or 0), packet.is_keyframe)


def audio(duration_s: float, *, period_s: float = 1.0) -> Iterator[Encoded]:
    """Encoded Opus frames of 20 ms: a 1 kHz tone while :func:`flashing`, else silence."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = 48000
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.time_base = AUDIO_TIME_BASE
    for i in range(round(duration_s * 50)):
        start = i * AUDIO_FRAME_SAMPLES
        t = (start + np.arange(AUDIO_FRAME_SAMPLES)) / 48000
        on = np.array([flashing(x, period_s) for x in t])
        tone = (np.sin(2 * np.pi * 1000 * t) * 12000 * on).astype(np.int16)
        samples = np.repeat(tone, 2).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = start
        frame.time_base = AUDIO_TIME_BASE
        for packet in encoder.encode(frame):
            # RTP timestamps start at 0: drop the encoder's negative pre-skip offset.
            pts = int(packet.pts or 0) + encoder.delay
            yield Encoded("audio", "audio/opus", bytes(packet), pts, True)
