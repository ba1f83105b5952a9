// The reading page's "Previous ECGs" panel: the same patient's earlier ECGs (GET
// /readings/{id}/previous, newest first) with their date, state, the engine's top
// statements and, once signed, the signed report's statements and conclusion; choosing
// one shows it beside the current ECG: the measurements of both and their differences,
// one lead of each on paper at the same scale (px per mm, gain, speed), and the median
// beats of that lead on one common scale. On a phone the two sides stack.
//
// Design notes
// - The page hands in what it already has (the current ECG window, its measurements
//   as corrected, the median of the current task) through ``current()``; the panel asks
//   only for the earlier ECG's window, median and signed report.
// - The previous side's figures are its ECG window's (made on its reader's corrected
//   fiducials where kept), so a signed ECG shows what its reader signed.
// - Text goes through textContent or SVG text nodes, never HTML.

import { api } from "/static/auth.js";
import { translator } from "/static/i18n.js";
import { html } from "/static/readings-dom.js";
import { RecordPaper } from "/static/readings-paper.js";

const STRINGS = {
  en: {
    title: "Previous ECGs",
    none: "No earlier ECG of this patient.",
    noPatient: "This ECG names no patient: no earlier ECG to compare with.",
    more: "{shown} of {total} shown.",
    compare: "Compare",
    comparing: "This ECG beside the one of {when}",
    close: "Close the comparison",
    lead: "Lead",
    current: "This ECG",
    previous: "{when}",
    change: "Change",
    measure: "Measurement",
    signedReport: "Signed report v{n}: {statements}",
    conclusion: "Conclusion: {text}",
    noEcg: "No ECG kept for this one.",
    median: "Median beat, lead {lead}",
    scale: "Both at {mm} px/mm, {gain} mm/mV, {speed} mm/s",
  },
  zh: {
    title: "既往心电图",
    none: "该患者无既往心电图。",
    noPatient: "该心电图未关联患者，无法对比既往心电图。",
    more: "显示 {shown} 份，共 {total} 份。",
    compare: "对比",
    comparing: "本次心电图与 {when} 的心电图对比",
    close: "关闭对比",
    lead: "导联",
    current: "本次心电图",
    previous: "{when}",
    change: "变化",
    measure: "测量项目",
    signedReport: "已签署报告第 {n} 版：{statements}",
    conclusion: "结论：{text}",
    noEcg: "该次心电图未保存波形。",
    median: "平均心搏，{lead} 导联",
    scale: "两者均为 {mm} 像素/毫米，{gain} 毫米/毫伏，{speed} 毫米/秒",
  },
};

export const t = translator(STRINGS);
const SVG = "http://www.w3.org/2000/svg";
const LISTED = 10;
// The figures compared, with their unit (the page's own labels and units).
export const COMPARED = [
  ["hr_bpm", "bpm"], ["pr_ms", "ms"], ["qrs_ms", "ms"], ["qt_ms", "ms"], ["qtc_ms", "ms"],
  ["p_axis_deg", "deg"], ["qrs_axis_deg", "deg"], ["t_axis_deg", "deg"],
]; // prettier-ignore
const SIGNED = new Set(["signed", "amended"]);

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// current - previous, whole, signed ("+12"), or null when either is missing.
export function difference(now, before) {
  if (now === null || now === undefined || before === null || before === undefined) return null;
  return Math.round(now) - Math.round(before);
}

export class PreviousPanel extends EventTarget {
  // root: the panel's element. ``current()``: {task, ecg, median} of the page;
  // ``view()``: {gainMmPerMv, speedMmPerS, pxPerMm(widthPx)}; ``page``: the page's
  // {statementText, stateText, measureLabel, number, when}; onError(error).
  constructor(root, { current, view, page, onError }) {
    super();
    this.root = root;
    this.current = current;
    this.view = view;
    this.page = page;
    this.onError = onError;
    this.reading = null;
    this.items = [];
    this.reports = {};
    this.chosen = null; // {item, ecg, median}
    this.lead = "II";
    this.papers = [];
  }

  // List the earlier ECGs of task ``task`` (null: hide the panel).
  async show(task) {
    if (!task) {
      this.root.hidden = true;
      this.reading = null;
      return;
    }
    if (task.id === this.reading) {
      this.render();
      return;
    }
    this.reading = task.id;
    this.chosen = null;
    this.currentMedian = null;
    this.items = [];
    this.total = 0;
    if (task.patient) {
      const page = await api("GET", `/readings/${encodeURIComponent(task.id)}/previous?limit=${LISTED}`);
      if (this.reading !== task.id) return;
      this.items = page.items;
      this.total = page.total;
      // The signed ones' latest versions: their statements and conclusion.
      const signed = this.items.filter((item) => SIGNED.has(item.state));
      const reports = await Promise.all(
        signed.map((item) => api("GET", `/readings/${encodeURIComponent(item.id)}/report`).catch(() => null)),
      );
      if (this.reading !== task.id) return;
      this.reports = {};
      signed.forEach((item, i) => {
        const versions = reports[i] ? reports[i].versions : [];
        if (versions.length) this.reports[item.id] = versions[versions.length - 1];
      });
    }
    this.patient = task.patient;
    this.root.hidden = false;
    this.render();
    this.dispatchEvent(new CustomEvent("listed"));
  }

  render() {
    const head = html("h3", {}, t("title"));
    const list = html("ul", { id: "prev-list", className: "items previous-list" });
    for (const item of this.items) list.append(this.line(item));
    const parts = [head];
    if (!this.items.length) parts.push(html("p", { className: "muted" }, this.patient ? t("none") : t("noPatient")));
    else parts.push(list);
    if (this.total > this.items.length) {
      parts.push(html("p", { className: "muted" }, t("more", { shown: this.items.length, total: this.total })));
    }
    const compare = html("div", { id: "compare", className: "compare" });
    compare.hidden = !this.chosen;
    parts.push(compare);
    this.root.replaceChildren(...parts);
    if (this.chosen) this.renderCompare(compare);
  }

  line(item) {
    const p = this.page;
    const li = html("li", { dataset: { previous: item.id, state: item.state } });
    const top = item.top_statements.slice(0, 3).map(p.statementText).join("；") || "—";
    const head = html("span", { className: "previous-head" });
    head.append(
      html("strong", {}, p.when(item.received_at)),
      html("span", { className: `state state-${item.state}` }, p.stateText(item.state)),
      html("span", { className: "previous-top" }, top),
    );
    const button = html("button", { type: "button", dataset: { compare: item.id } }, t("compare"));
    if (this.chosen && this.chosen.item.id === item.id) button.setAttribute("aria-pressed", "true");
    button.addEventListener("click", () => this.choose(item).catch(this.onError));
    li.append(head);
    const signed = this.reports[item.id];
    if (signed) {
      const report = signed.document.report;
      const statements = report.statements.map(p.statementText).join("；") || "—";
      li.append(html("span", { className: "sub signed-report" }, t("signedReport", { n: signed.version, statements })));
      if (report.text) li.append(html("span", { className: "sub conclusion" }, t("conclusion", { text: report.text })));
    }
    li.append(button);
    return li;
  }

  // Compare with ``item``: its first 10 s in the page's band and its median beat.
  async choose(item) {
    const reading = this.reading;
    const { ecg } = this.current();
    const band = ecg ? ecg.band : "diagnostic";
    const id = encodeURIComponent(item.id);
    const [window_, median] = await Promise.all([
      api("GET", `/readings/${id}/ecg?start_s=0&duration_s=10&band=${band}`).catch((error) => {
        if (error.code === "no_signal") return null;
        throw error;
      }),
      api("GET", `/readings/${id}/median`).catch(() => null),
    ]);
    if (this.reading !== reading) return;
    this.chosen = { item, ecg: window_, median };
    const now = this.current();
    if (!now.median && !this.currentMedian && now.task) {
      this.currentMedian = await api("GET", `/readings/${encodeURIComponent(now.task.id)}/median`).catch(() => null);
      if (this.reading !== reading) return;
    }
    this.render();
    this.root.querySelector("#compare")?.scrollIntoView({ block: "nearest" });
    this.dispatchEvent(new CustomEvent("compared"));
  }

  close() {
    this.chosen = null;
    this.render();
  }

  // Redraw what depends on the page (its scale choices, the current measurements).
  refresh() {
    if (this.chosen && !this.root.hidden) this.render();
  }

  renderCompare(box) {
    const p = this.page;
    const now = this.current();
    const before = this.chosen;
    const previousWhen = p.when(before.item.received_at);
    box.dataset.previous = before.item.id;
    const head = html("div", { className: "row compare-head" });
    head.append(html("h4", {}, t("comparing", { when: previousWhen })));
    const leads = (now.ecg ? now.ecg.leads : []).filter((l) => !before.ecg || before.ecg.leads.includes(l));
    if (!leads.includes(this.lead)) this.lead = leads.includes("II") ? "II" : leads[0] || "II";
    const label = html("label");
    label.append(html("span", {}, t("lead")));
    const select = html("select", { id: "compare-lead" });
    for (const name of leads) select.append(html("option", { value: name }, name));
    select.value = this.lead;
    select.addEventListener("change", () => {
      this.lead = select.value;
      this.render();
    });
    label.append(select);
    const close = html("button", { type: "button", id: "compare-close" }, t("close"));
    close.addEventListener("click", () => this.close());
    head.append(label, close);
    box.append(head, this.table(now.ecg, before.ecg, previousWhen));
    const columns = html("div", { className: "compare-columns" });
    const sides = [
      ["current", t("current"), now.ecg, now.median || this.currentMedian],
      ["previous", t("previous", { when: previousWhen }), before.ecg, before.median],
    ];
    box.append(columns);
    const width = columns.clientWidth || box.clientWidth || 800;
    const narrow = window.matchMedia("(max-width: 700px)").matches;
    const columnWidth = narrow ? width : (width - 16) / 2;
    const scale = this.view();
    const pxPerMm = scale.pxPerMm(columnWidth);
    const range = this.medianRange(sides.map((s) => s[3]));
    this.papers = [];
    for (const [side, caption, ecg, median] of sides) {
      const figure = html("figure", { className: "compare-side", dataset: { side } });
      figure.append(html("figcaption", {}, caption));
      if (ecg) {
        const paperBox = html("div", { className: "paper-box" });
        const paperEl = html("div", { className: "paper", dataset: { side } });
        const grid = html("canvas");
        const trace = html("canvas");
        paperEl.append(grid, trace);
        paperBox.append(paperEl);
        figure.append(paperBox);
        const counters = {};
        const paper = new RecordPaper({ paper: paperEl, grid, trace, counters });
        paper.show(ecg, {
          layout: "strip",
          lead: this.lead,
          gainMmPerMv: scale.gainMmPerMv,
          speedMmPerS: scale.speedMmPerS,
          pxPerMm,
        });
        paper.side = side;
        this.papers.push(paper);
      } else {
        figure.append(html("p", { className: "muted" }, t("noEcg")));
      }
      if (median) figure.append(this.medianPlot(median, range, Math.min(columnWidth, 480)));
      columns.append(figure);
    }
    box.append(
      html("p", { className: "muted compare-scale" }, t("scale", {
        mm: pxPerMm.toFixed(1), gain: scale.gainMmPerMv, speed: scale.speedMmPerS,
      })),
    ); // prettier-ignore
  }

  table(nowEcg, beforeEcg, previousWhen) {
    const p = this.page;
    const table = html("table", { id: "compare-measures", className: "compare-table" });
    const headRow = html("tr");
    for (const text of [t("measure"), t("current"), previousWhen, t("change")]) headRow.append(html("th", {}, text));
    const thead = html("thead");
    thead.append(headRow);
    const body = html("tbody");
    const m = (nowEcg && nowEcg.measurements) || {};
    const b = (beforeEcg && beforeEcg.measurements) || {};
    for (const [key, unit] of COMPARED) {
      const row = html("tr", { dataset: { measure: key } });
      const change = difference(m[key], b[key]);
      const changeText = change === null ? "—" : `${change > 0 ? "+" : change < 0 ? "−" : "±"}${Math.abs(change)}`;
      row.append(
        html("td", { "data-label": t("measure") }, p.measureLabel(key, m.qtc_formula || b.qtc_formula)),
        html("td", { "data-label": t("current"), dataset: { side: "current" } }, p.number(m[key], unit)),
        html("td", { "data-label": previousWhen, dataset: { side: "previous" } }, p.number(b[key], unit)),
        html("td", { "data-label": t("change"), dataset: { side: "change", value: change ?? "" } }, changeText),
      );
      body.append(row);
    }
    table.append(thead, body);
    return table;
  }

  // One µV range for the chosen lead of both medians, so their heights compare.
  medianRange(medians) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const median of medians) {
      const lead = median && median.leads.find((l) => l.lead === this.lead && l.usable);
      if (!lead) continue;
      lo = Math.min(lo, ...lead.samples_uv);
      hi = Math.max(hi, ...lead.samples_uv);
    }
    return Number.isFinite(lo) ? [lo, Math.max(hi, lo + 200)] : [-500, 1500];
  }

  // The median beat of the chosen lead, x in ms from the R (the same ms per px on both
  // sides), y over the common range; the QRS and T fiducials as thin lines.
  medianPlot(median, [lo, hi], w) {
    const h = 180;
    const root = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: "median-plot compare-median" });
    const lead = median.leads.find((l) => l.lead === this.lead && l.usable);
    root.dataset.lead = this.lead;
    root.append(svg("rect", { x: 0, y: 0, width: w, height: h, class: "median-bg" }));
    const name = svg("text", { x: 4, y: 14, class: "median-name" });
    name.textContent = t("median", { lead: this.lead });
    root.append(name);
    if (!lead) return root;
    // 1200 ms across, the R at 40 %: both beats line up on their R.
    const msPerPx = 1200 / w;
    const rMs = (median.r_index * 1000) / median.fs_hz;
    const x = (ms) => w * 0.4 + (ms - rMs) / msPerPx;
    const y = (uv) => h - 8 - ((uv - lo) / (hi - lo)) * (h - 28);
    const points = lead.samples_uv.map((uv, i) => `${x((i * 1000) / median.fs_hz).toFixed(1)},${y(uv).toFixed(1)}`);
    root.append(svg("line", { x1: 0, x2: w, y1: y(lead.iso_uv), y2: y(lead.iso_uv), class: "median-iso" }));
    root.append(svg("polyline", { points: points.join(" "), class: "median-trace" }));
    const f = median.fiducials.fiducials_ms;
    for (const key of ["qrs_on", "qrs_off", "t_off"]) {
      if (f[key] === null || f[key] === undefined) continue;
      root.append(svg("line", { x1: x(f[key]), x2: x(f[key]), y1: 18, y2: h, class: `compare-fiducial fiducial-${key}` }));
    }
    return root;
  }
}
