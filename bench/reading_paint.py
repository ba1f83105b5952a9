"""Opening a 10 s 12-lead ECG on the reading page to its first full paint on paper.

The ECG centre's target: <= 500 ms on loopback (a reader opens the next ECG the moment
the last is signed). The server is the account and reading APIs
with the pages (uvicorn on 127.0.0.1, the real SQLite store), as
``tests/api/test_readings_web.py`` composes them; each task's ECG is the PTB-XL record
``HR06000`` (12 leads, 500 Hz, 10 s) read in place from ``../shared/ecg``
(``TELECONSULT_ECG_DATA``). A reader logged in once; then ``--repetitions`` times a new
tab of that session opens ``/readings#reading/<id>`` of another task (nothing cached but
what a browser caches), and the time is taken, from the navigation's start, at the first
animation frame after the paper holds the ECG's samples (``performance.now()`` in the
page: the page's scripts, the task, the ECG window with the engine's measurements
computed by the server, and the drawing). Debian's Chromium, headless, 1366x768.

Run on an otherwise idle machine::

    .venv/bin/python bench/reading_paint.py [--repetitions 20] [--cold]

Each task's record is annotated ahead (``api.readings.annotate_ahead``) before the tabs
open, as the server does when a stream's record is written or a record is uploaded;
``--cold`` leaves it to the first window, as before that (for comparison). Percentiles
are interpolated (``statistics.quantiles``, inclusive), as in ``bench/first_frame.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.app import create_app  # noqa: E402
from api.auth import account_api  # noqa: E402
from api.edge import Edge, EdgeConfig  # noqa: E402
from api.readings import WholeRecordSignals, annotate_ahead, reading_api  # noqa: E402
from bench.first_frame import percentile  # noqa: E402
from consults.reading_repositories import ReadingRecord  # noqa: E402
from ecg.record import Record, read_record  # noqa: E402
from tests.conftest import ecg_data_dir  # noqa: E402
from tests.consults.test_reading_service_world import make_reading_world  # noqa: E402
from tests.consults.test_service_world import PASSWORD  # noqa: E402
from tests.pg import make_database  # noqa: E402
from tests.web.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

RECORD = ecg_data_dir() / "ptbxl-sample" / "HR06000"
TARGET_MS = 500.0


class OneRecord(WholeRecordSignals):
    """Every task's ECG is the same 10 s 12-lead record (read once)."""

    def __init__(self) -> None:
        self.record = read_record(RECORD)

    def signal_of(self, record: ReadingRecord) -> Record | None:
        return self.record


async def run(repetitions: int, cold: bool) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory() as folder:
        made = make_reading_world(make_database("sqlite", Path(folder)), whole_library=True)
        world = made.world
        service = made.service
        ids = [
            service.task_for_stream(
                f"s{n}", "village-1", f"patient-{n}", world.clock.now, (), ("SR",)
            ).task.id
            for n in range(repetitions + 1)
        ]
        source = OneRecord()
        if not cold:  # as the server does when a record arrives
            for task_id in ids:
                annotate_ahead(task_id, lambda: source.record).result()
        accounts = account_api(world.accounts, world.directory)
        readings = reading_api(service, source)
        app = create_app(
            route_handlers=[*accounts.route_handlers, *readings.route_handlers],
            dependencies={**accounts.dependencies, **readings.dependencies},
            middleware=[*accounts.middleware, *readings.middleware],
            web_dir=REPO / "web",
        )
        edge = Edge(app, EdgeConfig(port=0), ws_max_size_bytes=1 << 20)
        await edge.start()
        took_ms: list[float] = []
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS
                )
                context = await browser.new_context(viewport={"width": 1366, "height": 768})
                login = {
                    "username": "liu.reader",
                    "password": PASSWORD,
                    "totp": world.totp("liu.reader"),
                }
                answer = await context.request.post(f"{edge.url}/api/v1/auth/login", data=login)
                assert answer.ok, await answer.text()
                for n, task_id in enumerate(ids):
                    page = await context.new_page()
                    await page.goto(f"{edge.url}/readings?lang=en#reading/{task_id}")
                    moment = await page.wait_for_function(
                        "() => window.tcReadings && window.tcReadings.ecg"
                        " && window.tcReadings.counters.samplesDrawn > 1000"
                        " && performance.now()"
                    )
                    if n > 0:  # the first opening warms the server's caches and kernels
                        took_ms.append(float(await moment.json_value()))
                    await page.close()
                await browser.close()
        finally:
            await edge.close()
            world.stores.close()
    took_ms.sort()
    return {
        "repetitions": len(took_ms),
        "annotated_ahead": not cold,
        "p50_ms": round(statistics.median(took_ms), 1),
        "p95_ms": round(percentile(took_ms, 95), 1),
        "max_ms": round(took_ms[-1], 1),
        "each_ms": [round(ms) for ms in took_ms],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument(
        "--cold", action="store_true", help="no annotation ahead: the first window makes it"
    )
    args = parser.parse_args()
    if not RECORD.with_suffix(".hea").exists():
        raise SystemExit(f"the PTB-XL sample is not at {RECORD} (TELECONSULT_ECG_DATA)")
    result = asyncio.run(run(args.repetitions, args.cold))
    print(json.dumps(result))
    verdict = "met" if result["p95_ms"] <= TARGET_MS else "missed"
    print(f"target first full paint <= {TARGET_MS:.0f} ms (p95): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
