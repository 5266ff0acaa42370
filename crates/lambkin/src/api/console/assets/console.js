// The console's pages: one document, views chosen by the URL's fragment, data from
// /console/api (same origin, the session cookie). Everything shown is set as text, never
// parsed as HTML. A log view follows its log live: one streamed answer read as it arrives,
// ended when the view changes.
"use strict";

const view = () => document.getElementById("view");
let refresh = null;
let subscribed = false;
// The followed log's request, aborted when the view changes.
let following = null;
// The most of a followed log a page keeps (older lines are dropped from the top).
const LOG_KEEP = 256 * 1024;
// Counts the views shown: a refresh that began for an earlier view must not draw over the
// one shown since (each renderer checks it after every wait).
let generation = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// The session's API key: handed over once in the login's fragment, then kept in this
// origin's storage (another port's pages cannot read it, while they do get the cookie).
const KEY_STORE = "lambkin-console-key";
if (location.hash.startsWith("#key=")) {
  localStorage.setItem(KEY_STORE, location.hash.slice("#key=".length));
  window.history.replaceState(null, "", location.pathname);
}

async function api(path, options) {
  const opts = Object.assign({ credentials: "same-origin" }, options || {});
  opts.headers = Object.assign({}, opts.headers, { "x-lambkin-console": localStorage.getItem(KEY_STORE) || "" });
  const r = await fetch("/console/api/" + path, opts);
  if (r.status === 401) throw new Error("the session ended: run `lambkin console` for a new link");
  return r;
}

async function json(path, options) {
  const r = await api(path, options);
  const body = await r.json();
  if (!r.ok) throw new Error(body.message || body.Message || r.statusText);
  return body;
}

// An answer's body as JSON, or its text as the message of a refusal that is not JSON.
async function answerOf(r) {
  const text = await r.text();
  try { return JSON.parse(text); } catch (_) { return { message: text.trim() }; }
}

function post(path, body) {
  return api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

function say(text, isError) {
  const s = document.getElementById("status");
  s.textContent = text || "";
  s.className = isError ? "error" : "muted";
}

function stateBadge(state, id) {
  return el("span", { class: "state state-" + state, id: id }, state);
}

function fmtMs(v) {
  return v === null || v === undefined ? "-" : v.toFixed(1);
}

function table(caption, headers, rows, id) {
  const t = el("table", { id: id });
  t.append(el("caption", { class: "muted" }, caption));
  const head = el("tr");
  for (const h of headers) head.append(el("th", { scope: "col", class: h.num ? "num" : null }, h.label || h));
  t.append(el("thead", {}, head));
  const body = el("tbody");
  for (const r of rows) body.append(r);
  t.append(body);
  return t;
}

function link(href, text) {
  return el("a", { href: href }, text);
}

function componentRows(components) {
  return components.map((c) =>
    el("tr", { "data-component": c.name },
      el("td", {}, link("#/component/" + encodeURIComponent(c.name), c.name)),
      el("td", {}, c.version), el("td", {}, c.type),
      el("td", {}, stateBadge(c.state)), el("td", {}, c.detail || "")));
}

// Per function, the invocations and errors seen in each overview poll over the last minute
// (kept across redraws): the live charts.
const HISTORY = 60;
const history = new Map();

function record(f) {
  const m = f.metrics;
  if (!m) return null;
  const ran = m.success + m.functionError + m.timeout;
  const errors = m.functionError + m.timeout;
  let h = history.get(f.name);
  if (!h) { h = { ran, errors, points: [] }; history.set(f.name, h); }
  h.points.push({ ran: Math.max(0, ran - h.ran), errors: Math.max(0, errors - h.errors) });
  if (h.points.length > HISTORY) h.points.shift();
  h.ran = ran; h.errors = errors;
  return h;
}

function sparkline(h) {
  const NS = "http://www.w3.org/2000/svg";
  const width = 120, height = 24;
  const ran = h ? h.points.reduce((a, p) => a + p.ran, 0) : 0;
  const errors = h ? h.points.reduce((a, p) => a + p.errors, 0) : 0;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height);
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.setAttribute("role", "img");
  svg.setAttribute("class", "spark");
  const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");
  svg.setAttribute("aria-label", plural(ran, "invocation") + " and " + plural(errors, "error") + " in the last minute");
  const points = h ? h.points : [];
  const top = Math.max(1, ...points.map((p) => p.ran));
  const line = (key, colour) => {
    const pl = document.createElementNS(NS, "polyline");
    pl.setAttribute("fill", "none"); pl.setAttribute("stroke", colour); pl.setAttribute("stroke-width", "1.5");
    pl.setAttribute("points", points.map((p, i) =>
      (width - (points.length - 1 - i) * (width / (HISTORY - 1))).toFixed(1) + "," +
      (height - 1 - (p[key] / top) * (height - 2)).toFixed(1)).join(" "));
    svg.append(pl);
  };
  line("ran", "#0b4f8a");
  line("errors", "#b00020");
  return svg;
}

function functionRows(functions) {
  return functions.map((f) => {
    const h = record(f);
    const m = f.metrics || {};
    const n = (v) => (v === undefined ? "-" : String(v));
    return el("tr", { "data-function": f.name },
      el("td", {}, link("#/function/" + encodeURIComponent(f.name), f.name)),
      el("td", {}, f.runtime || ""),
      el("td", { class: "num", "data-count": "success" }, n(m.success)),
      el("td", { class: "num", "data-count": "errors" }, n(m.functionError)),
      el("td", { class: "num" }, n(m.timeout)),
      el("td", { class: "num" }, n(m.throttled)),
      el("td", { class: "num" }, fmtMs(m.p50Ms)),
      el("td", { class: "num" }, fmtMs(m.p99Ms)),
      el("td", {}, sparkline(h)));
  });
}

function deploymentRows(deployments) {
  return deployments.map((d) => {
    const merged = el("ul", { class: "plain" });
    for (const c of d.merged || []) {
      merged.append(el("li", { "data-merged": c.name }, c.name + "@" + c.version,
        c.state ? " " : "", c.state ? stateBadge(c.state) : ""));
    }
    return el("tr", { "data-deployment": d.deploymentId },
      el("td", {}, d.deploymentId), el("td", {}, stateBadge(d.status)),
      el("td", {}, (d.merged || []).length ? merged : "-"), el("td", {}, (d.removed || []).join(", ") || "-"),
      el("td", {}, d.message || "", failureCodes(d.deploymentStatusDetails)));
  });
}

// A failed deployment's detailed status, error stack (most generic first) and error types.
function failureCodes(details) {
  if (!details || !(details.deploymentErrorStack || []).length) return "";
  const parts = [details.detailedDeploymentStatus || "",
    details.deploymentErrorStack.join(" › "), (details.deploymentErrorTypes || []).join(", ")];
  return el("div", { class: "codes", "data-codes": "" }, parts.filter((p) => p).join(" · "));
}

const DEPLOYMENT_HEADERS = ["Deployment", "Outcome", "Components merged (state while in progress)", "Removed", "Message"];

async function overview() {
  const g = generation;
  const o = await json("overview");
  if (g !== generation) return;
  const mqtt = o.mqtt
    ? el("p", { id: "mqtt" }, "Broker: ", stateBadge(o.mqtt.connected ? "CONNECTED" : "DISCONNECTED"),
        ". Spool: " + (o.mqtt.spoolMessages ?? "-") + " messages, " + (o.mqtt.spoolBytes ?? "-") + " bytes.")
    : el("p", { id: "mqtt", class: "muted" }, "No broker configured ([mqtt]).");
  view().replaceChildren(
    el("section", { "aria-labelledby": "h-components" }, el("h2", { id: "h-components" }, "Components"),
      table("Components and their states", ["Name", "Version", "Type", "State", "Detail"], componentRows(o.components), "components")),
    el("section", { "aria-labelledby": "h-functions" }, el("h2", { id: "h-functions" }, "Functions"),
      table("Functions with their invocations since the host started",
        ["Name", "Runtime", { label: "Succeeded", num: 1 }, { label: "Errors", num: 1 }, { label: "Timeouts", num: 1 },
          { label: "Throttled", num: 1 }, { label: "p50 ms", num: 1 }, { label: "p99 ms", num: 1 }, "Last minute"],
        functionRows(o.functions), "functions")),
    el("section", { "aria-labelledby": "h-mqtt" }, el("h2", { id: "h-mqtt" }, "MQTT"), mqtt),
    el("section", { "aria-labelledby": "h-recent" }, el("h2", { id: "h-recent" }, "Recent deployments"),
      table("The latest deployments, newest first", DEPLOYMENT_HEADERS, deploymentRows(o.deployments), "recent-deployments")));
}

async function deployments() {
  const g = generation;
  const d = await json("deployments");
  if (g !== generation) return;
  view().replaceChildren(table("Every deployment, newest first", DEPLOYMENT_HEADERS, deploymentRows(d.deployments), "deployments"));
}

function details(pairs, id) {
  const dl = el("dl", { id: id });
  for (const [k, v] of pairs) dl.append(el("dt", {}, k), el("dd", {}, v === undefined || v === null ? "-" : String(v)));
  return dl;
}

function logSection(name) {
  return el("section", { "aria-labelledby": "h-log" }, el("h2", { id: "h-log" }, "Log"),
    el("pre", { id: "log", tabindex: "0", "aria-label": "The end of " + name + "'s log" }));
}

function appendLog(pre, text) {
  if (!text) return;
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  let all = pre.textContent + text;
  if (all.length > LOG_KEEP) {
    const cut = all.indexOf("\n", all.length - LOG_KEEP);
    all = all.slice(cut < 0 ? all.length - LOG_KEEP : cut + 1);
  }
  pre.textContent = all;
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

// Follows a log: its tail, then every line appended, until the view changes or the host
// ends the stream (logout, the session's end, or too many views following at once).
function followLog(name) {
  const controller = new AbortController();
  following = controller;
  const pre = document.getElementById("log");
  const decoder = new TextDecoder();
  (async () => {
    try {
      const r = await api("logs/" + encodeURIComponent(name) + "/follow", { signal: controller.signal });
      if (!r.ok) { const b = await answerOf(r); throw new Error(b.message || b.Message || r.statusText); }
      const reader = r.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        appendLog(pre, decoder.decode(value, { stream: true }));
      }
      if (!controller.signal.aborted) say("The log is no longer followed (the session ended, or other views follow logs): reload to follow it again.", true);
    } catch (err) {
      if (!controller.signal.aborted) say(err.message, true);
    }
  })();
}

function stopFollowing() {
  if (following) following.abort();
  following = null;
}

// Ends the pub/sub tester's subscription on the host (the page leaves it, or goes away).
function endSubscription() {
  if (!subscribed) return;
  subscribed = false;
  api("unsubscribe", { method: "POST", keepalive: true, headers: { "content-type": "application/json" }, body: "{}" })
    .catch(() => {});
}

async function functionPage(name) {
  const g = generation;
  const f = await json("functions/" + encodeURIComponent(name));
  if (g !== generation) return;
  const c = f.Configuration || {};
  const payload = el("textarea", { id: "payload", name: "payload" }, "{}");
  const form = el("form", { id: "invoke-form" },
    el("label", { for: "payload" }, "Payload (JSON)"), payload,
    el("button", { type: "submit" }, "Invoke"));
  const result = el("pre", { id: "invoke-result", "aria-live": "polite" });
  const log = el("pre", { id: "invoke-log" });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    say("Invoking " + name + "…");
    try {
      const r = await api("functions/" + encodeURIComponent(name) + "/invoke", {
        method: "POST", headers: { "content-type": "application/json", "x-amz-log-type": "Tail" }, body: payload.value,
      });
      const text = await r.text();
      const failed = r.headers.get("x-amz-function-error");
      result.textContent = text;
      const tail = r.headers.get("x-amz-log-result");
      log.textContent = tail ? new TextDecoder().decode(Uint8Array.from(atob(tail), (ch) => ch.charCodeAt(0))) : "";
      say(!r.ok ? "The invocation was refused (" + r.status + ")." : failed ? "The function answered an error." : "Invoked.", !r.ok || !!failed);
    } catch (err) { say(err.message, true); }
  });
  view().replaceChildren(
    el("section", { "aria-labelledby": "h-config" }, el("h2", { id: "h-config" }, "Configuration"),
      details([["Runtime", c.Runtime], ["Handler", c.Handler], ["Memory (MB)", c.MemorySize], ["Timeout (s)", c.Timeout],
        ["Last modified", c.LastModified], ["ARN", c.FunctionArn]], "function-config")),
    el("section", { "aria-labelledby": "h-invoke" }, el("h2", { id: "h-invoke" }, "Invoke"), form,
      el("h3", {}, "Result"), result, el("h3", {}, "Log tail"), log),
    logSection(name));
  followLog(name);
}

async function componentDetails(name) {
  const c = await json("components/" + encodeURIComponent(name));
  const s = c.status;
  return [
    details([["State", s.state], ["Version", s.version], ["Type", s.type], ["Detail", s.detail]], "component-status"),
    el("pre", { id: "component-config" }, JSON.stringify(c.configuration, null, 2)),
  ];
}

async function componentPage(name) {
  const g = generation;
  const [status, config] = await componentDetails(name);
  if (g !== generation) return;
  const action = (verb) => {
    const b = el("button", { type: "button", class: verb === "stop" ? "secondary" : null, id: verb + "-button" },
      verb === "stop" ? "Stop" : "Restart");
    b.addEventListener("click", async () => {
      try {
        const r = await post("components/" + encodeURIComponent(name) + "/" + verb, {});
        const body = await r.json();
        say(r.ok ? name + ": " + verb + " requested." : body.message || body.Message, !r.ok);
      } catch (err) { say(err.message, true); }
    });
    return b;
  };
  view().replaceChildren(
    el("section", { "aria-labelledby": "h-state" }, el("h2", { id: "h-state" }, "State"), status,
      el("div", { class: "actions" }, action("restart"), action("stop"))),
    el("section", { "aria-labelledby": "h-cconfig" }, el("h2", { id: "h-cconfig" }, "Configuration"), config),
    logSection(name));
  followLog(name);
  refresh = async () => {
    const [fresh] = await componentDetails(name);
    const shown = document.getElementById("component-status");
    if (g !== generation || !shown) return;
    shown.replaceWith(fresh);
  };
}

function pubsubPage() {
  const topic = el("input", { id: "pub-topic", name: "topic", required: "" });
  const message = el("textarea", { id: "pub-message", name: "message" }, "{}");
  const pub = el("form", { id: "publish-form" },
    el("label", { for: "pub-topic" }, "Topic"), topic,
    el("label", { for: "pub-message" }, "Message (JSON, or text)"), message,
    el("button", { type: "submit" }, "Publish"));
  pub.addEventListener("submit", async (e) => {
    e.preventDefault();
    let body;
    try { body = { topic: topic.value, json: JSON.parse(message.value) }; }
    catch (_) { body = { topic: topic.value, binary: btoa(unescape(encodeURIComponent(message.value))) }; }
    const r = await post("publish", body);
    const answer = await r.json();
    say(r.ok ? "Published to " + answer.subscribers + " subscription(s)." : answer.message || answer.Message, !r.ok);
  });
  const filter = el("input", { id: "sub-filter", name: "filter", required: "" });
  const sub = el("form", { id: "subscribe-form" },
    el("label", { for: "sub-filter" }, "Topic filter"), filter,
    el("button", { type: "submit" }, "Subscribe"));
  const list = el("ol", { id: "messages", class: "messages", "aria-live": "polite" });
  sub.addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await post("subscribe", { filter: filter.value });
    const answer = await answerOf(r);
    if (!r.ok) { say(answer.message || answer.Message, true); return; }
    say("Subscribed to " + answer.filter + ".");
    list.replaceChildren();
    if (!subscribed) { subscribed = true; poll(); }
  });
  view().replaceChildren(
    el("section", { "aria-labelledby": "h-pub" }, el("h2", { id: "h-pub" }, "Publish"), pub),
    el("section", { "aria-labelledby": "h-sub" }, el("h2", { id: "h-sub" }, "Subscribe"), sub,
      el("h3", {}, "Messages"), list));
}

async function poll() {
  while (subscribed) {
    try {
      const m = await json("messages");
      const list = document.getElementById("messages");
      if (!list) { continue; }
      if (!m.subscribed && subscribed) {
        say("The subscription ended (unused for a minute, or the host's limit): subscribe again.", true);
        subscribed = false;
      }
      for (const msg of m.messages) {
        const payload = msg.json !== undefined ? JSON.stringify(msg.json) : msg.text;
        list.append(el("li", {}, msg.topic + " " + payload));
      }
    } catch (err) { say(err.message, true); subscribed = false; }
  }
}

async function show() {
  const g = ++generation;
  refresh = null;
  stopFollowing();
  endSubscription();
  say("");
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [kind, ...rest] = hash.split("/");
  const name = rest.join("/");
  const title = document.getElementById("title");
  try {
    if (kind === "function" && name) {
      title.textContent = "Function " + name; document.title = name + " · Lambkin";
      await functionPage(name);
    } else if (kind === "component" && name) {
      title.textContent = "Component " + name; document.title = name + " · Lambkin";
      await componentPage(name);
    } else if (kind === "pubsub") {
      title.textContent = "Pub/sub tester"; document.title = "Pub/sub · Lambkin";
      pubsubPage();
    } else if (kind === "deployments") {
      title.textContent = "Deployments"; document.title = "Deployments · Lambkin";
      await deployments();
      if (g === generation) refresh = deployments;
    } else {
      title.textContent = "Overview"; document.title = "Lambkin console";
      await overview();
      if (g === generation) refresh = overview;
    }
  } catch (err) { say(err.message, true); }
}

setInterval(async () => {
  if (!refresh) return;
  try { await refresh(); } catch (err) { say(err.message, true); }
}, 1000);
document.getElementById("logout").addEventListener("click", async () => {
  try {
    const r = await post("logout", {});
    if (!r.ok) throw new Error("the host refused to log out (" + r.status + ")");
    localStorage.removeItem(KEY_STORE);
    refresh = null;
    stopFollowing();
    subscribed = false;
    document.getElementById("title").textContent = "Logged out";
    view().replaceChildren(el("p", {}, "Run `lambkin console` for a new login link."));
    say("");
  } catch (err) { say(err.message, true); }
});
window.addEventListener("hashchange", show);
window.addEventListener("pagehide", endSubscription);
show();
