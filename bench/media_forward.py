"""Server CPU per subscriber: passthrough forwarding vs aiortc's MediaRelay, and recording.

One publisher sends 360p 30 fps VP8 at about 500 kbps plus Opus (pre-encoded frames
looped, so the publisher costs almost nothing); N subscribers in another process
receive without decoding (their receivers are tapped, they only count frames). The
server (an :class:`media.sfu.Sfu` behind a JSON-lines socket on 127.0.0.1) runs in a
process of its own, and its CPU time is read from ``/proc/<pid>/stat`` over each
measurement window. For each forwarder, in one run::

    baseline     publisher only                    -> cpu0 (% of a core)
    recording    publisher recorded (2 tracks)     -> per recorded track
    N subs       publisher + N subscribers         -> (cpuN - cpu0) / N per subscriber

Usage::

    .venv/bin/python bench/media_forward.py [--subscribers 10,20] [--relay-subscribers 2,4]
        [--window-s 8]

Targets (issue 5): passthrough >= 10x cheaper per subscriber than MediaRelay, >= 40
subscribers per core; recording <= 2 % of a core per track.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)

from media.forwarder import RelayForwarder  # noqa: E402
from media.passthrough import ForwardStats, PassthroughForwarder, tap_receiver  # noqa: E402
from media.sfu import Sfu  # noqa: E402

CONFIG = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
WIDTH, HEIGHT, FPS, BITRATE = 640, 360, 30, 500_000
VIDEO_TB = fractions.Fraction(1, 90000)
AUDIO_TB = fractions.Fraction(1, 48000)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (fields 14 and 15 of /proc/pid/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


# Server process


async def serve(forwarder_name: str, data_dir: str) -> None:
    forwarder = PassthroughForwarder() if forwarder_name == "passthrough" else RelayForwarder()
    sfu = Sfu(forwarder=forwarder, data_dir=data_dir)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        participant = None

        class Listener:
            async def send_offer(self, pc: str, sdp: str) -> None:
                writer.write(json.dumps({"op": "offer", "sdp": sdp}).encode() + b"\n")

            async def track_published(self, *args: Any) -> None:
                pass

            async def track_ended(self, *args: Any) -> None:
                pass

            async def connection_state(self, *args: Any) -> None:
                pass

        async for line in reader:
            message = json.loads(line)
            op = message["op"]
            if op == "join":
                participant = message["id"]
                await sfu.join("room", participant, Listener(), [])
                writer.write(b'{"op": "joined"}\n')
            elif op == "publish":
                answer = await sfu.offer(participant, "publish", message["sdp"])
                writer.write(json.dumps({"op": "answer", "sdp": answer}).encode() + b"\n")
            elif op == "answer":
                await sfu.answer(participant, "subscribe", message["sdp"])
            elif op == "record":
                sfu.set_recording("room", message["on"])
                writer.write(b'{"op": "ok"}\n')
            elif op == "stats":
                writer.write(json.dumps({"op": "stats", **sfu.stats()}).encode() + b"\n")
            await writer.drain()
        if participant is not None:
            await sfu.leave(participant)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    async with server:
        await server.serve_forever()


# Clients


def encoded_loop() -> tuple[list[Any], list[Any]]:
    """About 2 s of pre-encoded 360p VP8 (moving gradient) and 1 s of Opus (a tone)."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base, encoder.framerate, encoder.bit_rate = VIDEO_TB, FPS, BITRATE
    encoder.gop_size = 2 * FPS
    encoder.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "minrate": str(BITRATE),
        "maxrate": str(BITRATE),
        "b": str(BITRATE),
        "undershoot-pct": "95",
        "overshoot-pct": "0",
    }
    x = np.arange(WIDTH)[None, :]
    y = np.arange(HEIGHT)[:, None]
    video = []
    rng = np.random.default_rng(1)
    for i in range(2 * FPS):
        image = ((x + y + 8 * i) % 256).astype(np.uint8)
        noise = rng.integers(0, 6, size=(HEIGHT, WIDTH), dtype=np.uint8)
        rgb = np.stack([image, image + noise, 255 - image], axis=-1)  # uint8 wraps
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = i * 3000, VIDEO_TB
        video += [bytes(p) for p in encoder.encode(frame)]
    audio_encoder = av.CodecContext.create("libopus", "w")
    audio_encoder.sample_rate, audio_encoder.layout, audio_encoder.format = 48000, "stereo", "s16"
    audio_encoder.time_base = AUDIO_TB
    audio_encoder.bit_rate = 32_000
    audio = []
    for i in range(50):
        t = (i * 960 + np.arange(960)) / 48000
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, AUDIO_TB
        audio += [bytes(p) for p in audio_encoder.encode(frame)]
    return video, audio


class PacketTrack(MediaStreamTrack):
    """Yields pre-encoded packets in a loop at their real-time pace (sent with pack())."""

    def __init__(self, kind: str, payloads: list[bytes], step: int, rate_hz: float) -> None:
        super().__init__()
        self.kind = kind
        self._payloads, self._step, self._period_s = payloads, step, 1 / rate_hz
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        await asyncio.sleep(max(0.0, self._start + self._index * self._period_s - loop.time()))
        packet = av.Packet(self._payloads[self._index % len(self._payloads)])
        packet.pts = self._index * self._step
        packet.time_base = VIDEO_TB if self.kind == "video" else AUDIO_TB
        self._index += 1
        return packet


class Peer:
    """One participant over the JSON-lines socket."""

    def __init__(self, port: int, name: str) -> None:
        self.port, self.name = port, name
        self.publish = RTCPeerConnection(CONFIG)
        self.subscribe = RTCPeerConnection(CONFIG)
        self.counts = ForwardStats()
        self.frames = 0
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        @self.subscribe.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            for transceiver in self.subscribe.getTransceivers():
                if transceiver.receiver.track is track:
                    tap_receiver(transceiver.receiver, self._count, self.counts)

    def _count(self, mime: str, data: bytes, timestamp: int) -> None:
        self.frames += 1

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._task = asyncio.ensure_future(self._read())
        await self.request({"op": "join", "id": self.name})

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.writer.write(json.dumps(message).encode() + b"\n")
        await self.writer.drain()
        return await self._replies.get()

    async def _read(self) -> None:
        async for line in self.reader:
            message = json.loads(line)
            if message["op"] == "offer":
                await self.subscribe.setRemoteDescription(
                    RTCSessionDescription(message["sdp"], "offer")
                )
                await self.subscribe.setLocalDescription(await self.subscribe.createAnswer())
                answer = {"op": "answer", "sdp": self.subscribe.localDescription.sdp}
                self.writer.write(json.dumps(answer).encode() + b"\n")
            else:
                await self._replies.put(message)

    async def publish_media(self, video: list[bytes], audio: list[bytes]) -> None:
        self.publish.addTrack(PacketTrack("audio", audio, 960, 50))
        self.publish.addTrack(PacketTrack("video", video, 3000, FPS))
        await self.publish.setLocalDescription(await self.publish.createOffer())
        reply = await self.request({"op": "publish", "sdp": self.publish.localDescription.sdp})
        await self.publish.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    async def close(self) -> None:
        self._task.cancel()
        self.writer.close()
        await self.publish.close()
        await self.subscribe.close()


async def subscribers(port: int, count: int, seconds: float) -> None:
    """``count`` receiving-only peers for ``seconds``; prints frames received per peer."""
    peers = [Peer(port, f"sub-{i}") for i in range(count)]
    for peer in peers:
        await peer.connect()
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.sleep(seconds)
    print(json.dumps({"frames": [p.frames for p in peers]}), flush=True)
    for peer in peers:
        await peer.close()


# Orchestration


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )


def read_json(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"child exited ({process.wait()})")
    result: dict[str, Any] = json.loads(line)
    return result


async def window(pid: int, seconds: float) -> float:
    """Percent of one core used by ``pid`` over ``seconds``."""
    before, start = cpu_s(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (cpu_s(pid) - before) / (time.monotonic() - start)


async def measure(name: str, counts: list[int], window_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        server = spawn("--serve", name, "--data-dir", data_dir)
        try:
            port = read_json(server)["port"]
            publisher = Peer(port, "publisher")
            await publisher.connect()
            video, audio = encoded_loop()
            await publisher.publish_media(video, audio)
            await asyncio.sleep(2.0)
            result: dict[str, Any] = {"forwarder": name}
            result["video_kbps"] = sum(map(len, video)) * 8 / (len(video) / FPS) / 1000
            result["audio_kbps"] = sum(map(len, audio)) * 8 / (len(audio) / 50) / 1000
            result["baseline_pct"] = await window(server.pid, window_s)
            await publisher.request({"op": "record", "on": True})
            await asyncio.sleep(1.0)
            recording = await window(server.pid, window_s)
            await publisher.request({"op": "record", "on": False})
            result["recording_pct_per_track"] = (recording - result["baseline_pct"]) / 2
            rows = []
            for count in counts:
                subs = spawn("--subscribe", str(port), str(count), str(window_s + 6))
                read_json(subs)
                await asyncio.sleep(4.0)  # negotiation and first keyframes
                pct = await window(server.pid, window_s)
                frames = read_json(subs)["frames"]
                subs.wait(30)
                per_sub = (pct - result["baseline_pct"]) / count
                rows.append(
                    {
                        "subscribers": count,
                        "server_pct": round(pct, 1),
                        "per_subscriber_pct": round(per_sub, 2),
                        "min_frames_received": min(frames),
                    }
                )
                await asyncio.sleep(2.0)
            result["rows"] = rows
            result["stats"] = await publisher.request({"op": "stats"})
            await publisher.close()
            return result
        finally:
            server.kill()
            server.wait(10)


async def bench(args: argparse.Namespace) -> None:
    counts = [int(x) for x in args.subscribers.split(",")]
    relay_counts = [int(x) for x in args.relay_subscribers.split(",")]
    results = [
        await measure("passthrough", counts, args.window_s),
        await measure("relay", relay_counts, args.window_s),
    ]
    print(
        f"cores: {os.cpu_count()}, window {args.window_s:.0f} s, 360p{FPS} VP8 "
        f"{results[0]['video_kbps']:.0f} kbps + Opus {results[0]['audio_kbps']:.0f} kbps"
    )
    print(f"{'forwarder':12} {'subs':>5} {'server %':>9} {'% per sub':>10} {'min frames':>11}")
    for result in results:
        for row in result["rows"]:
            print(
                f"{result['forwarder']:12} {row['subscribers']:5d} {row['server_pct']:9.1f} "
                f"{row['per_subscriber_pct']:10.2f} {row['min_frames_received']:11d}"
            )
    per_sub = {r["forwarder"]: r["rows"][-1]["per_subscriber_pct"] for r in results}
    ratio = per_sub["relay"] / max(per_sub["passthrough"], 1e-9)
    print(
        "baseline (publisher only): "
        + ", ".join(f"{r['forwarder']} {r['baseline_pct']:.1f} %" for r in results)
    )
    print(f"passthrough is {ratio:.1f}x cheaper per subscriber than MediaRelay (target >= 10)")
    print(
        f"passthrough subscribers per core: {100 / max(per_sub['passthrough'], 1e-9):.0f}"
        " (target >= 40)"
    )
    print(
        f"recording: {results[0]['recording_pct_per_track']:.2f} % of a core per track"
        " (target <= 2)"
    )
    stats = results[0]["stats"]
    print(
        f"passthrough server counters: decoded_frames={stats['decoded_frames']} "
        f"forwarded_frames={stats['forwarded_packets']} recording_bytes={stats['recording_bytes']}"
    )
    if args.json:
        print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", default="10,20")
    parser.add_argument("--relay-subscribers", default="2,4")
    parser.add_argument("--window-s", type=float, default=8.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--subscribe", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.data_dir))
    elif args.subscribe:
        port, count, seconds = args.subscribe
        asyncio.run(subscribers(int(port), int(count), float(seconds)))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
