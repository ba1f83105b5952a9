// A stored ECG on paper for the reading page: the whole window drawn at once in the
// layout, gain and speed the reader chose. It is web/ecg-paper.js's EcgPaper (the same
// two canvases, grid and counters) without the live sweep and with the base class's
// fixed 25 mm/s and 10 mm/mV made the reader's choice.
//
// Design notes
// - Layouts of the twelve standard leads: "3x4" (three rows of four columns, each
//   column a quarter of the window, and a lead II rhythm strip over the whole window),
//   "6x2" (limb leads over the first half, chest leads over the second), "12x1" (every
//   lead over the whole window), and "one" (the phone in portrait: one lead chosen by
//   the reader over the whole window above the rhythm strip), "strip" (that one lead
//   alone: a comparison with an earlier ECG). Any other lead set is drawn one lead per
//   row.
// - Every row starts with its calibration pulse (1 mV for 0.2 s), so that gain and
//   speed can be read off the paper itself; x of a sample is its time in the window
//   whatever its column, so columns line up with the rhythm strip.
// - The scale in px per mm is the page's choice (fit to the width, or at least 10 px
//   per mm on a phone in portrait); paper wider than its box scrolls.
// - Calipers (enableCalipers): a mouse or pen drag on the paper draws a time caliper
//   (ms and the rate it would be as an RR interval, bpm), with Shift an amplitude
//   caliper (mV), read off the paper's own scale (px per mm, speed, gain); Escape or a
//   redraw clears it. Touch keeps scrolling the paper sideways.

import { EcgPaper } from "/static/ecg-paper.js";

const STANDARD = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];
const LAYOUTS = {
  "3x4": { columns: [["I", "II", "III"], ["aVR", "aVL", "aVF"], ["V1", "V2", "V3"], ["V4", "V5", "V6"]], rhythm: true },
  "6x2": { columns: [["I", "II", "III", "aVR", "aVL", "aVF"], ["V1", "V2", "V3", "V4", "V5", "V6"]], rhythm: false },
  "12x1": { columns: [STANDARD], rhythm: false },
}; // prettier-ignore
const CAL_S = 0.2;
const MARGIN_MM = 5;

export class RecordPaper extends EcgPaper {
  constructor(elements) {
    super(elements);
    super.stop(); // nothing to sweep: a stored record is drawn at once
    this.ecg = null;
    this.view = { layout: "3x4", gainMmPerMv: 10, speedMmPerS: 25, lead: "II", pxPerMm: 4 };
    this.rows = [];
    this.caliper = null; // {kind: "time"|"amplitude", ms, bpm, mv, x0, y0, x1, y1}
    this.caliperBox = null;
  }

  // Draw calipers on drags; ``label(caliper)`` is the text shown beside one.
  enableCalipers(label) {
    const box = document.createElement("div");
    box.className = "caliper";
    box.hidden = true;
    const text = document.createElement("span");
    text.className = "caliper-label";
    box.append(text);
    this.paper.append(box);
    this.caliperBox = box;
    this.caliperLabel = label;
    let start = null;
    const at = (event) => {
      const rect = this.paper.getBoundingClientRect();
      return [event.clientX - rect.left, event.clientY - rect.top];
    };
    this.paper.addEventListener("pointerdown", (event) => {
      if (event.pointerType === "touch" || event.button !== 0 || !this.ecg) return;
      event.preventDefault();
      this.paper.setPointerCapture(event.pointerId);
      start = { point: at(event), amplitude: event.shiftKey };
      this.measureCaliper(start, at(event));
    });
    this.paper.addEventListener("pointermove", (event) => {
      if (start) this.measureCaliper(start, at(event));
    });
    const end = (event) => {
      if (!start) return;
      this.measureCaliper(start, at(event));
      start = null;
      this.paper.dispatchEvent(new CustomEvent("caliper", { detail: this.caliper }));
    };
    this.paper.addEventListener("pointerup", end);
    this.paper.addEventListener("pointercancel", end);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.clearCaliper();
    });
  }

  measureCaliper(start, [x1, y1]) {
    const [x0, y0] = start.point;
    const mm = this.pxPerMm;
    const { gainMmPerMv: gain, speedMmPerS: speed } = this.view;
    const amplitude = start.amplitude;
    const ms = (Math.abs(x1 - x0) / mm / speed) * 1000;
    const mv = Math.abs(y1 - y0) / mm / gain;
    this.caliper = amplitude
      ? { kind: "amplitude", mv, x0, y0, x1: x0, y1 }
      : { kind: "time", ms, bpm: ms > 0 ? 60000 / ms : null, x0, y0, x1, y1: y0 };
    const c = this.caliper;
    const box = this.caliperBox;
    box.hidden = false;
    box.dataset.kind = c.kind;
    Object.assign(box.style, {
      left: `${Math.min(c.x0, c.x1)}px`,
      top: `${Math.min(c.y0, c.y1)}px`,
      width: `${Math.abs(c.x1 - c.x0)}px`,
      height: `${Math.abs(c.y1 - c.y0)}px`,
    });
    box.firstChild.textContent = this.caliperLabel(c);
  }

  clearCaliper() {
    this.caliper = null;
    if (this.caliperBox) this.caliperBox.hidden = true;
  }

  // The answer of GET /readings/{id}/ecg, and the view options to draw it with.
  show(ecg, options = {}) {
    this.ecg = ecg;
    this.info = { leads: ecg.leads, fs_hz: ecg.fs_hz };
    this.set(options);
  }

  set(options) {
    Object.assign(this.view, options);
    if (this.ecg) this.draw();
  }

  setMode(mode) {
    this.set({ layout: mode });
  }

  layout() {
    if (this.ecg) this.draw();
  }

  // Rows of cells [column, columns, lead index, name]: a cell shows its lead over its
  // column's share of the window.
  rowsOf() {
    const leads = this.ecg.leads;
    const find = (name) => leads.findIndex((lead) => lead.toUpperCase() === name.toUpperCase());
    const rhythm = find("II") >= 0 ? find("II") : 0;
    const full = (index) => ({ cells: [[0, 1, index]] });
    const standard = STANDARD.every((name) => find(name) >= 0);
    const { layout, lead } = this.view;
    const chosen = find(lead) >= 0 ? find(lead) : rhythm;
    if (layout === "one") return [full(chosen), { ...full(rhythm), rhythm: true }];
    if (layout === "strip") return [{ ...full(chosen), rhythm: true }];
    if (!standard || !LAYOUTS[layout]) return leads.map((_, index) => full(index));
    const { columns, rhythm: strip } = LAYOUTS[layout];
    const rows = [];
    for (let r = 0; r < columns[0].length; r += 1) {
      rows.push({ cells: columns.map((names, c) => [c, columns.length, find(names[r])]) });
    }
    if (strip) rows.push({ ...full(rhythm), rhythm: true });
    return rows;
  }

  draw() {
    this.clearCaliper(); // its scale is the old drawing's
    const { gainMmPerMv: gain, speedMmPerS: speed, pxPerMm: mm } = this.view;
    const windowS = this.ecg.duration_s;
    this.rows = this.rowsOf();
    this.rowMm = Math.max(20, 3 * gain);
    this.calMm = MARGIN_MM + CAL_S * speed;
    const widthMm = this.calMm + windowS * speed + 2;
    const width = Math.ceil(widthMm * mm);
    const height = Math.ceil(this.rows.length * this.rowMm * mm);
    this.pxPerMm = mm;
    this.dpr = window.devicePixelRatio || 1;
    const started = performance.now();
    // The next window of a long record on the same paper: the grid stays, only the trace
    // is drawn again (on a fresh bitmap, its size set again, as when the grid changes).
    const sheet = JSON.stringify([width, height, this.dpr, mm, speed, gain, windowS, this.ecg.leads, this.rows]);
    if (sheet === this.sheet) {
      this.trace.width = Math.round(width * this.dpr);
    } else {
      this.sheet = sheet;
      this.paper.style.width = `${width}px`;
      this.paper.style.height = `${height}px`;
      for (const canvas of [this.grid, this.trace]) {
        canvas.width = Math.round(width * this.dpr);
        canvas.height = Math.round(height * this.dpr);
      }
      this.drawGrid(width, height);
    }
    this.drawTrace();
    this.counters.frames += 1;
    this.counters.drawMs.push(performance.now() - started);
  }

  drawGrid(width, height) {
    // The live paper's grid (its labels follow its own rows: none drawn), then ours.
    const rows = this.rows;
    this.rows = [];
    super.drawGrid(width, height);
    this.rows = rows;
    const g = this.grid.getContext("2d");
    const mm = this.pxPerMm;
    const { speedMmPerS: speed } = this.view;
    g.fillStyle = "#333";
    g.font = `${Math.max(11, 3 * mm)}px sans-serif`;
    this.rows.forEach((row, r) => {
      for (const [column, columns, lead] of row.cells) {
        if (lead < 0) continue;
        const x = (this.calMm + (column * this.ecg.duration_s * speed) / columns) * mm + 3;
        g.fillText(this.ecg.leads[lead], x, (r * this.rowMm + 4.5) * mm);
      }
    });
  }

  drawTrace() {
    const c = this.trace.getContext("2d");
    const mm = this.pxPerMm;
    const { gainMmPerMv: gain, speedMmPerS: speed } = this.view;
    const fs = this.ecg.fs_hz;
    const samples = this.ecg.samples_uv;
    const n = samples[0]?.length ?? 0;
    c.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    c.clearRect(0, 0, this.trace.width, this.trace.height);
    // One CSS pixel (about 0.26 mm on a 96 dpi screen): at a device pixel ratio of 1
    // Chromium strokes it as a hairline, ~0.6 ms for a 24 h record's 10 s window,
    // where a 1.1 px line goes through the full stroker (8-10 ms, on the main thread
    // right after the press: the frame missed its vsync).
    c.lineWidth = 1;
    c.strokeStyle = "#111";
    c.lineJoin = "round";
    c.beginPath();
    let drawn = 0;
    this.rows.forEach((row, r) => {
      const baseline = (r * this.rowMm + this.rowMm * 0.55) * mm;
      const pulse = gain * mm;
      const x0 = MARGIN_MM * mm * 0.5;
      const x1 = x0 + CAL_S * speed * mm;
      c.moveTo(x0 - 1 * mm, baseline);
      c.lineTo(x0, baseline);
      c.lineTo(x0, baseline - pulse);
      c.lineTo(x1, baseline - pulse);
      c.lineTo(x1, baseline);
      c.lineTo(x1 + 1 * mm, baseline);
      for (const [column, columns, lead] of row.cells) {
        if (lead < 0) continue;
        const from = Math.floor((column * n) / columns);
        const to = Math.floor(((column + 1) * n) / columns);
        const values = samples[lead];
        let pen = false;
        for (let i = from; i < to; i += 1) {
          const uv = values[i];
          if (uv === null || uv === undefined) {
            pen = false;
            continue;
          }
          const x = (this.calMm + (i / fs) * speed) * mm;
          const y = baseline - (uv / 1000) * gain * mm;
          if (pen) c.lineTo(x, y);
          else c.moveTo(x, y);
          pen = true;
          drawn += 1;
        }
        if (column > 0) {
          const x = (this.calMm + (from / fs) * speed) * mm;
          c.moveTo(x, baseline - 2 * mm);
          c.lineTo(x, baseline + 2 * mm);
        }
      }
    });
    c.stroke();
    this.drawBeatMarks(c);
    this.counters.samplesDrawn = drawn;
  }

  // The engine's beats as short red ticks along the bottom of the rhythm strip (or the
  // last row), clear of the lead labels.
  drawBeatMarks(c) {
    const mm = this.pxPerMm;
    c.fillStyle = "#c00";
    const marks = this.beatMarks();
    for (const { x, y } of marks) c.fillRect(x - 0.3 * mm, y, 0.6 * mm, 2.5 * mm);
    this.counters.beatsDrawn = marks.length;
  }

  // The beats of the window on the paper: {index (in ecg.beats), x, y (the tick's top), px}.
  beatMarks() {
    if (!this.ecg) return [];
    const mm = this.pxPerMm;
    const { speedMmPerS: speed } = this.view;
    const n = this.ecg.samples_uv[0]?.length ?? 0;
    const y = (this.rows.length * this.rowMm - 3) * mm;
    const marks = [];
    this.ecg.beats.forEach((beat, index) => {
      const i = beat - this.ecg.first_index;
      if (i >= 0 && i < n) marks.push({ index, x: (this.calMm + (i / this.ecg.fs_hz) * speed) * mm, y });
    });
    return marks;
  }
}
