"""Resume logic with no I/O: the server session, the device sender, and the two together."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecg.device import (
    Ack,
    End,
    Ended,
    Error,
    ErrorCode,
    Frame,
    LocalProtocolError,
    Start,
    Started,
    StreamRefused,
    encode_message,
)
from ecg.resume import (
    TRANSITIONS,
    Append,
    Close,
    DeviceSession,
    Effect,
    Finalise,
    Open,
    Placement,
    Release,
    Send,
    SessionLimits,
    StreamSender,
    StreamState,
    place_frame,
)
from tests.ecg.test_device import make_start

DEVICE = "cart-0042"


@dataclass
class MemoryStore:
    """What a store holds for one stream: appended blocks, and how much of it is durable."""

    blocks: list[npt.NDArray[np.int16]] = field(default_factory=list)
    durable: int = 0
    ended: int | None = None

    @property
    def written(self) -> int:
        return sum(len(block) for block in self.blocks)

    def samples(self) -> npt.NDArray[np.int16]:
        return np.concatenate(self.blocks)


def serve(session: DeviceSession, effects: list[Effect], store: MemoryStore) -> list[Effect]:
    """Perform storage effects in memory (everything written becomes durable at once)."""
    out: list[Effect] = []
    queue = list(effects)
    while queue:
        effect = queue.pop(0)
        if isinstance(effect, Open):
            queue += session.opened(
                effect.start.stream, next_index=store.durable, total_samples=store.ended
            )
        elif isinstance(effect, Append):
            assert effect.first_index == store.written
            store.blocks.append(effect.samples)
            store.durable = store.written
            queue += session.durable(effect.stream, store.durable)
        elif isinstance(effect, Finalise):
            store.ended = effect.total_samples
            queue += session.finalised(effect.stream)
        else:
            out.append(effect)
    return out


def messages(effects: list[Effect]) -> list[object]:
    """The messages among ``effects``."""
    return [effect.message for effect in effects if isinstance(effect, Send)]


def started_session(start: Start, store: MemoryStore) -> tuple[DeviceSession, int]:
    """A session on which ``start`` was accepted; returns it and the stream handle."""
    session = DeviceSession(DEVICE)
    (reply,) = messages(serve(session, session.receive_text(encode_message(start)), store))
    assert isinstance(reply, Started)
    return session, reply.handle


def block(first: int, n: int, leads: int = 12) -> npt.NDArray[np.int16]:
    """Samples whose value encodes their index and lead, so misplacement shows."""
    index = np.arange(first, first + n)[:, None]
    return ((index * 16 + np.arange(leads)) % 65536 - 32768).astype(np.int16)


def test_place_frame_cases() -> None:
    """A frame below, across, at, slightly and far beyond the next index is placed as documented."""
    cases = [
        ((100, 0, 50), Placement.DUPLICATE, 0),
        ((100, 50, 50), Placement.DUPLICATE, 0),
        ((100, 60, 50), Placement.APPEND, 40),
        ((100, 100, 50), Placement.APPEND, 0),
        ((100, 101, 50), Placement.GAP, 0),
        ((100, 1100, 50), Placement.GAP, 0),
        ((100, 1101, 50), Placement.FAR_AHEAD, 0),
    ]
    for (next_index, first, n), placement, offset in cases:
        where = place_frame(next_index, first, n, max_gap_samples=1000)
        assert (where.placement, where.offset) == (placement, offset)


def test_every_state_has_a_transition_row() -> None:
    """The transition table names every state, and CLOSED is terminal."""
    assert set(TRANSITIONS) == set(StreamState)
    assert TRANSITIONS[StreamState.CLOSED] == {}


def test_start_frames_acks_end() -> None:
    """A stream opens, its frames are appended and acked, and end finalises it."""
    start, store = make_start(), MemoryStore()
    session, handle = started_session(start, store)
    for first in (0, 50, 100):
        replies = messages(
            serve(
                session, session.receive_bytes(bytes(Frame(handle, first, block(first, 50)))), store
            )
        )
        assert replies == [Ack(start.stream, first + 50)]
    end = End(start.stream, 150)
    assert messages(serve(session, session.receive_text(encode_message(end)), store)) == [
        Ended(start.stream, 150)
    ]
    np.testing.assert_array_equal(store.samples(), block(0, 150))
    assert store.ended == 150


def test_duplicates_and_overlaps_store_each_sample_once() -> None:
    """Resent frames are dropped, overlapping ones contribute only their new samples."""
    start, store = make_start(), MemoryStore()
    session, handle = started_session(start, store)
    sends = [(0, 40), (0, 40), (20, 40), (10, 10), (60, 40), (30, 80)]
    for first, n in sends:
        serve(session, session.receive_bytes(bytes(Frame(handle, first, block(first, n)))), store)
    np.testing.assert_array_equal(store.samples(), block(0, 110))


def test_gap_is_refused_without_closing_and_names_the_resume_index() -> None:
    """A frame past the next index stores nothing, keeps the connection, says where to resend."""
    start, store = make_start(), MemoryStore()
    session, handle = started_session(start, store)
    serve(session, session.receive_bytes(bytes(Frame(handle, 0, block(0, 50)))), store)
    effects = serve(session, session.receive_bytes(bytes(Frame(handle, 80, block(80, 50)))), store)
    assert not any(isinstance(effect, Close) for effect in effects)
    (error,) = messages(effects)
    assert isinstance(error, Error)
    assert (error.code, error.fatal, error.next_index) == ("gap", False, 50)
    assert store.written == 50
    replies = serve(session, session.receive_bytes(bytes(Frame(handle, 50, block(50, 80)))), store)
    assert messages(replies) == [Ack(start.stream, 130)]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (lambda h: Frame(h, 60 * 500 + 51, block(0, 10)), ErrorCode.FAR_AHEAD),
        (lambda h: Frame(h, 50, block(50, 10, leads=3)), ErrorCode.LEAD_COUNT_MISMATCH),
        (lambda h: Frame(h + 1, 50, block(50, 10)), ErrorCode.UNKNOWN_STREAM),
        (lambda h: Frame(h, 50, block(50, 10_001)), ErrorCode.FRAME_TOO_LARGE),
    ],
)
def test_fatal_frame_refusals_close_and_keep_what_was_acked(frame, code: ErrorCode) -> None:  # type: ignore[no-untyped-def]
    """A refused frame gets a fatal error naming the reason; acked samples stay stored."""
    start, store = make_start(), MemoryStore()
    session, handle = started_session(start, store)
    serve(session, session.receive_bytes(bytes(Frame(handle, 0, block(0, 50)))), store)
    effects = serve(session, session.receive_bytes(bytes(frame(handle))), store)
    error = messages(effects)[0]
    assert isinstance(error, Error)
    assert (error.code, error.fatal) == (code.value, True)
    assert effects[-1] == Close(1008, code.value)
    assert Release(start.stream) in effects
    assert store.written == store.durable == 50
    assert session.receive_bytes(bytes(Frame(handle, 50, block(50, 10)))) == []


def test_corrupt_frame_is_refused_with_its_checksum_error() -> None:
    """A frame with a flipped bit is refused as bad_checksum and stores nothing."""
    start, store = make_start(), MemoryStore()
    session, handle = started_session(start, store)
    data = bytearray(bytes(Frame(handle, 0, block(0, 50))))
    data[100] ^= 0x10
    error = messages(serve(session, session.receive_bytes(bytes(data)), store))[0]
    assert isinstance(error, Error)
    assert error.code == "bad_checksum"
    assert store.written == 0


def test_start_refusals() -> None:
    """A start for another device, a second differing start, and too many streams are refused."""
    session = DeviceSession(DEVICE, limits=SessionLimits(max_streams=1))
    other = make_start(device="cart-9999")
    error = messages(session.receive_text(encode_message(other)))[0]
    assert isinstance(error, Error)
    assert error.code == "device_mismatch"

    session = DeviceSession(DEVICE, limits=SessionLimits(max_streams=1))
    store = MemoryStore()
    serve(session, session.receive_text(encode_message(make_start())), store)
    changed = make_start(patient="someone else")
    error = messages(session.receive_text(encode_message(changed)))[0]
    assert isinstance(error, Error)
    assert error.code == "start_mismatch"

    session, _ = started_session(make_start(), MemoryStore())
    session.limits = SessionLimits(max_streams=1)
    error = messages(session.receive_text(encode_message(make_start(stream=uuid.uuid4()))))[0]
    assert isinstance(error, Error)
    assert error.code == "too_many_streams"


def test_store_refusal_is_sent_and_closes() -> None:
    """When the store refuses a start (stream of another device) the device is told why."""
    session = DeviceSession(DEVICE)
    (open_,) = session.receive_text(encode_message(make_start()))
    assert isinstance(open_, Open)
    refusal = StreamRefused(ErrorCode.STREAM_OWNED, "belongs to another device")
    effects = session.refused(open_.start.stream, refusal)
    error = messages(effects)[0]
    assert isinstance(error, Error)
    assert error.code == "stream_owned"
    assert isinstance(effects[-1], Close)


def test_repeated_start_restates_and_restart_resumes_from_store() -> None:
    """A repeated start is restated; a new session resumes at the durable index."""
    start, store = make_start(), MemoryStore()
    session, handle = started_session(start, store)
    serve(session, session.receive_bytes(bytes(Frame(handle, 0, block(0, 70)))), store)
    again = messages(session.receive_text(encode_message(start)))
    assert again == [Started(start.stream, handle, 70)]
    session.connection_lost()
    resumed, _ = started_session(start, store)
    (started,) = messages(serve(resumed, resumed.receive_text(encode_message(start)), store))
    assert isinstance(started, Started)
    assert started.next_index == 70


def test_end_incomplete_mismatch_and_repeat() -> None:
    """End past the received samples asks for a resend, below is refused, after ended restates."""
    start, store = make_start(), MemoryStore()
    session, handle = started_session(start, store)
    serve(session, session.receive_bytes(bytes(Frame(handle, 0, block(0, 50)))), store)
    (error,) = messages(
        serve(session, session.receive_text(encode_message(End(start.stream, 60))), store)
    )
    assert isinstance(error, Error)
    assert (error.code, error.fatal, error.next_index) == ("end_incomplete", False, 50)
    serve(session, session.receive_bytes(bytes(Frame(handle, 50, block(50, 10)))), store)
    ended = messages(
        serve(session, session.receive_text(encode_message(End(start.stream, 60))), store)
    )
    assert ended == [Ended(start.stream, 60)]
    assert messages(session.receive_text(encode_message(End(start.stream, 60)))) == ended
    refused = messages(session.receive_text(encode_message(End(start.stream, 59))))[0]
    assert isinstance(refused, Error)
    assert refused.code == "end_mismatch"

    session, handle = started_session(make_start(stream=uuid.uuid4()), store := MemoryStore())
    short = End(session_stream(session), 0)
    serve(session, session.receive_bytes(bytes(Frame(handle, 0, block(0, 5)))), store)
    refused = messages(session.receive_text(encode_message(short)))[0]
    assert isinstance(refused, Error)
    assert refused.code == "end_mismatch"


def session_stream(session: DeviceSession) -> uuid.UUID:
    """The one stream of a session."""
    (stream,) = session._streams
    return stream


def test_new_frames_after_end_are_refused_and_resent_ones_dropped() -> None:
    """After ended, a resent frame is dropped and a frame of new samples is refused."""
    start, store = make_start(), MemoryStore()
    session, handle = started_session(start, store)
    serve(session, session.receive_bytes(bytes(Frame(handle, 0, block(0, 50)))), store)
    serve(session, session.receive_text(encode_message(End(start.stream, 50))), store)
    assert session.receive_bytes(bytes(Frame(handle, 0, block(0, 50)))) == []
    error = messages(session.receive_bytes(bytes(Frame(handle, 40, block(40, 20)))))[0]
    assert isinstance(error, Error)
    assert error.code == "stream_ended"


def test_start_of_an_ended_stream_answers_ended() -> None:
    """A device that missed ``ended`` and starts again is told the stream is complete."""
    start, store = make_start(), MemoryStore(ended=500, durable=500)
    session = DeviceSession(DEVICE)
    replies = messages(serve(session, session.receive_text(encode_message(start)), store))
    assert replies == [Ended(start.stream, 500)]


def test_session_reports_out_of_order_are_local_errors() -> None:
    """The I/O layer reporting an impossible event is a LocalProtocolError, not a device error."""
    session = DeviceSession(DEVICE)
    with pytest.raises(LocalProtocolError):
        session.opened(uuid.uuid4(), next_index=0)
    start, store = make_start(), MemoryStore()
    session, _ = started_session(start, store)
    with pytest.raises(LocalProtocolError):
        session.finalised(start.stream)
    with pytest.raises(LocalProtocolError):
        session.durable(start.stream, 10)


_VALID_START = encode_message(make_start())
_inputs = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=80),
    st.just(_VALID_START),
    st.just(encode_message(End(make_start().stream, 10))),
    st.builds(
        lambda first, n, handle: bytes(Frame(handle, first, block(first, n))),
        st.integers(0, 40_000),
        st.integers(1, 30),
        st.integers(0, 3),
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_inputs, max_size=25))
def test_any_input_sequence_gets_only_documented_errors(inputs: list[bytes | str]) -> None:
    """Whatever a device sends, the session answers with documented codes and never crashes."""
    store = MemoryStore()
    session = DeviceSession(DEVICE)
    codes = {code.value for code in ErrorCode}
    for item in inputs:
        if isinstance(item, str):
            effects = session.receive_text(item)
        else:
            effects = session.receive_bytes(item)
        for message in messages(serve(session, effects, store)):
            if isinstance(message, Error):
                assert message.code in codes
                assert message.reason
    if store.blocks:
        np.testing.assert_array_equal(store.samples(), block(0, store.written))


def test_sender_cuts_frames_and_forgets_acked_samples() -> None:
    """The sender frames pushed samples in order, keeps the unacked ones and rewinds on resume."""
    sender = StreamSender(12, frame_samples=40)
    for first in range(0, 100, 30):
        sender.push(block(first, min(30, 100 - first)))
    frames = sender.next_frames(handle=3)
    assert [(f.first_index, f.n_samples, f.stream) for f in frames] == [
        (0, 40, 3), (40, 40, 3), (80, 20, 3)
    ]  # fmt: skip
    np.testing.assert_array_equal(np.concatenate([f.samples for f in frames]), block(0, 100))
    sender.on_ack(45)
    assert sender.unacked == 55
    sender.resume(45)
    (first, *_) = sender.next_frames(handle=4)
    assert first.first_index == 45
    np.testing.assert_array_equal(first.samples, block(45, 40))
    with pytest.raises(LocalProtocolError):
        sender.resume(10)
    with pytest.raises(LocalProtocolError):
        sender.on_ack(1000)


def test_sender_long_backlog_survives_compaction() -> None:
    """Thousands of small pushes, acked and resent piecemeal, still frame the right samples."""
    sender = StreamSender(2, frame_samples=7)
    for first in range(5000):
        sender.push(block(first, 1, leads=2))
    received = []
    while sender.acked < 5000:
        frames = sender.next_frames(handle=1, limit=50)
        received += frames[:40]  # the last ten frames of each burst are lost
        sender.on_ack(frames[39].end_index if len(frames) >= 40 else frames[-1].end_index)
        sender.resume(sender.acked)
    samples = np.concatenate([frame.samples for frame in received])
    np.testing.assert_array_equal(samples[:5000], block(0, 5000, leads=2))


def test_sender_refuses_beyond_its_buffer() -> None:
    """A bounded sender refuses samples beyond its unacknowledged limit."""
    sender = StreamSender(1, frame_samples=10, max_unacked_samples=20)
    sender.push(block(0, 20, leads=1))
    with pytest.raises(LocalProtocolError):
        sender.push(block(20, 1, leads=1))


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.integers(1, 120), min_size=1, max_size=30),
    frame_samples=st.integers(1, 64),
    events=st.lists(
        st.sampled_from(["send", "drop", "lose", "ack_late", "acks_lost", "resend"]), max_size=40
    ),
)
def test_drops_and_resumes_lose_and_duplicate_nothing(
    chunks: list[int], frame_samples: int, events: list[str]
) -> None:
    """Under drops, lost frames, lost acks and resends the store holds exactly what was produced."""
    start, store = (
        make_start(leads=["I", "II"], adc_gain=[200.0] * 2, baseline=[0] * 2),
        MemoryStore(),
    )
    sender = StreamSender(2, frame_samples=frame_samples)
    total = sum(chunks)
    source = block(0, total, leads=2)
    position = 0
    session: DeviceSession | None = None
    handle = 0

    def connect() -> None:
        nonlocal session, handle
        session = DeviceSession(DEVICE)
        (started,) = messages(serve(session, session.receive_text(encode_message(start)), store))
        assert isinstance(started, Started)
        handle = started.handle
        sender.resume(started.next_index)

    def deliver(frames: list[Frame], *, acks_lost: bool = False) -> None:
        assert session is not None
        for frame in frames:
            for message in messages(serve(session, session.receive_bytes(bytes(frame)), store)):
                assert isinstance(message, Ack | Error)
                if acks_lost and isinstance(message, Ack):
                    continue
                if isinstance(message, Ack):
                    sender.on_ack(message.next_index)
                elif message.next_index is not None:
                    sender.rewind(message.next_index)

    connect()
    for event, n in zip(events + ["send"] * len(chunks), chunks + [0] * len(events), strict=False):
        if n:
            sender.push(source[position : position + n])
            position += n
        if event == "drop":  # in-flight frames vanish with the connection
            sender.next_frames(handle)
            assert session is not None
            session.connection_lost()
            connect()
        elif event == "lose":  # frames sent but never arrive: the next ones make a gap
            sender.next_frames(handle, limit=1)
        elif event == "ack_late":
            continue
        elif event == "acks_lost":  # frames arrive, their acks do not
            deliver(sender.next_frames(handle), acks_lost=True)
            continue
        elif event == "resend":  # a cautious device resends all it was not told is stored
            sender.rewind(sender.acked)
        deliver(sender.next_frames(handle))
    sender.push(source[position:])
    while sender.acked < total:
        connect()
        deliver(sender.next_frames(handle))
    assert session is not None
    ended = messages(
        serve(session, session.receive_text(encode_message(End(start.stream, total))), store)
    )
    assert ended == [Ended(start.stream, total)]
    np.testing.assert_array_equal(store.samples(), source)
