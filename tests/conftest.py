"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def ecg_data_dir() -> Path:
    """The public ECG databases, read in place (``TELECONSULT_ECG_DIR``, default ../shared/ecg)."""
    return Path(os.environ.get("TELECONSULT_ECG_DIR", REPO.parent / "shared" / "ecg")).resolve()


@pytest.fixture(scope="session")
def ecg_dir() -> Path:
    """The folder of public ECG databases; tests that need it skip where it is absent."""
    path = ecg_data_dir()
    if not (path / "mitdb" / "100.hea").exists():
        pytest.skip(f"public ECG databases not found at {path} (set TELECONSULT_ECG_DIR)")
    return path


@pytest.fixture(scope="session", autouse=True)
def ecg_kernels_warm() -> None:
    """Compiled ECG kernels in numba's cache before any test: servers and CLI processes
    started by tests then load them instead of compiling (20-30 s of CPU when cold)."""
    from ecg.warmup import warm_up

    warm_up()
