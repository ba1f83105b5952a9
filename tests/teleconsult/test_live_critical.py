"""A critical value the live annotation proves while the ECG is still arriving is raised on
the stream's reading task at once, on the server as ``teleconsult serve`` assembles it:
a registered cart streams (at 2x real time) 5 s of regular beats, a 4 s pause with
signal, then 11 s of beats again; the task holds ``PAUSE`` while the cart is still
sending (the finished record's annotation would raise it only after the end)."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np

from fixtures.make_fixtures import regular_beats, synthetic_ecg
from store.audit import AuditQuery
from store.readings import SqlReadingRepository
from teleconsult.device_cmd import SimulatedRecord, simulate
from tests.teleconsult.test_platform_server import Running, build_directory, record, running

__all__ = ["running"]


def with_pause(
    seconds: float = 20.0, pause_from_s: float = 5.0, pause_s: float = 4.0
) -> SimulatedRecord:
    """The 12-lead fixture's format with beats at 75 bpm but none for ``pause_s``."""
    template = record(seconds)
    beats = regular_beats(seconds, 75.0)
    beats = beats[(beats < pause_from_s) | (beats > pause_from_s + pause_s)]
    mv = synthetic_ecg(template.fs_hz, seconds, beats, n_leads=len(template.leads))
    # Baseline wander keeps signal on every lead through the pause (not leads-off).
    t = np.arange(mv.shape[0]) / template.fs_hz
    mv += 0.05 * np.sin(2 * np.pi * 0.3 * t)[:, None]
    gain = np.asarray(template.adc_gain)
    samples = np.round(mv * gain[None, :] + np.asarray(template.baseline)[None, :])
    return dataclasses.replace(template, samples=samples.astype(np.int16))


async def test_a_pause_is_raised_on_the_task_while_the_stream_arrives(running: Running) -> None:
    credential = await build_directory(running)
    cart = asyncio.ensure_future(
        simulate(
            with_pause(), url=running.ws_url("/device"), token=credential, device="cart-1",
            speed=2.0,
        )
    )  # fmt: skip
    try:
        await running.until_audited("critical.raised")
        assert not cart.done()  # proven at 8 s of signal, 4 s in; the cart sends until 10 s
        assert "stream.ended" not in running.audited(AuditQuery())
    finally:
        done = await cart
    found = SqlReadingRepository(running.assembly.platform.stores.engine).by_stream(
        str(done.stream)
    )
    assert found is not None
    assert found.task.critical == ("PAUSE",)
