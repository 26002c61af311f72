// Shared by the explorer pages: the API client, tenant labels, formatting, DOM building.
// Every value from the API is put in the page as text (textContent), never as HTML:
// params, outputs and error messages come from tenant code.
"use strict";

const UI = "/cdn-cgi/explorer";
const API = UI + "/api";
const FINISHED = ["complete", "errored", "terminated"];
const STATUSES = ["queued", "running", "waiting", "paused", "waitingForPause",
                  "errored", "terminated", "complete"];
const ENVELOPE = "__dispatcherMetadata";

// One API call; resolves to the envelope's result, rejects with the API's own message.
async function api(method, path, query, body) {
  const url = new URL(API + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== null && v !== undefined) url.searchParams.set(k, v);
  }
  const init = {method, headers: {}};
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = body;
  }
  const resp = await fetch(url, init);
  let data = null;
  try { data = await resp.json(); } catch (e) { /* a plain-text answer */ }
  if (!resp.ok || !data || !data.success) {
    const msg = data && data.errors && data.errors.length
      ? data.errors.map((e) => e.message).join("; ")
      : `HTTP ${resp.status}`;
    const err = new Error(msg);
    err.status = resp.status;
    throw err;
  }
  return {result: data.result, info: data.result_info || {}};
}

// "acme" for the scope of {"tenantId": "acme"}, "-" for no tenant, else the scope itself
// (the same rule as `dynwf inspect`).
function tenantLabel(scope) {
  if (!scope) return "-";
  try {
    const meta = JSON.parse(scope);
    const keys = meta && typeof meta === "object" && !Array.isArray(meta) ? Object.keys(meta) : [];
    if (keys.length === 1 && keys[0] === "tenantId" && typeof meta.tenantId === "string") {
      return meta.tenantId;
    }
  } catch (e) { /* not JSON: shown as stored */ }
  return scope;
}

function instanceHref(workflow, id, tenant) {
  const path = `${UI}/workflows/${encodeURIComponent(workflow)}/instances/${encodeURIComponent(id)}`;
  return tenant === null || tenant === undefined ? path
    : `${path}?tenant=${encodeURIComponent(tenant)}`;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function statusBadge(status) {
  return el("span", {class: `badge st-${status}`, "data-status": status, text: status});
}

function ms(iso) { return iso ? Date.parse(iso) : null; }

function fmtTime(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function fmtDuration(n) {
  if (n === null || n === undefined || isNaN(n)) return "-";
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 60000) return `${(n / 1000).toFixed(n < 10000 ? 2 : 1)} s`;
  if (n < 3600000) return `${Math.floor(n / 60000)} min ${Math.round((n % 60000) / 1000)} s`;
  return `${Math.floor(n / 3600000)} h ${Math.round((n % 3600000) / 60000)} min`;
}

function pretty(value) {
  return value === undefined ? "undefined" : JSON.stringify(value, null, 2);
}

// Re-runs `tick` every `every` ms (not while the tab is hidden); shows the last update.
function poll(tick, every) {
  let timer = null;
  const run = async () => {
    clearTimeout(timer);
    try {
      await tick();
      const stamp = document.getElementById("updated");
      if (stamp) stamp.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      const stamp = document.getElementById("updated");
      if (stamp) stamp.textContent = `update failed: ${e.message}`;
    }
    if (!document.hidden) timer = setTimeout(run, every);
  };
  document.addEventListener("visibilitychange", () => { if (!document.hidden) run(); });
  run();
  return run;
}
