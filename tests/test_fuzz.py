"""bench/fuzz.py on a small budget: every parser answers only documented outcomes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_short_fuzz_run_finds_no_undocumented_outcome() -> None:
    """2,000 inputs per parser (200 WFDB records): exit 0 and a zero in every row."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fuzz.py"), "--inputs", "2000", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line[:1].islower()]
    names = {row[0] for row in rows if len(row) == 4 and row[1].isdigit()}
    assert names == {"ws", "device-frame", "device-message", "sdp", "rest", "wfdb"}
    assert "undocumented outcomes: 0" in done.stdout
