// The consult room page: /join?token=JWT[&autojoin=1][&relay=1][&lang=zh|en][&w=&h=&fps=]
//
// Lobby (preview + Join) -> waiting room (if not a moderator) -> room. Everything the
// server says is handled in onMessage; the DOM is updated by small render functions.
// window.tc exposes the client's state for tests and diagnostics.

import { MediaSession } from "/static/media.js";
import { Signaling } from "/static/signaling.js";
import { t, translatePage } from "/static/i18n.js";

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
  waiting: new Map(), // participant_id -> Participant, for moderators
  chat: [],
  notices: [],
  recording: false, // the room is being recorded (docs/recording.md)
  firstFrameMs: null, // performance.now() when the first remote video frame was rendered
  marks: {}, // name -> performance.now() of the first time it happened (diagnostics, bench)
  localStream: null,
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

function show(screen) {
  tc.screen = screen;
  for (const id of ["lobby", "waiting", "room", "ended"]) $(id).hidden = id !== screen;
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

function decodeClaims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))));
  } catch {
    return {};
  }
}

// ---- lobby ----------------------------------------------------------------------

async function openDevices() {
  const number = (key, fallback) => Number(params.get(key)) || fallback;
  try {
    tc.localStream = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: {
        width: { ideal: number("w", 640) },
        height: { ideal: number("h", 360) },
        frameRate: { ideal: number("fps", 24) },
      },
    });
    $("preview").srcObject = tc.localStream;
    $("self").srcObject = tc.localStream;
    mark("devices");
  } catch (error) {
    console.warn("getUserMedia failed", error);
    $("lobby-error").textContent = t("noDevices");
    $("lobby-error").hidden = false;
  }
}

function join() {
  mark("join");
  $("join").disabled = true;
  const signaling = new Signaling(tc.token);
  tc.signaling = signaling;
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
  waiting() {
    show("waiting");
  },
  admitted() {},
  joined(message) {
    tc.me = message;
    if (tc.media) tc.media.close(); // resume: fresh peer connections (docs/signaling.md)
    tc.participants.clear();
    tc.streamOwner.clear();
    for (const tile of document.querySelectorAll(".tile.remote")) tile.remove();
    for (const participant of message.participants) addParticipant(participant);
    $("moderation").hidden = !message.permissions.includes("moderate");
    tc.recording = Boolean(message.recording);
    if (message.permissions.includes("moderate")) ensureRecordingToggle();
    renderRecording();
    show("room");
    startMedia(message.ice_servers);
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
    tc.waiting.set(participant.participant_id, participant);
    renderWaitingList();
    toast(t("waitingMsg", { name: participant.name }));
  },
  participant_left({ participant_id, reason }) {
    const name = nameOf(participant_id);
    tc.waiting.delete(participant_id);
    renderWaitingList();
    removeParticipant(participant_id);
    toast(t(`left.${reason}`, { name }));
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
  },
  track_ended({ participant_id, track_id }) {
    const participant = tc.participants.get(participant_id);
    if (participant) participant.tracks = participant.tracks.filter((x) => x.track_id !== track_id);
  },
  muted({ participant_id, kind, muted, by }) {
    if (tc.me && participant_id === tc.me.participant_id) {
      if (muted && by !== tc.me.participant_id) {
        setLocalEnabled(kind, false);
        toast(t("mutedBy", { by: nameOf(by), kind: t(`kind.${kind}`) }));
      }
      return;
    }
    const participant = tc.participants.get(participant_id);
    if (!participant) return;
    participant[`${kind}_muted`] = muted;
    renderTile(participant_id);
  },
  chat(message) {
    tc.chat.push(message);
    const when = new Date(message.time).toLocaleTimeString();
    const item = el("li");
    item.append(el("time", { datetime: message.time }, when), el("b", {}, `${message.name}: `));
    item.append(document.createTextNode(message.text));
    $("chat-log").append(item);
    item.scrollIntoView({ block: "end" });
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
  pong() {},
  error({ code, reason }) {
    if (code === "removed" || code === "replaced" || code === "banned") {
      end(t(code === "replaced" ? "replaced" : "removedYou"));
      return;
    }
    const key = `error.${code}`;
    const text = t(key);
    toast(text === key ? t("error.generic", { reason }) : text);
  },
};

// ---- recording: indicator for everyone, consent toggle for moderators -------------

function renderRecording() {
  let badge = $("rec");
  if (!badge) {
    badge = el("span", { id: "rec", class: "rec", role: "status" });
    $("conn").before(badge);
  }
  badge.textContent = t("recordingOn");
  badge.hidden = !tc.recording;
  const toggle = $("toggle-recording");
  if (toggle) {
    toggle.textContent = t(tc.recording ? "stopRecording" : "startRecording");
    toggle.setAttribute("aria-pressed", String(tc.recording));
  }
}

function ensureRecordingToggle() {
  if ($("toggle-recording")) return;
  const toggle = el("button", { id: "toggle-recording", type: "button" });
  // The server answers with a `recording` event to everyone; the button follows it.
  toggle.addEventListener("click", () => tc.signaling.send({ type: "set_recording", on: !tc.recording }));
  $("leave").before(toggle);
}

function onClosed({ code }) {
  if (tc.screen === "ended") return;
  if (code === 1000 && tc.left) return;
  if (tc.screen === "lobby" || tc.screen === "waiting" || code >= 4000) {
    end(tc.notices.at(-1) || t("state.disconnected"));
  }
}

// ---- participants and their video -----------------------------------------------

function addParticipant(participant) {
  if (participant.state === "waiting") {
    tc.waiting.set(participant.participant_id, participant);
    renderWaitingList();
    return;
  }
  tc.participants.set(participant.participant_id, participant);
  ensureTile(participant);
  for (const track of participant.tracks || []) learnStream(participant.participant_id, track.stream_id);
  renderTile(participant.participant_id);
}

function removeParticipant(participantId) {
  tc.participants.delete(participantId);
  for (const [streamId, owner] of tc.streamOwner) if (owner === participantId) tc.streamOwner.delete(streamId);
  const tile = document.querySelector(`.tile[data-participant="${CSS.escape(participantId)}"]`);
  if (tile) tile.remove();
}

function ensureTile(participant) {
  const selector = `.tile[data-participant="${CSS.escape(participant.participant_id)}"]`;
  let tile = document.querySelector(selector);
  if (tile) return tile;
  tile = el("div", { class: "tile remote", "data-participant": participant.participant_id });
  const video = el("video", { "data-identity": participant.identity, autoplay: "", playsinline: "" });
  const label = el("span", { class: "name" }, participant.name);
  const badges = el("span", { class: "badges" });
  tile.append(video, label, badges);
  if (tc.me && tc.me.permissions.includes("moderate")) {
    const controls = el("div", { class: "mod-controls" });
    const button = (key, action) => {
      const b = el("button", { type: "button", "data-action": action }, t(key));
      b.addEventListener("click", () => moderate(action, participant.participant_id));
      controls.append(b);
    };
    button("muteTheirMic", "mute-audio");
    button("muteTheirCam", "mute-video");
    button("remove", "remove");
    tile.append(controls);
  }
  $("grid").append(tile);
  return tile;
}

function renderTile(participantId) {
  const participant = tc.participants.get(participantId);
  const tile = document.querySelector(`.tile[data-participant="${CSS.escape(participantId)}"]`);
  if (!participant || !tile) return;
  tile.dataset.state = participant.state;
  tile.querySelector(".badges").textContent =
    (participant.audio_muted ? "🔇" : "") + (participant.video_muted ? "📷✕" : "");
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

function onRemoteTrack({ streams }) {
  mark("track");
  const stream = streams[0];
  if (!stream) return;
  const owner = tc.streamOwner.get(stream.id);
  if (owner) attachStream(owner, stream);
  else tc.pendingStreams.set(stream.id, stream);
}

function attachStream(participantId, stream) {
  const tile = document.querySelector(`.tile[data-participant="${CSS.escape(participantId)}"]`);
  if (!tile) return;
  const video = tile.querySelector("video");
  if (video.srcObject !== stream) video.srcObject = stream;
  if (tc.firstFrameMs === null && "requestVideoFrameCallback" in video) {
    video.requestVideoFrameCallback(() => {
      if (tc.firstFrameMs === null) tc.firstFrameMs = performance.now();
      mark("firstFrame");
    });
  }
  // Autoplay with sound may be refused without a click: play muted, offer sound.
  video.play().catch(() => {
    video.muted = true;
    video.play().catch(() => {});
    if (!tile.querySelector(".enable-sound")) {
      const button = el("button", { type: "button", class: "enable-sound" }, t("enableSound"));
      button.addEventListener("click", () => {
        for (const v of document.querySelectorAll(".tile.remote video")) v.muted = false;
        for (const b of document.querySelectorAll(".enable-sound")) b.remove();
      });
      tile.append(button);
    }
  });
}

// ---- media ----------------------------------------------------------------------

function startMedia(iceServers) {
  const media = new MediaSession({
    iceServers,
    relay: tc.relay,
    send: (message) => tc.signaling.send(message),
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
    .then(() => media.publish(tc.localStream))
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

function setLocalEnabled(kind, enabled) {
  const tracks = tc.localStream ? tc.localStream.getTracks().filter((x) => x.kind === kind) : [];
  for (const track of tracks) track.enabled = enabled;
  const button = $(kind === "audio" ? "toggle-audio" : "toggle-video");
  button.dataset.muted = String(!enabled);
  button.textContent = t(kind === "audio" ? (enabled ? "muteMic" : "unmuteMic") : enabled ? "muteCam" : "unmuteCam");
}

function toggleLocal(kind) {
  const button = $(kind === "audio" ? "toggle-audio" : "toggle-video");
  const enable = button.dataset.muted === "true";
  setLocalEnabled(kind, enable);
  tc.signaling.send({ type: enable ? "unmute" : "mute", kind });
}

// ---- moderation, chat, leave ----------------------------------------------------

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
    item.append(admit);
    list.append(item);
  }
}

function moderate(action, participantId) {
  if (action === "remove") tc.signaling.send({ type: "remove", participant_id: participantId, reason: null });
  else tc.signaling.send({ type: "mute", kind: action.slice("mute-".length), participant_id: participantId });
}

function end(text) {
  tc.left = true;
  if (tc.media) tc.media.close();
  if (tc.localStream) for (const track of tc.localStream.getTracks()) track.stop();
  $("ended-text").textContent = text;
  show("ended");
}

function leave() {
  tc.left = true;
  if (tc.signaling) tc.signaling.leave();
  end(t("left"));
}

// ---- start ----------------------------------------------------------------------

async function main() {
  translatePage();
  setConnState("idle");
  $("join").addEventListener("click", join);
  $("leave").addEventListener("click", leave);
  $("waiting-leave").addEventListener("click", leave);
  $("toggle-audio").addEventListener("click", () => toggleLocal("audio"));
  $("toggle-video").addEventListener("click", () => toggleLocal("video"));
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("chat-text");
    const text = input.value.trim();
    if (text && tc.signaling) tc.signaling.send({ type: "chat", text });
    input.value = "";
  });
  if (!tc.token) {
    $("lobby-error").textContent = t("noToken");
    $("lobby-error").hidden = false;
    return;
  }
  const claims = decodeClaims(tc.token);
  $("lobby-who").textContent = t("joiningAs", { name: claims.name || claims.sub || "?" });
  tc.devices = openDevices();
  if (tc.autojoin) join();
  await tc.devices;
  $("join").disabled = tc.signaling !== null;
}

main();
