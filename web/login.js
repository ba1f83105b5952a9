// The login page: username and password (and the one-time code when the account has a
// second factor), then on to the admin pages for an admin, the app for anyone else, or
// the page named by ?next= (same origin only).

import { api, ApiFailure, showError, translatePage } from "/static/auth.js";

const form = document.getElementById("login");
const error = document.getElementById("login-error");
const totpRow = document.getElementById("totp-row");

function nextPage(me) {
  const next = new URLSearchParams(location.search).get("next");
  // Only a path on this site: never an absolute or protocol-relative URL.
  if (next && next.startsWith("/") && !next.startsWith("//")) return next;
  return me.roles.includes("admin") ? "/static/admin.html" : "/";
}

async function submit(event) {
  event.preventDefault();
  error.hidden = true;
  const body = {
    username: document.getElementById("username").value.trim().toLowerCase(),
    password: document.getElementById("password").value,
  };
  const totp = document.getElementById("totp").value.trim();
  if (totp) body.totp = totp;
  try {
    const answer = await api("POST", "/auth/login", body);
    window.tc = { me: answer.me };
    const language = new URLSearchParams(location.search).get("lang");
    location.assign(nextPage(answer.me) + (language ? `?lang=${encodeURIComponent(language)}` : ""));
  } catch (failure) {
    if (failure instanceof ApiFailure && failure.code === "totp_required") {
      totpRow.hidden = false;
      document.getElementById("totp").focus();
    }
    showError(error, failure);
  }
}

translatePage();
form.addEventListener("submit", submit);
document.getElementById("username").focus();
