"""Fuzz every parser that reads what a client, a cart or an upload sends.

Run: ``.venv/bin/python bench/fuzz.py [--inputs 100000] [--seed 1] [--only NAME,...]``.

Each parser gets ``--inputs`` inputs made from a small corpus of valid ones by
structure-blind mutations (bytes flipped, deleted, repeated, spliced from another
seed, truncated, and inserted "interesting" values: deep nesting, NUL bytes, overlong
UTF-8, lone surrogates as JSON escapes, numbers out of every range, huge strings) and,
for device frames, structure-aware ones (header fields changed and the CRC made right
again, so the later checks are reached). An input's outcome is *documented* when the
parser returns, or raises one of the errors its docstring names; anything else — another
exception, a log record at ERROR or above, or (for the signaling core) an effect that is
neither a message nor a close with a documented code — is *undocumented*: the first of
each kind is printed, with the input, and the run exits 1.

Parsers:

- ``ws``: the ``/ws`` protocol core (``Core.receive``) on a fresh connection and on a
  joined one; documented: effects only (``error`` messages with an ``ErrorCode``, closes
  with a ``CloseCode``), never an exception.
- ``device-frame``: ``ecg.device.Frame.parse``; documented: ``FrameError``.
- ``device-message``: ``ecg.device.decode_client_message``; documented: ``MessageError``.
- ``sdp``: ``signaling.sdp.split_candidates`` (offers and answers, candidate lines);
  documented: returns.
- ``rest``: every request body type of the REST API decoded as the edge does
  (``msgspec.json.decode(..., type=Struct)``); documented: ``msgspec.ValidationError``,
  ``msgspec.DecodeError``, ``consults.errors.ConsultsError``.
- ``wfdb``: an uploaded WFDB record (a header, its signal file) read by
  ``ecg.record.read_record``; documented: ``RecordError``. Slower (files), so it gets a
  tenth of ``--inputs`` unless ``--wfdb-inputs`` says otherwise.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import random
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

INTERESTING: list[bytes] = [
    b"\x00",
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # a surrogate in UTF-8
    b"\xff\xfe",
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b"1e999",
    b"-1e999",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"NaN",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'""',
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"A" * 70_000,
    b"%00",
    b"'; DROP TABLE people; --",
    b"../../etc/passwd",
]


class Errors(logging.Handler):
    """Counts log records at ERROR and above, keeping the first."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{record.name}: {record.getMessage()}"


def mutate(rng: random.Random, seed: bytes, corpus: list[bytes]) -> bytes:
    """One structure-blind mutation (or a few) of ``seed``."""
    data = bytearray(seed)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 5))):
        op = rng.randrange(8)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            end = min(len(data), at + rng.randrange(1, 16))
            del data[at:end]
        elif op == 2:
            data[at:at] = rng.choice(INTERESTING)
        elif op == 3 and data:
            end = min(len(data), at + rng.randrange(1, 32))
            data[at:at] = data[at:end] * rng.randrange(2, 8)
        elif op == 4:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            data = data[:at] + bytearray(other[cut:])
        elif op == 5:
            del data[at:]
        elif op == 6:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            data[at:at] = rng.choice((b'"', b"{", b"}", b"[", b"]", b",", b":", b"\\"))
    return bytes(data)


def text_of(data: bytes, rng: random.Random) -> str | bytes:
    """Half the inputs as binary frames, half as text frames: a text frame is valid UTF-8
    on the wire (the WebSocket layer closes with 1007 otherwise), so invalid bytes become
    U+FFFD; lone surrogates still arrive as JSON escapes (``"\\ud800"``)."""
    if rng.random() < 0.5:
        return data
    return data.decode("utf-8", errors="replace")


# ---------------------------------------------------------------- the parsers


def ws_target() -> tuple[list[bytes], Callable[[bytes, random.Random], str | None]]:
    from sessions.tokens import mint_token, verify_token
    from signaling import messages as m
    from signaling.core import Close, Core, CoreConfig, Send

    secret = "f" * 40
    token = mint_token(secret, identity="fuzz", name="Fuzz", role="expert", room="r1")
    core = Core(
        config=CoreConfig(rate_per_s=1e9, burst=1e9),
        verify=functools.partial(verify_token, secret),
        ice_servers=lambda identity: [],
    )
    codes = {str(c) for c in m.ErrorCode}
    closes = {int(c) for c in m.CloseCode} | {1000, 1001, 1008, 1009, 1011}
    conn = 0
    joined = 0
    now = [1000.0]

    def fresh() -> int:
        nonlocal conn
        conn += 1
        core.open(conn, now[0])
        return conn

    def join() -> int:
        c = fresh()
        core.receive(c, m.encode(m.Join(token=token)).decode(), now[0])
        return c

    joined = join()
    corpus = [
        m.encode(m.Join(token=token)),
        m.encode(m.Watch(token=token)),
        m.encode(m.Chat(text="你好 hello")),
        m.encode(m.EcgList(ref="l1")),
        m.encode(m.EcgSubscribe(stream="0b7d6c3e-1f2a-4b5c-9d8e-7f6a5b4c3d2e", ref="s")),
        m.encode(m.Leave()),
        b'{"type":"ping","ref":"p"}',
        b'{"type":"mute","kind":"audio","target":"x"}',
        b'{"type":"offer","pc":"publish","sdp":"v=0\\r\\n","ref":"o"}',
        b'{"type":"candidate","pc":"subscribe","sdp_mid":"0","sdp_mline_index":0,'
        b'"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host"}',
    ]

    def run(data: bytes, rng: random.Random) -> str | None:
        nonlocal joined
        now[0] += 0.001
        target = joined if rng.random() < 0.5 else fresh()
        try:
            effects = core.receive(target, text_of(data, rng), now[0])
        except Exception as exc:
            return f"raised {type(exc).__name__}: {exc}"
        for effect in effects:
            if isinstance(effect, Send) and isinstance(effect.message, m.Error):
                if str(effect.message.code) not in codes:
                    return f"undocumented error code {effect.message.code!r}"
            elif isinstance(effect, Close) and effect.code not in closes:
                return f"undocumented close code {effect.code}"
            if isinstance(effect, Close) and effect.conn == joined:
                joined = join()
        if target != joined:
            core.closed(target, now[0])
        return None

    return corpus, run


def device_frame_target() -> tuple[list[bytes], Callable[[bytes, random.Random], str | None]]:
    import numpy as np

    from ecg.device import FRAME_HEADER_BYTES, Frame, FrameError

    samples = (np.arange(12 * 50, dtype=np.int16).reshape(50, 12) - 300).astype(np.int16)
    valid = Frame(stream=7, first_index=0, samples=samples).serialize()

    def fix_crc(data: bytearray) -> bytes:
        if len(data) < FRAME_HEADER_BYTES:
            return bytes(data)
        crc_at = FRAME_HEADER_BYTES - 4
        crc = zlib.crc32(bytes(data[FRAME_HEADER_BYTES:]), zlib.crc32(bytes(data[:crc_at])))
        data[crc_at:FRAME_HEADER_BYTES] = crc.to_bytes(4, "little")
        return bytes(data)

    corpus = [valid, valid[:FRAME_HEADER_BYTES], valid + b"\x00\x00"]

    def run(data: bytes, rng: random.Random) -> str | None:
        if rng.random() < 0.5:  # structure-aware: reach the checks behind the CRC
            data = fix_crc(bytearray(data))
        try:
            Frame.parse(data)
        except FrameError:
            return None
        except Exception as exc:
            return f"raised {type(exc).__name__}: {exc}"
        return None

    return corpus, run


def device_message_target() -> tuple[list[bytes], Callable[[bytes, random.Random], str | None]]:
    from ecg.device import MessageError, decode_client_message

    corpus = [
        json.dumps(
            {
                "type": "start",
                "stream": "0b7d6c3e-1f2a-4b5c-9d8e-7f6a5b4c3d2e",
                "patient": "p-1",
                "fs_hz": 500,
                "leads": ["I", "II", "III"],
                "gain_uv_per_lsb": 1.0,
                "start_time": "2026-12-02T09:00:00Z",
            }
        ).encode(),
        b'{"type":"end","stream":"0b7d6c3e-1f2a-4b5c-9d8e-7f6a5b4c3d2e","samples":1000}',
    ]

    def run(data: bytes, rng: random.Random) -> str | None:
        try:
            decode_client_message(text_of(data, rng))
        except MessageError:
            return None
        except Exception as exc:
            return f"raised {type(exc).__name__}: {exc}"
        return None

    return corpus, run


def sdp_target() -> tuple[list[bytes], Callable[[bytes, random.Random], str | None]]:
    from signaling.sdp import split_candidates

    offer = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
        "a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"
        "a=candidate:2 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active\r\n"
    )
    corpus = [offer.encode(), offer.replace("\r\n", "\n").encode()]

    def run(data: bytes, rng: random.Random) -> str | None:
        try:
            split_candidates(data.decode("utf-8", errors="surrogateescape"))
        except Exception as exc:
            return f"raised {type(exc).__name__}: {exc}"
        return None

    return corpus, run


def rest_target() -> tuple[list[bytes], Callable[[bytes, random.Random], str | None]]:
    import msgspec

    from api import audit, consults, readings, schemas
    from consults.errors import ConsultsError

    found = {**vars(schemas), **vars(consults), **vars(readings), **vars(audit)}
    types = [
        obj
        for obj in found.values()
        if isinstance(obj, type)
        and issubclass(obj, msgspec.Struct)
        and obj.__struct_config__.forbid_unknown_fields
    ]
    corpus = [
        b'{"username":"li.wei","password":"a long passphrase","totp":"123456"}',
        b'{"code":"CH01","name":"\xe5\x8e\xbf\xe5\x8c\xbb\xe9\x99\xa2","level":"county","parent":null}',
        b'{"username":"dr-wang","display_name":"Wang","password":"a long passphrase",'
        b'"roles":["doctor"],"institution":"TS01","specialty":null,"title":null}',
        b'{"id":"cart-1","name":"ECG cart","institution":"TS01"}',
        b'{"provider":"CH01","client":"TS01","kind":"ecg","override":"added"}',
        b'{"name":"HIS"}',
    ]

    def run(data: bytes, rng: random.Random) -> str | None:
        kind = rng.choice(types)
        try:
            msgspec.json.decode(data, type=kind)
        except (msgspec.ValidationError, msgspec.DecodeError, ConsultsError):
            return None
        except Exception as exc:
            return f"{kind.__name__} raised {type(exc).__name__}: {exc}"
        return None

    return corpus, run


def wfdb_target(folder: Path) -> tuple[list[bytes], Callable[[bytes, random.Random], str | None]]:
    from ecg.errors import RecordError
    from ecg.record import read_record

    signal = bytes(range(256)) * 8  # 2,048 bytes: format 16, two leads, 512 samples
    corpus = [
        b"up 2 500 512\nup.dat 16 200/mV 16 0 0 0 0 I\nup.dat 16 200/mV 16 0 0 0 0 II\n",
        b"up 1 360 1024\nup.dat 16 200 11 1024 995 -22131 0 MLII\n",
        b"# comment\nup 2 500/1 512 09:00:00 02/12/2026\n"
        b"up.dat 16 200.0(0)/mV 16 0 0 0 0 V1\nup.dat 16 200.0(0)/mV 16 0 0 0 0 V2\n",
    ]
    (folder / "up.dat").write_bytes(signal)

    def run(data: bytes, rng: random.Random) -> str | None:
        (folder / "up.hea").write_bytes(data)
        if rng.random() < 0.3:
            (folder / "up.dat").write_bytes(mutate(rng, signal, [signal]))
        try:
            read_record(folder / "up")
        except RecordError:
            return None
        except Exception as exc:
            return f"raised {type(exc).__name__}: {exc}"
        return None

    return corpus, run


def fuzz(
    name: str,
    target: tuple[list[bytes], Callable[[bytes, random.Random], str | None]],
    inputs: int,
    rng: random.Random,
) -> tuple[int, Counter[str], float]:
    corpus, run = target
    errors = Errors()
    root = logging.getLogger()
    root.addHandler(errors)
    undocumented: Counter[str] = Counter()
    started = time.perf_counter()
    try:
        for i in range(inputs):
            seed = corpus[i % len(corpus)]
            data = seed if i < len(corpus) else mutate(rng, seed, corpus)
            before = errors.count
            outcome = run(data, rng)
            if outcome is None and errors.count > before:
                outcome = f"logged at ERROR: {errors.first}"
            if outcome is not None:
                kind = outcome.split(":")[0]
                if not undocumented[kind]:
                    print(f"  {name}: {outcome}\n    input: {data[:300]!r}", flush=True)
                undocumented[kind] += 1
    finally:
        root.removeHandler(errors)
    return inputs, undocumented, time.perf_counter() - started


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per parser")
    parser.add_argument("--wfdb-inputs", type=int, default=0, help="default: inputs / 10")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default="", help="comma list of parser names")
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # The parsers log client mistakes at INFO/WARNING; only ERROR counts here.
    logging.getLogger().setLevel(logging.ERROR)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="tc-fuzz-") as tmp:
        targets: dict[str, Callable[[], Any]] = {
            "ws": ws_target,
            "device-frame": device_frame_target,
            "device-message": device_message_target,
            "sdp": sdp_target,
            "rest": rest_target,
            "wfdb": lambda: wfdb_target(Path(tmp)),
        }
        chosen = [n for n in targets if not args.only or n in args.only.split(",")]
        total_bad = 0
        rows = []
        for name in chosen:
            count = args.inputs
            if name == "wfdb":
                count = args.wfdb_inputs or max(1, args.inputs // 10)
            n, bad, took = fuzz(name, targets[name](), count, rng)
            total_bad += sum(bad.values())
            rows.append((name, n, sum(bad.values()), took))
    print(f"\n{'parser':16} {'inputs':>9} {'undocumented':>13} {'seconds':>8}")
    for name, n, bad_count, took in rows:
        print(f"{name:16} {n:9d} {bad_count:13d} {took:8.1f}")
    print(f"undocumented outcomes: {total_bad}")
    return 1 if total_bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
