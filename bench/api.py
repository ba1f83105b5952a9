"""The platform benchmark: the edge before and after the move to ASGI, and the API at scale.

Two parts (``--part edge,api``, both by default):

``edge``
    The three figures the move to one ASGI edge must keep within 10 %: the signaling
    join round trip (``bench/signaling_load.py``: p99), the first remote video frame
    (``bench/first_frame.py``: seen-by-present p95) and live ECG under load
    (``bench/ecg_live.py --streams N --skip latency,exact``: ack p95 and server CPU).
    Each benchmark is run from a checkout of the commit *before* the move (``--before``,
    a ``git worktree`` in a temporary folder, with this same virtual environment) and
    from this tree, alternating before/after ``--rounds`` times so that drift of the
    machine's load falls on both alike; the ratio after/before is printed per figure.
``api``
    Login and directory listing over HTTP with ``--people`` (10,000) people in
    ``--institutions`` (300) institutions and ``--audit-rows`` (1,000,000) audit rows,
    on SQLite and on PostgreSQL (a private server started for the run, fsync on): the
    store is filled by ``bench/api_store.py``'s :func:`populate`, then the server is
    assembled as ``teleconsult serve`` does (``teleconsult.app.assemble``, real uvicorn
    on loopback, in a thread of its own) and a client in the main thread measures, one
    request at a time, p50/p99 of ``POST /api/v1/auth/login`` (``--logins`` of them, by
    ``--login-people`` people whose passwords were set through the accounts API, so the
    real argon2id policy is paid: that is most of a login) and of ``GET
    /api/v1/people?institution=…&role=doctor`` (one page of 50 with the total, as a
    deployment admin, ``--samples`` of them).

Run on an otherwise idle machine::

    .venv/bin/python bench/api.py --part edge --before bc20d4a --rounds 2
    .venv/bin/python bench/api.py --part api [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The last commit served by the websockets server.
BEFORE_DEFAULT = "bc20d4a"


def _json_tail(output: str) -> dict[str, float]:
    """The last line of output that parses as a JSON object."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            parsed: dict[str, float] = json.loads(line)
            return parsed
    raise RuntimeError("no JSON result line in:\n" + output[-2000:])


_LIVE_LINE = re.compile(
    r"N=\s*(?P<n>\d+): ack p50/p95 (?P<a50>\d+)/(?P<a95>\d+) ms, live p50/p95 "
    r"(?P<l50>\d+)/(?P<l95>\d+) ms, server CPU (?P<cpu>\d+) %"
)


def _live(output: str) -> dict[str, float]:
    match = _LIVE_LINE.search(output)
    if match is None:
        raise RuntimeError("no load line in:\n" + output[-2000:])
    return {
        "ack_p95_ms": float(match["a95"]),
        "live_p95_ms": float(match["l95"]),
        "server_cpu_pct": float(match["cpu"]),
    }


def _run(tree: Path, args: list[str], timeout_s: float) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(
        [sys.executable, *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode not in (0, 1):  # first_frame exits 1 when it misses its target
        raise RuntimeError(f"{args} in {tree} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


Bench = tuple[str, list[str], Callable[[str], dict[str, float]], list[str], float]


def edge(before: str, rounds: int, streams: int, repetitions: int) -> int:
    benches: list[Bench] = [
        (
            "signaling",
            ["bench/signaling_load.py"],
            _json_tail,
            ["join_p99_ms", "server_cpu_per_join_ms", "rss_per_connection_kib"],
            600,
        ),
        (
            "first frame",
            ["bench/first_frame.py", "--repetitions", str(repetitions)],
            _json_tail,
            ["seen_by_present_p95_s", "joiner_p95_s"],
            900,
        ),
        (
            "live ECG",
            ["bench/ecg_live.py", "--streams", str(streams), "--skip", "latency,exact"],
            _live,
            ["ack_p95_ms", "live_p95_ms", "server_cpu_pct"],
            900,
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="tc-before-") as tmp:
        old = Path(tmp) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old), before],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        try:
            # The old tree compiles its own copy of the ECG kernels once.
            _run(old, ["-m", "ecg.warmup"], 300)
            results: dict[tuple[str, str], dict[str, list[float]]] = {}
            for name, args, parse, keys, timeout_s in benches:
                for round_ in range(rounds):
                    for label, tree in (("before", old), ("after", REPO)):
                        started = time.monotonic()
                        figures = parse(_run(tree, args, timeout_s))
                        slot = results.setdefault((name, label), {k: [] for k in keys})
                        for key in keys:
                            slot[key].append(figures[key])
                        took = time.monotonic() - started
                        print(
                            f"{name:12} round {round_ + 1} {label:6} "
                            + "  ".join(f"{k} {figures[k]}" for k in keys)
                            + f"  ({took:.0f} s)",
                            flush=True,
                        )
            print(f"\nmedian of {rounds} round(s), before = {before}, after = working tree")
            print(
                f"{'benchmark':12} {'figure':24} {'before':>10} {'after':>10} {'after/before':>13}"
            )
            for name, _, _, keys, _ in benches:
                for key in keys:
                    b = statistics.median(results[(name, "before")][key])
                    a = statistics.median(results[(name, "after")][key])
                    print(f"{name:12} {key:24} {b:10.3f} {a:10.3f} {a / b:13.2f}")
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old)], cwd=REPO, check=False
            )
    return 0


def _percentiles(times_ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(times_ms, n=100)
    return {"p50_ms": round(cuts[49], 2), "p99_ms": round(cuts[98], 2), "n": len(times_ms)}


def _serve_in_thread(config: Any) -> tuple[Any, Callable[[], None]]:
    """The assembled server on its own event loop in a thread; (assembly, stop)."""
    import asyncio
    import threading

    from teleconsult.app import assemble

    assembly = assemble(config, ecg=False)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(assembly.server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="server", daemon=True)
    thread.start()
    ready.wait(60)

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(assembly.server.close(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return assembly, stop


def api(args: argparse.Namespace) -> int:
    """The API part: see the module notes."""
    import random

    import httpx

    sys.path.insert(0, str(REPO))
    from api.edge_config import EdgeConfig
    from bench.api_store import populate
    from consults.repositories import PageRequest, PeopleFilter
    from store.stores import open_store
    from teleconsult.config import BackendsSection, Config, DataSection

    password, admin_password = "bench passphrase 1", "bench admin passphrase"
    results: dict[str, Any] = {}
    for kind in args.databases.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-api-") as folder:
            pg = None
            url = None
            if kind == "postgresql":
                from tests.pg import PostgresServer

                pg = PostgresServer().start(durable=True)
                url = pg.url(pg.create_database("bench"))
            try:
                stores = open_store(data_dir=Path(folder), database_url=url)
                made = populate(
                    stores,
                    people=args.people,
                    institutions=args.institutions,
                    audit_rows=args.audit_rows,
                )
                stores.close()
                config = Config(
                    server=EdgeConfig(port=0),
                    data=DataSection(data_dir=Path(folder)),
                    backends=BackendsSection(database_url=url),
                )
                assembly, stop = _serve_in_thread(config)
                try:
                    platform = assembly.platform
                    root = platform.directory.create_first_admin(
                        username="benchroot", display_name="Bench", password=admin_password
                    )
                    rng = random.Random(5)
                    chosen = rng.sample(made["usernames"], args.login_people)
                    for username in chosen:
                        found = platform.stores.directory.person_by_username(username)
                        assert found is not None
                        platform.directory.reset_password(root, found.id, password)
                    base = assembly.server.url
                    figures: dict[str, Any] = {}
                    with httpx.Client(base_url=base, timeout=30) as http:
                        logins: list[float] = []
                        for n in range(args.logins + 5):
                            body = {"username": chosen[n % len(chosen)], "password": password}
                            started = time.perf_counter()
                            answer = http.post("/api/v1/auth/login", json=body)
                            took = (time.perf_counter() - started) * 1000
                            assert answer.status_code == 200, answer.text
                            if n >= 5:  # warm-up
                                logins.append(took)
                        figures["login"] = _percentiles(logins)
                        answer = http.post(
                            "/api/v1/auth/login",
                            json={"username": "benchroot", "password": admin_password},
                        )
                        headers = {"authorization": f"Bearer {answer.json()['token']}"}
                        pages: list[float] = []
                        codes = made["codes"]
                        for n in range(args.samples + 20):
                            code = rng.choice(codes)
                            started = time.perf_counter()
                            answer = http.get(
                                f"/api/v1/people?institution={code}&role=doctor&limit=50",
                                headers=headers,
                            )
                            took = (time.perf_counter() - started) * 1000
                            assert answer.status_code == 200, answer.text
                            if n >= 20:
                                pages.append(took)
                        figures["people_page"] = _percentiles(pages)
                        listed = platform.stores.directory.list_people(
                            PeopleFilter(), PageRequest(limit=1)
                        )
                        figures["people"] = listed.total
                        figures["audit_rows"] = args.audit_rows
                    results[kind] = figures
                    print(kind, json.dumps(figures), flush=True)
                finally:
                    stop()
            finally:
                if pg is not None:
                    pg.stop()
    print(json.dumps(results))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="edge,api", help="comma list of edge,api")
    parser.add_argument("--before", default=BEFORE_DEFAULT, help="the commit before ASGI")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--streams", type=int, default=200, help="carts for the live run")
    parser.add_argument("--repetitions", type=int, default=20, help="first-frame repetitions")
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--institutions", type=int, default=300)
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2000, help="people pages measured")
    parser.add_argument("--logins", type=int, default=300)
    parser.add_argument("--login-people", type=int, default=50)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    parts = set(args.part.split(","))
    status = 0
    if "edge" in parts:
        status |= edge(args.before, args.rounds, args.streams, args.repetitions)
    if "api" in parts:
        status |= api(args)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
