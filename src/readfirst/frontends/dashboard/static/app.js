// readfirst dashboard: renders the run view pushed by /api/events. Every text from the journal
// goes through textContent (candidate titles and reasons are untrusted); the charts are SVG
// made by the server with their text escaped.
"use strict";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function renderFacts(v) {
  const s = v.summary, c = v.context, dl = document.getElementById("facts");
  const facts = [
    ["target", s.target], ["metric", c.metric.name + (c.metric.unit ? " (" + c.metric.unit + ")" : "") + ", " + c.metric.direction + " is better"],
    ["proposer", s.proposer], ["workers", s.workers], ["branch", s.branch],
    ["base → now", (s.base_commit || "").slice(0, 12) + " → " + (s.final_commit || "").slice(0, 12)],
    ["started", c.started], ["duration", c.duration], ["funnel", c.funnel_line],
    ["stop reason", s.stop_reason || "–"],
  ];
  dl.replaceChildren();
  for (const [k, val] of facts) { dl.append(el("dt", k), el("dd", val === null || val === undefined ? "–" : val)); }
  document.getElementById("run-id").textContent = v.run_id;
  const badge = document.getElementById("run-status");
  badge.textContent = s.status; badge.className = "badge " + s.status;
}

function renderWorkers(v) {
  const box = document.getElementById("workers");
  box.replaceChildren();
  if (!v.live.length) { box.append(el("p", v.summary.status === "running" ? "between experiments" : "none running", "muted")); return; }
  const received = Date.now() / 1000;
  for (const w of v.live) {
    const row = el("div", null, "worker");
    row.dataset.seq = w.seq;
    row.append(el("div", w.line));
    if (w.rounds_max) {
      const bar = el("div", null, "bar"), fill = el("div");
      fill.style.width = Math.min(100, 100 * (w.rounds_done || 0) / w.rounds_max) + "%";
      bar.append(fill); row.append(bar);
    }
    box.append(row);
  }
  box.dataset.received = received;
}

function renderExperiments(v) {
  const body = document.querySelector("#experiments tbody");
  body.replaceChildren();
  for (const r of v.context.rows) {
    const tr = el("tr");
    tr.dataset.seq = r.seq;
    const result = r.outcome === "kept" && r.kind === "confirm" ? "kept" : r.result;
    tr.append(el("td", r.seq, "num"), el("td", (r.kind === "confirm" ? "confirm: " : "") + r.title),
      el("td", r.source), el("td", result, "r-" + result), el("td", r.change, "num"),
      el("td", r.duration, "num"), el("td", r.worker), el("td", r.reason, "reason"));
    body.append(tr);
  }
}

function renderBrief(v) {
  const body = document.querySelector("#brief tbody");
  body.replaceChildren();
  if (!v.hypotheses.length) { const tr = el("tr"); const td = el("td", "no research brief yet (readfirst research)", "muted"); td.colSpan = 5; tr.append(td); body.append(tr); return; }
  for (const h of v.hypotheses) {
    const tr = el("tr");
    tr.append(el("td", h.rank, "num"), el("td", h.title), el("td", h.kind), el("td", Number(h.score).toFixed(2), "num"),
      el("td", (h.status || "open") + (h.status_reason ? ": " + h.status_reason : "")));
    body.append(tr);
  }
}

function renderNoise(v) {
  const box = document.getElementById("noise"), m = v.machine || {};
  box.replaceChildren();
  const dl = el("dl");
  dl.append(el("dt", "host"), el("dd", (m.host || "?") + (m.cpus ? ", " + m.cpus + " CPUs" : "")));
  dl.append(el("dt", "noise floor"), el("dd", m.base_cv_median === null || m.base_cv_median === undefined ? "–" :
    "median CV of the base side " + (100 * m.base_cv_median).toFixed(2) + " % over " + m.measured + " experiment(s)"));
  for (const n of v.context.noise) dl.append(el("dt", "worker " + n.worker), el("dd", "baseline CV " + n.cv + " over " + n.runs + " runs" + (n.quarantined === "yes" ? ", quarantined" : "")));
  box.append(dl);
}

function renderCosts(v) {
  const section = document.getElementById("costs-section"), dl = document.getElementById("costs");
  const cost = v.summary.cost || {};
  section.hidden = !(cost.total_usd > 0);
  dl.replaceChildren();
  for (const [k, val] of v.context.cost) dl.append(el("dt", k), el("dd", val));
}

function setSvg(id, svg) {
  // server-made SVG, text escaped there; parsed as SVG, never as HTML
  const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
  const box = document.getElementById(id);
  box.replaceChildren(document.importNode(doc.documentElement, true));
}

function render(v) {
  renderFacts(v); renderWorkers(v); renderExperiments(v); renderBrief(v); renderNoise(v); renderCosts(v);
  setSvg("progress", v.charts.progress);
  setSvg("forest", v.charts.forest);
  setSvg("funnel", v.charts.funnel);
  const samples = document.getElementById("samples");
  samples.replaceChildren();
  for (const svg of v.charts.samples) {
    const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
    samples.append(document.importNode(doc.documentElement, true));
  }
  document.getElementById("stream").textContent = "live: updated " + new Date(v.generated * 1000).toLocaleTimeString();
  document.body.dataset.status = v.summary.status;
}

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("view", (ev) => render(JSON.parse(ev.data)));
  source.addEventListener("problem", (ev) => { document.getElementById("stream").textContent = JSON.parse(ev.data).error; });
  source.onerror = () => { document.getElementById("stream").textContent = "disconnected; retrying…"; };
}

connect();
