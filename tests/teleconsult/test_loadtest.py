"""``teleconsult loadtest`` against a real ``teleconsult serve`` on 127.0.0.1, tiny size."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def loadtest(url: str, data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "teleconsult", "loadtest", "--url", url]
    command += ["--data-dir", str(data), "--json", *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=180)


@contextlib.contextmanager
def serving(data: Path) -> Iterator[str]:
    """A ``teleconsult serve`` on a free 127.0.0.1 port for the block: its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "teleconsult", "serve", "--port", "0", "--data-dir", str(data),
         "--log-level", "WARNING"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("teleconsult serving on"):
                yield line.split()[3]
                return
        pytest.fail("teleconsult serve did not start")
    finally:
        process.terminate()
        process.wait(60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with serving(tmp_path / "var") as url:
        yield url, tmp_path / "var"


def test_tiny_load_prints_plausible_figures(server: tuple[str, Path]) -> None:
    """2 participants in one room, 2 carts and a viewer for 6 s: every figure is there,
    every latency positive and under the run's length, and no error: exit 0."""
    url, data = server
    result = loadtest(url, data, "--participants", "2", "--rooms", "1", "--carts", "2",
                      "--viewers", "1", "--duration-s", "6", "--ramp-s", "0.5")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("join", "first_frame", "ack", "live", "loop_lag", "viewer_loop_lag", "errors"):
        assert any(line.startswith(name) for line in result.stdout.splitlines()), result.stdout
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["errors"] == {}
    assert figures["join"]["n"] == 2
    assert figures["first_frame"]["n"] == 2  # each sees the other's video
    assert figures["ack"]["n"] >= 2 * 6 * 5 * 0.9  # frames of 0.2 s, nearly all acked
    assert figures["live"]["n"] > 0
    # The load test's own loop, sampled every 0.1 s over the run (6 s and more).
    assert figures["loop_lag"]["n"] >= 50
    assert 0 <= figures["loop_lag"]["p50_ms"] <= figures["loop_lag"]["max_ms"] < 15_000
    # The viewer's process's loop, sampled the same way over the viewer's run.
    assert figures["viewer_loop_lag"]["n"] >= 50
    assert figures["live_unmatched"] == 0
    for name in ("join", "first_frame", "ack", "live"):
        row = figures[name]
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"] < 15_000, (name, row)


def test_stopped_server_gives_errors_and_exit_1(tmp_path: Path) -> None:
    """The server has stopped: every client fails, each counted as an error; exit 1."""
    with serving(tmp_path / "var") as url:
        pass
    result = loadtest(url, tmp_path / "var", "--participants", "1", "--carts", "1",
                      "--viewers", "1", "--duration-s", "1")  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    figures = json.loads(result.stdout.splitlines()[-1])
    assert sum(figures["errors"].values()) >= 3, figures["errors"]
    assert figures["join"]["n"] == figures["ack"]["n"] == 0
