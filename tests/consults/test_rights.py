"""Rights over the institution tree and the service relations: properties that hold for
every tree and every set of overrides (hypothesis), and a few named cases."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consults import rights
from consults.directory import (
    AdminScope,
    Institution,
    Level,
    Person,
    RelationOverride,
    Role,
    ServiceKind,
    ServiceRelation,
)
from consults.errors import InvalidInput, NotFound

LEVELS = list(Level)


@dataclass(frozen=True)
class World:
    """A random tree and random overrides over it."""

    tree: rights.Tree
    relations: tuple[ServiceRelation, ...]

    @property
    def codes(self) -> list[str]:
        return sorted(self.tree.by_code)


@st.composite
def worlds(draw: st.DrawFn, max_size: int = 14) -> World:
    """Trees whose levels go down from parent to child, with some overrides."""
    n = draw(st.integers(1, max_size))
    institutions: list[Institution] = []
    for i in range(n):
        candidates = [p for p in institutions if p.level.rank < len(LEVELS) - 1]
        parent = draw(st.one_of(st.none(), st.sampled_from(candidates))) if candidates else None
        low = parent.level.rank + 1 if parent else 0
        level = LEVELS[draw(st.integers(low, len(LEVELS) - 1))]
        institutions.append(
            Institution(f"i{i}", f"Inst {i}", level, parent.code if parent else None)
        )
    codes = [i.code for i in institutions]
    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(codes),
                st.sampled_from(codes),
                st.sampled_from(list(ServiceKind)),
                st.sampled_from(list(RelationOverride)),
            ),
            max_size=8,
        )
    )
    relations = {(p, c, k): ServiceRelation(p, c, k, o) for p, c, k, o in pairs if p != c}
    return World(rights.Tree(institutions), tuple(relations.values()))


def person(
    institution: str | None,
    *roles: Role,
    scope: AdminScope | None = None,
    person_id: str = "p1",
) -> Person:
    """A person of these roles (admin scope given with the admin role)."""
    return Person(
        id=person_id,
        username="someone",
        display_name="Someone",
        institution=institution,
        roles=frozenset(roles),
        admin_scope=scope,
    )


@given(worlds())
def test_subtree_and_ancestors_agree(world: World) -> None:
    """y is in x's subtree exactly when x is y or above it."""
    for x in world.codes:
        for y in world.codes:
            assert (y in world.tree.subtree(x)) == (x == y or x in world.tree.ancestors(y))


@given(worlds())
def test_by_default_an_institution_serves_those_below_it(world: World) -> None:
    """Without overrides, p serves c exactly when p is c or above it, for every kind."""
    for p in world.codes:
        for c in world.codes:
            for kind in ServiceKind:
                expected = p == c or p in world.tree.ancestors(c)
                assert rights.serves(world.tree, (), p, c, kind) == expected


@given(worlds())
def test_providers_of_agrees_with_serves(world: World) -> None:
    """providers_of(c) is exactly the set of p that serve c, with any overrides."""
    for c in world.codes:
        for kind in ServiceKind:
            expected = {
                p for p in world.codes if rights.serves(world.tree, world.relations, p, c, kind)
            }
            assert rights.providers_of(world.tree, world.relations, c, kind) == expected


@given(worlds(), st.data())
def test_an_override_changes_its_own_pair_only(world: World, data: st.DataObject) -> None:
    """Adding or removing one relation decides that pair and leaves every other as it was."""
    if len(world.codes) < 2:
        return
    p, c = data.draw(st.lists(st.sampled_from(world.codes), min_size=2, max_size=2, unique=True))
    kind = data.draw(st.sampled_from(list(ServiceKind)))
    override = data.draw(st.sampled_from(list(RelationOverride)))
    others = tuple(r for r in world.relations if (r.provider, r.client, r.kind) != (p, c, kind))
    changed = (*others, ServiceRelation(p, c, kind, override))
    assert rights.serves(world.tree, changed, p, c, kind) == (override is RelationOverride.ADDED)
    for x in world.codes:
        for y in world.codes:
            for k in ServiceKind:
                if (x, y, k) != (p, c, kind):
                    before = rights.serves(world.tree, others, x, y, k)
                    assert rights.serves(world.tree, changed, x, y, k) == before


@given(worlds(), st.data())
def test_institution_admin_reaches_exactly_their_subtree(world: World, data: st.DataObject) -> None:
    """An institution admin administers their subtree and nothing else; a deployment
    admin everything; a non-admin nothing."""
    home = data.draw(st.sampled_from(world.codes))
    admin = person(home, Role.ADMIN, scope=AdminScope.INSTITUTION)
    everything = person(None, Role.ADMIN, scope=AdminScope.DEPLOYMENT)
    doctor = person(home, Role.DOCTOR)
    for code in world.codes:
        assert rights.may_administer(admin, world.tree, code) == (
            code == home or home in world.tree.ancestors(code)
        )
        assert rights.may_administer(everything, world.tree, code)
        assert not rights.may_administer(doctor, world.tree, code)
    assert not rights.may_create_institution(admin, world.tree, None)
    assert rights.may_create_institution(everything, world.tree, None)


@given(worlds(), st.data())
def test_stream_viewing(world: World, data: st.DataObject) -> None:
    """A clinician sees a stream when their institution serves its institution for ECG;
    a participant always; an admin or auditor alone never."""
    home = data.draw(st.sampled_from(world.codes))
    where = data.draw(st.sampled_from(world.codes))
    role = data.draw(st.sampled_from(sorted(rights.CLINICAL_ROLES, key=lambda r: r.value)))
    clinician = person(home, role)
    stream = rights.StreamAccess(where)
    expected = rights.serves(world.tree, world.relations, home, where, ServiceKind.ECG)
    assert rights.may_view_stream(clinician, world.tree, world.relations, stream) == expected
    overseer = person(home, Role.ADMIN, Role.AUDITOR, scope=AdminScope.INSTITUTION)
    assert not rights.may_view_stream(overseer, world.tree, world.relations, stream)
    attached = rights.StreamAccess(where, participants=frozenset({overseer.id}))
    assert rights.may_view_stream(overseer, world.tree, world.relations, attached)


@settings(max_examples=50)
@given(worlds(), st.data())
def test_people_see_their_branch_of_the_directory(world: World, data: st.DataObject) -> None:
    """Everyone sees their own institution, those above and below it, and the
    institutions an ADDED override links to it; nobody else's."""
    home = data.draw(st.sampled_from(world.codes))
    seen = rights.visible_institutions(person(home, Role.DOCTOR), world.tree, world.relations)
    assert seen is not None
    linked = {
        r.provider
        for r in world.relations
        if r.client == home and r.override is RelationOverride.ADDED
    }
    linked |= {
        r.client
        for r in world.relations
        if r.provider == home and r.override is RelationOverride.ADDED
    }
    expected = world.tree.subtree(home) | set(world.tree.ancestors(home)) | linked
    assert seen == expected


def test_city_centre_serving_another_countys_clinic() -> None:
    """An ADDED relation lets a city ECG centre read a clinic outside its branch; a
    REMOVED one takes a county's own township away."""
    tree = rights.Tree(
        [
            Institution("city", "市心电中心", Level.CITY),
            Institution("county-a", "A县医院", Level.COUNTY, "city"),
            Institution("county-b", "B县医院", Level.COUNTY),
            Institution("town-b", "B镇卫生院", Level.TOWNSHIP, "county-b"),
        ]
    )
    reader = person("city", Role.ECG_READER)
    stream = rights.StreamAccess("town-b")
    assert not rights.may_view_stream(reader, tree, (), stream)
    added = (ServiceRelation("city", "town-b", ServiceKind.ECG),)
    assert rights.may_view_stream(reader, tree, added, stream)
    county_doctor = person("county-b", Role.DOCTOR)
    assert rights.may_view_stream(county_doctor, tree, (), stream)
    removed = (ServiceRelation("county-b", "town-b", ServiceKind.ECG, RelationOverride.REMOVED),)
    assert not rights.may_view_stream(county_doctor, tree, removed, stream)


def test_check_parent_levels_and_cycles() -> None:
    """A child must be of a lower level than its parent, the parent must exist, and a
    move may not put an institution below itself."""
    tree = rights.Tree(
        [
            Institution("county", "County", Level.COUNTY),
            Institution("town", "Town", Level.TOWNSHIP, "county"),
        ]
    )
    rights.check_parent(tree, Institution("village", "V", Level.VILLAGE, "town"))
    with pytest.raises(InvalidInput):
        rights.check_parent(tree, Institution("city", "C", Level.CITY, "town"))
    with pytest.raises(InvalidInput):
        rights.check_parent(tree, Institution("peer", "P", Level.COUNTY, "county"))
    with pytest.raises(NotFound):
        rights.check_parent(tree, Institution("lost", "L", Level.VILLAGE, "nowhere"))
    with pytest.raises(InvalidInput):
        rights.check_parent(tree, Institution("county", "County", Level.COUNTY, "town"))
