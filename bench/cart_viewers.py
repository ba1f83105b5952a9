"""Carts' ack latency with viewers polling: 200 carts streaming in real time while 20
live-ECG viewers list and watch them.

Run: ``.venv/bin/python bench/cart_viewers.py [--carts 200] [--viewers 20]
[--seconds 60]`` (on an otherwise idle machine).

A real ``teleconsult serve`` subprocess (its own temporary data folder, the per-address
caps lifted: every client is 127.0.0.1) takes :mod:`teleconsult.loadtest`'s carts (a
synthetic 12-lead 500 Hz record each, sent in real time, no drops) spread over
``--cart-rooms`` rooms, and its viewers, each of which lists its room's streams every
few seconds and subscribes to them (the ``/ecg`` page's polling). Printed: the ack
latency (a frame sent to its ``ack``), the live latency (a sample received to a viewer
seeing it), their percentiles, the client errors; PASS when the ack p95 is at most
``--target-ms`` (200) and there is no client error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.soak import free_port, start_server  # noqa: E402
from sessions.tokens import load_key_ring  # noqa: E402
from teleconsult.loadtest import Figures, LoadPlan, run_load  # noqa: E402


async def measure(args: argparse.Namespace, scratch: Path) -> int:
    data = scratch / "var"
    port = free_port()
    with (scratch / "server.log").open("a") as log:
        server = start_server(data, port, log)
        try:
            plan = LoadPlan(
                http_url=f"http://127.0.0.1:{port}", keys=load_key_ring(data, None),
                participants=0, carts=args.carts, viewers=args.viewers,
                cart_rooms=args.cart_rooms, duration_s=args.seconds, prefix="cv",
                ramp_s=args.ramp_s,
            )  # fmt: skip
            figures = Figures()
            await run_load(plan, figures)
            cpu_s = server.cpu_s()
        finally:
            server.stop()
    summary = figures.summary()
    print(f"{args.carts} carts, {args.viewers} viewers, {args.seconds:g} s of signal each, "
          f"ramp {args.ramp_s:g} s")  # fmt: skip
    for name in ("ack", "live"):
        row = summary[name]
        print(f"  {name:5} n {row['n']:8d}  p50 {row['p50_ms']:.1f} ms  p95 {row['p95_ms']:.1f} ms"
              f"  p99 {row['p99_ms']:.1f} ms  max {row['max_ms']:.1f} ms")  # fmt: skip
    share = 100 * cpu_s / (args.seconds + args.ramp_s)
    print(
        f"  client errors {summary['errors']}; server CPU {cpu_s:.1f} s ({share:.0f} % of a core)"
    )
    ack_p95 = summary["ack"]["p95_ms"]
    ok = ack_p95 <= args.target_ms and not summary["errors"]
    print(f"{'PASS' if ok else 'FAIL'}  ack p95 {ack_p95:.1f} ms (target {args.target_ms:g} ms)")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--carts", type=int, default=200)
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--cart-rooms", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ramp-s", type=float, default=10.0)
    parser.add_argument("--target-ms", type=float, default=200.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cart-viewers-") as temporary:
        return asyncio.run(measure(args, Path(temporary)))


if __name__ == "__main__":
    sys.exit(main())
