"""Coded statements against LUDB's diagnoses, and a sanity table on the PTB-XL sample.

Usage::

    python bench/ecg_statements.py [--ecg-dir DIR] [--json FILE] [--records odd|even|1-50,60]
                                   [--ludb-adc-per-mv 1000]

Protocol
--------
- LUDB (``ludb-dev``, records 1–100): the product path on each whole 10 s record —
  our beats (``ecg.detect.detect_qrs_and_vf``), our measurements (``ecg.measure``),
  :func:`ecg.statements.interpret` — scored against the diagnoses in the header
  comments:

  * rhythm, by class: sinus (``SR``, ``SARRH``), bradycardia (``SBRAD``), tachycardia
    (``STACH``), AF, flutter, and paced (a record whose diagnoses name pacing — a
    pacing mode, or "P-synchrony": ventricular pacing triggered by the sensed P
    waves, whose spikes precede every QRS — is right when we say ``PACE`` or its
    rhythm); exact codes are reported too;
  * the same with the sinus classes merged (the rhythm's origin: sinus, AF, flutter,
    paced), and our rate class (``BRADY_BPM`` and ``TACHY_BPM`` of
    :mod:`ecg.rhythm`: below 55/min, 55–100, above 100) against the one these
    thresholds give on LUDB's own reference beats (the lead II QRS annotations, median
    RR) in the sinus records: LUDB's cardiologists write "Sinus rhythm" and "Sinus
    bradycardia" on either side of any one threshold near 55/min (and "Sinus
    tachycardia" once at 90/min), so label and threshold disagree there, whatever a
    program measures; the records where they do are listed;
  * axis class in LUDB's convention (left deviation below 0°, horizontal 0–30°,
    normal 30–70°, vertical 70–90°, right deviation above 90°), exact, in three
    classes (left / normal, horizontal and vertical / right), and with left and
    horizontal as one class (below 30°): Russian propaedeutic texts also name
    "horizontal position, or left axis deviation" one class (+30° to -90°), and LUDB's
    cardiologists use both conventions (16 of the 38 dev records they call "left axis
    deviation" measure 0 to +30° by every published method, 3 they call "horizontal"
    below 0°);
  * beside the 1AVB row, the records where LUDB's label disagrees with PR > 200 ms
    on LUDB's own waves (earliest P onset to earliest QRS onset over the 12 leads,
    median over the beats), as information: the scoring is against the label;
  * Se and +P per statement: ``1AVB``, ``CRBBB``, ``IRBBB``, ``CLBBB``, ``LAFB``,
    ``PACE``, ``LVH``, ``3AVB``, ``RVH``, ``LAO/LAE``, and ST elevation (``STEMI``
    diagnoses) against any ``STE_*``, "Ischemia" against any ``STD_*``.
- **Amplitudes of this LUDB copy.** Its headers give each lead a gain equal to the
  lead's own peak-to-peak digital range, so every lead reads 1.0 "mV" peak to peak;
  LUDB's digital samples are µV (1000 per mV). ``--ludb-adc-per-mv 1000`` (the
  default) converts the digital samples with that gain; ``0`` trusts the headers.
  Intervals and axes do not depend on it; voltage criteria (LVH, low voltage, ST) do.
- PTB-XL sample (10 records): our codes beside the SNOMED codes of the header.
- Time of :func:`interpret` (statements + critical values, measurements excluded) per
  10 s 12-lead record, median over the records: indicative on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import numpy.typing as npt
import wfdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ecg_delineation import parse_records  # noqa: E402

from ecg.detect import detect_qrs_and_vf  # noqa: E402
from ecg.measure import Measurements, measure  # noqa: E402
from ecg.rhythm import BRADY_BPM, TACHY_BPM  # noqa: E402
from ecg.statements import AVB1_PR_MS, Interpretation, interpret  # noqa: E402

FloatArray = npt.NDArray[np.float64]

#: LUDB's annotation files, one per lead.
LUDB_LEADS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
LEAD_NAMES = {"i": "I", "ii": "II", "iii": "III", "avr": "aVR", "avl": "aVL", "avf": "aVF"}
RHYTHMS = {
    "Sinus rhythm": "sinus",
    "Sinus arrhythmia": "sinus",
    "Sinus bradycardia": "bradycardia",
    "Sinus tachycardia": "tachycardia",
    "Atrial fibrillation": "AF",
    "Atrial flutter, typical": "flutter",
}
OUR_RHYTHM = {
    "SR": "sinus",
    "SARRH": "sinus",
    "SBRAD": "bradycardia",
    "STACH": "tachycardia",
    "AFIB": "AF",
    "AFLT": "flutter",
    "PACE": "paced",
    "SVTAC": "SVT",
    "RHYTHM?": "undetermined",
}
AXES = {
    "left axis deviation": "left",
    "horizontal": "horizontal",
    "normal": "normal",
    "vertical": "vertical",
    "right axis deviation": "right",
}
# Diagnoses that name pacing: a pacing mode, or P-synchronous ventricular pacing.
PACING = "pacing|P-synchrony"
# Diagnosis text (a substring of a header line; "|" separates alternatives) -> our
# statement codes that match it.
STATEMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "1AVB": ("I degree AV block", ("1AVB",)),
    "CRBBB": ("Complete right bundle branch block", ("CRBBB",)),
    "IRBBB": ("Incomplete right bundle branch block", ("IRBBB",)),
    "CLBBB": ("Complete left bundle branch block", ("CLBBB",)),
    "LAFB": ("Left anterior hemiblock", ("LAFB",)),
    "PACE": (PACING, ("PACE",)),
    "LVH": ("Left ventricular hypertrophy", ("LVH",)),
    "RVH": ("Right ventricular hypertrophy", ("RVH",)),
    "3AVB": ("III degree AV-block", ("3AVB",)),
    "LAO/LAE": ("Left atrial", ("LAO/LAE",)),
    "STE (STEMI)": ("STEMI:", ("STE_SEPT", "STE_ANT", "STE_LAT", "STE_INF")),
    "STD (Ischemia)": ("Ischemia:", ("STD_SEPT", "STD_ANT", "STD_LAT", "STD_INF")),
}
# SNOMED CT codes of the PTB-XL sample's headers.
SNOMED = {
    "426783006": "SR",
    "426177001": "SBRAD",
    "427084000": "STACH",
    "427393009": "SARRH",
    "164889003": "AFIB",
    "164890007": "AFLT",
    "270492004": "1AVB",
    "59118001": "CRBBB",
    "713427006": "CRBBB",
    "713426002": "IRBBB",
    "164909002": "CLBBB",
    "445118002": "LAFB",
    "39732003": "LAD",
    "47665007": "RAD",
    "164873001": "LVH",
    "251146004": "LVOLT",
    "284470004": "PAC",
    "427172004": "PVC",
    "10370003": "PACE",
    "111975006": "LNGQT",
    "164934002": "T wave abn.",
    "55930002": "ST changes",
    "164917005": "Q wave abn.",
    "164861001": "ischaemia",
    "698252002": "IVCD",
}


def _origin(rhythm_class: str) -> str:
    """The rhythm's origin: the sinus classes (rate and regularity apart) are one."""
    return "sinus" if rhythm_class in ("sinus", "bradycardia", "tachycardia") else rhythm_class


def _rate_class(hr_bpm: float) -> str:
    """Rate class of a sinus rhythm by the thresholds of :mod:`ecg.rhythm`."""
    if hr_bpm < BRADY_BPM:
        return "bradycardia"
    return "tachycardia" if hr_bpm > TACHY_BPM else "sinus"


def _reference_hr_bpm(path: Path) -> float:
    """Heart rate from LUDB's lead II QRS annotations: 60 over the median RR."""
    ann = wfdb.rdann(str(path), "ii")
    qrs = np.asarray(ann.sample)[np.asarray(ann.symbol) == "N"]
    if qrs.size < 2:
        return float("nan")
    return 60.0 * float(ann.fs or 500.0) / float(np.median(np.diff(qrs)))


def _waves(
    ann: wfdb.Annotation, symbol: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(peaks, onsets) of LUDB's waves of ``symbol`` in one lead's annotation: each peak
    whose onset "(" immediately precedes it."""
    samples = np.asarray(ann.sample, dtype=np.int64)
    symbols = list(ann.symbol)
    rows = [
        (samples[k], samples[k - 1])
        for k in range(1, len(symbols))
        if symbols[k] == symbol and symbols[k - 1] == "("
    ]
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    peaks, onsets = zip(*rows, strict=True)
    return np.asarray(peaks, dtype=np.int64), np.asarray(onsets, dtype=np.int64)


def _reference_pr_ms(path: Path, leads: tuple[str, ...] = LUDB_LEADS) -> float:
    """PR from LUDB's own wave annotations: per beat (the lead II QRS peaks), the
    earliest P onset to the earliest QRS onset over the 12 leads (a P is the beat's
    when its peak lies between the previous QRS peak and this one), median over the
    beats with a P; NaN without any (atrial fibrillation, flutter). With P waves not
    conducted (second- and third-degree block) it is the earliest P of the interval, not
    a PR: information beside the label, not a reference."""
    per_lead = [wfdb.rdann(str(path), lead) for lead in leads]
    fs = float(per_lead[0].fs or 500.0)
    qrs = [_waves(ann, "N") for ann in per_lead]
    beats, _ = qrs[leads.index("ii")] if "ii" in leads else _waves(wfdb.rdann(str(path), "ii"), "N")
    p = [_waves(ann, "p") for ann in per_lead]
    half = round(0.1 * fs)
    prs = []
    for i, r in enumerate(beats.tolist()):
        prev = beats[i - 1] if i > 0 else r - round(2.0 * fs)
        qrs_on = [
            int(on[np.abs(pk - r) <= half].min())
            for pk, on in qrs
            if np.any(np.abs(pk - r) <= half)
        ]
        p_on = [
            int(on[(pk > prev) & (pk < r)].min()) for pk, on in p if np.any((pk > prev) & (pk < r))
        ]
        if qrs_on and p_on:
            prs.append((min(qrs_on) - min(p_on)) * 1000.0 / fs)
    return float(np.median(prs)) if prs else float("nan")


def axis_class(axis_deg: float | None) -> str:
    """LUDB's axis classes (the Russian convention) from a frontal QRS axis."""
    if axis_deg is None:
        return "not measured"
    if -90.0 <= axis_deg < 0.0:
        return "left"
    if 0.0 <= axis_deg < 30.0:
        return "horizontal"
    if 30.0 <= axis_deg < 70.0:
        return "normal"
    if 70.0 <= axis_deg <= 90.0:
        return "vertical"
    return "right"


def three(axis: str) -> str:
    """Left / normal (horizontal, normal, vertical) / right."""
    return axis if axis in ("left", "right") else "normal"


def levo(axis: str) -> str:
    """Left and horizontal as one class, below 30° ("horizontal position, or left axis
    deviation" of the Russian propaedeutic texts); the others as they are."""
    return "left or horizontal" if axis in ("left", "horizontal") else axis


def read(path: Path, adc_per_mv: float) -> tuple[FloatArray, float, list[str], list[str]]:
    """Signal (mV), fs, lead names, header comments."""
    if adc_per_mv > 0:
        raw = wfdb.rdrecord(str(path), physical=False)
        signal = (raw.d_signal.astype(np.float64) - np.asarray(raw.baseline)) / adc_per_mv
    else:
        raw = wfdb.rdrecord(str(path))
        signal = np.asarray(raw.p_signal, dtype=np.float64)
    names = [LEAD_NAMES.get(n.lower(), n.upper()) for n in raw.sig_name]
    return signal, float(raw.fs), names, list(raw.comments)


def run(
    signal: FloatArray, fs_hz: float, names: list[str], sex: str | None, age: float | None
) -> tuple[Interpretation, Measurements, float]:
    """Beats, measurements and the interpretation; the interpretation's time in s."""
    beats, vf = detect_qrs_and_vf(signal, fs_hz)
    measurements = measure(signal, fs_hz, names, beats)
    started = time.perf_counter()
    result = interpret(
        measurements, beats, [], fs_hz, signal_mv=signal, vf_episodes=vf, sex=sex, age_years=age
    )
    return result, measurements, time.perf_counter() - started


def _sex_age(comments: list[str]) -> tuple[str | None, float | None]:
    text = "\n".join(comments)
    sex = re.search(r"<?sex>?:\s*([MF])", text, re.IGNORECASE)
    age = re.search(r"<?age>?:\s*(\d+)", text, re.IGNORECASE)
    return (sex.group(1).upper() if sex else None, float(age.group(1)) if age else None)


def ludb(folder: Path, records: list[str], adc_per_mv: float) -> dict[str, object]:
    rhythm_ok = rhythm_exact = axis_ok = axis3_ok = axis_levo_ok = axis_n = 0
    origin_ok = rate_ok = rate_n = 0
    origin_misses: list[str] = []
    rate_misses: list[str] = []
    label_disagrees: list[str] = []
    # 1AVB: LUDB's label against PR > 200 ms on LUDB's own waves (information only).
    avb_disagrees: list[str] = []
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    rhythm_misses, axis_misses, statement_misses = [], [], defaultdict(list)
    times = []
    for name in records:
        signal, fs_hz, names, comments = read(folder / name, adc_per_mv)
        text = "\n".join(comments)
        sex, age = _sex_age(comments)
        result, measurements, spent = run(signal, fs_hz, names, sex, age)
        times.append(spent)
        codes = set(result.codes)
        rhythm_line = re.search(r"Rhythm:\s*(.*?)\.?\s*$", text, re.MULTILINE)
        truth = RHYTHMS.get(rhythm_line.group(1).strip() if rhythm_line else "", "other")
        paced = re.search(PACING, text, re.IGNORECASE) is not None
        ours = OUR_RHYTHM.get(result.codes[0], "none") if result.codes else "none"
        good = ours == truth or (paced and ours == "paced")
        rhythm_ok += good
        rhythm_exact += ours == truth
        if not good:
            rhythm_misses.append(
                f"{name}: {truth}{' paced' if paced else ''} -> {result.codes[:1]}"
            )
        origin_good = _origin(ours) == _origin(truth) or (paced and ours == "paced")
        origin_ok += origin_good
        if not origin_good:
            origin_misses.append(
                f"{name}: {truth}{' paced' if paced else ''} -> {result.codes[:1]}"
            )
        if _origin(truth) == "sinus" and not paced:
            reference = _rate_class(_reference_hr_bpm(folder / name))
            rate_n += 1
            rate_ok += reference == ours
            if reference != truth:
                hr = _reference_hr_bpm(folder / name)
                label_disagrees.append(f"{name}: {truth} at {hr:.1f}/min")
            if reference != ours:
                rate_misses.append(f"{name}: {reference} -> {result.codes[:1]}")
        axis_line = re.search(r"Electric axis of the heart:\s*(.*?)\.?\s*$", text, re.MULTILINE)
        if axis_line:
            expected = AXES.get(axis_line.group(1).strip(), "?")
            value = measurements.global_.qrs_axis_deg
            number = value if isinstance(value, float) else None
            got = axis_class(number)
            axis_n += 1
            axis_ok += got == expected
            axis3_ok += three(got) == three(expected)
            axis_levo_ok += levo(got) == levo(expected)
            if three(got) != three(expected):
                shown = "absent" if number is None else f"{number:.0f}"
                axis_misses.append(f"{name}: {expected} -> {got} ({shown} deg)")
        avb_needle = re.escape(STATEMENTS["1AVB"][0])
        avb_label = re.search(rf"(?<![a-z]){avb_needle}", text, re.IGNORECASE) is not None
        reference_pr = _reference_pr_ms(folder / name)
        if math.isfinite(reference_pr) and avb_label != (reference_pr > AVB1_PR_MS):
            avb_disagrees.append(
                f"{name}: {'1AVB' if avb_label else 'no 1AVB'} at PR {reference_pr:.0f} ms"
                f" (ours: {'1AVB' if '1AVB' in codes else 'no 1AVB'})"
            )
        for label, (needle, ours_codes) in STATEMENTS.items():
            # A whole-word match: "Complete right bundle branch block" is also the end of
            # "Incomplete right bundle branch block".
            either = "|".join(re.escape(part) for part in needle.split("|"))
            present = re.search(rf"(?<![a-z])(?:{either})", text, re.IGNORECASE) is not None
            said = bool(codes & set(ours_codes))
            key = ("TP" if said else "FN") if present else ("FP" if said else "TN")
            counts[label][key] += 1
            if key in ("FN", "FP"):
                statement_misses[label].append(f"{name}{'-' if key == 'FN' else '+'}")
    n = len(records)
    scale = f"d_signal / {adc_per_mv:g}" if adc_per_mv else "as in the headers"
    print(f"LUDB statements ({n} records, amplitudes {scale})")
    print(
        f"  rhythm class correct: {rhythm_ok}/{n} = {100.0 * rhythm_ok / n:.1f} %"
        f"  (exact class {rhythm_exact}/{n})"
    )
    for miss in rhythm_misses:
        print(f"    miss {miss}")
    print(
        f"  rhythm origin (sinus classes merged): {origin_ok}/{n} = {100.0 * origin_ok / n:.1f} %"
    )
    for miss in origin_misses:
        print(f"    miss {miss}")
    if rate_n:
        print(
            f"  rate class of the sinus records against LUDB's reference beats"
            f" (<{BRADY_BPM:g}, >{TACHY_BPM:g}/min): {rate_ok}/{rate_n}"
            f" = {100.0 * rate_ok / rate_n:.1f} %"
        )
        for miss in rate_misses:
            print(f"    miss {miss}")
        print(f"  LUDB's label unlike the thresholds on its own beats: {len(label_disagrees)}")
        for item in label_disagrees:
            print(f"    {item}")
    print(
        f"  LUDB's 1AVB label unlike PR > {AVB1_PR_MS:g} ms on its own waves (earliest P"
        f" onset to earliest QRS onset over the 12 leads, median over beats): {len(avb_disagrees)}"
    )
    for item in avb_disagrees:
        print(f"    {item}")
    if axis_n:
        print(
            f"  axis class (LUDB's 5): {axis_ok}/{axis_n} = {100.0 * axis_ok / axis_n:.1f} %;"
            f" left/normal/right: {axis3_ok}/{axis_n} = {100.0 * axis3_ok / axis_n:.1f} %;"
            f" left and horizontal one class (< 30 deg): {axis_levo_ok}/{axis_n}"
            f" = {100.0 * axis_levo_ok / axis_n:.1f} %"
        )
        for miss in axis_misses:
            print(f"    miss {miss}")
    print(
        f"  {'statement':<16} {'TP':>3} {'FN':>3} {'FP':>3}  {'Se %':>6} {'+P %':>6}"
        "  misses (- missed, + false)"
    )
    table = {}
    for label, c in counts.items():
        se = 100.0 * c["TP"] / max(c["TP"] + c["FN"], 1)
        ppv = 100.0 * c["TP"] / max(c["TP"] + c["FP"], 1)
        table[label] = {"tp": c["TP"], "fn": c["FN"], "fp": c["FP"], "se_pct": se, "ppv_pct": ppv}
        shown = " ".join(statement_misses[label][:14])
        more = len(statement_misses[label]) - 14
        print(
            f"  {label:<16} {c['TP']:>3} {c['FN']:>3} {c['FP']:>3}  {se:>6.1f} {ppv:>6.1f}  {shown}"
            + (f" (+{more})" if more > 0 else "")
        )
    median_ms = 1000.0 * float(np.median(times))
    print(f"  interpret() per record: median {median_ms:.1f} ms, max {1000.0 * max(times):.1f} ms")
    return {
        "rhythm_pct": 100.0 * rhythm_ok / n,
        "rhythm_origin_pct": 100.0 * origin_ok / n,
        "rate_class_pct": 100.0 * rate_ok / max(rate_n, 1),
        "axis5_pct": 100.0 * axis_ok / max(axis_n, 1),
        "axis3_pct": 100.0 * axis3_ok / max(axis_n, 1),
        "axis_levo_pct": 100.0 * axis_levo_ok / max(axis_n, 1),
        "statements": table,
        "avb1_label_unlike_reference_pr": avb_disagrees,
        "interpret_median_ms": median_ms,
    }


def ptbxl(folder: Path) -> None:
    print("PTB-XL sample: header SNOMED codes vs our statements")
    for hea in sorted(folder.glob("*.hea")):
        signal, fs_hz, names, comments = read(hea.with_suffix(""), 0.0)
        sex, age = _sex_age(comments)
        sex = {"FEMALE": "F", "MALE": "M"}.get((sex or "").upper(), sex)
        result, _, _ = run(signal, fs_hz, names, sex, age)
        dx = re.search(r"Dx:\s*([\d,]+)", "\n".join(comments))
        theirs = [SNOMED.get(code, code) for code in (dx.group(1).split(",") if dx else [])]
        critical = [c.code for c in result.critical]
        print(
            f"  {hea.stem}: header {theirs}  ours {result.codes}"
            + (f" critical {critical}" if critical else "")
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = os.environ.get("TELECONSULT_ECG_DIR", str(REPO.parent / "shared" / "ecg"))
    parser.add_argument("--ecg-dir", default=default_dir)
    parser.add_argument("--records", default="", help="LUDB subset: odd, even, 1-50,60")
    parser.add_argument("--ludb-adc-per-mv", type=float, default=1000.0)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    root = Path(args.ecg_dir)
    folder = root / "ludb-dev"
    records = sorted((p.stem for p in folder.glob("*.hea")), key=int)
    if args.records:
        chosen = parse_records(args.records)
        records = [r for r in records if int(r) in chosen]
    if not records:
        print(f"no LUDB records under {folder}", file=sys.stderr)
        return 2
    figures = ludb(folder, records, args.ludb_adc_per_mv)
    if (root / "ptbxl-sample").is_dir():
        ptbxl(root / "ptbxl-sample")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
