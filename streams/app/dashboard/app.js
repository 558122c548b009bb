// driftline's live page: polls the worker's /driftline/dashboard/data/ every second and
// redraws. Plain JavaScript and SVG: nothing is fetched from anywhere but the worker.
"use strict";

const CANARY_EVENTS = new Set(["canary_started", "traffic_changed", "promoted", "archived",
  "rolled_back", "challenger_assigned", "validated", "rejected"]);

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  row.appendChild(td);
}

function fill(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows.map((values) => {
    const tr = document.createElement("tr");
    values.forEach((v) => cell(tr, v));
    return tr;
  }));
}

function clock(ms) {
  return new Date(ms).toISOString().slice(11, 19);
}

function chart(id, series) {
  // series: [[value or null, ...], ...] over the same times; drawn on one scale.
  const svg = document.getElementById(id);
  const values = series.flat().filter((v) => v !== null);
  const top = Math.max(1, ...values) * 1.1;
  const n = Math.max(2, ...series.map((s) => s.length));
  svg.replaceChildren(...series.map((points, k) => {
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("class", `series-${k}`);
    line.setAttribute("points", points
      .map((v, i) => (v === null ? null : `${(i / (n - 1)) * 600},${160 - (v / top) * 150}`))
      .filter((p) => p !== null).join(" "));
    return line;
  }));
  svg.dataset.points = String(values.length);
}

function render(data) {
  const totals = data.totals;
  const dead = Object.values(totals.dead_letters).reduce((a, b) => a + b, 0);
  document.getElementById("status").textContent =
    `roles ${data.roles.join(", ")} · records ${totals.records_in} · predictions ` +
    `${totals.predictions_out} · dead letters ${dead} · updated ${clock(data.now * 1000)}`;

  const series = data.series;
  chart("throughput", [series.map((p) => p.predictions_per_s)]);
  chart("latency", [series.map((p) => p.p50_ms), series.map((p) => p.p99_ms)]);
  const last = series[series.length - 1];
  if (last) {
    document.getElementById("throughput-now").textContent =
      `now ${last.predictions_per_s} predictions/s`;
    document.getElementById("latency-now").textContent =
      `now p50 ${last.p50_ms ?? "–"} ms, p99 ${last.p99_ms ?? "–"} ms`;
  }

  const arms = [];
  for (const [model, info] of Object.entries(data.models || {})) {
    for (const arm of info.arms) {
      arms.push([model, arm.arm, `v${arm.version}`, `${(arm.traffic_bp / 100).toFixed(2)}%`,
        info.experiment_id || ""]);
    }
  }
  fill("arms", arms);

  const steps = (data.lifecycle || []).filter((e) => CANARY_EVENTS.has(e.event)).slice(0, 20);
  const decisions = [];
  for (const [model, byArm] of Object.entries(data.decisions || {})) {
    for (const [version, d] of Object.entries(byArm)) {
      const why = d.error ? d.error : (d.reasons || []).join("; ");
      decisions.push(`${model} ${version}: ${d.action || "error"}${why ? ` (${why})` : ""}`);
    }
  }
  document.getElementById("canary").replaceChildren(
    ...steps.map((e) => {
      const li = document.createElement("li");
      li.textContent = `${clock(e.at)} ${e.model} v${e.version} ${e.event} by ${e.actor} `;
      const code = document.createElement("code");
      code.textContent = JSON.stringify(e.evidence);
      li.appendChild(code);
      return li;
    }),
    ...decisions.map((text) => {
      const li = document.createElement("li");
      li.textContent = `policy now: ${text}`;
      return li;
    }),
  );

  fill("drift", (data.drift || []).map((d) => [clock(d.at), d.model, d.version, d.arm,
    d.detector, d.feature, Number(d.statistic).toFixed(3), Number(d.threshold).toFixed(3)]));

  const verify = document.getElementById("verify");
  if (data.audit) {
    const broken = Object.entries(data.audit.intact).filter(([, ok]) => !ok).map(([m]) => m);
    verify.className = broken.length ? "bad" : "good";
    verify.textContent = broken.length ? `NOT intact: ${broken.join(", ")}`
      : `audit chains intact (${Object.keys(data.audit.intact).length} checked)`;
  } else {
    verify.textContent = "the audit log is kept by the worker with the lineage role";
  }
  fill("audit", (data.lifecycle || []).map((e) => [clock(e.at), e.model, e.seq, e.event,
    e.version, e.actor]));
}

async function poll() {
  try {
    const answer = await fetch("data/", { cache: "no-store" });
    if (answer.ok) render(await answer.json());
    else document.getElementById("status").textContent = `the worker answered ${answer.status}`;
  } catch (error) {
    document.getElementById("status").textContent = `the worker is unreachable: ${error}`;
  }
  setTimeout(poll, 1000);
}

poll();
