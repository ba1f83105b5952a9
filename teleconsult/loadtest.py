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
  the ``ecg_data`` whose ``samples`` covers it. The viewers run in processes of their
  own (``viewer_processes``, spawned), each on its own event loop, like a person's
  ``/ecg`` page, which keeps up: on the loop of the carts and of the participants'
  media they read too slowly, and the server closed them when their outgoing queue
  was full. A child notes when each ``ecg_data`` came in (``time.monotonic()``, one
  clock for the whole host) and sends them back in batches; the parent matches them
  with its carts' first sends.

Errors are counted by kind (a refused join, a cart that gives up, a viewer closed, with
the server's close code, a participant with no remote frame by the end, a viewers'
process that died...). *loop lag*: how late the load generator's own event loop wakes
from a 100 ms sleep; *viewer loop lag*: the same of the viewers' processes. Every
latency above is measured on one of those loops, so when its lag is of the same order
the figures are the load generator's, not the server's (on a small machine it saturates
before the server does). The logic is here, without printing; ``teleconsult loadtest``
(``loadtest_cmd``) and ``bench/soak.py`` drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import math
import multiprocessing
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any, Final, TypeVar

import msgspec
import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sessions.tokens import DEFAULT_PERMISSIONS, KeyRing, mint_token
from teleconsult.device_cmd import SimulatedRecord, SimulationFailed, simulate

__all__ = [
    "CartLog",
    "Figures",
    "LoadPlan",
    "ViewerBatch",
    "pct",
    "run_load",
    "synthetic_record",
    "viewer_jobs",
]

T = TypeVar("T")

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
# Viewers stay this long after the carts' end, so that the live figures cover it.
VIEWER_MARGIN_S: Final = 5.0
# A viewers' process sends what its viewers saw this often: a soak's ~500,000 live
# samples go in small batches, not all at the end, and what came before a child's
# death is kept.
VIEWER_BATCH_EVERY_S: Final = 1.0
# A viewers' process may take this long after its viewers' end to close their
# connections (websockets' close timeout is 10 s) before it counts as hung and is killed.
VIEWER_EXIT_GRACE_S: Final = 30.0
# A spawned viewers' process imports numpy and websockets: seconds on a busy machine.
VIEWER_START_LIMIT_S: Final = 60.0


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
    # The viewers run in processes of their own (at most one per viewer), each with its
    # own event loop: on the generator's loop, shared with the carts and the
    # participants' media, they read too slowly and the server closed them (1008).
    viewer_processes: int = 1
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
    viewer_loop_lag_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    carts: list[CartLog] = field(default_factory=list)
    # Viewers' ecg_data that matched no first send of their cart's frames.
    live_unmatched: int = 0

    def summary(self) -> dict[str, Any]:
        """Counts and p50/p95/p99/max in ms of each latency, errors by kind."""
        out: dict[str, Any] = {}
        for name in ("join", "ack", "live", "first_frame", "loop_lag", "viewer_loop_lag"):
            values: list[float] = getattr(self, f"{name}_s")
            out[name] = {
                "n": len(values),
                "p50_ms": pct(values, 50) * 1e3,
                "p95_ms": pct(values, 95) * 1e3,
                "p99_ms": pct(values, 99) * 1e3,
                "max_ms": max(values, default=math.nan) * 1e3,
            }
        out["live_unmatched"] = self.live_unmatched
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


class _StreamInfo(msgspec.Struct):
    """Of an ``ecg_streams`` entry, what a viewer reads."""

    stream: str
    state: str


class _ViewerMessage(msgspec.Struct):
    """Of any ``/ws`` message, the fields a viewer reads. The decoder skips the others
    without building them: an ``ecg_data``'s ``samples_uv`` lists are most of its bytes,
    and ``json.loads`` made a Python int of every sample of every message."""

    type: str
    stream: str | None = None
    samples: int | None = None
    streams: list[_StreamInfo] = msgspec.field(default_factory=list)
    code: str | None = None


_DECODE_VIEWER: Final = msgspec.json.Decoder(_ViewerMessage)


@dataclass
class ViewerBatch:
    """What the viewers of one process saw since the last batch, for the parent.

    ``arrivals`` are ``(stream, samples, received)``: an ``ecg_data`` covering
    ``samples`` samples per lead of ``stream`` came in at ``received``
    (``time.monotonic()``, CLOCK_MONOTONIC, the same clock in every process of the host),
    to be matched with the cart's first send in the parent. ``done`` marks the last
    batch of a process that ended by itself.
    """

    arrivals: list[tuple[str, int, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    loop_lag_s: list[float] = field(default_factory=list)
    done: bool = False

    def take(self) -> ViewerBatch:
        """What was gathered so far, leaving this batch empty."""
        taken = ViewerBatch(self.arrivals, self.errors, self.loop_lag_s)
        self.arrivals, self.errors, self.loop_lag_s = [], Counter(), []
        return taken


async def viewer(plan: LoadPlan, seen: ViewerBatch, identity: str, room: str, until: float) -> None:
    """Watch ``room`` until ``until``: list, subscribe to every stream, note live data.

    With ``plan.reconnect`` watch again after a drop, a second later, until ``until``.
    """
    await _again(plan, until, lambda: _viewer_once(plan, seen, identity, room, until))


async def _viewer_once(
    plan: LoadPlan, seen: ViewerBatch, identity: str, room: str, until: float
) -> None:
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
                message = _DECODE_VIEWER.decode(text)
                kind = message.type
                if kind == "ecg_streams":
                    new = [
                        info.stream
                        for info in message.streams
                        if info.state == "live" and info.stream not in subscribed
                    ]
                    more = len(new) > SUBSCRIBES_PER_LIST
                    for stream in new[:SUBSCRIBES_PER_LIST]:
                        subscribed.add(stream)
                        await ws.send(json.dumps({"type": "ecg_subscribe", "stream": stream}))
                elif kind == "ecg_data":
                    if message.stream is not None and message.samples is not None:
                        seen.arrivals.append((message.stream, message.samples, now))
                elif kind == "ecg_ended":
                    subscribed.discard(message.stream or "")
                elif kind == "error":
                    seen.errors[f"viewer {message.code}"] += 1
    except ConnectionClosed as error:  # by the server (its code says why) or the network
        code = error.rcvd.code if error.rcvd is not None else "without a close frame"
        seen.errors[f"viewer closed {code}"] += 1
    except Exception as error:  # a refused or dropped viewer is counted, not fatal
        seen.errors[f"viewer {type(error).__name__}"] += 1


def _viewers_main(plan: LoadPlan, jobs: list[tuple[str, str]], pipe: Connection) -> None:
    """A viewers' process: says it is ready on ``pipe`` (its imports done), is told until
    when (``time.monotonic()``) to watch, watches ``jobs`` (identity, room) on a loop of
    its own and sends batches of what they saw on ``pipe`` as they come."""
    pipe.send(ViewerBatch())
    until: float = pipe.recv()
    asyncio.run(_viewers(plan, jobs, until, pipe))


async def _viewers(
    plan: LoadPlan, jobs: list[tuple[str, str]], until: float, pipe: Connection
) -> None:
    seen = ViewerBatch()
    lag = asyncio.create_task(_loop_lag(lambda lag_s: seen.loop_lag_s.append(lag_s)))

    async def flush() -> None:
        while True:
            await asyncio.sleep(VIEWER_BATCH_EVERY_S)
            pipe.send(seen.take())

    flushing = asyncio.create_task(flush())
    try:
        await asyncio.gather(*(viewer(plan, seen, who, room, until) for who, room in jobs))
    finally:
        lag.cancel()
        flushing.cancel()
    last = seen.take()
    last.done = True
    pipe.send(last)
    pipe.close()


class _LiveMatcher:
    """Viewers' arrivals -> live latencies: each against its cart's first send of the
    frame ending at its ``samples``. An arrival whose send is not known yet (its cart's
    callback has not run) waits for :meth:`finish`."""

    def __init__(self, figures: Figures, streams: dict[str, CartLog]) -> None:
        self.figures = figures
        self.streams = streams
        self.waiting: list[tuple[str, int, float]] = []

    def add(self, batch: ViewerBatch) -> None:
        self.figures.errors.update(batch.errors)
        self.figures.viewer_loop_lag_s.extend(batch.loop_lag_s)
        self.waiting.extend(self._match(batch.arrivals))

    def finish(self) -> None:
        self.figures.live_unmatched += len(self._match(self.waiting))
        self.waiting = []

    def _match(self, arrivals: list[tuple[str, int, float]]) -> list[tuple[str, int, float]]:
        unmatched = []
        for arrival in arrivals:
            stream, samples, received = arrival
            log = self.streams.get(stream)
            sent = None if log is None else log.sent_at.get(samples)
            if sent is None:
                unmatched.append(arrival)
            else:
                self.figures.live_s.append(received - sent)
        return unmatched


def viewer_jobs(plan: LoadPlan) -> list[list[tuple[str, str]]]:
    """The viewers (identity, cart room) of each viewers' process, dealt round."""
    processes = max(1, min(plan.viewer_processes, plan.viewers))
    jobs: list[list[tuple[str, str]]] = [[] for _ in range(processes)]
    for i in range(plan.viewers):
        room = f"{plan.prefix}-ecg-{i % max(1, plan.cart_rooms)}"
        jobs[i % processes].append((f"{plan.prefix}-viewer-{i}", room))
    return jobs


class _ViewerProcess:
    """One spawned viewers' process, from the parent's side.

    It is started before the carts (a spawned interpreter takes seconds to import on a
    busy machine, and a short run's viewers would miss its carts) and then told until
    when to watch. One that ends without its last batch (it died) or outlives its end by
    ``VIEWER_EXIT_GRACE_S`` (it hangs; then killed) counts as an error.
    """

    def __init__(self, plan: LoadPlan, jobs: list[tuple[str, str]]) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(target=_viewers_main, args=(plan, jobs, theirs), daemon=True)
        self.process.start()
        theirs.close()  # the child's end is the child's only: its exit is our end of file
        # A thread of its own to wait on the pipe, not one of the default executor's
        # (cores + 4 threads), which also resolves the address of every cart's and
        # participant's (re)connection: several processes would hold most of it.
        self.waiter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="viewers")
        self.timed_out = False  # a receive passed its deadline: the process hangs

    async def _in_waiter(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.waiter, call)

    async def ready(self, figures: Figures) -> bool:
        """Whether the process came up within ``VIEWER_START_LIMIT_S`` (else an error)."""
        if await self._receive(time.monotonic() + VIEWER_START_LIMIT_S) is not None:
            return True
        await self._end(figures, "viewer process did not start")
        return False

    async def run(self, until: float, matcher: _LiveMatcher) -> None:
        """Watch until ``until``; every batch into ``matcher`` as it comes."""
        try:
            self.pipe.send(until)
        except OSError:  # it died since it was ready
            await self._end(matcher.figures, "viewer process died")
            return
        while (batch := await self._receive(until + VIEWER_EXIT_GRACE_S)) is not None:
            matcher.add(batch)
            if batch.done:
                await self._in_waiter(self.process.join)
                self.waiter.shutdown(wait=False)
                return
        await self._end(matcher.figures, "viewer process died", hung="viewer process hung")

    async def _receive(self, deadline: float) -> ViewerBatch | None:
        """The next batch; None at the end of the pipe or past ``deadline``."""
        try:
            batch: ViewerBatch = await asyncio.wait_for(
                self._in_waiter(self.pipe.recv), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            self.timed_out = True
            return None
        except (EOFError, OSError):
            return None
        return batch

    async def _end(self, figures: Figures, what: str, *, hung: str | None = None) -> None:
        """Kill (if it still runs) and join; an error: ``what`` with the exit code, or
        ``hung`` (``what`` by default) when a receive passed its deadline."""
        self.kill()
        await asyncio.to_thread(self.process.join)  # the waiter may still wait on the pipe
        self.waiter.shutdown(wait=False)
        # Not is_alive() before the kill: a child that died may not be reaped yet when its
        # pipe ends.
        if self.timed_out:
            figures.errors[f"{hung or what} (killed)"] += 1
        else:
            figures.errors[f"{what} (exit {self.process.exitcode})"] += 1

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()


# --------------------------------------------------------------------------------- run


async def run_load(plan: LoadPlan, figures: Figures | None = None) -> Figures:
    """Run ``plan`` for ``plan.duration_s`` (carts stream that much signal) and return figures.

    Participants and viewers stay until every cart has ended (or ``duration_s`` plus a
    margin), so that the live figures cover the carts' whole streams. The viewers'
    processes are started first, and the carts once they are up.
    """
    figures = figures or Figures()
    lag = asyncio.create_task(_loop_lag(figures.loop_lag_s.append))
    processes = [_ViewerProcess(plan, jobs) for jobs in viewer_jobs(plan)] if plan.viewers else []
    try:
        ready = await asyncio.gather(*(viewers.ready(figures) for viewers in processes))
        processes = [viewers for viewers, up in zip(processes, ready, strict=True) if up]
        return await _run_load(plan, figures, processes)
    finally:
        lag.cancel()
        for viewers in processes:  # a failed run leaves no viewers' process behind
            viewers.kill()


async def _run_load(plan: LoadPlan, figures: Figures, processes: list[_ViewerProcess]) -> Figures:
    """The run proper, once the viewers' ``processes`` are up: its clock starts here."""
    start = time.monotonic()
    until = start + plan.ramp_s + plan.duration_s

    async def later(delay_s: float, job: Any) -> None:
        await asyncio.sleep(max(0.0, delay_s))
        await job

    tasks: list[asyncio.Task[None]] = []
    streams: dict[str, CartLog] = {}
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
    matcher = _LiveMatcher(figures, streams)
    for viewers in processes:
        job = viewers.run(until + VIEWER_MARGIN_S, matcher)
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
        for task in tasks:  # a failed one ends the run: no viewers' process outlives it
            task.cancel()
    matcher.finish()
    return figures


async def _loop_lag(note: Callable[[float], None], every_s: float = LOOP_LAG_EVERY_S) -> None:
    """How late this loop wakes from ``every_s`` of sleep, each to ``note``, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + every_s
        await asyncio.sleep(every_s)
        note(max(0.0, loop.time() - asked))
