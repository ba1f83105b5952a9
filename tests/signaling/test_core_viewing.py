"""signaling.viewing: watch and the ecg_* requests; nobody in a waiting room sees anything."""

from __future__ import annotations

import json

import pytest

from signaling import messages as m
from signaling.core import EcgRequest
from signaling.messages import CloseCode
from tests.signaling.test_core import Harness, admitted, closes, error_of, only, sent, token, types


def test_watch_answers_watching_and_ecg_requests_become_effects() -> None:
    """A viewer gets watching; its ecg_list becomes an EcgRequest for its token's room."""
    h = Harness()
    viewer, effects = h.watch("dr-zhou", role="observer", room="ecg-centre")
    (watching,) = sent(effects, viewer)
    assert isinstance(watching, m.Watching)
    assert (watching.identity, watching.role, watching.room) == (
        "dr-zhou",
        "observer",
        "ecg-centre",
    )
    (request,) = only(h.send(viewer, m.EcgList(ref="l1")), EcgRequest)
    assert isinstance(request, EcgRequest)
    assert (request.conn, request.identity, request.room) == (viewer, "dr-zhou", "ecg-centre")
    assert request.message.ref == "l1"


def test_ecg_requests_need_watch_or_an_admitted_participant() -> None:
    """Before watch/join: not_joined; an admitted participant may ask on its own connection."""
    h = Harness()
    room = admitted(h)
    fresh = h.open()
    assert error_of(h.send(fresh, m.EcgList()), fresh).code == "not_joined"
    _, app, _, _ = room
    (request,) = only(
        h.send(app, m.EcgSubscribe(stream="0b7d6c3e-1f2a-4b5c-9d8e-7f6a5b4c3d2e")), EcgRequest
    )
    assert (request.identity, request.room) == ("dr-wang", "r1")  # type: ignore[attr-defined]


def test_second_watch_or_join_on_a_viewer_is_already_joined() -> None:
    """A viewer connection cannot watch again nor join: already_joined, connection kept."""
    h = Harness()
    viewer, _ = h.watch("dr-zhou")
    for message in (m.Watch(token=token("dr-zhou")), m.Join(token=token("dr-zhou"))):
        effects = h.send(viewer, message)
        assert error_of(effects, viewer).code == "already_joined"
        assert closes(effects, viewer) == []


def test_waiting_applicant_cannot_watch_with_the_same_token() -> None:
    """An applicant in the waiting room: watch with the same token is refused (4403)."""
    h = Harness()
    h.join("dr-li", role="expert", moderator=True)
    applicant = token("dr-wang")
    app = h.open()
    assert types(h.send(app, m.Join(token=applicant)), app) == ["waiting"]
    viewer = h.open()
    effects = h.send(viewer, m.Watch(token=applicant))
    assert error_of(effects, viewer).code == "forbidden"
    assert closes(effects, viewer) == [CloseCode.FORBIDDEN]
    assert only(effects, EcgRequest) == []
    # Any other token of that identity for that room is refused as well.
    other, effects = h.watch("dr-wang")
    assert closes(effects, other) == [CloseCode.FORBIDDEN]
    # The waiting connection itself gets bad_state for ecg_*.
    effects = h.send(app, m.EcgList())
    assert error_of(effects, app).code == "bad_state"
    assert only(effects, EcgRequest) == []


def test_entering_the_waiting_room_closes_the_identity_viewers_of_that_room() -> None:
    """A viewer that then joins and waits loses its viewer connections of that room."""
    h = Harness()
    h.join("dr-li", role="expert", moderator=True)
    here, _ = h.watch("dr-wang")
    elsewhere, _ = h.watch("dr-wang", room="r2")
    app, effects = h.join("dr-wang")
    assert types(effects, app) == ["waiting"]
    assert error_of(effects, here).code == "forbidden"
    assert closes(effects, here) == [CloseCode.FORBIDDEN]
    assert closes(effects, elsewhere) == []
    assert only(h.send(here, m.EcgList()), EcgRequest) == []
    assert only(h.send(elsewhere, m.EcgList()), EcgRequest) != []


def test_once_admitted_the_person_may_watch_again() -> None:
    """After admission the same identity may watch its room."""
    h = Harness()
    mod, _ = h.join("dr-li", role="expert", moderator=True)
    app, effects = h.join("dr-wang")
    h.send(mod, m.Admit(participant_id=sent(effects, app)[0].participant_id))  # type: ignore[union-attr]
    viewer, effects = h.watch("dr-wang")
    assert types(effects, viewer) == ["watching"]
    assert only(h.send(viewer, m.EcgList()), EcgRequest) != []


def test_a_closed_viewer_sends_nothing_more() -> None:
    """Once its connection is gone a viewer is forgotten: no effect for it any more."""
    h = Harness()
    viewer, _ = h.watch("dr-zhou")
    assert h.core.connection_count == 1
    assert h.core.closed(viewer, h.now) == []
    assert h.core.connection_count == 0
    assert h.send(viewer, m.EcgList()) == []


STREAM = "0b7d6c3e-1f2a-4b5c-9d8e-7f6a5b4c3d2e"


@pytest.mark.parametrize(
    "spelling",
    [STREAM.upper(), "{" + STREAM + "}", "urn:uuid:" + STREAM, STREAM.replace("-", ""), "s1"],
)
@pytest.mark.parametrize("kind", ["ecg_subscribe", "ecg_unsubscribe"])
def test_stream_ids_must_be_canonical(spelling: str, kind: str) -> None:
    """Conformance: a stream id other than the canonical lower-case UUID is bad_message
    (with its ref), never a subscription that would not deliver."""
    h = Harness()
    viewer, _ = h.watch("dr-zhou")
    effects = h.send(viewer, json.dumps({"type": kind, "stream": spelling, "ref": "q"}))
    error = error_of(effects, viewer)
    assert (error.code, error.ref) == ("bad_message", "q")
    assert only(effects, EcgRequest) == []
    assert closes(effects, viewer) == []
    (request,) = only(h.send(viewer, json.dumps({"type": kind, "stream": STREAM})), EcgRequest)
    assert request.message.stream == STREAM  # type: ignore[union-attr]


def test_requests_carry_what_viewing_rights_follow_from() -> None:
    """A person's token brings its institution and directory roles to the request; an
    admitted participant's requests say it is in the room, a plain viewer's do not."""
    h = Harness()
    viewer, _ = h.watch(
        "rd-liu", role="observer", institution="ECG1", person_roles=frozenset({"ecg_reader"})
    )
    (request,) = only(h.send(viewer, m.EcgList()), EcgRequest)
    assert isinstance(request, EcgRequest)
    assert request.institution == "ECG1"
    assert request.person_roles == {"ecg_reader"}
    assert not request.in_room
    _, app, _, _ = admitted(h)
    (inside,) = only(h.send(app, m.EcgList()), EcgRequest)
    assert isinstance(inside, EcgRequest)
    assert inside.in_room
    assert inside.institution is None
    # A viewer whose identity is admitted to the room is in it too.
    watcher, _ = h.watch("dr-wang")
    (also,) = only(h.send(watcher, m.EcgList()), EcgRequest)
    assert isinstance(also, EcgRequest)
    assert also.in_room
