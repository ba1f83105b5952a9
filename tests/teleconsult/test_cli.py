"""The command line parses and prints its help."""

from __future__ import annotations

import pytest

from teleconsult.cli import main


def test_version_prints_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    """``teleconsult --version`` names the program."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("teleconsult ")
