"""What an ECG report says besides the signal: patient, time, filter band, measurements,
statements. Shared by the paper renderer (:mod:`ecg.paper`), the DICOM waveform
(:mod:`ecg.dicom`) and the FHIR export (:mod:`ecg.fhir`).

Design notes
------------
- The measurements and statements are made elsewhere (``ecg/measure*.py``,
  ``ecg/statements*.py``); the exporters take them as plain data so that they depend
  on no type of those modules: measurements as a mapping in the annotation JSON's
  spelling (``hr_bpm``, ``pr_ms``, ``qtc_ms`` as a number or an object by formula,
  ``qrs_axis_deg``...), statements as mappings or objects with ``code``, ``text_en``,
  ``text_zh`` and ``severity`` (:class:`StatementLike`). :func:`measurements_from` and
  :func:`statements_from` turn either into the frozen values below.
- A measurement that could not be made is *absent*: ``value`` is ``None`` and
  ``reason`` says why (``null``, NaN, ``{"value": null, "reason": "..."}`` in the input).
  Every output shows it as absent ("—", a DICOM item without a number, a FHIR
  ``dataAbsentReason``), never as a number.
- QTc is kept per formula (``qtc_bazett_ms``...); ``Measurements.qtc_formula`` names
  the one shown first (Bazett unless the input says otherwise).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "GLOBAL_MEASUREMENTS",
    "QTC_FORMULAS",
    "AbsentLike",
    "CriticalLike",
    "GlobalMeasurementsLike",
    "Measurement",
    "Measurements",
    "Patient",
    "ReportInfo",
    "Statement",
    "StatementLike",
    "content_from_annotations",
    "critical_from",
    "measurements_from",
    "patient_from_comments",
    "qtc_key",
    "statements_from",
]

QTC_FORMULAS = ("bazett", "fridericia", "framingham", "hodges")

# The global measurements a report shows, in the order it shows them (qtc_ms stands for
# the QTc of Measurements.qtc_formula).
GLOBAL_MEASUREMENTS = (
    "hr_bpm",
    "rr_ms",
    "pr_ms",
    "p_ms",
    "qrs_ms",
    "qt_ms",
    "qtc_ms",
    "p_axis_deg",
    "qrs_axis_deg",
    "t_axis_deg",
)


def qtc_key(formula: str) -> str:
    """The key of one QTc formula in :attr:`Measurements.values` (``qtc_bazett_ms``)."""
    return f"qtc_{formula}_ms"


_KNOWN_KEYS = frozenset(
    [name for name in GLOBAL_MEASUREMENTS if name != "qtc_ms"]
    + [qtc_key(formula) for formula in QTC_FORMULAS]
)


@dataclass(frozen=True)
class Measurement:
    """One measured value, or its absence with the reason.

    Parameters
    ----------
    value : float or None
        The value in the unit its name states (``_ms``, ``_bpm``, ``_deg``); ``None``
        when it could not be measured.
    reason : str
        Why it is absent (empty when it was measured or no reason was given).
    """

    value: float | None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.value is not None and not math.isfinite(self.value):
            object.__setattr__(self, "value", None)


@dataclass(frozen=True)
class Measurements:
    """The global measurements of one ECG.

    Parameters
    ----------
    values : mapping of str to Measurement
        By name (``hr_bpm``, ``rr_ms``, ``pr_ms``, ``p_ms``, ``qrs_ms``, ``qt_ms``,
        ``qtc_bazett_ms``..., ``p_axis_deg``, ``qrs_axis_deg``, ``t_axis_deg``). A name
        that is not there was not given (shown as absent too).
    qtc_formula : str
        The QTc formula shown first (one of :data:`QTC_FORMULAS`).
    """

    values: Mapping[str, Measurement] = field(default_factory=dict)
    qtc_formula: str = "bazett"

    def get(self, name: str) -> Measurement:
        """The measurement ``name`` (``qtc_ms``: the QTc of :attr:`qtc_formula`)."""
        key = qtc_key(self.qtc_formula) if name == "qtc_ms" else name
        return self.values.get(key, Measurement(None, "not measured"))

    def value(self, name: str) -> float | None:
        """The value of :meth:`get`, ``None`` when absent."""
        return self.get(name).value


class AbsentLike(Protocol):
    """A measurement that could not be made, as ``ecg.measure`` gives it."""

    @property
    def reason(self) -> str: ...

    @property
    def detail(self) -> str: ...


#: A measured value as ``ecg.measure`` gives it: a number or why there is none.
ValueLike = float | AbsentLike


class GlobalMeasurementsLike(Protocol):
    """What the exporters read of ``ecg.measure.GlobalMeasurements``."""

    @property
    def hr_bpm(self) -> ValueLike: ...

    @property
    def rr_ms(self) -> ValueLike: ...

    @property
    def pr_ms(self) -> ValueLike: ...

    @property
    def p_ms(self) -> ValueLike: ...

    @property
    def qrs_ms(self) -> ValueLike: ...

    @property
    def qt_ms(self) -> ValueLike: ...

    @property
    def qtc_ms(self) -> Mapping[Any, ValueLike]: ...

    @property
    def qtc_first(self) -> str: ...

    @property
    def p_axis_deg(self) -> ValueLike: ...

    @property
    def qrs_axis_deg(self) -> ValueLike: ...

    @property
    def t_axis_deg(self) -> ValueLike: ...


class CriticalLike(Protocol):
    """What the exporters read of a critical finding (``ecg.critical.Critical``)."""

    @property
    def code(self) -> str: ...

    @property
    def text_en(self) -> str: ...

    @property
    def text_zh(self) -> str: ...


class StatementLike(Protocol):
    """What the exporters read of a statement object (``ecg.statements`` has more)."""

    @property
    def code(self) -> str: ...

    @property
    def text_en(self) -> str: ...

    @property
    def text_zh(self) -> str: ...

    @property
    def severity(self) -> str: ...


@dataclass(frozen=True)
class Statement:
    """A coded interpretation statement (``SR``, ``1AVB``, ``STE``...).

    Parameters
    ----------
    code : str
        Its code in the statement library (SCP-ECG acronyms as PTB-XL spells them).
    text_en, text_zh : str
        Its text in English and Chinese.
    severity : str
        As the statement library grades it (``"normal"``, ``"abnormal"``,
        ``"critical"``...); ``"critical"`` is highlighted on paper.
    """

    code: str
    text_en: str = ""
    text_zh: str = ""
    severity: str = ""

    def text(self, lang: str) -> str:
        """The text in ``lang`` (``"zh"`` or ``"en"``), falling back to the other, then
        to the code."""
        first, second = (self.text_zh, self.text_en) if lang == "zh" else (self.text_en, "")
        return first or second or self.text_en or self.code


@dataclass(frozen=True)
class Patient:
    """Who the ECG belongs to; every field may be empty.

    Parameters
    ----------
    name : str
    patient_id : str
        The clinic's identifier.
    sex : str
        ``"M"``, ``"F"``, ``"O"`` or ``""``.
    age_years : int or None
    birth_date : date or None
    """

    name: str = ""
    patient_id: str = ""
    sex: str = ""
    age_years: int | None = None
    birth_date: dt.date | None = None


@dataclass(frozen=True)
class ReportInfo:
    """Everything a report shows besides the signal.

    Parameters
    ----------
    patient : Patient
    acquired_at : datetime or None
        Time of the first sample (aware datetimes are shown in the renderer's zone).
    record_name : str
    institution : str
        The clinic or department that recorded it.
    device : str
        The cart or monitor.
    filter_low_hz, filter_high_hz : float or None
        The band the signal was filtered with, in Hz (``None``: not stated).
    mains_hz : float or None
        The notch frequency in Hz, ``None`` when none was applied.
    measurements : Measurements
    statements : tuple of Statement
    critical : tuple of Statement
        Critical findings (危急值: code and texts, severity ``"critical"``), shown first
        and in red; :func:`critical_from` makes them from the JSON, objects or codes.
    conclusion : str
        The reader's own words, after the statements (lines separated by newlines).
    signed_by : str
        The reader who signed the report; empty while it is the engine's proposal.
    signed_at : datetime or None
        When it was signed.
    """

    patient: Patient = field(default_factory=Patient)
    acquired_at: dt.datetime | None = None
    record_name: str = ""
    institution: str = ""
    device: str = ""
    filter_low_hz: float | None = None
    filter_high_hz: float | None = None
    mains_hz: float | None = None
    measurements: Measurements = field(default_factory=Measurements)
    statements: tuple[Statement, ...] = ()
    critical: tuple[Statement, ...] = ()
    conclusion: str = ""
    signed_by: str = ""
    signed_at: dt.datetime | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _measurement(value: Any) -> Measurement:
    if isinstance(value, Measurement):
        return value
    if isinstance(value, Mapping):
        if "absent" in value:  # the annotation JSON: {"absent": CODE, "detail": TEXT}
            detail = value.get("detail")
            code = str(value["absent"])
            return Measurement(None, f"{code}: {detail}" if detail else code)
        reason = value.get("reason")
        return Measurement(_number(value.get("value")), "" if reason is None else str(reason))
    number = _number(value)
    return Measurement(number, "" if number is not None else "not measurable")


def _from_value(value: ValueLike) -> Measurement:
    if isinstance(value, int | float):
        return Measurement(float(value))
    detail = str(value.detail)
    return Measurement(None, f"{value.reason}: {detail}" if detail else str(value.reason))


def _from_global(found: GlobalMeasurementsLike) -> Measurements:
    values = {
        name: _from_value(measured)
        for name, measured in (
            ("hr_bpm", found.hr_bpm),
            ("rr_ms", found.rr_ms),
            ("pr_ms", found.pr_ms),
            ("p_ms", found.p_ms),
            ("qrs_ms", found.qrs_ms),
            ("qt_ms", found.qt_ms),
            ("p_axis_deg", found.p_axis_deg),
            ("qrs_axis_deg", found.qrs_axis_deg),
            ("t_axis_deg", found.t_axis_deg),
        )
    }
    for formula, value in found.qtc_ms.items():
        if str(formula) in QTC_FORMULAS:
            values[qtc_key(str(formula))] = _from_value(value)
    first = str(found.qtc_first)
    return Measurements(values, first if first in QTC_FORMULAS else "bazett")


def measurements_from(
    data: Mapping[str, Any] | Measurements | GlobalMeasurementsLike | None,
) -> Measurements:
    """Read global measurements from the annotation JSON's ``measurements`` object, or
    from ``ecg.measure``'s result (its ``global_``).

    Parameters
    ----------
    data : mapping or GlobalMeasurementsLike or Measurements or None
        ``{"hr_bpm": 72.0, "qtc_ms": {"bazett": 421.0, "fridericia": 410.0},
        "pr_ms": null, "p_axis_deg": {"value": null, "reason": "no P wave"}, ...}``.
        ``qtc_ms`` may also be a number (taken as Bazett) and ``qtc_first`` (or
        ``qtc_formula``) may name the formula shown first. An absent value may also be
        ``{"absent": CODE, "detail": TEXT}`` as ``ecg.output`` writes it. Unknown keys
        (per-lead measurements, indices) are ignored; a value that is not a finite
        number is absent.

    Returns
    -------
    Measurements
    """
    if isinstance(data, Measurements):
        return data
    if data is None:
        return Measurements()
    if not isinstance(data, Mapping):
        return _from_global(data)
    values: dict[str, Measurement] = {}
    formula = str(data.get("qtc_first", data.get("qtc_formula", "bazett")))
    if formula not in QTC_FORMULAS:
        formula = "bazett"
    for key, raw in data.items():
        if key == "qtc_ms":
            single = not isinstance(raw, Mapping) or "value" in raw or "absent" in raw
            by_formula = None if single else raw
            if by_formula is None:
                values[qtc_key("bazett")] = _measurement(raw)
            else:
                for name, item in by_formula.items():
                    if name in QTC_FORMULAS:
                        values[qtc_key(name)] = _measurement(item)
        elif key in _KNOWN_KEYS:
            values[key] = _measurement(raw)
    return Measurements(values, formula)


def _statement(item: Mapping[str, Any] | StatementLike | str) -> Statement | None:
    if isinstance(item, Statement):
        return item
    if isinstance(item, str):
        return Statement(item) if item else None
    if item is None or isinstance(item, int | float | list | tuple):  # JSON debris
        return None
    if isinstance(item, Mapping):
        code = item.get("code")
        if not isinstance(code, str) or not code:
            return None
        return Statement(
            code,
            str(item.get("text_en") or ""),
            str(item.get("text_zh") or ""),
            str(item.get("severity") or ""),
        )
    return Statement(str(item.code), str(item.text_en), str(item.text_zh), str(item.severity))


def statements_from(
    items: Iterable[Mapping[str, Any] | StatementLike | str] | None,
) -> tuple[Statement, ...]:
    """Read statements from mappings (the annotation JSON's ``statements``), objects
    with ``code``/``text_en``/``text_zh``/``severity``, or bare codes.

    An item without a code is left out (a report never shows a statement it cannot
    name).
    """
    if items is None:
        return ()
    found = (_statement(item) for item in items)
    return tuple(statement for statement in found if statement is not None)


def critical_from(
    items: Iterable[Mapping[str, Any] | CriticalLike | str] | None,
) -> tuple[Statement, ...]:
    """Critical findings from the annotation JSON's ``critical`` list (mappings with
    ``code``, ``text_en``, ``text_zh``), ``ecg.critical.Critical`` objects or bare codes:
    each code once (a finding that recurs in a record is one line of the report), in
    order, with severity ``"critical"``."""
    found: dict[str, Statement] = {}
    for item in items or ():
        if isinstance(item, Mapping):
            code, text_en, text_zh = item.get("code"), item.get("text_en"), item.get("text_zh")
        elif isinstance(item, str):
            code, text_en, text_zh = item, "", ""
        elif item is None or isinstance(item, int | float | list | tuple):  # JSON debris
            continue
        else:
            code, text_en, text_zh = str(item.code), str(item.text_en), str(item.text_zh)
        if isinstance(code, str) and code and code not in found:
            found[code] = Statement(code, str(text_en or ""), str(text_zh or ""), "critical")
    return tuple(found.values())


def content_from_annotations(
    document: Mapping[str, Any],
) -> tuple[Measurements, tuple[Statement, ...], tuple[Statement, ...]]:
    """Measurements, statements and critical findings of an annotation JSON document.

    ``measurements`` may be the global object itself or hold it under ``"global"``
    (beside ``"leads"``). Without a measured heart rate, the summary's median heart
    rate stands in for it (the pre-annotation files have no ``measurements``).
    Anything missing or malformed is simply absent.
    """
    raw = document.get("measurements")
    if isinstance(raw, Mapping) and isinstance(raw.get("global"), Mapping):
        raw = raw["global"]
    measurements = measurements_from(raw if isinstance(raw, Mapping) else None)
    summary = document.get("summary")
    if measurements.value("hr_bpm") is None and isinstance(summary, Mapping):
        median = _number(summary.get("hr_median_bpm"))
        if median is not None:
            values = dict(measurements.values)
            values["hr_bpm"] = Measurement(median)
            measurements = Measurements(values, measurements.qtc_formula)
    items = document.get("statements")
    statements = statements_from(items if isinstance(items, list) else None)
    found = document.get("critical")
    return measurements, statements, critical_from(found if isinstance(found, list) else None)


_SEX = {"m": "M", "male": "M", "f": "F", "female": "F", "男": "M", "女": "F"}


def patient_from_comments(comments: Iterable[str]) -> Patient:
    """Age and sex from WFDB header comments (LUDB's ``<age>: 51``, ``<sex>: F``;
    PTB-XL's ``Age: 59``, ``Sex: Female``); anything else stays empty."""
    age: int | None = None
    sex = ""
    for line in comments:
        key, _, value = line.partition(":")
        key = key.strip().strip("<>").strip().lower()
        value = value.strip()
        if key == "age" and value.isdigit():
            age = int(value)
        elif key == "sex":
            sex = _SEX.get(value.lower(), "")
    return Patient(sex=sex, age_years=age)
