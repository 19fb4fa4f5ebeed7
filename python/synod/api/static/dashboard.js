// The synod dashboard: reads only through the API with the token given in the URL fragment
// (#token=...) or the form, kept in this tab's sessionStorage; refreshes every few seconds.
// Everything from the API is written with textContent, never parsed as HTML.
"use strict";

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);

function token() {
  const m = /(?:^|&)token=([^&]+)/.exec(location.hash.slice(1));
  if (m) {
    sessionStorage.setItem("synod-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("synod-token");
}

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  const body = await response.json();
  if (!response.ok) {
    const err = new Error(body.detail || response.statusText);
    err.status = response.status;
    throw err;
  }
  return body;
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  return td;
}

function fill(tableId, rows, columns) {
  const body = $(tableId).tBodies[0];
  const fresh = document.createElement("tbody");
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const column of columns) {
      const [value, cls] = column(row);
      tr.appendChild(cell(value, cls));
    }
    fresh.appendChild(tr);
  }
  body.replaceWith(fresh);
}

const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : null);
const short = (s) => (s && s.length > 18 ? s.slice(0, 8) + "…" + s.slice(-8) : s);

async function refresh() {
  const [withdrawals, balances, committee, sessions] = await Promise.all([
    api("/v1/withdrawals?limit=200&order=desc"),
    api("/v1/balances"),
    api("/v1/committee"),
    api("/v1/sessions?limit=20"),
  ]);
  const counts = {};
  for (const w of withdrawals.items) counts[w.state] = (counts[w.state] || 0) + 1;
  const chips = $("states");
  chips.replaceChildren(
    ...Object.entries(counts).map(([state, n]) => {
      const span = document.createElement("span");
      span.textContent = `${state} ${n}`;
      span.className = "state-" + state;
      return span;
    }),
  );
  fill("withdrawals", withdrawals.items.slice(0, 50), [
    (w) => [when(w.requested_at)],
    (w) => [w.external_id],
    (w) => [w.chain],
    (w) => [w.asset],
    (w) => [w.amount],
    (w) => [w.state, "state-" + w.state],
    (w) => [short(w.txid)],
    (w) => [w.signing_sessions.length],
    (w) => [w.culprits.join(", ") || "–"],
  ]);
  fill("balances", balances.items, [
    (b) => [b.chain], (b) => [b.asset], (b) => [b.deposited], (b) => [b.available],
    (b) => [b.reserved], (b) => [b.withdrawn], (b) => [b.fees], (b) => [b.external],
    (b) => [b.conserved ? "yes" : "NO", b.conserved ? "" : "bad"],
  ]);
  $("committee-summary").textContent =
    `threshold ${committee.threshold ?? "–"} of ${committee.members.length} members, ` +
    `epoch ${committee.epoch ?? "–"}`;
  fill("committee", committee.members, [
    (m) => [m.member_id], (m) => [m.name], (m) => [when(m.last_seen)],
    (m) => [m.culprit_count, m.culprit_count ? "bad" : ""],
  ]);
  fill("sessions", sessions.items, [
    (s) => [short(s.session_id)], (s) => [short(s.withdraw_id)], (s) => [s.attempt],
    (s) => [s.outcome], (s) => [s.culprits.join(", ") || "–"],
  ]);
  try {
    const audit = await api("/v1/audit?limit=15");
    $("audit-note").textContent = "";
    fill("audit", audit.items, [
      (a) => [a.seq], (a) => [when(a.at)], (a) => [a.actor], (a) => [a.action],
      (a) => [JSON.stringify(a.detail)],
    ]);
  } catch (err) {
    if (err.status !== 403) throw err;
    $("audit-note").textContent = "The audit trail needs an admin token.";
  }
}

async function tick() {
  if (!token()) {
    $("status").textContent = "no token";
    $("login").hidden = false;
    return;
  }
  try {
    await refresh();
    $("status").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
    document.body.dataset.loaded = "true";
  } catch (err) {
    $("status").textContent = "error: " + err.message;
    if (err.status === 401) $("login").hidden = false;
  }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("synod-token", $("token").value.trim());
  $("login").hidden = true;
  tick();
});
tick();
setInterval(tick, REFRESH_MS);
