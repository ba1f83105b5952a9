"""The load test's viewers in processes of their own, against a real ``teleconsult serve``."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from pathlib import Path

from sessions.tokens import load_key_ring
from teleconsult.loadtest import Figures, LoadPlan, run_load, viewer_jobs
from tests.media.peers import wait_for
from tests.teleconsult.test_loadtest import serving


def plan(url: str, data: Path, **changes: float) -> LoadPlan:
    """2 carts in one room, 2 viewers in 2 processes, no participants, a few seconds."""
    fields = {"carts": 2, "viewers": 2, "viewer_processes": 2, "duration_s": 4.0, **changes}
    return LoadPlan(
        http_url=url, keys=load_key_ring(data, None), participants=0, cart_rooms=1,
        ramp_s=0.5, carts=int(fields["carts"]), viewers=int(fields["viewers"]),
        viewer_processes=int(fields["viewer_processes"]), duration_s=fields["duration_s"],
    )  # fmt: skip


def test_viewers_are_dealt_round_the_processes() -> None:
    """5 viewers over 2 processes: 3 and 2, each watching the room of its number; never
    more processes than viewers."""
    five = LoadPlan(http_url="http://x", keys="k" * 32, viewers=5, cart_rooms=2,
                    viewer_processes=2)  # fmt: skip
    jobs = viewer_jobs(five)
    assert [len(j) for j in jobs] == [3, 2]
    for identity, room in (job for process in jobs for job in process):
        number = int(identity.rsplit("-", 1)[1])
        assert room == f"loadtest-ecg-{number % 2}"
    one = LoadPlan(http_url="http://x", keys="k" * 32, viewers=1, viewer_processes=4)
    assert len(viewer_jobs(one)) == 1


async def test_viewer_processes_see_the_carts_live(tmp_path: Path) -> None:
    """Their ecg_data come back and are matched to the carts' sends: live figures, each
    under the run's length, every arrival matched, both loops' lag sampled, no error."""
    with serving(tmp_path / "var") as url:
        figures = await run_load(plan(url, tmp_path / "var"))
    assert figures.errors == {}, figures.errors
    assert figures.live_unmatched == 0
    # Each viewer subscribes to both carts (a frame every 0.2 s of 4 s each): most of
    # their frames come to each of the 2 viewers.
    frames = sum(len(log.sent_at) for log in figures.carts)
    assert frames >= 2 * 4 / 0.2
    assert frames <= len(figures.live_s) <= 2 * frames
    assert all(0 < live_s < 4.0 + 0.5 + 5.0 for live_s in figures.live_s)
    assert len(figures.viewer_loop_lag_s) >= 2 * 30  # 2 processes, 0.1 s over 4 s and more
    assert len(figures.loop_lag_s) >= 30


async def test_a_dead_viewers_process_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """The viewers' process is killed once its first batch came: the run still ends, with
    an error saying so and the live figures of that batch kept."""
    with serving(tmp_path / "var") as url:
        figures = Figures()
        load = asyncio.create_task(
            run_load(plan(url, tmp_path / "var", viewers=1, viewer_processes=1), figures)
        )
        await wait_for(lambda: bool(figures.viewer_loop_lag_s), timeout_s=30)
        (child,) = multiprocessing.active_children()
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(load, 60)
    assert figures.errors == {f"viewer process died (exit {-signal.SIGKILL})": 1}
    assert figures.viewer_loop_lag_s
