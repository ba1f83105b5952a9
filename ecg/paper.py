"""The ECG on paper: a 12-lead record drawn as an ECG cart prints it, as PDF or PNG.

Design notes
------------
- One pure function lays the pages out (:func:`layout_pages`: the signal, the header
  and the options in, a list of :class:`Page` out, every coordinate in millimetres on
  an A4 landscape sheet, 297 × 210 mm, origin top left); two backends draw that list:
  :func:`render_pdf` (vector, fpdf2) and :func:`render_png` (raster, Pillow):
  ``render_pdf(layout_pages(signal, fs_hz, lead_names, info, options))``. What one
  shows the other shows, and the layout is tested once.
- Exact scale: the PDF page is 297 × 210 mm and every line is drawn at its millimetre
  coordinates, so printed at 100 % (no "fit to page") 1 mm on paper is 1 mm of grid,
  25 mm one second at 25 mm/s and 10 mm one millivolt at 10 mm/mV. The grid is
  270 × 150 mm (54 × 30 large squares) with its corner at whole millimetres.
- Layouts: ``3x4`` (I II III | aVR aVL aVF | V1 V2 V3 | V4 V5 V6, each column 2.5 s of
  the same 10 s, plus a 10 s rhythm strip of lead II), ``6x2`` (limb leads left,
  chest leads right, 5 s each) and ``12x1`` (every lead the whole 10 s). Each row starts
  with a 1 mV, 200 ms calibration pulse at the row's gain and speed, and column changes
  are marked by a short vertical bar, as carts print them.
- Leads go to their standard slot by name. A record lead with another name (``MLII``,
  ``V7``, ``vx``) takes the first slot whose standard lead the record lacks, under its
  own label; a slot left without a lead is labelled and says "no signal"; leads that
  find no slot are named in the footer. The rhythm strip is lead II, or the first lead
  of the record when it has no lead II.
- The trace of each segment is drawn around the median of what it shows (no filtering
  here: the caller filters and says which band in :class:`~ecg.paper_content.ReportInfo`).
  NaN samples are gaps in the trace. Above 20 samples per millimetre (over 500 Hz at
  25 mm/s) each 0.05 mm keeps its minimum and maximum, which no printer resolves
  further, so a 2 kHz record stays a small file with every peak.
- Long records are paged: page *k* shows seconds ``[k T, (k + 1) T)`` with ``T`` =
  250 mm / speed (10 s at 25 mm/s, 5 s at 50 mm/s), at most ``max_pages`` pages; the
  footer says what part of the record the pages cover. Short records leave the rest
  of the page empty. A PNG is one page (``page`` chooses which).
- Text is Noto Sans CJK SC (OpenType/CFF collection, Debian's fonts-noto-cjk), which
  fpdf2 embeds as a CID-keyed CFF subset with a ToUnicode map, so the PDF's text layer
  holds the Chinese header (``pdftotext`` reads it). reportlab was not used: it embeds
  TrueType outlines only.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import io
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from PIL import Image, ImageDraw, ImageFont

from ecg.errors import ConfigError, SignalError
from ecg.paper_content import Measurements, ReportInfo

if TYPE_CHECKING:
    from fpdf import FPDF

__all__ = [
    "CJK_FONT",
    "PAGE_HEIGHT_MM",
    "PAGE_WIDTH_MM",
    "FontFace",
    "Grid",
    "Label",
    "Layout",
    "Page",
    "PaperOptions",
    "Slot",
    "Stroke",
    "arrange_leads",
    "layout_pages",
    "measurement_lines",
    "render_pdf",
    "render_png",
]

PAGE_WIDTH_MM = 297.0
PAGE_HEIGHT_MM = 210.0

# The grid: corner and size in whole millimetres.
GRID_X_MM = 13.0
GRID_Y_MM = 48.0
GRID_WIDTH_MM = 270.0
GRID_HEIGHT_MM = 150.0
# Inside the grid: the calibration pulse zone, then 250 mm of trace.
_TRACE_X_MM = GRID_X_MM + 16.0
TRACE_WIDTH_MM = 250.0
CALIBRATION_MV = 1.0
CALIBRATION_S = 0.2

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

Color = tuple[int, int, int]
INK: Color = (0, 0, 0)
GREY: Color = (110, 110, 110)
ALARM: Color = (200, 0, 0)
GRID_MINOR: Color = (246, 190, 190)
GRID_MAJOR: Color = (226, 120, 120)
GRID_MINOR_MM = 0.08
GRID_MAJOR_MM = 0.2
TRACE_MM = 0.22

# Above this many samples per mm of paper, min/max per 0.05 mm (see module notes).
_MAX_SAMPLES_PER_MM = 20.0
_BUCKET_MM = 0.05


class Layout(enum.StrEnum):
    """Lead arrangement on the page."""

    L3X4 = "3x4"
    L6X2 = "6x2"
    L12X1 = "12x1"


MAX_DPI = 600
GAINS_MM_PER_MV = (2.5, 5.0, 10.0, 20.0, 40.0)
SPEEDS_MM_PER_S = (12.5, 25.0, 50.0)


@dataclass(frozen=True)
class FontFace:
    """A font file and the face in it (collections hold several)."""

    path: str
    index: int = 0


# Noto Sans CJK: face 2 of the collection is the Simplified Chinese one.
CJK_FONT = FontFace("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2)
CJK_FONT_BOLD = FontFace("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc", 2)


@dataclass(frozen=True)
class PaperOptions:
    """How to print.

    Parameters
    ----------
    layout : Layout or str
        ``"3x4"`` (with a lead II rhythm strip), ``"6x2"`` or ``"12x1"``.
    gain_mm_per_mv : float
        Amplitude scale: 2.5, 5, 10 (standard), 20 or 40 mm/mV.
    speed_mm_per_s : float
        Paper speed: 12.5, 25 (standard) or 50 mm/s.
    lang : {"zh", "en"}
        Language of the header and footer.
    rhythm_lead : str
        Lead of the 3x4 rhythm strip (lead II; the first lead when absent).
    max_pages : int
        Pages at most for a long record (the footer says what was left out).
    display_tz : tzinfo or None
        Zone to show aware acquisition times in (``None``: as given).
    font, font_bold : FontFace
        Text faces; must hold CJK glyphs for ``lang="zh"``.
    """

    layout: Layout | str = Layout.L3X4
    gain_mm_per_mv: float = 10.0
    speed_mm_per_s: float = 25.0
    lang: Literal["zh", "en"] = "zh"
    rhythm_lead: str = "II"
    max_pages: int = 20
    display_tz: dt.tzinfo | None = None
    font: FontFace = CJK_FONT
    font_bold: FontFace = CJK_FONT_BOLD

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "layout", Layout(self.layout))
        except ValueError:
            raise ConfigError(
                f"layout must be one of {[v.value for v in Layout]}, got {self.layout!r}"
            ) from None
        if self.gain_mm_per_mv not in GAINS_MM_PER_MV:
            raise ConfigError(
                f"gain_mm_per_mv must be one of {GAINS_MM_PER_MV}, got {self.gain_mm_per_mv!r}"
            )
        if self.speed_mm_per_s not in SPEEDS_MM_PER_S:
            raise ConfigError(
                f"speed_mm_per_s must be one of {SPEEDS_MM_PER_S}, got {self.speed_mm_per_s!r}"
            )
        if self.lang not in ("zh", "en"):
            raise ConfigError(f"lang must be 'zh' or 'en', got {self.lang!r}")
        if self.max_pages < 1:
            raise ConfigError(f"max_pages must be at least 1, got {self.max_pages!r}")

    @property
    def page_s(self) -> float:
        """Seconds of signal per page (250 mm of trace)."""
        return TRACE_WIDTH_MM / self.speed_mm_per_s


# The display list.


@dataclass(frozen=True, eq=False)
class Stroke:
    """An open polyline in mm (x right, y down), ``points_mm`` of shape (n, 2)."""

    points_mm: NDArray[np.float64]
    width_mm: float = TRACE_MM
    color: Color = INK


@dataclass(frozen=True)
class Label:
    """A line of text whose baseline starts (``align="left"``) or ends (``"right"``) at
    ``(x_mm, y_mm)``."""

    x_mm: float
    y_mm: float
    text: str
    size_pt: float = 9.0
    color: Color = INK
    bold: bool = False
    align: Literal["left", "right"] = "left"


@dataclass(frozen=True)
class Grid:
    """The 1 mm / 5 mm grid with its corner at ``(x_mm, y_mm)``."""

    x_mm: float = GRID_X_MM
    y_mm: float = GRID_Y_MM
    width_mm: float = GRID_WIDTH_MM
    height_mm: float = GRID_HEIGHT_MM


@dataclass(frozen=True, eq=False)
class Page:
    """One sheet: the grid, the traces (calibration pulses and markers included) and
    the text.

    Attributes
    ----------
    start_s, end_s : float
        The seconds of the record the page shows (``end_s`` may pass the record's end).
    calibration_rows_mm : tuple of float
        Baseline y of each row, where its calibration pulse stands (for tests and
        callers that add to the page).
    """

    index: int
    count: int
    start_s: float
    end_s: float
    grid: Grid
    strokes: tuple[Stroke, ...]
    labels: tuple[Label, ...]
    calibration_rows_mm: tuple[float, ...] = field(default=())
    options: PaperOptions = field(default_factory=PaperOptions)
    width_mm: float = PAGE_WIDTH_MM
    height_mm: float = PAGE_HEIGHT_MM


# Where each lead goes.


@dataclass(frozen=True)
class Slot:
    """One place for a lead: its row and column, the signal column drawn there
    (``None``: the record lacks that lead) and the label printed."""

    row: int
    column: int
    lead: int | None  # column of the signal, None: no such lead
    label: str


def _layout_shape(layout: Layout) -> tuple[int, int, bool]:
    """(rows of leads, columns, rhythm strip) of a layout."""
    return {
        Layout.L3X4: (3, 4, True),
        Layout.L6X2: (6, 2, False),
        Layout.L12X1: (12, 1, False),
    }[layout]


def arrange_leads(lead_names: Sequence[str], layout: Layout) -> tuple[list[Slot], list[str]]:
    """Slots of the layout with the record's leads in them, and the leads left over.

    A standard lead goes to its slot; another name takes the first slot whose standard
    lead is missing (see the module notes).
    """
    rows = _layout_shape(layout)[0]
    by_name = {name: index for index, name in reversed(list(enumerate(lead_names)))}
    assigned: dict[str, tuple[int, str]] = {
        name: (by_name[name], name) for name in STANDARD_LEADS if name in by_name
    }
    used = {index for index, _ in assigned.values()}
    others = [index for index in range(len(lead_names)) if index not in used]
    free = [name for name in STANDARD_LEADS if name not in assigned]
    left_over: list[str] = []
    for index in others:
        if free:
            assigned[free.pop(0)] = (index, lead_names[index])
        else:
            left_over.append(lead_names[index])
    slots = []
    for position, name in enumerate(STANDARD_LEADS):
        column, row = divmod(position, rows)
        lead, label = assigned.get(name, (None, name))
        slots.append(Slot(row, column, lead, label))
    return slots, left_over


# The layout.


def _as_mv(
    signal: ArrayLike, lead_names: Sequence[str], counts_per_mv: float | Sequence[float]
) -> NDArray[np.float64]:
    data = np.asarray(signal)
    if data.ndim == 1:
        data = data.reshape(-1, 1)
    if data.ndim != 2:
        raise SignalError(f"signal must be 1-D or 2-D (samples, leads), got {data.ndim}-D")
    if data.shape[1] != len(lead_names):
        raise SignalError(f"{data.shape[1]} signal columns but {len(lead_names)} lead names")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise SignalError(f"signal must hold integers or floats, got {data.dtype}")
    gains = np.broadcast_to(np.asarray(counts_per_mv, dtype=np.float64), (data.shape[1],))
    if not np.all(np.isfinite(gains) & (gains > 0)):
        raise SignalError(f"counts_per_mv must be positive and finite, got {gains.tolist()}")
    return data.astype(np.float64) / gains


def layout_pages(
    signal: ArrayLike,
    fs_hz: float,
    lead_names: Sequence[str],
    info: ReportInfo | None = None,
    options: PaperOptions | None = None,
    *,
    counts_per_mv: float | Sequence[float] = 1.0,
    duration_s: float | None = None,
) -> list[Page]:
    """Lay an ECG out on A4 landscape pages.

    Parameters
    ----------
    signal : array_like, shape (n_samples, n_leads) or (n_samples,)
        Samples, integers or floats; ``signal / counts_per_mv`` is in mV. NaN marks a
        missing sample (a gap in the trace).
    fs_hz : float
        Sampling frequency in Hz (> 0).
    lead_names : sequence of str
        One name per column (standard spelling: ``I``, ``aVR``, ``V1``...).
    info : ReportInfo, optional
        The header: patient, time, filter band, measurements, statements.
    options : PaperOptions, optional
        Layout, gain, speed, language.
    counts_per_mv : float or sequence of float
        Signal units per mV, one for all leads or one per lead (1 for a signal in mV).
    duration_s : float, optional
        The whole record's length in s when ``signal`` is only its first part (what the
        pages can show, read without the rest of a long record): the pages and the
        footer are as if the whole record had been given. None: the signal's length.

    Returns
    -------
    list of Page
        At least one page, even for an empty signal.

    Raises
    ------
    SignalError
        For a signal that is not 1-D or 2-D numbers, a column count that differs from
        the lead names, a non-positive gain or sampling rate.
    """
    options = options or PaperOptions()
    info = info or ReportInfo()
    if not (math.isfinite(fs_hz) and fs_hz > 0):
        raise SignalError(f"fs_hz must be a positive number, got {fs_hz!r}")
    names = [str(name) for name in lead_names]
    mv = _as_mv(signal, names, counts_per_mv)
    n_samples = mv.shape[0]
    duration_s = max(duration_s or 0.0, n_samples / fs_hz)
    page_s = options.page_s
    needed = max(1, math.ceil(duration_s / page_s - 1e-9))
    count = min(needed, options.max_pages)
    slots, left_over = arrange_leads(names, Layout(options.layout))
    return [
        _page(mv, fs_hz, names, slots, left_over, info, options, index, count, needed, duration_s)
        for index in range(count)
    ]


def _page(
    mv: NDArray[np.float64],
    fs_hz: float,
    names: list[str],
    slots: list[Slot],
    left_over: list[str],
    info: ReportInfo,
    options: PaperOptions,
    index: int,
    count: int,
    needed: int,
    duration_s: float,
) -> Page:
    layout = Layout(options.layout)
    rows, columns, rhythm = _layout_shape(layout)
    n_rows = rows + (1 if rhythm else 0)
    row_mm = GRID_HEIGHT_MM / n_rows
    page_s = options.page_s
    start_s = index * page_s
    column_s = page_s / columns
    gain = options.gain_mm_per_mv
    speed = options.speed_mm_per_s
    strokes: list[Stroke] = []
    labels: list[Label] = []
    baselines: list[float] = []
    text = _TEXT[options.lang]

    def baseline(row: int) -> float:
        return GRID_Y_MM + row_mm * row + row_mm * 0.6

    def segment(lead: int | None, label: str, row: int, t0_s: float, t1_s: float) -> None:
        x0 = _TRACE_X_MM + (t0_s - start_s) * speed
        y = baseline(row)
        labels.append(Label(x0 + 1.0, y - row_mm * 0.6 + 4.5, label, 9.0, bold=True))
        traced = False
        if lead is not None:
            traced = _trace(mv[:, lead], fs_hz, t0_s, t1_s, x0, y, gain, speed, strokes)
        if not traced:
            labels.append(Label(x0 + 2.0, y - 1.0, text["no_signal"], 7.0, GREY))

    for row in range(n_rows):
        y = baseline(row)
        baselines.append(y)
        strokes.append(_calibration_pulse(y, gain, speed))
    for slot in slots:
        t0 = start_s + slot.column * column_s
        segment(slot.lead, slot.label, slot.row, t0, t0 + column_s)
    for column in range(1, columns):
        x = _TRACE_X_MM + column * column_s * speed
        for row in range(rows):
            y = baseline(row)
            strokes.append(Stroke(np.array([[x, y - 3.0], [x, y + 3.0]]), TRACE_MM))
    if rhythm:
        lead = _rhythm_lead(names, options.rhythm_lead)
        label = names[lead] if lead is not None else options.rhythm_lead
        segment(lead, label, rows, start_s, start_s + page_s)

    labels.extend(_header(info, options, names))
    labels.extend(_footer(info, options, fs_hz, duration_s, index, count, needed, left_over))
    return Page(
        index=index,
        count=count,
        start_s=start_s,
        end_s=start_s + page_s,
        grid=Grid(),
        strokes=tuple(strokes),
        labels=tuple(labels),
        calibration_rows_mm=tuple(baselines),
        options=options,
    )


def _rhythm_lead(names: list[str], wanted: str) -> int | None:
    if wanted in names:
        return names.index(wanted)
    return 0 if names else None


def _calibration_pulse(y_mm: float, gain_mm_per_mv: float, speed_mm_per_s: float) -> Stroke:
    x = GRID_X_MM + 2.0
    width = CALIBRATION_S * speed_mm_per_s
    top = y_mm - CALIBRATION_MV * gain_mm_per_mv
    points = [
        (x, y_mm),
        (x + 2.0, y_mm),
        (x + 2.0, top),
        (x + 2.0 + width, top),
        (x + 2.0 + width, y_mm),
        (x + 4.0 + width, y_mm),
    ]
    return Stroke(np.array(points, dtype=np.float64), TRACE_MM)


def _trace(
    lead_mv: NDArray[np.float64],
    fs_hz: float,
    t0_s: float,
    t1_s: float,
    x0_mm: float,
    y_mm: float,
    gain_mm_per_mv: float,
    speed_mm_per_s: float,
    strokes: list[Stroke],
) -> bool:
    """Add the strokes of one lead between two times; False when there is nothing."""
    first = max(0, math.ceil(t0_s * fs_hz - 1e-9))
    last = min(lead_mv.shape[0], math.ceil(t1_s * fs_hz - 1e-9))
    if last <= first:
        return False
    values = lead_mv[first:last]
    finite = np.isfinite(values)
    if not finite.any():
        return False
    centre = float(np.median(values[finite]))
    x = x0_mm + (np.arange(first, last) / fs_hz - t0_s) * speed_mm_per_s
    y = y_mm - (values - centre) * gain_mm_per_mv
    samples_per_mm = fs_hz / speed_mm_per_s
    for start, stop in _finite_runs(finite):
        xs, ys = x[start:stop], y[start:stop]
        if samples_per_mm > _MAX_SAMPLES_PER_MM:
            xs, ys = _min_max(xs, ys, x0_mm)
        if xs.size == 1:  # one sample between gaps: a dot as wide as the line
            xs = np.array([xs[0] - TRACE_MM / 2, xs[0] + TRACE_MM / 2])
            ys = np.array([ys[0], ys[0]])
        strokes.append(Stroke(np.column_stack([xs, ys])))
    return True


def _finite_runs(finite: NDArray[np.bool_]) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[False], finite, [False]]).astype(np.int8))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


def _min_max(
    x: NDArray[np.float64], y: NDArray[np.float64], x0_mm: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per 0.05 mm of paper, the lowest and highest point in the order they come."""
    bucket = np.floor((x - x0_mm) / _BUCKET_MM).astype(np.int64)
    starts = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    low = np.minimum.reduceat(y, starts)
    high = np.maximum.reduceat(y, starts)
    ends = np.append(starts[1:], y.size)
    # Which of the two comes first in the bucket decides the order of the pair.
    arg_low = np.array([s + int(np.argmin(y[s:e])) for s, e in zip(starts, ends, strict=True)])
    arg_high = np.array([s + int(np.argmax(y[s:e])) for s, e in zip(starts, ends, strict=True)])
    low_first = arg_low <= arg_high
    first_y = np.where(low_first, low, high)
    second_y = np.where(low_first, high, low)
    first_x = x[np.minimum(arg_low, arg_high)]
    second_x = x[np.maximum(arg_low, arg_high)]
    xs = np.column_stack([first_x, second_x]).reshape(-1)
    ys = np.column_stack([first_y, second_y]).reshape(-1)
    return xs, ys


# Header and footer.

_TEXT: dict[str, dict[str, str]] = {
    "zh": {
        "title": "十二导联心电图",
        "title_other": "心电图",
        "name": "姓名",
        "id": "ID",
        "sex": "性别",
        "age": "年龄",
        "age_unit": "岁",
        "M": "男",
        "F": "女",
        "O": "其他",
        "hr_bpm": "心率",
        "rr_ms": "RR间期",
        "pr_ms": "PR间期",
        "p_ms": "P波时限",
        "qrs_ms": "QRS时限",
        "qt_ms": "QT间期",
        "qtc_ms": "QTc",
        "axes": "P/QRS/T电轴",
        "bpm": "次/分",
        "statements": "诊断提示",
        "critical": "危急值",
        "no_statement": "无",
        "no_signal": "无信号",
        "more": "另有 {n} 条",
        "page": "第 {i}/{n} 页",
        "shown": "显示 {a:g}–{b:g} s，记录共 {d:g} s",
        "not_shown": "未显示导联：",
        "unconfirmed": "仪器提示，需经医师确认",
        "signed": "报告医师：{name}  {when}",
        "record": "记录",
        "filter": "滤波",
        "mains": "工频",
    },
    "en": {
        "title": "12-lead ECG",
        "title_other": "ECG",
        "name": "Name",
        "id": "ID",
        "sex": "Sex",
        "age": "Age",
        "age_unit": " y",
        "M": "male",
        "F": "female",
        "O": "other",
        "hr_bpm": "HR",
        "rr_ms": "RR",
        "pr_ms": "PR",
        "p_ms": "P",
        "qrs_ms": "QRS",
        "qt_ms": "QT",
        "qtc_ms": "QTc",
        "axes": "P/QRS/T axes",
        "bpm": "bpm",
        "statements": "Interpretation",
        "critical": "CRITICAL",
        "no_statement": "none",
        "no_signal": "no signal",
        "more": "{n} more",
        "page": "page {i}/{n}",
        "shown": "showing {a:g}–{b:g} s of {d:g} s",
        "not_shown": "leads not shown: ",
        "unconfirmed": "computer interpretation, to be confirmed by a physician",
        "signed": "reported by {name}  {when}",
        "record": "record",
        "filter": "filter",
        "mains": "notch",
    },
}

ABSENT = "—"
# The statements' column: from 112 mm into the grid to its right edge.
_STATEMENT_WIDTH_MM = GRID_WIDTH_MM - 112.0


def _fit(words: str, width_mm: float, size_pt: float, face: FontFace, suffix: str = "") -> str:
    """``words + suffix`` in ``width_mm`` at ``size_pt`` in ``face``, ``words`` cut with an
    ellipsis when needed (the suffix, a statement's code, is always kept). Widths are
    the font's own advances (FreeType, through Pillow), or, when the face cannot be
    read, a safe estimate (a CJK glyph one em, others 0.6 em)."""
    em_mm = size_pt / 72 * 25.4
    try:
        font = _pil_font(face.path, face.index, _MEASURE_PX)
    except ConfigError:
        font = None

    def width(text: str) -> float:
        if font is not None:
            return float(font.getlength(text)) / _MEASURE_PX * em_mm
        wide = sum(unicodedata.east_asian_width(char) in "WF" for char in text)
        return em_mm * (wide + 0.6 * (len(text) - wide))

    if width(words + suffix) <= width_mm:
        return words + suffix
    low, high = 0, len(words)  # the longest prefix that fits with the ellipsis
    while low < high:
        middle = (low + high + 1) // 2
        if width(words[:middle] + "…" + suffix) <= width_mm:
            low = middle
        else:
            high = middle - 1
    return words[:low].rstrip() + "…" + suffix


# Text is measured at this size in pixels and scaled (advances are linear in size).
_MEASURE_PX = 200


_QTC_NAMES = {
    "bazett": "Bazett",
    "fridericia": "Fridericia",
    "framingham": "Framingham",
    "hodges": "Hodges",
}


def _fmt(value: float | None, unit: str = "") -> str:
    """A measurement as printed: rounded to a whole unit, or the dash when absent."""
    if value is None:
        return ABSENT
    return f"{value:.0f}{unit}"


def measurement_lines(measurements: Measurements, lang: str) -> list[tuple[str, str]]:
    """(label, value) pairs of the header's measurement block; absent ones are "—"."""
    text = _TEXT[lang]
    get = measurements.value
    ms = " ms"
    axes = "/".join(_fmt(get(name)) for name in ("p_axis_deg", "qrs_axis_deg", "t_axis_deg"))
    formula = _QTC_NAMES.get(measurements.qtc_formula, measurements.qtc_formula)
    qtc = _fmt(get("qtc_ms"), ms)
    return [
        (text["hr_bpm"], _fmt(get("hr_bpm"), " " + text["bpm"])),
        (text["rr_ms"], _fmt(get("rr_ms"), ms)),
        (text["pr_ms"], _fmt(get("pr_ms"), ms)),
        (text["p_ms"], _fmt(get("p_ms"), ms)),
        (text["qrs_ms"], _fmt(get("qrs_ms"), ms)),
        (text["qt_ms"], _fmt(get("qt_ms"), ms)),
        (f"{text['qtc_ms']} ({formula})", qtc),
        (text["axes"], axes + ("°" if axes != "/".join([ABSENT] * 3) else "")),
    ]


def _time_text(when: dt.datetime | None, tz: dt.tzinfo | None) -> str:
    if when is None:
        return ""
    if when.tzinfo is not None and tz is not None:
        when = when.astimezone(tz)
    text = when.strftime("%Y-%m-%d %H:%M:%S")
    if when.tzinfo is not None:
        offset = when.utcoffset() or dt.timedelta()
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        text += f" UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return text


def _header(info: ReportInfo, options: PaperOptions, names: Sequence[str]) -> list[Label]:
    lang = options.lang
    text = _TEXT[lang]
    right = GRID_X_MM + GRID_WIDTH_MM
    title = text["title"] if set(STANDARD_LEADS) <= set(names) else text["title_other"]
    labels = [Label(GRID_X_MM, 12.0, title, 13.0, bold=True)]
    when = _time_text(info.acquired_at, options.display_tz)
    if when:
        labels.append(Label(right, 12.0, when, 10.0, align="right"))
    patient = info.patient
    parts = []
    if patient.name:
        parts.append(f"{text['name']}: {patient.name}")
    if patient.patient_id:
        parts.append(f"{text['id']}: {patient.patient_id}")
    if patient.sex:
        parts.append(f"{text['sex']}: {text.get(patient.sex, patient.sex)}")
    if patient.age_years is not None:
        parts.append(f"{text['age']}: {patient.age_years}{text['age_unit']}")
    if patient.birth_date is not None:
        parts.append(patient.birth_date.isoformat())
    if info.institution:
        parts.append(info.institution)
    if info.record_name:
        parts.append(f"{text['record']}: {info.record_name}")
    labels.append(Label(GRID_X_MM, 18.5, "    ".join(parts), 9.5))

    # Measurements: two columns of four lines.
    pairs = measurement_lines(info.measurements, lang)
    for position, (name, value) in enumerate(pairs):
        column, line = divmod(position, 4)
        x = GRID_X_MM + column * 52.0
        y = 25.0 + line * 5.0
        labels.append(Label(x, y, name, 8.5, GREY))
        labels.append(Label(x + 47.0, y, value, 9.0, bold=True, align="right"))

    # Statements: critical findings first, then the statements, then the reader's words;
    # one column of four lines, or two when there are more (then each line is cut to
    # its column).
    x = GRID_X_MM + 112.0
    labels.append(Label(x, 25.0, text["statements"], 8.5, GREY))
    lines: list[tuple[str, str, Color, bool]] = []  # words, code suffix, colour, bold
    for finding in info.critical:
        words = finding.text(lang)
        suffix = "" if words == finding.code else f" ({finding.code})"
        lines.append((f"{text['critical']}: {words}", suffix, ALARM, True))
    for statement in info.statements:
        critical = statement.severity == "critical"
        suffix = f" ({statement.code})"
        lines.append((statement.text(lang), suffix, ALARM if critical else INK, critical))
    for words in info.conclusion.splitlines():
        if words.strip():
            lines.append((words.strip(), "", INK, False))
    if not lines:
        lines.append((text["no_statement"], "", GREY, False))
    per_column = 4
    columns = 1 if len(lines) <= per_column else 2
    width_mm = _STATEMENT_WIDTH_MM if columns == 1 else _STATEMENT_WIDTH_MM / 2 - 3.0
    room = per_column * columns
    shown = lines if len(lines) <= room else lines[: room - 1]
    for position, (words, suffix, color, bold) in enumerate(shown):
        column, line = divmod(position, per_column)
        column_x = x + column * _STATEMENT_WIDTH_MM / 2
        labels.append(
            Label(
                column_x,
                30.0 + line * 4.6,
                _fit(words, width_mm, 9.0, options.font_bold if bold else options.font, suffix),
                9.0,
                color,
                bold,
            )
        )
    if len(shown) < len(lines):
        more = text["more"].format(n=len(lines) - len(shown))
        labels.append(Label(x + _STATEMENT_WIDTH_MM / 2, 30.0 + 3 * 4.6, more, 8.5, GREY))
    return labels


def _footer(
    info: ReportInfo,
    options: PaperOptions,
    fs_hz: float,
    duration_s: float,
    index: int,
    count: int,
    needed: int,
    left_over: list[str],
) -> list[Label]:
    text = _TEXT[options.lang]
    y = GRID_Y_MM + GRID_HEIGHT_MM + 5.5
    parts = [f"{options.speed_mm_per_s:g} mm/s", f"{options.gain_mm_per_mv:g} mm/mV"]
    if info.filter_low_hz is not None and info.filter_high_hz is not None:
        parts.append(f"{text['filter']} {info.filter_low_hz:g}–{info.filter_high_hz:g} Hz")
    if info.mains_hz:
        parts.append(f"{text['mains']} {info.mains_hz:g} Hz")
    parts.append(f"{fs_hz:g} Hz")
    page_s = options.page_s
    shown_to = min(duration_s, count * page_s)
    if needed > count or duration_s < page_s * count - 1e-9:
        parts.append(text["shown"].format(a=0, b=round(shown_to, 2), d=round(duration_s, 2)))
    if info.device:
        parts.append(info.device)
    labels = [Label(GRID_X_MM, y, "    ".join(parts), 8.0)]
    if info.signed_by:
        when = _time_text(info.signed_at, options.display_tz)
        signed = text["signed"].format(name=info.signed_by, when=when).strip()
        status, color = _fit(signed, 100.0, 8.0, options.font), INK
    else:
        status, color = text["unconfirmed"], GREY
    page_text = text["page"].format(i=index + 1, n=count)
    labels.append(
        Label(GRID_X_MM + GRID_WIDTH_MM, y, f"{page_text}    {status}", 8.0, color, align="right")
    )
    if left_over:
        labels.append(Label(GRID_X_MM, y + 4.0, text["not_shown"] + ", ".join(left_over), 8.0))
    return labels


# Backends.


def _grid_lines(grid: Grid) -> tuple[list[float], list[float], list[float], list[float]]:
    """x and y of the minor and major lines (every mm; every 5 mm)."""
    xs = [grid.x_mm + i for i in range(int(grid.width_mm) + 1)]
    ys = [grid.y_mm + i for i in range(int(grid.height_mm) + 1)]
    return (
        [x for i, x in enumerate(xs) if i % 5],
        [y for i, y in enumerate(ys) if i % 5],
        [x for i, x in enumerate(xs) if i % 5 == 0],
        [y for i, y in enumerate(ys) if i % 5 == 0],
    )


def render_pdf(pages: Sequence[Page]) -> bytes:
    """Draw laid-out pages (:func:`layout_pages`) into a vector PDF on A4 landscape at
    exact scale, one PDF page per :class:`Page`.

    Raises
    ------
    ConfigError
        When a font file cannot be read.
    """
    if not pages:
        raise ConfigError("no page to render")
    options = pages[0].options
    from fpdf import FPDF  # imported here: only the report paths pay for it
    from fpdf.enums import StrokeCapStyle, StrokeJoinStyle
    from fpdf.prefs import ViewerPreferences

    pdf = FPDF(orientation="L", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    pdf.set_creator("teleconsult")
    pdf.set_title("ECG")
    # Ask the print dialogue for actual size: "fit to page" would shrink the grid and
    # every millimetre the reader measures on it.
    pdf.viewer_preferences = ViewerPreferences(print_scaling="None")
    try:
        pdf.add_font("cjk", "", options.font.path, collection_font_number=options.font.index)
        pdf.add_font(
            "cjk", "B", options.font_bold.path, collection_font_number=options.font_bold.index
        )
    except (OSError, RuntimeError) as error:
        raise ConfigError(f"cannot load the report font: {error}") from None
    for page in pages:
        pdf.add_page()
        # Butt ends: grid lines stop exactly at the grid's edge.
        with pdf.local_context(stroke_cap_style=StrokeCapStyle.BUTT):
            _pdf_grid(pdf, page.grid)
        # Round joints and ends: a trace as a pen draws it; clipped to the grid, as a
        # cart's pen stops at the paper's edge, so a tall QRS never prints over the header.
        grid = page.grid
        with (
            pdf.rect_clip(grid.x_mm, grid.y_mm, grid.width_mm, grid.height_mm),
            pdf.local_context(
                stroke_cap_style=StrokeCapStyle.ROUND, stroke_join_style=StrokeJoinStyle.ROUND
            ),
        ):
            for stroke in page.strokes:
                pdf.set_draw_color(*stroke.color)
                pdf.set_line_width(stroke.width_mm)
                pdf.polyline([(float(x), float(y)) for x, y in stroke.points_mm])
        for label in page.labels:
            pdf.set_font("cjk", "B" if label.bold else "", label.size_pt)
            pdf.set_text_color(*label.color)
            x = label.x_mm
            if label.align == "right":
                x -= pdf.get_string_width(label.text)
            pdf.text(x, label.y_mm, label.text)
    return bytes(pdf.output())


def _pdf_grid(pdf: FPDF, grid: Grid) -> None:
    minor_x, minor_y, major_x, major_y = _grid_lines(grid)
    x1, y1 = grid.x_mm + grid.width_mm, grid.y_mm + grid.height_mm
    for color, width, xs, ys in (
        (GRID_MINOR, GRID_MINOR_MM, minor_x, minor_y),
        (GRID_MAJOR, GRID_MAJOR_MM, major_x, major_y),
    ):
        pdf.set_draw_color(*color)
        pdf.set_line_width(width)
        for x in xs:
            pdf.line(x, grid.y_mm, x, y1)
        for y in ys:
            pdf.line(grid.x_mm, y, x1, y)


@functools.lru_cache(maxsize=16)
def _pil_font(path: str, index: int, size_px: int) -> ImageFont.FreeTypeFont:

    try:
        return ImageFont.truetype(path, size_px, index=index)
    except OSError as error:
        raise ConfigError(f"cannot load the report font {path}: {error}") from None


def render_png(page: Page, dpi: float = 200.0) -> bytes:
    """Draw one laid-out page into a PNG image at ``dpi`` dots per inch (up to 300 dpi
    drawn at twice the size and reduced, so that lines and text are smooth).

    Parameters
    ----------
    page : Page
    dpi : float
        Resolution, 10 to 600 (25.4 dpi is one pixel per mm; 254 dpi ten).

    Returns
    -------
    bytes
        A PNG image of ``round(297 / 25.4 * dpi)`` × ``round(210 / 25.4 * dpi)`` pixels.
    """
    if not (math.isfinite(dpi) and 10 <= dpi <= MAX_DPI):
        raise ConfigError(f"dpi must be between 10 and {MAX_DPI}, got {dpi!r}")
    options = page.options
    # Twice the size up to 300 dpi; above, lines are already many pixels wide, and an
    # A4 page at 1200 dpi would take 0.4 GB per layer.
    oversample = 2 if dpi <= 300 else 1
    px_per_mm = dpi / 25.4
    scale = px_per_mm * oversample
    size = (round(page.width_mm * px_per_mm), round(page.height_mm * px_per_mm))
    image = Image.new("RGB", (size[0] * oversample, size[1] * oversample), (255, 255, 255))
    draw = ImageDraw.Draw(image)

    def width_px(width_mm: float) -> int:
        return max(1, round(width_mm * scale))

    grid = page.grid
    minor_x, minor_y, major_x, major_y = _grid_lines(grid)
    top, bottom = grid.y_mm * scale, (grid.y_mm + grid.height_mm) * scale
    left, right = grid.x_mm * scale, (grid.x_mm + grid.width_mm) * scale
    for color, width, xs, ys in (
        (GRID_MINOR, GRID_MINOR_MM, minor_x, minor_y),
        (GRID_MAJOR, GRID_MAJOR_MM, major_x, major_y),
    ):
        for x in xs:
            draw.line([(x * scale, top), (x * scale, bottom)], fill=color, width=width_px(width))
        for y in ys:
            draw.line([(left, y * scale), (right, y * scale)], fill=color, width=width_px(width))
    # Traces are drawn into one mask per colour, cut to the grid, then inked (the PDF's
    # clip).
    box = (round(left), round(top), round(right), round(bottom))
    for color in dict.fromkeys(stroke.color for stroke in page.strokes):
        mask = Image.new("L", image.size, 0)
        pen = ImageDraw.Draw(mask)
        for stroke in page.strokes:
            if stroke.color == color:
                points = [(float(x) * scale, float(y) * scale) for x, y in stroke.points_mm]
                pen.line(points, fill=255, width=width_px(stroke.width_mm), joint="curve")
        clipped = Image.new("L", image.size, 0)
        clipped.paste(mask.crop(box), box[:2])
        image.paste(color, (0, 0, *image.size), mask=clipped)
    for label in page.labels:
        face = options.font_bold if label.bold else options.font
        font = _pil_font(face.path, face.index, max(1, round(label.size_pt / 72 * 25.4 * scale)))
        anchor = "ls" if label.align == "left" else "rs"
        draw.text(
            (label.x_mm * scale, label.y_mm * scale),
            label.text,
            fill=label.color,
            font=font,
            anchor=anchor,
        )
    reduced = image.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    reduced.save(out, format="PNG", dpi=(dpi, dpi))
    return out.getvalue()
