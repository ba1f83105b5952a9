"""Everything the server creates in its data dir is its user's alone: folders 0700,
files 0600 (the database holds password hashes and the audit trail, the stream folders
the patients' ECGs and ids, the key files the keys).

Every command runs under :func:`teleconsult.cli.private_umask`, whatever umask it was
started with. The privacy story of :mod:`tests.teleconsult.test_privacy_log` runs on the
assembled server (a consult, a stream stored and finalised, a stream the store cannot
create) under it, from the loosest usual umask (022), and the data dir is walked after
the stop; ``teleconsult serve`` is run as a command from umask 022 while a cart streams.
"""

from __future__ import annotations

import asyncio
import math
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sessions.tokens import load_secret
from teleconsult.app import STREAMS_DIR
from teleconsult.cli import private_umask
from teleconsult.device_cmd import simulate
from tests.conftest import REPO
from tests.signaling.test_device_endpoint import DEVICE, device_token, record
from tests.store_changes import StoreChanges
from tests.teleconsult.test_platform_server import Running, assembled, server_config
from tests.teleconsult.test_privacy_log import story

pytestmark = pytest.mark.slow


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The umask 022 a service usually starts with (group and others may read)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def loose(root: Path) -> list[str]:
    """Whatever under ``root`` (itself included) others or the group may use."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode & 0o077 or (path.is_dir() and mode != want):
            found.append(f"{path.relative_to(root.parent)} {mode:o}")
    return found


async def test_the_data_dir_and_all_in_it_are_private(tmp_path: Path, open_umask: None) -> None:
    """After a whole story, no folder of the data dir is other than 0700 and no file
    opens to the group or others."""
    config = server_config(tmp_path)
    with private_umask():
        assembly = assembled(config)
        await assembly.server.start()
        try:
            async with httpx.AsyncClient(base_url=assembly.server.url, timeout=30) as http:
                with StoreChanges(assembly.platform.stores.engine) as changes:
                    await story(Running(assembly, http, changes), config.data_dir)
        finally:
            await assembly.server.close()
    assert os.umask(0o022) == 0o022  # restored after the block
    assert any(config.data_dir.rglob("*.hea"))  # a stream was stored and finalised
    assert loose(config.data_dir) == [], "\n".join(loose(config.data_dir))


async def test_serve_makes_its_data_dir_private(tmp_path: Path) -> None:
    """``teleconsult serve`` started with umask 022 stores a cart's stream (its folder,
    samples, start and WFDB record) and stops: everything in its data dir is private."""
    data = tmp_path / "var"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "teleconsult", "serve", "--port", "0", "--data-dir", str(data),
        "--log-level", "WARNING", stdout=asyncio.subprocess.PIPE, cwd=REPO, umask=0o022,
    )  # fmt: skip
    try:
        port = await serving_port(process)
        token = device_token(secret=load_secret(data, None))
        await simulate(
            record(1.0), url=f"ws://127.0.0.1:{port}/device", token=token, device=DEVICE,
            speed=math.inf,
        )  # fmt: skip
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 60)
    assert any((data / STREAMS_DIR).rglob("*.hea"))
    assert loose(data) == [], "\n".join(loose(data))


async def serving_port(process: asyncio.subprocess.Process) -> int:
    """The port ``teleconsult serve`` says it serves on."""
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert line, "teleconsult serve did not start"
        if line.startswith("teleconsult serving on"):
            return int(line.split()[3].rsplit(":", 1)[1])
