"""Time from opening ``/join?...&autojoin=1`` to the first remote video frame rendered.

Starts ``teleconsult serve`` (a subprocess, free 127.0.0.1 port, temporary data dir),
mints tokens with ``teleconsult token``, and drives two real headless Chromium
browsers (Debian's ``/usr/bin/chromium``, fake camera and microphone). Each
repetition uses a fresh room: client A opens the page and waits until it is in the
room and publishing; then client B opens its page, and we record

- ``joiner``: on B's page, ``performance.now()`` at the first frame of A's video
  (``requestVideoFrameCallback``), i.e. from navigation start to a rendered frame;
- ``seen_by_present``: from B's navigation start to the first frame of B's video
  rendered on A's page (wall clock, both pages on this machine).

Both clients then leave (the Leave button) before the next repetition.

    .venv/bin/python bench/first_frame.py --repetitions 20

Prints one line per repetition and the p50 / p95 of each (target: p95 <= 1.5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from teleconsult.cli import main as teleconsult_main  # noqa: E402
from tests.web.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

TARGET_P95_S = 1.5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def mint(data_dir: Path, identity: str, room: str) -> str:
    """``teleconsult token`` (in-process: the same command, without a Python start-up)."""
    out = io.StringIO()
    argv = ["token", "--identity", identity, "--name", identity, "--role", "expert"]
    argv += ["--room", room, "--moderator", "--data-dir", str(data_dir)]
    with contextlib.redirect_stdout(out):
        status = teleconsult_main(argv)
    if status != 0:
        raise RuntimeError(f"teleconsult token failed with {status}")
    return out.getvalue().strip().splitlines()[-1]


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "teleconsult", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--log-level", "WARNING"]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"teleconsult serve exited with {server.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return server
        time.sleep(0.1)
    server.terminate()
    raise RuntimeError("teleconsult serve did not start listening in 30 s")


async def open_client(browser: Browser, url: str) -> Page:
    context = await browser.new_context(viewport={"width": 800, "height": 600})
    page = await context.new_page()
    await page.goto(url, wait_until="commit")
    return page


async def first_frame_at(page: Page, timeout_s: float) -> float:
    """``performance.timeOrigin + firstFrameMs`` on ``page``, epoch milliseconds."""
    await page.wait_for_function(
        "() => window.tc && window.tc.firstFrameMs !== null", timeout=timeout_s * 1000
    )
    value: float = await page.evaluate("() => performance.timeOrigin + window.tc.firstFrameMs")
    return value


async def repetition(
    browsers: list[Browser], base: str, tokens: tuple[str, str], camera: tuple[int, int, int]
) -> tuple[float, float]:
    width, height, fps = camera
    query = f"&autojoin=1&w={width}&h={height}&fps={fps}"
    a = await open_client(browsers[0], f"{base}/join?token={tokens[0]}{query}")
    await a.wait_for_function(
        "() => window.tc && window.tc.screen === 'room' && window.tc.media"
        " && window.tc.media.publishPc"
        " && window.tc.media.publishPc.connectionState === 'connected'",
        timeout=20000,
    )
    b = await open_client(browsers[1], f"{base}/join?token={tokens[1]}{query}")
    b_origin: float = await b.evaluate("() => performance.timeOrigin")
    joiner_ms = await first_frame_at(b, 20) - b_origin
    present_ms = await first_frame_at(a, 20) - b_origin
    if os.environ.get("FIRST_FRAME_MARKS"):
        print("  joiner marks (ms):", await b.evaluate("() => window.tc.marks"))
    for page in (a, b):
        await page.click("#leave")
        await page.context.close()
    return joiner_ms / 1000, present_ms / 1000


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
        if len(values) > 1
        else values[0]
    )


async def run(repetitions: int, warmup: int, camera: tuple[int, int, int]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="first-frame-") as tmp:
        data_dir = Path(tmp) / "var"
        port = free_port()
        server = start_server(data_dir, port)
        base = f"http://127.0.0.1:{port}"
        try:
            async with async_playwright() as playwright:
                browsers = [
                    await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    for _ in range(2)
                ]
                joiner: list[float] = []
                present: list[float] = []
                for index in range(warmup + repetitions):
                    room = f"bench-{index}"
                    tokens = (mint(data_dir, f"a{index}", room), mint(data_dir, f"b{index}", room))
                    j, p = await repetition(browsers, base, tokens, camera)
                    label = "warm-up" if index < warmup else f"{index - warmup + 1:3d}"
                    print(f"{label}: joiner {j:.3f} s   seen by present {p:.3f} s", flush=True)
                    if index >= warmup:
                        joiner.append(j)
                        present.append(p)
                for browser in browsers:
                    await browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    result = {
        "repetitions": repetitions,
        "camera": "{}x{}@{}".format(*camera),
        "joiner_p50_s": round(statistics.median(joiner), 3),
        "joiner_p95_s": round(percentile(joiner, 95), 3),
        "seen_by_present_p50_s": round(statistics.median(present), 3),
        "seen_by_present_p95_s": round(percentile(present, 95), 3),
        "target_p95_s": TARGET_P95_S,
        "cpu_count": os.cpu_count(),
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=1, help="repetitions not counted")
    parser.add_argument(
        "--camera", default="640x360@24", help="camera constraints WIDTHxHEIGHT@FPS"
    )
    args = parser.parse_args()
    try:
        size, fps = args.camera.split("@")
        width, height = size.split("x")
        camera = (int(width), int(height), int(fps))
    except ValueError:
        parser.error(f"--camera must look like 640x360@24, not {args.camera!r}")
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found", file=sys.stderr)
        return 2
    result = asyncio.run(run(args.repetitions, args.warmup, camera))
    print(
        f"joiner:          p50 {result['joiner_p50_s']:.3f} s   p95 {result['joiner_p95_s']:.3f} s"
    )
    print(
        f"seen by present: p50 {result['seen_by_present_p50_s']:.3f} s"
        f"   p95 {result['seen_by_present_p95_s']:.3f} s   (target p95 <= {TARGET_P95_S} s)"
    )
    print(json.dumps(result))
    ok = max(result["joiner_p95_s"], result["seen_by_present_p95_s"]) <= TARGET_P95_S  # type: ignore[type-var]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
