"""``teleconsult ecg streams`` and ``teleconsult ecg export``: the stored device streams.

``streams`` lists every stream under ``<data-dir>/streams`` (one line each, or JSON
with ``--json``): id, device, patient, start (UTC), rate, leads, samples, duration and
state (``live``: not ended; ``ended``: record written; ``finalised``: annotated too).

``export STREAM_ID --out DIR`` writes the record as WFDB (``.hea`` + ``.dat``, format
16: the samples bit-exact as the device sent them, with its gain and baseline) and its
batch annotations (``.qrs`` + ``.json``; computed now if the server had not written
them yet). A stream that does not exist or has not ended is refused, exit status 1.

Both read the folder a running server writes to; they never modify a stream.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec

from ecg.annotate import annotate
from ecg.errors import EcgError
from ecg.output import write_annotations
from ecg.record import read_record
from ecg.streamstore import StreamStore
from ecglive.service import stream_info
from teleconsult.app import STREAMS_DIR
from teleconsult.config import ConfigError, add_config_arguments, load_config
from teleconsult.trail import TrailError, record_export

__all__ = ["export", "register", "run_export", "run_streams"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``streams`` and ``export`` to the ``ecg`` command group."""
    streams = sub.add_parser("streams", help="list the ECG streams stored by the server")
    add_config_arguments(streams, "the server's data folder")
    streams.add_argument("--json", action="store_true", help="one JSON document")
    streams.set_defaults(handler=run_streams)
    out = sub.add_parser("export", help="write a stored stream as WFDB plus annotations")
    out.add_argument("stream", metavar="STREAM_ID", help="the stream id (a UUID)")
    out.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    add_config_arguments(out, "the server's data folder")
    out.set_defaults(handler=run_export)


def _store(args: argparse.Namespace) -> StreamStore:
    config = load_config(args.config, data_dir=args.data_dir)
    root = config.data_dir / STREAMS_DIR
    if not root.is_dir():
        raise EcgError(f"no streams stored in {config.data_dir} ({root} does not exist)")
    return StreamStore(root)


def run_streams(args: argparse.Namespace) -> int:
    """List the stored streams."""
    try:
        store = _store(args)
        infos = [stream_info(store, info) for info in store.streams()]
    except (ConfigError, EcgError, OSError) as error:
        print(f"teleconsult ecg streams: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(msgspec.json.encode(infos).decode())
        return 0
    print("stream                                device        patient       start (UTC)"
          "               fs_hz  leads   samples  duration_s  state")  # fmt: skip
    for i in infos:
        print(
            f"{i.stream:36}  {i.device:12.12}  {i.patient:12.12}  {i.start_time:24}  "
            f"{i.fs_hz:6g}  {len(i.leads):5d}  {i.samples:8d}  {i.duration_s:10.1f}  {i.state}"
        )
    return 0


def export(store: StreamStore, stream: uuid.UUID, out_dir: Path) -> list[Path]:
    """Write the stream's record and annotations into ``out_dir``; return the files.

    Raises
    ------
    EcgError
        When the stream does not exist, has not ended, or cannot be read.
    """
    record = store.export(stream, out_dir)
    folder = store.path(stream)
    annotations = [folder / f"{stream}{ext}" for ext in (".qrs", ".json")]
    if all(path.exists() for path in annotations):
        for path in annotations:
            shutil.copyfile(path, out_dir / path.name)
    else:  # the server stopped before its batch annotation: do it now
        write_annotations(annotate(read_record(record)), out_dir)
    return [out_dir / f"{stream}{ext}" for ext in (".hea", ".dat", ".qrs", ".json")]


def run_export(args: argparse.Namespace) -> int:
    """Export one stream."""
    try:
        stream = uuid.UUID(args.stream)
    except ValueError:
        print(f"teleconsult ecg export: {args.stream!r} is not a stream id", file=sys.stderr)
        return 1
    try:
        config = load_config(args.config, data_dir=args.data_dir)
        store = _store(args)
        files = export(store, stream, args.out)
    except (ConfigError, EcgError, OSError) as error:
        print(f"teleconsult ecg export: {error}", file=sys.stderr)
        return 1
    # No record leaves without a trace: the files go again if the trail cannot say so.
    start = store.info(stream).start
    try:
        record_export(
            config, "ecg.exported", f"stream:{stream}", patient=start.patient,
            consult=start.consult, details={"format": "wfdb"},
        )  # fmt: skip
    except TrailError as error:
        for path in files:
            path.unlink(missing_ok=True)
        print(f"teleconsult ecg export: refused, {error}", file=sys.stderr)
        return 1
    for path in files:
        print(path)
    return 0
