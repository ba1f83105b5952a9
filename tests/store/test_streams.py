"""Stream metadata on SQLite and PostgreSQL: added, progressed, ended, interrupted, listed."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import Engine

from consults.directory import Device, Institution, Level
from consults.errors import Conflict, InvalidInput, NotFound
from store.directory import SqlDirectoryRepository
from store.streams import SqlStreamRepository, StreamRecord


def setup(engine: Engine) -> SqlStreamRepository:
    directory = SqlDirectoryRepository(engine)
    for code in ("town-a", "town-b"):
        directory.add_institution(Institution(code, code, Level.TOWNSHIP))
        digest = hashlib.sha256(code.encode()).hexdigest()
        directory.add_device(Device(f"cart-{code}", "cart", code), digest)
    return SqlStreamRepository(engine)


def stream(i: int, **kw: object) -> StreamRecord:
    town = "town-a" if i % 2 else "town-b"
    values: dict[str, object] = {
        "id": f"s{i:02d}",
        "started_at_s": 1.8e9 + i,
        "device_id": f"cart-{town}",
        "institution": town,
        "room": "c-1",
        "patient": f"pt{i}",
    }
    values.update(kw)
    return StreamRecord(**values)  # type: ignore[arg-type]


def test_stream_lifecycle(engine: Engine) -> None:
    """A stream is added once, counts samples, ends; unknown ids are NotFound."""
    repo = setup(engine)
    repo.add_stream(stream(1))
    with pytest.raises(Conflict):
        repo.add_stream(stream(1))
    repo.record_samples("s01", 5000)
    repo.end_stream("s01", 1.8e9 + 100, 6000)
    assert repo.get_stream("s01") == stream(1, ended_at_s=1.8e9 + 100, samples=6000, state="ended")
    with pytest.raises(NotFound):
        repo.record_samples("ghost", 1)
    with pytest.raises(InvalidInput):
        repo.end_stream("s01", 1.0, 1, state="live")
    assert repo.get_stream("ghost") is None


def test_a_stream_of_an_unregistered_device_is_refused(engine: Engine) -> None:
    """A stream of a cart or institution that is not registered is NotFound."""
    repo = setup(engine)
    with pytest.raises(NotFound, match="device"):
        repo.add_stream(stream(3, device_id="unknown-cart"))
    with pytest.raises(NotFound, match="institution"):
        repo.add_stream(stream(3, institution="elsewhere"))
    assert repo.get_stream("s03") is None


def test_live_streams_interrupted_at_restart_and_pages(engine: Engine) -> None:
    """Live streams become interrupted; listing filters and pages newest first."""
    repo = setup(engine)
    for i in range(10):
        repo.add_stream(stream(i))
    repo.end_stream("s09", 1.8e9 + 50, 10)
    assert repo.interrupt_live(1.8e9 + 60) == 9
    assert {s.state for s in repo.list_streams(limit=20)} == {"interrupted", "ended"}
    repo.add_stream(stream(10))
    assert [s.id for s in repo.list_streams(live_only=True)] == ["s10"]
    first = repo.list_streams(institutions=frozenset({"town-a"}), limit=3)
    assert [s.id for s in first] == ["s09", "s07", "s05"]
    last = first[-1]
    second = repo.list_streams(
        institutions=frozenset({"town-a"}), limit=3, before=(last.started_at_s, last.id)
    )
    assert [s.id for s in second] == ["s03", "s01"]
