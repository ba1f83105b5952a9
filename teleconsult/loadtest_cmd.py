"""``teleconsult loadtest``: participants, carts and viewers against a running server.

The tokens are minted with the server's own keys, read from its data directory (or
its configuration file), as ``teleconsult token`` does: the person who runs a load test
is the one who runs the server, on its host or with a copy of its keys, and needs no
account on the platform. The figures are printed as a table and, with ``--json``, as
one JSON line; the exit status is 1 when any error was counted or no figure of a kind
that was asked for came in, so that a script can tell.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from typing import Any

from teleconsult.config import ConfigError, load_config

__all__ = ["register", "run_loadtest"]


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "loadtest",
        help="load a running server with participants, carts and ECG viewers",
        description="Join N participants publishing synthetic audio and video, stream M "
        "simulated 12-lead carts and watch them with K viewers, for --duration-s; print "
        "join, ack, live and first-frame percentiles, the event-loop lag of the load "
        "generator and of its viewers' processes (figures near it are the generator's, not "
        "the server's) and errors. Exit 1 on any error.",
    )
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--participants", type=int, default=4, help="people with media")
    parser.add_argument("--rooms", type=int, default=2, help="rooms the participants share")
    parser.add_argument("--carts", type=int, default=4, help="simulated ECG carts")
    parser.add_argument("--viewers", type=int, default=2, help="live-ECG viewers")
    parser.add_argument("--cart-rooms", type=int, default=1, help="rooms carts stream into")
    parser.add_argument("--viewer-processes", type=int, default=1,
                        help="processes the viewers run in (each its own event loop)")  # fmt: skip
    parser.add_argument("--duration-s", type=float, default=30.0, help="signal per cart, s")
    parser.add_argument("--drop-every-s", type=float, help="carts drop their connection this often")
    parser.add_argument("--ramp-s", type=float, default=2.0, help="spread the starts over this")
    parser.add_argument("--prefix", default="loadtest", help="names of rooms and devices")
    parser.add_argument("--data-dir", help="the server's data directory (its keys sign tokens)")
    parser.add_argument("--config", help="the server's configuration file")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.set_defaults(handler=run_loadtest)


def run_loadtest(args: argparse.Namespace) -> int:
    """Run the load; print the figures; 0 when nothing went wrong."""
    from sessions.errors import SessionError
    from sessions.tokens import load_key_ring
    from teleconsult.loadtest import LoadPlan, run_load

    counts = (args.participants, args.carts, args.viewers)
    at_least_1 = min(args.rooms, args.cart_rooms, args.viewer_processes)
    if min(counts) < 0 or at_least_1 < 1 or not args.duration_s > 0:
        print("teleconsult loadtest: counts must be >= 0, rooms and viewer processes >= 1, "
              "duration > 0", file=sys.stderr)  # fmt: skip
        return 2
    try:
        config = load_config(args.config, data_dir=args.data_dir)
        keys = load_key_ring(config.data_dir, config.secret)
    except (ConfigError, SessionError, OSError) as exc:
        print(f"teleconsult loadtest: {exc}", file=sys.stderr)
        return 2
    plan = LoadPlan(
        http_url=args.url, keys=keys, participants=args.participants, rooms=args.rooms,
        carts=args.carts, viewers=args.viewers, cart_rooms=args.cart_rooms,
        duration_s=args.duration_s, drop_every_s=args.drop_every_s, prefix=args.prefix,
        ramp_s=args.ramp_s, viewer_processes=args.viewer_processes,
    )  # fmt: skip
    print(
        f"loadtest {args.url}: {args.participants} participants in {args.rooms} rooms, "
        f"{args.carts} carts, {args.viewers} viewers, {args.duration_s:g} s",
        flush=True,
    )
    summary = asyncio.run(run_load(plan)).summary()
    asked = {
        "join": args.participants,
        "first_frame": args.participants if args.participants > args.rooms else 0,
        "ack": args.carts,
        "live": args.viewers if args.carts else 0,
        "viewer_loop_lag": args.viewers,
    }
    missing = [name for name, wanted in asked.items() if wanted and summary[name]["n"] == 0]
    for name in ("join", "first_frame", "ack", "live", "loop_lag", "viewer_loop_lag"):
        row = summary[name]
        figures = "  ".join(
            f"{key.removesuffix('_ms')} {_ms(row[key])}"
            for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
        )
        print(f"{name:15} n {row['n']:6d}  {figures}")
    errors: dict[str, int] = summary["errors"]
    print(
        f"errors          {sum(errors.values())}"
        + "".join(f"\n  {k}: {v}" for k, v in errors.items())
    )
    if missing:
        print(f"no figures for: {', '.join(missing)}")
    if args.json:
        print(json.dumps(_no_nan(summary)))
    return 1 if errors or missing else 0


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f} ms"


def _no_nan(value: Any) -> Any:
    """``value`` with NaN as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value
