"""The live ECG service seen from ``/ws``: its viewer messages and its catalog.

``ecglive`` imports nothing of signaling's; this module (the edge) speaks for it on the
wire:

- :class:`ViewerMessages` is the service's :class:`~ecglive.service.LiveEncoder`: it
  writes ``ecg_data`` and ``ecg_ended`` as :mod:`signaling.messages` defines them. It
  holds no state, so it pickles by name into the live worker processes, which encode
  each chunk once there (the event loop's process only forwards the text).
- :class:`ViewerCatalog` is the :class:`~signaling.ports.EcgCatalog` over the service:
  its stream summaries as ``EcgStreamInfo``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta

import numpy as np

from ecg.device import Start
from ecg.flags import Flag
from ecg.live import LiveUpdate
from ecglive.service import EcgService, EndState, StreamSummary, utc_text
from signaling import messages as m

__all__ = ["ViewerCatalog", "ViewerMessages", "live_message", "stream_message"]


class ViewerMessages:
    """Writes the viewers' JSON of live ECG (``ecg_data``, ``ecg_ended``)."""

    def data(
        self, start: Start, origin: int, display_origin: int, update: LiveUpdate, received: int
    ) -> str:
        """``ecg_data`` for one live update."""
        return m.encode(live_message(start, origin, display_origin, update, received)).decode()

    def ended(self, stream: str, samples: int, state: EndState) -> str:
        """``ecg_ended``."""
        return m.encode(m.EcgEnded(stream=stream, samples=samples, state=state)).decode()


def stream_message(summary: StreamSummary, institution: str | None = None) -> m.EcgStreamInfo:
    """A stream summary as ``EcgStreamInfo`` (``institution``: the one it belongs to)."""
    return m.EcgStreamInfo(**dataclasses.asdict(summary), institution=institution)


class ViewerCatalog:
    """The ``EcgCatalog`` of the live ECG service.

    ``institution_of(device_id)``: the institution a cart is registered to (from
    memory, it is asked on the event loop); a stream belongs to its cart's institution.
    By default no cart is registered (streams belong to no institution).
    """

    def __init__(
        self,
        service: EcgService,
        institution_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self.service = service
        self.institution_of = institution_of

    def ecg_streams(self) -> list[m.EcgStreamInfo]:
        """Every known stream."""
        return [self._message(s) for s in self.service.ecg_streams()]

    def ecg_stream(self, stream: str) -> m.EcgStreamInfo | None:
        """One stream by id, or None."""
        summary = self.service.ecg_stream(stream)
        return None if summary is None else self._message(summary)

    def _message(self, summary: StreamSummary) -> m.EcgStreamInfo:
        of = self.institution_of
        return stream_message(summary, None if of is None else of(summary.device))


def live_message(
    start: Start, origin: int, display_origin: int, update: LiveUpdate, received: int
) -> m.EcgData:
    """An ``ecg_data`` message from a live update (samples in µV, lead by lead)."""
    uv = np.clip(np.round(update.display_mv.astype(np.float64) * 1000.0), -32767, 32767)
    if np.isnan(uv).any():
        samples: list[list[int | None]] = [
            [None if np.isnan(v) else int(v) for v in lead] for lead in uv.T
        ]
    else:
        samples = uv.T.astype(np.int64).tolist()
    beats = []
    for index, rr in zip(update.beats.tolist(), update.rr_s.tolist(), strict=True):
        at = origin + index
        time_s = start.start_time + timedelta(seconds=at / start.fs_hz)
        beats.append(m.EcgBeat(at, utc_text(time_s), None if np.isnan(rr) else round(rr, 4)))
    return m.EcgData(
        stream=str(start.stream),
        first_index=display_origin + update.display_first_index,
        display_fs_hz=update.display_fs_hz,
        samples_uv=samples,
        beats=beats,
        heart_rate_bpm=None if update.heart_rate_bpm is None else round(update.heart_rate_bpm, 1),
        flags=[_flag(f, origin) for f in update.flags],
        provisional=[_flag(f, origin) for f in update.provisional_flags],
        samples=received,
    )


def _flag(flag: Flag, origin: int) -> m.EcgFlag:
    measure = None if np.isnan(flag.measure) else round(float(flag.measure), 4)
    return m.EcgFlag(
        kind=flag.kind.value,
        onset=origin + flag.onset,
        offset=origin + flag.offset,
        lead=flag.lead,
        measure=measure,
    )
