// Every string shown to people, in English and Chinese. The language comes from
// navigator.language (or ?lang=zh|en); codes from the server map to these keys.

const STRINGS = {
  en: {
    title: "teleconsult",
    join: "Join",
    leave: "Leave",
    you: "You",
    chat: "Chat",
    send: "Send",
    chatPlaceholder: "Message",
    waiting: "Waiting for the moderator to admit you…",
    waitingList: "Waiting room",
    admit: "Admit",
    muteMic: "Mute microphone",
    unmuteMic: "Unmute microphone",
    muteCam: "Turn camera off",
    unmuteCam: "Turn camera on",
    muteTheirMic: "Mute mic",
    muteTheirCam: "Stop camera",
    remove: "Remove",
    recordingOn: "Recording",
    startRecording: "Start recording",
    stopRecording: "Stop recording",
    recordingStarted: "This consult is now being recorded.",
    recordingStopped: "Recording stopped.",
    recordingFailed: "Recording stopped by an error: {reason}",
    enableSound: "Click to enable sound",
    noToken: "This link has no token: ask for a new invitation.",
    noDevices: "Camera or microphone unavailable: you can still join.",
    joiningAs: "You will join as {name}.",
    left: "You left the consult.",
    removedYou: "A moderator removed you from the consult.",
    replaced: "You joined from another window; this one is closed.",
    "state.idle": "",
    "state.connecting": "Connecting…",
    "state.connected": "Connected",
    "state.reconnecting": "Connection lost, reconnecting…",
    "state.disconnected": "Disconnected",
    "state.media-failed": "Media connection failed",
    "left.left": "{name} left",
    "left.removed": "{name} was removed",
    "left.timeout": "{name} lost their connection",
    "left.replaced": "{name} rejoined",
    "left.disconnected": "{name} left the waiting room",
    joinedMsg: "{name} joined",
    waitingMsg: "{name} is waiting to be admitted",
    mutedBy: "{by} muted your {kind}",
    "kind.audio": "microphone",
    "kind.video": "camera",
    "error.invalid_token": "This invitation is not valid.",
    "error.token_expired": "This invitation has expired.",
    "error.token_not_yet_valid": "This invitation is not valid yet.",
    "error.banned": "You were removed from this consult.",
    "error.forbidden": "You are not allowed to do that.",
    "error.rate_limited": "Too many messages; slow down.",
    "error.removed": "A moderator removed you from the consult.",
    "error.replaced": "You joined from another window.",
    "error.media_failed": "The media connection failed.",
    "error.generic": "Error: {reason}",
  },
  zh: {
    title: "远程会诊",
    join: "加入",
    leave: "离开",
    you: "我",
    chat: "聊天",
    send: "发送",
    chatPlaceholder: "输入消息",
    waiting: "正在等待主持人允许您进入…",
    waitingList: "等候室",
    admit: "允许进入",
    muteMic: "关闭麦克风",
    unmuteMic: "打开麦克风",
    muteCam: "关闭摄像头",
    unmuteCam: "打开摄像头",
    muteTheirMic: "静音",
    muteTheirCam: "关闭其摄像头",
    remove: "移出",
    recordingOn: "录制中",
    startRecording: "开始录制",
    stopRecording: "停止录制",
    recordingStarted: "本次会诊正在录制。",
    recordingStopped: "录制已停止。",
    recordingFailed: "录制因错误停止：{reason}",
    enableSound: "点击开启声音",
    noToken: "链接中没有令牌，请重新获取邀请。",
    noDevices: "无法使用摄像头或麦克风，仍可加入。",
    joiningAs: "您将以 {name} 的身份加入。",
    left: "您已离开会诊。",
    removedYou: "主持人已将您移出会诊。",
    replaced: "您已在另一个窗口加入，本窗口已关闭。",
    "state.idle": "",
    "state.connecting": "正在连接…",
    "state.connected": "已连接",
    "state.reconnecting": "连接中断，正在重连…",
    "state.disconnected": "已断开",
    "state.media-failed": "媒体连接失败",
    "left.left": "{name} 已离开",
    "left.removed": "{name} 已被移出",
    "left.timeout": "{name} 连接已断开",
    "left.replaced": "{name} 重新加入",
    "left.disconnected": "{name} 离开了等候室",
    joinedMsg: "{name} 已加入",
    waitingMsg: "{name} 正在等候进入",
    mutedBy: "{by} 关闭了您的{kind}",
    "kind.audio": "麦克风",
    "kind.video": "摄像头",
    "error.invalid_token": "邀请无效。",
    "error.token_expired": "邀请已过期。",
    "error.token_not_yet_valid": "邀请尚未生效。",
    "error.banned": "您已被移出本次会诊。",
    "error.forbidden": "您没有此权限。",
    "error.rate_limited": "消息过多，请稍候。",
    "error.removed": "主持人已将您移出会诊。",
    "error.replaced": "您已在另一个窗口加入。",
    "error.media_failed": "媒体连接失败。",
    "error.generic": "错误：{reason}",
  },
};

export function pickLanguage(requested, browser) {
  const wanted = (requested || browser || "en").toLowerCase();
  return wanted.startsWith("zh") ? "zh" : "en";
}

export const lang = pickLanguage(
  new URLSearchParams(location.search).get("lang"),
  navigator.language,
);

// The string for `key` with {placeholders} filled in; the key itself if missing.
export function t(key, values = {}) {
  const template = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

// Fill every element carrying data-i18n / data-i18n-placeholder.
export function translatePage(root = document) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
}

export const languages = Object.keys(STRINGS);
export const keysOf = (language) => Object.keys(STRINGS[language]);
