// Live notices: the server pushes `notify {topic, data, time}` over /ws to every
// connection of the person a step concerns (a request in the queue, an assignment, a
// signed opinion, a critical value...). A page that wants them opens one viewer
// connection with a token the server mints for the session (room "inbox": a room
// of nobody's, so it grants no stream and no media) and hears them here; it reconnects
// after a drop, minting a fresh token when the old one is refused.

import { api } from "/static/auth.js";

const INBOX = "inbox";

export function listenForNotices(onNotice) {
  let token = null;
  let delayMs = 1000;
  const open = async () => {
    try {
      if (!token) token = (await api("POST", `/rooms/${INBOX}/token`)).token;
    } catch (error) {
      // Not logged in, or no clinical role: no notices on this page.
      return;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    ws.onopen = () => ws.send(JSON.stringify({ type: "watch", token, version: 1 }));
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "watching") delayMs = 1000;
      if (message.type === "notify") onNotice(message);
      if (message.type === "error" && ["revoked", "token_expired", "invalid_token"].includes(message.code)) {
        token = null;
      }
    };
    ws.onclose = () => {
      setTimeout(open, delayMs);
      delayMs = Math.min(delayMs * 2, 30_000);
    };
  };
  open();
}

// The browser's own notification, where the person allowed it (asked on a click).
export function desktopNotice(title, body) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  try {
    new Notification(title, { body, tag: body });
  } catch (error) {
    // Some browsers allow notifications only from a service worker: the page's own
    // counter and list still show it.
  }
}
