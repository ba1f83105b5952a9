// The home page of a logged-in person: who they are, where to go (consults, ECGs,
// administration), and joining a consult room with a token the server mints for the
// session (no command line, nothing to copy).

import { api, ApiFailure, showError, t, translatePage } from "/static/auth.js";

const $ = (id) => document.getElementById(id);

async function load() {
  let me = null;
  try {
    me = await api("GET", "/me");
  } catch (failure) {
    if (!(failure instanceof ApiFailure && failure.status === 401)) throw failure;
  }
  if (!me) {
    $("signed-out").hidden = false;
    $("login-link").href = "/static/login.html?next=/" + location.search;
    document.body.dataset.ready = "true";
    return;
  }
  window.tc = { me };
  $("who").textContent = t("signedInAs", { name: `${me.display_name} (${me.institution || "—"})` });
  $("logout").hidden = false;
  $("signed-in").hidden = false;
  $("link-admin").hidden = !me.roles.includes("admin");
  $("link-audit").hidden = !me.roles.includes("auditor");
  const clinical = ["doctor", "expert", "coordinator", "ecg_reader"].some((r) => me.roles.includes(r));
  $("join-form").hidden = !clinical;
  $("link-ecg").parentElement.hidden = !clinical;
  $("link-consults").hidden = !clinical;
  $("link-readings").hidden = !["doctor", "ecg_reader"].some((r) => me.roles.includes(r));
  document.body.dataset.ready = "true";
}

async function join(event) {
  event.preventDefault();
  $("join-error").hidden = true;
  const room = $("room").value.trim();
  try {
    const answer = await api("POST", `/rooms/${encodeURIComponent(room)}/token`);
    location.assign(`${answer.join_path}?token=${encodeURIComponent(answer.token)}${langSuffix()}`);
  } catch (failure) {
    showError($("join-error"), failure);
  }
}

function langSuffix() {
  const language = new URLSearchParams(location.search).get("lang");
  return language ? `&lang=${encodeURIComponent(language)}` : "";
}

async function logout() {
  try {
    await api("POST", "/auth/logout");
  } finally {
    location.assign("/static/login.html" + location.search);
  }
}

translatePage();
$("join-form").addEventListener("submit", join);
$("logout").addEventListener("click", logout);
load().catch((error) => {
  $("signed-out").hidden = false;
  document.body.dataset.ready = "true";
  console.error(error);
});
