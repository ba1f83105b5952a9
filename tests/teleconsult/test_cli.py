"""The command line parses and prints its help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from teleconsult.cli import main


def test_version_prints_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """``teleconsult --version`` names the program."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("teleconsult ")


HEAVY = ("numpy", "scipy", "numba", "aiortc", "av")


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["token", "--help"],
        ["setup", "--help"],
        ["audit", "verify", "--help"],
        ["backup", "--help"],
        ["restore", "--help"],
    ],
)
def test_commands_that_process_no_signal_import_no_signal_library(argv: list[str]) -> None:
    """In a fresh interpreter, parsing these commands imports none of numpy, scipy, numba,
    aiortc or av (what made every command take seconds to start)."""
    code = (
        "import sys\n"
        "from teleconsult.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` registers every command to list it."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("serve", "token", "setup", "ecg", "device", "recording", "audit", "backup"):
        assert name in out
