"""Scrolling a 24 h 2-lead Holter-length record on the reading page, in Chromium's
performance timeline.

The ECG centre's target: such a record "scrolls without a dropped frame on this
machine". The record is MIT-BIH record ``100`` (a real 2-lead Holter recording, MLII
and V5 at 360 Hz, 30 min) read in place from ``../shared/ecg`` (``TELECONSULT_ECG_DIR``)
and looped to 24 h (48 times), written as a WFDB record (format 16, 124 MB) in the
bench's temporary folder and read window by window as the server's stream and upload
stores read theirs (``api.readings.file_window``: only the window's bytes), the task
made for it as for a finished stream. The server is the account and reading APIs with
the pages (uvicorn on 127.0.0.1, the real SQLite store), composed as
``bench/reading_paint.py`` does; a reader logs in and opens ``/readings#reading/<id>``
in Debian's Chromium (headless, 1366x768).

The page pages the record a window (10 s) at a time with its Earlier/Later buttons;
the reader here holds the Later button down from the keyboard (focused, Enter every
``--interval-ms``, as a key's auto-repeat does) for ``--seconds`` in all, split over
stretches starting at 0, 6, 12, 18 and 23.9 h into the record (0 and 12 h with
``--quick``; the page has no control to jump hours: the bench sets the page's start
there, as hours of paging would leave it). Meanwhile Chromium records its timeline (CDP
``Tracing``: ``devtools.timeline``, ``disabled-by-default-devtools.timeline.frame``,
``benchmark``, ``cc``) and the page runs probes. Reported:

- frames and dropped frames, from the trace's ``PipelineReporter`` events: a vsync's
  frame with an update, dropped when its update (or the main thread's part of it)
  missed that vsync and came later, as DevTools' frames track shows them;
- for the dropped frames, the pipeline stage that took longest in their reporters (what
  they waited on: the main thread's part, raster, the display compositor);
- the intervals of a ``requestAnimationFrame`` loop (p50/p95/p99/max, and how many
  exceed 1.5 x 16.7 ms), and the main thread's tasks over 50 ms;
- the paper's drawing (``counters.drawMs``: the canvas work of a window), the time from
  a press to the paper drawn with the window it asked for (p50/p95), the windows
  pressed for and never drawn, and the windows drawn over a later one (an earlier
  press's late answer);
- the window requests' latency (resource timing of ``GET /api/v1/readings/{id}/ecg``,
  p50/p95) and how many were asked for and drawn.

Before the stretches, the page sits for one stretch's time with no press and the same
probes ("idle"): what the machine alone costs its frames (it was not idle when this
was written). ``--compare REV`` serves the pages of git revision ``REV`` (``git
archive`` into a temporary folder; or a folder of pages) too, from a second server on
the same store and record, and the two pages take turns over the same stretches (the
order alternating), so that one run gives both and the ratio::

    .venv/bin/python bench/holter_scroll.py [--quick] [--compare REV] [--json]

The full run scrolls 25 s per page: about 1 min with the setup, 2 with ``--compare``;
``--quick`` 6 s. Percentiles are interpolated (``statistics.quantiles``, inclusive), as
in ``bench/first_frame.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from playwright.async_api import TimeoutError as PlaywrightTimeout

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from api.app import create_app  # noqa: E402
from api.auth import account_api  # noqa: E402
from api.edge import Edge, EdgeConfig  # noqa: E402
from api.readings import annotate_ahead, file_length, file_window, reading_api  # noqa: E402
from bench.first_frame import percentile  # noqa: E402
from consults.reading_repositories import ReadingRecord  # noqa: E402
from ecg.record import Record, read_record  # noqa: E402
from tests.conftest import ecg_data_dir  # noqa: E402
from tests.consults.test_reading_service_world import make_reading_world  # noqa: E402
from tests.consults.test_service_world import PASSWORD  # noqa: E402
from tests.pg import make_database  # noqa: E402
from tests.web.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

SOURCE = ecg_data_dir() / "mitdb" / "100"
HOURS = 24.0
VSYNC_MS = 1000.0 / 60.0
LATE_MS = 1.5 * VSYNC_MS
TRACE_CATEGORIES = ",".join(
    [
        "devtools.timeline",
        "disabled-by-default-devtools.timeline.frame",
        "benchmark",
        "cc",
        "viz",
    ]
)
# The page's rAF loop: every frame's time while the bench scrolls.
# The page's probes while the bench scrolls: every animation frame's time, every press
# of Later (when, and the window it asked for) and every drawing of the paper (when, and
# the window drawn).
PROBE = """() => {
  const probe = { frames: [], presses: [], draws: [], on: true };
  const readings = window.tcReadings;
  const paper = readings.paper;
  window.tcHolter = probe;
  probe.drawMs = readings.counters.drawMs.length;
  const tick = (now) => { probe.frames.push(now); if (probe.on) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  if (!paper.holterDraw) {  // once a page: the draw that every window goes through
    paper.holterDraw = paper.draw;
    paper.draw = function () {
      this.holterDraw();
      window.tcHolter.draws.push([performance.now(), this.ecg.start_s]);
    };
    // When the press came (before the page's handler), and the window it asked for (after).
    const pressed = () => { window.tcHolter.pressAt = performance.now(); };
    document.addEventListener("click", pressed, true);
    document.addEventListener("click", (event) => {
      const probe = window.tcHolter;
      if (event.target.id === "later") probe.presses.push([probe.pressAt, readings.startS]);
    });
  }
  performance.setResourceTimingBufferSize(100000);
  performance.clearResourceTimings();
}"""
RESULTS = """() => {
  const probe = window.tcHolter;
  probe.on = false;
  const windows = performance.getEntriesByType("resource")
    .filter((e) => e.name.includes("/ecg?"))
    .map((e) => e.duration);
  const drawMs = window.tcReadings.counters.drawMs.slice(probe.drawMs);
  return { frames: probe.frames, presses: probe.presses, draws: probe.draws, windows, drawMs };
}"""


def press_to_paint(
    presses: list[tuple[float, float]], draws: list[tuple[float, float]]
) -> tuple[list[float], int, int]:
    """For each window drawn, the time from the press that asked for it to its drawing
    (ms); the windows pressed for and never drawn; the drawings of a window before the
    one drawn last (an earlier press's answer drawn over a later one's)."""
    pressed: dict[float, float] = {}
    for at, start_s in presses:
        pressed.setdefault(round(start_s, 3), at)
    took, seen, backwards, last = [], set(), 0, -1.0
    for at, start_s in draws:
        key = round(start_s, 3)
        if key in pressed and key not in seen:
            took.append(at - pressed[key])
        seen.add(key)
        backwards += start_s < last
        last = start_s
    return took, len(set(pressed) - seen), backwards


def holter_record(hours: float = HOURS) -> Record:
    """MIT-BIH ``100`` looped to ``hours``: 2 leads at 360 Hz, in mV."""
    once = read_record(SOURCE)
    n = round(hours * 3600 * once.fs_hz)
    times = -(-n // once.n_samples)
    signal = np.tile(once.signal_mv, (times, 1))[:n]
    return Record(
        name=f"{once.name}x{times}", fs_hz=once.fs_hz, signal_mv=signal, lead_names=once.lead_names
    )


class StoredRecord:
    """The task's ECG as the server keeps it: a WFDB record (format 16) on disk, each
    window read from the file alone (:func:`api.readings.file_window`), as the stream
    and upload stores do."""

    def __init__(self, record: Record, folder: Path) -> None:
        import wfdb

        digital = np.round(record.signal_mv * 200.0).astype(np.int16)
        header = wfdb.Record(
            record_name="holter", fs=record.fs_hz, units=["mV"] * record.n_leads,
            sig_name=list(record.lead_names), d_signal=digital, fmt=["16"] * record.n_leads,
            adc_gain=[200.0] * record.n_leads, baseline=[0] * record.n_leads,
        )  # fmt: skip
        header.set_d_features()
        header.set_defaults()
        header.wrheader(write_dir=str(folder), expanded=False)
        digital.astype("<i2").tofile(folder / "holter.dat")
        self.path = folder / "holter"

    def whole(self) -> Record:
        return read_record(self.path)

    def signal_of(self, record: ReadingRecord) -> Record | None:
        return self.whole()

    def length_of(self, record: ReadingRecord) -> tuple[int, float] | None:
        return file_length(self.path)

    def window_of(self, record: ReadingRecord, start: int, stop: int) -> Record | None:
        return file_window(self.path, start, stop)


@dataclass
class Measured:
    """One page's scrolling: what the trace and the page saw."""

    frames: int = 0
    dropped: int = 0
    partial: int = 0
    waited: Counter[str] = field(default_factory=Counter)
    raf_ms: list[float] = field(default_factory=list)
    long_tasks_ms: list[float] = field(default_factory=list)
    window_ms: list[float] = field(default_factory=list)
    draw_ms: list[float] = field(default_factory=list)
    paint_ms: list[float] = field(default_factory=list)
    never_drawn: int = 0
    backwards: int = 0
    asked: int = 0
    drawn: int = 0
    presses: int = 0
    scrolled_s: float = 0.0

    def add(self, other: Measured) -> None:
        for name, value in vars(other).items():
            mine = getattr(self, name)
            setattr(self, name, mine + value)

    def summary(self) -> dict[str, Any]:
        raf = sorted(self.raf_ms)
        windows = sorted(self.window_ms)

        def pct(values: list[float], q: float) -> float | None:
            return round(percentile(values, q), 1) if values else None

        return {
            "frames": self.frames,
            "dropped_frames": self.dropped,
            "partial_frames": self.partial,
            "dropped_waited_for": dict(self.waited.most_common()),
            "raf_frames": len(raf) + 1 if raf else 0,
            "raf_late": sum(1 for ms in raf if ms > LATE_MS),
            "raf_p50_ms": pct(raf, 50),
            "raf_p95_ms": pct(raf, 95),
            "raf_p99_ms": pct(raf, 99),
            "raf_max_ms": round(raf[-1], 1) if raf else None,
            "long_tasks": len(self.long_tasks_ms),
            "long_task_max_ms": round(max(self.long_tasks_ms), 1) if self.long_tasks_ms else None,
            "draw_p50_ms": pct(sorted(self.draw_ms), 50),
            "draw_max_ms": round(max(self.draw_ms), 1) if self.draw_ms else None,
            "paint_p50_ms": pct(sorted(self.paint_ms), 50),
            "paint_p95_ms": pct(sorted(self.paint_ms), 95),
            "never_drawn": self.never_drawn,
            "backwards": self.backwards,
            "window_p50_ms": pct(windows, 50),
            "window_p95_ms": pct(windows, 95),
            "windows_asked": self.asked,
            "windows_drawn": self.drawn,
            "presses": self.presses,
            "scrolled_s": round(self.scrolled_s),
        }


def frames_of(events: list[dict[str, Any]]) -> tuple[int, int, int, list[float]]:
    """Frames presented, dropped and partially presented, from the trace's
    ``PipelineReporter`` events (one per frame Chromium began for a vsync; its state
    says what became of it), and the main thread's tasks over 50 ms."""
    states: dict[tuple[Any, Any, Any], set[str]] = {}
    for event in events:
        if event.get("name") != "PipelineReporter" or event.get("ph") not in ("b", "X"):
            continue
        reporter = event.get("args", {}).get("frame_reporter", {})
        key = (event.get("pid"), reporter.get("frame_source"), reporter.get("frame_sequence"))
        states.setdefault(key, set()).add(str(reporter.get("state", "")))
    # A vsync's frame can have two reporters: the compositor's part presented and the
    # main thread's update dropped (it came a vsync late); that frame counts as dropped.
    made = [
        s
        for s in states.values()
        if s & {"STATE_PRESENTED_ALL", "STATE_PRESENTED_PARTIAL", "STATE_DROPPED"}
    ]
    dropped = sum(1 for s in made if "STATE_DROPPED" in s)
    partial = sum(1 for s in made if "STATE_DROPPED" not in s and "STATE_PRESENTED_PARTIAL" in s)
    main = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("name") == "thread_name" and e.get("args", {}).get("name") == "CrRendererMain"
    }
    long_ms = [
        e["dur"] / 1000
        for e in events
        if e.get("name") == "RunTask"
        and e.get("ph") == "X"
        and (e.get("pid"), e.get("tid")) in main
        and e.get("dur", 0) > 50_000
    ]
    return len(made), dropped, partial, long_ms


def waits_of(events: list[dict[str, Any]]) -> Counter[str]:
    """For each dropped frame (as :func:`frames_of` counts them), the stage of Chromium's
    pipeline that took longest in its ``PipelineReporter`` events: what the frame waited
    on (``SendBeginMainFrameToCommit``: the main thread's part, from the frame asked of
    it to its commit; ``EndCommitToActivation``: raster; ``SubmitToReceiveCompositorFrame``
    and after: the display compositor). A diagnostic, not a criterion."""
    category = "cc,benchmark,disabled-by-default-devtools.timeline.frame"
    opened: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    spans: dict[tuple[Any, Any], list[tuple[float, float, dict[str, Any]]]] = defaultdict(list)
    nested = sorted(
        (e for e in events if e.get("cat") == category and e.get("ph") in ("b", "e")),
        key=lambda e: e["ts"],
    )
    for event in nested:  # a stage and its frame share their async id
        track = (event.get("pid"), json.dumps(event.get("id2", event.get("id"))))
        key = (*track, event.get("name"))
        if event["ph"] == "b":
            opened[key].append(event)
        elif opened[key]:
            begun = opened[key].pop(0)
            spans[track].append((begun["ts"], event["ts"], begun))
    waited: Counter[str] = Counter()
    frames: dict[tuple[Any, Any, Any], list[tuple[tuple[Any, Any], float, float, str]]] = {}
    for track, track_spans in spans.items():
        track_spans.sort(key=lambda span: span[0])
        for begin, end, event in track_spans:
            if event["name"] != "PipelineReporter":
                continue
            reporter = event.get("args", {}).get("frame_reporter", {})
            key = (event.get("pid"), reporter.get("frame_source"), reporter.get("frame_sequence"))
            frames.setdefault(key, []).append((track, begin, end, str(reporter.get("state"))))
    for reporters in frames.values():
        if not any(state == "STATE_DROPPED" for *_, state in reporters):
            continue
        stages: dict[str, float] = {}
        for track, begin, end, _ in reporters:
            track_spans = spans[track]
            at = bisect_left(track_spans, begin, key=lambda span: span[0])
            for stage_begin, stage_end, event in track_spans[at:]:
                if stage_begin > end:
                    break
                name = event["name"]
                if name != "PipelineReporter" and stage_end <= end:
                    stages[name] = max(stages.get(name, 0.0), stage_end - stage_begin)
        if stages:
            waited[max(stages, key=lambda name: stages[name])] += 1
    return waited


async def scroll(
    page: Any, start_s: float, seconds: float, interval_ms: float, idle: bool = False
) -> Measured:
    """Hold Later down from ``start_s`` for ``seconds``, the timeline recorded (``idle``:
    no press, the same probes: what the machine alone costs the page's frames)."""
    await page.bring_to_front()  # a tab behind another draws a frame a second
    await page.evaluate(
        """async (start) => {
      const s = window.tcReadings;
      s.startS = start;
      document.getElementById("later").focus();
    }""",
        start_s,
    )
    # The window at start_s on paper first (one Later press, not measured).
    await page.keyboard.press("Enter")
    await page.wait_for_function(
        "(s) => window.tcReadings.ecg && window.tcReadings.ecg.start_s >= s", arg=start_s + 9
    )
    first_s = float(await page.evaluate("() => window.tcReadings.ecg.start_s"))
    drawn_before = int(await page.evaluate("() => window.tcReadings.counters.frames"))
    cdp = await page.context.new_cdp_session(page)
    events: list[dict[str, Any]] = []
    done = asyncio.get_running_loop().create_future()
    cdp.on("Tracing.dataCollected", lambda params: events.extend(params["value"]))
    cdp.on("Tracing.tracingComplete", lambda params: done.set_result(None))
    await cdp.send(
        "Tracing.start", {"categories": TRACE_CATEGORIES, "transferMode": "ReportEvents"}
    )
    await page.evaluate(PROBE)
    presses = 0
    started = time.perf_counter()
    next_at = started
    while time.perf_counter() - started < seconds:
        if idle:
            await asyncio.sleep(seconds)
            break
        if await page.evaluate("() => document.getElementById('later').disabled"):
            break  # the end of the record
        await page.keyboard.press("Enter")
        presses += 1
        next_at += interval_ms / 1000
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    # The last window asked for on paper (or 2 s), then the probes stopped.
    with contextlib.suppress(PlaywrightTimeout):  # fallen behind: what it drew is measured
        await page.wait_for_function(
            "(s) => window.tcReadings.ecg.start_s >= s - 1e-6",
            arg=first_s + presses * 10.0,
            timeout=2000,
        )
    seen = await page.evaluate(RESULTS)
    await cdp.send("Tracing.end")
    await done
    await cdp.detach()
    times = seen["frames"]
    paint_ms, never_drawn, backwards = press_to_paint(
        [(float(a), float(b)) for a, b in seen["presses"]],
        [(float(a), float(b)) for a, b in seen["draws"]],
    )
    measured = Measured(
        raf_ms=[b - a for a, b in itertools.pairwise(times)],
        window_ms=[float(ms) for ms in seen["windows"]],
        draw_ms=[float(ms) for ms in seen["drawMs"]],
        paint_ms=paint_ms,
        never_drawn=never_drawn,
        backwards=backwards,
        asked=len(seen["windows"]),
        drawn=int(await page.evaluate("() => window.tcReadings.counters.frames")) - drawn_before,
        presses=presses,
        scrolled_s=float(await page.evaluate("() => window.tcReadings.ecg.start_s")) - first_s,
    )
    measured.frames, measured.dropped, measured.partial, measured.long_tasks_ms = frames_of(events)
    measured.waited = waits_of(events)
    return measured


def pages_of(revision: str, folder: Path) -> Path:
    """The ``web/`` folder of git revision ``revision``, written under ``folder`` (a
    folder given instead: those pages)."""
    if Path(revision).is_dir():
        return Path(revision)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", revision, "web"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "web"


async def run(
    seconds: float, starts_h: list[float], interval_ms: float, compare: str | None
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    made_at = time.perf_counter()
    record = holter_record()
    made_s = time.perf_counter() - made_at
    with tempfile.TemporaryDirectory() as folder:
        made = make_reading_world(make_database("sqlite", Path(folder)), whole_library=True)
        world = made.world
        service = made.service
        task_id = service.task_for_stream(
            "holter", "village-1", "patient-1", world.clock.now, (), ("SR",)
        ).task.id
        source = StoredRecord(record, Path(folder))
        described = (list(record.lead_names), record.fs_hz, record.n_samples)
        del record  # the server holds no record in memory: each window is read
        annotate_ahead(task_id, source.whole).result()  # as the server does
        pages = {"page": REPO / "web"}
        if compare:
            pages = {"before": pages_of(compare, Path(folder)), "after": REPO / "web"}
        edges: dict[str, Edge] = {}
        for name, web_dir in pages.items():
            accounts = account_api(world.accounts, world.directory)
            readings = reading_api(service, source)
            app = create_app(
                route_handlers=[*accounts.route_handlers, *readings.route_handlers],
                dependencies={**accounts.dependencies, **readings.dependencies},
                middleware=[*accounts.middleware, *readings.middleware],
                web_dir=web_dir,
            )
            edges[name] = Edge(app, EdgeConfig(port=0), ws_max_size_bytes=1 << 20)
            await edges[name].start()
        measured = {name: Measured() for name in pages}
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS
                )
                # One session for both servers: a cookie is the host's, whatever the port.
                context = await browser.new_context(viewport={"width": 1366, "height": 768})
                login = {
                    "username": "liu.reader",
                    "password": PASSWORD,
                    "totp": world.totp("liu.reader"),
                }
                first = next(iter(edges.values()))
                answer = await context.request.post(f"{first.url}/api/v1/auth/login", data=login)
                assert answer.ok, await answer.text()
                opened = {}
                for name, edge in edges.items():
                    page = await context.new_page()
                    await page.goto(f"{edge.url}/readings?lang=en#reading/{task_id}")
                    await page.wait_for_function(
                        "() => window.tcReadings && window.tcReadings.ecg"
                        " && window.tcReadings.counters.samplesDrawn > 1000"
                    )
                    opened[name] = page
                stretch_s = seconds / len(starts_h)
                last = list(opened)[-1]
                idle = await scroll(opened[last], 0.0, stretch_s, interval_ms, idle=True)
                for n, hour in enumerate(starts_h):
                    order = list(opened) if n % 2 == 0 else list(opened)[::-1]
                    for name in order:
                        measured[name].add(
                            await scroll(opened[name], hour * 3600, stretch_s, interval_ms)
                        )
                await browser.close()
        finally:
            for edge in edges.values():
                await edge.close()
            world.stores.close()
    return {
        "record": {
            "source": f"mitdb/{SOURCE.name} looped",
            "hours": HOURS,
            "leads": described[0],
            "fs_hz": described[1],
            "samples": described[2],
            "made_s": round(made_s, 1),
        },
        "conditions": {
            "scroll_s": seconds,
            "starts_h": starts_h,
            "press_every_ms": interval_ms,
            "viewport": "1366x768",
            "browser": "Debian Chromium, headless",
            "compared_with": compare,
        },
        "idle": {**idle.summary(), "seconds": stretch_s, "page": last},
        "pages": {name: m.summary() for name, m in measured.items()},
    }


def table(result: dict[str, Any]) -> str:
    pages = result["pages"]
    names = list(pages)
    rows = [
        ("frames (trace)", "frames"),
        ("dropped frames (trace)", "dropped_frames"),
        ("partly presented (trace)", "partial_frames"),
        ("rAF frames", "raf_frames"),
        (f"rAF intervals > {LATE_MS:.1f} ms", "raf_late"),
        ("rAF interval p50 ms", "raf_p50_ms"),
        ("rAF interval p95 ms", "raf_p95_ms"),
        ("rAF interval p99 ms", "raf_p99_ms"),
        ("rAF interval max ms", "raf_max_ms"),
        ("main-thread tasks > 50 ms", "long_tasks"),
        ("longest task ms", "long_task_max_ms"),
        ("paper draw p50 ms", "draw_p50_ms"),
        ("paper draw max ms", "draw_max_ms"),
        ("press to paper p50 ms", "paint_p50_ms"),
        ("press to paper p95 ms", "paint_p95_ms"),
        ("windows pressed for, not drawn", "never_drawn"),
        ("drawn over a later window", "backwards"),
        ("window request p50 ms", "window_p50_ms"),
        ("window request p95 ms", "window_p95_ms"),
        ("windows asked for", "windows_asked"),
        ("windows drawn", "windows_drawn"),
        ("Later presses", "presses"),
        ("record scrolled, s", "scrolled_s"),
    ]
    compared = names == ["before", "after"]
    idle = result["idle"]
    header = ["", f"idle ({idle['seconds']:g} s)", *names] + (["after/before"] if compared else [])
    lines = [header]
    for label, key in rows:
        values = [idle[key], *(pages[n][key] for n in names)]
        line = [label, *("—" if v is None else str(v) for v in values)]
        if compared:
            a, b = pages["after"][key], pages["before"][key]
            line.append(f"{a / b:.2f}" if a is not None and b else "—")
        lines.append(line)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in lines
    ]
    c, r = result["conditions"], result["record"]
    text.append(
        f"record: {r['source']} to {r['hours']:.0f} h, {len(r['leads'])} leads"
        f" ({', '.join(r['leads'])}) at {r['fs_hz']:.0f} Hz, {r['samples']} samples a lead;"
        f" Later pressed every {c['press_every_ms']:.0f} ms for {c['scroll_s']:.0f} s"
        f" per page, from {', '.join(f'{h:g}' for h in c['starts_h'])} h;"
        f" {c['browser']} {c['viewport']}; idle: the {idle['page']} page for"
        f" {idle['seconds']:g} s with no press (the machine's share of the dropped frames)"
    )
    return "\n".join(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 s of scrolling from 2 places")
    parser.add_argument("--seconds", type=float, help="scrolling per page, s (default 25)")
    parser.add_argument(
        "--interval-ms", type=float, default=100.0, help="Later pressed every ... ms"
    )
    parser.add_argument("--compare", metavar="REV", help="also the pages of git revision REV")
    parser.add_argument("--json", action="store_true", help="the result as JSON too")
    args = parser.parse_args()
    if not SOURCE.with_suffix(".hea").exists():
        raise SystemExit(f"MIT-BIH record 100 is not at {SOURCE} (TELECONSULT_ECG_DIR)")
    starts_h = [0.0, 12.0] if args.quick else [0.0, 6.0, 12.0, 18.0, 23.9]
    seconds = args.seconds or (6.0 if args.quick else 25.0)
    result = asyncio.run(run(seconds, starts_h, args.interval_ms, args.compare))
    if args.json:
        print(json.dumps(result))
    print(table(result))
    for name, page in result["pages"].items():
        waited = ", ".join(f"{stage} {n}" for stage, n in page["dropped_waited_for"].items())
        print(f"{name}: the dropped frames' longest pipeline stage: {waited or '-'}")
    pages = result["pages"]
    final = pages.get("after", pages.get("page"))
    verdict = "met" if final["dropped_frames"] == 0 and final["raf_late"] == 0 else "missed"
    print(f"target: no dropped frame while scrolling the 24 h record: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
