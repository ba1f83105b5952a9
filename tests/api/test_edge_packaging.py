"""A built wheel carries the browser assets, and the edge run from the unpacked wheel (no
source checkout on the path) serves its pages from there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built without network (no build isolation, no dependencies)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(out), str(REPO)],
        check=True, capture_output=True, cwd=out,
    )  # fmt: skip
    (built,) = out.glob("teleconsult-*.whl")
    return built


def test_wheel_contains_every_page_asset(wheel: Path) -> None:
    """Every asset in web/ (pages, scripts, styles) is in the wheel under web/."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assets = {
        f"web/{path.name}"
        for path in (REPO / "web").iterdir()
        if path.suffix in (".html", ".js", ".css", ".svg", ".json")
    }
    assert {"web/index.html", "web/ecg.html", "web/app.js"} <= assets
    assert assets | {"web/__init__.py"} <= names, sorted(assets - names)


# Run with only the unpacked wheel on the path: the edge app with its default web folder
# (the package data), on a free port, fetching its own pages.
SERVE_AND_FETCH = """
import asyncio, json, httpx
from api.app import create_app
from api.edge import Edge, EdgeConfig
from api.pages import package_web_dir

async def main():
    edge = Edge(create_app(web_dir=package_web_dir()), EdgeConfig(port=0), ws_max_size_bytes=65536)
    await edge.start()
    async with httpx.AsyncClient(base_url=edge.url) as client:
        join, script = await client.get("/join"), await client.get("/static/app.js")
    await edge.close()
    print(json.dumps({"dir": str(package_web_dir()), "join": [join.status_code, join.text],
                      "script": [script.status_code, script.text]}))

asyncio.run(main())
"""


def test_unpacked_wheel_serves_its_own_pages(wheel: Path, tmp_path: Path) -> None:
    """The edge run from the unpacked wheel serves /join and /static from the wheel's copy."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    page = site / "web" / "index.html"
    page.write_text(page.read_text() + "<!-- from the wheel -->\n")
    # Only the unpacked wheel is ours on the path: the checkout's packages must not be found.
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_FETCH],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=True,
    )  # fmt: skip
    served = json.loads(done.stdout.splitlines()[-1])
    assert Path(served["dir"]) == site / "web"
    assert served["join"][0] == 200
    assert served["join"][1].endswith("<!-- from the wheel -->\n")
    assert served["script"] == [200, (site / "web" / "app.js").read_text()]
