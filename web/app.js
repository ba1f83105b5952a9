// The consult room page: /join?token=JWT[&autojoin=1][&relay=1][&lang=zh|en][&w=&h=&fps=][&title=]
//
// Lobby (token checked, then preview + Join) -> waiting room (if not a moderator) -> room
// -> end screen (with Rejoin). Everything the server says is handled in onMessage; the DOM
// is updated by small render functions. window.tc exposes the client's state for tests
// and diagnostics.
//
// Layout: speaker view by default (the pinned participant, else the loudest recent
// speaker, large; the others in a strip), gallery on demand; the self view is a small
// tile over the stage's corner. Controls sit in one bar under (laptop) or over (phone)
// the video; chat and the host's panel are a drawer. Toasts sit under the header,
// where no control is, and let clicks through.

import { MediaSession } from "/static/media.js";
import { Signaling } from "/static/signaling.js";
import { api } from "/static/auth.js";
import { draw as drawQr, encode as encodeQr } from "/static/qr.js";
import { RoomEcg } from "/static/room-ecg.js";
import { lang, t, translatePage } from "/static/i18n.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

const tc = {
  token: params.get("token"),
  autojoin: params.get("autojoin") === "1",
  relay: params.get("relay") === "1",
  state: "idle",
  screen: "lobby",
  me: null, // the joined message
  participants: new Map(), // participant_id -> Participant (docs/signaling.md)
  streamOwner: new Map(), // a=msid stream id -> participant_id
  pendingStreams: new Map(), // stream id -> MediaStream received before its owner is known
  trackStream: new Map(), // received track id -> stream id (speaker detection)
  waiting: new Map(), // participant_id -> Participant, for moderators
  chat: [],
  unread: 0,
  notices: [],
  recording: false, // the room is being recorded (docs/recording.md)
  recordingPolicy: "allowed",
  layout: "speaker",
  audioOnly: false, // neither send nor receive video (poor networks)
  audioOnlySent: null, // {sender, track}: the camera's sender, emptied while audio only
  audioOnlyProposed: false, // the poor-link proposal was shown (once per page)
  inbound: null, // totals received on the subscribe connection: {audio: {packets, bytes}, video: {packets, bytes, frames}}
  receivedKbps: 0, // everything received, over the last quality window
  pinned: null, // participant id pinned large, or null
  speaker: null, // participant id of the active speaker
  hands: new Set(), // participant ids with a raised hand
  audioLevels: {}, // participant id -> last received audio level, 0..1
  quality: {}, // participant id -> {level, lossPct, rttMs, kbps}
  soundBlocked: false, // the browser refused to play sound (NotAllowedError)
  knocks: 0, // knock sounds played (tests)
  qr: null, // the join link's QR code on the host's panel (web/qr.js encode())
  firstFrameMs: null, // performance.now() when the first remote video frame was rendered
  marks: {}, // name -> performance.now() of the first time it happened (diagnostics, bench)
  ecg: {}, // the ECG panel's counters: beatsDrawn, samplesDrawn, hr, ... (web/ecg-paper.js)
  ecgPanel: null, // RoomEcg, while in the room
  ecgOpen: null, // the person's choice (null: not chosen; the panel opens with a stream)
  localStream: null,
  cameraTrack: null, // the camera track while the screen is shared
  screenTrack: null, // the screen's track while it is shared (sent instead of the camera)
  devices: Promise.resolve(),
  media: null,
  signaling: null,
};
window.tc = tc;

// ---- small helpers --------------------------------------------------------------

function mark(name) {
  if (!(name in tc.marks)) tc.marks[name] = Math.round(performance.now());
}

function el(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

// Icons are inline SVG paths (24×24 viewBox): no emoji, no font dependency.
const ICONS = {
  mic: "M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1a7 7 0 0 0 6-6.9z",
  micOff: "M19 11a7 7 0 0 1-1.2 3.9l-1.5-1.5A5 5 0 0 0 17 11zM15 11.2 9 5.2V5a3 3 0 0 1 6 0zM4.3 3 3 4.3l6 6V11a3 3 0 0 0 4.5 2.6l1.6 1.6A5 5 0 0 1 7 11H5a7 7 0 0 0 6 6.9V21h2v-3.1a7 7 0 0 0 3.6-1.5l3.1 3.1 1.3-1.3z",
  cam: "M17 10.5V7a1 1 0 0 0-1-1H4a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h12a1 1 0 0 0 1-1v-3.5l4 4v-11z",
  camOff: "M21 6.5l-4 4V7a1 1 0 0 0-1-1H9.8L21 17.2zM3.3 2 2 3.3 4.7 6H4a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h12c.2 0 .4-.1.5-.2l3.2 3.2 1.3-1.3z",
  screen: "M20 18a2 2 0 0 0 2-2V6a2 2 0 0 0-2-2H4a2 2 0 0 0-2 2v10a2 2 0 0 0 2 2H0v2h24v-2zM4 6h16v10H4z",
  hand: "M13 2a1.5 1.5 0 0 0-1.5 1.5V11h-1V4.5a1.5 1.5 0 0 0-3 0V13l-2-2a1.5 1.5 0 0 0-2.1 2.1L8 18.5A6 6 0 0 0 12.5 22h.5a6 6 0 0 0 6-6V7.5a1.5 1.5 0 0 0-3 0V11h-1V3.5A1.5 1.5 0 0 0 13 2z",
  layout: "M3 3h8v8H3zm10 0h8v8h-8zM3 13h8v8H3zm10 0h8v8h-8z",
  speaker: "M3 3h18v12H3zm0 14h5v4H3zm7 0h4v4h-4zm6 0h5v4h-5z",
  fullscreen: "M7 14H5v5h5v-2H7zm-2-4h2V7h3V5H5zm12 7h-3v2h5v-5h-2zM14 5v2h3v3h2V5z",
  chat: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z",
  people: "M16 11a3 3 0 1 0-3-3 3 3 0 0 0 3 3zm-8 0a3 3 0 1 0-3-3 3 3 0 0 0 3 3zm0 2c-2.3 0-7 1.2-7 3.5V19h14v-2.5C15 14.2 10.3 13 8 13zm8 0h-1a4.2 4.2 0 0 1 2 3.5V19h6v-2.5c0-2.3-4.7-3.5-7-3.5z",
  leave: "M12 9c-1.6 0-3.1.3-4.5.7v3.1c0 .4-.2.7-.6.9a11 11 0 0 0-2.7 1.9.9.9 0 0 1-1.3 0L.3 13.1a.9.9 0 0 1 0-1.3A17 17 0 0 1 12 7a17 17 0 0 1 11.7 4.8.9.9 0 0 1 0 1.3l-2.5 2.5a.9.9 0 0 1-1.3 0 11 11 0 0 0-2.7-1.9.9.9 0 0 1-.6-.9V9.7A15 15 0 0 0 12 9z",
  micOnly: "M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1a7 7 0 0 0 6-6.9zM18 2h4v2h-4zm0 4h4v2h-4z",
  ecg: "M2 11h4.4l2.1-5.3 4 11 2.6-7.2 1.3 1.5H22v2h-6.5l-.6-.7-2.9 8-4-11-1.2 3.7H2z",
  more: "M12 8a2 2 0 1 0-2-2 2 2 0 0 0 2 2zm0 2a2 2 0 1 0 2 2 2 2 0 0 0-2-2zm0 6a2 2 0 1 0 2 2 2 2 0 0 0-2-2z",
};

function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", "icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

// A control button: an icon, a visible short label, aria-label and aria-pressed.
function setButton(button, iconName, label, pressed) {
  const badge = button.querySelector(".badge");
  button.replaceChildren(icon(iconName), el("span", { class: "label" }, label));
  if (badge) button.append(badge);
  button.setAttribute("aria-label", label);
  button.title = label;
  if (pressed !== undefined) button.setAttribute("aria-pressed", String(pressed));
}

function initials(name) {
  const words = String(name || "?").replace(/[-_.]/g, " ").trim().split(/\s+/);
  const letters = words.length > 1 ? words[0][0] + words[words.length - 1][0] : words[0].slice(0, 2);
  return letters.toUpperCase();
}

function fillAvatar(avatar, name) {
  avatar.replaceChildren(el("span", { class: "initials" }, initials(name)), el("span", { class: "avatar-name" }, name));
}

function show(screen) {
  tc.screen = screen;
  for (const id of ["lobby", "waiting", "room", "ended"]) $(id).hidden = id !== screen;
  document.body.dataset.screen = screen;
}

let toastTimer = null;
function toast(text) {
  tc.notices.push(text);
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), 4000);
}

function setConnState(state) {
  tc.state = state;
  const badge = $("conn");
  badge.dataset.state = state;
  badge.textContent = t(`state.${state}`);
}

function nameOf(participantId) {
  const p = tc.participants.get(participantId) || tc.waiting.get(participantId);
  return p ? p.name : participantId;
}

function tileOf(participantId) {
  return document.querySelector(`.tile[data-participant="${CSS.escape(participantId)}"]`);
}

function decodeClaims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

const isModerator = () => Boolean(tc.me && tc.me.permissions.includes("moderate"));

// ---- lobby ----------------------------------------------------------------------

// The token is checked before the camera opens: a malformed or expired invitation gets
// one message and no camera light. (The signature is checked by the server at Join.)
function checkToken() {
  if (!tc.token) return t("noToken");
  const claims = decodeClaims(tc.token);
  if (!claims || typeof claims !== "object") return t("error.invalid_token");
  const nowS = Date.now() / 1000;
  if (typeof claims.exp === "number" && claims.exp < nowS) return t("error.token_expired");
  if (typeof claims.nbf === "number" && claims.nbf > nowS + 60) return t("error.token_not_yet_valid");
  return null;
}

// /join?room=ID without a token (the link a QR code carries: no credential on a screen):
// the logged-in person's own token for the room, from the server; the part they take
// follows from their directory roles. Not logged in: one message and a login link that
// comes back here.
async function mintRoomToken(room) {
  try {
    const answer = await api("POST", `/rooms/${encodeURIComponent(room)}/token`, {});
    tc.token = answer.token;
    return null;
  } catch (failure) {
    if (failure.status === 401) {
      const link = $("lobby-login");
      link.href = `/static/login.html?next=${encodeURIComponent(location.pathname + location.search)}`;
      link.hidden = false;
      return t("logInToJoin");
    }
    return t("error.generic", { reason: failure.message });
  }
}

function lobbyError(text) {
  $("lobby-error").textContent = text;
  $("lobby-error").hidden = false;
}

function constraints(cameraId, micId) {
  const number = (key, fallback) => Number(params.get(key)) || fallback;
  return {
    audio: micId ? { deviceId: { exact: micId } } : true,
    video: {
      ...(cameraId ? { deviceId: { exact: cameraId } } : {}),
      width: { ideal: number("w", 640) },
      height: { ideal: number("h", 360) },
      frameRate: { ideal: number("fps", 24) },
    },
  };
}

// Only the latest request counts: a person who picks a camera and then a microphone
// before the first opens gets both, not whichever getUserMedia() answered last.
let devicesRequest = 0;
async function openDevices(cameraId = null, micId = null) {
  const request = ++devicesRequest;
  try {
    const stream = await navigator.mediaDevices.getUserMedia(constraints(cameraId, micId));
    if (request !== devicesRequest) {
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    const previous = tc.localStream;
    // Keep the preview toggles: a new device opens in the state the person chose.
    for (const track of stream.getTracks()) {
      const old = previous && previous.getTracks().find((x) => x.kind === track.kind);
      if (old) track.enabled = old.enabled;
    }
    if (previous) for (const track of previous.getTracks()) track.stop();
    tc.localStream = stream;
    $("preview").srcObject = stream;
    $("self").srcObject = stream;
    meter(stream);
    await listDevices();
    mark("devices");
  } catch (error) {
    console.warn("getUserMedia failed", error);
    lobbyError(t("noDevices"));
  }
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const fill = (select, kind, current) => {
    select.replaceChildren();
    for (const device of devices.filter((d) => d.kind === kind)) {
      const option = el("option", { value: device.deviceId }, device.label || device.deviceId.slice(0, 8));
      if (device.deviceId === current) option.selected = true;
      select.append(option);
    }
  };
  const track = (kind) => tc.localStream && tc.localStream.getTracks().find((x) => x.kind === kind);
  const current = (kind) => (track(kind) ? track(kind).getSettings().deviceId : null);
  fill($("camera-select"), "videoinput", current("video"));
  fill($("mic-select"), "audioinput", current("audio"));
}

// The microphone level meter: an analyser on the local stream, drawn each frame.
let meterContext = null;
function meter(stream) {
  if (!stream.getAudioTracks().length) return;
  if (meterContext) meterContext.close();
  meterContext = new AudioContext();
  const analyser = meterContext.createAnalyser();
  analyser.fftSize = 512;
  meterContext.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const context = meterContext;
  const draw = () => {
    if (context !== meterContext || tc.screen !== "lobby") return;
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const x of samples) sum += x * x;
    const rms = Math.sqrt(sum / samples.length);
    const level = Math.min(1, rms * 4);
    tc.micLevel = level;
    $("level").value = level;
    requestAnimationFrame(draw);
  };
  draw();
}

function renderPreviewToggles() {
  const enabled = (kind) => {
    const tracks = tc.localStream ? tc.localStream.getTracks().filter((x) => x.kind === kind) : [];
    return tracks.length > 0 && tracks.every((x) => x.enabled);
  };
  const audioOn = enabled("audio");
  const videoOn = enabled("video");
  setButton($("preview-audio"), audioOn ? "mic" : "micOff", t(audioOn ? "muteMic" : "unmuteMic"), !audioOn);
  setButton($("preview-video"), videoOn ? "cam" : "camOff", t(videoOn ? "muteCam" : "unmuteCam"), !videoOn);
  const claims = decodeClaims(tc.token || "") || {};
  fillAvatar($("preview-off"), claims.name || claims.sub || "?");
  $("preview-off").hidden = videoOn;
}

function togglePreview(kind) {
  const tracks = tc.localStream ? tc.localStream.getTracks().filter((x) => x.kind === kind) : [];
  const enable = !tracks.every((x) => x.enabled);
  for (const track of tracks) track.enabled = enable;
  renderPreviewToggles();
}

function join() {
  mark("join");
  $("join").disabled = true;
  const signaling = new Signaling(tc.token);
  tc.signaling = signaling;
  tc.left = false;
  signaling.addEventListener("state", (event) => setConnState(event.detail));
  signaling.addEventListener("message", (event) => onMessage(event.detail));
  signaling.addEventListener("closed", (event) => onClosed(event.detail));
  signaling.connect();
}

// ---- server messages ------------------------------------------------------------

function onMessage(message) {
  mark(`message.${message.type}${message.pc ? "." + message.pc : ""}`);
  const handler = HANDLERS[message.type];
  if (handler) handler(message);
}

const HANDLERS = {
  waiting(message) {
    tc.recordingPolicy = message.recording_policy || "allowed";
    renderRecordingNotes();
    show("waiting");
  },
  admitted() {},
  joined(message) {
    tc.me = message;
    if (tc.media) tc.media.close(); // resume: fresh peer connections (docs/signaling.md)
    tc.participants.clear();
    tc.streamOwner.clear();
    tc.hands.clear();
    for (const tile of document.querySelectorAll(".tile.remote")) tile.remove();
    for (const participant of message.participants) addParticipant(participant);
    tc.recording = Boolean(message.recording);
    tc.recordingPolicy = message.recording_policy || "allowed";
    $("toggle-people").hidden = !isModerator();
    if (isModerator()) ensureRecordingToggle();
    renderInvite(message.room);
    renderRecording();
    renderControls();
    show("room");
    renderStage();
    startMedia(message.ice_servers);
    startEcg();
  },
  offer(message) {
    if (tc.media && message.pc === "subscribe") tc.media.onOffer(message.sdp);
  },
  answer(message) {
    if (tc.media && message.pc === "publish") tc.media.onAnswer(message.sdp);
  },
  candidate(message) {
    if (tc.media) tc.media.onCandidate(message);
  },
  participant_joined({ participant }) {
    tc.waiting.delete(participant.participant_id);
    renderWaitingList();
    addParticipant(participant);
    toast(t("joinedMsg", { name: participant.name }));
  },
  participant_waiting({ participant }) {
    const known = tc.waiting.has(participant.participant_id);
    tc.waiting.set(participant.participant_id, participant);
    renderWaitingList();
    if (!known) knock();
    toast(t("waitingMsg", { name: participant.name }));
  },
  participant_left({ participant_id, reason }) {
    const name = nameOf(participant_id);
    tc.waiting.delete(participant_id);
    renderWaitingList();
    removeParticipant(participant_id);
    if (reason !== "ended") toast(t(`left.${reason}`, { name }));
  },
  participant_state({ participant_id, state }) {
    const participant = tc.participants.get(participant_id);
    if (!participant) return;
    participant.state = state;
    renderTile(participant_id);
  },
  track_published({ participant_id, track }) {
    const participant = tc.participants.get(participant_id);
    if (!participant) return;
    participant.tracks = participant.tracks.filter((x) => x.track_id !== track.track_id).concat([track]);
    learnStream(participant_id, track.stream_id);
    renderTile(participant_id);
  },
  track_ended({ participant_id, track_id }) {
    const participant = tc.participants.get(participant_id);
    if (participant) participant.tracks = participant.tracks.filter((x) => x.track_id !== track_id);
    renderTile(participant_id);
  },
  muted({ participant_id, kind, muted, by }) {
    if (tc.me && participant_id === tc.me.participant_id) {
      if (muted && by !== tc.me.participant_id) {
        setLocalEnabled(kind, false);
        // A host who turns our video off means the screen too (else it goes on capturing).
        if (kind === "video" && tc.screenTrack) toggleScreen();
        toast(t("mutedBy", { by: nameOf(by), kind: t(`kind.${kind}`) }));
      }
      return;
    }
    const participant = tc.participants.get(participant_id);
    if (!participant) return;
    participant[`${kind}_muted`] = muted;
    renderTile(participant_id);
  },
  hand({ participant_id, raised }) {
    if (raised) tc.hands.add(participant_id);
    else tc.hands.delete(participant_id);
    if (tc.me && participant_id === tc.me.participant_id) renderControls();
    else {
      renderTile(participant_id);
      if (raised) toast(t("handRaised", { name: nameOf(participant_id) }));
    }
  },
  chat(message) {
    tc.chat.push(message);
    const when = new Date(message.time).toLocaleTimeString();
    const item = el("li");
    item.append(el("time", { datetime: message.time }, when), el("b", {}, `${message.name}: `));
    item.append(document.createTextNode(message.text));
    $("chat-log").append(item);
    if ($("chat").hidden) {
      tc.unread += 1;
      renderBadges();
    } else item.scrollIntoView({ block: "end" });
  },
  media_state({ state }) {
    if (state === "failed") setConnState("media-failed");
  },
  recording({ on, error }) {
    const changed = tc.recording !== on;
    tc.recording = on;
    renderRecording();
    if (error) toast(t("recordingFailed", { reason: error }));
    else if (changed) toast(t(on ? "recordingStarted" : "recordingStopped"));
  },
  room_ended({ name }) {
    tc.endedBy = name;
    end(t("endedBy", { name }));
  },
  pong() {},
  error({ code, reason }) {
    if (code === "removed" || code === "replaced" || code === "banned") {
      end(t(code === "replaced" ? "replaced" : code === "banned" ? "error.banned" : "removedYou"));
      return;
    }
    if (code === "denied") {
      end(t("deniedYou", { message: reason }));
      return;
    }
    const key = `error.${code}`;
    const text = t(key);
    if (tc.screen === "lobby") lobbyError(text === key ? t("error.generic", { reason }) : text);
    else toast(text === key ? t("error.generic", { reason }) : text);
  },
};

// ---- recording: indicator for everyone, consent toggle for moderators -------------

function recordingNote() {
  if (tc.recordingPolicy === "required") return t("recordingRequired");
  return tc.recording ? t("recordingStarted") : "";
}

function renderRecordingNotes() {
  for (const id of ["lobby-rec", "waiting-rec"]) {
    const note = recordingNote();
    $(id).textContent = note;
    $(id).hidden = !note;
  }
}

function renderRecording() {
  const badge = $("rec");
  badge.textContent = t("recordingOn");
  badge.hidden = !tc.recording;
  renderRecordingNotes();
  const toggle = $("toggle-recording");
  if (toggle) {
    toggle.textContent = t(tc.recording ? "stopRecording" : "startRecording");
    toggle.setAttribute("aria-pressed", String(tc.recording));
    // The server refuses what the policy forbids; the button says so before a click.
    toggle.disabled = tc.recordingPolicy === "off" || (tc.recordingPolicy === "required" && tc.recording);
  }
}

function ensureRecordingToggle() {
  if ($("toggle-recording")) return;
  const toggle = el("button", { id: "toggle-recording", type: "button" });
  // The server answers with a `recording` event to everyone; the button follows it.
  toggle.addEventListener("click", () => tc.signaling.send({ type: "set_recording", on: !tc.recording }));
  document.querySelector(".host-actions").prepend(toggle);
}

function onClosed({ code }) {
  if (tc.screen === "ended") return;
  if (code === 1000 && tc.left) return;
  if (tc.screen === "lobby" || tc.screen === "waiting" || code >= 4000 || code === 1000) {
    end(tc.notices.at(-1) || t("state.disconnected"));
  }
}

// ---- the host: a QR code of the join link, so that a phone can join -----------------

// The link is this room's /join?room=, which carries no token: whoever scans it logs in
// (or is logged in) and gets their own token, so a photo of the screen lets nobody in.
// Host and port are those this page was opened on.
function renderInvite(room) {
  const section = $("invite");
  section.hidden = !isModerator();
  if (section.hidden) return;
  const title = params.get("title");
  const link = `${location.origin}/join?room=${encodeURIComponent(room)}${title ? `&title=${encodeURIComponent(title)}` : ""}`;
  if (tc.qr && tc.qr.text === link) return;
  tc.qr = encodeQr(link, { ecl: "M" });
  drawQr($("invite-qr"), tc.qr, { scale: 4, quiet: 4 });
  $("invite-qr").setAttribute("aria-label", t("joinQrLabel", { link }));
  $("invite-link").textContent = link;
}

// ---- the host: knock, waiting list, deny, remove, end for everyone ----------------

// A two-tone knock made with WebAudio (no asset to fetch, nothing to decode).
function knock() {
  tc.knocks += 1;
  try {
    const context = new AudioContext();
    for (const [delayS, hz] of [
      [0, 660],
      [0.18, 880],
    ]) {
      const oscillator = context.createOscillator();
      const gain = context.createGain();
      oscillator.frequency.value = hz;
      gain.gain.setValueAtTime(0.15, context.currentTime + delayS);
      gain.gain.exponentialRampToValueAtTime(0.001, context.currentTime + delayS + 0.15);
      oscillator.connect(gain).connect(context.destination);
      oscillator.start(context.currentTime + delayS);
      oscillator.stop(context.currentTime + delayS + 0.16);
    }
    setTimeout(() => context.close(), 600);
  } catch (error) {
    console.warn("knock sound unavailable", error);
  }
}

function renderBadges() {
  $("knock").textContent = String(tc.waiting.size);
  $("knock").hidden = tc.waiting.size === 0;
  $("knock").setAttribute("aria-label", t("waitingCount", { n: tc.waiting.size }));
  $("unread").textContent = String(tc.unread);
  $("unread").hidden = tc.unread === 0;
  $("unread").setAttribute("aria-label", t("unreadCount", { n: tc.unread }));
}

function renderWaitingList() {
  const list = $("waiting-list");
  list.replaceChildren();
  for (const participant of tc.waiting.values()) {
    const item = el("li", { "data-participant": participant.participant_id });
    item.append(el("span", {}, participant.name));
    const admit = el("button", { type: "button", class: "admit" }, t("admit"));
    admit.addEventListener("click", () =>
      tc.signaling.send({ type: "admit", participant_id: participant.participant_id }),
    );
    const deny = el("button", { type: "button", class: "deny" }, t("deny"));
    deny.addEventListener("click", () => askDeny(participant));
    item.append(admit, deny);
    list.append(item);
  }
  // The heading and the list exist only while someone waits.
  $("waiting-section").hidden = tc.waiting.size === 0;
  renderBadges();
}

let denyTarget = null;
function askDeny(participant) {
  denyTarget = participant.participant_id;
  $("deny-text").textContent = t("denyAsk", { name: participant.name });
  $("deny-message").value = "";
  $("deny-dialog").showModal();
}

let removeTarget = null;
function askRemove(participantId) {
  removeTarget = participantId;
  $("remove-text").textContent = t("removeAsk", { name: nameOf(participantId) });
  $("remove-dialog").showModal();
}

function remove(ban) {
  $("remove-dialog").close();
  if (removeTarget) tc.signaling.send({ type: "remove", participant_id: removeTarget, reason: null, ban });
  removeTarget = null;
}

function moderate(action, participantId) {
  if (action === "remove") askRemove(participantId);
  else if (action === "pin") pin(participantId);
  else tc.signaling.send({ type: "mute", kind: action.slice("mute-".length), participant_id: participantId });
}

// ---- participants and their video -----------------------------------------------

function addParticipant(participant) {
  if (participant.state === "waiting") {
    tc.waiting.set(participant.participant_id, participant);
    renderWaitingList();
    return;
  }
  tc.participants.set(participant.participant_id, participant);
  if (participant.hand_raised) tc.hands.add(participant.participant_id);
  ensureTile(participant);
  for (const track of participant.tracks || []) learnStream(participant.participant_id, track.stream_id);
  renderTile(participant.participant_id);
  renderStage();
}

function removeParticipant(participantId) {
  tc.participants.delete(participantId);
  tc.hands.delete(participantId);
  if (tc.pinned === participantId) tc.pinned = null;
  if (tc.speaker === participantId) tc.speaker = null;
  for (const [streamId, owner] of tc.streamOwner) if (owner === participantId) tc.streamOwner.delete(streamId);
  const tile = tileOf(participantId);
  if (tile) tile.remove();
  renderStage();
}

function ensureTile(participant) {
  let tile = tileOf(participant.participant_id);
  if (tile) return tile;
  tile = el("div", { class: "tile remote", "data-participant": participant.participant_id });
  const video = el("video", { "data-identity": participant.identity, autoplay: "", playsinline: "" });
  // A stream that starts silent (video first) plays; when its audio track arrives the
  // browser may pause it as newly audible without a rejected play() of ours: ask again,
  // so that a refusal comes back as a NotAllowedError (play() below).
  video.addEventListener("pause", () => {
    if (video.srcObject && !tc.left) play(video);
  });
  const avatar = el("div", { class: "avatar" });
  fillAvatar(avatar, participant.name);
  const label = el("span", { class: "name" });
  const status = el("span", { class: "status" });
  label.append(status, el("span", { class: "who" }, participant.name));
  const quality = el("span", { class: "quality", role: "img" });
  for (let i = 0; i < 3; i += 1) quality.append(el("i"));
  const more = el("button", { type: "button", class: "tile-more", "aria-haspopup": "menu" });
  setButton(more, "more", t("optionsFor", { name: participant.name }));
  const menu = el("div", { class: "tile-menu", role: "menu", hidden: "" });
  const item = (key, action) => {
    const b = el("button", { type: "button", role: "menuitem", "data-action": action }, t(key));
    b.addEventListener("click", () => {
      menu.hidden = true;
      moderate(action, participant.participant_id);
    });
    menu.append(b);
  };
  item("pin", "pin");
  if (isModerator()) {
    item("muteTheirMic", "mute-audio");
    item("muteTheirCam", "mute-video");
    item("remove", "remove");
  }
  more.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".tile-menu")) if (other !== menu) other.hidden = true;
    menu.hidden = !menu.hidden;
  });
  tile.append(video, avatar, label, quality, more, menu);
  $("grid").append(tile);
  return tile;
}

function renderTile(participantId) {
  const participant = tc.participants.get(participantId);
  const tile = tileOf(participantId);
  if (!participant || !tile) return;
  tile.dataset.state = participant.state;
  const videoTrack = (participant.tracks || []).find((x) => x.kind === "video");
  // Camera off (muted, or no video published): initials and name, never a frozen frame.
  const cameraOff = Boolean(participant.video_muted) || !videoTrack || tc.audioOnly;
  tile.dataset.camera = cameraOff ? "off" : "on";
  tile.querySelector(".avatar").hidden = !cameraOff;
  const status = tile.querySelector(".status");
  status.replaceChildren();
  const add = (iconName, label) => {
    const holder = el("span", { class: `state-icon ${iconName}`, role: "img", "aria-label": label, title: label });
    holder.append(icon(iconName));
    status.append(holder);
  };
  if (participant.audio_muted) add("micOff", t("micIsOff", { name: participant.name }));
  if (participant.video_muted) add("camOff", t("camIsOff", { name: participant.name }));
  if (tc.hands.has(participantId)) add("hand", t("handIsRaised", { name: participant.name }));
  const pinItem = tile.querySelector("[data-action='pin']");
  if (pinItem) pinItem.textContent = t(tc.pinned === participantId ? "unpin" : "pin");
}

// Which participant is large in speaker view: the pinned one, else the active speaker,
// else the first remote.
function mainParticipant() {
  if (tc.pinned && tc.participants.has(tc.pinned)) return tc.pinned;
  if (tc.speaker && tc.participants.has(tc.speaker)) return tc.speaker;
  const first = tc.participants.keys().next();
  return first.done ? null : first.value;
}

function renderStage() {
  const stage = $("stage");
  stage.dataset.layout = tc.layout;
  stage.dataset.count = String(tc.participants.size);
  const main = tc.layout === "speaker" ? mainParticipant() : null;
  for (const tile of document.querySelectorAll(".tile.remote")) {
    tile.classList.toggle("main", tile.dataset.participant === main);
    tile.classList.toggle("pinned", tile.dataset.participant === tc.pinned);
  }
  stage.classList.toggle("has-strip", tc.layout === "speaker" && tc.participants.size > 1);
  const count = tc.participants.size + 1;
  $("count").textContent = t("participantCount", { n: count });
  $("count").hidden = tc.screen !== "room";
  for (const id of tc.participants.keys()) renderTile(id);
}

function pin(participantId) {
  tc.pinned = tc.pinned === participantId ? null : participantId;
  tc.layout = "speaker";
  renderControls();
  renderStage();
}

function learnStream(participantId, streamId) {
  if (!streamId) return;
  tc.streamOwner.set(streamId, participantId);
  const pending = tc.pendingStreams.get(streamId);
  if (pending) {
    tc.pendingStreams.delete(streamId);
    attachStream(participantId, pending);
  }
}

function onRemoteTrack({ track, streams }) {
  mark("track");
  const stream = streams[0];
  if (!stream) return;
  tc.trackStream.set(track.id, stream.id);
  const owner = tc.streamOwner.get(stream.id);
  if (owner) attachStream(owner, stream);
  else tc.pendingStreams.set(stream.id, stream);
}

// Autoplay: only a NotAllowedError means the browser wants a click before sound. Then the
// video plays muted (picture stays live) and one "enable sound" control appears in the
// header. Any other play() failure (AbortError when srcObject changes on a resume...) is
// not a refusal: the element is left as it was, unmuted, and played again.
function play(video) {
  video.play().catch((error) => {
    if (error.name !== "NotAllowedError") return;
    video.muted = true;
    tc.soundBlocked = true;
    $("enable-sound").hidden = false;
    video.play().catch(() => {});
  });
}

function enableSound() {
  tc.soundBlocked = false;
  $("enable-sound").hidden = true;
  for (const video of document.querySelectorAll(".tile.remote video")) {
    video.muted = false;
    play(video);
  }
}

function attachStream(participantId, stream) {
  const tile = tileOf(participantId);
  if (!tile) return;
  const video = tile.querySelector("video");
  if (video.srcObject !== stream) {
    video.srcObject = stream;
    video.dataset.audible = "";
  }
  if (!tc.soundBlocked) video.muted = false;
  // The browser judges autoplay when play() is called: a stream without audio yet, or
  // whose audio track is still muted (no packet received), is inaudible and may play.
  // When its audio arrives or unmutes, play again from paused, so that a refusal of
  // sound is reported (NotAllowedError) instead of the sound being silently withheld.
  const recheck = () => {
    if (video.srcObject === stream && !video.muted && !video.paused) video.pause();
  };
  for (const track of stream.getAudioTracks()) {
    if (track.muted) track.addEventListener("unmute", recheck, { once: true });
  }
  if (stream.getAudioTracks().length && !video.dataset.audible) {
    video.dataset.audible = "1";
    recheck();
  }
  if (tc.firstFrameMs === null && "requestVideoFrameCallback" in video) {
    video.requestVideoFrameCallback(() => {
      if (tc.firstFrameMs === null) tc.firstFrameMs = performance.now();
      mark("firstFrame");
    });
  }
  play(video);
}

// ---- media ----------------------------------------------------------------------

function startMedia(iceServers) {
  const media = new MediaSession({
    iceServers,
    relay: tc.relay,
    send: (message) => tc.signaling.send(message),
    audioOnly: () => tc.audioOnly,
  });
  tc.media = media;
  media.addEventListener("track", (event) => onRemoteTrack(event.detail));
  media.addEventListener("state", ({ detail }) => {
    mark(`${detail.pc}.${detail.state}`);
    if (detail.state === "failed") {
      setConnState("media-failed");
      recoverMedia();
    } else if (detail.state === "connected" && tc.state === "media-failed") {
      setConnState("connected");
    }
  });
  // Autojoin connects while the camera is still opening; publish once it is open.
  tc.devices
    .then(() => media.publish(tc.localStream, { video: !tc.audioOnly }))
    .then(() => {
      // What the person chose in the lobby's preview toggles is what the room hears.
      for (const kind of ["audio", "video"]) {
        const tracks = tc.localStream ? tc.localStream.getTracks().filter((x) => x.kind === kind) : [];
        if (kind === "video" && tc.screenTrack) continue; // resumed while sharing: seen
        if (tracks.length && !tracks.every((x) => x.enabled)) tc.signaling.send({ type: "mute", kind });
      }
      renderControls();
      return resumeScreen(media);
    })
    .catch((error) => console.error("publish failed", error));
}

// A failed peer connection cannot be repaired in place (the server's peer does no ICE
// restart): resume the session, which brings fresh connections. At most every 15 s,
// so that a network that cannot carry media does not cause a reconnection storm.
const MEDIA_RETRY_MS = 15000;
let lastMediaRetry = -Infinity;
function recoverMedia() {
  const now = performance.now();
  if (now - lastMediaRetry < MEDIA_RETRY_MS || !tc.signaling || tc.left) return;
  lastMediaRetry = now;
  tc.signaling.drop();
}

function localEnabled(kind) {
  const tracks = tc.localStream ? tc.localStream.getTracks().filter((x) => x.kind === kind) : [];
  return tracks.length > 0 && tracks.every((x) => x.enabled);
}

function setLocalEnabled(kind, enabled) {
  const tracks = tc.localStream ? tc.localStream.getTracks().filter((x) => x.kind === kind) : [];
  for (const track of tracks) track.enabled = enabled;
  renderControls();
}

function toggleLocal(kind) {
  const enable = !localEnabled(kind);
  setLocalEnabled(kind, enable);
  if (kind === "video" && tc.screenTrack) return; // the room sees the screen meanwhile
  tc.signaling.send({ type: enable ? "unmute" : "mute", kind });
}

// Audio only: we send no video (the camera's sender carries no track; others see our
// initials) and receive none: the `receive` message has the server renegotiate our
// subscribe connection without its video, on the same connection, so sound goes on
// without a gap. Back to video: the sender gets its track again and the server sends
// video again (after a reconnect meanwhile, the fresh session publishes it instead).
// The camera comes back as it was.
async function setAudioOnly(on) {
  if (tc.audioOnly === on || !tc.signaling) return;
  $("propose-audio-only").hidden = true;
  if (on) tc.cameraBeforeAudioOnly = localEnabled("video");
  tc.audioOnly = on;
  const camera = on ? false : tc.cameraBeforeAudioOnly !== false;
  if (camera !== localEnabled("video")) {
    setLocalEnabled("video", camera);
    tc.signaling.send({ type: camera ? "unmute" : "mute", kind: "video" });
  }
  renderControls();
  for (const id of tc.participants.keys()) renderTile(id);
  tc.signaling.send({ type: "receive", video: !on });
  const pc = tc.media && tc.media.publishPc;
  if (on) {
    const sender = tc.media && tc.media.videoSender();
    tc.audioOnlySent = sender ? { sender, track: sender.track } : null;
    if (sender) await sender.replaceTrack(null);
    return;
  }
  const held = tc.audioOnlySent;
  tc.audioOnlySent = null;
  if (held && pc && pc.getSenders().includes(held.sender)) {
    await held.sender.replaceTrack(held.track);
  } else if (pc && !tc.media.videoSender() && tc.localStream && tc.localStream.getVideoTracks().length) {
    tc.signaling.drop(); // reconnected while audio only: that session published no video
  }
}

// Screen sharing replaces the camera's track on the publish connection (no
// renegotiation); the camera comes back when sharing stops, also from the browser's bar.
// While sharing, the room sees the screen whatever the camera button says (a camera
// turned off is told to the server as on, and again as off when sharing stops); a
// resume publishes the camera afresh, so the screen is put back on the new sender.
async function toggleScreen() {
  const sender = tc.media && tc.media.videoSender();
  if (!sender) return;
  if (tc.screenTrack) {
    const screenTrack = tc.screenTrack;
    tc.screenTrack = null;
    await sender.replaceTrack(tc.cameraTrack);
    screenTrack.stop();
    tc.cameraTrack = null;
    if (!localEnabled("video")) tc.signaling.send({ type: "mute", kind: "video" });
  } else {
    let display;
    try {
      display = await navigator.mediaDevices.getDisplayMedia({ video: true });
    } catch (error) {
      console.warn("screen sharing refused", error);
      return;
    }
    const screenTrack = display.getVideoTracks()[0];
    tc.cameraTrack = sender.track;
    tc.screenTrack = screenTrack;
    await sender.replaceTrack(screenTrack);
    if (!localEnabled("video")) tc.signaling.send({ type: "unmute", kind: "video" });
    screenTrack.addEventListener("ended", () => tc.screenTrack === screenTrack && toggleScreen());
  }
  renderControls();
}

// After a resume's fresh publish: the screen goes on being shared, and is seen.
async function resumeScreen(media) {
  const sender = media.videoSender();
  if (!tc.screenTrack || !sender) return;
  if (tc.screenTrack.readyState !== "live") {
    tc.screenTrack = tc.cameraTrack = null;
    return;
  }
  await sender.replaceTrack(tc.screenTrack);
  if (!localEnabled("video")) tc.signaling.send({ type: "unmute", kind: "video" });
}

function renderControls() {
  const audioOn = localEnabled("audio");
  const videoOn = localEnabled("video");
  const audio = $("toggle-audio");
  audio.dataset.muted = String(!audioOn);
  setButton(audio, audioOn ? "mic" : "micOff", t(audioOn ? "muteMic" : "unmuteMic"), !audioOn);
  const video = $("toggle-video");
  video.dataset.muted = String(!videoOn);
  setButton(video, videoOn ? "cam" : "camOff", t(videoOn ? "muteCam" : "unmuteCam"), !videoOn);
  const selfTile = $("self-tile");
  selfTile.dataset.camera = videoOn ? "on" : "off";
  fillAvatar(selfTile.querySelector(".avatar"), tc.me ? tc.me.name : t("you"));
  selfTile.querySelector(".avatar").hidden = videoOn;
  const sharing = Boolean(tc.screenTrack);
  setButton($("toggle-screen"), "screen", t(sharing ? "stopShare" : "shareScreen"), sharing);
  const raised = Boolean(tc.me && tc.hands.has(tc.me.participant_id));
  setButton($("toggle-hand"), "hand", t(raised ? "lowerHand" : "raiseHand"), raised);
  setButton($("toggle-audio-only"), "micOnly", t(tc.audioOnly ? "videoOn" : "audioOnly"), tc.audioOnly);
  $("toggle-video").disabled = tc.audioOnly;
  $("toggle-screen").disabled = tc.audioOnly;
  const gallery = tc.layout === "gallery";
  setButton($("toggle-layout"), gallery ? "speaker" : "layout", t(gallery ? "speakerView" : "galleryView"), gallery);
  const full = Boolean(document.fullscreenElement);
  setButton($("toggle-fullscreen"), "fullscreen", t(full ? "exitFullscreen" : "fullscreen"), full);
  const ecgShown = !$("ecg-panel").hidden;
  setButton($("toggle-ecg"), "ecg", t(ecgShown ? "hideEcg" : "showEcg"), ecgShown);
  setButton($("toggle-chat"), "chat", t("chat"), !$("chat").hidden);
  setButton($("toggle-people"), "people", t("host"), !$("people").hidden);
  setButton($("leave"), "leave", t("leave"));
  renderBadges();
}

function openDrawer(panel) {
  const other = panel === "chat" ? "people" : "chat";
  const opening = $(panel).hidden;
  $(panel).hidden = !opening;
  $(other).hidden = true;
  $("drawer").hidden = !opening;
  document.body.dataset.drawer = opening ? panel : "";
  if (panel === "chat" && opening) {
    tc.unread = 0;
    const last = $("chat-log").lastElementChild;
    if (last) last.scrollIntoView({ block: "end" });
  }
  renderControls();
}

// ---- WebRTC stats: received totals, the active speaker, connection quality ----------

// One getStats() of the subscribe connection every STATS_INTERVAL_MS feeds everything:
// tc.inbound (totals received in this session, per kind: what tests and diagnostics
// read), the active speaker (every poll) and the quality indicator (every
// QUALITY_EVERY polls, over that window).
const STATS_INTERVAL_MS = 500;
const QUALITY_EVERY = 4; // 2 s windows: short ones make the bars flicker

// Speech is measured from what we decode (inbound-rtp totalAudioEnergy over
// totalSamplesDuration: the mean power since the last poll), not from the RTP audio-level
// header, which a forwarding SFU need not set.
const SPEAKER_LEVEL = 0.01; // RMS level (0..1) above which someone is speaking
const SPEAKER_HOLD_MS = 1500; // the speaker keeps the large tile this long after silence

const ownerOf = (report) => tc.streamOwner.get(tc.trackStream.get(report.trackIdentifier));

let statsPolls = 0;
async function pollStats() {
  const pc = tc.media && tc.media.subscribePc;
  if (!pc) return;
  const stats = await pc.getStats();
  if (pc !== (tc.media && tc.media.subscribePc)) return; // a resume replaced it meanwhile
  const inbound = [];
  stats.forEach((report) => {
    if (report.type === "inbound-rtp") inbound.push(report);
  });
  const totals = { audio: { packets: 0, bytes: 0 }, video: { packets: 0, bytes: 0, frames: 0 } };
  for (const report of inbound) {
    const sum = totals[report.kind];
    if (!sum) continue;
    sum.packets += report.packetsReceived || 0;
    sum.bytes += report.bytesReceived || 0;
    if (report.kind === "video") sum.frames += report.framesDecoded || 0;
  }
  tc.inbound = totals;
  detectSpeaker(inbound);
  statsPolls += 1;
  if (statsPolls % QUALITY_EVERY === 0) measureQuality(stats, inbound);
}

let lastSpokeMs = 0;
let previousEnergy = new Map(); // inbound-rtp id -> {energy, duration}
function detectSpeaker(inbound) {
  const next = new Map();
  let loudest = null;
  let loudestLevel = SPEAKER_LEVEL;
  for (const report of inbound) {
    if (report.kind !== "audio") continue;
    const energy = report.totalAudioEnergy || 0;
    const duration = report.totalSamplesDuration || 0;
    next.set(report.id, { energy, duration });
    const before = previousEnergy.get(report.id);
    const owner = ownerOf(report);
    if (!before || !owner || duration <= before.duration) continue;
    const level = Math.sqrt(Math.max(0, energy - before.energy) / (duration - before.duration));
    tc.audioLevels[owner] = level;
    if (level > loudestLevel) {
      loudest = owner;
      loudestLevel = level;
    }
  }
  previousEnergy = next;
  const now = performance.now();
  if (loudest && loudest !== tc.speaker && (now - lastSpokeMs > SPEAKER_HOLD_MS || !tc.speaker)) {
    tc.speaker = loudest;
    renderStage();
  }
  if (loudest && loudest === tc.speaker) lastSpokeMs = now;
}

// Quality levels: 3 good, 2 fair, 1 poor (thresholds of common video-call practice).
function qualityLevel({ lossPct, rttMs }) {
  if (lossPct > 10 || rttMs > 600) return 1;
  if (lossPct > 3 || rttMs > 300) return 2;
  return 3;
}

let previousStats = new Map(); // inbound-rtp id -> {bytes, packets, lost, timeMs}
function measureQuality(stats, inbound) {
  let rttMs = 0;
  stats.forEach((report) => {
    if (report.type === "candidate-pair" && report.nominated && report.currentRoundTripTime !== undefined) {
      rttMs = report.currentRoundTripTime * 1000;
    }
  });
  const per = new Map(); // participant -> {bits, seconds, packets, lost}
  const next = new Map();
  for (const report of inbound) {
    const owner = ownerOf(report);
    const before = previousStats.get(report.id);
    next.set(report.id, { bytes: report.bytesReceived, packets: report.packetsReceived, lost: report.packetsLost, timeMs: report.timestamp });
    if (!owner || !before) continue;
    const sum = per.get(owner) || { bits: 0, seconds: 0, packets: 0, lost: 0 };
    sum.bits += 8 * (report.bytesReceived - before.bytes);
    sum.seconds = Math.max(sum.seconds, (report.timestamp - before.timeMs) / 1000);
    sum.packets += report.packetsReceived - before.packets;
    sum.lost += Math.max(0, report.packetsLost - before.lost);
    per.set(owner, sum);
  }
  previousStats = next;
  let totalBits = 0;
  let totalSeconds = 0;
  for (const [owner, sum] of per) {
    const lossPct = sum.packets + sum.lost > 0 ? (100 * sum.lost) / (sum.packets + sum.lost) : 0;
    const kbps = sum.seconds > 0 ? sum.bits / sum.seconds / 1000 : 0;
    totalBits += sum.bits;
    totalSeconds = Math.max(totalSeconds, sum.seconds);
    const quality = { lossPct, rttMs, kbps, level: qualityLevel({ lossPct, rttMs }) };
    tc.quality[owner] = quality;
    const tile = tileOf(owner);
    if (!tile) continue;
    const indicator = tile.querySelector(".quality");
    indicator.dataset.level = String(quality.level);
    const label = t("qualityLabel", {
      level: t(`quality.${quality.level}`),
      loss: lossPct.toFixed(1),
      rtt: Math.round(rttMs),
      kbps: Math.round(kbps),
    });
    indicator.setAttribute("aria-label", label);
    indicator.title = label;
  }
  tc.receivedKbps = totalSeconds > 0 ? totalBits / totalSeconds / 1000 : 0;
  proposeAudioOnly([...per.keys()].map((owner) => tc.quality[owner].level));
}

// When the link cannot carry video (every remote poor for POOR_WINDOWS windows in a row),
// audio only is proposed, once per session: a bar under the header, never a dialog.
const POOR_WINDOWS = 2;
let poorWindows = 0;
function proposeAudioOnly(levels) {
  const poor = levels.length > 0 && levels.every((level) => level === 1);
  poorWindows = poor ? poorWindows + 1 : 0;
  if (poorWindows < POOR_WINDOWS || tc.audioOnly || tc.audioOnlyProposed) return;
  tc.audioOnlyProposed = true;
  $("propose-audio-only").hidden = false;
}

setInterval(() => pollStats().catch((error) => console.warn("stats failed", error)), STATS_INTERVAL_MS);

// ---- the patient's live ECG (web/room-ecg.js) ---------------------------------------

function startEcg() {
  if (tc.ecgPanel) return;
  const elements = {
    panel: $("ecg-panel"),
    paper: $("ecg-paper"),
    grid: $("ecg-grid"),
    trace: $("ecg-trace"),
    hr: $("ecg-hr"),
    flags: $("ecg-flags"),
    patient: $("ecg-patient"),
    mode: $("ecg-mode"),
  };
  const panel = new RoomEcg({ token: tc.token, elements, t, lang, counters: tc.ecg });
  tc.ecgPanel = panel;
  panel.addEventListener("available", ({ detail }) => {
    $("toggle-ecg").hidden = !detail;
    // A stream shows at once, beside the video, unless the person closed the panel.
    showEcg(detail && tc.ecgOpen !== false);
  });
  panel.start();
}

function stopEcg() {
  if (tc.ecgPanel) tc.ecgPanel.stop();
  tc.ecgPanel = null;
}

function showEcg(on) {
  $("ecg-panel").hidden = !on;
  document.body.dataset.ecg = on ? "on" : "";
  if (on && tc.ecgPanel) tc.ecgPanel.layout();
  renderControls();
}

// The paper's scale follows the panel's width (window resized, drawer opened or closed);
// on a phone the self view moves below the panel (--ecg-h).
let ecgWidth = 0;
new ResizeObserver(() => {
  const panel = $("ecg-panel");
  document.body.style.setProperty("--ecg-h", `${panel.hidden ? 0 : panel.offsetHeight}px`);
  const width = $("ecg-paper").clientWidth;
  if (width && width !== ecgWidth && tc.ecgPanel) {
    ecgWidth = width;
    tc.ecgPanel.layout();
  }
}).observe($("ecg-panel"));

// ---- leave, end, rejoin ---------------------------------------------------------

function end(text) {
  tc.left = true;
  stopEcg();
  if (tc.media) tc.media.close();
  tc.media = null;
  if (tc.localStream) for (const track of tc.localStream.getTracks()) track.stop();
  tc.localStream = null;
  // The screen capture stops with the consult (closing a connection stops no track).
  for (const track of [tc.cameraTrack, tc.screenTrack]) if (track) track.stop();
  tc.cameraTrack = tc.screenTrack = null;
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  $("ended-text").textContent = text;
  $("count").hidden = true;
  show("ended");
}

function leave() {
  tc.left = true;
  if (tc.signaling) tc.signaling.leave();
  end(t("left"));
}

// The self view is dragged to any corner of the stage (it snaps to the nearest on
// release) or sent round the corners by its move button (keyboard and screen readers).
const CORNERS = ["tr", "tl", "bl", "br"];

function placeSelf(corner) {
  const tile = $("self-tile");
  tile.dataset.corner = corner;
  try {
    localStorage.setItem("tc.selfCorner", corner);
  } catch {
    // private mode: the corner is not remembered
  }
}

function bindSelfView() {
  const tile = $("self-tile");
  let saved = null;
  try {
    saved = localStorage.getItem("tc.selfCorner");
  } catch {
    saved = null;
  }
  if (CORNERS.includes(saved)) tile.dataset.corner = saved;
  $("self-move").addEventListener("click", () => {
    const next = CORNERS[(CORNERS.indexOf(tile.dataset.corner) + 1) % CORNERS.length];
    placeSelf(next);
  });
  let drag = null;
  tile.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || e.target.closest("button")) return;
    drag = { id: e.pointerId, x: e.clientX, y: e.clientY };
    tile.setPointerCapture(e.pointerId);
    tile.classList.add("dragging");
  });
  tile.addEventListener("pointermove", (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    tile.style.transform = `translate(${e.clientX - drag.x}px, ${e.clientY - drag.y}px)`;
  });
  const drop = (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    drag = null;
    const box = tile.getBoundingClientRect();
    const stage = $("stage").getBoundingClientRect();
    const left = box.left + box.width / 2 < stage.left + stage.width / 2;
    const top = box.top + box.height / 2 < stage.top + stage.height / 2;
    tile.style.transform = "";
    tile.classList.remove("dragging");
    placeSelf((top ? "t" : "b") + (left ? "l" : "r"));
  };
  tile.addEventListener("pointerup", drop);
  tile.addEventListener("pointercancel", drop);
}

// Rejoin from the end screen: back to the lobby with the camera, then Join again.
async function rejoin() {
  tc.signaling = null;
  tc.me = null;
  tc.participants.clear();
  tc.waiting.clear();
  for (const tile of document.querySelectorAll(".tile.remote")) tile.remove();
  show("lobby");
  $("lobby-error").hidden = true;
  tc.devices = openDevices();
  await tc.devices;
  renderPreviewToggles();
  $("join").disabled = false;
}

// ---- start ----------------------------------------------------------------------

async function main() {
  translatePage();
  setConnState("idle");
  const title = params.get("title");
  if (title) {
    $("room-title").textContent = title;
    document.title = `${title} · ${t("title")}`;
  }
  $("join").addEventListener("click", join);
  $("leave").addEventListener("click", leave);
  $("waiting-leave").addEventListener("click", leave);
  $("rejoin").addEventListener("click", rejoin);
  $("enable-sound").addEventListener("click", enableSound);
  $("preview-audio").addEventListener("click", () => togglePreview("audio"));
  $("preview-video").addEventListener("click", () => togglePreview("video"));
  // Join publishes what tc.devices opens: the latest choice.
  $("camera-select").addEventListener("change", (e) => (tc.devices = openDevices(e.target.value, $("mic-select").value)));
  $("mic-select").addEventListener("change", (e) => (tc.devices = openDevices($("camera-select").value, e.target.value)));
  $("toggle-audio").addEventListener("click", () => toggleLocal("audio"));
  $("toggle-video").addEventListener("click", () => toggleLocal("video"));
  $("toggle-screen").addEventListener("click", () => toggleScreen());
  bindSelfView();
  $("toggle-audio-only").addEventListener("click", () => setAudioOnly(!tc.audioOnly));
  $("accept-audio-only").addEventListener("click", () => setAudioOnly(true));
  $("dismiss-audio-only").addEventListener("click", () => ($("propose-audio-only").hidden = true));
  $("toggle-hand").addEventListener("click", () => {
    const raised = tc.me && tc.hands.has(tc.me.participant_id);
    tc.signaling.send({ type: "raise_hand", raised: !raised });
  });
  $("toggle-layout").addEventListener("click", () => {
    tc.layout = tc.layout === "gallery" ? "speaker" : "gallery";
    renderControls();
    renderStage();
  });
  $("toggle-fullscreen").addEventListener("click", () => {
    if (document.fullscreenElement) document.exitFullscreen();
    else $("room").requestFullscreen().catch((error) => console.warn("full screen refused", error));
  });
  document.addEventListener("fullscreenchange", renderControls);
  $("toggle-ecg").addEventListener("click", () => {
    tc.ecgOpen = $("ecg-panel").hidden;
    showEcg(tc.ecgOpen);
  });
  $("ecg-mode").addEventListener("click", () => tc.ecgPanel && tc.ecgPanel.toggleMode());
  $("toggle-chat").addEventListener("click", () => openDrawer("chat"));
  $("toggle-people").addEventListener("click", () => openDrawer("people"));
  $("admit-all").addEventListener("click", () => tc.signaling.send({ type: "admit_all" }));
  $("end-all").addEventListener("click", () => $("end-dialog").showModal());
  $("end-confirm").addEventListener("click", () => {
    $("end-dialog").close();
    tc.signaling.send({ type: "end_room" });
  });
  $("end-cancel").addEventListener("click", () => $("end-dialog").close());
  $("remove-only").addEventListener("click", () => remove(false));
  $("remove-ban").addEventListener("click", () => remove(true));
  $("remove-cancel").addEventListener("click", () => $("remove-dialog").close());
  $("deny-form").addEventListener("submit", () => {
    const message = $("deny-message").value.trim();
    if (denyTarget) tc.signaling.send({ type: "deny", participant_id: denyTarget, message: message || null });
    denyTarget = null;
  });
  $("deny-cancel").addEventListener("click", () => $("deny-dialog").close());
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("chat-text");
    const text = input.value.trim();
    if (text && tc.signaling) tc.signaling.send({ type: "chat", text });
    input.value = "";
  });
  renderControls();
  if (!tc.token && params.get("room")) {
    const problem = await mintRoomToken(params.get("room"));
    if (problem) {
      lobbyError(problem);
      for (const id of ["preview-audio", "preview-video", "camera-select", "mic-select"]) $(id).disabled = true;
      return;
    }
  }
  const problem = checkToken();
  if (problem) {
    lobbyError(problem);
    for (const id of ["preview-audio", "preview-video", "camera-select", "mic-select"]) $(id).disabled = true;
    return;
  }
  const claims = decodeClaims(tc.token);
  $("lobby-who").textContent = t("joiningAs", { name: claims.name || claims.sub || "?" });
  tc.devices = openDevices();
  if (tc.autojoin) join();
  await tc.devices;
  renderPreviewToggles();
  $("join").disabled = tc.signaling !== null;
}

main();
