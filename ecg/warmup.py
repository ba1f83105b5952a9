"""Compile (or load) every numba kernel of ``ecg`` once: ``python -m ecg.warmup``.

Design notes
------------
- **Why.** The kernels are compiled on their first call and cached in ``ecg/__pycache__``
  (:mod:`ecg._jit`). Compiling all of them takes 20–30 s of CPU; loading the cache takes
  well under a second. Without a warm cache the first live stream of each worker
  process, the first ``teleconsult ecg annotate`` and the first test that reaches a
  kernel would each pay the compilation, several processes at once on a fresh install.
  ``make`` runs this module right after installing, so ``make serve`` and ``make test``
  start warm; the test suite calls :func:`warm_up` once per session too, and the server
  before it starts its live workers.
- **What it runs.** The live pipeline (:func:`ecg.live.live_warm_up`: causal filter,
  streaming detector with a lead off, quality and rhythm steps, the AF measures'
  kernels of :mod:`ecg._rhythm_kernels` at its flush) and the batch path
  (:func:`ecg.annotate.annotate` in both filter modes) on a synthetic 12-lead record with
  missing samples, a flat lead and an irregular rhythm, then on the same record with no
  missing sample, and the live pipeline on one lead too, so that every branch that has
  a kernel of its own is reached (``tests/ecg/test_warmup.py`` checks that every kernel
  Python code calls has been compiled or loaded). Nothing is written but numba's cache.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

from ecg.annotate import AnnotateConfig, annotate
from ecg.filters import FilterMode
from ecg.live import live_warm_up
from ecg.record import Record

__all__ = ["warm_up"]


def _synthetic_record(fs_hz: float = 500.0, duration_s: float = 24.0) -> Record:
    """12 leads: irregular narrow beats with T waves, a NaN stretch and a flat lead."""
    rng = np.random.default_rng(0)
    n = round(duration_s * fs_hz)
    t_s = np.arange(n) / fs_hz
    beats_s = np.cumsum(rng.uniform(0.45, 1.1, size=int(duration_s / 0.45)))
    trace = np.zeros(n)
    for at in beats_s[beats_s < duration_s]:
        trace += 1.2 * np.exp(-0.5 * ((t_s - at) / 0.012) ** 2)
        trace += 0.3 * np.exp(-0.5 * ((t_s - at - 0.3) / 0.05) ** 2)
    signal_mv = trace[:, None] * np.linspace(0.4, 1.2, 12)[None, :]
    signal_mv += 0.02 * rng.standard_normal(signal_mv.shape)
    signal_mv[round(5 * fs_hz) : round(6 * fs_hz), 1] = np.nan
    signal_mv[round(10 * fs_hz) :, 2] = 0.0
    names = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    return Record(name="warmup", fs_hz=fs_hz, signal_mv=signal_mv, lead_names=names)


def warm_up() -> float:
    """Reach every kernel once; return the seconds it took."""
    started = time.perf_counter()
    live_warm_up()
    live_warm_up(n_leads=1)  # one lead: the atrial windows' numpy-ordered sum
    record = _synthetic_record()
    for mode in FilterMode:
        annotate(record, AnnotateConfig(mode=mode))
    # A record with no missing sample takes the delineator's all-leads-at-once medians.
    finite = np.nan_to_num(record.signal_mv, nan=0.0)
    annotate(dataclasses.replace(record, signal_mv=finite), AnnotateConfig())
    return time.perf_counter() - started


def main() -> int:
    """Command line entry point: warm the cache and say how long it took."""
    print(f"ecg kernels ready in {warm_up():.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
