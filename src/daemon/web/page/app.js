// The web console's page: one WebSocket carries every update and every action.
// Everything a peer or an operator wrote is put on the page with textContent, never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  ws: null,
  rows: [],
  canned: [],
  conv: new Map(), // session id -> [{who, name, text}]
  chosen: null,
  view: location.hash === "#live" ? "live" : "desk",
  deskAsked: false,
  events: 0,
};
const MAX_LINES = 500;
const MAX_EVENTS = 1000;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function send(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(scheme + "://" + location.host + "/ws");
  state.ws = ws;
  state.deskAsked = false;
  ws.onopen = () => {
    $("status").textContent = "connected";
    $("status").className = "status ok";
    show(state.view);
  };
  ws.onmessage = (m) => receive(JSON.parse(m.data));
  ws.onclose = () => {
    $("status").textContent = "disconnected; reconnecting…";
    $("status").className = "status bad";
    setTimeout(() => fetch("/", { method: "HEAD" }).then((r) => {
      if (r.status === 401) location.reload();
      else connect();
    }, () => setTimeout(connect, 2000)), 1000);
  };
}

function receive(m) {
  switch (m.t) {
    case "hello": $("me").textContent = "you are " + m.you; break;
    case "desk": desk(m); break;
    case "history":
      state.conv = new Map();
      for (const l of m.lines) said(l, false);
      drawConv();
      break;
    case "said": said(m, true); break;
    case "tell": notice(m.text); break;
    case "error": notice("(!) " + m.text); break;
    case "event": liveEvent(m.e); break;
    case "listeners": listeners(m.rows); break;
  }
}

function said(l, draw) {
  if (!state.conv.has(l.session)) state.conv.set(l.session, []);
  const lines = state.conv.get(l.session);
  lines.push({ who: l.who, name: l.name, text: l.text });
  if (lines.length > MAX_LINES) lines.shift();
  if (draw && l.session === state.chosen) drawConv();
  if (draw && l.session !== state.chosen) {
    const row = document.querySelector('#sessions li[data-id="' + l.session + '"]');
    if (row) row.classList.add("fresh");
  }
}

function standing(r) {
  if (r.state === "waiting") return "waiting " + r.place;
  if (r.state === "taken") return "with " + r.by;
  return "bot";
}

function desk(m) {
  state.rows = m.rows;
  state.canned = m.canned;
  const list = $("sessions");
  list.replaceChildren();
  for (const r of m.rows) {
    const li = el("li", "row state-" + r.state);
    li.dataset.id = r.id;
    if (r.id === state.chosen) li.classList.add("chosen");
    li.append(el("span", "sid", "#" + r.id),
      el("span", "where", r.listener + "/" + r.proto + " " + r.peer),
      el("span", "badge " + r.state, standing(r)));
    if (r.unanswered > 0) li.append(el("span", "count", r.unanswered));
    li.addEventListener("click", () => choose(r.id));
    list.append(li);
  }
  if (m.rows.length === 0) list.append(el("li", "empty", "no session open"));
  const queue = $("queue");
  queue.replaceChildren();
  const waiting = m.rows.filter((r) => r.state === "waiting").sort((a, b) => a.place - b.place);
  for (const r of waiting) {
    const li = el("li", "row", "#" + r.id + " " + r.peer);
    li.dataset.id = r.id;
    li.addEventListener("click", () => choose(r.id));
    queue.append(li);
  }
  if (waiting.length === 0) queue.append(el("li", "empty", "nobody waiting"));
  const ops = $("operators");
  ops.replaceChildren(...m.operators.map((n) => el("li", null, n)));
  if (state.chosen !== null && !m.rows.some((r) => r.id === state.chosen)) state.chosen = null;
  drawConv();
}

function choose(id) {
  state.chosen = id;
  for (const li of document.querySelectorAll("#sessions li")) {
    li.classList.toggle("chosen", Number(li.dataset.id) === id);
    if (Number(li.dataset.id) === id) li.classList.remove("fresh");
  }
  drawConv();
  $("answer").focus();
}

function drawConv() {
  const r = state.rows.find((x) => x.id === state.chosen);
  const on = Boolean(r);
  for (const b of ["take", "release", "close", "answer", "send"]) $(b).disabled = !on;
  $("conv-title").textContent = on ? "#" + r.id + " " + r.listener + "/" + r.proto + " " + r.peer : "No session chosen";
  $("conv-state").textContent = on ? standing(r) : "";
  $("conv-state").className = "badge " + (on ? r.state : "");
  const conv = $("conv");
  conv.replaceChildren();
  for (const l of (on ? state.conv.get(r.id) : null) || []) {
    const li = el("li", "said " + l.who);
    li.append(el("span", "who", l.who === "operator" ? l.name : l.who), el("span", "text", l.text));
    conv.append(li);
  }
  conv.scrollTop = conv.scrollHeight;
  const canned = $("canned");
  canned.replaceChildren();
  if (on) {
    for (const c of state.canned.filter((c) => c.listener === r.listener)) {
      const b = el("button", "canned-reply", c.name);
      b.type = "button";
      b.title = c.text;
      b.dataset.name = c.name;
      b.addEventListener("click", () => send({ op: "canned", session: r.id, name: c.name }));
      canned.append(b);
    }
  }
}

function notice(text) {
  const n = $("notices");
  n.append(el("li", null, text));
  while (n.children.length > 200) n.firstChild.remove();
  n.scrollTop = n.scrollHeight;
}

function liveEvent(e) {
  const f = $("f-listener");
  if (![...f.options].some((o) => o.value === e.listener)) f.append(new Option(e.listener, e.listener));
  if ($("f-pause").checked) return;
  const tr = el("tr", "ev " + e.event + (e.reason ? " " + e.reason : ""));
  tr.dataset.listener = e.listener;
  tr.dataset.session = e.session;
  const time = (e.time || "").replace(/^.*T/, "").replace(/Z$/, "");
  let what = e.event;
  if (e.event === "close") what += " " + e.reason + (e.reason === "peer_reset" ? " (RST)" : e.reason === "peer_closed" ? " (FIN)" : e.reason === "idle_timeout" ? " (expired)" : "");
  if (e.event === "open") what += " (" + e.proto + " on " + e.local + ")";
  const data = e.text !== undefined ? JSON.stringify(e.text) : e.hex !== undefined ? "hex " + e.hex : "";
  tr.append(el("td", null, time), el("td", null, e.listener), el("td", null, "#" + e.session),
    el("td", null, e.peer), el("td", "what", what), el("td", "num", e.size === undefined ? "" : e.size),
    el("td", "data", data + (e.cut ? " …" : "")));
  filterRow(tr);
  const body = $("events").tBodies[0];
  body.prepend(tr);
  while (body.rows.length > MAX_EVENTS) body.lastChild.remove();
}

function filterRow(tr) {
  const l = $("f-listener").value;
  const s = $("f-session").value;
  tr.hidden = (l !== "" && tr.dataset.listener !== l) || (s !== "" && tr.dataset.session !== s);
}

function listeners(rows) {
  const body = $("listeners").tBodies[0];
  body.replaceChildren();
  for (const r of rows) {
    const tr = el("tr", r.serving ? "" : "stopped");
    for (const v of [r.name, r.proto, r.addr, r.active, r.opened, r.closed, r.refused, r.errors, r.msgs_in, r.msgs_out, r.bytes_in, r.bytes_out]) {
      tr.append(el("td", typeof v === "number" ? "num" : null, v));
    }
    body.append(tr);
    const f = $("f-listener");
    if (![...f.options].some((o) => o.value === r.name)) f.append(new Option(r.name, r.name));
  }
}

function show(view) {
  state.view = view;
  $("desk").hidden = view !== "desk";
  $("live").hidden = view !== "live";
  $("tab-desk").classList.toggle("active", view === "desk");
  $("tab-live").classList.toggle("active", view === "live");
  history.replaceState(null, "", view === "live" ? "#live" : "#desk");
  if (view === "desk" && !state.deskAsked) {
    state.deskAsked = true;
    send({ op: "desk" });
  }
  send({ op: "live", on: view === "live" });
}

$("tab-desk").addEventListener("click", () => show("desk"));
$("tab-live").addEventListener("click", () => show("live"));
$("take").addEventListener("click", () => send({ op: "take", session: state.chosen }));
$("release").addEventListener("click", () => send({ op: "release", session: state.chosen }));
$("close").addEventListener("click", () => send({ op: "close", session: state.chosen }));
$("answer-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("answer").value;
  if (text.trim() === "" || state.chosen === null) return;
  send({ op: "say", session: state.chosen, text: text });
  $("answer").value = "";
});
for (const id of ["f-listener", "f-session"]) {
  $(id).addEventListener("input", () => { for (const tr of $("events").tBodies[0].rows) filterRow(tr); });
}
$("f-clear").addEventListener("click", () => $("events").tBodies[0].replaceChildren());
connect();
