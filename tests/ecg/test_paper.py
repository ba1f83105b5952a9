"""The ECG on paper: exact scale measured on real rasterisations (pdftoppm), the text
layer read back (pdftotext), and the layout's handling of odd records."""

from __future__ import annotations

import datetime as dt
import io
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from PIL import Image

from ecg.errors import ConfigError, SignalError
from ecg.paper import (
    GRID_HEIGHT_MM,
    GRID_WIDTH_MM,
    GRID_X_MM,
    GRID_Y_MM,
    TRACE_WIDTH_MM,
    PaperOptions,
    arrange_leads,
    layout_pages,
    render_pdf,
    render_png,
)
from ecg.paper_content import Patient, ReportInfo, measurements_from, statements_from
from fixtures.make_fixtures import STANDARD_LEADS, synthetic_ecg

FS_HZ = 500.0
# 254 dpi is exactly 10 pixels per millimetre.
DPI = 254
PX_PER_MM = DPI / 25.4
TRACE_X_MM = GRID_X_MM + 16.0

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None,
    reason="poppler-utils (pdftoppm, pdftotext) not installed",
)


def _signal(duration_s: float = 10.0, fs_hz: float = FS_HZ) -> NDArray[np.float64]:
    return synthetic_ecg(fs_hz, duration_s, np.arange(0.4, duration_s, 0.8))


def _info() -> ReportInfo:
    return ReportInfo(
        patient=Patient("张三", "P0001", "M", 63),
        acquired_at=dt.datetime(2026, 12, 2, 1, 30, tzinfo=dt.UTC),
        record_name="synthetic12",
        institution="东关镇卫生院",
        filter_low_hz=0.05,
        filter_high_hz=150.0,
        mains_hz=50.0,
        measurements=measurements_from(
            {
                "hr_bpm": 75.0,
                "pr_ms": 160.0,
                "qrs_ms": 92.0,
                "qt_ms": 380.0,
                "qtc_ms": {"bazett": 424.0},
                "p_ms": None,
                "qrs_axis_deg": 30.0,
            }
        ),
        statements=statements_from(
            [
                {"code": "SR", "text_en": "Sinus rhythm", "text_zh": "窦性心律"},
                {
                    "code": "1AVB",
                    "text_en": "First-degree AV block",
                    "text_zh": "一度房室传导阻滞",
                    "severity": "abnormal",
                },
            ]
        ),
    )


def _rasterise(pdf: bytes, tmp_path: Path, page: int = 1) -> NDArray[np.uint8]:
    source = tmp_path / "paper.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            str(DPI),
            "-png",
            "-f",
            str(page),
            "-l",
            str(page),
            "-singlefile",
            str(source),
            str(tmp_path / "page"),
        ],
        check=True,
    )
    with Image.open(tmp_path / "page.png") as image:
        return np.asarray(image.convert("RGB"))


def _pdf_text(pdf: bytes, tmp_path: Path) -> str:
    source = tmp_path / "text.pdf"
    source.write_bytes(pdf)
    done = subprocess.run(
        ["pdftotext", "-layout", str(source), "-"], check=True, capture_output=True
    )
    return done.stdout.decode("utf-8")


def _line_centres(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Centre (in pixels) of every run of True along a 1-D mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return (starts + stops - 1) / 2.0


def _major(pixels: NDArray[np.uint8]) -> NDArray[np.bool_]:
    # Major grid lines are the saturated red; minor lines and paper are paler.
    red, green = pixels[..., 0].astype(int), pixels[..., 1].astype(int)
    return (red > 180) & (green < 165)


def _any_grid(pixels: NDArray[np.uint8]) -> NDArray[np.bool_]:
    red, green = pixels[..., 0].astype(int), pixels[..., 1].astype(int)
    return (red > 180) & (green < 235)


def _dark(pixels: NDArray[np.uint8]) -> NDArray[np.bool_]:
    return np.asarray(np.all(pixels < 110, axis=-1), dtype=np.bool_)


def _px(mm: float) -> int:
    return round(mm * PX_PER_MM)


def _check_grid(pixels: NDArray[np.uint8]) -> None:
    # A row of pixels half a millimetre above the grid's bottom edge crosses only
    # vertical grid lines; a column in the 4 mm right of the traces only horizontal ones.
    across = slice(_px(GRID_X_MM - 0.5), _px(GRID_X_MM + GRID_WIDTH_MM + 0.5))
    down = slice(_px(GRID_Y_MM - 0.5), _px(GRID_Y_MM + GRID_HEIGHT_MM + 0.5))
    row = pixels[_px(GRID_Y_MM + GRID_HEIGHT_MM - 0.5), across]
    column = pixels[down, _px(GRID_X_MM + GRID_WIDTH_MM - 1.5)]
    for profile, length_mm in ((row, GRID_WIDTH_MM), (column, GRID_HEIGHT_MM)):
        major = _line_centres(_major(profile))
        assert len(major) == length_mm / 5 + 1
        assert np.allclose(np.diff(major), 5 * PX_PER_MM, atol=1.0)
        # Over the whole grid (270 mm / 150 mm) the scale is exact to a pixel.
        assert abs((major[-1] - major[0]) - length_mm * PX_PER_MM) <= 1.5
        every = _line_centres(_any_grid(profile))
        assert len(every) == length_mm + 1
        assert np.allclose(np.diff(every), PX_PER_MM, atol=1.0)


@needs_poppler
def test_pdf_grid_is_1_mm_and_5_mm_at_exact_scale(tmp_path: Path) -> None:
    """Rendered by pdftoppm at 254 dpi, minor lines are 10 px apart, major 50 px, and
    the whole 270 × 150 mm grid spans 2700 × 1500 px."""
    pdf = render_pdf(layout_pages(_signal(), FS_HZ, STANDARD_LEADS, _info()))
    pixels = _rasterise(pdf, tmp_path)
    # A4 is 841.89 × 595.28 pt; pdftoppm rounds the page up to whole pixels.
    assert abs(pixels.shape[0] - _px(210)) <= 1
    assert abs(pixels.shape[1] - _px(297)) <= 1
    _check_grid(pixels)


def _pulse_height_px(pixels: NDArray[np.uint8], baseline_mm: float, speed: float) -> float:
    """Height of the calibration pulse: its top edge to the baseline lead-in, both as the
    centre of the dark pixels of one column."""
    lead_in = pixels[:, _px(GRID_X_MM + 3.0)]
    top = pixels[:, _px(GRID_X_MM + 4.0 + 0.1 * speed)]
    window = slice(_px(baseline_mm - 30), _px(baseline_mm + 3))
    base_y = _line_centres(_dark(lead_in[window]))
    top_y = _line_centres(_dark(top[window]))
    assert len(base_y) == 1
    assert len(top_y) == 1
    return float(base_y[0] - top_y[0])


@needs_poppler
@pytest.mark.parametrize(("gain", "speed"), [(10.0, 25.0), (20.0, 50.0), (5.0, 25.0)])
def test_calibration_pulse_is_1_mv_tall_at_the_gain(
    tmp_path: Path, gain: float, speed: float
) -> None:
    """The 1 mV pulse measures gain × 1 mm (10 mm at 10 mm/mV) on the rendered page."""
    options = PaperOptions(gain_mm_per_mv=gain, speed_mm_per_s=speed)
    pages = layout_pages(_signal(), FS_HZ, STANDARD_LEADS, None, options)
    pixels = _rasterise(render_pdf(pages), tmp_path)
    for baseline_mm in pages[0].calibration_rows_mm:
        height = _pulse_height_px(pixels, baseline_mm, speed)
        assert abs(height - gain * PX_PER_MM) <= 1.0


@needs_poppler
def test_one_second_is_25_mm_on_the_rendered_rhythm_strip(tmp_path: Path) -> None:
    """A 1 mV step at t = 6 s in lead II lands 150 mm after the trace start at 25 mm/s."""
    signal = np.zeros((int(10 * FS_HZ), 12))
    signal[int(6 * FS_HZ) :, 1] = 1.0
    pages = layout_pages(signal, FS_HZ, STANDARD_LEADS)
    pixels = _rasterise(render_pdf(pages), tmp_path)
    # Halfway up the step, in the rhythm strip (the last row): the step's vertical line.
    baseline = pages[0].calibration_rows_mm[-1]
    row = pixels[_px(baseline - 5.0)]  # the strip is drawn around its median, 0 mV
    dark = _line_centres(_dark(row[_px(TRACE_X_MM) : _px(TRACE_X_MM + TRACE_WIDTH_MM)]))
    assert len(dark) == 1
    assert abs(dark[0] - 6 * 25 * PX_PER_MM) <= 1.5


@needs_poppler
def test_pdf_text_layer_holds_the_chinese_header(tmp_path: Path) -> None:
    """pdftotext reads the Chinese title, patient, statements and the dash of an absent
    measurement from the embedded CJK font."""
    pdf = render_pdf(
        layout_pages(_signal(), FS_HZ, STANDARD_LEADS, _info(), PaperOptions(lang="zh"))
    )
    text = _pdf_text(pdf, tmp_path)
    for words in (
        "十二导联心电图",
        "张三",
        "东关镇卫生院",
        "窦性心律",
        "一度房室传导阻滞",
        "160 ms",
        "75 次/分",
        "424 ms",
        "滤波 0.05–150 Hz",
    ):
        assert words in text, words
    p_line = next(line for line in text.splitlines() if "P波时限" in line)
    assert "—" in p_line
    assert not any(ch.isdigit() for ch in p_line.split("P波时限")[1].split()[0])


@needs_poppler
def test_pdf_text_layer_in_english(tmp_path: Path) -> None:
    """The English header names the same measurements and statements."""
    pdf = render_pdf(
        layout_pages(_signal(), FS_HZ, STANDARD_LEADS, _info(), PaperOptions(lang="en"))
    )
    text = _pdf_text(pdf, tmp_path)
    for words in (
        "12-lead ECG",
        "Sinus rhythm (SR)",
        "First-degree AV block (1AVB)",
        "QRS",
        "92 ms",
        "25 mm/s",
        "10 mm/mV",
    ):
        assert words in text, words


def test_png_has_the_same_grid_as_the_pdf() -> None:
    """The PNG backend draws the same 1/5 mm grid at exact scale."""
    png = render_png(layout_pages(_signal(), FS_HZ, STANDARD_LEADS, _info())[0], dpi=DPI)
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (_px(297), _px(210))
        pixels = np.asarray(image.convert("RGB"))
    _check_grid(pixels)


@pytest.mark.parametrize(
    ("layout", "rows", "seconds"), [("3x4", 4, 2.5), ("6x2", 6, 5.0), ("12x1", 12, 10.0)]
)
def test_layouts_place_every_lead_with_its_time_window(
    layout: str, rows: int, seconds: float
) -> None:
    """Each layout has one calibration pulse per row and each lead's trace covers its
    column's seconds at 25 mm/s."""
    page = layout_pages(_signal(), FS_HZ, STANDARD_LEADS, None, PaperOptions(layout=layout))[0]
    assert len(page.calibration_rows_mm) == rows
    traces = [s for s in page.strokes if len(s.points_mm) > 10]
    widths = sorted({round(float(np.ptp(s.points_mm[:, 0])), 0) for s in traces})
    expected = {round(seconds * 25 - 25 / FS_HZ, 0)}
    if layout == "3x4":
        expected.add(round(250 - 25 / FS_HZ, 0))
    assert set(widths) == expected
    labels = {label.text for label in page.labels}
    assert set(STANDARD_LEADS) <= labels


def test_trace_x_is_time_times_speed_and_y_is_mv_times_gain() -> None:
    """In the rhythm strip, sample k sits at 25 k / fs mm right of the trace start and
    a 1 mV deflection 10 mm above the median."""
    signal = np.zeros((5000, 12))
    signal[1000, 1] = 1.0
    page = layout_pages(signal, FS_HZ, STANDARD_LEADS)[0]
    rhythm = page.strokes[-1].points_mm
    assert rhythm.shape == (5000, 2)
    assert np.allclose(rhythm[:, 0], TRACE_X_MM + np.arange(5000) * 25.0 / FS_HZ)
    baseline = page.calibration_rows_mm[-1]
    assert rhythm[1000, 1] == pytest.approx(baseline - 10.0)
    assert rhythm[999, 1] == pytest.approx(baseline)


def test_nan_runs_are_gaps_in_the_trace() -> None:
    """A NaN run splits the lead's trace into two strokes that stop and start at it."""
    signal = _signal()
    signal[1000:1200, 1] = np.nan
    page = layout_pages(signal, FS_HZ, STANDARD_LEADS)[0]
    rhythm_y = page.calibration_rows_mm[-1]
    strip = [
        s
        for s in page.strokes
        if len(s.points_mm) > 10 and abs(float(np.median(s.points_mm[:, 1])) - rhythm_y) < 5
    ]
    assert len(strip) == 2
    assert strip[0].points_mm[-1, 0] == pytest.approx(TRACE_X_MM + 999 * 25 / FS_HZ)
    assert strip[1].points_mm[0, 0] == pytest.approx(TRACE_X_MM + 1200 * 25 / FS_HZ)


def test_missing_and_unknown_leads_get_a_clear_place() -> None:
    """Missing standard leads say "no signal"; an unknown name takes a free slot under
    its own label; leads with no slot left are named in the footer."""
    slots, left = arrange_leads(["MLII", "V5"], PaperOptions().layout)  # type: ignore[arg-type]
    by_label = {slot.label: slot.lead for slot in slots}
    assert by_label["V5"] == 1
    assert by_label["MLII"] == 0
    assert by_label["II"] is None
    assert left == []
    names = [*STANDARD_LEADS, "vx", "vy", "vz"]
    slots, left = arrange_leads(names, PaperOptions().layout)  # type: ignore[arg-type]
    assert left == ["vx", "vy", "vz"]
    signal = _signal()[:, :2]
    page = layout_pages(signal, FS_HZ, ["MLII", "V5"], None, PaperOptions(lang="en"))[0]
    texts = [label.text for label in page.labels]
    assert texts.count("no signal") == 10
    wide = np.column_stack([_signal(), _signal()[:, :3]])
    page = layout_pages(wide, FS_HZ, names, None, PaperOptions(lang="en"))[0]
    assert any("leads not shown: vx, vy, vz" in text for text in (lb.text for lb in page.labels))


def test_absent_measurements_are_a_dash_never_a_number() -> None:
    """A null, NaN, missing or reasoned-absent measurement prints as "—"."""
    info = ReportInfo(
        measurements=measurements_from(
            {
                "hr_bpm": float("nan"),
                "pr_ms": None,
                "qrs_ms": {"value": None, "reason": "noisy"},
                "qt_ms": "380",
            }
        )
    )
    page = layout_pages(_signal(), FS_HZ, STANDARD_LEADS, info, PaperOptions(lang="en"))[0]
    texts = [label.text for label in page.labels]
    assert texts.count("—") == 7  # HR RR PR P QRS QT QTc
    assert "—/—/—" in texts


def test_short_long_low_and_high_rate_records() -> None:
    """3 s at 100 Hz fills part of one page; 35 s pages into 4 (10 s each) and says so;
    a 2 kHz record keeps every peak with min/max per 0.05 mm."""
    short = layout_pages(_signal(3.0, 100.0), 100.0, STANDARD_LEADS, None, PaperOptions(lang="en"))
    assert len(short) == 1
    assert any("showing 0–3 s of 3 s" in label.text for label in short[0].labels)
    long = layout_pages(_signal(35.0), FS_HZ, STANDARD_LEADS, None, PaperOptions(lang="en"))
    assert [page.start_s for page in long] == [0.0, 10.0, 20.0, 30.0]
    capped = layout_pages(
        _signal(35.0), FS_HZ, STANDARD_LEADS, None, PaperOptions(lang="en", max_pages=2)
    )
    assert len(capped) == 2
    assert any("showing 0–20 s of 35 s" in label.text for label in capped[0].labels)
    fast = _signal(10.0, 2000.0)
    page = layout_pages(fast, 2000.0, STANDARD_LEADS)[0]
    rhythm = page.strokes[-1].points_mm
    assert len(rhythm) < fast.shape[0]  # decimated
    baseline = page.calibration_rows_mm[-1]
    lead_ii = fast[:, 1] - np.median(fast[:, 1])
    assert np.min(rhythm[:, 1]) == pytest.approx(baseline - 10 * lead_ii.max())
    assert np.max(rhythm[:, 1]) == pytest.approx(baseline - 10 * lead_ii.min())


def test_integer_counts_with_gains_draw_as_millivolts() -> None:
    """An int16 signal with counts_per_mv per lead lays out exactly as its mV values."""
    mv = np.round(_signal() * 200) / 200
    counts = np.round(mv * 200).astype(np.int16)
    a = layout_pages(mv, FS_HZ, STANDARD_LEADS)[0]
    b = layout_pages(counts, FS_HZ, STANDARD_LEADS, counts_per_mv=[200.0] * 12)[0]
    assert len(a.strokes) == len(b.strokes)
    for one, two in zip(a.strokes, b.strokes, strict=True):
        assert np.allclose(one.points_mm, two.points_mm)


def test_empty_and_all_nan_records_give_a_page() -> None:
    """No samples or only NaN: a page whose leads say "no signal", no exception."""
    for signal in (np.zeros((0, 12)), np.full((5000, 12), np.nan)):
        pages = layout_pages(signal, FS_HZ, STANDARD_LEADS, None, PaperOptions(lang="en"))
        assert len(pages) == 1
        assert [lb.text for lb in pages[0].labels].count("no signal") == 13
    assert render_pdf(layout_pages(np.zeros((0, 1)), FS_HZ, ["II"])).startswith(b"%PDF")


def test_wrong_arguments_are_named() -> None:
    """Bad options and mismatched arrays raise ConfigError/SignalError saying what."""
    with pytest.raises(ConfigError, match="gain_mm_per_mv"):
        PaperOptions(gain_mm_per_mv=7)
    with pytest.raises(ConfigError, match="layout"):
        PaperOptions(layout="4x3")
    with pytest.raises(SignalError, match="3 signal columns but 12 lead names"):
        layout_pages(np.zeros((10, 3)), FS_HZ, STANDARD_LEADS)
    with pytest.raises(SignalError, match="fs_hz"):
        layout_pages(np.zeros((10, 1)), 0.0, ["II"])


@needs_poppler
def test_traces_are_clipped_to_the_grid(tmp_path: Path) -> None:
    """A 5 mV complex at 20 mm/mV would reach 100 mm up; the pen stops at the grid's
    edge, so the band between header and grid stays blank."""
    signal = np.zeros((5000, 12))
    signal[4000:4010, 9] = 5.0  # V4 at 8 s: first row, last column of the 3x4 layout
    pages = layout_pages(signal, FS_HZ, STANDARD_LEADS, None, PaperOptions(gain_mm_per_mv=20.0))
    pixels = _rasterise(render_pdf(pages), tmp_path)
    band = pixels[_px(46.0) : _px(GRID_Y_MM - 0.3), _px(GRID_X_MM) : _px(GRID_X_MM + 270)]
    assert not _dark(band).any()
    inside = pixels[_px(GRID_Y_MM + 1) : _px(GRID_Y_MM + 20), _px(TRACE_X_MM + 198) :
                    _px(TRACE_X_MM + 202)]  # fmt: skip
    assert _dark(inside).any()


@settings(max_examples=60, deadline=None)
@given(
    n_samples=st.integers(0, 3000),
    fs_hz=st.sampled_from([100.0, 128.0, 250.0, 360.0, 500.0, 1000.0, 2000.0]),
    names=st.lists(
        st.sampled_from([*STANDARD_LEADS, "MLII", "vx", "V7", "", "II"]), min_size=1,
        max_size=15,
    ),
    nan_fraction=st.floats(0.0, 1.0),
    scale=st.sampled_from([0.0, 1e-3, 1.0, 50.0, 1e6]),
    layout=st.sampled_from(["3x4", "6x2", "12x1"]),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_any_record_lays_out_without_error(
    n_samples: int,
    fs_hz: float,
    names: list[str],
    nan_fraction: float,
    scale: float,
    layout: str,
    seed: int,
) -> None:
    """Any length, rate from 100 Hz, lead subset, repeated or unknown names, NaN share
    and amplitude: pages come back, every point finite and inside the trace area."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((n_samples, len(names))) * scale
    signal[rng.random(signal.shape) < nan_fraction] = np.nan
    pages = layout_pages(signal, fs_hz, names, None, PaperOptions(layout=layout))
    assert len(pages) >= 1
    for page in pages:
        for stroke in page.strokes:
            assert np.all(np.isfinite(stroke.points_mm))
            assert stroke.points_mm[:, 0].min() >= GRID_X_MM
            assert stroke.points_mm[:, 0].max() <= GRID_X_MM + GRID_WIDTH_MM


@needs_poppler
def test_signed_report_names_the_reader_and_keeps_their_words(tmp_path: Path) -> None:
    """A signed report says who signed and when instead of "to be confirmed", shows the
    reader's conclusion after the statements, and cuts an overlong line with "…"."""
    info = replace(
        _info(),
        conclusion="建议复查心电图\n" + "很长的结论" * 40,
        signed_by="李医生",
        signed_at=dt.datetime(2026, 12, 2, 3, 15, tzinfo=dt.UTC),
    )
    options = PaperOptions(display_tz=dt.timezone(dt.timedelta(hours=8)))
    text = _pdf_text(render_pdf(layout_pages(_signal(), FS_HZ, STANDARD_LEADS, info, options)),
                     tmp_path)  # fmt: skip
    assert "报告医师：李医生 2026-12-02 11:15:00 UTC+08:00" in " ".join(text.split())
    assert "需经医师确认" not in text
    assert "建议复查心电图" in text
    page = layout_pages(_signal(), FS_HZ, STANDARD_LEADS, info, options)[0]
    long_line = next(label.text for label in page.labels if label.text.startswith("很长"))
    assert long_line.endswith("…")
    assert len(long_line) < 60


def test_many_long_statements_keep_their_codes_in_two_columns() -> None:
    """Six statements go in two columns; a text too long for its column is cut with
    "…" but keeps its code; eight or more leave a "N more" line."""
    many = statements_from(
        [{"code": f"C{i}", "text_en": "Non-specific intraventricular conduction delay " * 2}
         for i in range(6)]
    )  # fmt: skip
    page = layout_pages(_signal(), FS_HZ, STANDARD_LEADS, ReportInfo(statements=many),
                        PaperOptions(lang="en"))[0]  # fmt: skip
    lines = [label for label in page.labels if label.text.endswith(")") and "(C" in label.text]
    assert [label.text.rsplit("(", 1)[1] for label in lines] == [f"C{i})" for i in range(6)]
    assert all("…" in label.text for label in lines)
    assert len({label.x_mm for label in lines}) == 2
    more = statements_from([{"code": f"C{i}"} for i in range(10)])
    page = layout_pages(_signal(), FS_HZ, STANDARD_LEADS, ReportInfo(statements=more),
                        PaperOptions(lang="en"))[0]  # fmt: skip
    assert "3 more" in [label.text for label in page.labels]


def test_png_resolution_is_bounded() -> None:
    """A PNG above 600 dpi is refused (memory), one at 400 dpi is drawn at its size."""
    page = layout_pages(_signal(2.0), FS_HZ, STANDARD_LEADS)[0]
    with pytest.raises(ConfigError, match="dpi"):
        render_png(page, dpi=1200)
    with Image.open(io.BytesIO(render_png(page, dpi=400))) as image:
        assert image.size == (round(297 / 25.4 * 400), round(210 / 25.4 * 400))


def test_pdf_asks_to_be_printed_at_actual_size() -> None:
    """The document's viewer preferences say PrintScaling None, so the print dialogue
    defaults to 100 % rather than "fit to page"."""
    pdf = render_pdf(layout_pages(_signal(1.0), FS_HZ, STANDARD_LEADS))
    assert re.search(rb"/ViewerPreferences\s*<<[^>]*/PrintScaling\s*/None", pdf)
