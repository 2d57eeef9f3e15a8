// dicomflow dashboard: live updates by polling, and actions by fetch. No build step.
"use strict";

const POLL_MS = 1000;
const LIVE_MS = 2000;

function flash(message, ok) {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = message;
  box.className = "flash " + (ok ? "ok" : "failed");
  box.hidden = false;
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

function every(ms, task) {
  let running = false;
  const tick = async () => {
    if (running || document.hidden) return;
    running = true;
    try { await task(); } catch (error) { console.warn(error); } finally { running = false; }
  };
  window.setInterval(tick, ms);
  return tick;
}

// -- jobs: rows keyed by job id, cells by data-field --------------------------------

const JOB_FIELDS = ["name", "attempts", "created", "started", "ended", "duration", "error"];

function setStatus(cell, status) {
  if (cell.textContent !== status) cell.textContent = status;
  cell.className = "status status-" + status;
}

function updateJob(root, job) {
  for (const field of JOB_FIELDS.concat(["worker", "full_error", "log_tail", "result"])) {
    const cell = root.querySelector('[data-field="' + field + '"]');
    if (cell && job[field] !== undefined && cell.textContent !== String(job[field])) {
      cell.textContent = String(job[field]);
    }
  }
  const kind = root.querySelector('[data-field="kind"]');
  if (kind) kind.textContent = job.kind + (job.service ? " (" + job.service + ")" : "");
  const status = root.querySelector('[data-field="status"]');
  if (status) setStatus(status, job.status);
  const retry = root.querySelector("form.retry");
  if (retry) retry.hidden = !job.can_retry;
  const cancel = root.querySelector("form.cancel");
  if (cancel) cancel.hidden = !job.can_cancel;
}

function cell(field, extraClass) {
  const td = document.createElement("td");
  if (field) td.dataset.field = field;
  if (extraClass) td.className = extraClass;
  return td;
}

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

function actionForm(jobId, action, label, confirmText) {
  const form = document.createElement("form");
  form.method = "post";
  form.action = "/jobs/" + encodeURIComponent(jobId) + "/" + action;
  form.className = "action " + action;
  if (confirmText) form.dataset.confirm = confirmText;
  const token = document.createElement("input");
  token.type = "hidden";
  token.name = "csrf_token";
  token.value = csrfToken();
  form.appendChild(token);
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = label;
  form.appendChild(button);
  return form;
}

function newJobRow(job) {
  const row = document.createElement("tr");
  row.dataset.jobId = job.id;
  const idCell = cell();
  const link = document.createElement("a");
  link.href = "/jobs/" + encodeURIComponent(job.id);
  const code = document.createElement("code");
  code.textContent = job.id.slice(0, 12);
  link.appendChild(code);
  idCell.appendChild(link);
  row.appendChild(idCell);
  row.appendChild(cell("name"));
  row.appendChild(cell("kind"));
  row.appendChild(cell("status", "status"));
  row.appendChild(cell("attempts", "number"));
  for (const field of ["created", "started", "ended", "duration"]) row.appendChild(cell(field));
  row.appendChild(cell("error", "error-line"));
  const actions = cell(null, "actions");
  actions.appendChild(actionForm(job.id, "retry", "Retry"));
  actions.appendChild(actionForm(job.id, "cancel", "Cancel", "Cancel this job?"));
  row.appendChild(actions);
  return row;
}

function updateJobTable(table, jobs) {
  const body = table.tBodies[0];
  const rows = new Map();
  for (const row of body.rows) rows.set(row.dataset.jobId, row);
  let previous = null;
  for (const job of jobs) {
    let row = rows.get(job.id);
    if (!row) row = newJobRow(job);
    rows.delete(job.id);
    updateJob(row, job);
    const wanted = previous ? previous.nextSibling : body.firstChild;
    if (row !== wanted) body.insertBefore(row, wanted);
    previous = row;
  }
  for (const row of rows.values()) row.remove();
  const empty = document.getElementById("no-jobs");
  if (empty) empty.hidden = jobs.length > 0;
}

// -- pages refreshed as a whole region ------------------------------------------------

async function refreshRegion(region) {
  const response = await fetch(region.dataset.live, { headers: { Accept: "text/html" }, credentials: "same-origin" });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById(region.id);
  if (fresh && fresh.innerHTML !== region.innerHTML) region.innerHTML = fresh.innerHTML;
}

// -- actions: forms posted by fetch (they work without script too) -------------------

async function submitAction(event) {
  const form = event.target.closest("form.action");
  if (!form) return;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  if (!refreshNow) return; // a page without live updates: post the form, see the flash message
  event.preventDefault();
  const response = await fetch(form.action, {
    method: "POST",
    body: new FormData(form),
    headers: { Accept: "application/json", "X-CSRF-Token": csrfToken() },
    credentials: "same-origin",
  });
  let answer = { ok: response.ok, message: response.statusText };
  try { answer = await response.json(); } catch (error) { /* not JSON */ }
  flash(answer.message || answer.detail || String(response.status), response.ok && answer.ok !== false);
  await refreshNow();
}

let refreshNow = null;

document.addEventListener("submit", submitAction);
document.addEventListener("DOMContentLoaded", () => {
  const table = document.querySelector("table#jobs[data-poll]");
  if (table) {
    refreshNow = every(POLL_MS, async () => updateJobTable(table, (await getJSON(table.dataset.poll)).jobs));
  }
  const job = document.querySelector("#job[data-poll]");
  if (job) {
    refreshNow = every(POLL_MS, async () => updateJob(job, await getJSON(job.dataset.poll)));
  }
  const region = document.querySelector("[data-live]");
  if (region) {
    refreshNow = every(LIVE_MS, () => refreshRegion(region));
  }
});
