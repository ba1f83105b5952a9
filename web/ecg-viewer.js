// The live ECG viewer (GET /ecg?token=...): lists the streams the token grants and
// draws the chosen one on ECG paper (25 mm/s, 10 mm/mV, 1 mm / 5 mm red grid).
//
// Design notes
// - Layout: with the twelve standard leads, the printed 12-lead layout: three rows of
//   four 2.5 s columns (I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6) and a 10 s rhythm
//   strip of II; otherwise one 10 s row per lead. Like a monitor, the trace is written
//   by a sweep that wraps every 10 s and erases a little ahead of itself.
// - Two canvases: the grid is drawn once (on resize), the trace canvas only gets the
//   new line segments each animation frame, so the cost per frame is the samples that
//   arrived, not the page (12 leads at 500 Hz arrive decimated to ~125 Hz).
// - Play-out: samples arrive in ~200 ms chunks; they are drawn on a steady clock
//   delayed by PLAYOUT_DELAY_MS so that the sweep moves smoothly.
// - window.ecg exposes counters for tests (beatsReceived, beatsDrawn, samplesDrawn,
//   frames, drawMs: the drawing work of the last frames, ms).

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

const STRINGS = {
  en: {
    title: "Live ECG", streams: "Live streams", none: "No stream you may open.",
    hr: "HR", bpm: "bpm", open: "connected", closed: "disconnected", ended: "ended",
    live: "live", finalised: "finalised", notoken: "Open this page with ?token=...",
    bradycardia: "Bradycardia", tachycardia: "Tachycardia", pause: "Pause",
    asystole: "Asystole", irregular: "Irregular rhythm", lead_off: "Lead off",
    saturation: "Saturation", baseline_wander: "Baseline wander", noise: "Noise",
    lead: "lead", patient: "Patient",
  },
  zh: {
    title: "实时心电", streams: "实时心电流", none: "没有可查看的心电流。",
    hr: "心率", bpm: "次/分", open: "已连接", closed: "已断开", ended: "已结束",
    live: "实时", finalised: "已完成", notoken: "请使用 ?token=... 打开此页面",
    bradycardia: "心动过缓", tachycardia: "心动过速", pause: "停搏",
    asystole: "心脏停搏", irregular: "心律不齐", lead_off: "导联脱落",
    saturation: "信号饱和", baseline_wander: "基线漂移", noise: "噪声",
    lead: "导联", patient: "患者",
  },
};

const params = new URLSearchParams(location.search);
const lang = (params.get("lang") || navigator.language || "en").toLowerCase().startsWith("zh")
  ? "zh" : "en";
const t = (key) => STRINGS[lang][key] ?? key;

const $ = (id) => document.getElementById(id);
const state = {
  streams: [], current: null, info: null, beatsReceived: 0, beatsDrawn: 0,
  samplesDrawn: 0, hr: null, flags: [], provisional: [], lang,
  frames: 0, drawMs: [], // animation frames that drew, and the last 240 ones' work in ms
};
window.ecg = state;

document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);

// ------------------------------------------------------------------ connection

let ws = null;
let listTimer = null;

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function connect() {
  const token = params.get("token");
  if (!token) {
    showError(t("notoken"));
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws`);
  ws.onopen = () => send({ type: "watch", token, version: 1 });
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = () => {
    setConn("closed");
    clearInterval(listTimer);
    setTimeout(connect, 2000); // the server restarted or the network dropped
  };
}

function setConn(name) {
  $("conn").dataset.state = name;
  $("conn").textContent = t(name);
}

function showError(text) {
  $("error").hidden = false;
  $("error").textContent = text;
}

function onMessage(message) {
  switch (message.type) {
    case "watching":
      setConn("open");
      send({ type: "ecg_list" });
      clearInterval(listTimer);
      listTimer = setInterval(() => send({ type: "ecg_list" }), 3000);
      if (state.current) send({ type: "ecg_subscribe", stream: state.current });
      break;
    case "ecg_streams":
      state.streams = message.streams;
      renderList();
      break;
    case "ecg_subscribed":
      startView(message.info);
      break;
    case "ecg_data":
      if (message.stream === state.current) receive(message);
      break;
    case "ecg_ended":
      if (message.stream === state.current) $("patient").dataset.state = message.state;
      send({ type: "ecg_list" });
      break;
    case "error":
      showError(`${message.code}: ${message.reason}`);
      break;
    default:
      break;
  }
}

function renderList() {
  const list = $("streams");
  list.replaceChildren();
  for (const s of state.streams) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.stream = s.stream;
    button.setAttribute("aria-pressed", String(s.stream === state.current));
    const when = new Date(s.start_time).toLocaleString(lang === "zh" ? "zh-CN" : undefined);
    button.textContent = `${t("patient")} ${s.patient}`;
    const small = document.createElement("small");
    small.textContent = `${s.device} · ${when} · ${s.leads.length} ${t("lead")} · ${t(s.state)}`;
    button.append(small);
    button.onclick = () => choose(s.stream);
    item.append(button);
    list.append(item);
  }
  $("no-streams").hidden = state.streams.length > 0;
}

function choose(stream) {
  if (state.current && state.current !== stream) {
    send({ type: "ecg_unsubscribe", stream: state.current });
  }
  state.current = stream;
  send({ type: "ecg_subscribe", stream });
  renderList();
}

// ------------------------------------------------------------------ drawing

const view = {
  rows: [], // [{leads: [[column, leadIndex]...], full: leadIndex|null}]
  queue: [], // {index, values[]} display samples not yet drawn
  beats: [], // beat times in s, not yet drawn
  last: new Map(), // cell key -> [x, y] of its previous point
  t0: null, // performance.now() at display index 0 (with the play-out delay)
  fs: 125,
  pxPerMm: 4,
  dpr: 1,
};

function startView(info) {
  state.info = info;
  $("viewer").hidden = false;
  $("patient").textContent = `${t("patient")} ${info.patient} · ${info.device}`;
  const names = info.leads.map((name) => name.toUpperCase());
  const find = (name) => names.indexOf(name.toUpperCase());
  const standard = STANDARD.flat().every((name) => find(name) >= 0);
  view.rows = standard
    ? [
        ...STANDARD.map((row) => ({ cells: row.map((name, column) => [column, find(name)]) })),
        { cells: [[null, find("II")]] },
      ]
    : info.leads.map((_, lead) => ({ cells: [[null, lead]] }));
  view.queue = [];
  view.beats = [];
  view.last.clear();
  view.t0 = null;
  state.flags = [];
  layout();
}

function layout() {
  const paper = $("paper");
  const width = paper.clientWidth || 800;
  view.dpr = window.devicePixelRatio || 1;
  view.pxPerMm = width / (SWEEP_S * MM_PER_S);
  const height = Math.round(view.rows.length * ROW_MM * view.pxPerMm);
  paper.style.height = `${height}px`;
  for (const canvas of [$("grid"), $("trace")]) {
    canvas.width = Math.round(width * view.dpr);
    canvas.height = Math.round(height * view.dpr);
  }
  drawGrid(width, height);
  $("trace").getContext("2d").clearRect(0, 0, $("trace").width, $("trace").height);
  view.last.clear();
}

function drawGrid(width, height) {
  const g = $("grid").getContext("2d");
  g.setTransform(view.dpr, 0, 0, view.dpr, 0, 0);
  g.fillStyle = "#fff";
  g.fillRect(0, 0, width, height);
  const mm = view.pxPerMm;
  for (const [step, colour, lineWidth] of [[1, "#f6c9c9", 0.5], [5, "#e58f8f", 1]]) {
    g.strokeStyle = colour;
    g.lineWidth = lineWidth;
    g.beginPath();
    for (let x = 0; x <= width; x += step * mm) { g.moveTo(x, 0); g.lineTo(x, height); }
    for (let y = 0; y <= height; y += step * mm) { g.moveTo(0, y); g.lineTo(width, y); }
    g.stroke();
  }
  g.fillStyle = "#333";
  g.font = `${Math.max(10, 3 * mm)}px sans-serif`;
  view.rows.forEach((row, r) => {
    for (const [column, lead] of row.cells) {
      const x = (column ?? 0) * (SWEEP_S / 4) * MM_PER_S * mm + 2;
      g.fillText(state.info.leads[lead], x, (r * ROW_MM + 4) * mm);
    }
  });
}

function receive(message) {
  view.fs = message.display_fs_hz;
  const n = message.samples_uv[0]?.length ?? 0;
  for (let i = 0; i < n; i += 1) {
    view.queue.push({
      index: message.first_index + i,
      values: message.samples_uv.map((lead) => lead[i]),
    });
  }
  if (view.t0 === null && n) {
    view.t0 = performance.now() + PLAYOUT_DELAY_MS - (message.first_index / view.fs) * 1000;
  }
  for (const beat of message.beats) view.beats.push(beat[0] / state.info.fs_hz);
  state.beatsReceived += message.beats.length;
  if (message.heart_rate_bpm !== null) state.hr = message.heart_rate_bpm;
  state.flags.push(...message.flags);
  state.flags = state.flags.slice(-8);
  state.provisional = message.provisional;
  $("hr").textContent = state.hr === null ? "--" : Math.round(state.hr);
  renderFlags();
}

function renderFlags() {
  const list = $("flags");
  list.replaceChildren();
  const shown = [...state.flags.map((f) => [f, false]), ...state.provisional.map((f) => [f, true])];
  for (const [flag, provisional] of shown) {
    const item = document.createElement("li");
    if (provisional) item.className = "provisional";
    const lead = flag.lead === undefined || flag.lead === null
      ? "" : ` (${state.info.leads[flag.lead]})`;
    item.textContent = `${t(flag.kind)}${lead}`;
    item.dataset.kind = flag.kind;
    list.append(item);
  }
}

function frame(now) {
  requestAnimationFrame(frame);
  if (view.t0 === null || !state.info) return;
  // A stall (network, server) must not leave the clock far ahead of the data.
  const due = ((now - view.t0) / 1000) * view.fs;
  if (view.queue.length && view.queue[0].index < due - 2 * view.fs) {
    view.t0 = now - (view.queue[0].index / view.fs) * 1000;
  }
  const c = $("trace").getContext("2d");
  c.setTransform(view.dpr, 0, 0, view.dpr, 0, 0);
  c.lineWidth = 1.2;
  c.strokeStyle = "#111";
  c.beginPath();
  let drawnS = null;
  while (view.queue.length && view.queue[0].index <= due) {
    const sample = view.queue.shift();
    drawSample(c, sample);
    drawnS = sample.index / view.fs;
  }
  c.stroke();
  if (drawnS !== null) {
    drawBeats(c, drawnS);
    state.frames += 1;
    state.drawMs.push(performance.now() - now);
    if (state.drawMs.length > 240) state.drawMs.shift();
  }
}

function drawSample(c, sample) {
  const mm = view.pxPerMm;
  const tS = sample.index / view.fs;
  const sweepS = tS % SWEEP_S;
  const x = sweepS * MM_PER_S * mm;
  const column = Math.floor(sweepS / (SWEEP_S / 4));
  // Erase a little ahead of the sweep (the previous pass) and at a wrap.
  c.clearRect(x + 1, 0, ERASE_MM * mm, $("trace").height);
  if (sweepS * view.fs < 1) view.last.clear();
  view.rows.forEach((row, r) => {
    const baseline = (r * ROW_MM + ROW_MM / 2 + 2) * mm;
    for (const [cellColumn, lead] of row.cells) {
      if (cellColumn !== null && cellColumn !== column) continue;
      const key = `${r}:${cellColumn}`;
      const uv = sample.values[lead];
      if (uv === null || uv === undefined) {
        view.last.delete(key);
        continue;
      }
      const y = baseline - (uv / 1000) * MM_PER_MV * mm;
      const previous = view.last.get(key);
      if (previous && x > previous[0]) {
        c.moveTo(previous[0], previous[1]);
        c.lineTo(x, y);
      }
      view.last.set(key, [x, y]);
    }
  });
  state.samplesDrawn += 1;
}

function drawBeats(c, uptoS) {
  const mm = view.pxPerMm;
  const top = ((view.rows.length - 1) * ROW_MM + 3) * mm;
  c.fillStyle = "#c00";
  while (view.beats.length && view.beats[0] <= uptoS) {
    const beatS = view.beats.shift();
    const x = (beatS % SWEEP_S) * MM_PER_S * mm;
    c.beginPath();
    c.moveTo(x - 1.5 * mm, top);
    c.lineTo(x + 1.5 * mm, top);
    c.lineTo(x, top + 2 * mm);
    c.closePath();
    c.fill();
    state.beatsDrawn += 1;
  }
}

window.addEventListener("resize", () => { if (state.info) layout(); });
requestAnimationFrame(frame);
connect();
