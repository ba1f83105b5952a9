"""``teleconsult ecg report RECORD --out FILE.pdf|.png``: print an ECG on paper.

RECORD is a WFDB record path (without extension) or a DICOM ECG waveform file
(``.dcm``). The signal is filtered zero-phase in the chosen band (``--filter``,
diagnostic 0.05–150 Hz by default, ``none`` to print it as recorded) with the mains
notch, and laid out by :mod:`ecg.paper`: ``--layout`` 3x4 (with a lead II rhythm
strip), 6x2 or 12x1, ``--gain`` 5/10/20 mm/mV, ``--speed`` 25/50 mm/s, ``--lang`` zh or
en. ``--annotations`` takes the record's annotation JSON (``teleconsult ecg annotate``)
for the header's measurements, statements and critical findings; without it the
header shows the patient and time only. Age and sex come from the WFDB header comments
(LUDB and PTB-XL spellings), or from the DICOM patient module.

A ``.pdf`` holds every page (10 s each at 25 mm/s, at most ``--max-pages``); a ``.png``
is one page (``--page``, from 1) at ``--dpi``. The file is written to a temporary name
beside it and renamed, so a reader never sees half a report.

Exit status: 0 written, 1 the record or the annotations cannot be read or the file
cannot be written (the reason on stderr), 2 usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecg.paper_content import Measurements, ReportInfo, Statement

if TYPE_CHECKING:  # the command line imports this module; numpy only when it runs
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["register", "run"]

PROG = "teleconsult ecg report"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``report`` to the ``ecg`` command group."""
    parser = sub.add_parser(
        "report",
        help="print an ECG record on paper (PDF or PNG)",
        description="Lay a record out on A4 landscape ECG paper at exact scale.",
    )
    parser.add_argument("record", metavar="RECORD", help="WFDB record path or DICOM .dcm file")
    parser.add_argument("--out", required=True, metavar="FILE", help="FILE.pdf or FILE.png")
    parser.add_argument("--layout", choices=["3x4", "6x2", "12x1"], default="3x4")
    parser.add_argument(
        "--gain", type=float, choices=[5.0, 10.0, 20.0], default=10.0, help="mm/mV (default 10)"
    )
    parser.add_argument(
        "--speed", type=float, choices=[25.0, 50.0], default=25.0, help="mm/s (default 25)"
    )
    parser.add_argument("--lang", choices=["zh", "en"], default="zh")
    parser.add_argument(
        "--annotations",
        metavar="JSON",
        help="annotation JSON of the record (measurements, statements)",
    )
    parser.add_argument(
        "--filter",
        choices=["diagnostic", "monitoring", "none"],
        default="diagnostic",
        help="band to print (default diagnostic)",
    )
    parser.add_argument("--mains", type=int, choices=[50, 60], default=50, help="notch, Hz")
    parser.add_argument("--page", type=int, default=1, help="page of a PNG (default 1)")
    parser.add_argument("--dpi", type=float, default=200.0, help="PNG resolution (default 200)")
    parser.add_argument("--max-pages", type=int, default=20, help="PDF pages at most")
    parser.set_defaults(handler=run)


class _Failed(Exception):
    """A reason to stop with exit status 1, already worded for the user."""


def run(args: argparse.Namespace) -> int:
    """Handler of ``teleconsult ecg report``; returns the exit status."""
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".png"):
        print(f"{PROG}: error: --out must end in .pdf or .png, got {out.name!r}", file=sys.stderr)
        return 2
    if args.max_pages < 1 or args.page < 1 or not 10 <= args.dpi <= 600:
        print(f"{PROG}: error: --page and --max-pages from 1, --dpi 10-600", file=sys.stderr)
        return 2
    try:
        data = _render(args, suffix)
        _write_atomically(out, data)
    except _Failed as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    print(f"{args.record} -> {out}")
    return 0


@dataclass(frozen=True, eq=False)
class _Loaded:
    signal_mv: NDArray[np.float64]
    fs_hz: float
    lead_names: list[str]
    info: ReportInfo


def _render(args: argparse.Namespace, suffix: str) -> bytes:
    from ecg.errors import EcgError
    from ecg.paper import PaperOptions, layout_pages, render_pdf, render_png

    loaded = _read(args.record)
    signal, info = loaded.signal_mv, loaded.info
    if args.filter != "none" and signal.shape[0]:
        from ecg.filters import design_filter, filter_zero_phase

        try:
            design = design_filter(loaded.fs_hz, args.filter, float(args.mains))
            signal = filter_zero_phase(signal, loaded.fs_hz, args.filter, float(args.mains))
        except EcgError as error:
            raise _Failed(f"{args.record}: cannot filter: {error}") from None
        info = replace(
            info,
            filter_low_hz=design.low_hz,
            filter_high_hz=design.high_hz,
            mains_hz=design.mains_hz,
        )
    if args.annotations:
        measurements, statements, critical = _annotations(args.annotations)
        info = replace(info, measurements=measurements, statements=statements, critical=critical)
    options = PaperOptions(
        layout=args.layout,
        gain_mm_per_mv=args.gain,
        speed_mm_per_s=args.speed,
        lang=args.lang,
        max_pages=args.max_pages if suffix == ".pdf" else max(args.max_pages, args.page),
    )
    try:
        pages = layout_pages(signal, loaded.fs_hz, loaded.lead_names, info, options)
        if suffix == ".pdf":
            return render_pdf(pages)
        return render_png(pages[min(args.page, len(pages)) - 1], dpi=args.dpi)
    except EcgError as error:
        raise _Failed(f"{args.record}: {error}") from None


def _read(path: str) -> _Loaded:
    """The signal in mV and what the file says of patient and time."""
    from ecg.dicom import DicomError, read_dicom
    from ecg.errors import EcgError
    from ecg.paper_content import patient_from_comments
    from ecg.record import read_record

    if path.lower().endswith(".dcm"):
        try:
            ecg = read_dicom(Path(path).read_bytes())
        except OSError as error:
            raise _Failed(f"{path}: cannot read: {error.strerror or error}") from None
        except DicomError as error:
            raise _Failed(f"{path}: {error.code.value}: {error.reason}") from None
        return _Loaded(ecg.signal_mv, ecg.fs_hz, list(ecg.lead_names), ecg.info)
    try:
        record = read_record(path)
    except EcgError as error:
        raise _Failed(str(error)) from None
    info = ReportInfo(
        patient=patient_from_comments(record.comments),
        acquired_at=record.base_datetime,
        record_name=record.name,
    )
    return _Loaded(record.signal_mv, record.fs_hz, list(record.lead_names), info)


def _annotations(
    path: str,
) -> tuple[Measurements, tuple[Statement, ...], tuple[Statement, ...]]:
    from ecg.paper_content import content_from_annotations

    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _Failed(f"{path}: cannot read annotation JSON: {error}") from None
    if not isinstance(document, dict):
        raise _Failed(f"{path}: not an annotation document (a JSON object)")
    return content_from_annotations(document)


def _write_atomically(out: Path, data: bytes) -> None:
    folder = out.parent if str(out.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, staged = tempfile.mkstemp(prefix=f".{out.name}.", dir=folder)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(staged, out)
        except BaseException:
            Path(staged).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise _Failed(f"{out}: cannot write: {error.strerror or error}") from None
