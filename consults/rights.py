"""Who may administer what, who serves whom, and who may see an ECG stream: pure functions
of the institution tree, the service relations and the people involved.

Design notes
------------
- The tree is small (thousands of institutions at most), read whole from the store and
  indexed once per decision (:class:`Tree`); every rule below is a function of it.
- **Administration.** A deployment admin reaches everything; an institution admin
  reaches their institution and every institution below it (any depth). An admin may
  create, edit and see the people and devices of the institutions they reach; only a
  deployment admin creates a root institution, makes a deployment admin or changes
  which roles require a second factor.
- **Service.** By default an institution serves every institution below it (any depth):
  a county hospital reads the ECGs of its townships' and villages' clinics. An admin's
  override is per ``(provider, client, kind)``: ``ADDED`` gives a relation the tree does
  not (a city ECG centre serving another county's clinics), ``REMOVED`` takes away one it
  does; an override on one pair says nothing of the pairs below it. An override is set
  by an admin who reaches the *client* (whose patients' data it shares); one is cleared
  by an admin who reaches either side.
- **Viewing an ECG stream.** The participants of the consult the stream is attached to
  see it (the caller says who they are: admitted participants only, never a waiting
  room). Otherwise a person with a clinical role (doctor, expert, coordinator,
  ecg_reader) sees it when their institution is the stream's or serves it for ECG.
  Admins and auditors see no patient data by their role alone.
- **Not found, not forbidden.** A record outside what the caller may see is reported as
  missing (:func:`visible_institutions` decides what a person sees of the directory), so
  that nobody learns what exists in another branch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consults.directory import (
    AdminScope,
    Institution,
    Person,
    RelationOverride,
    Role,
    ServiceKind,
    ServiceRelation,
)
from consults.errors import InvalidInput, NotFound

__all__ = [
    "CLINICAL_ROLES",
    "StreamAccess",
    "Tree",
    "admin_reach",
    "check_parent",
    "may_administer",
    "may_clear_relation",
    "may_create_institution",
    "may_grant",
    "may_set_relation",
    "may_view_stream",
    "providers_of",
    "serves",
    "visible_institutions",
]

CLINICAL_ROLES = frozenset({Role.DOCTOR, Role.EXPERT, Role.COORDINATOR, Role.ECG_READER})


class Tree:
    """The institution tree, indexed.

    Parameters
    ----------
    institutions
        Every institution. A parent code that is not among them makes that institution
        a root here (the store keeps references whole; this only keeps the rules total).
    """

    def __init__(self, institutions: Iterable[Institution]) -> None:
        self.by_code: dict[str, Institution] = {i.code: i for i in institutions}
        self._children: dict[str, list[str]] = {}
        for inst in self.by_code.values():
            if inst.parent is not None and inst.parent in self.by_code:
                self._children.setdefault(inst.parent, []).append(inst.code)

    def __contains__(self, code: object) -> bool:
        return code in self.by_code

    def get(self, code: str) -> Institution:
        """The institution of ``code``; :class:`NotFound` if there is none."""
        try:
            return self.by_code[code]
        except KeyError:
            raise NotFound("institution", code) from None

    def ancestors(self, code: str) -> tuple[str, ...]:
        """The codes above ``code``, nearest first (a cycle, impossible by
        :func:`check_parent`, stops the walk instead of looping)."""
        out: list[str] = []
        seen = {code}
        parent = self.by_code[code].parent if code in self.by_code else None
        while parent is not None and parent in self.by_code and parent not in seen:
            out.append(parent)
            seen.add(parent)
            parent = self.by_code[parent].parent
        return tuple(out)

    def subtree(self, code: str) -> frozenset[str]:
        """``code`` and every code below it (empty if ``code`` is unknown)."""
        if code not in self.by_code:
            return frozenset()
        out = {code}
        stack = [code]
        while stack:
            for child in self._children.get(stack.pop(), ()):
                if child not in out:
                    out.add(child)
                    stack.append(child)
        return frozenset(out)

    def is_below(self, code: str, ancestor: str) -> bool:
        """Whether ``ancestor`` is strictly above ``code``."""
        return ancestor in self.ancestors(code)


def check_parent(tree: Tree, child: Institution) -> None:
    """Refuse a child whose parent is unknown, or not of a higher level, or below it.

    Raises
    ------
    NotFound
        The parent does not exist.
    InvalidInput
        The parent's level is not above the child's, or the parent lies in the child's
        subtree (a move would make a cycle).
    """
    if child.parent is None:
        return
    parent = tree.get(child.parent)
    if not parent.level.may_parent(child.level):
        raise InvalidInput("level", f"a {child.level.value} cannot be below a {parent.level.value}")
    if child.code in tree and child.parent in tree.subtree(child.code):
        raise InvalidInput("parent", "an institution cannot be moved below itself")


def admin_reach(admin: Person, tree: Tree) -> frozenset[str] | None:
    """The institution codes an admin administers; ``None`` means every one.

    A person who is not an admin reaches nothing.
    """
    if admin.admin_scope is AdminScope.DEPLOYMENT:
        return None
    if admin.admin_scope is AdminScope.INSTITUTION and admin.institution is not None:
        return tree.subtree(admin.institution)
    return frozenset()


def may_administer(admin: Person, tree: Tree, institution: str | None) -> bool:
    """Whether ``admin`` may create, edit or see records of ``institution``.

    ``None`` stands for "no institution" (a deployment admin's own record).
    """
    reach = admin_reach(admin, tree)
    if reach is None:
        return True
    return institution is not None and institution in reach


def may_create_institution(admin: Person, tree: Tree, parent: str | None) -> bool:
    """Whether ``admin`` may create an institution below ``parent`` (a root if ``None``)."""
    if parent is None:
        return admin.is_deployment_admin
    return may_administer(admin, tree, parent)


def may_grant(admin: Person, roles: frozenset[Role], scope: AdminScope | None) -> bool:
    """Whether ``admin`` may give these roles: only a deployment admin makes another."""
    if not admin.is_admin:
        return False
    return scope is not AdminScope.DEPLOYMENT or admin.is_deployment_admin


def _overrides(
    relations: Iterable[ServiceRelation], kind: ServiceKind
) -> Mapping[tuple[str, str], RelationOverride]:
    return {(r.provider, r.client): r.override for r in relations if r.kind is kind}


def serves(
    tree: Tree,
    relations: Iterable[ServiceRelation],
    provider: str,
    client: str,
    kind: ServiceKind,
) -> bool:
    """Whether ``provider`` serves ``client`` for ``kind``.

    An institution always serves itself; otherwise an override for the pair decides,
    and without one the tree does (``provider`` above ``client``).
    """
    if provider == client:
        return True
    override = _overrides(relations, kind).get((provider, client))
    if override is RelationOverride.ADDED:
        return True
    if override is RelationOverride.REMOVED:
        return False
    return client in tree and tree.is_below(client, provider)


def providers_of(
    tree: Tree, relations: Iterable[ServiceRelation], client: str, kind: ServiceKind
) -> frozenset[str]:
    """Every institution that serves ``client`` for ``kind`` (itself included)."""
    overrides = _overrides(relations, kind)
    out = {client, *tree.ancestors(client)}
    for (provider, served), override in overrides.items():
        if served != client:
            continue
        if override is RelationOverride.ADDED:
            out.add(provider)
        else:
            out.discard(provider)
    return frozenset(out)


def may_set_relation(admin: Person, tree: Tree, relation: ServiceRelation) -> bool:
    """Whether ``admin`` may set an override: they must reach the client."""
    return may_administer(admin, tree, relation.client)


def may_clear_relation(admin: Person, tree: Tree, provider: str, client: str) -> bool:
    """Whether ``admin`` may clear an override: they must reach one side of it."""
    return may_administer(admin, tree, client) or may_administer(admin, tree, provider)


def visible_institutions(
    person: Person, tree: Tree, relations: Iterable[ServiceRelation]
) -> frozenset[str] | None:
    """The institutions a person sees in the directory; ``None`` means all of them.

    An admin sees what they reach. Everyone sees their own institution, the ones above
    it, the ones below it, and the ones it serves or is served by through overrides:
    the people they work with. Anything else is "not found".
    """
    if person.is_deployment_admin:
        return None
    seen: set[str] = set()
    if person.admin_scope is AdminScope.INSTITUTION:
        seen |= admin_reach(person, tree) or frozenset()
    own = person.institution
    if own is None or own not in tree:
        return frozenset(seen)
    seen |= tree.subtree(own)
    seen.update(tree.ancestors(own))
    for relation in relations:
        if relation.override is not RelationOverride.ADDED:
            continue
        if relation.client == own:
            seen.add(relation.provider)
        elif relation.provider == own:
            seen.add(relation.client)
    return frozenset(seen & tree.by_code.keys())


@dataclass(frozen=True, slots=True)
class StreamAccess:
    """What decides who sees an ECG stream.

    Parameters
    ----------
    institution
        The institution the stream belongs to (its cart's).
    participants
        Person ids of the admitted participants of the consult the stream is attached
        to (empty when it is attached to none).
    """

    institution: str
    participants: frozenset[str] = frozenset()


def may_view_stream(
    viewer: Person,
    tree: Tree,
    relations: Iterable[ServiceRelation],
    stream: StreamAccess,
) -> bool:
    """Whether ``viewer`` may see the (live or stored) ECG stream ``stream``."""
    if viewer.id in stream.participants:
        return True
    if not viewer.roles & CLINICAL_ROLES or viewer.institution is None:
        return False
    return serves(tree, relations, viewer.institution, stream.institution, ServiceKind.ECG)
