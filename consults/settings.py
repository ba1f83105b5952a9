"""The consult service's and the ECG centre's settings: the ``[consults]`` and
``[readings]`` sections of the configuration.

Frozen dataclasses, each declared once with its defaults and checks; the configuration
(:mod:`teleconsult.config`) builds them from the TOML file and the environment and the
server hands them whole to the services (:class:`consults.service.ConsultService`,
:class:`consults.reading_service.ReadingService`)::

    [consults]
    accept_within_s = { routine = 86400, urgent = 7200, emergency = 600 }
    expire_after_s = { routine = 259200, urgent = 21600, emergency = 1800 }
    warn_fraction = 0.25
    remind_before_s = 900
    attachment_limits_bytes = { "application/pdf" = 20971520 }

    [readings]
    acknowledge_within_s = 600

A table given in the file replaces the default table whole: every priority needs its
deadline; attachment types left out of the table are refused (see ``MediaType``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from consults.lifecycle import DeadlinePolicy
from consults.requests import DEFAULT_LIMITS_BYTES, MediaType

__all__ = ["ConsultSettings", "ReadingSettings"]


@dataclass(frozen=True, kw_only=True)
class ConsultSettings(DeadlinePolicy):
    """The acceptance deadlines (:class:`DeadlinePolicy`: overdue, then expired, per
    priority) and the rest of what an operator may set for consults.

    Attributes
    ----------
    warn_fraction : float
        The sweep warns (``consult.due_soon``) when this fraction of the acceptance time
        remains and the consult is still not accepted; in (0, 1).
    remind_before_s : float
        The sweep reminds both sides (``consult.starting``) this long before a scheduled
        consult's start.
    attachment_limits_bytes : mapping of MediaType to int
        The largest attachment of each type taken (by content, not by name); a type
        without a limit is not taken.
    """

    warn_fraction: float = 0.25
    remind_before_s: float = 15 * 60.0
    attachment_limits_bytes: Mapping[MediaType, int] = field(
        default_factory=lambda: dict(DEFAULT_LIMITS_BYTES)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.warn_fraction < 1:
            raise ValueError("warn_fraction must be in (0, 1)")
        if self.remind_before_s <= 0:
            raise ValueError("remind_before_s must be positive")
        for kind, limit in self.attachment_limits_bytes.items():
            if not 0 < limit <= 2**31:
                raise ValueError(f"attachment_limits_bytes.{kind.value} must be in 1 B-2 GiB")


@dataclass(frozen=True, kw_only=True)
class ReadingSettings:
    """The ECG centre's settings: the ``[readings]`` section of the configuration.

    Attributes
    ----------
    acknowledge_within_s : float
        A critical value not acknowledged (read back) by the clinic's doctor this long
        after it was raised escalates: the clinic's other doctors, then the centre's
        coordinator, then the webhooks (default 10 minutes).
    """

    acknowledge_within_s: float = 600.0

    def __post_init__(self) -> None:
        if self.acknowledge_within_s <= 0:
            raise ValueError("acknowledge_within_s must be positive")
