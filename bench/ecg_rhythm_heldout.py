"""Held-out check of the rhythm statement's pacing and flutter detectors on MIT-BIH.

Usage::

    python bench/ecg_rhythm_heldout.py [--ecg-dir DIR] [--records 102,104,...]
                                       [--step-s 10] [--json FILE]

Protocol
--------
- MIT-BIH Arrhythmia (``mitdb``, 48 records, 2 leads at 360 Hz): none of its records
  was looked at while the rhythm thresholds were chosen (they were chosen on LUDB's
  odd records), so these figures are out of sample.
- Windows of 10 s every ``--step-s`` seconds over each whole record. A window's
  reference rhythm is the rhythm label of ``.atr``'s aux notes (``(N``, ``(P``,
  ``(AFL``...) in force over the whole window; windows in which the label changes
  are left out.
- Each window goes the product path of a record: our beats (``ecg.detect.detect_qrs``
  on the whole record, those inside the window), our delineation and measurements
  (``ecg.measure.measure``), then :func:`ecg.statements.interpret`, whose first
  statement is the rhythm.
- Scored: paced windows (``(P``) said ``PACE``, and ``PACE`` said on the other windows;
  flutter windows (``(AFL``) said ``AFLT``, and ``AFLT`` said on the other windows;
  the detectors alone too (:func:`ecg.rhythm.pacing_spikes` fraction at or above
  ``PACED_FRACTION``; :func:`ecg.rhythm.flutter_waves` in both leads), whatever the
  statement's other evidence.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import wfdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ecg.detect import detect_qrs  # noqa: E402
from ecg.measure import measure  # noqa: E402
from ecg.rhythm import PACED_FRACTION, flutter_waves, pacing_spikes, rhythm_marks  # noqa: E402
from ecg.statements import interpret  # noqa: E402

WINDOW_S = 10.0


def _labels(path: Path, n_samples: int) -> list[tuple[int, int, str]]:
    """The record's rhythm intervals ``[onset, offset)`` from the aux notes."""
    ann = wfdb.rdann(str(path), "atr")
    marks = [
        (int(s), note.strip("\x00").strip())
        for s, note in zip(ann.sample, ann.aux_note, strict=True)
        if note.startswith("(")
    ]
    return [
        (at, marks[k + 1][0] if k + 1 < len(marks) else n_samples, label)
        for k, (at, label) in enumerate(marks)
    ]


def _window_label(intervals: list[tuple[int, int, str]], lo: int, hi: int) -> str | None:
    for onset, offset, label in intervals:
        if onset <= lo and hi <= offset:
            return label
    return None


def record_windows(path: Path, step_s: float) -> list[dict[str, object]]:
    raw = wfdb.rdrecord(str(path))
    x = np.asarray(raw.p_signal, dtype=np.float64)
    fs = float(raw.fs)
    names = [str(n) for n in raw.sig_name]
    beats = np.asarray(detect_qrs(x, fs), dtype=np.int64)
    intervals = _labels(path, x.shape[0])
    n_window = round(WINDOW_S * fs)
    rows = []
    for lo in range(0, x.shape[0] - n_window + 1, round(step_s * fs)):
        hi = lo + n_window
        label = _window_label(intervals, lo, hi)
        if label is None:
            continue
        window = x[lo:hi]
        inside = beats[(beats >= lo) & (beats < hi)] - lo
        code = "none"
        paced = flutter = False
        if inside.size >= 3:
            measurements = measure(window, fs, names, inside)
            result = interpret(measurements, inside, [], fs, signal_mv=window)
            code = result.codes[0] if result.codes else "none"
            bf = measurements.delineation.beat_fiducials
            marks = inside
            if bf.p_present.shape[0] == inside.shape[0]:
                marks = rhythm_marks(inside, bf.column("qrs_on"), fs)
            paced = pacing_spikes(window, marks, fs).fraction >= PACED_FRACTION
            flutter = flutter_waves(window, marks, fs).n_leads >= 2
        rows.append(
            {
                "record": path.name,
                "at_s": lo / fs,
                "label": label,
                "code": code,
                "paced": paced,
                "flutter": flutter,
            }
        )
    return rows


def _score(rows: list[dict[str, object]], label: str, code: str, key: str) -> dict[str, object]:
    """Windows of ``label`` said ``code`` (and by the detector ``key``), and the others."""
    positive = [r for r in rows if r["label"] == label]
    negative = [r for r in rows if r["label"] != label]
    said_pos = sum(r["code"] == code for r in positive)
    said_neg = [r for r in negative if r["code"] == code]
    det_pos = sum(bool(r[key]) for r in positive)
    det_neg = [r for r in negative if r[key]]
    by_record: dict[str, Counter[str]] = defaultdict(Counter)
    for r in positive:
        by_record[str(r["record"])][str(r["code"])] += 1
    return {
        "windows": len(positive),
        "said": said_pos,
        "detected": det_pos,
        "others": len(negative),
        "said_on_others": len(said_neg),
        "detected_on_others": len(det_neg),
        "by_record": {k: dict(v) for k, v in sorted(by_record.items())},
        "false": sorted({f"{r['record']}@{r['at_s']:.0f}s {r['label']}" for r in said_neg}),
        "false_detector": sorted({f"{r['record']}@{r['at_s']:.0f}s {r['label']}" for r in det_neg}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = os.environ.get("TELECONSULT_ECG_DIR", str(REPO.parent / "shared" / "ecg"))
    parser.add_argument("--ecg-dir", default=default_dir)
    parser.add_argument("--records", default="")
    parser.add_argument("--step-s", type=float, default=10.0)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    folder = Path(args.ecg_dir) / "mitdb"
    chosen = set(args.records.split(",")) if args.records else None
    names = sorted(p.stem for p in folder.glob("*.atr") if chosen is None or p.stem in chosen)
    if not names:
        print(f"no MIT-BIH records under {folder}", file=sys.stderr)
        return 2
    rows: list[dict[str, object]] = []
    for name in names:
        rows.extend(record_windows(folder / name, args.step_s))
    figures = {}
    for title, label, code, key in (
        ("paced", "(P", "PACE", "paced"),
        ("flutter", "(AFL", "AFLT", "flutter"),
    ):
        s = _score(rows, label, code, key)
        figures[title] = s
        print(
            f"{title} windows ({label}): said {code} {s['said']}/{s['windows']},"
            f" detector {s['detected']}/{s['windows']};"
            f" other windows: {code} said on {s['said_on_others']}/{s['others']},"
            f" detector on {s['detected_on_others']}/{s['others']}"
        )
        for record, counts in s["by_record"].items():  # type: ignore[attr-defined]
            print(f"    {record}: {counts}")
        for item in s["false"][:30]:  # type: ignore[index]
            print(f"    false {code}: {item}")
        for item in s["false_detector"][:30]:  # type: ignore[index]
            print(f"    false detector: {item}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
