// Progressive enhancement of the console: pages work without it; with it, logs stream and the alert badge is live.
// Every text that came from a tenant or a customer goes in with textContent, never as HTML.
"use strict";

function line(cls, text) {
  const span = document.createElement("span");
  span.className = cls;
  span.textContent = text;
  return span;
}

function appendLine(log, cls, text) {
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.append(line(cls, text), "\n");
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function addHistoryRow(d) {
  const body = document.querySelector("#history tbody");
  if (!body) return;
  const row = document.createElement("tr");
  for (const [cls, text] of [["", d.at.replace("T", " ").slice(0, 19)], ["", d.from || ""], ["", d.to],
                             ["actor", d.actor], ["", d.reason || ""]]) {
    const cell = document.createElement("td");
    if (cls) cell.className = cls;
    cell.textContent = text;
    row.append(cell);
  }
  body.append(row);
}

function setStatus(id, status) {
  const el = document.getElementById(id);
  if (!el) return;
  const span = document.createElement("span");
  span.className = "status s-" + status.toLowerCase();
  span.textContent = status;
  el.replaceChildren(span);
  el.dataset.status = status;
}

// The order's log and the rollout's events: an EventSource resumes by itself (Last-Event-ID) after a drop.
function follow(log) {
  const live = document.getElementById("live");
  const source = new EventSource(log.dataset.stream);
  source.onopen = () => { if (live) live.hidden = false; };
  source.onerror = () => { if (live) live.hidden = true; };
  source.addEventListener("log", (e) => {
    const d = JSON.parse(e.data);
    appendLine(log, "l", `[${d.step}] ${d.line}`);
  });
  source.addEventListener("step", (e) => {
    const d = JSON.parse(e.data);
    appendLine(log, "step", `step ${d.step} ${d.name}: ${d.status}`);
  });
  source.addEventListener("status", (e) => {
    const d = JSON.parse(e.data);
    appendLine(log, "st", `→ ${d.to} (${d.actor})` + (d.reason ? `: ${d.reason}` : ""));
    addHistoryRow(d);
    setStatus("order-status", d.to);
  });
  source.addEventListener("rollout-event", (e) => {
    const d = JSON.parse(e.data);
    appendLine(log, "", `${d.at.slice(11, 19)} ${d.kind}: ${d.message}`);
  });
  source.addEventListener("rollout", (e) => {
    const d = JSON.parse(e.data);
    const shown = document.getElementById("rollout-status");
    // A new state changes which actions apply: the page is drawn again by the server.
    if (shown && shown.textContent.trim() !== d.status) window.location.reload();
  });
  source.addEventListener("end", () => {
    source.close();
    if (live) live.hidden = true;
  });
}

// The alert badge: open, unacknowledged alerts, pushed by the hub when the count changes.
function badge(el) {
  const source = new EventSource(el.dataset.badgeSrc);
  source.addEventListener("badge", (e) => {
    const d = JSON.parse(e.data);
    el.textContent = d.open ? String(d.open) : "";
    el.className = "badge" + (d.hard ? " hard" : d.medium ? " medium" : d.open ? " soft" : "");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-stream]").forEach(follow);
  document.querySelectorAll("[data-badge-src]").forEach(badge);
  // Typed confirmations: the button stays off until the exact text is typed.
  document.querySelectorAll("input[data-confirm]").forEach((input) => {
    const button = input.form.querySelector("button[type=submit]");
    const check = () => { button.disabled = input.value !== input.dataset.confirm; };
    input.addEventListener("input", check);
    check();
  });
});
