// Accounts in the browser: the API client (session cookie + CSRF header) and the strings
// of the login and admin pages, in English and Chinese.
//
// The session lives in the HttpOnly cookie tc_session, which scripts never see; every
// state-changing request sends X-CSRF-Token, read from the readable tc_csrf cookie the
// login set. Errors arrive as {"error": {"code", "reason"}}; the pages show the string
// of the code when there is one, else the server's reason.

import { pickLanguage } from "/static/i18n.js";

const STRINGS = {
  en: {
    loginTitle: "Log in",
    username: "Username",
    password: "Password",
    totp: "One-time code",
    logIn: "Log in",
    enrolTotp: "Your role requires a second factor. Add this key to your authenticator app (it is shown once):",
    enrolDone: "Done",
    logOut: "Log out",
    adminTitle: "Administration",
    institutions: "Institutions",
    people: "People",
    devices: "Devices",
    code: "Code",
    name: "Name",
    level: "Level",
    parent: "Parent",
    noParent: "(none: a root)",
    create: "Create",
    displayName: "Display name",
    roles: "Roles",
    institution: "Institution",
    specialty: "Specialty",
    title: "Title",
    deviceId: "Device id",
    register: "Register",
    revoke: "Revoke",
    revoked: "revoked",
    credentialOnce: "Credential of {id} (shown once, copy it to the cart now):",
    created: "Created {what}.",
    search: "Search",
    relations: "Service relations",
    provider: "Provider",
    client: "Client",
    kind: "Service",
    override: "Change",
    save: "Save",
    clear: "Clear",
    "kind.ecg": "ECG reading",
    "kind.consult": "Consults",
    "override.added": "serves (added)",
    "override.removed": "does not serve (removed)",
    signedInAs: "Signed in as {name}",
    homeTitle: "teleconsult",
    homeSignedOut: "Log in to see your consults and ECGs.",
    homeConsults: "Consults",
    homeEcg: "Live and stored ECGs",
    homeReadings: "ECG centre: readings and critical values",
    homeJoin: "Join a consult room",
    homeRoom: "Room",
    homeJoinButton: "Join",
    auditTitle: "Audit trail",
    "error.no_clinical_role": "Only doctors, experts, coordinators and ECG readers join consults.",
    "error.bad_room": "A room is 1 to 128 letters, digits and _ . : -",
    "level.province": "Province",
    "level.city": "City",
    "level.county": "County",
    "level.township": "Township",
    "level.village": "Village",
    "role.doctor": "Doctor",
    "role.expert": "Expert",
    "role.coordinator": "Coordinator",
    "role.ecg_reader": "ECG reader",
    "role.admin": "Admin",
    "role.auditor": "Auditor",
    "error.login_failed": "Username or password is wrong.",
    "error.account_locked": "This account is locked after repeated failed logins. Ask an admin.",
    "error.totp_required": "Enter the one-time code from your authenticator app.",
    "error.throttled": "Too many attempts. Try again later.",
    "error.session_invalid": "You are not logged in, or your session has expired.",
    "error.csrf_failed": "Your session is out of date: reload the page.",
    "error.not_found": "Not found.",
    "error.conflict": "It exists already.",
    "error.forbidden": "You are not allowed to do that.",
    "error.password_rejected": "Password refused: {reason}",
    "error.invalid_input": "Invalid: {reason}",
    "error.invalid_body": "Invalid: {reason}",
    "error.generic": "Error: {reason}",
  },
  zh: {
    loginTitle: "登录",
    username: "用户名",
    password: "密码",
    totp: "动态验证码",
    logIn: "登录",
    enrolTotp: "您的角色要求启用双重验证。请将此密钥添加到身份验证器应用（仅显示一次）：",
    enrolDone: "完成",
    logOut: "退出",
    adminTitle: "系统管理",
    institutions: "机构",
    people: "人员",
    devices: "设备",
    code: "编码",
    name: "名称",
    level: "级别",
    parent: "上级机构",
    noParent: "（无：顶级）",
    create: "创建",
    displayName: "姓名",
    roles: "角色",
    institution: "所属机构",
    specialty: "专科",
    title: "职称",
    deviceId: "设备编号",
    register: "登记",
    revoke: "吊销",
    revoked: "已吊销",
    credentialOnce: "{id} 的凭据（仅显示一次，请立即配置到设备）：",
    created: "已创建 {what}。",
    search: "搜索",
    relations: "服务关系",
    provider: "服务方",
    client: "被服务方",
    kind: "服务类型",
    override: "调整",
    save: "保存",
    clear: "清除",
    "kind.ecg": "心电诊断",
    "kind.consult": "会诊",
    "override.added": "提供服务（新增）",
    "override.removed": "不提供服务（取消）",
    signedInAs: "当前用户：{name}",
    homeTitle: "远程会诊",
    homeSignedOut: "请登录查看您的会诊和心电图。",
    homeConsults: "会诊",
    homeEcg: "实时与存储的心电图",
    homeReadings: "心电诊断中心：诊断与危急值",
    homeJoin: "进入会诊室",
    homeRoom: "会诊室",
    homeJoinButton: "进入",
    auditTitle: "审计日志",
    "error.no_clinical_role": "只有医生、专家、协调员和心电阅图医生可以进入会诊。",
    "error.bad_room": "会诊室编号为 1 至 128 个字母、数字或 _ . : -",
    "level.province": "省",
    "level.city": "市",
    "level.county": "县",
    "level.township": "乡镇",
    "level.village": "村",
    "role.doctor": "医生",
    "role.expert": "专家",
    "role.coordinator": "协调员",
    "role.ecg_reader": "心电诊断医师",
    "role.admin": "管理员",
    "role.auditor": "审计员",
    "error.login_failed": "用户名或密码错误。",
    "error.account_locked": "多次登录失败，账户已锁定，请联系管理员。",
    "error.totp_required": "请输入身份验证器中的动态验证码。",
    "error.throttled": "尝试次数过多，请稍后再试。",
    "error.session_invalid": "您尚未登录或会话已过期。",
    "error.csrf_failed": "会话已过期，请刷新页面。",
    "error.not_found": "未找到。",
    "error.conflict": "已存在。",
    "error.forbidden": "您无权执行此操作。",
    "error.password_rejected": "密码不符合要求：{reason}",
    "error.invalid_input": "输入无效：{reason}",
    "error.invalid_body": "输入无效：{reason}",
    "error.generic": "错误：{reason}",
  },
};

export const lang = pickLanguage(
  new URLSearchParams(location.search).get("lang"),
  navigator.language,
);

export function t(key, values = {}) {
  const table = STRINGS[lang] || STRINGS.en;
  const text = table[key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

// Fill every [data-i18n] element's text and [data-i18n-placeholder]'s placeholder.
export function translatePage(root = document) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
}

// An error answer of the API.
export class ApiFailure extends Error {
  constructor(status, code, reason) {
    super(reason);
    this.status = status;
    this.code = code;
    this.reason = reason;
  }

  // What to show a person.
  get message_() {
    const key = `error.${this.code}`;
    const known = t(key, { reason: this.reason });
    return known === key ? t("error.generic", { reason: this.reason }) : known;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

// One API call; the parsed JSON (null for 204), or an ApiFailure.
export async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const csrf = cookie("tc_csrf");
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  const answer = await fetch(`/api/v1${path}`, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (answer.status === 204) return null;
  const data = await answer.json().catch(() => null);
  if (!answer.ok) {
    const error = data && data.error ? data.error : { code: "generic", reason: answer.statusText };
    throw new ApiFailure(answer.status, error.code, error.reason);
  }
  return data;
}

// Show an error (ApiFailure or any other) in an element.
export function showError(el, error) {
  el.textContent = error instanceof ApiFailure ? error.message_ : t("error.generic", { reason: String(error) });
  el.hidden = false;
}
