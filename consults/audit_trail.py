"""The auditor's reading of the audit trail: who may read which rows, and what a search
is (no I/O: the rows come from an :class:`AuditReader`).

- Only people with the ``auditor`` role read the trail (admins administer; separation
  of duties). An auditor of an institution (a health commission at the top of its
  tree, a county hospital) reads the rows that concern it and the institutions below
  it; a deployment-wide admin who also holds the auditor role (no institution) reads
  every row, those that concern no institution too (room joins of operator tokens,
  server actions).
- Every search is itself a row (``audit.searched``: the filter, not the results).
- Pages are keyset pages, newest first: ``before_seq`` continues from the last row of
  the previous page, so the millionth row costs what the first does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from consults.directory import Person, Role, check_text
from consults.errors import Forbidden, InvalidInput
from consults.repositories import AuditEvent, AuditSink, DirectoryRepository
from consults.rights import Tree

__all__ = ["MAX_AUDIT_PAGE", "AuditFilter", "AuditItem", "AuditReader", "AuditTrail"]

MAX_AUDIT_PAGE: Final = 500


@dataclass(frozen=True, kw_only=True)
class AuditFilter:
    """What an auditor asks for; every given field must match. ``institutions`` None:
    any row; else rows that concern one of them. Times in seconds since the epoch
    (``since`` inclusive, ``until`` exclusive)."""

    actor: str | None = None
    action: str | None = None
    patient: str | None = None
    consult: str | None = None
    room: str | None = None
    institutions: frozenset[str] | None = None
    since_s: float | None = None
    until_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("actor", "action", "patient", "consult", "room"):
            value = getattr(self, name)
            if value is not None:
                check_text(name, value, 200)
        if self.since_s is not None and self.until_s is not None and self.until_s <= self.since_s:
            raise InvalidInput("until", "after since")


@dataclass(frozen=True, kw_only=True)
class AuditItem:
    """One stored row as an auditor sees it (``detail`` is its JSON text)."""

    seq: int
    time_s: float
    actor: str
    action: str
    target: str
    institution: str
    patient: str
    consult: str
    room: str
    detail: str | None


class AuditReader(Protocol):
    """The rows of the trail (the store's)."""

    def search(
        self, where: AuditFilter, *, limit: int, before_seq: int | None
    ) -> Sequence[AuditItem]:
        """Up to ``limit`` matching rows, newest first, older than ``before_seq``."""
        ...


class AuditTrail:
    """Searches of the trail by auditors, with their reach applied and audited."""

    def __init__(
        self, reader: AuditReader, directory: DirectoryRepository, audit: AuditSink
    ) -> None:
        self._reader = reader
        self._directory = directory
        self._audit = audit

    def reach(self, auditor: Person) -> frozenset[str] | None:
        """The institutions whose rows ``auditor`` reads; None: every row."""
        if Role.AUDITOR not in auditor.roles:
            raise Forbidden("reading the audit trail needs the auditor role")
        if auditor.institution is None:
            return None
        tree = Tree(self._directory.all_institutions())
        if auditor.institution not in tree:
            return frozenset()
        return tree.subtree(auditor.institution)

    def search(
        self,
        auditor: Person,
        where: AuditFilter,
        *,
        limit: int = 100,
        before_seq: int | None = None,
        now_s: float,
    ) -> Sequence[AuditItem]:
        """One page of what ``where`` matches within the auditor's reach.

        Raises
        ------
        Forbidden
            The person is not an auditor.
        InvalidInput
            ``limit`` outside 1..500 or ``before_seq`` below 1.
        """
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            raise InvalidInput("limit", f"1 to {MAX_AUDIT_PAGE}")
        if before_seq is not None and before_seq < 1:
            raise InvalidInput("before", "a row number, at least 1")
        reach = self.reach(auditor)
        if reach is not None:
            wanted = reach if where.institutions is None else where.institutions & reach
            where = AuditFilter(
                actor=where.actor,
                action=where.action,
                patient=where.patient,
                consult=where.consult,
                room=where.room,
                institutions=wanted,
                since_s=where.since_s,
                until_s=where.until_s,
            )
        asked = {
            name: str(value)
            for name, value in (
                ("actor", where.actor),
                ("action", where.action),
                ("consult", where.consult),
                ("room", where.room),
                ("since_s", where.since_s),
                ("until_s", where.until_s),
            )
            if value is not None
        }
        if where.patient is not None:
            asked["by_patient"] = "true"  # the id goes in the patient column, not details
        self._audit.append(
            AuditEvent(
                now_s,
                "audit.searched",
                actor=auditor.id,
                details=asked,
                institution=auditor.institution,
                patient=where.patient,
                consult=where.consult,
            )
        )
        if where.institutions is not None and not where.institutions:
            return []
        return self._reader.search(where, limit=limit, before_seq=before_seq)
