"""Property: whatever a client sends, the core answers with documented errors and never raises."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling import messages as m
from signaling.core import Send
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
frames = st.one_of(messages.map(json.dumps), st.text(max_size=50), st.binary(max_size=50))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=8))
def test_any_frames_get_only_documented_errors(batch: list[str | bytes]) -> None:
    """Random frames, before and after joining, yield documented error codes and no exception."""
    h = Harness()
    joined = h.open()
    h.send(joined, m.Join(token=token("dr-li", moderator=True)))
    fresh = h.open()
    for frame in batch:
        for conn in (joined, fresh):
            for effect in h.send(conn, frame):
                if isinstance(effect, Send) and isinstance(effect.message, m.Error):
                    assert effect.message.code in DOCUMENTED
                    assert effect.message.code != "internal", effect.message
                    m.encode(effect.message)
