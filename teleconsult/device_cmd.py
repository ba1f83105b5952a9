"""``teleconsult device simulate``: the reference ECG device.

It streams a WFDB record to ``/device`` as a cart would (docs/device-protocol.md):
digital samples exactly as stored in the record, at real time or ``--speed`` times
faster, and can drop its own connection every ``--drop-every`` seconds (wall clock) to
prove that resuming loses and duplicates nothing. It prints the stream id on stdout
(alone on its line, first), and a summary on stderr.

It is the reference implementation for vendors and the test and benchmark client, so
the protocol logic is not here: :class:`ecg.resume.StreamSender` keeps what the server
has not acknowledged and rewinds on resume; this module only pumps it over websockets.

Design notes
------------
- Three tasks: a producer that pushes samples into the sender at the signal's pace
  (it runs across connections, as a cart's ADC would), and per connection a pump that
  sends whatever frames are due and a listener that applies acks and errors.
- A forced drop aborts the TCP connection (no closing handshake), as a network loss
  would; frames in flight are lost or not, and either way the server's ``started``
  says where to resume.
- Refusals that a retry cannot fix (``stream_owned``, ``bad_message``, an HTTP 401 on
  the upgrade, ...) end the run with exit status 1 and the server's reason; a server
  that is away is retried with capped exponential backoff.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ecg.device import (
    Ack,
    End,
    Ended,
    Error,
    ErrorCode,
    ProtocolError,
    Start,
    Started,
    decode_server_message,
    encode_message,
)
from ecg.resume import StreamSender

__all__ = ["SimulatedRecord", "SimulationFailed", "SimulationResult", "register", "simulate"]

# Server errors after which reconnecting and resuming is the right answer.
RETRYABLE: Final = frozenset(
    {ErrorCode.INTERNAL, ErrorCode.SUPERSEDED, ErrorCode.STREAM_BUSY, ErrorCode.BAD_CHECKSUM}
)
# Reconnect backoff after a failure (not after a forced drop, which reconnects at once).
BACKOFF_FIRST_S: Final = 0.05
BACKOFF_MAX_S: Final = 5.0


class SimulationFailed(Exception):
    """The server refused the stream for a reason a retry cannot fix."""


@dataclass(frozen=True, eq=False)
class SimulatedRecord:
    """What the simulated device streams.

    Parameters
    ----------
    samples : ndarray of int16, shape (n, leads)
        Digital samples (ADC units).
    fs_hz : float
        Sampling rate in Hz.
    leads : list of str
        Lead names.
    adc_gain : list of float
        ADC units per mV, per lead.
    baseline : list of int
        ADC value of 0 mV, per lead.
    resolution_bits : int
        ADC resolution in bits.
    start_time : datetime
        UTC time of the first sample.
    """

    samples: npt.NDArray[np.int16]
    fs_hz: float
    leads: list[str]
    adc_gain: list[float]
    baseline: list[int]
    resolution_bits: int
    start_time: datetime

    @classmethod
    def read(cls, path: str, *, duration_s: float | None = None) -> SimulatedRecord:
        """Read a WFDB record's digital samples (``path`` as wfdb takes it).

        Raises
        ------
        ValueError
            When the record cannot be read, has samples outside int16, or several
            samples per frame.
        """
        import wfdb  # lazily: wfdb pulls in pandas

        try:
            header = wfdb.rdheader(path)
            sampto = (
                None if duration_s is None else min(header.sig_len, round(duration_s * header.fs))
            )
            record = wfdb.rdrecord(path, physical=False, sampto=sampto)
        except Exception as error:  # wfdb raises bare Exception for malformed headers
            raise ValueError(f"{path}: cannot read the record: {error}") from None
        if record.d_signal is None:
            raise ValueError(f"{path}: records with several samples per frame are not supported")
        digital = np.asarray(record.d_signal)
        if digital.size and (digital.min() < -32768 or digital.max() > 32767):
            raise ValueError(f"{path}: samples outside the int16 range cannot be streamed")
        base = record.base_datetime
        start = datetime.now(UTC) if base is None else base.replace(tzinfo=UTC)
        return cls(
            samples=digital.astype(np.int16),
            fs_hz=float(record.fs),
            leads=[str(name) for name in record.sig_name],
            adc_gain=[float(gain) for gain in record.adc_gain],
            baseline=[int(value) for value in record.baseline],
            resolution_bits=min(16, max(8, *(int(bits) for bits in record.adc_res))),
            start_time=start,
        )


@dataclass
class SimulationResult:
    """How a simulated stream went."""

    stream: uuid.UUID
    total_samples: int
    connections: int = 0
    forced_drops: int = 0
    elapsed_s: float = 0.0


@dataclass
class _Progress:
    sender: StreamSender
    total: int
    on_frame_sent: Callable[[int, int, float], object] | None = None
    on_acked: Callable[[int], object] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    produced_all: bool = False
    end_sent: bool = False


async def simulate(
    record: SimulatedRecord,
    *,
    url: str,
    token: str,
    device: str,
    patient: str = "SIMULATED",
    stream: uuid.UUID | None = None,
    consult: str | None = None,
    room: str | None = None,
    speed: float = 1.0,
    drop_every_s: float | None = None,
    frame_s: float = 0.1,
    give_up_s: float = 60.0,
    on_started: Callable[[uuid.UUID], object] | None = None,
    on_frame_sent: Callable[[int, int, float], object] | None = None,
    on_acked: Callable[[int], object] | None = None,
) -> SimulationResult:
    """Stream ``record`` to ``url`` until the server answers ``ended``.

    Parameters
    ----------
    record : SimulatedRecord
        The samples and their description.
    url : str
        The device endpoint, ``ws://HOST:PORT/device`` or ``wss://...``.
    token : str
        The device's token, sent as ``Authorization: Bearer``.
    device : str
        The device id (the token's ``sub``).
    patient, consult, room : str
        Start message fields.
    stream : uuid.UUID, optional
        The stream id: a fresh one by default, an existing one to resume it.
    speed : float
        Signal seconds per wall-clock second; ``math.inf`` sends as fast as possible.
    drop_every_s : float, optional
        Abort each connection after this many wall-clock seconds.
    frame_s : float
        Signal duration of one frame in seconds.
    give_up_s : float
        Fail when no sample has been acknowledged for this long, in seconds, while
        reconnecting (the server is away or keeps failing).
    on_started : callable, optional
        Called with the stream id once, before connecting.
    on_frame_sent : callable, optional
        Called with each frame's first sample index, sample count and the
        ``time.monotonic()`` at which it was handed to the socket (resends included):
        the start of the latency measurement of the benchmarks.
    on_acked : callable, optional
        Called with the acknowledged sample count (the server's ``next_index``) at each
        ack: what is durable on the server, for a test to act on (kill it, say).

    Raises
    ------
    SimulationFailed
        When the server refuses the stream for good.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    samples = record.samples
    frame_samples = max(1, min(65535, round(frame_s * record.fs_hz)))
    start = Start(
        version=1,
        device=device,
        stream=stream or uuid.uuid4(),
        patient=patient,
        fs_hz=record.fs_hz,
        leads=record.leads,
        adc_gain=record.adc_gain,
        baseline=record.baseline,
        resolution_bits=record.resolution_bits,
        start_time=record.start_time,
        consult=consult,
        room=room,
    )
    if on_started is not None:
        on_started(start.stream)
    sender = StreamSender(len(record.leads), frame_samples=frame_samples)
    progress = _Progress(sender, len(samples), on_frame_sent, on_acked)
    result = SimulationResult(start.stream, len(samples))
    began = time.monotonic()
    producer = asyncio.create_task(_produce(samples, record.fs_hz * speed, frame_samples, progress))
    backoff_s = BACKOFF_FIRST_S
    last_progress_s, last_acked = time.monotonic(), 0
    try:
        while True:
            result.connections += 1
            try:
                outcome = await _connection(url, token, start, progress, drop_every_s)
            except (OSError, ConnectionClosed, TimeoutError, InvalidHandshake) as error:
                if isinstance(error, InvalidStatus) and error.response.status_code in (401, 403):
                    raise SimulationFailed(f"the server refused the token: {error}") from None
                outcome = f"failed: {error}"
            if outcome == "ended":
                break
            if outcome == "dropped":
                result.forced_drops += 1
                backoff_s = BACKOFF_FIRST_S
                continue
            if progress.sender.acked > last_acked:
                last_progress_s, last_acked = time.monotonic(), progress.sender.acked
                backoff_s = BACKOFF_FIRST_S
            elif time.monotonic() - last_progress_s > give_up_s:
                raise SimulationFailed(f"no progress for {give_up_s:g} s; last: {outcome}")
            await asyncio.sleep(backoff_s)
            backoff_s = min(2 * backoff_s, BACKOFF_MAX_S)
    finally:
        producer.cancel()
    result.elapsed_s = time.monotonic() - began
    return result


async def _produce(
    samples: npt.NDArray[np.int16], rate_hz: float, frame_samples: int, progress: _Progress
) -> None:
    """Push samples into the sender at ``rate_hz`` samples per second, whole frames at a time."""
    loop = asyncio.get_running_loop()
    began, position, total = loop.time(), 0, len(samples)
    while position < total:
        # Whole frames as their time comes, then the remainder when the last sample's does.
        elapsed = total if math.isinf(rate_hz) else int((loop.time() - began) * rate_hz)
        due = total if elapsed >= total else elapsed // frame_samples * frame_samples
        if due > position:
            progress.sender.push(samples[position:due])
            position = due
            progress.wake.set()
        if position < total:
            await asyncio.sleep(frame_samples / rate_hz)
    progress.produced_all = True
    progress.wake.set()


async def _connection(
    url: str, token: str, start: Start, progress: _Progress, drop_every_s: float | None
) -> str:
    """One connection: ``"ended"``, ``"dropped"`` (forced) or ``"lost"``."""
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(url, additional_headers=headers, open_timeout=10) as ws:
        await ws.send(encode_message(start))
        reply = decode_server_message(await ws.recv())
        if isinstance(reply, Ended):
            return "ended"
        if isinstance(reply, Error):
            _check_retryable(reply)
            return "lost"
        if not isinstance(reply, Started):
            raise SimulationFailed(f"expected started, got {reply!r}")
        progress.sender.resume(reply.next_index)
        progress.end_sent = False
        progress.wake.set()
        pump = asyncio.create_task(_pump(ws, start.stream, reply.handle, progress))
        listen = asyncio.create_task(_listen(ws, progress))
        try:
            done, _ = await asyncio.wait(
                {pump, listen}, timeout=drop_every_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            pump.cancel()
            listen.cancel()
        if not done:
            ws.transport.abort()
            return "dropped"
        for task in done:
            error = task.exception()
            if error is not None and not isinstance(error, ConnectionClosed):
                raise error  # SimulationFailed, or a bug: never retried
        return listen.result() if listen in done else "lost"


async def _pump(ws: ClientConnection, stream: uuid.UUID, handle: int, progress: _Progress) -> None:
    sender = progress.sender
    while True:
        progress.wake.clear()
        for frame in sender.next_frames(handle):
            await ws.send(frame.serialize())
            if progress.on_frame_sent is not None:
                progress.on_frame_sent(frame.first_index, frame.n_samples, time.monotonic())
        complete = progress.produced_all and sender.sent == progress.total
        if complete and not progress.end_sent:
            await ws.send(encode_message(End(stream=stream, total_samples=progress.total)))
            progress.end_sent = True
        await progress.wake.wait()


async def _listen(ws: ClientConnection, progress: _Progress) -> str:
    async for text in ws:
        if isinstance(text, bytes):
            raise SimulationFailed("the server sent a binary message")
        message = decode_server_message(text)
        if isinstance(message, Ack):
            progress.sender.on_ack(message.next_index)
            if progress.on_acked is not None:
                progress.on_acked(message.next_index)
        elif isinstance(message, Ended):
            return "ended"
        elif isinstance(message, Error):
            if message.next_index is not None and not message.fatal:
                progress.sender.rewind(message.next_index)
                progress.end_sent = False
                progress.wake.set()
            else:
                _check_retryable(message)
    return "lost"


def _check_retryable(error: Error) -> None:
    if error.code not in RETRYABLE:
        raise SimulationFailed(f"server refused the stream: {error.code}: {error.reason}")


# ---------------------------------------------------------------------------------------
# Command line


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the ``device`` command group."""
    device = commands.add_parser("device", help="ECG device tools")
    sub = device.add_subparsers(dest="device_command", metavar="COMMAND", required=True)
    simulate_parser = sub.add_parser(
        "simulate",
        help="stream a WFDB record as an ECG cart would",
        description="Stream a WFDB record to a teleconsult server's /device endpoint, "
        "resuming without loss after drops; prints the stream id.",
    )
    simulate_parser.add_argument("record", help="WFDB record path, without extension")
    simulate_parser.add_argument("--url", required=True, help="ws://HOST:PORT/device or wss://")
    simulate_parser.add_argument("--token", required=True, help="a device token (role device)")
    simulate_parser.add_argument(
        "--speed", type=float, default=1.0, help="times real time; 'inf' as fast as possible"
    )
    simulate_parser.add_argument(
        "--drop-every", type=float, default=None, metavar="SECONDS",
        help="drop the connection on purpose every SECONDS (wall clock)",
    )  # fmt: skip
    simulate_parser.add_argument("--frame-ms", type=float, default=100.0, help="signal per frame")
    simulate_parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                                 help="stream only the first SECONDS of the record")  # fmt: skip
    simulate_parser.add_argument("--stream", type=uuid.UUID, default=None,
                                 help="stream id to resume (default: a new one)")  # fmt: skip
    simulate_parser.add_argument("--give-up-after", type=float, default=60.0, metavar="SECONDS",
                                 help="fail after SECONDS without progress")  # fmt: skip
    simulate_parser.add_argument("--device", default=None, help="device id (default: token sub)")
    simulate_parser.add_argument("--patient", default="SIMULATED", help="patient reference")
    simulate_parser.add_argument("--consult", default=None)
    simulate_parser.add_argument("--room", default=None)
    simulate_parser.set_defaults(handler=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    """Handler of ``teleconsult device simulate``."""
    try:
        record = SimulatedRecord.read(args.record, duration_s=args.duration)
        device = args.device or _token_subject(args.token)
        result = asyncio.run(
            simulate(
                record,
                url=args.url,
                token=args.token,
                device=device,
                patient=args.patient,
                stream=args.stream,
                consult=args.consult,
                room=args.room,
                speed=args.speed,
                drop_every_s=args.drop_every,
                frame_s=args.frame_ms / 1000.0,
                give_up_s=args.give_up_after,
                on_started=lambda stream: print(stream, flush=True),
            )
        )
    except (ValueError, SimulationFailed, ProtocolError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"stream {result.stream}: {result.total_samples} samples x {len(record.leads)} leads "
        f"stored in {result.elapsed_s:.2f} s over {result.connections} connections "
        f"({result.forced_drops} forced drops)",
        file=sys.stderr,
    )
    return 0


def _token_subject(token: str) -> str:
    """The ``sub`` of a JWT, read without verifying it (the server verifies)."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise ValueError(f"the token is not a JWT: {error}") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise ValueError("the token has no 'sub' (device id); give --device")
    return subject
