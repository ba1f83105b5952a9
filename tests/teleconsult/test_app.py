"""The live annotation jobs of teleconsult.app, run by a LiveRunner as a worker runs them."""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from ecg.device import Start, encode_message
from fixtures.make_fixtures import regular_beats, synthetic_ecg
from teleconsult.app import LiveRunner, StartJob, StepJob

FS_HZ = 500.0
GAIN = 200.0  # ADC units per mV
CHUNK = 100


def _start() -> Start:
    return Start(
        version=1,
        device="cart-1",
        stream=uuid.uuid4(),
        patient="p-1",
        fs_hz=FS_HZ,
        leads=[f"L{i}" for i in range(12)],
        adc_gain=[GAIN] * 12,
        baseline=[0] * 12,
        resolution_bits=16,
        start_time=datetime(2026, 1, 1, tzinfo=UTC),
    )


def _digital(duration_s: float) -> npt.NDArray[np.int16]:
    mv = synthetic_ecg(FS_HZ, duration_s, regular_beats(duration_s, 75.0))
    return np.round(mv * GAIN).astype(np.int16)


def _texts(start: Start, samples: npt.NDArray[np.int16], watched_from: int) -> list[str]:
    """Encoded results of every chunk, the first ``watched_from`` chunks unwatched."""
    runner = LiveRunner()
    stream = str(start.stream)
    runner.handle(StartJob(stream, encode_message(start).encode(), 0))
    texts = []
    for number, first in enumerate(range(0, len(samples), CHUNK)):
        block = samples[first : first + CHUNK]
        job = StepJob.of(stream, block, first + len(block), 0.0, watched=number >= watched_from)
        for _, text, _ in runner.handle(pickle.loads(pickle.dumps(job))):
            texts.append(text)
    return texts


def test_step_job_round_trips_its_block_through_pickle() -> None:
    """A StepJob pickled as a worker queue does gives back the int16 block, bit for bit."""
    block = _digital(1.0)[:CHUNK]
    job = pickle.loads(pickle.dumps(StepJob.of("s", block, CHUNK, 1.5)))
    np.testing.assert_array_equal(job.samples(), block)
    assert job.samples().dtype == np.int16
    assert (job.received, job.queued, job.watched) == (CHUNK, 1.5, True)


def test_unwatched_chunks_are_annotated_but_not_encoded() -> None:
    """Unwatched chunks give no message, yet the watched ones after them are unchanged."""
    start = _start()
    samples = _digital(12.0)
    every = _texts(start, samples, watched_from=0)
    later = _texts(start, samples, watched_from=30)
    assert len(every) == len(samples) // CHUNK
    assert later == every[30:]
    assert any('"beats":[[' in text for text in later)  # beats still found after the gap
