"""The ECG centre's tables (reading tasks, reports, signed versions, critical values), in
:data:`store.schema.metadata`.

Like :mod:`store.consult_schema`, this module depends on :mod:`store.schema` only and is
imported by it last, so whoever imports ``store.schema`` sees every table. The
repository over them is :mod:`store.readings`; the migration ``0200_readings``.

Design notes
------------
- ``urgency`` is :func:`consults.reading_repositories.urgency` (0 critical and STAT … 3
  neither): the worklist is ``ORDER BY urgency, received_at`` over an index, per clinic
  and state.
- A device stream or an uploaded record becomes at most one task (``stream`` and
  ``record`` unique; NULLs never collide): a stream-ended hook run twice makes one task.
  ``stream`` names the live ECG service's stream id without a foreign key: the task may
  be made from the stream store before or without the ``streams`` row.
- A finding is raised once per task (unique ``reading``, ``code``).
- Lists (critical codes, top statements, report statements, who was told) are JSON text.
- A reader's corrected fiducials (``reading_fiducials``, one row per task, the
  migration ``0220_reading_fiducials``) and beat labels (``reading_beat_labels``,
  ``0240_reading_beat_labels``) are kept beside the draft report.
- Signed versions keep the document as canonical JSON text, byte for byte what was
  signed.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from consults.readings import CriticalState, ReadingState
from store.schema import CODE, NAME, SHA256_HEX, UtcDateTime, metadata

__all__ = [
    "critical_values",
    "reading_beat_labels",
    "reading_fiducials",
    "reading_reports",
    "reading_tasks",
    "reading_versions",
]

READING_STATES: Final = tuple(s.value for s in ReadingState)
CRITICAL_STATES: Final = tuple(s.value for s in CriticalState)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


reading_tasks = Table(
    "reading_tasks",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("clinic", String(CODE), ForeignKey("institutions.code"), nullable=False),
    Column("centre", String(CODE), ForeignKey("institutions.code"), nullable=False),
    Column("stream", String(CODE), nullable=True, unique=True),
    Column("record", String(CODE), nullable=True, unique=True),
    Column("patient", String(NAME), nullable=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("stat", Boolean, nullable=False),
    Column("urgency", Integer, nullable=False),
    Column("critical", Text, nullable=False),  # JSON list of codes
    Column("top_statements", Text, nullable=False),  # JSON list of codes
    Column("claimant", String(CODE), nullable=True),
    Column("signer", String(CODE), nullable=True),
    Column("version", Integer, nullable=False),
    Column("signed_at", UtcDateTime, nullable=True),
    Column("reason", Text, nullable=True),
    Column("revision", Integer, nullable=False),
    CheckConstraint(_one_of("state", READING_STATES), name="state"),
    CheckConstraint("urgency BETWEEN 0 AND 3", name="urgency"),
    # The worklist: a clinic's tasks (by state) most urgent first, then the oldest.
    Index("ix_reading_tasks_clinic_state_urgency", "clinic", "state", "urgency", "received_at"),
    Index("ix_reading_tasks_state_urgency", "state", "urgency", "received_at"),
    Index("ix_reading_tasks_claimant", "claimant"),
    # A reader's own tasks: claimed or signed by them (an OR over both indexes).
    Index("ix_reading_tasks_signer", "signer"),
    Index("ix_reading_tasks_patient", "patient"),
)

reading_reports = Table(
    "reading_reports",
    metadata,
    Column("reading", String(CODE), ForeignKey("reading_tasks.id"), primary_key=True),
    Column("statements", Text, nullable=False),  # JSON list of codes
    Column("text", Text, nullable=False),
    Column("updated_by", String(CODE), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# The reader's corrections of the global fiducials (JSON object: name -> ms on the
# median beat), kept with the draft; the signed document carries them.
reading_fiducials = Table(
    "reading_fiducials",
    metadata,
    Column("reading", String(CODE), ForeignKey("reading_tasks.id"), primary_key=True),
    Column("fiducials_ms", Text, nullable=False),
    Column("updated_by", String(CODE), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# The reader's beat labels (JSON object: the beat's index among the engine's beats of
# the measured window -> N, S, V, P or Q), kept with the draft; the signed document
# carries them and their counts.
reading_beat_labels = Table(
    "reading_beat_labels",
    metadata,
    Column("reading", String(CODE), ForeignKey("reading_tasks.id"), primary_key=True),
    Column("labels", Text, nullable=False),
    Column("updated_by", String(CODE), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

reading_versions = Table(
    "reading_versions",
    metadata,
    Column("reading", String(CODE), ForeignKey("reading_tasks.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("document", Text, nullable=False),  # canonical JSON, the bytes signed
    Column("algorithm", String(16), nullable=False),
    Column("signature", Text, nullable=False),
    Column("key_fingerprint", String(80), nullable=False),
    Column("public_key", String(SHA256_HEX), nullable=False),  # hex of the raw key
    Column("signer", String(CODE), nullable=False),
    Column("signed_at", UtcDateTime, nullable=False),
)

critical_values = Table(
    "critical_values",
    metadata,
    Column("id", String(CODE), primary_key=True),
    Column("reading", String(CODE), ForeignKey("reading_tasks.id"), nullable=False),
    Column("code", String(CODE), nullable=False),
    Column("state", String(16), nullable=False),
    Column("clinic", String(CODE), ForeignKey("institutions.code"), nullable=False),
    Column("centre", String(CODE), ForeignKey("institutions.code"), nullable=False),
    Column("patient", String(NAME), nullable=True),
    Column("raised_by", String(CODE), nullable=True),
    Column("detected_at", UtcDateTime, nullable=False),
    Column("notified", Text, nullable=False),  # JSON list of usernames, in order
    Column("level", Integer, nullable=False),
    Column("notified_at", UtcDateTime, nullable=True),
    Column("acknowledged_by", String(CODE), nullable=True),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Column("read_back", Text, nullable=True),
    Column("escalate_at", UtcDateTime, nullable=True),
    Column("revision", Integer, nullable=False),
    CheckConstraint(_one_of("state", CRITICAL_STATES), name="state"),
    UniqueConstraint("reading", "code", name="uq_critical_values_reading_code"),
    # The register: a clinic's values, newest first; the sweep: the next escalation.
    Index("ix_critical_values_clinic_detected_at", "clinic", "detected_at"),
    Index("ix_critical_values_escalate_at", "escalate_at"),
)
