"""AF detection on the MIT-BIH Arrhythmia Database, scored by duration.

Usage::

    python bench/ecg_af.py [--ecg-dir DIR] [--records 201,202] [--json FILE] [--rr-only]

Protocol
--------
- Every record (48), its whole length, both leads, the beats of our own detector
  (``ecg.detect.detect_qrs``): what the product would report, not an oracle.
- Reference: the rhythm labels of ``.atr`` (``+`` annotations, aux note ``(AFIB``),
  each running to the next rhythm label or the end of the record. Atrial flutter
  (``(AFL``) is *not* AF.
- Detection: the AF episodes of :func:`ecg.rhythm.af_episodes` (``--rr-only``: the
  RR-only ``irregular`` flags of :func:`ecg.flags.rhythm_flags`, the former suspicion).
- Gross duration statistics in seconds over all records: Se = AF time detected as AF
  over AF time, +P = AF time detected as AF over time detected as AF. Per record, the
  AF seconds missed and the non-AF seconds called AF (with the reference rhythm they
  fell in).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import wfdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ecg.detect import detect_qrs  # noqa: E402
from ecg.flags import FlagKind, rhythm_flags  # noqa: E402
from ecg.rhythm import af_episodes  # noqa: E402

BoolArray = npt.NDArray[np.bool_]


def reference_rhythms(path: str, n_samples: int) -> tuple[BoolArray, list[tuple[int, int, str]]]:
    """AF mask of the record, and every labelled rhythm stretch (onset, offset, label)."""
    ann = wfdb.rdann(path, "atr")
    stretches: list[tuple[int, int, str]] = []
    current, start = None, 0
    for sample, symbol, note in zip(ann.sample, ann.symbol, ann.aux_note, strict=True):
        label = (note or "").strip("\x00").strip()
        if symbol == "+" and label:
            if current is not None:
                stretches.append((start, int(sample), current))
            current, start = label, int(sample)
    if current is not None:
        stretches.append((start, n_samples, current))
    mask = np.zeros(n_samples, dtype=bool)
    for onset, offset, label in stretches:
        if label == "(AFIB":
            mask[onset:offset] = True
    return mask, stretches


def detected_mask(signal_mv: npt.NDArray[np.float64], fs_hz: float, *, rr_only: bool) -> BoolArray:
    """Samples our engine calls AF."""
    beats = detect_qrs(signal_mv, fs_hz)
    mask = np.zeros(signal_mv.shape[0], dtype=bool)
    if rr_only:
        for flag in rhythm_flags(beats, fs_hz, signal_mv.shape[0]):
            if flag.kind is FlagKind.IRREGULAR:
                mask[flag.onset : flag.offset] = True
        return mask
    for episode in af_episodes(signal_mv, beats, fs_hz):
        mask[episode.onset : episode.offset] = True
    return mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = os.environ.get("TELECONSULT_ECG_DIR", str(REPO.parent / "shared" / "ecg"))
    parser.add_argument("--ecg-dir", default=default_dir)
    parser.add_argument("--records", default="", help="comma-separated subset")
    parser.add_argument("--json", default="", help="also write the figures here")
    parser.add_argument("--rr-only", action="store_true", help="score the RR-only flag")
    args = parser.parse_args(argv)
    folder = Path(args.ecg_dir) / "mitdb"
    names = sorted(p.stem for p in folder.glob("*.atr"))
    if args.records:
        names = [n for n in names if n in set(args.records.split(","))]
    if not names:
        print(f"no MIT-BIH records under {folder}", file=sys.stderr)
        return 2
    tp = fn = fp = 0.0  # seconds
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name in names:
        record = wfdb.rdrecord(str(folder / name))
        fs_hz = float(record.fs)
        signal = np.asarray(record.p_signal, dtype=np.float64)
        reference, stretches = reference_rhythms(str(folder / name), signal.shape[0])
        detected = detected_mask(signal, fs_hz, rr_only=args.rr_only)
        hit = int((reference & detected).sum())
        miss = int((reference & ~detected).sum())
        false = int((~reference & detected).sum())
        tp, fn, fp = tp + hit / fs_hz, fn + miss / fs_hz, fp + false / fs_hz
        where: Counter[str] = Counter()
        for onset, offset, label in stretches:
            if label != "(AFIB":
                seconds = float(detected[onset:offset].sum()) / fs_hz
                if seconds >= 0.5:
                    where[label.lstrip("(")] += round(seconds)
        rows.append(
            {
                "record": name,
                "af_s": round(float(reference.sum()) / fs_hz, 1),
                "detected_s": round(float(detected.sum()) / fs_hz, 1),
                "missed_s": round(miss / fs_hz, 1),
                "false_s": round(false / fs_hz, 1),
                "false_in": dict(where),
            }
        )
    se = 100.0 * tp / max(tp + fn, 1e-9)
    ppv = 100.0 * tp / max(tp + fp, 1e-9)
    method = "RR-only irregular flag" if args.rr_only else "ecg.rhythm.af_episodes"
    print(f"AF on MIT-BIH ({len(names)} records, {method}), gross duration:")
    print(f"  AF {tp + fn:.0f} s, detected {tp + fp:.0f} s")
    print(f"  Se {se:.2f} %   +P {ppv:.2f} %   missed {fn:.0f} s   false {fp:.0f} s")
    print(f"  ({time.perf_counter() - started:.1f} s)")
    print("record  AF_s  detected_s  missed_s  false_s  false in")
    for row in rows:
        if row["missed_s"] >= 1 or row["false_s"] >= 1:
            print(
                f"{row['record']:>6} {row['af_s']:>6.0f} {row['detected_s']:>10.0f}"
                f" {row['missed_s']:>9.0f} {row['false_s']:>8.0f}  {row['false_in']}"
            )
    if args.json:
        summary = {"method": method, "se_pct": se, "ppv_pct": ppv, "records": rows}
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
