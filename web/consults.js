// The consult pages of each role: the clinic doctor's requests and the new-request form,
// the coordinator's untriaged and overdue queues, the expert's assigned consults, one
// consult (material, steps, opinion editor, signing, PDF), the referrals received and
// the supervision dashboard. Everything goes through /api/v1 with the session cookie;
// text is set with textContent, never HTML. Strings in Chinese and English are here,
// the language is i18n.js's choice (navigator.language or ?lang=zh|en).

import { api, ApiFailure } from "/static/auth.js";
import { desktopNotice, listenForNotices } from "/static/notices.js";
import { pickLanguage } from "/static/i18n.js";

const STRINGS = {
  en: {
    noticeTitle: "teleconsult",
    noticeOf: "{what}: consult {consult}",
    "notice.consult.submit": "A new request in the queue",
    "notice.consult.assign": "A consult assigned to you",
    "notice.consult.accept": "Your request was accepted",
    "notice.consult.decline": "Your request was declined",
    "notice.consult.schedule": "A consult was scheduled",
    "notice.consult.sign": "An opinion was signed",
    "notice.consult.escalate": "A request is overdue",
    "notice.consult.due_soon": "A request's deadline is near",
    "notice.consult.starting": "A consult is about to start",
    "notice.consult.waiting": "Someone is waiting in the consult room",
    "notice.critical.raised": "Critical ECG finding",
    "notice.critical.escalate": "A critical ECG finding is not acknowledged",
    "notice.other": "Something needs you",
    enableNotices: "Desktop notices",
    home: "Home",
    title: "Consults",
    logIn: "Log in to see your consults.",
    signedInAs: "{name}",
    search: "Patient, record number, specialty",
    filter: "Filter",
    prev: "Previous",
    next: "Next",
    pageInfo: "{from}–{to} of {total}",
    empty: "Nothing here.",
    allStates: "All states",
    "tab.mine": "My requests",
    "tab.clinic": "Clinic requests",
    "tab.new": "New request",
    "tab.untriaged": "To triage",
    "tab.overdue": "Overdue",
    "tab.assigned": "My consults",
    "tab.referrals": "Referrals received",
    "tab.stats": "Statistics",
    patient: "Patient",
    patientName: "Name",
    sex: "Sex",
    birthDate: "Date of birth",
    recordNumber: "Record number",
    nationalId: "National id (optional)",
    request: "Request",
    reason: "Reason",
    purpose: "Purpose",
    summary: "Case summary",
    specialty: "Specialty",
    titleWanted: "Title wanted (optional)",
    priority: "Priority",
    mode: "Mode",
    consent: "Informed consent",
    consentKind: "How",
    recordedBy: "Recorded by",
    consentTime: "When",
    witness: "Witness (verbal consent)",
    attachments: "Attachments",
    send: "Send request",
    sent: "Request sent.",
    back: "Back",
    experts: "Experts (usernames, the first signs)",
    start: "Start",
    totp: "One-time code",
    close: "Close",
    upload: "Upload",
    uploaded: "Attached {name}.",
    opinion: "Opinion",
    ecg: "ECG",
    streamId: "Stream id",
    attachStream: "Attach ECG",
    streamLine: "{id} · {start} · {state} · {samples} samples",
    chat: "Chat in the room",
    noChat: "Nothing was said in the room.",
    findings: "Findings",
    diagnosis: "Diagnosis",
    recommendations: "Recommendations",
    referralAdvice: "Referral advice",
    saveDraft: "Save draft",
    draftSaved: "Draft saved.",
    signedOpinion: "Signed opinion",
    downloadPdf: "Download PDF",
    fhir: "FHIR",
    version: "Version {n}",
    signedBy: "Signed by {who} at {when} · key {key}",
    cosignedBy: "Co-signed by {who} at {when} · key {key}",
    remark: "Your remark (optional)",
    cosign: "Co-sign",
    cosigned: "Co-signed.",
    joinRoom: "Join the consult room",
    refer: "Refer the patient",
    institutionCode: "Institution code",
    department: "Department",
    findSlots: "Find slots",
    slot: "Appointment slot",
    sendReferral: "Send referral",
    referred: "Referral sent.",
    noSlots: "No free slot.",
    since: "From",
    until: "To",
    show: "Show",
    csv: "CSV",
    chartCounts: "Consults by outcome",
    chartTurnaround: "Hours from request (median, 90th percentile)",
    due: "due {when}",
    overdue: "overdue",
    starts: "starts {when}",
    "fact.state": "State",
    "fact.priority": "Priority",
    "fact.mode": "Mode",
    "fact.patient": "Patient",
    "fact.nationalId": "National id",
    "fact.clinic": "Clinic",
    "fact.centre": "Centre",
    "fact.requester": "Requested by",
    "fact.experts": "Experts",
    "fact.reason": "Reason",
    "fact.purpose": "Purpose",
    "fact.summary": "Case summary",
    "fact.specialty": "Specialty",
    "fact.consent": "Consent",
    "fact.due": "Accept by",
    "fact.scheduled": "Scheduled",
    "fact.lastReason": "Reason given",
    "state.draft": "Draft",
    "state.submitted": "Submitted",
    "state.assigned": "Assigned",
    "state.accepted": "Accepted",
    "state.declined": "Declined",
    "state.scheduled": "Scheduled",
    "state.in_consult": "In consult",
    "state.reporting": "Reporting",
    "state.reported": "Signed",
    "state.closed": "Closed",
    "state.cancelled": "Cancelled",
    "state.expired": "Expired",
    "event.submit": "Submit",
    "event.assign": "Assign",
    "event.accept": "Accept",
    "event.decline": "Decline",
    "event.schedule": "Schedule",
    "event.start": "Start consult",
    "event.review": "Review material",
    "event.finish": "Finish consult",
    "event.sign": "Sign opinion",
    "event.close": "Acknowledge",
    "event.cancel": "Cancel request",
    "referral.accept": "Accept",
    "referral.decline": "Decline",
    "referral.arrive": "Patient arrived",
    "referral.refer_back": "Refer back",
    "referral.cancel": "Cancel",
    "rstate.requested": "Requested",
    "rstate.accepted": "Accepted",
    "rstate.declined": "Declined",
    "rstate.arrived": "Arrived",
    "rstate.referred_back": "Referred back",
    "rstate.cancelled": "Cancelled",
    "priority.routine": "Routine",
    "priority.urgent": "Urgent",
    "priority.emergency": "Emergency",
    "mode.realtime": "Real-time",
    "mode.async": "Asynchronous",
    "sex.male": "Male",
    "sex.female": "Female",
    "sex.unknown": "Unknown",
    "consent.written": "Written (signed form)",
    "consent.verbal": "Verbal (witnessed)",
    "by.clinic": "By clinic",
    "by.centre": "By centre",
    "by.level": "By level",
    "by.specialty": "By specialty",
    "by.month": "By month",
    "by.day": "By day",
    "series.total": "Requests",
    "series.accepted": "Accepted",
    "series.signed": "Signed",
    "series.declined": "Declined",
    "series.cancelled": "Cancelled",
    "series.expired": "Expired",
    "series.accept_median": "Accepted, median",
    "series.accept_p90": "Accepted, p90",
    "series.sign_median": "Signed, median",
    "series.sign_p90": "Signed, p90",
    "series.ecg_received": "ECGs received",
    "series.ecg_signed": "Reports signed",
    "series.ecg_returned": "Returned",
    "series.ecg_pending": "Waiting",
    "series.criticals": "Critical values",
    "series.acknowledged": "Acknowledged",
    "series.ecg_sign_median": "Report, median",
    "series.ecg_sign_p90": "Report, p90",
    "series.ack_median": "Acknowledged, median",
    "series.ack_p90": "Acknowledged, p90",
    chartEcg: "ECG centre: ECGs and critical values",
    chartEcgTimes: "ECG centre: minutes to the signed report and to the critical value's acknowledgement (median, 90th percentile)",
    promptReason: "Reason",
    promptSummary: "Discharge summary",
    "error.transition_not_allowed": "This step is not possible now: {reason}",
    "error.forbidden": "You may not do this: {reason}",
    "error.not_found": "Not found.",
    "error.totp_required": "Enter the current one-time code from your authenticator app.",
    "error.opinion_signed": "The opinion is signed and cannot change.",
    "error.consult_changed": "Someone changed this consult meanwhile: it was reloaded.",
    "error.attachment_too_large": "The file is too large.",
    "error.unsupported_attachment": "This file type is not accepted (PDF, PNG, JPEG, DICOM, WFDB).",
    "error.slot_taken": "This slot was just taken.",
    "error.session_invalid": "You are not logged in, or your session has expired.",
    "error.generic": "The server refused: {reason}",
  },
  zh: {
    noticeTitle: "远程会诊",
    noticeOf: "{what}：会诊 {consult}",
    "notice.consult.submit": "队列中有新的会诊申请",
    "notice.consult.assign": "有会诊分配给您",
    "notice.consult.accept": "您的申请已被接受",
    "notice.consult.decline": "您的申请被拒绝",
    "notice.consult.schedule": "会诊已排期",
    "notice.consult.sign": "会诊意见已签署",
    "notice.consult.escalate": "有申请已超时",
    "notice.consult.due_soon": "有申请即将到期",
    "notice.consult.starting": "会诊即将开始",
    "notice.consult.waiting": "有人在会诊室等候",
    "notice.critical.raised": "心电危急值",
    "notice.critical.escalate": "心电危急值尚未确认",
    "notice.other": "有事项需要您处理",
    enableNotices: "桌面通知",
    home: "首页",
    title: "远程会诊",
    logIn: "请登录查看您的会诊。",
    signedInAs: "{name}",
    search: "患者、病历号、专科",
    filter: "筛选",
    prev: "上一页",
    next: "下一页",
    pageInfo: "第 {from}–{to} 条，共 {total} 条",
    empty: "暂无记录。",
    allStates: "全部状态",
    "tab.mine": "我的申请",
    "tab.clinic": "本院申请",
    "tab.new": "新建申请",
    "tab.untriaged": "待分诊",
    "tab.overdue": "已超时",
    "tab.assigned": "我的会诊",
    "tab.referrals": "收到的转诊",
    "tab.stats": "统计",
    patient: "患者",
    patientName: "姓名",
    sex: "性别",
    birthDate: "出生日期",
    recordNumber: "病历号",
    nationalId: "身份证号（可选）",
    request: "会诊申请",
    reason: "事由",
    purpose: "目的",
    summary: "病历摘要",
    specialty: "专科",
    titleWanted: "所需职称（可选）",
    priority: "紧急程度",
    mode: "会诊方式",
    consent: "知情同意",
    consentKind: "方式",
    recordedBy: "记录人",
    consentTime: "时间",
    witness: "见证人（口头同意）",
    attachments: "附件",
    send: "提交申请",
    sent: "申请已提交。",
    back: "返回",
    experts: "专家（用户名，第一位签署意见）",
    start: "开始时间",
    totp: "动态验证码",
    close: "关闭",
    upload: "上传",
    uploaded: "已添加 {name}。",
    opinion: "会诊意见",
    ecg: "心电图",
    streamId: "心电图编号",
    attachStream: "关联心电图",
    streamLine: "{id} · {start} · {state} · {samples} 个采样",
    chat: "会诊室聊天记录",
    noChat: "会诊室里没有聊天记录。",
    findings: "所见",
    diagnosis: "诊断",
    recommendations: "建议",
    referralAdvice: "转诊建议",
    saveDraft: "保存草稿",
    draftSaved: "草稿已保存。",
    signedOpinion: "已签署的会诊意见",
    downloadPdf: "下载 PDF",
    fhir: "FHIR",
    version: "第 {n} 版",
    signedBy: "{who} 于 {when} 签署 · 公钥 {key}",
    cosignedBy: "{who} 于 {when} 会签 · 公钥 {key}",
    remark: "会签意见（可选）",
    cosign: "会签",
    cosigned: "已会签。",
    joinRoom: "进入会诊室",
    refer: "转诊",
    institutionCode: "机构编码",
    department: "科室",
    findSlots: "查找号源",
    slot: "预约号源",
    sendReferral: "提交转诊",
    referred: "转诊已提交。",
    noSlots: "暂无空闲号源。",
    since: "起",
    until: "止",
    show: "查看",
    csv: "导出 CSV",
    chartCounts: "会诊结果统计",
    chartTurnaround: "自申请起的小时数（中位数、第 90 百分位）",
    due: "{when} 前接受",
    overdue: "已超时",
    starts: "{when} 开始",
    "fact.state": "状态",
    "fact.priority": "紧急程度",
    "fact.mode": "会诊方式",
    "fact.patient": "患者",
    "fact.nationalId": "身份证号",
    "fact.clinic": "申请机构",
    "fact.centre": "会诊中心",
    "fact.requester": "申请医生",
    "fact.experts": "会诊专家",
    "fact.reason": "事由",
    "fact.purpose": "目的",
    "fact.summary": "病历摘要",
    "fact.specialty": "专科",
    "fact.consent": "知情同意",
    "fact.due": "接受时限",
    "fact.scheduled": "预约时间",
    "fact.lastReason": "理由",
    "state.draft": "草稿",
    "state.submitted": "已提交",
    "state.assigned": "已分派",
    "state.accepted": "已接受",
    "state.declined": "已拒绝",
    "state.scheduled": "已预约",
    "state.in_consult": "会诊中",
    "state.reporting": "撰写意见",
    "state.reported": "已签署",
    "state.closed": "已完成",
    "state.cancelled": "已取消",
    "state.expired": "已过期",
    "event.submit": "提交",
    "event.assign": "分派专家",
    "event.accept": "接受",
    "event.decline": "拒绝",
    "event.schedule": "预约",
    "event.start": "开始会诊",
    "event.review": "审阅资料",
    "event.finish": "结束会诊",
    "event.sign": "签署意见",
    "event.close": "确认收到",
    "event.cancel": "取消申请",
    "referral.accept": "接收",
    "referral.decline": "拒绝",
    "referral.arrive": "患者已到",
    "referral.refer_back": "回转",
    "referral.cancel": "取消",
    "rstate.requested": "待接收",
    "rstate.accepted": "已接收",
    "rstate.declined": "已拒绝",
    "rstate.arrived": "已到院",
    "rstate.referred_back": "已回转",
    "rstate.cancelled": "已取消",
    "priority.routine": "普通",
    "priority.urgent": "紧急",
    "priority.emergency": "急诊",
    "mode.realtime": "实时会诊",
    "mode.async": "非实时会诊",
    "sex.male": "男",
    "sex.female": "女",
    "sex.unknown": "未知",
    "consent.written": "书面（签字同意书）",
    "consent.verbal": "口头（有见证人）",
    "by.clinic": "按申请机构",
    "by.centre": "按会诊中心",
    "by.level": "按机构级别",
    "by.specialty": "按专科",
    "by.month": "按月",
    "by.day": "按日",
    "series.total": "申请",
    "series.accepted": "接受",
    "series.signed": "签署",
    "series.declined": "拒绝",
    "series.cancelled": "取消",
    "series.expired": "过期",
    "series.accept_median": "接受（中位数）",
    "series.accept_p90": "接受（P90）",
    "series.sign_median": "签署（中位数）",
    "series.sign_p90": "签署（P90）",
    "series.ecg_received": "收到心电图",
    "series.ecg_signed": "已签报告",
    "series.ecg_returned": "退回重做",
    "series.ecg_pending": "待诊断",
    "series.criticals": "危急值",
    "series.acknowledged": "已确认",
    "series.ecg_sign_median": "出报告（中位数）",
    "series.ecg_sign_p90": "出报告（P90）",
    "series.ack_median": "危急值确认（中位数）",
    "series.ack_p90": "危急值确认（P90）",
    chartEcg: "心电中心：心电图与危急值",
    chartEcgTimes: "心电中心：至签发报告、至危急值确认的分钟数（中位数、第 90 百分位）",
    promptReason: "理由",
    promptSummary: "出院小结",
    "error.transition_not_allowed": "当前无法进行此操作：{reason}",
    "error.forbidden": "您无权进行此操作：{reason}",
    "error.not_found": "未找到。",
    "error.totp_required": "请输入身份验证器中当前的动态验证码。",
    "error.opinion_signed": "意见已签署，不能修改。",
    "error.consult_changed": "会诊已被他人更新，已重新加载。",
    "error.attachment_too_large": "文件过大。",
    "error.unsupported_attachment": "不支持此文件类型（PDF、PNG、JPEG、DICOM、WFDB）。",
    "error.slot_taken": "该号源刚被占用。",
    "error.session_invalid": "您尚未登录或登录已过期。",
    "error.generic": "服务器拒绝：{reason}",
  },
};

export const lang = pickLanguage(new URLSearchParams(location.search).get("lang"), navigator.language);

export function t(key, values = {}) {
  const table = STRINGS[lang] || STRINGS.en;
  const text = table[key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

const $ = (id) => document.getElementById(id);
const STATES = ["submitted", "assigned", "accepted", "declined", "scheduled", "in_consult",
  "reporting", "reported", "closed", "cancelled", "expired"];
const NEEDS = { assign: ["experts"], decline: ["reason"], cancel: ["reason"], schedule: ["start"], sign: ["totp"] };
const DRAFTING = new Set(["accepted", "scheduled", "in_consult", "reporting"]);
const PAGE = 20;
const TYPES = { dcm: "application/dicom", hea: "text/x-wfdb-header", pdf: "application/pdf",
  png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg" };
const COLORS = ["#1f6fd1", "#27ae60", "#8e44ad", "#e67e22", "#95a5a6", "#c0392b"];

const state = { me: null, queue: null, offset: 0, consult: null, pendingEvent: null, notices: [] };
window.tcConsults = state;

function translate() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-c]")) el.textContent = t(el.dataset.c);
  for (const el of document.querySelectorAll("[data-cp]")) el.placeholder = t(el.dataset.cp);
}

function say(text) {
  $("error").hidden = true;
  $("notice").textContent = text;
  $("notice").hidden = false;
}

function fail(error) {
  $("notice").hidden = true;
  let text;
  if (error instanceof ApiFailure) {
    const key = `error.${error.code}`;
    text = t(key, { reason: error.reason });
    if (text === key) text = t("error.generic", { reason: error.reason });
  } else {
    text = t("error.generic", { reason: String(error) });
  }
  $("error").textContent = text;
  $("error").hidden = false;
}

function option(value, label) {
  const el = document.createElement("option");
  el.value = value;
  el.textContent = label;
  return el;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "—";
}

function utcOf(localValue) {
  return localValue ? new Date(localValue).toISOString() : null;
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

// Attachments go as the raw body with their type (api() of auth.js sends JSON only).
async function upload(consultId, file) {
  const ext = (file.name.split(".").pop() || "").toLowerCase();
  const type = file.type || TYPES[ext] || "application/octet-stream";
  const answer = await fetch(
    `/api/v1/consults/${encodeURIComponent(consultId)}/attachments?name=${encodeURIComponent(file.name)}`,
    {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": type, "x-csrf-token": cookie("tc_csrf") || "", accept: "application/json" },
      body: file,
    },
  );
  const data = await answer.json().catch(() => null);
  if (!answer.ok) {
    const error = data && data.error ? data.error : { code: "generic", reason: answer.statusText };
    throw new ApiFailure(answer.status, error.code, error.reason);
  }
  return data;
}

// Tabs by role.
function tabsFor(roles) {
  const tabs = [];
  if (roles.includes("doctor")) tabs.push("mine", "clinic", "new");
  if (roles.includes("coordinator")) tabs.push("untriaged", "overdue");
  if (roles.includes("expert")) tabs.push("assigned");
  if (roles.some((r) => ["doctor", "expert", "coordinator"].includes(r))) tabs.push("referrals");
  if (roles.some((r) => ["coordinator", "auditor", "admin"].includes(r))) tabs.push("stats");
  return tabs;
}

function showOnly(view) {
  for (const id of ["list-view", "new-view", "consult-view", "referrals-view", "stats-view"]) {
    $(id).hidden = id !== view;
  }
}

function markTab(name) {
  for (const button of $("tabs").children) {
    if (button.dataset.tab === name) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
}

async function route() {
  $("error").hidden = true;
  const [view, arg] = location.hash.replace(/^#/, "").split("/");
  const tabs = tabsFor(state.me.roles);
  try {
    if (view === "consult" && arg) {
      markTab("");
      await openConsult(decodeURIComponent(arg));
    } else if (view === "new") {
      markTab("new");
      showOnly("new-view");
    } else if (view === "referrals") {
      markTab("referrals");
      await openReferrals();
    } else if (view === "stats") {
      markTab("stats");
      showOnly("stats-view");
      await loadStats();
    } else {
      const queue = tabs.includes(view) ? view : tabs.find((name) => !["new", "referrals", "stats"].includes(name));
      if (!queue) {
        if (tabs.includes("stats")) location.hash = "#stats";
        return;
      }
      if (queue !== state.queue) state.offset = 0;
      state.queue = queue;
      markTab(queue);
      showOnly("list-view");
      await loadList();
    }
  } catch (error) {
    fail(error);
  }
  document.body.dataset.ready = "true";
}

// Worklists
async function loadList() {
  const params = new URLSearchParams({ queue: state.queue, limit: String(PAGE), offset: String(state.offset) });
  const search = $("search").value.trim();
  if (search) params.set("search", search);
  if ($("state-filter").value) params.set("state", $("state-filter").value);
  const page = await api("GET", `/consults?${params}`);
  const items = page.items.map((item) => {
    const li = document.createElement("li");
    li.tabIndex = 0;
    li.dataset.id = item.id;
    if (item.overdue) li.classList.add("overdue");
    const name = document.createElement("strong");
    name.textContent = `${item.patient_name} · ${item.specialty}`;
    const badge = document.createElement("span");
    badge.className = `state prio-${item.priority}`;
    badge.textContent = `${t(`priority.${item.priority}`)} · ${t(`state.${item.state}`)}`;
    const sub = document.createElement("span");
    sub.className = "sub";
    const timing = item.overdue
      ? t("overdue")
      : item.accept_due
        ? t("due", { when: when(item.accept_due) })
        : item.scheduled_start
          ? t("starts", { when: when(item.scheduled_start) })
          : when(item.created_at);
    sub.textContent = `${item.record_number} · ${item.clinic} → ${item.centre} · ${timing}`;
    li.append(name, badge, sub);
    const open = () => { location.hash = `#consult/${encodeURIComponent(item.id)}`; };
    li.addEventListener("click", open);
    li.addEventListener("keydown", (event) => { if (event.key === "Enter") open(); });
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.textContent = t("empty");
    items.push(li);
  }
  $("items").replaceChildren(...items);
  const to = Math.min(page.total, state.offset + page.items.length);
  $("page-info").textContent = t("pageInfo", { from: page.total ? state.offset + 1 : 0, to, total: page.total });
  $("prev").disabled = state.offset === 0;
  $("next").disabled = to >= page.total;
}

// A new request
async function sendRequest(event) {
  event.preventDefault();
  const value = (id) => $(id).value.trim();
  const body = {
    patient: {
      name: value("p-name"),
      sex: $("p-sex").value,
      birth_date: $("p-birth").value,
      record_number: value("p-record"),
      national_id: value("p-nid") || null,
    },
    reason: value("r-reason"),
    purpose: value("r-purpose"),
    summary: value("r-summary"),
    specialty: value("r-specialty"),
    title_wanted: value("r-title") || null,
    priority: $("r-priority").value,
    mode: $("r-mode").value,
    consent: {
      kind: $("c-kind").value,
      recorded_by: value("c-by"),
      time: utcOf($("c-time").value),
      witness: value("c-witness") || null,
    },
  };
  try {
    const made = await api("POST", "/consults", body);
    for (const file of $("n-files").files) await upload(made.id, file);
    $("new-form").reset();
    say(t("sent"));
    location.hash = `#consult/${encodeURIComponent(made.id)}`;
  } catch (error) {
    fail(error);
  }
}

// One consult
function fact(list, key, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt");
  dt.textContent = t(`fact.${key}`);
  const dd = document.createElement("dd");
  dd.textContent = value;
  list.push(dt, dd);
}

async function openConsult(id) {
  showOnly("consult-view");
  const consult = await api("GET", `/consults/${encodeURIComponent(id)}`);
  state.consult = consult;
  $("step-form").hidden = true;
  $("c-title").textContent = `${consult.patient.name} · ${consult.specialty}`;
  $("c-state").textContent = t(`state.${consult.state}`);
  const facts = [];
  const p = consult.patient;
  fact(facts, "state", t(`state.${consult.state}`));
  fact(facts, "priority", t(`priority.${consult.priority}`));
  fact(facts, "mode", t(`mode.${consult.mode}`));
  fact(facts, "patient", `${p.name} · ${t(`sex.${p.sex}`)} · ${p.birth_date} · ${p.record_number}`);
  fact(facts, "nationalId", p.national_id_masked);
  fact(facts, "clinic", consult.clinic);
  fact(facts, "centre", consult.centre);
  fact(facts, "requester", consult.requester);
  fact(facts, "experts", consult.experts.join(", "));
  fact(facts, "reason", consult.reason);
  fact(facts, "purpose", consult.purpose);
  fact(facts, "summary", consult.summary);
  fact(facts, "consent", `${t(`consent.${consult.consent.kind}`)} · ${consult.consent.recorded_by} · ${when(consult.consent.time)}`);
  fact(facts, "due", consult.accept_due ? `${when(consult.accept_due)}${consult.overdue ? ` (${t("overdue")})` : ""}` : null);
  fact(facts, "scheduled", consult.scheduled_start ? when(consult.scheduled_start) : null);
  fact(facts, "lastReason", consult.last_reason);
  $("c-facts").replaceChildren(...facts);
  const actions = consult.allowed.map((name) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.event = name;
    button.textContent = t(`event.${name}`);
    if (name === "cancel" || name === "decline") button.className = "danger";
    button.addEventListener("click", () => beginStep(name));
    return button;
  });
  const inRoom = consult.mode === "realtime" && ["scheduled", "in_consult"].includes(consult.state);
  if (inRoom && consult.parties.length) {
    const join = document.createElement("button");
    join.type = "button";
    join.id = "c-join";
    join.className = "primary";
    join.textContent = t("joinRoom");
    join.addEventListener("click", () => joinRoom(consult.id));
    actions.push(join);
  }
  $("c-actions").replaceChildren(...actions);
  $("refer").hidden = !(["reported", "closed"].includes(consult.state) && consult.parties.length
    && state.me.roles.some((r) => r === "doctor" || r === "expert"));
  $("refer-form").hidden = true;
  await Promise.all([
    loadAttachments(consult.id),
    loadStreams(consult.id),
    loadChat(consult.id),
    loadOpinion(consult),
  ]);
}

async function joinRoom(id) {
  try {
    const answer = await api("POST", `/rooms/${encodeURIComponent(`consult-${id}`)}/token`);
    location.assign(`${answer.join_path}?token=${encodeURIComponent(answer.token)}`);
  } catch (error) {
    fail(error);
  }
}

function beginStep(name) {
  const needs = NEEDS[name] || [];
  if (!needs.length) {
    takeStep(name, {});
    return;
  }
  state.pendingEvent = name;
  for (const field of ["experts", "reason", "start", "totp"]) {
    $(`step-${field}-label`).hidden = !needs.includes(field);
    $(`step-${field}`).required = needs.includes(field);
    $(`step-${field}`).value = "";
  }
  $("step-go").textContent = t(`event.${name}`);
  $("step-form").hidden = false;
  $(`step-${needs[0]}`).focus();
}

async function takeStep(name, body) {
  try {
    await api("POST", `/consults/${encodeURIComponent(state.consult.id)}/${name}`, body);
    $("step-form").hidden = true;
    await openConsult(state.consult.id);
  } catch (error) {
    fail(error);
    if (error instanceof ApiFailure && error.code === "consult_changed") await openConsult(state.consult.id);
  }
}

function submitStep(event) {
  event.preventDefault();
  const name = state.pendingEvent;
  const body = {};
  if (name === "assign") body.experts = $("step-experts").value.split(/[\s,，]+/).filter(Boolean);
  if (name === "decline" || name === "cancel") body.reason = $("step-reason").value.trim();
  if (name === "schedule") body.start = utcOf($("step-start").value);
  if (name === "sign") body.totp = $("step-totp").value.trim();
  takeStep(name, body);
}

async function loadAttachments(id) {
  const found = await api("GET", `/consults/${encodeURIComponent(id)}/attachments`);
  $("c-attachments").replaceChildren(
    ...found.map((a) => {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = `/api/v1/consults/${encodeURIComponent(id)}/attachments/${encodeURIComponent(a.id)}`;
      link.textContent = a.name;
      const meta = document.createElement("span");
      meta.className = "sub";
      meta.textContent = ` ${a.media_type} · ${Math.ceil(a.size_bytes / 1024)} KiB · ${a.uploaded_by}`;
      li.append(link, meta);
      return li;
    }),
  );
  $("attach-form").hidden = !state.consult.parties.length;
}

async function loadStreams(id) {
  const found = await api("GET", `/consults/${encodeURIComponent(id)}/streams`);
  $("c-streams").replaceChildren(
    ...found.map((x) => {
      const li = document.createElement("li");
      li.textContent = t("streamLine", { id: x.id, start: when(x.started_at), state: x.state, samples: x.samples });
      return li;
    }),
  );
  $("stream-form").hidden = !state.consult.parties.length;
}

// The chat said in the consult's room: part of its record, oldest first.
async function loadChat(id) {
  const found = await api("GET", `/consults/${encodeURIComponent(id)}/chat`);
  const lines = found.lines.map((line) => {
    const li = document.createElement("li");
    const who = document.createElement("strong");
    who.textContent = line.name;
    const time = document.createElement("time");
    time.dateTime = line.time;
    time.textContent = ` ${when(line.time)} `;
    const text = document.createElement("span");
    text.textContent = line.text;
    li.append(who, time, text);
    return li;
  });
  if (!lines.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = t("noChat");
    lines.push(li);
  }
  $("c-chat").replaceChildren(...lines);
}

async function attachStream(event) {
  event.preventDefault();
  try {
    await api("POST", `/consults/${encodeURIComponent(state.consult.id)}/streams`, { stream: $("stream-id").value.trim() });
    $("stream-form").reset();
    await loadStreams(state.consult.id);
  } catch (error) {
    fail(error);
  }
}

async function findSlots(event) {
  event.preventDefault();
  const params = new URLSearchParams({ institution: $("refer-institution").value.trim() });
  if ($("refer-department").value.trim()) params.set("department", $("refer-department").value.trim());
  try {
    const slots = (await api("GET", `/referral-slots?${params}`)).filter((x) => !x.taken);
    $("refer-slot").replaceChildren(
      ...slots.map((x) => option(x.id, `${x.department} · ${when(x.start)} – ${when(x.end)}`)),
    );
    $("refer-form").hidden = !slots.length;
    if (!slots.length) say(t("noSlots"));
  } catch (error) {
    fail(error);
  }
}

async function sendReferral(event) {
  event.preventDefault();
  try {
    await api("POST", "/referrals", {
      slot: $("refer-slot").value,
      reason: $("refer-reason").value.trim(),
      consult: state.consult.id,
    });
    $("refer-form").reset();
    $("refer-form").hidden = true;
    say(t("referred"));
  } catch (error) {
    fail(error);
  }
}

async function loadOpinion(consult) {
  const opinion = await api("GET", `/consults/${encodeURIComponent(consult.id)}/opinion`);
  const lead = consult.parties.includes("lead_expert");
  const editable = lead && DRAFTING.has(consult.state) && !opinion.versions.length;
  $("editor").hidden = !editable;
  // The fields are filled from the draft when the consult is opened, not again when it
  // reloads after a step: what the expert typed meanwhile stays.
  const fresh = state.opinionFor !== consult.id;
  state.opinionFor = consult.id;
  if (editable && fresh) {
    const draft = opinion.draft || {};
    $("o-findings").value = draft.findings || "";
    $("o-diagnosis").value = draft.diagnosis || "";
    $("o-recommendations").value = draft.recommendations || "";
    $("o-referral").value = draft.referral_advice || "";
  }
  $("signed").hidden = !opinion.versions.length;
  $("versions").replaceChildren(
    ...opinion.versions.map((v) => {
      const box = document.createElement("div");
      box.className = "version";
      const head = document.createElement("strong");
      head.textContent = t("version", { n: v.version });
      const text = document.createElement("div");
      const o = v.document.opinion;
      text.textContent = [
        `${t("findings")}: ${o.findings}`,
        `${t("diagnosis")}: ${o.diagnosis}`,
        `${t("recommendations")}: ${o.recommendations}`,
        o.referral_advice ? `${t("referralAdvice")}: ${o.referral_advice}` : "",
      ].filter(Boolean).join("\n");
      const sig = document.createElement("div");
      sig.className = "sig";
      sig.textContent = t("signedBy", { who: v.signer, when: when(v.signed_at), key: v.signature.key_fingerprint });
      box.append(head, text, sig);
      for (const c of opinion.cosignatures.filter((c) => c.version === v.version)) {
        const line = document.createElement("div");
        line.className = "sig";
        line.textContent = t("cosignedBy", { who: c.signer, when: when(c.signed_at), key: c.signature.key_fingerprint })
          + (c.comment ? ` — ${c.comment}` : "");
        box.append(line);
      }
      return box;
    }),
  );
  const latest = opinion.versions[opinion.versions.length - 1];
  $("cosign-form").hidden = !(
    latest
    && consult.parties.includes("expert")
    && latest.signer !== state.me.username
    && !opinion.cosignatures.some((c) => c.signer === state.me.username && c.version === latest.version)
  );
  $("pdf-link").href = `/api/v1/consults/${encodeURIComponent(consult.id)}/opinion.pdf`;
  $("fhir-link").href = `/api/v1/consults/${encodeURIComponent(consult.id)}/fhir`;
}

async function cosign(event) {
  event.preventDefault();
  try {
    await api("POST", `/consults/${encodeURIComponent(state.consult.id)}/opinion/cosign`, {
      totp: $("cosign-totp").value.trim(),
      comment: $("cosign-comment").value,
    });
    $("cosign-form").reset();
    say(t("cosigned"));
    await loadOpinion(state.consult);
  } catch (error) {
    fail(error);
  }
}

async function saveDraft(event) {
  event.preventDefault();
  try {
    await api("PUT", `/consults/${encodeURIComponent(state.consult.id)}/opinion`, {
      findings: $("o-findings").value,
      diagnosis: $("o-diagnosis").value,
      recommendations: $("o-recommendations").value,
      referral_advice: $("o-referral").value,
    });
    say(t("draftSaved"));
  } catch (error) {
    fail(error);
  }
}

async function attach(event) {
  event.preventDefault();
  const file = $("attach-file").files[0];
  if (!file) return;
  try {
    await upload(state.consult.id, file);
    $("attach-form").reset();
    say(t("uploaded", { name: file.name }));
    await loadAttachments(state.consult.id);
  } catch (error) {
    fail(error);
  }
}

// Referrals received
const REFERRAL_EVENTS = {
  requested: ["accept", "decline"],
  accepted: ["arrive", "cancel"],
  arrived: ["refer_back"],
};

async function openReferrals() {
  showOnly("referrals-view");
  const page = await api("GET", "/referrals?direction=incoming&limit=100");
  const items = page.items.map((r) => {
    const li = document.createElement("li");
    const head = document.createElement("strong");
    head.textContent = `${r.from_institution} → ${r.to_institution}/${r.to_department}`;
    const badge = document.createElement("span");
    badge.className = "state";
    badge.textContent = t(`rstate.${r.state}`);
    const sub = document.createElement("span");
    sub.className = "sub";
    sub.textContent = `${r.reason} · ${when(r.created_at)}`;
    const buttons = document.createElement("span");
    for (const name of REFERRAL_EVENTS[r.state] || []) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = t(`referral.${name}`);
      button.addEventListener("click", () => referralStep(r.id, name));
      buttons.append(button);
    }
    li.append(head, badge, sub, buttons);
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.textContent = t("empty");
    items.push(li);
  }
  $("referrals").replaceChildren(...items);
}

async function referralStep(id, name) {
  const body = {};
  if (name === "decline" || name === "cancel") body.reason = prompt(t("promptReason")) || "";
  if (name === "refer_back") body.summary = prompt(t("promptSummary")) || "";
  try {
    await api("POST", `/referrals/${encodeURIComponent(id)}/${name}`, body);
    await openReferrals();
  } catch (error) {
    fail(error);
  }
}

// Statistics: two bar charts drawn as SVG.
const SVG = "http://www.w3.org/2000/svg";

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

function barChart(svg, groups, series, valueOf) {
  const width = 520;
  const rowH = 18 * series.length + 14;
  const left = 110;
  const height = Math.max(40, groups.length * rowH + 10);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const max = Math.max(1, ...groups.flatMap((g) => series.map((s) => valueOf(g, s) || 0)));
  const children = [];
  groups.forEach((group, gi) => {
    const y0 = 8 + gi * rowH;
    children.push(svgEl("text", { x: 4, y: y0 + 14, "font-size": 12 }, group.key));
    series.forEach((s, si) => {
      const value = valueOf(group, s);
      const w = value ? ((width - left - 60) * value) / max : 0;
      const y = y0 + si * 18;
      children.push(svgEl("rect", { x: left, y, width: Math.max(w, 0.5), height: 14, fill: COLORS[si % COLORS.length] }));
      children.push(svgEl("text", { x: left + w + 4, y: y + 11, "font-size": 11 }, value === null || value === undefined ? "—" : String(Math.round(value * 10) / 10)));
    });
  });
  svg.setAttribute("aria-label", series.map((s) => t(`series.${s}`)).join(", "));
  svg.replaceChildren(...children);
}

function legend(el, series) {
  el.replaceChildren(
    ...series.map((s, i) => {
      const span = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = COLORS[i % COLORS.length];
      span.append(swatch, t(`series.${s}`));
      return span;
    }),
  );
}

function statsParams() {
  const params = new URLSearchParams({ by: $("s-by").value });
  if ($("s-since").value) params.set("since", new Date(`${$("s-since").value}T00:00:00`).toISOString());
  if ($("s-until").value) params.set("until", new Date(`${$("s-until").value}T23:59:59`).toISOString());
  return params;
}

async function loadStats(event) {
  if (event) event.preventDefault();
  const params = statsParams();
  $("csv-link").href = `/api/v1/stats/consults/csv?${params}`;
  try {
    const stats = await api("GET", `/stats/consults?${params}`);
    const counts = ["total", "accepted", "signed", "declined", "cancelled", "expired"];
    barChart($("chart-counts"), stats.groups, counts, (g, s) => g[s]);
    const times = ["accept_median", "accept_p90", "sign_median", "sign_p90"];
    const hours = (g, s) => {
      const value = g[s.replace("median", "median_s").replace("p90", "p90_s")];
      return value === null ? null : value / 3600;
    };
    barChart($("chart-times"), stats.groups, times, hours);
    legend($("legend"), counts);
    legend($("legend-times"), times);
  } catch (error) {
    fail(error);
  }
  await loadEcgStats(params);
}

// The ECG centre's figures beside the consults' (same period; grouped the same way where
// readings have that grouping, else by clinic).
const ECG_GROUPS = ["clinic", "centre", "reader", "month", "day"];

async function loadEcgStats(consultParams) {
  const params = new URLSearchParams(consultParams);
  if (!ECG_GROUPS.includes(params.get("by"))) params.set("by", "clinic");
  $("ecg-csv-link").href = `/api/v1/stats/readings/csv?${params}`;
  try {
    const stats = await api("GET", `/stats/readings?${params}`);
    const field = { ecg_received: "received", ecg_signed: "signed", ecg_returned: "returned", ecg_pending: "pending", criticals: "criticals", acknowledged: "acknowledged" };
    const counts = Object.keys(field);
    barChart($("chart-ecg"), stats.groups, counts, (g, s) => g[field[s]]);
    const seconds = { ecg_sign_median: "sign_median_s", ecg_sign_p90: "sign_p90_s", ack_median: "ack_median_s", ack_p90: "ack_p90_s" };
    const times = Object.keys(seconds);
    barChart($("chart-ecg-times"), stats.groups, times, (g, s) => (g[seconds[s]] === null ? null : g[seconds[s]] / 60));
    legend($("legend-ecg"), counts);
    legend($("legend-ecg-times"), times);
  } catch (error) {
    fail(error);
  }
}

// Counters: what waits for the caller, refreshed every 30 s.
async function refreshCounter() {
  const roles = state.me.roles;
  const queue = roles.includes("coordinator") ? "overdue" : roles.includes("expert") ? "assigned" : null;
  if (!queue) return;
  try {
    const params = new URLSearchParams({ queue, limit: "1" });
    if (queue === "assigned") params.set("state", "assigned");
    const page = await api("GET", `/consults?${params}`);
    $("notices").textContent = String(page.total);
    $("notices").hidden = page.total === 0;
  } catch {
    // The next round tries again.
  }
}

function fillSelects() {
  $("state-filter").replaceChildren(option("", t("allStates")), ...STATES.map((s) => option(s, t(`state.${s}`))));
  $("p-sex").replaceChildren(...["male", "female", "unknown"].map((s) => option(s, t(`sex.${s}`))));
  $("r-priority").replaceChildren(...["routine", "urgent", "emergency"].map((s) => option(s, t(`priority.${s}`))));
  $("r-mode").replaceChildren(...["realtime", "async"].map((s) => option(s, t(`mode.${s}`))));
  $("c-kind").replaceChildren(...["written", "verbal"].map((s) => option(s, t(`consent.${s}`))));
  $("s-by").replaceChildren(...["clinic", "centre", "level", "specialty", "month", "day"].map((s) => option(s, t(`by.${s}`))));
}

async function load() {
  translate();
  fillSelects();
  try {
    state.me = await api("GET", "/me");
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 401) {
      $("signed-out").hidden = false;
      $("login-link").href = `/static/login.html?next=${encodeURIComponent(location.pathname + location.search + location.hash)}`;
      document.body.dataset.ready = "true";
      return;
    }
    throw error;
  }
  $("who").textContent = t("signedInAs", { name: `${state.me.display_name} (${state.me.institution || "—"})` });
  $("c-by").value = state.me.username;
  $("tabs").replaceChildren(
    ...tabsFor(state.me.roles).map((name) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.tab = name;
      button.textContent = t(`tab.${name}`);
      button.addEventListener("click", () => { location.hash = `#${name}`; });
      return button;
    }),
  );
  $("filter").addEventListener("submit", (event) => { event.preventDefault(); state.offset = 0; loadList().catch(fail); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadList().catch(fail); });
  $("next").addEventListener("click", () => { state.offset += PAGE; loadList().catch(fail); });
  $("new-form").addEventListener("submit", sendRequest);
  $("back").addEventListener("click", () => history.back());
  $("step-form").addEventListener("submit", submitStep);
  $("step-cancel").addEventListener("click", () => { $("step-form").hidden = true; });
  $("opinion-form").addEventListener("submit", saveDraft);
  $("cosign-form").addEventListener("submit", cosign);
  $("attach-form").addEventListener("submit", attach);
  $("stream-form").addEventListener("submit", attachStream);
  $("slots-form").addEventListener("submit", findSlots);
  $("refer-form").addEventListener("submit", sendReferral);
  $("stats-form").addEventListener("submit", loadStats);
  window.addEventListener("hashchange", route);
  refreshCounter();
  setInterval(refreshCounter, 30_000);
  listenForNotices(onNotice);
  if ("Notification" in window && Notification.permission === "default") {
    $("enable-notices").hidden = false;
    $("enable-notices").addEventListener("click", () => {
      Notification.requestPermission().then(() => { $("enable-notices").hidden = true; });
    });
  }
  await route();
}

// A live notice: the counter now, a line in the list, the page's status line, and the
// browser's notification where allowed.
function onNotice(message) {
  const key = `notice.${message.topic}`;
  const what = (STRINGS[lang] || STRINGS.en)[key] ? t(key) : t("notice.other");
  const id = message.data.consult || message.data.reading || "";
  const text = t("noticeOf", { what, consult: id });
  state.notices.unshift({ topic: message.topic, id, time: message.time, text });
  const item = document.createElement("li");
  item.dataset.topic = message.topic;
  if (message.data.consult) {
    const link = document.createElement("a");
    link.href = `#consult/${encodeURIComponent(message.data.consult)}`;
    link.textContent = `${message.time.slice(11, 19)} ${text}`;
    item.append(link);
  } else {
    item.textContent = `${message.time.slice(11, 19)} ${text}`;
  }
  $("notice-list").prepend(item);
  if (!$("list-view").hidden) loadList().catch(fail); // the worklist the notice changed
  $("notice-list").hidden = false;
  $("notice").textContent = text;
  $("notice").hidden = false;
  desktopNotice(t("noticeTitle"), text);
  refreshCounter();
}

load().catch(fail);
