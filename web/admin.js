// The admin pages: institutions (a tree), people and devices of what the admin reaches.
// Everything goes through the REST API (/api/v1) with the session cookie; what the
// server refuses is shown with its reason. Text is set with textContent, never HTML.

import { api, ApiFailure, showError, t, translatePage } from "/static/auth.js";

const LEVELS = ["province", "city", "county", "township", "village"];
const ROLES = ["doctor", "expert", "coordinator", "ecg_reader", "admin", "auditor"];
const KINDS = ["ecg", "consult"];
const OVERRIDES = ["added", "removed"];
const $ = (id) => document.getElementById(id);

const state = { me: null, institutions: [] };
window.tc = state;

function notice(text) {
  $("admin-error").hidden = true;
  $("admin-notice").textContent = text;
  $("admin-notice").hidden = false;
}

function fail(error) {
  $("admin-notice").hidden = true;
  showError($("admin-error"), error);
}

function option(value, label) {
  const el = document.createElement("option");
  el.value = value;
  el.textContent = label;
  return el;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.append(cell);
    else td.textContent = cell ?? "";
    tr.append(td);
  }
  return tr;
}

function fillInstitutionSelects() {
  const choices = state.institutions.map((i) => option(i.code, `${i.name} (${i.code})`));
  $("inst-parent").replaceChildren(option("", t("noParent")), ...choices.map((o) => o.cloneNode(true)));
  $("person-institution").replaceChildren(...choices.map((o) => o.cloneNode(true)));
  $("device-institution").replaceChildren(...choices.map((o) => o.cloneNode(true)));
  $("rel-provider").replaceChildren(...choices.map((o) => o.cloneNode(true)));
  $("rel-client").replaceChildren(...choices.map((o) => o.cloneNode(true)));
}

async function loadRelations() {
  const relations = await api("GET", "/relations");
  $("relations").replaceChildren(
    ...relations.map((r) => {
      const clear = document.createElement("button");
      clear.type = "button";
      clear.textContent = t("clear");
      clear.addEventListener("click", () => clearRelation(r));
      return row([r.provider, r.client, t(`kind.${r.kind}`), t(`override.${r.override}`), clear]);
    }),
  );
}

async function setRelation(event) {
  event.preventDefault();
  const body = {
    provider: $("rel-provider").value,
    client: $("rel-client").value,
    kind: $("rel-kind").value,
    override: $("rel-override").value,
  };
  try {
    await api("POST", "/relations", body);
    await loadRelations();
  } catch (error) {
    fail(error);
  }
}

async function clearRelation(r) {
  const path = [r.provider, r.client, r.kind].map(encodeURIComponent).join("/");
  try {
    await api("DELETE", `/relations/${path}`);
    await loadRelations();
  } catch (error) {
    fail(error);
  }
}

async function loadInstitutions() {
  const page = await api("GET", "/institutions?limit=500");
  state.institutions = page.items;
  $("institutions").replaceChildren(
    ...page.items.map((i) => row([i.code, i.name, t(`level.${i.level}`), i.parent])),
  );
  fillInstitutionSelects();
}

async function loadPeople() {
  const search = $("people-search").value.trim();
  const query = search ? `&search=${encodeURIComponent(search)}` : "";
  const page = await api("GET", `/people?limit=100${query}`);
  $("people").replaceChildren(
    ...page.items.map((p) =>
      row([p.username, p.display_name, p.roles.map((r) => t(`role.${r}`)).join(", "), p.institution, p.title]),
    ),
  );
}

async function loadDevices() {
  const page = await api("GET", "/devices?limit=500");
  $("devices").replaceChildren(
    ...page.items.map((d) => {
      let last;
      if (d.revoked) last = t("revoked");
      else {
        last = document.createElement("button");
        last.type = "button";
        last.className = "danger";
        last.textContent = t("revoke");
        last.dataset.device = d.id;
        last.addEventListener("click", () => revokeDevice(d.id));
      }
      return row([d.id, d.name, d.institution, last]);
    }),
  );
}

async function createInstitution(event) {
  event.preventDefault();
  const body = {
    code: $("inst-code").value.trim(),
    name: $("inst-name").value.trim(),
    level: $("inst-level").value,
    parent: $("inst-parent").value || null,
  };
  try {
    const made = await api("POST", "/institutions", body);
    $("institution-form").reset();
    await loadInstitutions();
    notice(t("created", { what: made.name }));
  } catch (error) {
    fail(error);
  }
}

async function createPerson(event) {
  event.preventDefault();
  const roles = [...$("person-roles").querySelectorAll("input:checked")].map((i) => i.value);
  const optional = (id) => $(id).value.trim() || null;
  const body = {
    username: $("person-username").value.trim().toLowerCase(),
    display_name: $("person-name").value.trim(),
    password: $("person-password").value,
    roles,
    institution: $("person-institution").value,
    specialty: optional("person-specialty"),
    title: optional("person-title"),
  };
  try {
    const made = await api("POST", "/people", body);
    $("person-form").reset();
    await loadPeople();
    notice(t("created", { what: made.display_name }));
  } catch (error) {
    fail(error);
  }
}

async function registerDevice(event) {
  event.preventDefault();
  const body = {
    id: $("device-id").value.trim(),
    name: $("device-name").value.trim(),
    institution: $("device-institution").value,
  };
  try {
    const made = await api("POST", "/devices", body);
    $("device-form").reset();
    $("device-credential-label").textContent = t("credentialOnce", { id: made.id });
    $("device-credential-value").textContent = made.credential;
    $("device-credential").hidden = false;
    await loadDevices();
  } catch (error) {
    fail(error);
  }
}

async function revokeDevice(id) {
  try {
    await api("POST", `/devices/${encodeURIComponent(id)}/revoke`);
    await loadDevices();
  } catch (error) {
    fail(error);
  }
}

async function logout() {
  try {
    await api("POST", "/auth/logout");
  } finally {
    location.assign("/static/login.html");
  }
}

function buildForms() {
  $("inst-level").replaceChildren(...LEVELS.map((l) => option(l, t(`level.${l}`))));
  $("rel-kind").replaceChildren(...KINDS.map((k) => option(k, t(`kind.${k}`))));
  $("rel-override").replaceChildren(...OVERRIDES.map((o) => option(o, t(`override.${o}`))));
  $("person-roles").append(
    ...ROLES.map((role) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = role;
      box.id = `role-${role}`;
      label.append(box, " ", t(`role.${role}`), " ");
      return label;
    }),
  );
}

async function start() {
  translatePage();
  buildForms();
  try {
    state.me = await api("GET", "/me");
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 401) {
      location.assign("/static/login.html?next=/static/admin.html");
      return;
    }
    fail(error);
    return;
  }
  $("who").textContent = t("signedInAs", { name: state.me.display_name });
  $("institution-form").addEventListener("submit", createInstitution);
  $("person-form").addEventListener("submit", createPerson);
  $("device-form").addEventListener("submit", registerDevice);
  $("relation-form").addEventListener("submit", setRelation);
  $("people-search").addEventListener("input", () => loadPeople().catch(fail));
  $("logout").addEventListener("click", logout);
  try {
    await Promise.all([loadInstitutions(), loadPeople(), loadDevices(), loadRelations()]);
    document.body.dataset.ready = "true";
  } catch (error) {
    fail(error);
  }
}

start();
