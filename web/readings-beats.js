// Beat labels on the reading page: every beat of the measured window marked on the
// paper with its label (N, S, V, paced, artefact), and the count of each label beside
// the measurements ("PVC 3"). The claimant clicks (or taps) a mark and chooses a label
// from a small menu; the page PUTs /readings/{id}/beats/{index} and shows the server's
// labels and counts. A refusal is shown by the page; nothing is changed on screen.
//
// Design notes
// - The marks are buttons over the paper's canvas (RecordPaper.beatMarks gives where
//   each beat is drawn), so they are focusable and reachable by keyboard; a pointer on
//   one does not start a caliper.
// - The menu is fixed over the page (not inside the paper, whose box clips it), next
//   to the mark; Escape or a click elsewhere closes it.

import { api } from "/static/auth.js";
import { translator } from "/static/i18n.js";
import { html } from "/static/readings-dom.js";

const STRINGS = {
  en: {
    beats: "Beats {n}",
    "label.N": "Normal (N)",
    "label.S": "Supraventricular (S)",
    "label.V": "Ventricular (V)",
    "label.P": "Paced (P)",
    "label.Q": "Artefact (Q)",
    "short.N": "N",
    "short.S": "SVPB",
    "short.V": "PVC",
    "short.P": "Paced",
    "short.Q": "Artefact",
    mark: "Beat {n}: {label}",
    choose: "Label beat {n}",
    hint: "Click a beat's mark under the paper to label it.",
  },
  zh: {
    beats: "心搏 {n}",
    "label.N": "正常（N）",
    "label.S": "室上性（S）",
    "label.V": "室性（V）",
    "label.P": "起搏（P）",
    "label.Q": "伪差（Q）",
    "short.N": "正常",
    "short.S": "房早",
    "short.V": "室早",
    "short.P": "起搏",
    "short.Q": "伪差",
    mark: "第 {n} 个心搏：{label}",
    choose: "标注第 {n} 个心搏",
    hint: "点击心电图纸下方的心搏标记即可标注。",
  },
};

export const t = translator(STRINGS);
export const LABELS = ["N", "S", "V", "P", "Q"];
const MARK_PX = 26;

export class BeatLabels extends EventTarget {
  // paper: the page's RecordPaper; counts: the element for the counts; onError(error).
  constructor({ paper, counts, onError }) {
    super();
    this.paper = paper;
    this.counts = counts;
    this.onError = onError;
    this.ecg = null;
    this.editable = false;
    this.layer = html("div", { className: "beat-layer" });
    paper.paper.append(this.layer);
    this.menu = html("div", { id: "beat-menu", className: "beat-menu", role: "menu" });
    this.menu.hidden = true;
    document.body.append(this.menu);
    this.saves = 0;
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.closeMenu();
    });
    document.addEventListener("pointerdown", (event) => {
      if (!this.menu.hidden && !this.menu.contains(event.target) && !event.target.closest?.(".beat-mark")) {
        this.closeMenu();
      }
    });
  }

  // The marks of ``ecg``'s beats on the paper as drawn now; ``editable``: the caller
  // may label (the table's edit is allowed).
  render(ecg, editable) {
    this.ecg = ecg;
    this.editable = editable;
    this.closeMenu();
    const labels = ecg.beat_labels || [];
    const marks = this.paper.beatMarks().map(({ index, x, y }) => {
      const label = labels[index] || "N";
      const props = {
        className: `beat-mark beat-${label}`,
        dataset: { beat: String(index), label },
        title: t("mark", { n: index + 1, label: t(`label.${label}`) }),
        "aria-label": t("mark", { n: index + 1, label: t(`label.${label}`) }),
      };
      const mark = html(editable ? "button" : "span", editable ? { ...props, type: "button" } : props, label);
      mark.style.left = `${x - MARK_PX / 2}px`;
      mark.style.top = `${y - MARK_PX - 2}px`;
      if (editable) {
        mark.addEventListener("pointerdown", (event) => event.stopPropagation()); // not a caliper
        mark.addEventListener("click", () => this.openMenu(index, mark));
      }
      return mark;
    });
    this.layer.replaceChildren(...marks);
    this.renderCounts();
  }

  renderCounts() {
    const counts = (this.ecg && this.ecg.beat_counts) || {};
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    const parts = [html("strong", {}, t("beats", { n: total }))];
    for (const label of LABELS) {
      if (!counts[label]) continue;
      parts.push(html("span", { className: `beat-count beat-${label}`, dataset: { label } }, `${t(`short.${label}`)} ${counts[label]}`));
    }
    if (this.editable) parts.push(html("span", { className: "muted" }, t("hint")));
    this.counts.replaceChildren(...parts);
    this.counts.hidden = !this.ecg;
  }

  openMenu(index, mark) {
    const buttons = LABELS.map((label) => {
      const button = html("button", { type: "button", role: "menuitem", dataset: { label } }, t(`label.${label}`));
      if ((this.ecg.beat_labels || [])[index] === label) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => this.choose(index, label));
      return button;
    });
    this.menu.replaceChildren(html("strong", {}, t("choose", { n: index + 1 })), ...buttons);
    this.menu.dataset.beat = String(index);
    this.menu.hidden = false;
    const box = mark.getBoundingClientRect();
    const width = Math.min(this.menu.offsetWidth || 320, window.innerWidth - 8);
    this.menu.style.left = `${Math.max(4, Math.min(box.left, window.innerWidth - width - 4))}px`;
    this.menu.style.top = `${Math.max(4, box.top - this.menu.offsetHeight - 6)}px`;
    buttons[0].focus();
  }

  closeMenu() {
    this.menu.hidden = true;
  }

  async choose(index, label) {
    this.closeMenu();
    const reading = this.ecg.reading;
    try {
      const answer = await api("PUT", `/readings/${encodeURIComponent(reading)}/beats/${index}`, { label });
      if (this.ecg.reading !== reading) return;
      this.ecg.beat_labels = answer.labels;
      this.ecg.beat_counts = answer.counts;
      this.saves += 1;
      this.render(this.ecg, this.editable);
      this.layer.querySelector(`.beat-mark[data-beat='${index}']`)?.focus();
    } catch (error) {
      this.onError(error);
    }
    this.dispatchEvent(new CustomEvent("saved"));
  }
}
