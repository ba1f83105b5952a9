// The auditor's page: search the audit trail (GET /api/v1/audit) by actor, action,
// patient, consult and time, newest first, older pages on demand. Every search is
// itself on the trail.

import { api, showError } from "/static/auth.js";
import { pickLanguage } from "/static/i18n.js";

const STRINGS = {
  en: {
    title: "Audit trail", home: "Home", actor: "Actor", action: "Action", patient: "Patient",
    consult: "Consult", since: "From (UTC)", until: "To (UTC)", search: "Search",
    time: "Time (UTC)", target: "Target", institution: "Institution", room: "Room",
    older: "Older", none: "No row matches.",
  },
  zh: {
    title: "审计日志", home: "首页", actor: "操作者", action: "操作", patient: "患者",
    consult: "会诊", since: "起始（UTC）", until: "截止（UTC）", search: "查询",
    time: "时间（UTC）", target: "对象", institution: "机构", room: "会诊室",
    older: "更早", none: "没有匹配的记录。",
  },
};
const lang = pickLanguage(new URLSearchParams(location.search).get("lang"), navigator.language);
const t = (key) => (STRINGS[lang] || STRINGS.en)[key] ?? STRINGS.en[key] ?? key;
const $ = (id) => document.getElementById(id);

document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
for (const el of document.querySelectorAll("[data-a]")) el.textContent = t(el.dataset.a);

const state = { before: null, rows: [] };
window.audit = state;

function query() {
  const params = new URLSearchParams();
  for (const name of ["actor", "action", "patient", "consult"]) {
    const value = $(`f-${name}`).value.trim();
    if (value) params.set(name, value);
  }
  for (const name of ["since", "until"]) {
    const value = $(`f-${name}`).value;
    if (value) params.set(name, `${value}:00Z`);
  }
  params.set("limit", "100");
  return params;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function load(more) {
  $("audit-error").hidden = true;
  const params = query();
  if (more && state.before) params.set("before", String(state.before));
  try {
    const page = await api("GET", `/audit?${params}`);
    if (!more) {
      state.rows = [];
      $("rows").replaceChildren();
    }
    for (const r of page.items) {
      const tr = document.createElement("tr");
      tr.dataset.action = r.action;
      tr.append(
        ...[r.seq, r.time.replace("T", " ").replace("Z", ""), r.actor, r.action, r.target,
          r.institution, r.patient, r.consult, r.room].map((x) => cell(String(x))),
      );
      $("rows").append(tr);
    }
    state.rows.push(...page.items);
    state.before = page.next_before;
    $("older").hidden = page.next_before === null;
    if (!state.rows.length) {
      const tr = document.createElement("tr");
      const td = cell(t("none"));
      td.colSpan = 9;
      tr.append(td);
      $("rows").append(tr);
    }
  } catch (error) {
    showError($("audit-error"), error);
  }
  document.body.dataset.ready = "true";
}

$("audit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  load(false);
});
$("older").addEventListener("click", () => load(true));
load(false);
