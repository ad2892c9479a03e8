// The order page's live progress: the customer API's SSE stream (EventSource resumes with Last-Event-ID by itself).
// Everything from the stream is written with textContent, never as HTML.
"use strict";
(function () {
  const log = document.getElementById("log");
  if (!log || !log.dataset.events) return;
  const status = document.getElementById("status");
  const steps = document.getElementById("steps");
  const stepItems = new Map();

  function line(text, cls) {
    const div = document.createElement("div");
    if (cls) div.className = cls;
    div.textContent = text;
    log.appendChild(div);
    log.scrollTop = log.scrollHeight;
  }
  function setStatus(value) {
    status.textContent = value;
    status.className = "status " + value;
    const pay = document.getElementById("pay");
    if (pay && value !== "PENDING_PAYMENT") pay.remove(); // paid (or cancelled): nothing to pay any more
  }

  const source = new EventSource(log.dataset.events);
  source.addEventListener("status", (e) => {
    const d = JSON.parse(e.data);
    setStatus(d.to);
    line("— " + d.to + (d.reason ? ": " + d.reason : ""), "transition");
  });
  source.addEventListener("step", (e) => {
    const d = JSON.parse(e.data);
    let li = stepItems.get(d.step);
    if (!li) {
      li = document.createElement("li");
      stepItems.set(d.step, li);
      steps.appendChild(li);
    }
    li.textContent = (d.status === "SUCCEEDED" ? "✓ " : d.status === "FAILED" ? "✗ " : "… ") + d.step + ". " + d.name;
    li.dataset.status = d.status;
  });
  source.addEventListener("log", (e) => {
    line(JSON.parse(e.data).line);
  });
  source.addEventListener("end", (e) => {
    source.close();
    const d = JSON.parse(e.data);
    log.dataset.ended = d.status;
    // The tools, the logins button and the server link are rendered by the page: show them now.
    if (d.status !== log.dataset.status) window.location.reload();
  });
})();
