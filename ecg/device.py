"""The ECG device stream protocol: binary frame codec, JSON message schemas, errors.

This module is the wire format and nothing else: pure parse/serialise pairs, no I/O,
no state (the state machines live in :mod:`ecg.resume`, the disk in
:mod:`ecg.streamstore`). ``docs/device-protocol.md`` is the vendor-facing description;
the numbers below are the normative ones and a test checks the document against them.

Design notes
------------
- **Frames are self-checking.** A 24-byte little-endian header (magic ``"EC"``,
  version, flags, stream handle, first sample index, sample count, lead count, CRC-32)
  and then ``int16`` samples interleaved by lead. The CRC-32 (zlib's, the one of
  Ethernet/PNG) covers header bytes 0..19 and the payload, so it is checked before any
  field is trusted: a corrupted frame reports ``bad_checksum``; a well-formed frame
  whose fields are inconsistent (a device bug) reports the field at fault.
- **The first sample index is absolute** (u64, counted from the stream's first sample,
  per lead). It is what makes resume idempotent: a frame says where its samples go, so
  the server can drop a duplicate and keep only the new part of an overlap.
- **The stream handle is short** (u32 assigned by the server in ``started``) so that a
  frame does not carry the 16-byte stream UUID; handles are scoped to one connection.
- **The storage format is the wire format.** :mod:`ecg.streamstore` appends frames
  (handle 0) to its sample file, so a torn tail is found by the same checksum.
- **Messages are msgspec structs**, tagged by ``type``, unknown fields refused (a
  vendor's typo is an error, not a silent default). Every bound a message may break is
  stated in its schema and produces ``bad_message`` naming the field.

Exception tree (a branch of :class:`ecg.errors.EcgError`, the package's one tree)::

    EcgError
    └── DeviceError                anything ecg.device / ecg.resume / ecg.streamstore
        │                          raise on purpose
        ├── ProtocolError          the peer broke the protocol or was refused; carries
        │   │                      ``code`` (an :class:`ErrorCode`), ``reason``, ``fatal``
        │   ├── FrameError         a binary frame cannot be decoded
        │   ├── MessageError       a text message cannot be decoded or is invalid
        │   └── StreamRefused      a valid message refused in the stream's state
        ├── LocalProtocolError     our own side asked for something the protocol forbids
        └── StoreError             the stream store cannot do what was asked

Only ``code`` and ``reason`` of a :class:`ProtocolError` ever reach a peer; any other
exception becomes ``internal`` with a generic reason.
"""

from __future__ import annotations

import enum
import struct
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, TypeVar

import msgspec
import numpy as np
import numpy.typing as npt

from ecg.errors import EcgError

__all__ = [
    "FRAME_HEADER_BYTES",
    "MAGIC",
    "MAX_LEADS",
    "PROTOCOL_VERSION",
    "Ack",
    "ClientMessage",
    "DeviceError",
    "End",
    "Ended",
    "Error",
    "ErrorCode",
    "Frame",
    "FrameError",
    "LocalProtocolError",
    "MessageError",
    "ProtocolError",
    "ServerMessage",
    "Start",
    "Started",
    "StoreError",
    "StreamRefused",
    "decode_client_message",
    "decode_server_message",
    "encode_message",
    "frame_size",
    "json_schema",
]

PROTOCOL_VERSION: Final = 1
MAGIC: Final = b"EC"
MAX_LEADS: Final = 16
MIN_FS_HZ: Final = 50.0
MAX_FS_HZ: Final = 10000.0

# magic, version, flags, stream handle, first sample index, sample count, lead count,
# reserved, CRC-32. Little-endian, no padding: 2+1+1+4+8+2+1+1+4 = 24 bytes.
_HEADER: Final = struct.Struct("<2sBBIQHBxI")
FRAME_HEADER_BYTES: Final = _HEADER.size
_CRC_OFFSET: Final = FRAME_HEADER_BYTES - 4
_U32_MAX: Final = 2**32 - 1
_U64_MAX: Final = 2**64 - 1
_U16_MAX: Final = 2**16 - 1
_SAMPLE: Final = np.dtype("<i2")


class ErrorCode(enum.StrEnum):
    """Every ``code`` an ``error`` message can carry (documented in device-protocol.md)."""

    # Text messages
    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNSUPPORTED_VERSION = "unsupported_version"
    # Binary frames
    FRAME_TOO_SHORT = "frame_too_short"
    BAD_MAGIC = "bad_magic"
    BAD_FRAME_VERSION = "bad_frame_version"
    BAD_CHECKSUM = "bad_checksum"
    BAD_FLAGS = "bad_flags"
    BAD_LEAD_COUNT = "bad_lead_count"
    BAD_SAMPLE_COUNT = "bad_sample_count"
    BAD_SIZE = "bad_size"
    FRAME_TOO_LARGE = "frame_too_large"
    LEAD_COUNT_MISMATCH = "lead_count_mismatch"
    UNKNOWN_STREAM = "unknown_stream"
    # Stream state
    DEVICE_MISMATCH = "device_mismatch"
    STREAM_OWNED = "stream_owned"
    START_MISMATCH = "start_mismatch"
    STREAM_BUSY = "stream_busy"
    TOO_MANY_STREAMS = "too_many_streams"
    GAP = "gap"
    FAR_AHEAD = "far_ahead"
    STREAM_ENDED = "stream_ended"
    END_INCOMPLETE = "end_incomplete"
    END_MISMATCH = "end_mismatch"
    SUPERSEDED = "superseded"
    INTERNAL = "internal"
    # Credentials and registration
    REVOKED = "revoked"
    NOT_PERMITTED = "not_permitted"


class DeviceError(EcgError):
    """Base class of every error of the device stream protocol and its store."""


class ProtocolError(DeviceError):
    """The peer broke the protocol, or a valid request was refused.

    Parameters
    ----------
    code : ErrorCode
        Machine-readable reason, sent to the peer.
    reason : str
        Human-readable reason, sent to the peer: never internal details.
    fatal : bool
        Whether the connection is closed after the error is sent.
    """

    def __init__(self, code: ErrorCode, reason: str, *, fatal: bool = True) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.fatal = fatal


class FrameError(ProtocolError):
    """A binary frame cannot be decoded (checksum, size, header field)."""


class MessageError(ProtocolError):
    """A text message is not JSON, not a known message, or breaks its schema."""


class StreamRefused(ProtocolError):
    """A well-formed message is refused in the state of its stream."""


class LocalProtocolError(DeviceError):
    """Our own side asked for something the protocol forbids (a bug of the caller)."""


class StoreError(DeviceError):
    """The stream store cannot do what was asked (corrupt metadata, unknown stream)."""


# ---------------------------------------------------------------------------------------
# Binary frames


@dataclass(frozen=True, eq=False)
class Frame:
    """One binary frame: consecutive samples of every lead of one stream.

    Parameters
    ----------
    stream : int
        Stream handle (u32) assigned by the server in ``started``; 0 in the store.
    first_index : int
        Index of the first sample (per lead, from 0 at the stream's start), u64.
    samples : ndarray of int16, shape (n_samples, n_leads)
        Digital samples (ADC units), one column per lead in the order of ``leads`` in
        the start message. 1 <= n_samples <= 65535, 1 <= n_leads <= 16.
    """

    stream: int
    first_index: int
    samples: npt.NDArray[np.int16]

    def __post_init__(self) -> None:
        samples = self.samples
        if samples.ndim != 2 or samples.dtype != np.int16:
            raise LocalProtocolError(
                f"samples must be a 2-D int16 array, got {samples.ndim}-D {samples.dtype}"
            )
        n_samples, n_leads = samples.shape
        if not 1 <= n_samples <= _U16_MAX:
            raise LocalProtocolError(f"sample count {n_samples} outside 1..{_U16_MAX}")
        if not 1 <= n_leads <= MAX_LEADS:
            raise LocalProtocolError(f"lead count {n_leads} outside 1..{MAX_LEADS}")
        if not 0 <= self.stream <= _U32_MAX:
            raise LocalProtocolError(f"stream handle {self.stream} outside u32")
        if not 0 <= self.first_index <= _U64_MAX - n_samples:
            raise LocalProtocolError(f"first sample index {self.first_index} outside u64")

    @property
    def n_samples(self) -> int:
        """Samples per lead."""
        return int(self.samples.shape[0])

    @property
    def n_leads(self) -> int:
        """Number of leads."""
        return int(self.samples.shape[1])

    @property
    def end_index(self) -> int:
        """Index one past the last sample of the frame."""
        return self.first_index + self.n_samples

    def serialize(self) -> bytes:
        """The frame's bytes on the wire."""
        payload = np.ascontiguousarray(self.samples, dtype=_SAMPLE).tobytes()
        head = _HEADER.pack(
            MAGIC, PROTOCOL_VERSION, 0, self.stream, self.first_index, *self.samples.shape, 0
        )[:_CRC_OFFSET]
        crc = zlib.crc32(payload, zlib.crc32(head))
        return head + crc.to_bytes(4, "little") + payload

    __bytes__ = serialize

    @classmethod
    def parse(cls, data: bytes) -> Frame:
        """Decode one frame.

        Raises
        ------
        FrameError
            With the first reason found, checked in this order: ``frame_too_short``,
            ``bad_magic``, ``bad_frame_version``, ``bad_checksum``, ``bad_flags``,
            ``bad_lead_count``, ``bad_sample_count``, ``bad_size``.
        """
        if len(data) < FRAME_HEADER_BYTES:
            raise FrameError(
                ErrorCode.FRAME_TOO_SHORT,
                f"frame of {len(data)} bytes is shorter than the {FRAME_HEADER_BYTES}-byte header",
            )
        magic, version, flags, stream, first, n_samples, n_leads, crc = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise FrameError(ErrorCode.BAD_MAGIC, f"frame starts with {magic!r}, not {MAGIC!r}")
        if version != PROTOCOL_VERSION:
            raise FrameError(
                ErrorCode.BAD_FRAME_VERSION,
                f"frame version {version} is not supported (this server speaks {PROTOCOL_VERSION})",
            )
        view = memoryview(data)
        computed = zlib.crc32(view[FRAME_HEADER_BYTES:], zlib.crc32(view[:_CRC_OFFSET]))
        if computed != crc:
            raise FrameError(
                ErrorCode.BAD_CHECKSUM,
                f"CRC-32 in the frame is {crc:#010x}, computed {computed:#010x}",
            )
        if flags != 0 or data[_CRC_OFFSET - 1] != 0:
            raise FrameError(ErrorCode.BAD_FLAGS, "flags and reserved byte must be 0 in version 1")
        if not 1 <= n_leads <= MAX_LEADS:
            raise FrameError(ErrorCode.BAD_LEAD_COUNT, f"lead count {n_leads} outside 1..16")
        if n_samples == 0:
            raise FrameError(ErrorCode.BAD_SAMPLE_COUNT, "sample count is 0")
        expected = FRAME_HEADER_BYTES + 2 * n_samples * n_leads
        if len(data) != expected:
            raise FrameError(
                ErrorCode.BAD_SIZE,
                f"frame of {len(data)} bytes, but {n_samples} samples x {n_leads} leads "
                f"make {expected}",
            )
        if first > _U64_MAX - n_samples:
            raise FrameError(ErrorCode.BAD_SIZE, "first sample index + sample count overflow u64")
        samples = np.frombuffer(data, dtype=_SAMPLE, offset=FRAME_HEADER_BYTES)
        samples = samples.reshape(n_samples, n_leads).astype(np.int16)
        return cls(stream=stream, first_index=first, samples=samples)


def frame_size(header: bytes) -> int:
    """Total size in bytes of the frame whose header starts ``header``.

    Reads only the sample and lead counts (no validation), so that a reader of
    concatenated frames knows where the next one starts.

    Raises
    ------
    FrameError
        ``frame_too_short`` when fewer than 24 bytes are given.
    """
    if len(header) < FRAME_HEADER_BYTES:
        raise FrameError(ErrorCode.FRAME_TOO_SHORT, f"{len(header)} bytes is not a header")
    fields = _HEADER.unpack_from(header)
    return int(FRAME_HEADER_BYTES + 2 * fields[5] * fields[6])


# ---------------------------------------------------------------------------------------
# JSON messages

DeviceId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:@-]{1,64}$")]
Reference = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]*$")]
LeadName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9+_-]{1,16}$")]
# JSON integers are bounded to int64 (msgspec, and most vendors' JSON libraries).
SampleIndex = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Gain = Annotated[float, msgspec.Meta(gt=0.0, le=1e9)]
Baseline = Annotated[int, msgspec.Meta(ge=-32768, le=32767)]


class Start(msgspec.Struct, tag_field="type", tag="start", forbid_unknown_fields=True):
    """Device -> server: open a stream, or resume it with the same stream id.

    Parameters
    ----------
    version : int
        Protocol version; 1.
    device : str
        Device id; must be the ``sub`` of the connection's token.
    stream : uuid.UUID
        Stream id chosen by the device (a fresh UUID per recording) and reused to resume.
    patient : str
        Patient reference (1..128 characters).
    fs_hz : float
        Sampling rate in Hz, 50..10000.
    leads : list of str
        Lead names in frame column order, 1..16, unique.
    adc_gain : list of float
        ADC units per mV, one per lead, > 0.
    baseline : list of int
        ADC value of 0 mV, one per lead, int16.
    resolution_bits : int
        ADC resolution in bits, 8..16.
    start_time : datetime
        UTC time of sample 0 (RFC 3339 with ``Z`` or ``+00:00``).
    consult, room : str, optional
        The consult or room the recording belongs to.
    """

    version: int
    device: DeviceId
    stream: uuid.UUID
    patient: Reference
    fs_hz: Annotated[float, msgspec.Meta(ge=MIN_FS_HZ, le=MAX_FS_HZ)]
    leads: Annotated[list[LeadName], msgspec.Meta(min_length=1, max_length=MAX_LEADS)]
    adc_gain: list[Gain]
    baseline: list[Baseline]
    resolution_bits: Annotated[int, msgspec.Meta(ge=8, le=16)]
    start_time: Annotated[datetime, msgspec.Meta(tz=True)]
    consult: Reference | None = None
    room: Reference | None = None

    def __post_init__(self) -> None:
        # msgspec turns these ValueErrors into a ValidationError naming the message.
        if len(set(self.leads)) != len(self.leads):
            raise ValueError(f"lead names must be unique, got {self.leads}")
        for name in ("adc_gain", "baseline"):
            if len(getattr(self, name)) != len(self.leads):
                raise ValueError(f"{name} must have one value per lead ({len(self.leads)})")
        if self.start_time.utcoffset() != timedelta(0):
            raise ValueError("start_time must be in UTC")

    @property
    def n_leads(self) -> int:
        """Number of leads."""
        return len(self.leads)


class End(msgspec.Struct, tag_field="type", tag="end", forbid_unknown_fields=True):
    """Device -> server: the stream is complete with ``total_samples`` samples per lead."""

    stream: uuid.UUID
    total_samples: SampleIndex


class Started(msgspec.Struct, tag_field="type", tag="started", forbid_unknown_fields=True):
    """Server -> device: the stream is open; send frames with ``handle`` from ``next_index``."""

    stream: uuid.UUID
    handle: Annotated[int, msgspec.Meta(ge=1, le=_U32_MAX)]
    next_index: SampleIndex


class Ack(msgspec.Struct, tag_field="type", tag="ack", forbid_unknown_fields=True):
    """Server -> device: every sample below ``next_index`` is durable; discard them."""

    stream: uuid.UUID
    next_index: SampleIndex


class Ended(msgspec.Struct, tag_field="type", tag="ended", forbid_unknown_fields=True):
    """Server -> device: the stream is complete and stored; nothing more to keep."""

    stream: uuid.UUID
    total_samples: SampleIndex


class Error(msgspec.Struct, tag_field="type", tag="error", forbid_unknown_fields=True):
    """Server -> device: a refusal. ``fatal`` errors are followed by the server closing.

    ``next_index`` is set with ``gap`` and ``end_incomplete``: resend from there.
    """

    code: str
    reason: str
    fatal: bool
    stream: uuid.UUID | None = None
    next_index: SampleIndex | None = None


ClientMessage = Start | End
ServerMessage = Started | Ack | Ended | Error

_M = TypeVar("_M")
_client_decoder: Final[msgspec.json.Decoder[ClientMessage]] = msgspec.json.Decoder(ClientMessage)
_server_decoder: Final[msgspec.json.Decoder[ServerMessage]] = msgspec.json.Decoder(ServerMessage)
_encoder: Final = msgspec.json.Encoder()


def encode_message(message: ClientMessage | ServerMessage) -> str:
    """Serialise a message to its JSON text."""
    return _encoder.encode(message).decode()


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of every message, device's and server's, tagged by ``type``."""
    schema: dict[str, Any] = msgspec.json.schema(ClientMessage | ServerMessage)
    return schema


def decode_client_message(text: str | bytes) -> ClientMessage:
    """Decode a device's text message.

    Raises
    ------
    MessageError
        ``bad_json`` (not a JSON object), ``bad_message`` (unknown type, missing or
        invalid field: the reason names it) or ``unsupported_version``.
    """
    message = _decode(_client_decoder, text)
    if isinstance(message, Start) and message.version != PROTOCOL_VERSION:
        raise MessageError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {message.version} is not supported; this server speaks "
            f"{PROTOCOL_VERSION}",
        )
    return message


def decode_server_message(text: str | bytes) -> ServerMessage:
    """Decode a server's text message (the device side).

    Raises
    ------
    MessageError
        ``bad_json`` or ``bad_message``.
    """
    return _decode(_server_decoder, text)


def _decode(decoder: msgspec.json.Decoder[_M], text: str | bytes) -> _M:
    try:
        return decoder.decode(text)
    except msgspec.ValidationError as error:
        # msgspec names the field and the bound ("Expected `float` >= 50.0 - at `$.fs_hz`").
        raise MessageError(ErrorCode.BAD_MESSAGE, str(error)) from None
    except msgspec.DecodeError as error:
        raise MessageError(ErrorCode.BAD_JSON, f"the text message is not JSON: {error}") from None
    except RecursionError:
        # msgspec gives up on JSON nested deeper than the interpreter's recursion limit.
        raise MessageError(ErrorCode.BAD_JSON, "the text message is nested too deeply") from None
