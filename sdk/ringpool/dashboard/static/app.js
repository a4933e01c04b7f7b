// The little the pages do in the browser: the live overview (server-sent events,
// sparklines, the ring's key lookup), "select all" in the DLQ, and refreshing a
// running job. Every page works without it; this only keeps them current.
"use strict";

function sparkline(svg, values) {
  if (!svg) return;
  const points = values.map((v, i) => [i, v === null ? 0 : v]);
  const width = 120, height = 32, pad = 2;
  const max = Math.max(1e-9, ...points.map(p => p[1]));
  const step = points.length > 1 ? width / (points.length - 1) : width;
  const xy = points.map(([i, v]) => `${(i * step).toFixed(1)},${(height - pad - v / max * (height - 2 * pad)).toFixed(1)}`);
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  if (!xy.length) return;
  const area = document.createElementNS(ns, "polygon");
  area.setAttribute("class", "area");
  area.setAttribute("points", `0,${height} ${xy.join(" ")} ${((points.length - 1) * step).toFixed(1)},${height}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", xy.join(" "));
  svg.append(area, line);
}

function millis(value) {
  if (value === null || value === undefined) return "-";
  return value < 10000 ? `${value.toFixed(1)} ms` : `${(value / 1000).toFixed(1)} s`;
}

function highlight(owner, angle) {
  const ring = document.querySelector("svg.ring");
  if (!ring) return;
  ring.classList.toggle("highlighting", Boolean(owner));
  ring.querySelectorAll(".arc").forEach(arc => arc.classList.toggle("owner", arc.dataset.node === owner));
  const marker = ring.querySelector("#key-marker");
  if (marker && owner) {
    marker.removeAttribute("hidden");
    marker.setAttribute("transform", `rotate(${angle})`);
  }
}

function liveOverview() {
  const root = document.querySelector("[data-live-root]");
  if (!root) return;
  let current = JSON.parse(document.getElementById("live-data").textContent);
  let nodesSeen = JSON.stringify(current.nodes);
  let found = null;
  const set = (name, value) => document.querySelectorAll(`[data-live="${name}"]`).forEach(el => { el.textContent = value; });

  function show(snapshot) {
    set("ring_version", snapshot.ring_version);
    set("members", snapshot.nodes.length);
    set("leader", snapshot.leader || "none");
    set("in_flight", snapshot.in_flight);
    set("retry_set", snapshot.retry_set);
    set("dlq", snapshot.dlq);
    const throughput = snapshot.throughput;
    set("throughput_now", throughput.length ? throughput[throughput.length - 1] : 0);
    const latencies = snapshot.latency_ms.filter(v => v !== null);
    set("latency_now", millis(latencies.length ? latencies[latencies.length - 1] : null));
    set("updated", snapshot.at ? `updated ${new Date(snapshot.at * 1000).toLocaleTimeString()}` : "");
    const error = document.querySelector('[data-live="error"]');
    if (error) error.hidden = !snapshot.error;
    sparkline(document.getElementById("spark-throughput"), throughput);
    sparkline(document.getElementById("spark-latency"), snapshot.latency_ms);
  }

  async function swap(url, id) {
    const response = await fetch(url, { headers: { accept: "text/html" } });
    if (response.ok) document.getElementById(id).innerHTML = await response.text();
  }

  show(current);
  const events = new EventSource("/events");
  events.onmessage = async message => {
    const snapshot = JSON.parse(message.data);
    const ringChanged = snapshot.ring_version !== current.ring_version;
    current = snapshot;
    show(snapshot);
    const nodes = JSON.stringify(snapshot.nodes);
    if (nodes !== nodesSeen) {
      nodesSeen = nodes;
      await swap("/nodes", "nodes");
    }
    if (ringChanged) {
      await swap("/ring", "ring");
      if (found) lookUp(found.key);
    }
  };

  const form = document.getElementById("route");
  const result = document.getElementById("route-result");
  async function lookUp(key) {
    const response = await fetch(`/api/route?key=${encodeURIComponent(key)}`);
    const data = await response.json();
    if (!response.ok) {
      found = null;
      result.textContent = data.error;
      highlight(null, 0);
      return;
    }
    found = data;
    result.replaceChildren();
    const name = document.createElement("span");
    name.className = "owner-name";
    name.textContent = data.owner;
    const strong = document.createElement("b");
    strong.textContent = data.key;
    result.append(strong, " → ", name, ` (${data.address})`);
    highlight(data.owner, data.angle);
  }
  form.addEventListener("submit", event => {
    event.preventDefault();
    const key = form.elements.key.value;
    history.replaceState(null, "", `/?key=${encodeURIComponent(key)}`);
    lookUp(key);
  });
  if (form.elements.key.value) lookUp(form.elements.key.value);
}

function selectAll() {
  document.querySelectorAll("[data-select-all]").forEach(box => {
    box.addEventListener("change", () => {
      box.closest("form").querySelectorAll('input[name="ids"]').forEach(item => { item.checked = box.checked; });
    });
  });
}

function refreshRunningJob() {
  if (document.querySelector("[data-refresh]")) setTimeout(() => location.reload(), 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  liveOverview();
  selectAll();
  refreshRunningJob();
});
