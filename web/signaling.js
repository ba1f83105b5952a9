// The WebSocket side of the client: join, resume after a dropped connection, keep-alive.
// Messages are those of docs/signaling.md (protocol version 1).

export const PROTOCOL_VERSION = 1;
// Close codes after which reconnecting makes no sense (docs/signaling.md, close codes).
const FINAL_CLOSE_CODES = new Set([1000, 4400, 4401, 4403, 4408, 4409]);
const PING_INTERVAL_MS = 15000;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000];

export function socketUrl(loc = location) {
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/ws`;
}

// Events: "message" (detail: the server message), "state" (detail: idle, connecting,
// connected, reconnecting, disconnected), "reconnected" (detail: the new joined
// message is delivered as "message" first), "closed" (detail: {code, reason}).
export class Signaling extends EventTarget {
  constructor(token, url = socketUrl()) {
    super();
    this.token = token;
    this.url = url;
    this.ws = null;
    this.resumeId = null;
    this.graceS = 30;
    this.droppedAt = null;
    this.attempt = 0;
    this.finished = false;
    this.pingTimer = null;
  }

  setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  connect() {
    this.setState(this.droppedAt === null ? "connecting" : "reconnecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      // Within the grace period we resume our place; after it, we join afresh.
      const withinGrace =
        this.droppedAt !== null && performance.now() - this.droppedAt < this.graceS * 1000;
      ws.send(
        JSON.stringify({
          type: "join",
          token: this.token,
          version: PROTOCOL_VERSION,
          resume: withinGrace ? this.resumeId : null,
        }),
      );
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_INTERVAL_MS);
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "joined" || message.type === "waiting") {
        this.resumeId = message.resume_id;
        this.graceS = message.grace_s ?? this.graceS;
        this.droppedAt = null;
        this.attempt = 0;
        this.setState("connected");
      }
      this.dispatchEvent(new CustomEvent("message", { detail: message }));
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      clearInterval(this.pingTimer);
      const joinedOnce = this.resumeId !== null;
      if (this.finished || FINAL_CLOSE_CODES.has(event.code) || !joinedOnce) {
        this.finished = true;
        this.setState("disconnected");
        this.dispatchEvent(
          new CustomEvent("closed", { detail: { code: event.code, reason: event.reason } }),
        );
        return;
      }
      if (this.droppedAt === null) this.droppedAt = performance.now();
      this.setState("reconnecting");
      const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt += 1;
      setTimeout(() => this.connect(), delay);
    };
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  // Leave for good: the server closes with 1000.
  leave() {
    this.finished = true;
    if (!this.send({ type: "leave" }) && this.ws) this.ws.close(1000);
    clearInterval(this.pingTimer);
  }

  // Drop the connection as a network fault would (used by tests of resume).
  drop() {
    if (this.ws) this.ws.close(4000, "dropped");
  }
}
