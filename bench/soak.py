"""Soak: carts, participants and viewers for half an hour, drops, one SIGKILL mid-run.

Run: ``.venv/bin/python bench/soak.py [--minutes 30] [--carts 150] [--participants 20]
[--rooms 5] [--viewers 20] [--viewer-processes 1] [--drop-every-s 5]`` (on an otherwise
idle machine).

A real ``teleconsult serve`` subprocess (its own temporary data folder, its log at
INFO in a file) takes the load of :mod:`teleconsult.loadtest` for ``--minutes``: the
carts stream a synthetic 12-lead 500 Hz record of that length in real time and drop
their connection every ``--drop-every-s`` of wall time (resuming the stream); the
participants publish audio and video in ``--rooms`` rooms, the first of each room
recording it; the viewers watch the carts' rooms from processes of their own
(``--viewer-processes``), started before the rest. Half-way the server is SIGKILLed and
started again on the same port and folder; every client reconnects by itself. Then:

- **RSS** of the server tree (the server and its live workers), sampled every 10 s
  (60 times in a run shorter than 10 minutes); the slope is the least-squares fit
  after warm-up (the first fifth of each server's life) while the carts stream (not
  the minute after their end, when 150 records are finalised at once), for each of the
  two servers, in MiB per hour. PASS when both are under ``--max-slope-mib-h``. The
  slopes of the server process alone and of its workers are printed too, and every
  sample (per process, with the tree's CPU) goes to ``rss.csv`` beside the log.
- **Acked samples stored bit-exact**: after the end, for each cart, the samples the
  server acknowledged are compared with the stored record sample for sample.
- **Recordings exportable**: ``teleconsult recording export`` of every recording folder
  (two at a time: each is an ffmpeg encoding the whole consult).
- **No ERROR in the server log** (both servers).

Each criterion prints PASS or FAIL; the exit status is 1 when any fails. The load
test's own figures (join, ack, live, first frame, client errors, which the restart
necessarily causes) and the event-loop lag of the load test and of its viewers'
processes are printed too, for information, and so is how many live ECG chunks each
server spared viewers that lagged (``teleconsult_ecg_chunks_skipped_total``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
import wfdb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ecg_live import LOAD_ENVIRONMENT, Server  # noqa: E402
from ecg.streamstore import StreamStore  # noqa: E402
from sessions.tokens import load_key_ring  # noqa: E402
from teleconsult.loadtest import Figures, LoadPlan, run_load  # noqa: E402

RSS_EVERY_S = 10.0  # at most; a short run samples 60 times
# (seconds, server process MiB, its workers' MiB together)
Sample = tuple[float, float, float]
WARM_UP_FRACTION = 0.2
EXPORTS_AT_ONCE = 2  # the machine of bench/ has 2 cores


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def chunks_skipped(port: int) -> float | None:
    """The server's ``teleconsult_ecg_chunks_skipped_total`` (None if it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("teleconsult_ecg_chunks_skipped_total "):
            return float(line.split()[1])
    return None


def start_server(data: Path, port: int, log: IO[str]) -> Server:
    """``teleconsult serve`` on ``port``, logging at INFO to ``log``; once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "teleconsult", "serve", "--port", str(port),
         "--data-dir", str(data), "--log-level", "INFO"],
        stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO, env=LOAD_ENVIRONMENT,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("teleconsult serving on"):
            return Server(process, port, data, "")
    raise SystemExit(f"teleconsult serve did not start (exit {process.wait()})")


def slope_mib_h(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) pairs, in MiB per hour (NaN for < 3)."""
    if len(samples) < 3:
        return float("nan")
    t_s, mib = np.array(samples).T
    return float(np.polyfit(t_s, mib, 1)[0] * 3600)


def slope_error_mib_h(samples: list[tuple[float, float]]) -> float:
    """The standard error of :func:`slope_mib_h` (NaN for < 4 samples): how well the
    samples fix the slope, given their scatter about the line."""
    if len(samples) < 4:
        return float("nan")
    t_s, mib = np.array(samples).T
    _, covariance = np.polyfit(t_s, mib, 1, cov=True)
    return float(np.sqrt(covariance[0, 0]) * 3600)


def after_warm_up(samples: list[Sample]) -> list[Sample]:
    """The samples (seconds first) after the first ``WARM_UP_FRACTION`` of their span."""
    if not samples:
        return []
    first, last = samples[0][0], samples[-1][0]
    return [s for s in samples if s[0] >= first + WARM_UP_FRACTION * (last - first)]


def bit_exact(data: Path, figures: Figures) -> tuple[bool, str]:
    """Every cart's acknowledged samples equal, sample for sample, what the store holds."""
    store = StreamStore(data / "streams")
    bad: list[str] = []
    acked_total = 0
    for cart in figures.carts:
        if cart.stream is None or cart.acked == 0:
            continue
        acked_total += cart.acked
        try:
            stored = wfdb.rdrecord(str(store.record_path(cart.stream)), physical=False).d_signal
        except (OSError, ValueError) as error:
            bad.append(f"{cart.device}: no record ({type(error).__name__})")
            continue
        sent = cart.record.samples[: cart.acked]
        if stored.shape[0] < cart.acked or not np.array_equal(stored[: cart.acked], sent):
            bad.append(f"{cart.device}: stored {stored.shape[0]} samples, acked {cart.acked}")
    detail = f"{acked_total} acked samples per lead over {len(figures.carts)} carts"
    if acked_total == 0:
        return False, "no sample was acknowledged"
    return not bad, detail + ("" if not bad else "; " + "; ".join(bad[:5]))


def exportable(data: Path, scratch: Path, at_once: int = EXPORTS_AT_ONCE) -> tuple[bool, str]:
    """``teleconsult recording export`` of every recording folder, ``at_once`` at a time
    (each is one ffmpeg encoding the whole consult: minutes of CPU for 15 minutes)."""
    root = data / "recordings"
    ids = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    failed: list[str] = []

    def export(recording: str) -> None:
        out = scratch / f"{recording}.webm"
        result = subprocess.run(
            [sys.executable, "-m", "teleconsult", "recording", "export", recording,
             "--out", str(out), "--data-dir", str(data)],
            capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        if result.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            failed.append(f"{recording}: {result.stderr.strip()[-200:]}")

    with ThreadPoolExecutor(max_workers=at_once) as pool:
        list(pool.map(export, ids))
    failed.sort()
    if not ids:
        return False, "no recording was made"
    return not failed, f"{len(ids) - len(failed)}/{len(ids)} exported" + "".join(
        f"; {f}" for f in failed[:3]
    )


async def soak(args: argparse.Namespace, scratch: Path) -> int:
    data = scratch / "var"
    log_path = scratch / "server.log"
    port = free_port()
    duration_s = args.minutes * 60.0
    with log_path.open("a") as log:
        server = start_server(data, port, log)
        plan = LoadPlan(
            http_url=f"http://127.0.0.1:{port}", keys=load_key_ring(data, None),
            participants=args.participants, rooms=args.rooms, carts=args.carts,
            viewers=args.viewers, cart_rooms=args.cart_rooms, duration_s=duration_s,
            drop_every_s=args.drop_every_s, prefix="soak", ramp_s=args.ramp_s,
            reconnect=True, record=True, viewer_processes=args.viewer_processes,
        )  # fmt: skip
        rss: list[list[Sample]] = [[], []]  # each server's life
        spared = [0.0, 0.0]  # live chunks the server skipped for lagging viewers, per life
        streaming_until_s = duration_s  # the first carts (started at 0) end then
        table = (scratch / "rss.csv").open("w")
        table.write("life,seconds,pid,rss_mib,tree_cpu_s\n")
        figures = Figures()
        load = asyncio.create_task(run_load(plan, figures))
        began = time.monotonic()
        killed = False
        every_s = min(RSS_EVERY_S, duration_s / 60)
        while not load.done():
            await asyncio.wait({load}, timeout=every_s)
            now = time.monotonic() - began
            if not killed and now >= plan.ramp_s + duration_s / 2:
                server.process.send_signal(signal.SIGKILL)
                await asyncio.to_thread(server.process.wait)
                print(f"{now:7.1f} s: server SIGKILLed; starting it again", flush=True)
                # In a thread: the clients (on this loop) go on retrying meanwhile, as
                # real ones would, instead of freezing for the server's start-up.
                server = await asyncio.to_thread(start_server, data, port, log)
                killed = True
                continue
            by_process = server.rss_by_process_mb()
            cpu_s = server.cpu_s()
            skipped = await asyncio.to_thread(chunks_skipped, port)
            if skipped is not None:
                spared[int(killed)] = skipped
            for pid, mib in by_process.items():
                table.write(f"{int(killed)},{now:.1f},{pid},{mib:.1f},{cpu_s:.1f}\n")
            table.flush()  # a run stopped early keeps its samples
            if now <= streaming_until_s:
                main = by_process.get(server.process.pid, 0.0)
                rss[int(killed)].append((now, main, sum(by_process.values()) - main))
        server.stop()
        table.close()
    await load
    summary = figures.summary()
    print("load (for information; the restart causes client errors):")
    for name in ("join", "first_frame", "ack", "live", "loop_lag", "viewer_loop_lag"):
        row = summary[name]
        print(f"  {name:15} n {row['n']:7d}  p50 {row['p50_ms']:.0f} ms  "
              f"p95 {row['p95_ms']:.0f} ms  max {row['max_ms']:.0f} ms")  # fmt: skip
    print(f"  live unmatched {summary['live_unmatched']}; client errors {summary['errors']}")
    print(f"  live chunks the server spared lagging viewers: {spared[0]:.0f} in life 1, "
          f"{spared[1]:.0f} in life 2")  # fmt: skip
    results: list[tuple[str, bool, str]] = []
    fitted = [after_warm_up(life) for life in rss]
    slopes = [slope_mib_h([(t, m + w) for t, m, w in life]) for life in fitted]
    flat = all(not np.isnan(s) and s <= args.max_slope_mib_h for s in slopes) and killed
    last = [life[-1][1] + life[-1][2] if life else float("nan") for life in rss]
    results.append((
        "RSS flat after warm-up", flat,
        f"slope {slopes[0]:.1f} MiB/h before the kill, {slopes[1]:.1f} after "
        f"(limit {args.max_slope_mib_h:g}); RSS at the end of each {last[0]:.0f} / "
        f"{last[1]:.0f} MiB",
    ))  # fmt: skip
    for number, life in enumerate(fitted, 1):
        main = slope_mib_h([(t, m) for t, m, _ in life])
        workers = slope_mib_h([(t, w) for t, _, w in life])
        tree = [(t, m + w) for t, m, w in life]
        low, high = min(m for _, m in tree), max(m for _, m in tree)
        print(f"  RSS slope of life {number}: server process {main:.1f} MiB/h, "
              f"its workers together {workers:.1f} MiB/h; the tree after warm-up "
              f"{low:.0f}-{high:.0f} MiB, its slope's standard error "
              f"{slope_error_mib_h(tree):.1f} MiB/h")  # fmt: skip
    results.append(("acked samples stored bit-exact", *bit_exact(data, figures)))
    results.append(("every recording exportable", *exportable(data, scratch)))
    errors = [line for line in log_path.read_text().splitlines() if "ERROR" in line]
    results.append((
        "no ERROR in the server log", not errors,
        f"{len(errors)} lines" + (f"; first: {errors[0][:200]}" if errors else ""),
    ))  # fmt: skip
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--carts", type=int, default=150)
    parser.add_argument("--participants", type=int, default=20)
    parser.add_argument("--rooms", type=int, default=5)
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--cart-rooms", type=int, default=5)
    parser.add_argument("--viewer-processes", type=int, default=1)
    parser.add_argument("--drop-every-s", type=float, default=5.0)
    parser.add_argument("--ramp-s", type=float, default=10.0)
    parser.add_argument("--max-slope-mib-h", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the data folder and log")
    args = parser.parse_args()
    if args.keep:
        scratch = Path(tempfile.mkdtemp(prefix="soak-"))
        print(f"data and log in {scratch}")
        return asyncio.run(soak(args, scratch))
    with tempfile.TemporaryDirectory(prefix="soak-") as temporary:
        return asyncio.run(soak(args, Path(temporary)))


if __name__ == "__main__":
    sys.exit(main())
