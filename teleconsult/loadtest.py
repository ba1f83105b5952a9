"""Load against a running server: participants with media, streaming carts, ECG viewers.

After LiveKit's ``lk load-test``: every client is a real one of its kind, speaking the
documented protocols over the network, so that what is measured is what a clinic's
people would see.

- A **participant** joins a room over ``/ws`` (a token with ``moderate``, so that no
  waiting room holds it), publishes a synthetic audio track and a small synthetic
  video track from an aiortc peer connection, answers the server's subscribe offers and
  applies its trickled candidates. *join*: ``join`` sent -> ``joined``. *first frame*:
  the later of ``join`` sent and the first subscribe offer received -> the first
  decoded frame of another participant's video.
- A **cart** is the device simulator (:func:`teleconsult.device_cmd.simulate`) streaming
  a synthetic 12-lead 500 Hz record in real time over ``/device``, optionally dropping
  its connection every few seconds. *ack*: a frame first handed to the socket -> the
  ack that covers it.
- A **viewer** ``watch``es a cart room over ``/ws``, lists its streams every 3 s (as the
  ``/ecg`` page does) and subscribes to each. *live*: a frame first sent by its cart ->
  the ``ecg_data`` whose ``samples`` covers it.

Errors are counted by kind (a refused join, a cart that gives up, a viewer closed, with
the server's close code, a participant with no remote frame by the end...). *loop lag*:
how late the load generator's own event loop wakes from a 100 ms sleep. Every latency
above is measured on that loop, so when the lag is of the same order the figures are
the load generator's, not the server's (one process drives every client: on a small
machine it saturates before the server does). The logic is here, without printing;
``teleconsult loadtest`` (``loadtest_cmd``) and ``bench/soak.py`` drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sessions.tokens import DEFAULT_PERMISSIONS, KeyRing, mint_token
from teleconsult.device_cmd import SimulatedRecord, SimulationFailed, simulate

__all__ = [
    "CartLog",
    "Figures",
    "LoadPlan",
    "pct",
    "run_load",
    "synthetic_record",
]

FS_HZ: Final = 500.0
LEADS: Final = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
ADC_GAIN: Final = 200.0  # ADC units per mV
VIDEO_WIDTH, VIDEO_HEIGHT, VIDEO_FPS = 160, 120, 15
# A viewer lists its room's streams this often, like the /ecg page.
LIST_EVERY_S: Final = 3.0
# New subscriptions per list answer: a room of many carts is subscribed to a few at a time,
# within the /ws rate limit (20 messages/s, a burst of 50), not all at once (a viewer of
# 75 streams was closed as a flood and reconnected in a loop).
SUBSCRIBES_PER_LIST: Final = 10
# How long a participant's first remote frame may take before it counts as an error.
FIRST_FRAME_LIMIT_S: Final = 15.0
# The load generator samples its own event loop's lag this often.
LOOP_LAG_EVERY_S: Final = 0.1


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values``, NaN for none."""
    return float(np.percentile(values, q)) if values else math.nan


def synthetic_record(duration_s: float, seed: int = 0) -> SimulatedRecord:
    """A 12-lead 500 Hz record of ``duration_s``: R-like peaks at 75 bpm on noise.

    Made here rather than read from a fixture: the command runs from an installation,
    where the test fixtures are not.
    """
    n = max(1, round(duration_s * FS_HZ))
    t_s = np.arange(n) / FS_HZ
    phase_s = (t_s % 0.8) - 0.4
    beat_mv = 1.2 * np.exp(-((phase_s / 0.012) ** 2)) + 0.2 * np.exp(
        -(((phase_s - 0.2) / 0.04) ** 2)
    )
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.3, 1.0, len(LEADS))
    mv = beat_mv[:, None] * scale[None, :] + rng.normal(0.0, 0.01, size=(n, len(LEADS)))
    samples = np.clip(np.round(mv * ADC_GAIN), -32767, 32767).astype(np.int16)
    return SimulatedRecord(
        samples=samples,
        fs_hz=FS_HZ,
        leads=list(LEADS),
        adc_gain=[ADC_GAIN] * len(LEADS),
        baseline=[0] * len(LEADS),
        resolution_bits=16,
        start_time=datetime.now(UTC),
    )


@dataclass
class LoadPlan:
    """What to run against one server.

    ``participants`` are spread over ``rooms`` rooms, ``carts`` and ``viewers`` over
    ``cart_rooms`` rooms (viewer i watches the cart room i mod ``cart_rooms``).
    """

    http_url: str  # http://host:port or https://...
    keys: str | KeyRing  # what signs the tokens (the server's secret or key ring)
    participants: int = 2
    rooms: int = 1
    carts: int = 2
    viewers: int = 1
    cart_rooms: int = 1
    duration_s: float = 10.0
    drop_every_s: float | None = None
    prefix: str = "loadtest"
    # Ramp: clients of each kind start spread over this long.
    ramp_s: float = 1.0
    # Participants and viewers join again after a drop (a soak's server restart) instead
    # of ending; the first participant of each room records it.
    reconnect: bool = False
    record: bool = False

    @property
    def ws_url(self) -> str:
        base = self.http_url.rstrip("/")
        return "ws" + base.removeprefix("http") if base.startswith("http") else base

    def token(self, role: str, identity: str, room: str, *, moderate: bool = False) -> str:
        permissions = None
        if moderate:
            permissions = frozenset(set(DEFAULT_PERMISSIONS[role]) | {"moderate"})
        return mint_token(
            self.keys,
            identity=identity,
            name=identity,
            role=role,
            room=room,
            permissions=permissions,
            ttl_s=self.duration_s + 3600.0,
        )


@dataclass
class CartLog:
    """What one cart sent and what the server acknowledged (for the soak's check)."""

    device: str
    room: str
    record: SimulatedRecord
    stream: uuid.UUID | None = None
    acked: int = 0  # samples per lead acknowledged (the last ack's next_index)
    sent_at: dict[int, float] = field(default_factory=dict)  # frame end -> first send
    error: str | None = None


@dataclass
class Figures:
    """Latencies in seconds and errors by kind."""

    join_s: list[float] = field(default_factory=list)
    ack_s: list[float] = field(default_factory=list)
    live_s: list[float] = field(default_factory=list)
    first_frame_s: list[float] = field(default_factory=list)
    loop_lag_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    carts: list[CartLog] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts and p50/p95/p99/max in ms of each latency, errors by kind."""
        out: dict[str, Any] = {}
        for name in ("join", "ack", "live", "first_frame", "loop_lag"):
            values: list[float] = getattr(self, f"{name}_s")
            out[name] = {
                "n": len(values),
                "p50_ms": pct(values, 50) * 1e3,
                "p95_ms": pct(values, 95) * 1e3,
                "p99_ms": pct(values, 99) * 1e3,
                "max_ms": max(values, default=math.nan) * 1e3,
            }
        out["errors"] = dict(sorted(self.errors.items()))
        return out


# ------------------------------------------------------------------------- participants


async def _again(plan: LoadPlan, until: float, once: Callable[[], Awaitable[None]]) -> None:
    """``once()``, and with ``plan.reconnect`` again a second after each end until ``until``."""
    await once()
    while plan.reconnect and time.monotonic() + 1.0 < until:
        await asyncio.sleep(1.0)
        await once()


def _tracks() -> tuple[Any, Any]:
    """A synthetic audio track (aiortc's silence) and a small moving-gradient video."""
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import AudioStreamTrack
    from av import VideoFrame

    class GradientTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._pts = 0
            x = np.arange(VIDEO_WIDTH)[None, :] + np.arange(VIDEO_HEIGHT)[:, None]
            self._base = x.astype(np.uint8)
            self._start: float | None = None

        async def recv(self) -> VideoFrame:
            loop = asyncio.get_running_loop()
            if self._start is None:
                self._start = loop.time()
            await asyncio.sleep(max(0.0, self._start + self._pts / VIDEO_FPS - loop.time()))
            grey = self._base + np.uint8(self._pts % 256)
            frame = VideoFrame.from_ndarray(np.stack([grey] * 3, axis=-1), format="rgb24")
            frame.pts = self._pts
            frame.time_base = fractions.Fraction(1, VIDEO_FPS)
            self._pts += 1
            return frame

    return AudioStreamTrack(), GradientTrack()


async def participant(
    plan: LoadPlan, figures: Figures, identity: str, room: str, until: float, records: bool
) -> None:
    """Join ``room``, publish, receive; leave at ``until`` (``time.monotonic()``).

    With ``plan.reconnect`` join again after a drop, a second later, until ``until``.
    """
    await _again(
        plan, until, lambda: _participant_once(plan, figures, identity, room, until, records)
    )


async def _participant_once(
    plan: LoadPlan, figures: Figures, identity: str, room: str, until: float, records: bool
) -> None:
    from aiortc import (
        RTCBundlePolicy,
        RTCConfiguration,
        RTCPeerConnection,
        RTCSessionDescription,
    )
    from aiortc.sdp import candidate_from_sdp

    config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    publish = RTCPeerConnection(config)
    subscribe = RTCPeerConnection(config)
    frames: list[asyncio.Task[None]] = []
    offered_at: list[float] = []
    got_frame = asyncio.Event()
    joined_at = math.nan

    async def first_frame(track: Any) -> None:
        with contextlib.suppress(Exception):
            await track.recv()
            if not got_frame.is_set():
                got_frame.set()
                figures.first_frame_s.append(time.monotonic() - max(joined_at, offered_at[0]))

    @subscribe.on("track")
    def on_track(track: Any) -> None:
        if track.kind == "video":
            frames.append(asyncio.ensure_future(first_frame(track)))

    try:
        async with connect(f"{plan.ws_url}/ws", max_size=None, open_timeout=10) as ws:
            token = plan.token("expert", identity, room, moderate=True)
            joined_at = time.monotonic()
            await ws.send(json.dumps({"type": "join", "token": token}))
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            while message["type"] not in ("joined", "error", "waiting"):
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] != "joined":
                figures.errors[f"join {message.get('code', message['type'])}"] += 1
                return
            figures.join_s.append(time.monotonic() - joined_at)
            if records:
                await ws.send(json.dumps({"type": "set_recording", "on": True}))
            audio, video = _tracks()
            for track in (audio, video):
                publish.addTrack(track)
                source = "microphone" if track.kind == "audio" else "camera"
                await ws.send(
                    json.dumps(
                        {"type": "publish", "track_id": track.id, "kind": track.kind,
                         "source": source}
                    )
                )  # fmt: skip
            await publish.setLocalDescription(await publish.createOffer())
            sdp = publish.localDescription.sdp
            await ws.send(json.dumps({"type": "offer", "pc": "publish", "sdp": sdp}))
            while (left_s := until - time.monotonic()) > 0:
                try:
                    text = await asyncio.wait_for(ws.recv(), left_s)
                except TimeoutError:
                    break
                message = json.loads(text)
                kind = message["type"]
                if kind == "answer" and message["pc"] == "publish":
                    await publish.setRemoteDescription(
                        RTCSessionDescription(message["sdp"], "answer")
                    )
                elif kind == "offer" and message["pc"] == "subscribe":
                    offered_at.append(time.monotonic())
                    await subscribe.setRemoteDescription(
                        RTCSessionDescription(message["sdp"], "offer")
                    )
                    await subscribe.setLocalDescription(await subscribe.createAnswer())
                    answer = subscribe.localDescription.sdp
                    await ws.send(json.dumps({"type": "answer", "pc": "subscribe", "sdp": answer}))
                elif kind == "candidate" and message.get("candidate"):
                    pc = publish if message["pc"] == "publish" else subscribe
                    candidate = candidate_from_sdp(message["candidate"].removeprefix("candidate:"))
                    candidate.sdpMid = message.get("sdp_mid")
                    candidate.sdpMLineIndex = message.get("sdp_mline_index")
                    await pc.addIceCandidate(candidate)
                elif kind == "error":
                    figures.errors[f"participant {message.get('code')}"] += 1
            if offered_at and not got_frame.is_set():
                figures.errors["participant no remote frame"] += 1
            with contextlib.suppress(Exception):
                await ws.send(json.dumps({"type": "leave"}))
    except Exception as error:  # a refused or dropped participant is counted, not fatal
        figures.errors[f"participant {type(error).__name__}"] += 1
    finally:
        for task in frames:
            task.cancel()
        await publish.close()
        await subscribe.close()


# -------------------------------------------------------------------------------- carts


async def cart(plan: LoadPlan, figures: Figures, log: CartLog) -> None:
    """Stream ``log.record`` in real time; ack latencies into ``figures``."""
    pending: list[tuple[int, float]] = []  # (frame end, first send), in sending order

    def on_frame_sent(first: int, n: int, at: float) -> None:
        end = first + n
        if end not in log.sent_at:
            log.sent_at[end] = at
            pending.append((end, at))

    def on_acked(next_index: int) -> None:
        log.acked = max(log.acked, next_index)
        now = time.monotonic()
        done = 0
        while done < len(pending) and pending[done][0] <= next_index:
            figures.ack_s.append(now - pending[done][1])
            done += 1
        del pending[:done]

    def on_started(stream: uuid.UUID) -> None:
        log.stream = stream

    token = plan.token("device", log.device, log.room)
    # Long enough to ride out a server restart, short enough that a dead server ends a
    # short run soon.
    give_up_s = min(30.0, max(5.0, plan.duration_s))
    try:
        await simulate(
            log.record, url=f"{plan.ws_url}/device", token=token, device=log.device,
            patient=f"LOADTEST-{log.device}", stream=log.stream, room=log.room, speed=1.0,
            drop_every_s=plan.drop_every_s, frame_s=0.2, give_up_s=give_up_s,
            on_started=on_started, on_frame_sent=on_frame_sent, on_acked=on_acked,
        )  # fmt: skip
    except (SimulationFailed, OSError) as error:
        log.error = str(error)
        figures.errors[f"cart {type(error).__name__}"] += 1


# ------------------------------------------------------------------------------ viewers


async def viewer(
    plan: LoadPlan, figures: Figures, identity: str, room: str, until: float,
    carts: Callable[[str], CartLog | None],
) -> None:  # fmt: skip
    """Watch ``room`` until ``until``: list, subscribe to every stream, time live data.

    With ``plan.reconnect`` watch again after a drop, a second later, until ``until``.
    """
    await _again(plan, until, lambda: _viewer_once(plan, figures, identity, room, until, carts))


async def _viewer_once(
    plan: LoadPlan, figures: Figures, identity: str, room: str, until: float,
    carts: Callable[[str], CartLog | None],
) -> None:  # fmt: skip
    subscribed: set[str] = set()
    try:
        async with connect(f"{plan.ws_url}/ws", max_size=None, open_timeout=10) as ws:
            await ws.send(
                json.dumps({"type": "watch", "token": plan.token("expert", identity, room)})
            )
            listed_at = -math.inf
            more = True  # live streams not yet subscribed to, as far as the viewer knows
            while (left_s := until - time.monotonic()) > 0:
                # Soon again while nothing is subscribed (the carts may not have started)
                # or while the room has more live streams than one answer subscribes to.
                every_s = LIST_EVERY_S if subscribed and not more else LIST_EVERY_S / 6
                if time.monotonic() - listed_at >= every_s:
                    await ws.send(json.dumps({"type": "ecg_list"}))
                    listed_at = time.monotonic()
                try:
                    text = await asyncio.wait_for(ws.recv(), min(left_s, every_s))
                except TimeoutError:
                    continue
                now = time.monotonic()
                message = json.loads(text)
                kind = message["type"]
                if kind == "ecg_streams":
                    new = [
                        info["stream"]
                        for info in message["streams"]
                        if info["state"] == "live" and info["stream"] not in subscribed
                    ]
                    more = len(new) > SUBSCRIBES_PER_LIST
                    for stream in new[:SUBSCRIBES_PER_LIST]:
                        subscribed.add(stream)
                        await ws.send(json.dumps({"type": "ecg_subscribe", "stream": stream}))
                elif kind == "ecg_data":
                    log = carts(message["stream"])
                    sent = None if log is None else log.sent_at.get(message["samples"])
                    if sent is not None:
                        figures.live_s.append(now - sent)
                elif kind == "ecg_ended":
                    subscribed.discard(message.get("stream", ""))
                elif kind == "error":
                    figures.errors[f"viewer {message.get('code')}"] += 1
    except ConnectionClosed as error:  # by the server (its code says why) or the network
        code = error.rcvd.code if error.rcvd is not None else "without a close frame"
        figures.errors[f"viewer closed {code}"] += 1
    except Exception as error:  # a refused or dropped viewer is counted, not fatal
        figures.errors[f"viewer {type(error).__name__}"] += 1


# --------------------------------------------------------------------------------- run


async def run_load(plan: LoadPlan, figures: Figures | None = None) -> Figures:
    """Run ``plan`` for ``plan.duration_s`` (carts stream that much signal) and return figures.

    Participants and viewers stay until every cart has ended (or ``duration_s`` plus a
    margin), so that the live figures cover the carts' whole streams.
    """
    figures = figures or Figures()
    start = time.monotonic()
    until = start + plan.ramp_s + plan.duration_s

    async def later(delay_s: float, job: Any) -> None:
        await asyncio.sleep(max(0.0, delay_s))
        await job

    tasks: list[asyncio.Task[None]] = []
    streams: dict[str, CartLog] = {}
    lag = asyncio.create_task(_loop_lag(figures))
    # One record for all carts: 30 minutes of 12 leads is 22 MB, 150 copies would be 3 GB.
    record = synthetic_record(plan.duration_s)
    for i in range(plan.carts):
        log = CartLog(
            device=f"{plan.prefix}-cart-{i}",
            room=f"{plan.prefix}-ecg-{i % max(1, plan.cart_rooms)}",
            record=record,
            stream=uuid.uuid4(),
        )
        figures.carts.append(log)
        streams[str(log.stream)] = log
        delay = plan.ramp_s * i / max(1, plan.carts)
        tasks.append(asyncio.create_task(later(delay, cart(plan, figures, log))))
    for i in range(plan.viewers):
        room = f"{plan.prefix}-ecg-{i % max(1, plan.cart_rooms)}"
        job = viewer(plan, figures, f"{plan.prefix}-viewer-{i}", room, until + 5.0, streams.get)
        tasks.append(asyncio.create_task(later(0.0, job)))
    for i in range(plan.participants):
        room = f"{plan.prefix}-room-{i % max(1, plan.rooms)}"
        records = plan.record and i < plan.rooms
        job = participant(plan, figures, f"{plan.prefix}-person-{i}", room, until, records)
        delay = plan.ramp_s * i / max(1, plan.participants)
        tasks.append(asyncio.create_task(later(delay, job)))
    try:
        await asyncio.gather(*tasks)
    finally:
        lag.cancel()
    return figures


async def _loop_lag(figures: Figures, every_s: float = LOOP_LAG_EVERY_S) -> None:
    """How late this loop wakes from ``every_s`` of sleep, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + every_s
        await asyncio.sleep(every_s)
        figures.loop_lag_s.append(max(0.0, loop.time() - asked))
