// The ECG centre's pages: the reading worklist (critical first, then STAT, then the
// longest waiting), one reading (the record on paper in the reader's layout, gain,
// speed and filter band; the engine's measurements and proposed statements; the report
// from the coded library and free text; signing with the one-time code, after which
// the next waiting task opens; returning to the clinic; the task's critical values and
// marking one), and the critical-value register (危急值登记) where the clinic's doctor
// acknowledges by read-back. Everything goes through /api/v1 with the session cookie;
// text is set with textContent, never HTML; live notices come over web/notices.js.
//
// window.tcReadings exposes the page's state to tests (the task, the ECG answer, the
// paper's view and counters).

import { api, ApiFailure } from "/static/auth.js";
import { desktopNotice, listenForNotices } from "/static/notices.js";
import { lang, translator } from "/static/i18n.js";
import { MedianPanel } from "/static/readings-median.js";
import { RecordPaper } from "/static/readings-paper.js";
import { PreviousPanel } from "/static/readings-previous.js";
import { BeatLabels } from "/static/readings-beats.js";
import { RoomEcg } from "/static/room-ecg.js";

const STRINGS = {
  en: {
    home: "Home",
    title: "ECG centre",
    noticeTitle: "teleconsult",
    enableNotices: "Desktop notices",
    logIn: "Log in to read ECGs.",
    tabList: "Worklist",
    tabCriticals: "Critical values",
    clinicCode: "Clinic code",
    readerName: "Reader (username)",
    filter: "Filter",
    allStates: "All states",
    prev: "Previous",
    next: "Next",
    pageInfo: "{from}–{to} of {total}",
    empty: "Nothing here.",
    colPatient: "Patient",
    colClinic: "Clinic",
    colTime: "Received",
    colStatements: "Statements",
    colState: "State",
    colCritical: "Critical",
    colFinding: "Finding",
    colDetected: "Detected",
    colTold: "Told",
    colAcknowledged: "Acknowledged",
    colReadBack: "Read-back",
    open: "Open",
    stat: "STAT",
    back: "Back",
    layout: "Layout",
    lead: "Lead",
    gain: "Gain",
    speed: "Speed",
    band: "Filter",
    "band.diagnostic": "Diagnostic 0.05–150 Hz",
    "band.monitoring": "Monitoring 0.5–40 Hz",
    earlier: "Earlier",
    later: "Later",
    windowInfo: "{from}–{to} s of {total} s",
    noSignal: "The ECG is still arriving.",
    watchLive: "Watch it live",
    hr: "HR",
    bpm: "bpm",
    ecgPatient: "Arriving live: patient {patient} · {device}",
    ecg12: "12 leads",
    ecgRhythm: "Rhythm strip",
    measurements: "Measurements",
    notMeasured: "Not measurable on this record.",
    proposed: "Proposed by the engine",
    noneProposed: "No statement proposed.",
    useProposed: "Use these",
    report: "Report",
    noStatements: "No statement chosen yet: search the library below.",
    searchStatements: "Search statements (中文 or English)",
    add: "Add",
    remove: "Remove {what}",
    freeText: "Free text",
    save: "Save draft",
    saved: "Draft saved.",
    totp: "One-time code",
    sign: "Sign",
    signedNext: "Signed. The next waiting ECG is open.",
    signedNone: "Signed. No ECG is waiting.",
    returnReason: "Why the clinic must record again",
    returnTask: "Return to the clinic",
    returned: "Returned to the clinic.",
    signedReport: "Signed report",
    version: "Version {n}",
    signedBy: "Signed by {who} at {when} · key {key}",
    downloadPdf: "Report PDF",
    downloadDicom: "DICOM",
    criticalsOfTask: "Critical values",
    noCriticals: "No critical value.",
    markCritical: "Mark critical",
    marked: "Critical value raised: {what}.",
    criticalLine: "{what} · {state} · detected {when}",
    byEngine: "engine",
    readBack: "Say the finding back as you understood it",
    acknowledge: "Acknowledge",
    acknowledged: "Acknowledged.",
    ackBy: "{who} at {when}",
    escalated: "escalated: {level}",
    "fact.patient": "Patient",
    "fact.clinic": "Clinic",
    "fact.centre": "Centre",
    "fact.received": "Received",
    "fact.source": "ECG",
    "fact.claimant": "Claimed by",
    "fact.signer": "Signed by",
    "fact.reason": "Returned because",
    "m.hr_bpm": "Heart rate",
    "m.rr_ms": "RR",
    "m.pr_ms": "PR",
    "m.p_ms": "P",
    "m.qrs_ms": "QRS",
    "m.qt_ms": "QT",
    "m.qtc_ms": "QTc ({formula})",
    "m.p_axis_deg": "P axis",
    "m.qrs_axis_deg": "QRS axis",
    "m.t_axis_deg": "T axis",
    "unit.bpm": "bpm",
    "unit.ms": "ms",
    "unit.deg": "°",
    "state.new": "Waiting",
    "state.claimed": "Claimed",
    "state.draft": "Draft",
    "state.signed": "Signed",
    "state.amended": "Being amended",
    "state.returned": "Returned",
    "event.claim": "Claim",
    "event.release": "Release",
    "event.amend": "Amend",
    "cstate.raised": "Raised",
    "cstate.notified": "Told, not acknowledged",
    "cstate.escalated": "Escalated",
    "cstate.acknowledged": "Acknowledged",
    "level.clinic_doctors": "the clinic's doctors",
    "level.centre_coordinators": "the centre's coordinators",
    "level.phone_gateway": "phone",
    "notice.critical.raised": "Critical ECG finding {code}",
    "notice.critical.escalate": "A critical ECG finding is not acknowledged: {code}",
    "notice.critical.acknowledge": "A critical ECG finding was acknowledged: {code}",
    "notice.reading.sign": "An ECG report was signed",
    "notice.reading.amend": "An ECG report is being amended",
    "notice.reading.return": "An ECG was returned to the clinic",
    "notice.other": "Something needs you",
    "error.transition_not_allowed": "This step is not possible now: {reason}",
    "error.forbidden": "You may not do this: {reason}",
    "error.claimed_by_another": "Another reader holds this ECG: {reason}",
    "error.reading_changed": "Someone changed this ECG meanwhile: it was reloaded.",
    "error.not_found": "Not found.",
    "error.not_notified": "Only someone who was told of this critical value may acknowledge it.",
    "error.totp_required": "Enter the current one-time code from your authenticator app.",
    "error.invalid_input": "Invalid: {reason}",
    "error.conflict": "It is raised already.",
    "error.session_invalid": "You are not logged in, or your session has expired.",
    caliperTime: "{ms} ms · {bpm} bpm",
    caliperAmplitude: "{mv} mV",
    caliperHint: "Drag on the paper to measure time; with Shift, amplitude; Esc clears.",
    "error.fiducial_outside_beat": "Not moved: {reason}",
    "error.fiducials_out_of_order": "Not moved: {reason}",
    "error.generic": "The server refused: {reason}",
  },
  zh: {
    home: "首页",
    title: "心电诊断中心",
    noticeTitle: "远程会诊",
    enableNotices: "桌面通知",
    logIn: "请登录后阅读心电图。",
    tabList: "待诊断列表",
    tabCriticals: "危急值登记",
    clinicCode: "机构编码",
    readerName: "诊断医师（用户名）",
    filter: "筛选",
    allStates: "全部状态",
    prev: "上一页",
    next: "下一页",
    pageInfo: "第 {from}–{to} 条，共 {total} 条",
    empty: "暂无记录。",
    colPatient: "患者",
    colClinic: "申请机构",
    colTime: "接收时间",
    colStatements: "诊断提示",
    colState: "状态",
    colCritical: "危急值",
    colFinding: "危急值内容",
    colDetected: "发现时间",
    colTold: "已通知",
    colAcknowledged: "确认",
    colReadBack: "复述内容",
    open: "打开",
    stat: "急",
    back: "返回",
    layout: "布局",
    lead: "导联",
    gain: "增益",
    speed: "走纸速度",
    band: "滤波",
    "band.diagnostic": "诊断 0.05–150 Hz",
    "band.monitoring": "监护 0.5–40 Hz",
    earlier: "向前",
    later: "向后",
    windowInfo: "第 {from}–{to} 秒，共 {total} 秒",
    noSignal: "心电图仍在传输中。",
    watchLive: "实时查看",
    hr: "心率",
    bpm: "次/分",
    ecgPatient: "实时传输中：患者 {patient} · {device}",
    ecg12: "12 导联",
    ecgRhythm: "节律条",
    measurements: "测量值",
    notMeasured: "本记录无法测量。",
    proposed: "自动分析提示",
    noneProposed: "无自动诊断提示。",
    useProposed: "采用",
    report: "诊断报告",
    noStatements: "尚未选择诊断，请在下方诊断库中搜索。",
    searchStatements: "搜索诊断（中文或 English）",
    add: "添加",
    remove: "移除 {what}",
    freeText: "补充描述",
    save: "保存草稿",
    saved: "草稿已保存。",
    totp: "动态验证码",
    sign: "签署",
    signedNext: "已签署，已打开下一份待诊断心电图。",
    signedNone: "已签署，暂无待诊断心电图。",
    returnReason: "退回原因（需重新采集）",
    returnTask: "退回申请机构",
    returned: "已退回申请机构。",
    signedReport: "已签署的报告",
    version: "第 {n} 版",
    signedBy: "{who} 于 {when} 签署 · 公钥 {key}",
    downloadPdf: "报告 PDF",
    downloadDicom: "DICOM",
    criticalsOfTask: "危急值",
    noCriticals: "无危急值。",
    markCritical: "标记危急值",
    marked: "已上报危急值：{what}。",
    criticalLine: "{what} · {state} · 发现于 {when}",
    byEngine: "自动分析",
    readBack: "请复述您所理解的危急值内容",
    acknowledge: "确认接收",
    acknowledged: "已确认。",
    ackBy: "{who}，{when}",
    escalated: "已升级：{level}",
    "fact.patient": "患者",
    "fact.clinic": "申请机构",
    "fact.centre": "诊断中心",
    "fact.received": "接收时间",
    "fact.source": "心电图",
    "fact.claimant": "诊断医师",
    "fact.signer": "签署人",
    "fact.reason": "退回原因",
    "m.hr_bpm": "心率",
    "m.rr_ms": "RR 间期",
    "m.pr_ms": "PR 间期",
    "m.p_ms": "P 波时限",
    "m.qrs_ms": "QRS 时限",
    "m.qt_ms": "QT 间期",
    "m.qtc_ms": "QTc（{formula}）",
    "m.p_axis_deg": "P 电轴",
    "m.qrs_axis_deg": "QRS 电轴",
    "m.t_axis_deg": "T 电轴",
    "unit.bpm": "次/分",
    "unit.ms": "毫秒",
    "unit.deg": "°",
    "state.new": "待诊断",
    "state.claimed": "已领取",
    "state.draft": "草稿",
    "state.signed": "已签署",
    "state.amended": "修订中",
    "state.returned": "已退回",
    "event.claim": "领取",
    "event.release": "放弃领取",
    "event.amend": "修订",
    "cstate.raised": "已发现",
    "cstate.notified": "已通知，未确认",
    "cstate.escalated": "已升级",
    "cstate.acknowledged": "已确认",
    "level.clinic_doctors": "申请机构其他医生",
    "level.centre_coordinators": "诊断中心协调员",
    "level.phone_gateway": "电话",
    "notice.critical.raised": "心电危急值 {code}",
    "notice.critical.escalate": "心电危急值尚未确认：{code}",
    "notice.critical.acknowledge": "心电危急值已确认：{code}",
    "notice.reading.sign": "心电图报告已签署",
    "notice.reading.amend": "心电图报告正在修订",
    "notice.reading.return": "心电图已退回申请机构",
    "notice.other": "有事项需要您处理",
    "error.transition_not_allowed": "当前无法进行此操作：{reason}",
    "error.forbidden": "您无权进行此操作：{reason}",
    "error.claimed_by_another": "该心电图已由其他医师领取：{reason}",
    "error.reading_changed": "该心电图已被他人更新，已重新加载。",
    "error.not_found": "未找到。",
    "error.not_notified": "只有接到通知的人员可以确认此危急值。",
    "error.totp_required": "请输入身份验证器中当前的动态验证码。",
    "error.invalid_input": "输入无效：{reason}",
    "error.conflict": "该危急值已上报。",
    "error.session_invalid": "您尚未登录或登录已过期。",
    caliperTime: "{ms} 毫秒 · {bpm} 次/分",
    caliperAmplitude: "{mv} 毫伏",
    caliperHint: "在心电图纸上拖动测量时间，按住 Shift 拖动测量振幅，Esc 清除。",
    "error.fiducial_outside_beat": "未修正：测量点超出平均心搏范围（{reason}）",
    "error.fiducials_out_of_order": "未修正：测量点顺序不符（{reason}）",
    "error.generic": "服务器拒绝：{reason}",
  },
};

export const t = translator(STRINGS);

const $ = (id) => document.getElementById(id);
const STATES = ["new", "claimed", "draft", "signed", "amended", "returned"];
const BANDS = ["diagnostic", "monitoring"];
const PAGE = 20;
const WINDOW_S = 10;
const PORTRAIT_PX_PER_MM = 10;
const MEASURES = [
  ["hr_bpm", "bpm"], ["rr_ms", "ms"], ["pr_ms", "ms"], ["p_ms", "ms"], ["qrs_ms", "ms"],
  ["qt_ms", "ms"], ["qtc_ms", "ms"], ["p_axis_deg", "deg"], ["qrs_axis_deg", "deg"], ["t_axis_deg", "deg"],
]; // prettier-ignore
const ACKNOWLEDGEABLE = new Set(["notified", "escalated"]);

const state = {
  me: null,
  view: null,
  offset: 0,
  task: null,
  ecg: null,
  startS: 0,
  turn: 0,
  library: { statements: [], criticals: [] },
  live: null,
  liveCounters: {},
  ended: new Set(),
  chosen: [],
  counters: {},
  notices: [],
};
window.tcReadings = state;

const paper = new RecordPaper({ paper: $("paper"), grid: $("grid"), trace: $("trace"), counters: state.counters });
state.paper = paper;
paper.enableCalipers((c) =>
  c.kind === "time"
    ? t("caliperTime", { ms: Math.round(c.ms), bpm: c.bpm ? Math.round(c.bpm) : "—" })
    : t("caliperAmplitude", { mv: c.mv.toFixed(2) }),
);
// The beats' labels on the paper (the claimant changes them) and their counts.
const beats = new BeatLabels({ paper, counts: $("beat-counts"), onError: (error) => fail(error) });
state.beats = beats;
// The median beat and its fiducials; corrected measurements replace the engine's at once,
// and so do the statements resting on them (1AVB from PR, LNGQT from QTc, ...).
const median = new MedianPanel($("median"), {
  onMeasured: (m, statements) => {
    if (!state.ecg) return;
    renderEngine(Object.assign(state.ecg, { measurements: m, statements }));
    previous.refresh(); // the comparison's current figures are the corrected ones
  },
  onError: (error) => fail(error),
});
state.median = median;
// The patient's earlier ECGs, one of them beside this one on the same scale.
const previous = new PreviousPanel($("previous"), {
  current: () => ({
    task: state.task,
    ecg: state.ecg,
    median: state.task && median.reading === state.task.id ? median.data : null,
  }),
  view: () => ({
    gainMmPerMv: Number($("gain").value),
    speedMmPerS: Number($("speed").value),
    pxPerMm: (width) => (isPortrait() ? PORTRAIT_PX_PER_MM : Math.max(3, width / (WINDOW_S * 25 + 12))),
  }),
  page: {
    statementText: (code) => statementText(code),
    stateText: (name) => t(`state.${name}`),
    measureLabel: (key, formula) => t(`m.${key}`, { formula }),
    number: (value, unit) => number(value, unit),
    when: (iso) => when(iso),
  },
  onError: (error) => fail(error),
});
state.previous = previous;

// A task's stream while it is still arriving, on the live paper of web/ecg-paper.js
// (the consult room's ECG panel, following this task's stream instead of the room's
// newest); "ended" once the stream is complete and its record kept.
class TaskStream extends RoomEcg {
  constructor(stream, options) {
    super(options);
    this.stream = stream;
    this.mode = "12";
  }

  choose(streams) {
    const mine = streams.find((s) => s.stream === this.stream);
    if (mine && mine.state !== "live") this.dispatchEvent(new CustomEvent("ended"));
    else if (mine && this.current !== mine.stream) {
      this.current = mine.stream;
      this.send({ type: "ecg_subscribe", stream: mine.stream });
    }
  }

  onMessage(message) {
    super.onMessage(message);
    if (message.type === "ecg_ended" && message.stream === this.stream) this.dispatchEvent(new CustomEvent("ended"));
  }
}

function translate() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-r]")) el.textContent = t(el.dataset.r);
  for (const el of document.querySelectorAll("[data-rp]")) el.placeholder = t(el.dataset.rp);
}

// One line under the header: a notice (green) or an error (red), never both.
function show(which, message) {
  for (const id of ["notice", "error"]) $(id).hidden = id !== which;
  $(which).textContent = message;
}

const say = (message) => show("notice", message);

function fail(error) {
  const known = error instanceof ApiFailure;
  const key = known ? `error.${error.code}` : "error.generic";
  const reason = known ? error.reason : String(error);
  const message = t(key, { reason });
  show("error", message === key ? t("error.generic", { reason }) : message);
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "className") node.className = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function option(value, label) {
  const node = el("option", { value });
  node.textContent = label;
  return node;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "—";
}

const isReader = () => state.me.roles.includes("ecg_reader");
const isPortrait = () => window.matchMedia("(orientation: portrait) and (max-width: 700px)").matches;

// The library's text of a statement or critical code, in the page's language.
// A GET of /api/v1: the answer web/readings-start.js asked for before the modules
// loaded when it has this path (taken once), else a new request.
function apiGet(path) {
  const early = window.tcEarly && window.tcEarly[path];
  if (!early) return api("GET", path);
  delete window.tcEarly[path];
  return early.then(async ({ answer, error }) => {
    if (error) throw error;
    const data = await answer.json().catch(() => null);
    if (!answer.ok) {
      const failure = data && data.error ? data.error : { code: "generic", reason: answer.statusText };
      throw new ApiFailure(answer.status, failure.code, failure.reason);
    }
    return data;
  });
}

function statementText(code) {
  const found = state.library.statements.find((s) => s.code === code);
  return found ? (lang === "zh" ? found.text_zh : found.text_en) : code;
}

function criticalText(code) {
  const found = state.library.criticals.find((c) => c.code === code);
  return found ? (lang === "zh" ? found.text_zh : found.text_en) : code;
}

// ------------------------------------------------------------------ routing

const VIEWS = ["list", "reading", "criticals"];

// One view on screen ("list", "reading", "criticals"), its tab marked (none for a reading).
function showView(view) {
  state.view = view;
  if (view !== "reading") stopLive();
  for (const name of VIEWS) $(`${name}-view`).hidden = name !== view;
  for (const button of $("tabs").children) {
    const current = button.dataset.tab === view;
    button.toggleAttribute("aria-current", current);
    if (current) button.setAttribute("aria-current", "page");
  }
}

async function route() {
  $("error").hidden = true;
  const [hash, arg] = location.hash.replace(/^#/, "").split("/");
  const view = hash === "reading" && !arg ? "list" : VIEWS.includes(hash) ? hash : "list";
  showView(view);
  try {
    if (view === "reading") await openReading(decodeURIComponent(arg));
    else if (view === "criticals") await loadRegister();
    else await loadList();
  } catch (error) {
    fail(error);
  }
  document.body.dataset.ready = "true";
}

// ------------------------------------------------------------------ the worklist

function criticalBadge(codes) {
  if (!codes.length) return null;
  const badge = el("span", { className: "badge-critical" });
  badge.textContent = codes.map(criticalText).join(" · ");
  return badge;
}

function cell(label, ...children) {
  return el("td", { "data-label": label }, ...children);
}

function text(value) {
  return document.createTextNode(value);
}

async function loadList() {
  const params = new URLSearchParams({ limit: String(PAGE), offset: String(state.offset) });
  if ($("f-clinic").value.trim()) params.set("clinic", $("f-clinic").value.trim());
  if ($("f-state").value) params.set("state", $("f-state").value);
  if ($("f-reader").value.trim()) params.set("reader", $("f-reader").value.trim());
  const page = await api("GET", `/readings?${params}`);
  const rows = page.items.map((item) => {
    const open = () => { location.hash = `#reading/${encodeURIComponent(item.id)}`; };
    const openButton = el("button", { type: "button", className: "primary", dataset: { open: item.id }, onclick: open });
    openButton.textContent = t("open");
    const buttons = el("span", { className: "row-actions" }, openButton);
    if (isReader() && item.state === "new") buttons.append(stepButton(item.id, "claim", true));
    if (item.claimant === state.me.username && ["claimed", "draft"].includes(item.state)) {
      buttons.append(stepButton(item.id, "release", false));
    }
    const stateBadge = el("span", { className: `state state-${item.state}` });
    stateBadge.textContent = t(`state.${item.state}`) + (item.claimant && item.state !== "signed" ? ` · ${item.claimant}` : "");
    const stat = item.stat ? el("span", { className: "badge-stat" }) : null;
    if (stat) stat.textContent = t("stat");
    const tr = el(
      "tr",
      { dataset: { id: item.id, state: item.state }, className: item.critical.length ? "critical" : "" },
      cell(t("colPatient"), text(item.patient || "—")),
      cell(t("colClinic"), text(item.clinic)),
      cell(t("colTime"), text(when(item.received_at))),
      cell(t("colStatements"), text(item.top_statements.slice(0, 3).map(statementText).join("；") || "—")),
      cell(t("colState"), stateBadge, stat),
      cell(t("colCritical"), criticalBadge(item.critical)),
      cell("", buttons),
    );
    tr.addEventListener("dblclick", open);
    return tr;
  });
  if (!rows.length) {
    const td = el("td", { colspan: "7" });
    td.textContent = t("empty");
    rows.push(el("tr", {}, td));
  }
  $("rows").replaceChildren(...rows);
  const to = Math.min(page.total, state.offset + page.items.length);
  $("page-info").textContent = t("pageInfo", { from: page.total ? state.offset + 1 : 0, to, total: page.total });
  $("prev").disabled = state.offset === 0;
  $("next").disabled = to >= page.total;
}

// A claim or release from the worklist; a claim opens the reading.
function stepButton(id, event, openAfter) {
  const button = el("button", { type: "button", dataset: { event, id } });
  button.textContent = t(`event.${event}`);
  button.addEventListener("click", async () => {
    try {
      await api("POST", `/readings/${encodeURIComponent(id)}/${event}`, {});
      if (openAfter) location.hash = `#reading/${encodeURIComponent(id)}`;
      else await loadList();
    } catch (error) {
      fail(error);
      await loadList().catch(() => {});
    }
  });
  return button;
}

// ------------------------------------------------------------------ one reading

function fact(list, key, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = el("dt");
  dt.textContent = t(`fact.${key}`);
  const dd = el("dd");
  dd.textContent = value;
  list.push(dt, dd);
}

// Once the next frame is on screen (at most 200 ms: a hidden tab draws no frames).
function afterPaint() {
  return new Promise((resolve) => {
    const done = setTimeout(resolve, 200);
    requestAnimationFrame(() => setTimeout(() => { clearTimeout(done); resolve(); }, 0));
  });
}

// Each opening of a reading is a turn; an answer of an older turn (the reader moved on,
// or took a step, while it was on its way) is dropped.
const stale = (turn) => state.view !== "reading" || turn !== state.turn;

async function openReading(id) {
  state.turn += 1;
  const turn = state.turn;
  // Another task's ECG is asked for with the task, not after it.
  const fresh = !state.ecg || state.ecg.reading !== id;
  if (fresh) state.startS = 0;
  const window_ = fresh ? askEcg(id) : null;
  window_?.catch(() => {}); // its failure is loadEcg's to handle, even if the task fails first
  const task = await apiGet(`/readings/${encodeURIComponent(id)}`);
  if (stale(turn)) return;
  state.task = task;
  $("r-title").textContent = `${task.patient || "—"} · ${task.clinic}`;
  $("r-state").textContent = t(`state.${task.state}`);
  $("r-state").dataset.state = task.state;
  $("r-critical").hidden = !task.critical.length;
  $("r-critical").textContent = task.critical.map(criticalText).join(" · ");
  const facts = [];
  fact(facts, "patient", task.patient);
  fact(facts, "clinic", task.clinic);
  fact(facts, "centre", task.centre);
  fact(facts, "received", when(task.received_at));
  fact(facts, "source", task.stream || task.record);
  fact(facts, "claimant", task.claimant);
  fact(facts, "signer", task.signer ? `${task.signer} · ${when(task.signed_at)}` : null);
  fact(facts, "reason", task.reason);
  $("r-facts").replaceChildren(...facts);
  renderActions(task);
  renderTaskCriticals(task);
  if (window_) {
    await loadEcg(turn, window_);
    await afterPaint(); // the paper on screen first, then the report and the median beat
  }
  await loadReport(task, turn);
  if (state.ecg && !stale(turn)) beats.render(state.ecg, editable()); // a claim makes them editable
  if (!stale(turn)) await median.show(state.ecg ? task.id : null, editable());
  if (!stale(turn)) await previous.show(task);
}

function renderActions(task) {
  const actions = [];
  for (const event of task.allowed) {
    if (!["claim", "release", "amend"].includes(event)) continue;
    const button = el("button", { type: "button", dataset: { event }, className: event === "claim" ? "primary" : "" });
    button.textContent = t(`event.${event}`);
    button.addEventListener("click", () => takeStep(event, {}));
    actions.push(button);
  }
  if (task.version > 0) {
    const base = `/api/v1/readings/${encodeURIComponent(task.id)}`;
    const pdf = el("a", { id: "pdf-link", className: "button", href: `${base}/report.pdf`, target: "_blank" });
    pdf.textContent = t("downloadPdf");
    const dcm = el("a", { id: "dcm-link", className: "button", href: `${base}/report.dcm` });
    dcm.textContent = t("downloadDicom");
    actions.push(pdf, dcm);
  }
  $("r-actions").replaceChildren(...actions);
}

async function takeStep(event, body) {
  const id = state.task.id;
  try {
    const answer = await api("POST", `/readings/${encodeURIComponent(id)}/${event}`, body);
    if (event === "sign") return answer;
    if (event === "return") say(t("returned"));
    await openReading(id);
    return answer;
  } catch (error) {
    fail(error);
    if (error instanceof ApiFailure && error.code === "reading_changed") await openReading(id);
    return null;
  }
}

// ------------------------------------------------------------------ the paper

// The window of task ``id`` from ``startS`` in ``band`` (by default the reader's
// choices: from state.startS, in the band chosen).
function askEcg(id, startS = state.startS, band = $("band").value || "diagnostic") {
  const params = new URLSearchParams({ start_s: String(startS), duration_s: String(WINDOW_S), band });
  return apiGet(`/readings/${encodeURIComponent(id)}/ecg?${params}`);
}

// Paging through a long record (a Holter's 24 h is 8640 windows): the next SCROLL_AHEAD
// windows the way the reader goes are asked for before they are needed and kept (the
// last SCROLL_KEPT), so that a press draws at once, in the press's own task; only the
// window last asked for is drawn (an earlier press's late answer is kept, never drawn
// over it). Drawn there, not at an animation frame: in a frame, Chromium's software
// compositing rasterises the trace inside the frame (10-50 ms, the frame dropped). The
// engine's findings, the beats' labels and the corrected measurements are the same in
// every window and edited in place on the one shown: a kept window takes them from it.
const SCROLL_AHEAD = 3;
const SCROLL_KEPT = 32;
const scrolling = { windows: new Map() };

function scrollBy(stepS) {
  const task = state.task;
  const lastS = state.ecg ? Math.max(0, Math.ceil(state.ecg.total_s / WINDOW_S) - 1) * WINDOW_S : Infinity;
  const wanted = Math.min(Math.max(0, state.startS + stepS), lastS);
  const band = $("band").value || "diagnostic";
  const turn = state.turn;
  state.startS = wanted;
  const windowAt = (startS) => {
    const key = `${task.id} ${band} ${startS}`;
    let asked = scrolling.windows.get(key);
    if (!asked) {
      asked = askEcg(task.id, startS, band);
      scrolling.windows.set(key, asked);
      asked.catch(() => scrolling.windows.get(key) === asked && scrolling.windows.delete(key));
      if (scrolling.windows.size > SCROLL_KEPT) scrolling.windows.delete(scrolling.windows.keys().next().value);
    }
    return asked;
  };
  const shown = windowAt(wanted);
  for (let n = 1; n <= SCROLL_AHEAD; n += 1) {
    const ahead = wanted + Math.sign(stepS) * n * WINDOW_S;
    if (ahead >= 0 && ahead <= lastS) windowAt(ahead).catch(() => {});
  }
  const current = () => !stale(turn) && state.startS === wanted && ($("band").value || "diagnostic") === band;
  shown.then(
    (ecg) => current() && showEcg(withFindings(ecg)),
    (error) => current() && fail(error),
  );
}

// A kept window with the findings of the window on screen (a copy: kept ones stay as asked).
function withFindings(ecg) {
  const shown = state.ecg;
  if (!shown || shown.reading !== ecg.reading) return { ...ecg };
  const { beats, beat_labels, beat_counts, measurements, statements, critical } = shown;
  return { ...ecg, beats, beat_labels, beat_counts, measurements, statements, critical };
}

// Show the ECG window (``asked``: the answer of askEcg already on its way, else asked
// for now); a task without a stored record yet is watched live.
async function loadEcg(turn = state.turn, asked = null) {
  const task = state.task;
  let ecg;
  try {
    ecg = await (asked || askEcg(task.id));
  } catch (error) {
    if (stale(turn)) return;
    if (error instanceof ApiFailure && error.code === "no_signal") {
      state.ecg = null;
      $("no-signal").hidden = Boolean(task.stream);
      $("paper-box").hidden = true;
      $("controls").hidden = true;
      renderEngine(null);
      if (task.stream) await watchLive(task, turn);
      return;
    }
    throw error;
  }
  if (stale(turn)) return;
  showEcg(ecg);
}

function showEcg(ecg) {
  stopLive();
  const shown = state.ecg;
  state.ecg = ecg;
  $("no-signal").hidden = true;
  $("paper-box").hidden = false;
  $("controls").hidden = false;
  const leads = state.ecg.leads;
  if ($("lead").options.length !== leads.length) {
    $("lead").replaceChildren(...leads.map((name) => option(name, name)));
    $("lead").value = leads.includes("V2") ? "V2" : leads[0];
  }
  const total = state.ecg.total_s;
  const from = state.ecg.start_s;
  $("window-info").textContent = t("windowInfo", {
    from: from.toFixed(1), to: (from + state.ecg.duration_s).toFixed(1), total: total.toFixed(1),
  }); // prettier-ignore
  $("earlier").disabled = from <= 0;
  $("later").disabled = from + state.ecg.duration_s >= total - 1e-6;
  drawPaper();
  // The next window of a record scrolled through: the same findings, already on the page.
  if (!shown || shown.measurements !== ecg.measurements || shown.statements !== ecg.statements) renderEngine(ecg);
}

// Watch the task's stream live until it ends, then draw its stored record.
async function watchLive(task, turn) {
  if (state.live && state.live.stream === task.stream) return;
  stopLive();
  if (state.ended.has(task.stream)) {
    $("no-signal").hidden = false; // ended, and still no record: do not watch again
    return;
  }
  let token;
  try {
    token = (await api("POST", "/rooms/ecg-worklist/token")).token;
  } catch (error) {
    $("no-signal").hidden = false; // no live viewing here: the link to the viewer stays
    return;
  }
  if (stale(turn)) return;
  $("live").hidden = false;
  const elements = {
    panel: $("live"), paper: $("live-paper"), grid: $("live-grid"), trace: $("live-trace"),
    hr: $("live-hr"), flags: $("live-flags"), patient: $("live-patient"), mode: $("live-mode"),
  }; // prettier-ignore
  state.liveCounters = {};
  const live = new TaskStream(task.stream, { token, elements, t, lang, counters: state.liveCounters });
  live.addEventListener("ended", () => {
    if (state.live !== live) return;
    state.ended.add(live.stream);
    stopLive();
    loadEcg().catch(fail);
  });
  state.live = live;
  live.start();
}

function stopLive() {
  if (!state.live) return;
  state.live.stop();
  state.live = null;
  $("live").hidden = true;
}

// The paper in the reader's choices; on a phone in portrait the rhythm strip and one
// lead at a time, at least 10 px per mm (the box scrolls sideways).
function drawPaper() {
  if (!state.ecg) return;
  const portrait = isPortrait();
  $("layout-label").hidden = portrait;
  $("lead-label").hidden = !portrait;
  const speed = Number($("speed").value);
  const box = $("paper-box").clientWidth || 800;
  const fit = box / (WINDOW_S * 25 + 12);
  paper.show(state.ecg, {
    layout: portrait ? "one" : $("layout").value,
    lead: $("lead").value,
    gainMmPerMv: Number($("gain").value),
    speedMmPerS: speed,
    pxPerMm: portrait ? PORTRAIT_PX_PER_MM : Math.max(3, fit),
  });
  $("paper").dataset.layout = paper.view.layout;
  beats.render(state.ecg, editable());
  previous.refresh(); // the comparison keeps the page's scale
}

function number(value, unit) {
  if (value === null || value === undefined) return "—";
  return `${Math.round(value)} ${t(`unit.${unit}`)}`;
}

function renderEngine(ecg) {
  const list = [];
  const m = ecg && ecg.measurements;
  if (m) {
    for (const [key, unit] of MEASURES) {
      const dt = el("dt");
      dt.textContent = t(`m.${key}`, { formula: m.qtc_formula });
      const dd = el("dd", { dataset: { measure: key } });
      dd.textContent = number(m[key], unit);
      list.push(dt, dd);
    }
  } else if (ecg) {
    const dd = el("dd");
    dd.textContent = t("notMeasured");
    list.push(dd);
  }
  $("measurements").replaceChildren(...list);
  const proposed = ecg ? ecg.statements : [];
  $("proposed").replaceChildren(
    ...proposed.map((s) => {
      const chip = el("li", { className: `chip severity-${s.severity}`, dataset: { code: s.code } });
      chip.textContent = lang === "zh" ? s.text_zh : s.text_en;
      // The evidence that produced it (measurements and thresholds), on hover.
      chip.title = evidenceText(s.evidence || {});
      return chip;
    }),
  );
  if (!proposed.length) {
    const li = el("li", { className: "muted" });
    li.textContent = t("noneProposed");
    $("proposed").append(li);
  }
  $("use-proposed").hidden = !(proposed.length && editable());
}

// "pr_ms 246, pr_max_ms 200": numbers whole, words as they are.
function evidenceText(evidence) {
  return Object.entries(evidence)
    .map(([key, value]) => `${key} ${typeof value === "number" ? Math.round(value) : value ?? "—"}`)
    .join(", ");
}

// ------------------------------------------------------------------ the report

const editable = () => state.task && state.task.allowed.includes("edit");

// The task whose report the reader changed in the editor since it was last saved: a
// reload of that task (a step, a critical value marked, a live notice) keeps the
// changes on screen rather than the older draft the server has.
let unsaved = null;
const touched = () => { unsaved = state.task.id; };

async function loadReport(task, turn) {
  const found = await api("GET", `/readings/${encodeURIComponent(task.id)}/report`);
  if (stale(turn)) return;
  const draft = found.draft;
  const canEdit = editable();
  $("editor").hidden = !canEdit;
  $("use-proposed").hidden = !(canEdit && state.ecg && state.ecg.statements.length);
  if (!canEdit || unsaved !== task.id) unsaved = null;
  if (canEdit) {
    if (!unsaved) {
      const latest = found.versions[found.versions.length - 1];
      const source = draft || (latest ? latest.document.report : null);
      state.chosen = source ? [...source.statements] : [];
      $("r-text").value = source ? source.text : "";
      $("sign-totp").value = "";
    }
    $("sign-form").hidden = !task.allowed.includes("sign");
    $("return-form").hidden = !task.allowed.includes("return");
    renderChosen();
  }
  $("signed").hidden = !found.versions.length;
  $("versions").replaceChildren(
    ...found.versions.map((v) => {
      const head = el("strong");
      head.textContent = t("version", { n: v.version });
      const body = el("div");
      const report = v.document.report;
      body.textContent = [report.statements.map(statementText).join("；"), report.text].filter(Boolean).join("\n");
      const sig = el("div", { className: "sig" });
      sig.textContent = t("signedBy", { who: v.signer, when: when(v.signed_at), key: v.signature.key_fingerprint });
      return el("div", { className: "version" }, head, body, sig);
    }),
  );
}

function renderChosen() {
  const chips = state.chosen.map((code, index) => {
    const label = statementText(code);
    const remove = el("button", { type: "button", className: "chip-remove", "aria-label": t("remove", { what: label }) });
    remove.textContent = "×";
    remove.addEventListener("click", () => {
      state.chosen.splice(index, 1);
      touched();
      renderChosen();
    });
    const chip = el("li", { className: "chip", dataset: { code } }, text(label), remove);
    return chip;
  });
  if (!chips.length) {
    const li = el("li", { className: "muted" });
    li.textContent = t("noStatements");
    chips.push(li);
  }
  $("chosen").replaceChildren(...chips);
}

function addStatement(code) {
  if (!state.chosen.includes(code)) state.chosen.push(code);
  touched();
  renderChosen();
  $("st-search").value = "";
  $("st-results").replaceChildren();
  $("st-search").focus();
}

// The library filtered by code, English or Chinese text (case-insensitive).
function search() {
  const query = $("st-search").value.trim().toLowerCase();
  if (!query) {
    $("st-results").replaceChildren();
    return;
  }
  const found = state.library.statements
    .filter((s) => [s.code, s.text_en, s.text_zh].some((x) => x.toLowerCase().includes(query)))
    .slice(0, 8);
  $("st-results").replaceChildren(
    ...found.map((s) => {
      const button = el("button", { type: "button", dataset: { code: s.code } });
      button.textContent = `${lang === "zh" ? s.text_zh : s.text_en} · ${lang === "zh" ? s.text_en : s.text_zh} (${s.code})`;
      button.addEventListener("click", () => addStatement(s.code));
      return el("li", {}, button);
    }),
  );
}

async function saveReport() {
  await api("PUT", `/readings/${encodeURIComponent(state.task.id)}/report`, {
    statements: state.chosen,
    text: $("r-text").value,
  });
  unsaved = null;
}

async function save() {
  try {
    await saveReport();
    say(t("saved"));
    await openReading(state.task.id);
  } catch (error) {
    fail(error);
  }
}

// Sign (the draft saved first), then open the next waiting ECG: the reader moves on
// without going back to the list.
async function sign(event) {
  event.preventDefault();
  try {
    await saveReport();
  } catch (error) {
    fail(error);
    return;
  }
  const signed = await takeStep("sign", { totp: $("sign-totp").value.trim() });
  if (!signed) return;
  const waiting = await api("GET", "/readings?state=new&limit=1");
  const next = waiting.items[0];
  if (next) {
    location.hash = `#reading/${encodeURIComponent(next.id)}`;
    say(t("signedNext"));
  } else {
    location.hash = "#list";
    say(t("signedNone"));
  }
}

function returnTask(event) {
  event.preventDefault();
  takeStep("return", { reason: $("return-reason").value.trim() });
}

// ------------------------------------------------------------------ critical values

function criticalItem(c, withAck) {
  const line = el("span");
  const level = c.level ? ` · ${t("escalated", { level: t(`level.${c.level}`) })}` : "";
  line.textContent = t("criticalLine", { what: criticalText(c.code), state: t(`cstate.${c.state}`), when: when(c.detected_at) }) + level;
  const sub = el("span", { className: "sub" });
  const ack = c.acknowledged_by ? ` · ${t("colAcknowledged")}: ${t("ackBy", { who: c.acknowledged_by, when: when(c.acknowledged_at) })} · “${c.read_back}”` : "";
  sub.textContent = `${t("colTold")}: ${c.notified.join(", ") || "—"} · ${c.raised_by || t("byEngine")}${ack}`;
  const li = el("li", { dataset: { critical: c.id, state: c.state } }, line, sub);
  if (withAck) li.append(ackForm(c));
  return li;
}

function renderTaskCriticals(task) {
  const items = task.criticals.map((c) => criticalItem(c, mayAcknowledge(c)));
  if (!items.length) {
    const li = el("li", { className: "muted" });
    li.textContent = t("noCriticals");
    items.push(li);
  }
  $("r-crit-list").replaceChildren(...items);
  const mayMark = task.parties.includes("reader") || task.parties.includes("coordinator");
  $("mark-form").hidden = !mayMark;
  if (mayMark && !$("mark-code").options.length) {
    $("mark-code").replaceChildren(...state.library.criticals.map((c) => option(c.code, criticalText(c.code))));
  }
}

async function markCritical(event) {
  event.preventDefault();
  const code = $("mark-code").value;
  try {
    await api("POST", `/readings/${encodeURIComponent(state.task.id)}/criticals`, { code });
    say(t("marked", { what: criticalText(code) }));
    await openReading(state.task.id);
  } catch (error) {
    fail(error);
  }
}

const mayAcknowledge = (c) => ACKNOWLEDGEABLE.has(c.state) && c.notified.includes(state.me.username);

function ackForm(c) {
  const input = el("input", { required: "", maxlength: "500", placeholder: t("readBack"), "aria-label": t("readBack") });
  const button = el("button", { type: "submit", className: "primary" });
  button.textContent = t("acknowledge");
  const form = el("form", { className: "row ack-form", dataset: { critical: c.id } }, input, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("POST", `/criticals/${encodeURIComponent(c.id)}/acknowledge`, { read_back: input.value.trim() });
      say(t("acknowledged"));
      if (state.view === "reading") await openReading(state.task.id);
      else await loadRegister();
      refreshCounter();
    } catch (error) {
      fail(error);
    }
  });
  return form;
}

async function loadRegister() {
  const page = await api("GET", "/criticals?limit=100");
  const rows = page.items.map((c) => {
    const state_ = el("span", { className: `state cstate-${c.state}` });
    state_.textContent = t(`cstate.${c.state}`) + (c.level ? ` · ${t(`level.${c.level}`)}` : "");
    const link = el("a", { href: `#reading/${encodeURIComponent(c.reading)}` });
    link.textContent = criticalText(c.code);
    const acked = c.acknowledged_by ? t("ackBy", { who: c.acknowledged_by, when: when(c.acknowledged_at) }) : "—";
    const readBack = mayAcknowledge(c) ? ackForm(c) : text(c.read_back || "—");
    return el(
      "tr",
      { dataset: { critical: c.id, state: c.state }, className: c.state === "acknowledged" ? "" : "critical" },
      cell(t("colPatient"), text(c.patient || "—")),
      cell(t("colClinic"), text(c.clinic)),
      cell(t("colFinding"), link),
      cell(t("colDetected"), text(when(c.detected_at))),
      cell(t("colState"), state_),
      cell(t("colTold"), text(c.notified.join(", ") || "—")),
      cell(t("colAcknowledged"), text(acked)),
      cell(t("colReadBack"), readBack),
    );
  });
  if (!rows.length) {
    const td = el("td", { colspan: "8" });
    td.textContent = t("empty");
    rows.push(el("tr", {}, td));
  }
  $("register-rows").replaceChildren(...rows);
}

// The badge: critical values the caller was told of and has not acknowledged.
async function refreshCounter() {
  try {
    const page = await api("GET", "/criticals?state=notified&state=escalated&limit=500");
    const mine = page.items.filter(mayAcknowledge).length;
    $("notices").textContent = String(mine);
    $("notices").hidden = mine === 0;
  } catch {
    // The next notice or round tries again.
  }
}

// ------------------------------------------------------------------ live notices

function onNotice(message) {
  if (!/^(critical|reading)\./.test(message.topic)) return;
  const key = `notice.${message.topic}`;
  const code = message.data.code ? criticalText(message.data.code) : "";
  const what = (STRINGS[lang] || STRINGS.en)[key] ? t(key, { code }) : t("notice.other");
  const item = el("li", { dataset: { topic: message.topic } });
  const link = el("a", { href: message.topic.startsWith("critical") ? "#criticals" : `#reading/${encodeURIComponent(message.data.reading || "")}` });
  link.textContent = `${message.time.slice(11, 19)} ${what}`;
  item.append(link);
  $("notice-list").prepend(item);
  $("notice-list").hidden = false;
  say(what);
  desktopNotice(t("noticeTitle"), what);
  refreshCounter();
  const reloads = { list: loadList, criticals: loadRegister, reading: () => (state.task ? openReading(state.task.id) : null) };
  Promise.resolve(reloads[state.view]?.()).catch(fail);
}

// ------------------------------------------------------------------ start

async function load() {
  translate();
  $("f-state").replaceChildren(option("", t("allStates")), ...STATES.map((s) => option(s, t(`state.${s}`))));
  $("band").replaceChildren(...BANDS.map((b) => option(b, t(`band.${b}`))));
  try {
    state.me = await apiGet("/me");
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 401) {
      $("signed-out").hidden = false;
      $("tabs").hidden = true;
      $("login-link").href = `/static/login.html?next=${encodeURIComponent(location.pathname + location.search + location.hash)}`;
      document.body.dataset.ready = "true";
      return;
    }
    throw error;
  }
  $("who").textContent = `${state.me.display_name} (${state.me.institution || "—"})`;
  state.library = await apiGet("/ecg/library"); // asked for with /me: on its way already
  for (const button of $("tabs").children) {
    button.addEventListener("click", () => { location.hash = `#${button.dataset.tab}`; });
  }
  $("filter").addEventListener("submit", (event) => { event.preventDefault(); state.offset = 0; loadList().catch(fail); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadList().catch(fail); });
  $("next").addEventListener("click", () => { state.offset += PAGE; loadList().catch(fail); });
  $("back").addEventListener("click", () => { location.hash = "#list"; });
  for (const id of ["layout", "gain", "speed", "lead"]) $(id).addEventListener("change", drawPaper);
  $("band").addEventListener("change", () => loadEcg().catch(fail));
  $("live-mode").addEventListener("click", () => state.live && state.live.toggleMode());
  $("earlier").addEventListener("click", () => scrollBy(-WINDOW_S));
  $("later").addEventListener("click", () => scrollBy(WINDOW_S));
  $("use-proposed").addEventListener("click", () => {
    for (const s of state.ecg.statements) if (!state.chosen.includes(s.code)) state.chosen.push(s.code);
    touched();
    renderChosen();
  });
  $("st-search").addEventListener("input", search);
  $("r-text").addEventListener("input", touched);
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const first = $("st-results").querySelector("button");
    if (first) addStatement(first.dataset.code);
  });
  $("save").addEventListener("click", save);
  $("sign-form").addEventListener("submit", sign);
  $("return-form").addEventListener("submit", returnTask);
  $("mark-form").addEventListener("submit", markCritical);
  window.addEventListener("hashchange", route);
  let resized = null;
  window.addEventListener("resize", () => {
    clearTimeout(resized);
    resized = setTimeout(drawPaper, 100);
  });
  const ask = $("enable-notices");
  ask.hidden = !("Notification" in window && Notification.permission === "default");
  ask.addEventListener("click", () => Notification.requestPermission().then(() => { ask.hidden = true; }));
  await route();
  window.tcEarly = null; // an answer not taken by the first opening is not fresh any more
  // Live notices and the badge once the first view is shown: their requests do not
  // compete with the first view's on the server.
  listenForNotices(onNotice);
  refreshCounter();
  setInterval(refreshCounter, 30_000);
}

load().catch(fail);
