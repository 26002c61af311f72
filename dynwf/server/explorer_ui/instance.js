// One instance: header, actions, the step timeline (a Gantt), steps, params, output, events.
// The page's own URL names the instance: /cdn-cgi/explorer/workflows/<wf>/instances/<id>,
// with ?tenant=<scope> (the explorer API's parameter) since ids repeat across tenants.
"use strict";

const parts = location.pathname.split("/");
const WORKFLOW = decodeURIComponent(parts[parts.length - 3]);
const ID = decodeURIComponent(parts[parts.length - 1]);
const QUERY = new URLSearchParams(location.search);
const TENANT = QUERY.has("tenant") ? QUERY.get("tenant") : null;
const PATH = `/workflows/${encodeURIComponent(WORKFLOW)}/instances/${encodeURIComponent(ID)}`;
let current = null;
let gone = false;

function scoped() { return TENANT === null ? {} : {tenant: TENANT}; }

function flash(text, bad) {
  const box = document.getElementById("flash");
  box.textContent = text;
  box.className = bad ? "flash bad" : "flash";
}

// -- header, params, output ------------------------------------------------------------

function renderHeader(d) {
  document.title = `${ID} · ${d.status} · dynwf explorer`;
  document.getElementById("i-id").textContent = ID;
  document.getElementById("i-status").replaceChildren(statusBadge(d.status));
  const started = ms(d.start);
  const ended = ms(d.end) || (FINISHED.includes(d.status) ? null : Date.now());
  const replays = d.steps.reduce((n, s) => n + (s.replays || 0), 0);
  const facts = [
    ["Workflow", WORKFLOW], ["Tenant", tenantLabel(d.tenant)], ["Queued", fmtTime(d.queued)],
    ["Started", fmtTime(d.start)], ["Ended", fmtTime(d.end)],
    ["Duration", started ? fmtDuration(ended - started) + (d.end ? "" : " so far") : "-"],
    ["Run passes", String(d.passes ?? "-")], ["Step replays", String(replays)],
  ];
  document.getElementById("facts").replaceChildren(...facts.flatMap(([k, v]) =>
    [el("dt", {text: k}), el("dd", {text: v, title: k === "Tenant" ? d.tenant : null})]));

  const boxed = d.params && typeof d.params === "object" && !Array.isArray(d.params) &&
    ENVELOPE in d.params;
  document.getElementById("params").textContent = pretty(boxed ? d.params.params : d.params);
  document.getElementById("params-note").textContent =
    boxed ? "(the tenant's own; the dispatcher's envelope is below)" : "";
  document.getElementById("meta-box").hidden = !boxed;
  document.getElementById("meta").textContent = boxed ? pretty(d.params[ENVELOPE]) : "";
  document.getElementById("output").textContent = d.status === "complete"
    ? pretty(d.output) : FINISHED.includes(d.status) ? "(none)" : "(not finished)";

  const errBox = document.getElementById("run-error");
  errBox.hidden = !d.error;
  document.getElementById("run-error-text").textContent =
    d.error ? `${d.error.name}: ${d.error.message}` : "";

  const paused = d.status === "paused" || d.status === "waitingForPause";
  const finished = FINISHED.includes(d.status);
  document.getElementById("a-pause").disabled = finished || paused;
  document.getElementById("a-resume").disabled = !paused;
  document.getElementById("a-terminate").disabled = finished;
  document.getElementById("a-event").disabled = finished;

  const warnings = d.warnings || [];
  document.getElementById("warnings-box").hidden = !warnings.length;
  document.getElementById("warnings").replaceChildren(...warnings.map((w) => el("li", {text: w})));
}

// -- timeline ----------------------------------------------------------------------------

// The engine closes an attempt that a crash, an eviction or a stop cut off with this
// error when it recovers the instance (dynwf.engine._model.INTERNAL_ERROR, Cloudflare's).
const CUT_OFF = {name: "WorkflowInternalError", message: "Attempt failed due to internal workflows error"};

function cutOff(a) {
  return a.success === false && a.error !== null &&
    a.error.name === CUT_OFF.name && a.error.message === CUT_OFF.message;
}

// An attempt still open is running, or was cut off and not recovered yet.
function attemptKind(a, i, step, d) {
  if (a.end === null) {
    const later = i < step.attempts.length - 1;
    return later || d.status !== "running" ? "interrupted" : "running";
  }
  if (cutOff(a)) return "interrupted";
  return a.success ? "ok" : "failed";
}

function segments(step, d, now) {
  const out = [];
  if (step.type === "sleep") {
    const end = ms(step.end) ?? now;
    out.push({kind: "sleep", from: ms(step.start), to: end,
              title: `sleep ${fmtDuration(step.sleep_ms)}` +
                (step.finished ? `, woke ${fmtTime(step.end)}` : `, until ${fmtTime(step.wake_at)}`)});
    return out;
  }
  if (step.type === "waitForEvent") {
    const timedOut = step.finished && step.error;
    out.push({kind: timedOut ? "failed" : "wait", from: ms(step.start), to: ms(step.end) ?? now,
              mark: timedOut ? "✕" : null,
              title: `wait for event '${step.event_type}'` + (step.finished
                ? (timedOut ? ` timed out: ${step.error.name}: ${step.error.message}`
                            : `, got it ${fmtTime(step.end)}`)
                : `, until ${fmtTime(step.wake_at)}`)});
    return out;
  }
  step.attempts.forEach((a, i) => {
    const kind = attemptKind(a, i, step, d);
    const next = step.attempts[i + 1];
    const from = ms(a.start);
    const to = a.end !== null ? ms(a.end) : next ? ms(next.start) : now;
    const what = kind === "failed" ? `failed: ${a.error.name}: ${a.error.message}`
      : kind === "interrupted" ? "cut off: the engine process stopped during it (a crash, an " +
        "eviction or a stop)" + (a.error ? `; recorded as ${a.error.name} on recovery` : "")
      : kind === "running" ? "running" : "ok";
    out.push({kind, from, to, mark: kind === "failed" ? "✕" : kind === "interrupted" ? "↯" : null,
              title: `attempt ${i + 1}: ${what} (${fmtDuration(to - from)})`});
    if ((kind === "failed" || kind === "interrupted") && next) {
      out.push({kind: "retry", from: ms(a.end), to: ms(next.start),
                title: `retry delay before attempt ${i + 2} (${fmtDuration(ms(next.start) - ms(a.end))})`});
    } else if (kind === "failed" && !step.finished && step.wake_at) {
      out.push({kind: "retry", from: ms(a.end), to: now,
                title: `retry delay: attempt ${i + 2} at ${fmtTime(step.wake_at)}`});
    }
  });
  return out;
}

function stepResult(step, d) {
  if (step.type === "step") {
    if (step.success === true) return "ok";
    if (step.success === false) return "failed";
    const last = step.attempts[step.attempts.length - 1];
    if (last && last.end !== null && !last.success) return "retrying";
    return d.status === "running" ? "running" : "waiting";
  }
  if (!step.finished) return step.type === "sleep" ? "sleeping" : "waiting";
  return step.error ? "timed out" : "done";
}

function renderTimeline(d) {
  const now = Date.now();
  const steps = d.steps;
  const starts = [ms(d.start), ...steps.map((s) => ms(s.start))].filter((t) => t !== null);
  const t0 = starts.length ? Math.min(...starts) : ms(d.queued);
  const ends = steps.flatMap((s) => [ms(s.end), ...(s.attempts || []).map((a) => ms(a.end))]);
  const t1 = Math.max(ms(d.end) ?? (FINISHED.includes(d.status) ? 0 : now), ...ends.filter(Boolean), t0 + 1);
  const span = t1 - t0;
  const pct = (t) => `${(100 * (Math.min(Math.max(t, t0), t1) - t0)) / span}%`;
  const width = (a, b) => `max(3px, ${(100 * (Math.min(b, t1) - Math.max(a, t0))) / span}%)`;

  const axis = el("div", {class: "tl-row tl-axis"}, el("div", {class: "tl-label"}),
    el("div", {class: "tl-track"}, [0, 0.25, 0.5, 0.75, 1].map((f) => {
      const tick = el("span", {class: "tick", text: "+" + fmtDuration(f * span)});
      tick.style.left = `${f * 100}%`;
      return tick;
    })));
  const rows = steps.map((step) => {
    const result = stepResult(step, d);
    const track = el("div", {class: "tl-track"});
    for (const seg of segments(step, d, now)) {
      if (seg.from === null) continue;
      const bar = el("span", {class: `seg ${seg.kind}`, "data-kind": seg.kind, title: seg.title},
                     seg.mark ? el("b", {class: "mark", text: seg.mark}) : null);
      bar.style.left = pct(seg.from);
      bar.style.width = width(seg.from, seg.to ?? now);
      track.append(bar);
    }
    const replays = step.replays ? el("span", {class: "pill", title:
      "times this step's recorded result was replayed instead of run again",
      text: `replayed ×${step.replays}`}) : null;
    const tries = step.type === "step" && step.attempts.length > 1
      ? el("span", {class: "pill", text: `${step.attempts.length} attempts`}) : null;
    return el("div", {class: "tl-row", "data-step": step.name, "data-result": result},
      el("div", {class: "tl-label"},
        el("span", {class: `kind k-${step.type}`, text: {step: "do", sleep: "sleep", waitForEvent: "wait"}[step.type]}),
        el("span", {class: "mono name", text: step.name}), tries, replays),
      track);
  });
  document.getElementById("timeline").replaceChildren(axis, ...rows);
  const count = (kind) => steps.reduce((n, s) =>
    n + (s.attempts || []).filter((a, i) => attemptKind(a, i, s, d) === kind).length, 0);
  const failed = count("failed");
  const cut = count("interrupted");
  document.getElementById("tl-summary").textContent = steps.length
    ? `${steps.length} steps · ${failed} failed attempt${failed === 1 ? "" : "s"}` +
      (cut ? ` · ${cut} cut off by a stopped process` : "") + ` · ${fmtDuration(span)}` : "";
}

// -- steps, events --------------------------------------------------------------------

function stepDetail(step) {
  if (step.type === "step") {
    const errors = step.attempts.filter((a) => a.success === false)
      .map((a) => el("div", {class: "err"}, `attempt ${step.attempts.indexOf(a) + 1}: `,
                        el("b", {text: a.error.name}), `: ${a.error.message}`,
                        cutOff(a) ? " (↯ cut off: the engine process stopped during it)" : ""));
    const out = step.success ? el("pre", {class: "inline", text: pretty(step.output)}) : null;
    return [out, ...errors];
  }
  if (step.type === "waitForEvent") {
    if (step.error) return [el("div", {class: "err"}, el("b", {text: step.error.name}), `: ${step.error.message}`)];
    if (step.output) return [el("pre", {class: "inline", text: pretty(step.output)})];
    return [`waiting for '${step.event_type}' until ${fmtTime(step.wake_at)}`];
  }
  return [step.finished ? `slept ${fmtDuration(step.sleep_ms)}` : `wakes ${fmtTime(step.wake_at)}`];
}

function renderSteps(d) {
  const body = document.querySelector("#steps tbody");
  body.replaceChildren(...d.steps.map((s) => {
    const result = stepResult(s, d);
    const took = ms(s.end) !== null ? ms(s.end) - ms(s.start) : null;
    return el("tr", {"data-step": s.name},
      el("td", {class: "mono", text: s.name}),
      el("td", {text: s.type}),
      el("td", {}, el("span", {class: `badge r-${result.replace(" ", "-")}`, text: result})),
      el("td", {text: s.type === "step" ? String(s.attempts.length) : "-"}),
      el("td", {text: `${s.executions ?? "-"} / ${s.replays ?? 0}`}),
      el("td", {class: "mono", text: fmtTime(s.start)}),
      el("td", {text: fmtDuration(took)}),
      el("td", {class: "detail"}, stepDetail(s)));
  }));
  document.getElementById("no-steps").hidden = d.steps.length > 0;

  const events = d.events || [];
  document.querySelector("#events tbody").replaceChildren(...events.map((e) => el("tr", {},
    el("td", {class: "mono", text: e.type}),
    el("td", {class: "mono", text: fmtTime(e.timestamp)}),
    el("td", {text: e.consumed ? "consumed by a wait" : "buffered"}),
    el("td", {}, el("pre", {class: "inline", text: pretty(e.payload)})))));
  document.getElementById("no-events").hidden = events.length > 0;
}

// -- actions ------------------------------------------------------------------------------

async function act(label, call, confirmText) {
  if (confirmText && !confirm(confirmText)) return;
  flash(`${label}…`);
  try {
    await call();
    flash(`${label}: done`);
  } catch (e) {
    flash(`${label} failed: ${e.message}`, true);
  }
  refresh();
}

function status(action, confirmText) {
  return () => act(action[0].toUpperCase() + action.slice(1), () =>
    api("PATCH", PATH + "/status", scoped(), JSON.stringify({action})), confirmText);
}

document.getElementById("a-pause").addEventListener("click", status("pause"));
document.getElementById("a-resume").addEventListener("click", status("resume"));
document.getElementById("a-terminate").addEventListener("click",
  status("terminate", `Terminate instance ${ID}? It stops for good.`));
document.getElementById("a-restart").addEventListener("click",
  status("restart", `Restart instance ${ID} from its first step? Its recorded steps are forgotten.`));
document.getElementById("a-delete").addEventListener("click", () =>
  act("Delete", async () => {
    await api("DELETE", PATH, scoped());
    gone = true;
    location.assign(UI + "/");
  }, `Delete instance ${ID}? It stops and disappears from the list.`));
document.getElementById("event-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const type = document.getElementById("e-type").value.trim();
  const raw = document.getElementById("e-payload").value.trim();
  if (raw) {
    try { JSON.parse(raw); } catch (e) {
      flash(`The payload is not JSON: ${e.message}`, true);
      return;
    }
  }
  act(`Send event '${type}'`, () =>
    api("POST", `${PATH}/events/${encodeURIComponent(type)}`, scoped(), raw || undefined));
});

const refresh = poll(async () => {
  if (gone) return;
  try {
    current = (await api("GET", PATH, scoped())).result;
  } catch (e) {
    const box = document.getElementById("error");
    box.textContent = e.status === 404
      ? `Instance ${ID} of workflow ${WORKFLOW} does not exist (deleted, or a wrong link).`
      : `Cannot read this instance: ${e.message}`;
    box.hidden = false;
    if (e.status === 404) gone = true;
    throw e;
  }
  document.getElementById("error").hidden = true;
  renderHeader(current);
  renderTimeline(current);
  renderSteps(current);
}, 1000);
