"""The device stream wire format: frames, messages, their errors, and the documented example."""

from __future__ import annotations

import re
import struct
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ecg.device import (
    FRAME_HEADER_BYTES,
    MAGIC,
    Ack,
    ClientMessage,
    End,
    Ended,
    Error,
    ErrorCode,
    Frame,
    FrameError,
    LocalProtocolError,
    MessageError,
    ProtocolError,
    ServerMessage,
    Start,
    Started,
    decode_client_message,
    decode_server_message,
    encode_message,
    frame_size,
    json_schema,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "device-protocol.md"

FRAME_CODES = {
    ErrorCode.FRAME_TOO_SHORT,
    ErrorCode.BAD_MAGIC,
    ErrorCode.BAD_FRAME_VERSION,
    ErrorCode.BAD_CHECKSUM,
    ErrorCode.BAD_FLAGS,
    ErrorCode.BAD_LEAD_COUNT,
    ErrorCode.BAD_SAMPLE_COUNT,
    ErrorCode.BAD_SIZE,
}

sample_blocks = hnp.arrays(
    np.int16,
    st.tuples(st.integers(1, 300), st.integers(1, 16)),
)


def make_start(**changes: object) -> Start:
    """A valid 12-lead start message, with ``changes`` applied."""
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    fields: dict[str, object] = {
        "version": 1,
        "device": "cart-0042",
        "stream": uuid.UUID("5f0c6a52-3c1e-4d7a-9b8e-2f4a1c9d7e10"),
        "patient": "MRN-2026-000731",
        "fs_hz": 500.0,
        "leads": leads,
        "adc_gain": [200.0] * 12,
        "baseline": [0] * 12,
        "resolution_bits": 16,
        "start_time": datetime(2026, 11, 23, 8, 30, tzinfo=UTC),
        "consult": "C-17",
    }
    fields.update(changes)
    return Start(**fields)  # type: ignore[arg-type]


def start_json(**changes: object) -> str:
    """The JSON of :func:`make_start` with raw JSON-level ``changes``."""
    raw = msgspec.json.decode(encode_message(make_start()))
    raw.update(changes)
    return msgspec.json.encode(raw).decode()


@given(
    stream=st.integers(0, 2**32 - 1),
    first=st.integers(0, 2**63),
    samples=sample_blocks,
)
def test_frame_round_trip(stream: int, first: int, samples: np.ndarray) -> None:
    """A frame parses back to the same handle, index and samples, at the documented size."""
    data = Frame(stream, first, samples).serialize()
    assert len(data) == FRAME_HEADER_BYTES + samples.size * 2 == frame_size(data)
    frame = Frame.parse(data)
    assert (frame.stream, frame.first_index) == (stream, first)
    np.testing.assert_array_equal(frame.samples, samples)
    assert frame.samples.dtype == np.int16


def test_frame_layout_is_little_endian_interleaved() -> None:
    """Header fields sit at their documented offsets and samples interleave by lead."""
    samples = np.array([[1, -2], [300, -32768]], dtype=np.int16)
    data = bytes(Frame(7, 1000, samples))
    magic, version, flags, handle, first, n, leads, reserved, crc = struct.unpack(
        "<2sBBIQHBBI", data[:24]
    )
    assert (magic, version, flags, handle, first, n, leads, reserved) == (
        MAGIC, 1, 0, 7, 1000, 2, 2, 0
    )  # fmt: skip
    assert crc == zlib.crc32(data[:20] + data[24:])
    assert struct.unpack("<4h", data[24:]) == (1, -2, 300, -32768)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, 0, np.zeros((0, 2), np.int16)), "sample count"),
        ((1, 0, np.zeros((2, 17), np.int16)), "lead count"),
        ((1, 0, np.zeros((2, 2), np.int32)), "int16"),
        ((2**32, 0, np.zeros((2, 2), np.int16)), "handle"),
        ((1, 2**64 - 1, np.zeros((2, 2), np.int16)), "index"),
    ],
)
def test_frame_refuses_invalid_fields_locally(args: tuple[object, ...], message: str) -> None:
    """Building a frame the protocol cannot carry is our bug: LocalProtocolError."""
    with pytest.raises(LocalProtocolError, match=message):
        Frame(*args)  # type: ignore[arg-type]


T = TypeVar("T")
A = TypeVar("A")


def _outcome(function: Callable[[A], T], argument: A) -> T | ProtocolError:
    """``function(argument)``, or the ProtocolError it raised (any other error propagates)."""
    try:
        return function(argument)
    except ProtocolError as error:
        return error


def _with_header(data: bytes, **fields: int) -> bytes:
    """``data`` with header fields replaced and the CRC recomputed (a consistent frame)."""
    offsets = {"version": (2, "B"), "flags": (3, "B"), "n": (16, "H"), "leads": (18, "B")}
    buffer = bytearray(data)
    for name, value in fields.items():
        offset, fmt = offsets[name]
        struct.pack_into("<" + fmt, buffer, offset, value)
    crc = zlib.crc32(bytes(buffer[:20]) + bytes(buffer[24:]))
    struct.pack_into("<I", buffer, 20, crc)
    return bytes(buffer)


GOOD = bytes(Frame(3, 500, np.arange(8, dtype=np.int16).reshape(4, 2)))


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (GOOD[:23], ErrorCode.FRAME_TOO_SHORT),
        (b"XX" + GOOD[2:], ErrorCode.BAD_MAGIC),
        (_with_header(GOOD, version=2), ErrorCode.BAD_FRAME_VERSION),
        (GOOD[:-1] + bytes([GOOD[-1] ^ 1]), ErrorCode.BAD_CHECKSUM),
        (GOOD[:-2], ErrorCode.BAD_CHECKSUM),
        (_with_header(GOOD, flags=1), ErrorCode.BAD_FLAGS),
        (_with_header(GOOD, leads=0), ErrorCode.BAD_LEAD_COUNT),
        (_with_header(GOOD, leads=17), ErrorCode.BAD_LEAD_COUNT),
        (_with_header(GOOD, n=0), ErrorCode.BAD_SAMPLE_COUNT),
        (_with_header(GOOD, n=5), ErrorCode.BAD_SIZE),
        (_with_header(GOOD, leads=1), ErrorCode.BAD_SIZE),
    ],
)
def test_bad_frames_name_their_reason(data: bytes, code: ErrorCode) -> None:
    """Each kind of bad frame is refused with its own documented code."""
    with pytest.raises(FrameError) as error:
        Frame.parse(data)
    assert error.value.code is code
    assert error.value.reason


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_frame_errors(data: bytes) -> None:
    """Arbitrary bytes either decode or raise FrameError with a documented code."""
    outcome = _outcome(Frame.parse, data)
    if isinstance(outcome, ProtocolError):
        assert isinstance(outcome, FrameError)
        assert outcome.code in FRAME_CODES
    else:
        assert outcome.serialize() == data


@settings(max_examples=300)
@given(
    samples=sample_blocks,
    position=st.integers(0, 10_000),
    flip=st.integers(1, 255),
    cut=st.integers(0, 10_000),
)
def test_corrupted_frames_are_always_detected(
    samples: np.ndarray, position: int, flip: int, cut: int
) -> None:
    """A frame with a changed byte, or truncated, never decodes to something else."""
    data = bytearray(Frame(1, 42, samples).serialize())
    data[position % len(data)] ^= flip
    with pytest.raises(FrameError) as error:
        Frame.parse(bytes(data))
    assert error.value.code in FRAME_CODES
    whole = Frame(1, 42, samples).serialize()
    with pytest.raises(FrameError):
        Frame.parse(whole[: cut % len(whole)])


def test_messages_round_trip() -> None:
    """Every message type encodes to JSON tagged by ``type`` and decodes back equal."""
    stream = uuid.uuid4()
    client: list[ClientMessage] = [
        make_start(),
        make_start(consult=None, room="R-3"),
        End(stream, 1500),
    ]
    for message in client:
        assert decode_client_message(encode_message(message)) == message
    server: list[ServerMessage] = [
        Started(stream, 1, 0),
        Ack(stream, 1000),
        Ended(stream, 1500),
        Error("gap", "resend", False, stream, 10),
    ]
    for reply in server:
        assert decode_server_message(encode_message(reply)) == reply
    assert msgspec.json.decode(encode_message(Ack(stream, 5)))["type"] == "ack"


@pytest.mark.parametrize(
    ("text", "code", "names"),
    [
        ("{", ErrorCode.BAD_JSON, "JSON"),
        ("[1, 2]", ErrorCode.BAD_MESSAGE, "object"),
        ('{"type": "hello"}', ErrorCode.BAD_MESSAGE, "type"),
        ('{"stream": "x"}', ErrorCode.BAD_MESSAGE, "type"),
        (start_json(fs_hz=10000.5), ErrorCode.BAD_MESSAGE, "fs_hz"),
        (start_json(fs_hz=49), ErrorCode.BAD_MESSAGE, "fs_hz"),
        (start_json(leads=[]), ErrorCode.BAD_MESSAGE, "leads"),
        (start_json(leads=[f"L{i}" for i in range(17)]), ErrorCode.BAD_MESSAGE, "leads"),
        (start_json(leads=["I"] * 12), ErrorCode.BAD_MESSAGE, "unique"),
        (start_json(leads=["I II"] + ["V"] * 11), ErrorCode.BAD_MESSAGE, "leads"),
        (start_json(adc_gain=[200.0]), ErrorCode.BAD_MESSAGE, "adc_gain"),
        (start_json(adc_gain=[0.0] * 12), ErrorCode.BAD_MESSAGE, "adc_gain"),
        (start_json(baseline=[40000] * 12), ErrorCode.BAD_MESSAGE, "baseline"),
        (start_json(resolution_bits=24), ErrorCode.BAD_MESSAGE, "resolution_bits"),
        (start_json(stream="not-a-uuid"), ErrorCode.BAD_MESSAGE, "stream"),
        (start_json(start_time="2026-11-23T08:30:00"), ErrorCode.BAD_MESSAGE, "start_time"),
        (start_json(start_time="2026-11-23T08:30:00+08:00"), ErrorCode.BAD_MESSAGE, "UTC"),
        (start_json(device="cart 42"), ErrorCode.BAD_MESSAGE, "device"),
        (start_json(extra=1), ErrorCode.BAD_MESSAGE, "extra"),
        (start_json(version=2), ErrorCode.UNSUPPORTED_VERSION, "version 2"),
        ('{"type": "end", "stream": "5f0c6a52-3c1e-4d7a-9b8e-2f4a1c9d7e11", '
         '"total_samples": -1}',
         ErrorCode.BAD_MESSAGE, "total_samples"),
    ],
)  # fmt: skip
def test_bad_messages_name_their_reason(text: str, code: ErrorCode, names: str) -> None:
    """A malformed or out-of-bounds message is refused with a code and a reason naming the fault."""
    with pytest.raises(MessageError) as error:
        decode_client_message(text)
    assert error.value.code is code
    assert names in error.value.reason


@settings(max_examples=200)
@given(st.text(max_size=300) | st.binary(max_size=300))
def test_random_text_only_raises_message_errors(text: str | bytes) -> None:
    """Arbitrary text either decodes to a client message or raises MessageError."""
    outcome = _outcome(decode_client_message, text)
    if isinstance(outcome, ProtocolError):
        assert isinstance(outcome, MessageError)
        assert outcome.code in {ErrorCode.BAD_JSON, ErrorCode.BAD_MESSAGE}
    else:
        assert isinstance(outcome, Start | End)


def test_json_schema_names_every_message_and_bound() -> None:
    """The published JSON Schema covers the six messages and carries the documented bounds."""
    schema = json_schema()
    assert set(schema["discriminator"]["mapping"]) == {
        "start", "end", "started", "ack", "ended", "error"
    }  # fmt: skip
    fs = schema["$defs"]["Start"]["properties"]["fs_hz"]
    assert (fs["minimum"], fs["maximum"]) == (50, 10000)
    assert schema["$defs"]["Start"]["additionalProperties"] is False


def _doc_section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(title)
    return text[start : text.index("\n## ", start + 1)]


def test_documented_example_frame_decodes_to_documented_values() -> None:
    """The worked example's hex in docs/device-protocol.md decodes to the values the doc states."""
    section = _doc_section("## Worked example")
    hex_block = re.search(r"```text\n(.*?)```", section, re.S)
    assert hex_block is not None
    hex_text = "".join(
        line.split("  ")[0].split(":", 1)[1] for line in hex_block.group(1).splitlines() if line
    )
    frame = Frame.parse(bytes.fromhex(hex_text.replace(" ", "")))
    values = re.search(r"<!-- example: (.*?) -->", section)
    assert values is not None
    expected = msgspec.json.decode(values.group(1))
    assert frame.stream == expected["handle"]
    assert frame.first_index == expected["first_index"]
    assert frame.samples.tolist() == expected["samples"]
    start_block = re.search(r"```json\n(.*?)```", section, re.S)
    assert start_block is not None
    start = decode_client_message(start_block.group(1))
    assert isinstance(start, Start)
    assert start.n_leads == frame.n_leads


@pytest.mark.parametrize(
    "text",
    [
        '{"type":' + '{"a":' * 3000 + "1" + "}" * 3000 + "}",
        '{"a":' * 3000 + "1" + "}" * 3000,
    ],
)
def test_deeply_nested_json_is_bad_json(text: str) -> None:
    """JSON nested past the recursion limit is a MessageError bad_json, not RecursionError."""
    with pytest.raises(MessageError) as caught:
        decode_client_message(text)
    assert caught.value.code is ErrorCode.BAD_JSON
