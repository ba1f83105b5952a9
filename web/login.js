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
    if (answer.me.must_enrol_totp) {
      await enrol(answer.me);
      return;
    }
    const language = new URLSearchParams(location.search).get("lang");
    // The next page may carry a query of its own (/join?room=...): add lang to it.
    const target = new URL(nextPage(answer.me), location.origin);
    if (language) target.searchParams.set("lang", language);
    location.assign(target.pathname + target.search + target.hash);
  } catch (failure) {
    if (failure instanceof ApiFailure && failure.code === "totp_required") {
      totpRow.hidden = false;
      document.getElementById("totp").focus();
    }
    showError(error, failure);
  }
}

// A role of this person requires a second factor: enrol it now, show the secret once,
// and go on when the person has added it to their authenticator app.
async function enrol(me) {
  const secret = await api("POST", "/me/totp", {});
  form.hidden = true;
  document.getElementById("totp-secret").textContent = secret.secret;
  document.getElementById("totp-uri").textContent = secret.uri;
  document.getElementById("enrol").hidden = false;
  document.getElementById("enrol-done").addEventListener("click", () => {
    location.assign(nextPage(me));
  });
}

translatePage();
form.addEventListener("submit", submit);
document.getElementById("username").focus();
