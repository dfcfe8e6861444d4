"""The dashboard's page and script, served as they are (no text of the room is ever put in them).

The page is an empty frame; the script reads the admin token from the page's own address, asks
`/relay/state.json` every `REFRESH` seconds and builds the table with `textContent` only, so
nothing the room holds can become markup, and the Content-Security-Policy allows no inline
script at all. Actions are POSTs the script sends with the token in the form (the same form a
browser without script would send), then the state is read again at once.
"""

from __future__ import annotations

#: Seconds between the script's reads of the room's state.
REFRESH = 1.5

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Room relay</title>
<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: right; }
tr.revoked { color: #999; }
#problem { color: #b00; }
</style></head>
<body>
<h1>Room relay</h1>
<p id="problem" role="alert"></p>
<p class="room">Room total: <b id="spent">-</b> spent; sharing saved <b id="saved">-</b>;
upstream rate <b id="rate">-</b> requests/min.</p>
<p id="counts"></p>
<table><thead><tr><th>seat</th><th>state</th><th>spent</th><th>budget</th><th>images</th>
<th>saved</th><th>failed</th><th>over budget</th><th>last (UTC)</th><th></th></tr></thead>
<tbody id="seats"></tbody></table>
<p><a id="csv" download="ledger.csv">ledger as CSV</a> &middot; updated <span id="updated">-</span></p>
<script src="/relay/dashboard.js"></script>
</body></html>
"""

SCRIPT = """"use strict";
const REFRESH_MS = @REFRESH_MS@;
const token = new URLSearchParams(location.search).get("token") || "";
const rows = new Map();
const OFFLINE = "The relay did not answer; retrying.";
const $ = (id) => document.getElementById(id);
const usd = (v, places) => "$" + Number(v).toFixed(places);
$("csv").href = "/relay/ledger.csv?token=" + encodeURIComponent(token);

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

async function act(seat, fields) {
  const form = new URLSearchParams({token: token, ...fields});
  const answer = await fetch("/relay/seats/" + seat, {method: "POST", body: form,
    headers: {"Accept": "application/json"}});
  $("problem").textContent = answer.ok ? "" : await answer.text();
  await refresh();
}

function newRow(seat) {
  const tr = document.createElement("tr");
  tr.dataset.seat = String(seat);
  const cells = [];
  for (let i = 0; i < 9; i++) cells.push(cell(tr, ""));
  const tools = cell(tr, "");
  const budget = document.createElement("input");
  budget.size = 6;
  budget.name = "budget";
  budget.setAttribute("aria-label", "budget of seat " + seat);
  const set = document.createElement("button");
  set.textContent = "set budget";
  set.addEventListener("click", () => {
    budget.dataset.dirty = "";
    act(seat, {do: "budget", budget: budget.value});
  });
  budget.addEventListener("input", () => { budget.dataset.dirty = "1"; });
  const revoke = document.createElement("button");
  revoke.textContent = "revoke";
  revoke.addEventListener("click", () => {
    if (confirm("Revoke seat " + seat + "? Its token stops working for good.")) act(seat, {do: "revoke"});
  });
  tools.append(budget, set, revoke);
  $("seats").appendChild(tr);
  return {tr: tr, cells: cells, budget: budget};
}

function show(state) {
  const room = state.room;
  $("spent").textContent = usd(room.spent, 3);
  $("saved").textContent = usd(room.saved, 3);
  $("rate").textContent = String(room.upstream_per_minute);
  const s = room.states;
  $("counts").textContent = (s.charged || 0) + " images paid upstream, " + (s.shared || 0) +
    " served from the room's store, " + (s.released || 0) + " failed (not charged), " +
    (s.interrupted || 0) + " interrupted, " + (s.refused || 0) + " refused over budget, " +
    (s.preloaded || 0) + " preloaded from packs.";
  for (const seat of state.seats) {
    const row = rows.get(seat.seat) || newRow(seat.seat);
    rows.set(seat.seat, row);
    const last = seat.last ? new Date(seat.last * 1000).toISOString().slice(11, 19) : "-";
    const values = [String(seat.seat), seat.revoked ? "revoked" : "active", usd(seat.spent, 3),
      usd(seat.budget, 2), String(seat.images), usd(seat.saved, 3), String(seat.failed),
      String(seat.refused), last];
    values.forEach((v, i) => { if (row.cells[i].textContent !== v) row.cells[i].textContent = v; });
    row.tr.className = seat.revoked ? "revoked" : "";
    if (document.activeElement !== row.budget && !row.budget.dataset.dirty) {
      row.budget.value = Number(seat.budget).toFixed(2);
    }
  }
  $("updated").textContent = new Date(state.time * 1000).toISOString().slice(11, 19) + " UTC";
}

async function refresh() {
  try {
    const answer = await fetch("/relay/state.json?token=" + encodeURIComponent(token),
      {cache: "no-store"});
    if (!answer.ok) { $("problem").textContent = await answer.text(); return; }
    show(await answer.json());
    if ($("problem").textContent === OFFLINE) $("problem").textContent = "";
  } catch (e) {
    $("problem").textContent = OFFLINE;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
""".replace("@REFRESH_MS@", str(int(REFRESH * 1000)))
