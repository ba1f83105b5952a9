"""Noise stress test of the QRS detector, after the MIT-BIH Noise Stress Test Database.

Usage::

    python bench/ecg_noise.py [--ecg-dir DIR] [--peers xqrs,gqrs|none] [--json FILE]

What it builds (in memory; nothing is written next to the data)
--------------------------------------------------------------
Following ``nstdbgen`` (the script that made the NSTDB) and ``nst`` (the program it
calls), for each clean record (MIT-BIH 118 and 119), each noise record (``bw`` baseline
wander, ``ma`` muscle artefact; ``em`` is not in ``../shared``) and each SNR (24, 18,
12, 6 and 0 dB):

- Noise is added only from minute 5 on, in alternating two-minute segments: on during
  5–7 min, off during 7–9, on during 9–11, and so on to the end of the record. The
  first five minutes stay clean so that a detector can learn, as in the NSTDB.
- Noise channel ``k`` goes onto signal channel ``k`` (both records have two).
- The SNR is defined as ``nst`` defines it. Signal power ``S = A**2 / 8`` where ``A``
  is the QRS peak-to-peak amplitude of the lead (the power of a sine wave of that
  peak-to-peak amplitude); ``A`` is measured as the median, over the reference beats,
  of the peak-to-peak amplitude within 50 ms either side of the annotation (``nst``
  uses a mean over its windows; the median is robust to the few ectopic beats of 119).
  Noise power ``N`` is the variance of the noise channel over the whole noise record.
  The noise is scaled by ``sqrt(S / (N * 10 ** (snr_db / 10)))`` for each lead, so the
  SNR holds per lead.

Scoring is the usual protocol (``ecg.scoring``): whole records, the clean record's
``.atr`` beats, 150 ms window, gross totals per noise type and SNR. Our detector sees
both leads; the peers (wfdb's ``xqrs`` and ``gqrs``) see the first lead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import wfdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ecg.detect import detect_qrs  # noqa: E402
from ecg.scoring import Score, reference_beats, score_beats  # noqa: E402
from teleconsult.bench_cmd import OURS, parse_peers, peer_detector  # noqa: E402

FloatArray = npt.NDArray[np.float64]

RECORDS = ("118", "119")
NOISES = ("bw", "ma")
SNRS_DB = (24, 18, 12, 6, 0)
CLEAN_START_S = 300.0
SEGMENT_S = 120.0
QRS_HALF_WINDOW_S = 0.05


def noise_mask(n_samples: int, fs_hz: float) -> npt.NDArray[np.bool_]:
    """True where noise is added: from 5 min on, alternating 2 min on and 2 min off."""
    t_s = np.arange(n_samples) / fs_hz
    after = t_s >= CLEAN_START_S
    segment = np.floor((t_s - CLEAN_START_S) / SEGMENT_S).astype(np.int64)
    mask: npt.NDArray[np.bool_] = after & (segment % 2 == 0)
    return mask


def qrs_amplitude_mv(
    signal_mv: FloatArray, beats: npt.NDArray[np.int64], fs_hz: float
) -> FloatArray:
    """Median QRS peak-to-peak amplitude per lead, within 50 ms of each reference beat."""
    half = round(QRS_HALF_WINDOW_S * fs_hz)
    inside = beats[(beats >= half) & (beats < signal_mv.shape[0] - half)]
    windows = signal_mv[inside[:, None] + np.arange(-half, half + 1)[None, :]]
    ptp = windows.max(axis=1) - windows.min(axis=1)  # (n_beats, n_leads)
    amplitude: FloatArray = np.median(ptp, axis=0)
    return amplitude


def add_noise(
    signal_mv: FloatArray,
    noise_mv: FloatArray,
    amplitude_mv: FloatArray,
    snr_db: float,
    fs_hz: float,
) -> FloatArray:
    """The signal plus noise scaled to ``snr_db`` (nst's definition) in the on-segments."""
    n = signal_mv.shape[0]
    noise = noise_mv[:n] - noise_mv[:n].mean(axis=0)
    signal_power = amplitude_mv**2 / 8.0
    noise_power = noise.var(axis=0)
    gain = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    mask = noise_mask(n, fs_hz)[:, None]
    noisy: FloatArray = signal_mv + np.where(mask, noise * gain[None, :], 0.0)
    return noisy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ecg-dir", type=Path, default=None, help="default ../shared/ecg")
    parser.add_argument("--peers", default="xqrs,gqrs", help="xqrs,gqrs, or none")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    import os

    ecg_dir = args.ecg_dir or Path(
        os.environ.get("TELECONSULT_ECG_DIR", REPO.parent / "shared" / "ecg")
    )
    try:
        peers = parse_peers(args.peers)
    except ValueError as error:
        print(f"ecg_noise: {error}", file=sys.stderr)
        return 2
    if not (ecg_dir / "mitdb" / "118.hea").exists() or not (ecg_dir / "noise" / "bw.hea").exists():
        print(
            f"ecg_noise: MIT-BIH records or noise records not found under {ecg_dir}",
            file=sys.stderr,
        )
        return 2
    detectors = (OURS, *peers)
    scores: dict[tuple[str, str, int], Score] = {}
    for noise_name in NOISES:
        noise = np.asarray(wfdb.rdrecord(str(ecg_dir / "noise" / noise_name)).p_signal, np.float64)
        for record_name in RECORDS:
            path = str(ecg_dir / "mitdb" / record_name)
            record = wfdb.rdrecord(path)
            annotation = wfdb.rdann(path, "atr")
            fs_hz = float(record.fs)
            clean = np.asarray(record.p_signal, np.float64)
            reference = reference_beats(annotation.sample, annotation.symbol)
            amplitude = qrs_amplitude_mv(clean, reference, fs_hz)
            for snr_db in SNRS_DB:
                noisy = add_noise(clean, noise, amplitude, snr_db, fs_hz)
                for name in detectors:
                    if name == OURS:
                        beats = detect_qrs(noisy, fs_hz)
                    else:
                        beats = np.asarray(peer_detector(name)(noisy[:, 0].copy(), fs_hz))
                    key = (name, noise_name, snr_db)
                    scores[key] = scores.get(key, Score()) + score_beats(reference, beats, fs_hz)
                print(f"{record_name}+{noise_name} {snr_db:>3} dB done", file=sys.stderr)
    print(f"{'detector':<12}{'noise':<7}" + "".join(f"{f'{snr} dB':>20}" for snr in SNRS_DB))
    print(f"{'':<19}" + "".join(f"{'F1% (Se/+P)':>20}" for _ in SNRS_DB))
    for name in detectors:
        for noise_name in NOISES:
            cells = []
            for snr_db in SNRS_DB:
                s = scores[(name, noise_name, snr_db)]
                se, ppv = 100 * s.sensitivity, 100 * s.positive_predictivity
                cells.append(f"{100 * s.f1:.2f} ({se:.1f}/{ppv:.1f})")
            print(f"{name:<12}{noise_name:<7}" + "".join(f"{c:>20}" for c in cells))
    if args.json:
        payload = [
            {
                "detector": k[0],
                "noise": k[1],
                "snr_db": k[2],
                "tp": s.tp,
                "fp": s.fp,
                "fn": s.fn,
                "f1": s.f1,
            }
            for k, s in scores.items()
        ]
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
