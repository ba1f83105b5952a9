// ECG paper: a live trace drawn on a red grid at 25 mm/s and 10 mm/mV (1 mm / 5 mm
// squares), by the live viewer page (/ecg) and the consult room's ECG panel.
//
// Design notes
// - Layouts: "12" with the twelve standard leads is the printed 12-lead layout: three
//   rows of four 2.5 s columns (I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6) and a 10 s
//   rhythm strip of II; "12" otherwise is one 10 s row per lead; "rhythm" is the rhythm
//   strip alone (II, else the first lead). Like a monitor, the trace is written by a
//   sweep that wraps every 10 s and erases a little ahead of itself.
// - Two canvases: the grid is drawn once (on layout), the trace canvas only gets the
//   new line segments each animation frame, so the cost per frame is the samples that
//   arrived, not the page (12 leads at 500 Hz arrive decimated to ~125 Hz).
// - Play-out: samples arrive in ~200 ms chunks; they are drawn on a steady clock
//   delayed by PLAYOUT_DELAY_MS so that the sweep moves smoothly.
// - counters (given by the page, shown to tests): beatsReceived, beatsDrawn,
//   samplesDrawn, frames, drawMs (the drawing work of the last frames, ms), hr.

const PLAYOUT_DELAY_MS = 400;
const SWEEP_S = 10;
const MM_PER_S = 25;
const MM_PER_MV = 10;
const ROW_MM = 30;
const ERASE_MM = 4;
const STANDARD = [
  ["I", "aVR", "V1", "V4"],
  ["II", "aVL", "V2", "V5"],
  ["III", "aVF", "V3", "V6"],
];

export class EcgPaper {
  // paper: the element holding the grid and trace canvases (its width sets the scale).
  constructor({ paper, grid, trace, counters }) {
    this.paper = paper;
    this.grid = grid;
    this.trace = trace;
    this.counters = counters;
    Object.assign(counters, { beatsReceived: 0, beatsDrawn: 0, samplesDrawn: 0, frames: 0, drawMs: [], hr: null });
    this.info = null;
    this.mode = "12";
    this.rows = []; // [{cells: [[column | null, leadIndex]...]}]
    this.queue = []; // {index, values[]} display samples not yet drawn
    this.beats = []; // beat times in s, not yet drawn
    this.last = new Map(); // cell key -> [x, y] of its previous point
    this.lastIndex = null; // display index of the sample drawn last
    this.t0 = null; // performance.now() at display index 0 (with the play-out delay)
    this.fs = 125;
    this.pxPerMm = 4;
    this.dpr = 1;
    this.running = true;
    const frame = (now) => {
      if (!this.running) return;
      requestAnimationFrame(frame);
      this.frame(now);
    };
    requestAnimationFrame(frame);
  }

  // A stream to draw (the info of ecg_subscribed), in mode "12" or "rhythm".
  start(info, mode = this.mode) {
    this.info = info;
    this.queue = [];
    this.beats = [];
    this.t0 = null;
    this.setMode(mode);
  }

  setMode(mode) {
    this.mode = mode;
    if (!this.info) return;
    const names = this.info.leads.map((name) => name.toUpperCase());
    const find = (name) => names.indexOf(name.toUpperCase());
    const rhythm = find("II") >= 0 ? find("II") : 0;
    const standard = STANDARD.flat().every((name) => find(name) >= 0);
    if (mode === "rhythm") this.rows = [{ cells: [[null, rhythm]] }];
    else if (standard) {
      this.rows = [
        ...STANDARD.map((row) => ({ cells: row.map((name, column) => [column, find(name)]) })),
        { cells: [[null, rhythm]] },
      ];
    } else this.rows = this.info.leads.map((_, lead) => ({ cells: [[null, lead]] }));
    this.layout();
  }

  layout() {
    if (!this.info) return;
    const width = this.paper.clientWidth || 800;
    this.dpr = window.devicePixelRatio || 1;
    this.pxPerMm = width / (SWEEP_S * MM_PER_S);
    const height = Math.round(this.rows.length * ROW_MM * this.pxPerMm);
    this.paper.style.height = `${height}px`;
    for (const canvas of [this.grid, this.trace]) {
      canvas.width = Math.round(width * this.dpr);
      canvas.height = Math.round(height * this.dpr);
    }
    this.drawGrid(width, height);
    this.trace.getContext("2d").clearRect(0, 0, this.trace.width, this.trace.height);
    this.last.clear();
    this.lastIndex = null;
  }

  drawGrid(width, height) {
    const g = this.grid.getContext("2d");
    g.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    g.fillStyle = "#fff";
    g.fillRect(0, 0, width, height);
    const mm = this.pxPerMm;
    for (const [step, colour, lineWidth] of [
      [1, "#f6c9c9", 0.5],
      [5, "#e58f8f", 1],
    ]) {
      g.strokeStyle = colour;
      g.lineWidth = lineWidth;
      g.beginPath();
      for (let x = 0; x <= width; x += step * mm) {
        g.moveTo(x, 0);
        g.lineTo(x, height);
      }
      for (let y = 0; y <= height; y += step * mm) {
        g.moveTo(0, y);
        g.lineTo(width, y);
      }
      g.stroke();
    }
    g.fillStyle = "#333";
    g.font = `${Math.max(10, 3 * mm)}px sans-serif`;
    this.rows.forEach((row, r) => {
      for (const [column, lead] of row.cells) {
        const x = (column ?? 0) * (SWEEP_S / 4) * MM_PER_S * mm + 2;
        g.fillText(this.info.leads[lead], x, (r * ROW_MM + 4) * mm);
      }
    });
  }

  // An ecg_data message of the stream being drawn.
  receive(message) {
    this.fs = message.display_fs_hz;
    const n = message.samples_uv[0]?.length ?? 0;
    for (let i = 0; i < n; i += 1) {
      this.queue.push({ index: message.first_index + i, values: message.samples_uv.map((lead) => lead[i]) });
    }
    if (this.t0 === null && n) {
      this.t0 = performance.now() + PLAYOUT_DELAY_MS - (message.first_index / this.fs) * 1000;
    }
    for (const beat of message.beats) this.beats.push(beat[0] / this.info.fs_hz);
    this.counters.beatsReceived += message.beats.length;
    if (message.heart_rate_bpm !== null) this.counters.hr = message.heart_rate_bpm;
  }

  frame(now) {
    if (this.t0 === null || !this.info) return;
    // A stall (network, server) must not leave the clock far ahead of the data.
    const due = ((now - this.t0) / 1000) * this.fs;
    if (this.queue.length && this.queue[0].index < due - 2 * this.fs) {
      this.t0 = now - (this.queue[0].index / this.fs) * 1000;
    }
    const c = this.trace.getContext("2d");
    c.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    c.lineWidth = 1.2;
    c.strokeStyle = "#111";
    c.beginPath();
    let drawnS = null;
    while (this.queue.length && this.queue[0].index <= due) {
      const sample = this.queue.shift();
      this.drawSample(c, sample);
      drawnS = sample.index / this.fs;
    }
    c.stroke();
    if (drawnS !== null) {
      this.drawBeats(c, drawnS);
      this.counters.frames += 1;
      this.counters.drawMs.push(performance.now() - now);
      if (this.counters.drawMs.length > 240) this.counters.drawMs.shift();
    }
  }

  drawSample(c, sample) {
    const mm = this.pxPerMm;
    const tS = sample.index / this.fs;
    const sweepS = tS % SWEEP_S;
    const x = sweepS * MM_PER_S * mm;
    const column = Math.floor(sweepS / (SWEEP_S / 4));
    if (this.lastIndex !== null && sample.index > this.lastIndex + 1) {
      // Chunks the server spared a lagging connection: erase the previous pass over the
      // gap and do not join the trace across it.
      this.eraseGap(c, this.lastIndex + 1, sample.index);
      this.last.clear();
    }
    this.lastIndex = sample.index;
    // Erase a little ahead of the sweep (the previous pass) and at a wrap.
    c.clearRect(x + 1, 0, ERASE_MM * mm, this.trace.height);
    if (sweepS * this.fs < 1) this.last.clear();
    this.rows.forEach((row, r) => {
      const baseline = (r * ROW_MM + ROW_MM / 2 + 2) * mm;
      for (const [cellColumn, lead] of row.cells) {
        if (cellColumn !== null && cellColumn !== column) continue;
        const key = `${r}:${cellColumn}`;
        const uv = sample.values[lead];
        if (uv === null || uv === undefined) {
          this.last.delete(key);
          continue;
        }
        const y = baseline - (uv / 1000) * MM_PER_MV * mm;
        const previous = this.last.get(key);
        if (previous && x > previous[0]) {
          c.moveTo(previous[0], previous[1]);
          c.lineTo(x, y);
        }
        this.last.set(key, [x, y]);
      }
    });
    this.counters.samplesDrawn += 1;
  }

  // Erase the sweep between display samples first (included) and last (excluded).
  eraseGap(c, first, last) {
    const mm = this.pxPerMm;
    const width = SWEEP_S * MM_PER_S * mm;
    if ((last - first) / this.fs >= SWEEP_S) {
      c.clearRect(0, 0, width, this.trace.height);
      return;
    }
    const from = ((first / this.fs) % SWEEP_S) * MM_PER_S * mm;
    const to = ((last / this.fs) % SWEEP_S) * MM_PER_S * mm;
    if (to >= from) {
      c.clearRect(from, 0, to - from, this.trace.height);
    } else {
      c.clearRect(from, 0, width - from, this.trace.height);
      c.clearRect(0, 0, to, this.trace.height);
    }
  }

  drawBeats(c, uptoS) {
    const mm = this.pxPerMm;
    const top = ((this.rows.length - 1) * ROW_MM + 3) * mm;
    c.fillStyle = "#c00";
    while (this.beats.length && this.beats[0] <= uptoS) {
      const beatS = this.beats.shift();
      const x = (beatS % SWEEP_S) * MM_PER_S * mm;
      c.beginPath();
      c.moveTo(x - 1.5 * mm, top);
      c.lineTo(x + 1.5 * mm, top);
      c.lineTo(x, top + 2 * mm);
      c.closePath();
      c.fill();
      this.counters.beatsDrawn += 1;
    }
  }

  stop() {
    this.running = false;
  }
}

// Flag kinds as people read them (ecg.flags; docs/ecg-annotations.md).
export const FLAG_STRINGS = {
  en: {
    bradycardia: "Bradycardia", tachycardia: "Tachycardia", pause: "Pause",
    asystole: "Asystole", irregular: "Irregular rhythm", lead_off: "Lead off",
    saturation: "Saturation", baseline_wander: "Baseline wander", noise: "Noise",
  },
  zh: {
    bradycardia: "心动过缓", tachycardia: "心动过速", pause: "停搏",
    asystole: "心脏停搏", irregular: "心律不齐", lead_off: "导联脱落",
    saturation: "信号饱和", baseline_wander: "基线漂移", noise: "噪声",
  },
}; // prettier-ignore

// The flags of a stream as list items: final ones, then provisional ones (dashed).
export function flagItems(flags, provisional, leads, label) {
  const items = [];
  for (const [flag, isProvisional] of [...flags.map((f) => [f, false]), ...provisional.map((f) => [f, true])]) {
    const item = document.createElement("li");
    if (isProvisional) item.className = "provisional";
    const lead = flag.lead === undefined || flag.lead === null ? "" : ` (${leads[flag.lead]})`;
    item.textContent = `${label(flag.kind)}${lead}`;
    item.dataset.kind = flag.kind;
    items.push(item);
  }
  return items;
}
