"""Property: whatever a client sends, the core answers with documented errors and never raises."""

from __future__ import annotations

import json
import logging

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling import messages as m
from signaling.core import Close, Effect, Persist, Send
from signaling.messages import ErrorCode
from tests.signaling.test_core import Harness, token

DOCUMENTED = {code.value for code in ErrorCode}
TYPES = [*sorted(m.CLIENT_TYPES), "joined", "dance", ""]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={
        "pc": st.sampled_from(["publish", "subscribe", "other"]) | json_values,
        "sdp": st.text(max_size=30) | json_values,
        "kind": st.sampled_from(["audio", "video", "smell"]),
        "participant_id": st.text(max_size=10) | json_values,
        "text": st.text(max_size=30) | json_values,
        "ref": st.text(max_size=80) | json_values,
        "token": st.text(max_size=30) | json_values,
        "track_id": st.text(max_size=10),
    },
)
# What escapes naive handling: deep nesting, escaped lone surrogates, NUL, numbers out of
# range, overlong UTF-8 (as bytes), and frames over the size limit.
hostile = st.sampled_from(
    [
        "[" * 5000 + "]" * 5000,
        '{"type": "chat", "text": ' + "[" * 3000 + "]" * 3000 + "}",
        '{"type": "chat", "text": "\\ud800", "ref": "s"}',
        '{"type": "chat", "text": "a\\u0000b"}',
        '{"type": "candidate", "pc": "publish", "sdp_mline_index": 1e400}',
        '{"type": "candidate", "pc": "publish", "sdp_mline_index": 123456789012345678901234567890}',
        b"\xc0\xaf",
        '{"type": "ping", "ref": "' + "x" * 70_000 + '"}',
    ]
)
frames = st.one_of(messages.map(json.dumps), st.text(max_size=50), st.binary(max_size=50), hostile)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=8))
def test_any_frames_get_only_documented_errors(batch: list[str | bytes]) -> None:
    """Random and hostile frames, before and after joining, yield documented error codes,
    no exception and nothing logged at ERROR (a client's mistake is not a server error)."""
    h = Harness()
    joined = h.open()
    h.send(joined, m.Join(token=token("dr-li", moderator=True)))
    fresh = h.open()
    errors = _ErrorRecords()
    logging.getLogger("signaling").addHandler(errors)
    try:
        for frame in batch:
            for conn in (joined, fresh):
                for effect in h.send(conn, frame):
                    if isinstance(effect, Send) and isinstance(effect.message, m.Error):
                        assert effect.message.code in DOCUMENTED
                        assert effect.message.code != "internal", effect.message
                        m.encode(effect.message)
    finally:
        logging.getLogger("signaling").removeHandler(errors)
    assert errors.records == []


class _ErrorRecords(logging.Handler):
    """Keeps the records at ERROR and above."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


PEOPLE = ["dr-li", "dr-wang", "dr-zhou"]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("join"), st.sampled_from(PEOPLE), st.booleans()),
        st.tuples(st.just("watch"), st.sampled_from(PEOPLE), st.booleans()),
        st.tuples(st.just("remove"), st.integers(0, 5), st.integers(0, 5)),
        st.tuples(st.just("admit"), st.integers(0, 5), st.integers(0, 5)),
        st.tuples(st.just("ack"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("close"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("revoke"), st.sampled_from(PEOPLE), st.booleans()),
        st.tuples(st.just("tick"), st.integers(0, 40), st.booleans()),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_any_interleaving_keeps_the_core_consistent(plan: list[tuple[str, object, object]]) -> None:
    """Joins, watches, removals, acks, drops, revocations and time in any order: no internal
    error, every close comes once per connection, and closing everything empties the core."""
    h = Harness()
    conns: list[int] = []
    pids: list[str] = []
    acks: list[int] = []
    closed_by_core: dict[int, int] = {}
    effects: list[object] = []
    for kind, a, b in plan:
        if kind in ("join", "watch"):
            conn = h.open()
            conns.append(conn)
            message = m.Join if kind == "join" else m.Watch
            out = h.send(conn, message(token=token(str(a), moderator=bool(b))))
            pids += [x.participant_id for x in sent_of(out) if isinstance(x, m.Joined | m.Waiting)]
        elif kind in ("remove", "admit") and conns and pids:
            conn, pid = conns[int(a) % len(conns)], pids[int(b) % len(pids)]
            msg = m.Remove(participant_id=pid) if kind == "remove" else m.Admit(participant_id=pid)
            out = h.send(conn, msg)
        elif kind == "ack" and acks:
            out = h.core.persisted(acks.pop(int(a) % len(acks)), bool(b), h.now)
        elif kind == "close" and conns:
            out = h.core.closed(conns[int(a) % len(conns)], h.now)
        elif kind == "revoke":
            out = h.core.revoke(h.now, identity=str(a), reason="test")
        elif kind == "tick":
            h.now += float(a)
            out = h.core.tick(h.now)
        else:
            continue
        effects += out
        acks += [e.ack for e in out if isinstance(e, Persist) and e.ack is not None]
        for e in out:
            if isinstance(e, Close):
                closed_by_core[e.conn] = closed_by_core.get(e.conn, 0) + 1
            if isinstance(e, Send) and isinstance(e.message, m.Error):
                assert e.message.code != "internal", e.message
    assert all(count == 1 for count in closed_by_core.values()), closed_by_core
    for ack in acks:
        h.core.persisted(ack, True, h.now)
    for conn in conns:
        h.core.closed(conn, h.now)
    h.now += 1000.0
    h.core.tick(h.now)
    assert (h.core.connection_count, h.core.participant_count, h.core.room_count) == (0, 0, 0)


def sent_of(effects: list[Effect]) -> list[m.ServerMessage]:
    """Every message of ``effects``, whoever it is for."""
    return [e.message for e in effects if isinstance(e, Send)]
