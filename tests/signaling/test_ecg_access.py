"""Viewing rights follow from people: room admission, institution and service relations."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from consults.directory import Institution, Level, RelationOverride, ServiceKind, ServiceRelation
from consults.rights import Tree
from signaling import messages as m
from signaling.ecg_access import EcgAccess
from signaling.effects import EcgRequest

#   CITY ── COUNTY_A ── TOWN_A1 ── VILLAGE_A1
#       └── COUNTY_B ── TOWN_B1
INSTITUTIONS = [
    Institution(code="CITY", name="市医院", level=Level.CITY),
    Institution(code="COUNTY_A", name="A 县医院", level=Level.COUNTY, parent="CITY"),
    Institution(code="TOWN_A1", name="A1 镇卫生院", level=Level.TOWNSHIP, parent="COUNTY_A"),
    Institution(code="VILLAGE_A1", name="A1 村卫生室", level=Level.VILLAGE, parent="TOWN_A1"),
    Institution(code="COUNTY_B", name="B 县医院", level=Level.COUNTY, parent="CITY"),
    Institution(code="TOWN_B1", name="B1 镇卫生院", level=Level.TOWNSHIP, parent="COUNTY_B"),
]


class Snapshot:
    def __init__(self, relations: Sequence[ServiceRelation] = ()) -> None:
        self._tree = Tree(INSTITUTIONS)
        self._relations = list(relations)

    def tree(self) -> Tree:
        return self._tree

    def relations(self) -> Sequence[ServiceRelation]:
        return self._relations


def stream(
    institution: str | None = "VILLAGE_A1", room: str | None = "consult-1"
) -> m.EcgStreamInfo:
    return m.EcgStreamInfo(
        stream="0b7d6c3e-1f2a-4b5c-9d8e-7f6a5b4c3d2e",
        device="cart-1",
        patient="p-1",
        room=room,
        institution=institution,
        start_time="2026-12-02T09:00:00Z",
        fs_hz=500.0,
        leads=["I", "II"],
        samples=0,
        duration_s=0.0,
        state="live",
    )


def viewer(
    institution: str | None = None,
    roles: frozenset[str] = frozenset({"ecg_reader"}),
    room: str = "ecg-centre",
    in_room: bool = False,
) -> EcgRequest:
    return EcgRequest(
        1,
        "someone",
        room,
        m.EcgList(),
        institution=institution,
        person_roles=roles,
        in_room=in_room,
    )


@pytest.mark.parametrize(
    ("institution", "allowed"),
    [
        ("VILLAGE_A1", True),  # its own clinic
        ("TOWN_A1", True),  # above it
        ("COUNTY_A", True),
        ("CITY", True),
        ("COUNTY_B", False),  # another branch
        ("TOWN_B1", False),
    ],
)
def test_the_tree_decides_by_default(institution: str, allowed: bool) -> None:
    """An institution sees its own streams and those of the clinics below it."""
    assert EcgAccess(Snapshot()).may_view(viewer(institution), stream()) is allowed


def test_relations_add_and_remove() -> None:
    """An admin's relation lets another county read; a removal takes the tree's away."""
    relations = [
        ServiceRelation(provider="COUNTY_B", client="VILLAGE_A1", kind=ServiceKind.ECG),
        ServiceRelation(
            provider="COUNTY_A",
            client="VILLAGE_A1",
            kind=ServiceKind.ECG,
            override=RelationOverride.REMOVED,
        ),
        ServiceRelation(provider="TOWN_B1", client="VILLAGE_A1", kind=ServiceKind.CONSULT),
    ]
    access = EcgAccess(Snapshot(relations))
    assert access.may_view(viewer("COUNTY_B"), stream())
    assert not access.may_view(viewer("COUNTY_A"), stream())
    assert not access.may_view(viewer("TOWN_B1"), stream())  # a consult relation, not ECG


def test_room_names_grant_nothing_by_themselves() -> None:
    """A token of the 'ecg-centre' room sees nothing; a person's token for the room the
    stream is attached to sees nothing until the person is admitted to it."""
    access = EcgAccess(Snapshot())
    assert not access.may_view(viewer(None, room="ecg-centre"), stream())
    assert not access.may_view(viewer("COUNTY_B", room="ecg-centre"), stream())
    assert not access.may_view(viewer("COUNTY_B", room="consult-1"), stream())
    assert access.may_view(viewer("COUNTY_B", room="consult-1", in_room=True), stream())


def test_an_operator_token_for_the_stream_room_is_a_grant() -> None:
    """A token an operator minted for one room (no institution) sees that room's streams
    without joining it, and no other room's."""
    access = EcgAccess(Snapshot())
    assert access.may_view(viewer(None, room="consult-1"), stream())
    assert not access.may_view(viewer(None, room="consult-2"), stream())


def test_admitted_participants_see_their_consult_stream() -> None:
    """Admitted to the room the stream is attached to: granted, whatever the institution;
    admitted to another room: not."""
    access = EcgAccess(Snapshot())
    assert access.may_view(viewer("TOWN_B1", room="consult-1", in_room=True), stream())
    assert access.may_view(viewer(None, room="consult-1", in_room=True), stream())
    assert not access.may_view(viewer(None, room="consult-2", in_room=True), stream())


def test_admins_and_auditors_see_no_patient_data_by_role() -> None:
    """Without a clinical role the institution does not grant."""
    access = EcgAccess(Snapshot())
    for roles in (frozenset({"admin"}), frozenset({"auditor"}), frozenset()):
        assert not access.may_view(viewer("CITY", roles=roles), stream())


def test_a_stream_of_no_institution_is_seen_only_in_its_room() -> None:
    """A cart that authenticated with a bare token: only its room's participants see it."""
    access = EcgAccess(Snapshot())
    assert not access.may_view(viewer("CITY"), stream(institution=None))
    assert access.may_view(viewer(None, room="consult-1", in_room=True), stream(institution=None))
