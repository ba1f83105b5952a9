"""Signaling load: 1,000 participants (no media) across 250 rooms on one server process.

Run: ``.venv/bin/python bench/signaling_load.py [--participants 1000] [--rooms 250]
[--rate 250]``.

The server runs in a subprocess (this same file with ``--serve``): the real edge
(uvicorn, ``EdgeServer``), ``SignalingServer`` and protocol core with the embedded
SQLite Store, and a media backend that does nothing, so that only signaling is
measured. The waiting room is
off so that every join is answered by ``joined`` at once (each join also broadcasts
``participant_joined`` to the others in its room and writes an audit entry).

Measured:

- join round trip: from sending ``join`` to receiving ``joined``, each participant on
  its own already-open WebSocket, joins started at ``--rate`` per second while all the
  earlier participants stay connected; p50/p95/p99 (target p99 <= 100 ms);
  ``--rate 0`` starts every join at once instead (a burst: the round trip then
  measures queueing behind the other 999 joins, client process included);
- server CPU per join (user + system time of the server process during the joins,
  which the load of other processes on the machine does not inflate as much as it
  does latency);
- server memory per idle connection: (RSS with every participant joined and idle -
  RSS before any connection) / participants.

File descriptors: both processes raise RLIMIT_NOFILE to the hard limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from sessions.tokens import mint_token  # noqa: E402
from signaling.ports import (  # noqa: E402
    IceServerDict,
    MediaListener,
    PeerRole,
    RecordingListener,
    TrackKind,
)


class NullMedia:
    """A MediaBackend that accepts everything and does nothing (and records nothing)."""

    on_recording: RecordingListener | None = None

    def set_recording(self, room_id: str, on: bool) -> None:
        raise ValueError("this benchmark's media backend does not record")

    def stats(self) -> dict[str, int]:
        return {}

    async def join(
        self, room_id: str, participant_id: str, listener: MediaListener, ice: list[IceServerDict]
    ) -> None:
        return None

    async def offer(self, participant_id: str, pc: PeerRole, sdp: str) -> str:
        return sdp

    async def answer(self, participant_id: str, pc: PeerRole, sdp: str) -> None:
        return None

    async def candidate(
        self, participant_id: str, pc: PeerRole, c: str | None, mid: str | None, i: int | None
    ) -> None:
        return None

    async def set_paused(self, participant_id: str, kind: TrackKind, paused: bool) -> None:
        return None

    async def set_receiving(self, participant_id: str, kind: TrackKind, receiving: bool) -> None:
        return None

    async def leave(self, participant_id: str) -> None:
        return None

    async def close(self) -> None:
        return None


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def serve(data_dir: Path, secret: str) -> None:
    """The server subprocess: print the port, run until stdin closes."""
    import functools

    from api.edge import EdgeConfig, EdgeServer
    from sessions.store import LocalBus
    from sessions.tokens import verify_token
    from signaling.core import Core, CoreConfig
    from signaling.server import SignalingServer
    from store.stores import open_store

    store = open_store(data_dir=data_dir).signaling
    core = Core(
        config=CoreConfig(waiting_room=False),
        verify=functools.partial(verify_token, secret),
        ice_servers=lambda identity: [],
        banned=store.banned_jtis(),
    )
    signaling = SignalingServer(core=core, media=NullMedia(), store=store, bus=LocalBus())
    # Every participant comes from 127.0.0.1: lift the per-address cap (default 200).
    edge_config = EdgeConfig(
        port=0, max_connections_per_address=1_000_000, max_http_connections_per_address=1_000_000
    )
    server = EdgeServer(signaling=signaling, config=edge_config)
    await server.start()
    print(f"PORT {server.port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close()


def start_server(data_dir: Path, secret: str) -> tuple[subprocess.Popen[str], int]:
    """Start the server subprocess; return it and its port."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--data-dir", str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "BENCH_SECRET": secret},
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline().split()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def join_one(ws: ClientConnection, token: str) -> float:
    """Send join, wait for joined; the round trip in seconds."""
    started = time.perf_counter()
    await ws.send(json.dumps({"type": "join", "token": token}))
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "joined":
            return time.perf_counter() - started
        if message["type"] == "error":
            raise RuntimeError(f"join refused: {message}")


async def drain(ws: ClientConnection) -> None:
    """Read and drop events (participant_joined) so that buffers never fill."""
    try:
        async for _ in ws:
            pass
    except Exception:
        return


async def load(participants: int, rooms: int, rate_per_s: float) -> dict[str, float]:
    secret = secrets.token_urlsafe(32)
    nofile = raise_nofile()
    if nofile < participants + 100:
        raise SystemExit(f"RLIMIT_NOFILE is {nofile}: too low for {participants} connections")
    with tempfile.TemporaryDirectory() as data_dir:
        process, port = start_server(Path(data_dir), secret)
        assert process.stdin is not None
        try:
            await asyncio.sleep(1.0)
            rss_before = rss_bytes(process.pid)
            url = f"ws://127.0.0.1:{port}/ws"
            tokens = [
                mint_token(
                    secret,
                    identity=f"user-{i}",
                    name=f"User {i}",
                    role="expert",
                    room=f"room-{i % rooms}",
                )
                for i in range(participants)
            ]
            sockets: list[ClientConnection] = []
            for start in range(0, participants, 100):
                batch = await asyncio.gather(
                    *(
                        connect(url, compression=None)
                        for _ in range(start, min(start + 100, participants))
                    )
                )
                sockets.extend(batch)
            latencies: list[float] = []
            readers: list[asyncio.Task[None]] = []

            async def one(i: int) -> None:
                latencies.append(await join_one(sockets[i], tokens[i]))
                readers.append(asyncio.create_task(drain(sockets[i])))

            cpu_before = cpu_s(process.pid)
            started = time.perf_counter()
            tasks = []
            for i in range(participants):
                delay = started + i / rate_per_s - time.perf_counter() if rate_per_s > 0 else 0
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
            server_cpu = cpu_s(process.pid) - cpu_before
            await asyncio.sleep(3.0)  # idle: pings, audit writes settle
            rss_idle = rss_bytes(process.pid)
            health_ok = all(ws.state.name == "OPEN" for ws in sockets)
            for ws in sockets:
                await ws.close()
            for reader in readers:
                reader.cancel()
        finally:
            process.stdin.close()
            process.wait(30)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "participants": participants,
        "rooms": rooms,
        "join_rate_per_s": rate_per_s,
        "joins_elapsed_s": round(elapsed, 2),
        "join_p50_ms": round(quantiles[49] * 1000, 2),
        "join_p95_ms": round(quantiles[94] * 1000, 2),
        "join_p99_ms": round(quantiles[98] * 1000, 2),
        "join_max_ms": round(max(latencies) * 1000, 2),
        "server_cpu_per_join_ms": round(server_cpu / participants * 1000, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_idle_mib": round(rss_idle / 2**20, 1),
        "rss_per_connection_kib": round((rss_idle - rss_before) / participants / 1024, 1),
        "all_open_at_end": float(health_ok),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=250)
    parser.add_argument(
        "--rate", type=float, default=250.0, help="joins started per second (0: all at once)"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        raise_nofile()
        asyncio.run(serve(args.data_dir, os.environ["BENCH_SECRET"]))
        return 0
    result = asyncio.run(load(args.participants, args.rooms, args.rate))
    for key, value in result.items():
        print(f"{key:26} {value}")
    print(json.dumps(result))
    target = "met" if result["join_p99_ms"] <= 100 else "MISSED"
    print(f"target join p99 <= 100 ms: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
