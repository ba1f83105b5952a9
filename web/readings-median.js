// The median-beat panel of the reading page: the engine's median beat of one lead
// (default II) or of all twelve, small, with the global fiducials (P on/off, QRS on/off,
// T end) as vertical lines the claimant drags (mouse or touch) or moves with the arrow
// keys (Shift: 10 samples). On release the page PUTs /readings/{id}/fiducials and the
// measurements the server made again are handed to the page (onMeasured), which shows
// them at once. A refused position (outside the beat, out of order) is the server's to
// judge: its error is shown and the markers go back to where they were.
//
// Design notes
// - GET /readings/{id}/median gives every lead's beat in µV at the record's rate, the R
//   at r_index, and the fiducials in ms from the beat's sample 0; the panel draws in
//   SVG, x proportional to the sample, so a marker's x maps back to ms exactly.
// - Markers are role="slider" (focusable, aria-valuenow in ms), drawn the same on every
//   plot; moving one moves it on all of them.
// - Text goes through textContent or SVG text nodes, never HTML.

import { api } from "/static/auth.js";
import { lang, translator } from "/static/i18n.js";

const STRINGS = {
  en: {
    title: "Median beat",
    lead: "Lead",
    all: "All 12 leads",
    hint: "Drag a line (or focus it and use ← →) to correct it; the measurements follow.",
    readonly: "Only the reader who holds this ECG corrects the fiducials (a signed one: amend it first).",
    corrected: "Corrected by {who} at {when}: {names}",
    engine: "The engine's fiducials.",
    reset: "Back to the engine's",
    p_on: "P on",
    p_off: "P off",
    qrs_on: "QRS on",
    qrs_off: "QRS off",
    t_off: "T end",
    marker: "{name}: {ms} ms",
  },
  zh: {
    title: "平均心搏",
    lead: "导联",
    all: "全部 12 导联",
    hint: "拖动竖线（或选中后用 ← → 键）即可修正，测量值随之更新。",
    readonly: "仅领取该心电图的诊断医师可修正测量点（已签署的需先修订）。",
    corrected: "{who} 于 {when} 修正：{names}",
    engine: "自动分析的测量点。",
    reset: "恢复自动分析",
    p_on: "P 起点",
    p_off: "P 终点",
    qrs_on: "QRS 起点",
    qrs_off: "QRS 终点",
    t_off: "T 终点",
    marker: "{name}：{ms} 毫秒",
  },
};

const t = translator(STRINGS);
const NAMES = ["p_on", "p_off", "qrs_on", "qrs_off", "t_off"];
const COLOURS = { p_on: "#1f6fb2", p_off: "#1f6fb2", qrs_on: "#b21f4a", qrs_off: "#b21f4a", t_off: "#2a8a3a" };
const SVG = "http://www.w3.org/2000/svg";
const KEY_DEBOUNCE_MS = 400;

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function html(tag, props = {}, text = "") {
  const node = document.createElement(tag);
  Object.assign(node, props);
  if (text) node.textContent = text;
  return node;
}

export class MedianPanel extends EventTarget {
  // root: the panel's element; onMeasured(measurements): the page shows them;
  // onError(error): the page shows a refusal.
  constructor(root, { onMeasured, onError }) {
    super();
    this.root = root;
    this.onMeasured = onMeasured;
    this.onError = onError;
    this.reading = null;
    this.data = null;
    this.editable = false;
    this.lead = "II";
    this.positions = {}; // name -> ms, as drawn (during a drag: where the line is)
    this.saving = Promise.resolve();
    this.keyTimer = null;
    this.puts = 0;
    let resized = null;
    window.addEventListener("resize", () => {
      clearTimeout(resized);
      resized = setTimeout(() => this.data && !this.root.hidden && this.render(), 150);
    });
  }

  // Show the median beat of task ``reading`` (null: hide); ``editable``: the caller
  // may correct (the table's edit is allowed).
  async show(reading, editable) {
    this.editable = editable;
    if (!reading) {
      this.root.hidden = true;
      this.reading = null;
      return;
    }
    if (reading !== this.reading || !this.data) {
      this.reading = reading;
      this.data = null;
      try {
        this.data = await api("GET", `/readings/${encodeURIComponent(reading)}/median`);
      } catch (error) {
        this.root.hidden = true;
        if (error.code !== "not_measured" && error.code !== "no_signal") throw error;
        return;
      }
      if (this.reading !== reading) return;
      const names = this.data.leads.map((l) => l.lead);
      if (!names.includes(this.lead)) this.lead = names.includes("II") ? "II" : "all";
    }
    this.positions = { ...this.data.fiducials.fiducials_ms };
    this.root.hidden = false;
    this.render();
  }

  // ms <-> x on a plot of width w px.
  msToX(ms, w) {
    return (ms * this.data.fs_hz) / 1000 / (this.data.length - 1) * w;
  }

  xToMs(x, w) {
    const sample = Math.round((x / w) * (this.data.length - 1));
    return (Math.min(this.data.length - 1, Math.max(0, sample)) * 1000) / this.data.fs_hz;
  }

  render() {
    const d = this.data;
    const head = html("div", { className: "row median-head" });
    head.append(html("h3", {}, t("title")));
    const label = html("label");
    label.append(html("span", {}, t("lead")));
    const select = html("select", { id: "median-lead" });
    for (const name of [...d.leads.filter((l) => l.usable).map((l) => l.lead), "all"]) {
      const option = html("option", { value: name }, name === "all" ? t("all") : name);
      select.append(option);
    }
    select.value = this.lead;
    select.addEventListener("change", () => {
      this.lead = select.value;
      this.render();
    });
    label.append(select);
    head.append(label);
    const f = d.fiducials;
    const note = html("p", { className: "muted median-note", id: "median-note" });
    note.textContent = f.corrected.length
      ? t("corrected", {
          who: f.corrected_by,
          when: new Date(f.corrected_at).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB"),
          names: f.corrected.map((n) => t(n)).join(", "),
        })
      : t("engine");
    if (f.corrected.length && this.editable) {
      const reset = html("button", { type: "button", id: "median-reset" }, t("reset"));
      reset.addEventListener("click", () => this.save(Object.fromEntries(f.corrected.map((n) => [n, null]))));
      head.append(reset);
    }
    const hint = html("p", { className: "muted" }, this.editable ? t("hint") : t("readonly"));
    const plots = html("div", { className: this.lead === "all" ? "median-plots all" : "median-plots" });
    const leads = this.lead === "all" ? d.leads : d.leads.filter((l) => l.lead === this.lead);
    const wide = Math.max(240, Math.min(this.root.clientWidth || 720, 900));
    const width = this.lead === "all" ? Math.max(160, Math.floor(wide / 4) - 8) : wide;
    const height = this.lead === "all" ? 110 : 260;
    for (const lead of leads) plots.append(this.plot(lead, width, height));
    this.root.replaceChildren(head, note, hint, plots);
    this.root.dataset.lead = this.lead;
  }

  plot(lead, w, h) {
    const d = this.data;
    const root = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: "median-plot" });
    root.dataset.lead = lead.lead;
    root.append(svg("rect", { x: 0, y: 0, width: w, height: h, class: "median-bg" }));
    const name = svg("text", { x: 4, y: 14, class: "median-name" });
    name.textContent = lead.lead;
    root.append(name);
    if (lead.usable && lead.samples_uv.length) {
      const lo = Math.min(...lead.samples_uv);
      const hi = Math.max(...lead.samples_uv);
      const span = Math.max(hi - lo, 200);
      const y = (uv) => h - 8 - ((uv - lo) / span) * (h - 24);
      const step = (w / (d.length - 1));
      const points = lead.samples_uv.map((uv, i) => `${(i * step).toFixed(1)},${y(uv).toFixed(1)}`);
      root.append(svg("line", { x1: 0, x2: w, y1: y(lead.iso_uv), y2: y(lead.iso_uv), class: "median-iso" }));
      root.append(svg("polyline", { points: points.join(" "), class: "median-trace" }));
    }
    for (const fiducial of NAMES) {
      const ms = this.positions[fiducial];
      if (ms === null || ms === undefined) continue;
      root.append(this.marker(root, fiducial, ms, w, h));
    }
    return root;
  }

  marker(plot, fiducial, ms, w, h) {
    const x = this.msToX(ms, w);
    const g = svg("g", { class: "median-marker", role: "slider", "aria-valuemin": 0 });
    g.dataset.fiducial = fiducial;
    g.setAttribute("aria-valuemax", Math.round(((this.data.length - 1) * 1000) / this.data.fs_hz));
    g.setAttribute("aria-valuenow", Math.round(ms));
    g.setAttribute("aria-label", t("marker", { name: t(fiducial), ms: Math.round(ms) }));
    if (this.editable) g.setAttribute("tabindex", "0");
    g.setAttribute("transform", `translate(${x.toFixed(1)},0)`);
    g.append(svg("line", { x1: 0, x2: 0, y1: 0, y2: h, class: "median-hit" }));
    g.append(svg("line", { x1: 0, x2: 0, y1: 0, y2: h, stroke: COLOURS[fiducial], class: "median-line" }));
    const label = svg("text", { x: 3, y: h - 4, fill: COLOURS[fiducial], class: "median-label" });
    label.textContent = t(fiducial);
    g.append(label);
    if (!this.editable) return g;
    g.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      g.setPointerCapture(event.pointerId);
      const box = plot.getBoundingClientRect();
      const move = (e) => this.moveTo(fiducial, this.xToMs(((e.clientX - box.left) * w) / box.width, w));
      const up = (e) => {
        g.removeEventListener("pointermove", move);
        g.removeEventListener("pointerup", up);
        g.removeEventListener("pointercancel", up);
        move(e);
        this.commit([fiducial]);
      };
      g.addEventListener("pointermove", move);
      g.addEventListener("pointerup", up);
      g.addEventListener("pointercancel", up);
    });
    g.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
      event.preventDefault();
      const samples = (event.shiftKey ? 10 : 1) * (event.key === "ArrowLeft" ? -1 : 1);
      const now = this.positions[fiducial];
      this.moveTo(fiducial, now + (samples * 1000) / this.data.fs_hz);
      clearTimeout(this.keyTimer);
      this.keyTimer = setTimeout(() => this.commit([fiducial]), KEY_DEBOUNCE_MS);
    });
    return g;
  }

  // Draw a fiducial at ``ms`` on every plot (no request yet).
  moveTo(fiducial, ms) {
    const last = ((this.data.length - 1) * 1000) / this.data.fs_hz;
    this.positions[fiducial] = Math.min(last, Math.max(0, ms));
    for (const g of this.root.querySelectorAll(`.median-marker[data-fiducial='${fiducial}']`)) {
      const plot = g.ownerSVGElement;
      const w = Number(plot.getAttribute("width"));
      g.setAttribute("transform", `translate(${this.msToX(this.positions[fiducial], w).toFixed(1)},0)`);
      g.setAttribute("aria-valuenow", Math.round(this.positions[fiducial]));
      g.setAttribute("aria-label", t("marker", { name: t(fiducial), ms: Math.round(this.positions[fiducial]) }));
    }
  }

  // Send the moved fiducials; the markers keep focus across the redraw.
  commit(names) {
    const body = {};
    for (const name of names) body[name] = this.positions[name];
    return this.save(body);
  }

  save(fiducialsMs) {
    const focused = document.activeElement?.dataset?.fiducial;
    this.saving = this.saving.then(async () => {
      try {
        const state = await api("PUT", `/readings/${encodeURIComponent(this.reading)}/fiducials`, {
          fiducials_ms: fiducialsMs,
        });
        this.data.fiducials = state;
        this.puts += 1;
        this.onMeasured(state.measurements, state.statements);
      } catch (error) {
        this.onError(error);
      }
      this.positions = { ...this.data.fiducials.fiducials_ms };
      this.render();
      if (focused) this.root.querySelector(`.median-marker[data-fiducial='${focused}']`)?.focus();
      this.dispatchEvent(new CustomEvent("saved"));
    });
    return this.saving;
  }
}
