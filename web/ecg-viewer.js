// The live ECG viewer (GET /ecg?token=...): lists the streams the token grants and
// draws the chosen one on ECG paper (web/ecg-paper.js: 25 mm/s, 10 mm/mV, the printed
// 12-lead layout and a rhythm strip).
//
// window.ecg exposes counters for tests (beatsReceived, beatsDrawn, samplesDrawn,
// frames, drawMs: the drawing work of the last frames, ms, hr).

import { EcgPaper, FLAG_STRINGS, flagItems } from "/static/ecg-paper.js";

const STRINGS = {
  en: {
    title: "Live ECG", streams: "Live streams", none: "No stream you may open.",
    hr: "HR", bpm: "bpm", open: "connected", closed: "disconnected", ended: "ended",
    live: "live", finalised: "finalised", logIn: "Log in", notoken: "Log in to see the ECGs you may read, or open this page with ?token=...",
    lead: "lead", patient: "Patient", ...FLAG_STRINGS.en,
  },
  zh: {
    title: "实时心电", streams: "实时心电流", none: "没有可查看的心电流。",
    hr: "心率", bpm: "次/分", open: "已连接", closed: "已断开", ended: "已结束",
    live: "实时", finalised: "已完成", logIn: "登录", notoken: "请登录后查看您有权阅读的心电图，或使用 ?token=... 打开此页面",
    lead: "导联", patient: "患者", ...FLAG_STRINGS.zh,
  },
};

const params = new URLSearchParams(location.search);
const lang = (params.get("lang") || navigator.language || "en").toLowerCase().startsWith("zh")
  ? "zh" : "en";
const t = (key) => STRINGS[lang][key] ?? key;

const $ = (id) => document.getElementById(id);
// lists: how many stream lists have arrived (tests wait for the next one)
const state = { streams: [], lists: 0, current: null, info: null, flags: [], provisional: [], lang };
window.ecg = state;

document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);

// ------------------------------------------------------------------ connection

let ws = null;
let listTimer = null;

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

// The token: ?token= (an operator's or an integration's), else one the server mints for
// the logged-in person (session cookie + CSRF header): what they see then follows from
// their institution and the service relations, not from a room name.
const VIEWER_ROOM = "ecg-worklist";
let sessionToken = null;
let stopped = false; // the URL's token was refused for good: no reconnect

async function viewerToken() {
  const given = params.get("token");
  if (given) return given;
  if (sessionToken && sessionToken.expiresMs - Date.now() > 60_000) return sessionToken.token;
  const csrf = document.cookie.split("; ").find((c) => c.startsWith("tc_csrf="));
  const answer = await fetch(`/api/v1/rooms/${VIEWER_ROOM}/token`, {
    method: "POST",
    headers: { accept: "application/json", "x-csrf-token": csrf ? csrf.slice(8) : "" },
    credentials: "same-origin",
  });
  if (!answer.ok) return null;
  const body = await answer.json();
  sessionToken = { token: body.token, expiresMs: Date.parse(body.expires_at) };
  return body.token;
}

async function connect() {
  let token = null;
  try {
    token = await viewerToken();
  } catch (error) {
    token = null;
  }
  if (!token) {
    showError(t("notoken"));
    $("login-link").hidden = false;
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws`);
  ws.onopen = () => send({ type: "watch", token, version: 1 });
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = () => {
    setConn("closed");
    clearInterval(listTimer);
    if (!stopped) setTimeout(connect, 2000); // the server restarted or the network dropped
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
      state.lists += 1;
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
      // The token is no longer good: mint a fresh one from the session (if it still
      // holds) on the reconnect; a token given in the URL is not tried again.
      if (["revoked", "token_expired", "invalid_token"].includes(message.code)) {
        sessionToken = null;
        if (params.get("token")) stopped = true;
      }
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

const paper = new EcgPaper({ paper: $("paper"), grid: $("grid"), trace: $("trace"), counters: state });

function startView(info) {
  state.info = info;
  $("viewer").hidden = false;
  $("patient").textContent = `${t("patient")} ${info.patient} · ${info.device}`;
  state.flags = [];
  state.provisional = [];
  paper.start(info, "12");
}

function receive(message) {
  paper.receive(message);
  state.flags.push(...message.flags);
  state.flags = state.flags.slice(-8);
  state.provisional = message.provisional;
  $("hr").textContent = state.hr === null ? "--" : Math.round(state.hr);
  $("flags").replaceChildren(...flagItems(state.flags, state.provisional, state.info.leads, t));
}

window.addEventListener("resize", () => paper.layout());
connect();
