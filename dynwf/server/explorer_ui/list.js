// The instances page: every workflow's instances, across tenants, filtered, kept live.
// Filters live in the page URL (?workflow=&tenant=&status=), so a filtered view is a link.
"use strict";

const PER_PAGE = 100;  // the API's maximum page; the newest instances of each workflow
const knownTenants = new Set();
let workflows = [];

function filters() {
  const q = new URLSearchParams(location.search);
  return {workflow: q.get("workflow") || "", tenant: q.has("tenant") ? q.get("tenant") : "*",
          status: q.get("status") || ""};
}

function setFilters(f) {
  const q = new URLSearchParams();
  if (f.workflow) q.set("workflow", f.workflow);
  if (f.tenant !== "*") q.set("tenant", f.tenant);
  if (f.status) q.set("status", f.status);
  const search = q.toString();
  history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
  refresh();
}

function fillSelect(select, values, current, label) {
  const first = select.options[0];
  select.replaceChildren(first, ...values.map((v) => el("option", {value: v, text: label(v)})));
  select.value = values.includes(current) || current === first.value ? current : first.value;
}

async function tick() {
  const f = filters();
  if (!workflows.length) {
    workflows = (await api("GET", "/workflows")).result.map((w) => w.name);
  }
  const chosen = f.workflow ? [f.workflow] : workflows;
  const tenant = f.tenant === "*" ? null : f.tenant;
  const pages = await Promise.all(chosen.map(async (wf) => {
    const path = `/workflows/${encodeURIComponent(wf)}/instances`;
    const page = await api("GET", path, {per_page: PER_PAGE, status: f.status || null, tenant});
    // Every tenant of the workflow stays in the tenant menu while one is chosen.
    const all = tenant === null ? page : await api("GET", path, {per_page: PER_PAGE});
    for (const item of all.result) knownTenants.add(item.tenant);
    return {wf, items: page.result, info: page.info};
  }));
  if (tenant !== null) knownTenants.add(tenant);
  if (JSON.stringify(filters()) !== JSON.stringify(f)) return;  // changed while loading

  fillSelect(document.getElementById("f-workflow"), workflows, f.workflow, (v) => v);
  fillSelect(document.getElementById("f-tenant"), [...knownTenants].sort(), f.tenant,
             (v) => (v ? tenantLabel(v) : "- (no tenant)"));
  fillSelect(document.getElementById("f-status"), STATUSES, f.status, (v) => v);

  const rows = pages.flatMap((p) => p.items.map((i) => ({...i, workflow: p.wf})))
    .sort((a, b) => (a.created_on < b.created_on ? 1 : a.created_on > b.created_on ? -1 : 0));
  const body = document.querySelector("#instances tbody");
  body.replaceChildren(...rows.map((r) => el("tr", {"data-id": r.id, "data-tenant": r.tenant},
    el("td", {}, el("a", {class: "mono", href: instanceHref(r.workflow, r.id, r.tenant), text: r.id})),
    el("td", {class: "tenant", title: r.tenant, text: tenantLabel(r.tenant)}),
    el("td", {text: r.workflow}),
    el("td", {}, statusBadge(r.status)),
    el("td", {class: "mono", text: fmtTime(r.created_on)}))));
  document.getElementById("empty").hidden = rows.length > 0;
  document.getElementById("count").textContent =
    `${rows.length} instance${rows.length === 1 ? "" : "s"}`;

  // Status chips: the counts of the chosen workflows (and tenant), a click filters by one.
  const totals = {};
  for (const p of pages) {
    for (const [s, n] of Object.entries(p.info.status_counts || {})) totals[s] = (totals[s] || 0) + n;
  }
  document.getElementById("counts").replaceChildren(...STATUSES.filter((s) => totals[s]).map((s) =>
    el("button", {type: "button", class: `chip st-${s}${f.status === s ? " on" : ""}`,
                  onclick: () => setFilters({...filters(), status: f.status === s ? "" : s})},
       `${s} ${totals[s]}`)));
  const cut = pages.filter((p) => p.info.total_count > p.items.length);
  const more = document.getElementById("more");
  more.hidden = !cut.length;
  more.textContent = cut.map((p) =>
    `${p.wf}: showing the newest ${p.items.length} of ${p.info.total_count}`).join(" · ");
  document.getElementById("error").hidden = true;
}

for (const id of ["f-workflow", "f-tenant", "f-status"]) {
  document.getElementById(id).addEventListener("change", () => setFilters({
    workflow: document.getElementById("f-workflow").value,
    tenant: document.getElementById("f-tenant").value,
    status: document.getElementById("f-status").value,
  }));
}

const refresh = poll(async () => {
  try {
    await tick();
  } catch (e) {
    const box = document.getElementById("error");
    box.textContent = `Cannot read the explorer API: ${e.message}`;
    box.hidden = false;
    throw e;
  }
}, 2000);
