// The patient's live ECG in the consult room: a panel beside the video with a rhythm
// strip by default, the 12 leads on demand, the heart rate and the flags.
//
// Design notes
// - Its own /ws connection, a viewer's (`watch` with the participant's room token, then
//   `ecg_list` / `ecg_subscribe`: docs/signaling.md), not the room's: ECG data is a
//   steady flow, and a slow link that overflows a connection's send queue must close
//   the viewer, never the consult's signaling. The server decides what the token may
//   see (the streams attached to the room); the panel shows the newest live one.
// - Opened once the participant is in the room (a viewer in the waiting room is
//   refused), closed when they leave; it reconnects by itself, and re-subscribes.
// - The list is asked again every LIST_INTERVAL_MS: a cart that starts streaming
//   during the consult appears without a reload, and an ended stream gives way to a
//   newer live one.

import { EcgPaper, FLAG_STRINGS, flagItems } from "/static/ecg-paper.js";

const LIST_INTERVAL_MS = 3000;
const RETRY_MS = [1000, 2000, 5000, 10000];
// Close codes after which the token will not be let in again (as web/signaling.js).
const FINAL_CLOSE_CODES = new Set([1000, 4400, 4401, 4403, 4408, 4409]);

export class RoomEcg extends EventTarget {
  // elements: {panel, paper, grid, trace, hr, flags, patient, mode}; t: the page's
  // strings; counters: an object the paper's counters go to (tests read it).
  // Events: "available" (detail: true while there is a stream to show).
  constructor({ token, elements, t, lang, counters }) {
    super();
    this.token = token;
    this.el = elements;
    this.t = t;
    this.lang = lang;
    this.counters = counters;
    this.paper = new EcgPaper({ paper: elements.paper, grid: elements.grid, trace: elements.trace, counters });
    this.ws = null;
    this.stopped = true;
    this.current = null; // the stream shown
    this.info = null;
    this.mode = "rhythm";
    this.flags = [];
    this.provisional = [];
    this.listTimer = null;
    this.attempt = 0;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearInterval(this.listTimer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
    this.current = null;
    this.paper.stop();
    this.dispatchEvent(new CustomEvent("available", { detail: false }));
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "watch", token: this.token, version: 1 }));
    ws.onmessage = (event) => this.onMessage(JSON.parse(event.data));
    ws.onclose = (event) => {
      clearInterval(this.listTimer);
      if (this.ws !== ws || this.stopped || FINAL_CLOSE_CODES.has(event.code)) return;
      const delay = RETRY_MS[Math.min(this.attempt, RETRY_MS.length - 1)];
      this.attempt += 1;
      setTimeout(() => !this.stopped && this.connect(), delay);
    };
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  onMessage(message) {
    switch (message.type) {
      case "watching":
        this.attempt = 0;
        this.send({ type: "ecg_list" });
        clearInterval(this.listTimer);
        this.listTimer = setInterval(() => this.send({ type: "ecg_list" }), LIST_INTERVAL_MS);
        if (this.current) this.send({ type: "ecg_subscribe", stream: this.current });
        break;
      case "ecg_streams":
        this.counters.lists = (this.counters.lists || 0) + 1;
        this.choose(message.streams);
        break;
      case "ecg_subscribed":
        this.show(message.info);
        break;
      case "ecg_data":
        if (message.stream === this.current) this.receive(message);
        break;
      case "ecg_ended":
        if (message.stream === this.current) this.el.panel.dataset.state = message.state;
        break;
      default:
        break;
    }
  }

  // The newest live stream of the room (the list comes newest first); an ended one
  // stays on screen until a live one comes.
  choose(streams) {
    const live = streams.find((s) => s.state === "live");
    if (live && live.stream !== this.current) {
      if (this.current) this.send({ type: "ecg_unsubscribe", stream: this.current });
      this.current = live.stream;
      this.send({ type: "ecg_subscribe", stream: live.stream });
    }
  }

  show(info) {
    this.info = info;
    this.flags = [];
    this.provisional = [];
    this.el.panel.dataset.state = info.state;
    this.el.patient.textContent = this.t("ecgPatient", { patient: info.patient, device: info.device });
    this.el.hr.textContent = "--";
    this.el.flags.replaceChildren();
    this.dispatchEvent(new CustomEvent("available", { detail: true }));
    this.paper.start(info, this.mode);
    this.renderMode();
  }

  receive(message) {
    this.paper.receive(message);
    this.flags = [...this.flags, ...message.flags].slice(-6);
    this.provisional = message.provisional;
    const hr = this.counters.hr;
    this.el.hr.textContent = hr === null ? "--" : String(Math.round(hr));
    const label = (kind) => (FLAG_STRINGS[this.lang] || FLAG_STRINGS.en)[kind] || kind;
    this.el.flags.replaceChildren(...flagItems(this.flags, this.provisional, this.info.leads, label));
  }

  // "rhythm" (one strip) or "12" (the twelve leads).
  setMode(mode) {
    this.mode = mode;
    this.paper.setMode(mode);
    this.renderMode();
  }

  toggleMode() {
    this.setMode(this.mode === "rhythm" ? "12" : "rhythm");
  }

  renderMode() {
    const twelve = this.mode === "12";
    this.el.panel.dataset.mode = this.mode;
    this.el.mode.textContent = this.t(twelve ? "ecgRhythm" : "ecg12");
    this.el.mode.setAttribute("aria-pressed", String(twelve));
  }

  layout() {
    this.paper.layout();
  }
}
