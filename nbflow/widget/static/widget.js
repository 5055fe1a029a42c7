// nbflow's live DAG widget (anywidget ES module, no build step).
// Synced state: palette, graph_json (layout, sent once per graph shape), nodes_json (one
// small summary per node), header, detail (the selected node), message. Colours come from
// the palette trait (nbflow/palette.py) as CSS variables; none are written here.

const SVG = "http://www.w3.org/2000/svg";
const ZOOMS = [0.2, 0.35, 0.5, 0.65, 0.8, 1, 1.25, 1.5];
const MIN_FIT = 0.2; // below this labels are unreadable: scroll instead

function h(tag, attrs = {}, children = []) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") el.textContent = v;
    else if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v);
  }
  for (const c of children) if (c) el.append(c);
  return el;
}

function s(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") el.textContent = v;
    else if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  return el;
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 60) return `${value.toFixed(value < 10 ? 2 : 1)} s`;
  const m = Math.floor(value / 60);
  return `${m} min ${Math.round(value - 60 * m)} s`;
}

function fit(text, width) {
  const max = Math.max(4, Math.floor(width / 7.1));
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

// A state's icon (empty before the palette arrives), and icon with readable name.
function icon(palette, state) {
  return palette[state] ? palette[state].icon : "";
}

function stateText(palette, state) {
  return `${icon(palette, state)} ${state.replace("_", " ")}`;
}

const ACTIVE = new Set(["running", "retrying"]);
const ORDER = ["running", "retrying", "paused", "pending", "success", "cached", "failed",
  "timed_out", "upstream_failed", "skipped", "cancelled"];

function render({ model, el }) {
  const root = h("div", { class: "nbflow-widget" });
  el.append(root);
  let zoom = null; // null: fit to width
  let graph = JSON.parse(model.get("graph_json") || "{}");
  let nodes = JSON.parse(model.get("nodes_json") || "{}");
  let receivedAt = Date.now() / 1000;

  // -- header ---------------------------------------------------------------------------
  const title = h("span", { class: "nbflow-title" });
  const runState = h("span", { class: "nbflow-run-state" });
  const elapsed = h("span", { class: "nbflow-elapsed" });
  const runId = h("span", { class: "nbflow-run-id" });
  const retryButton = h("button", {
    class: "nbflow-button nbflow-retry", type: "button", text: "↻ Re-run failed",
    title: "Run the failed tasks (and what depends on them) again; reuse every other result",
    onclick: () => { retryButton.disabled = true; model.send({ type: "retry" }); },
  });
  const cancelButton = h("button", {
    class: "nbflow-button nbflow-cancel", type: "button", text: "■ Cancel",
    title: "Cancel this background run",
    onclick: () => { cancelButton.disabled = true; model.send({ type: "cancel" }); },
  });
  const zoomOut = h("button", { class: "nbflow-button nbflow-zoom", type: "button", text: "−", title: "Zoom out",
    onclick: () => setZoom(-1) });
  const zoomFit = h("button", { class: "nbflow-button nbflow-zoom", type: "button", text: "Fit", title: "Fit the width",
    onclick: () => { zoom = null; drawGraph(); } });
  const zoomIn = h("button", { class: "nbflow-button nbflow-zoom", type: "button", text: "+", title: "Zoom in",
    onclick: () => setZoom(1) });
  const counts = h("div", { class: "nbflow-counts" });
  const message = h("div", { class: "nbflow-message" });
  root.append(
    h("div", { class: "nbflow-header" }, [
      h("div", { class: "nbflow-heading" }, [title, runState, elapsed, runId]),
      h("div", { class: "nbflow-actions" }, [zoomOut, zoomFit, zoomIn, retryButton, cancelButton]),
    ]),
    counts,
    message,
  );

  // -- body: graph and detail panel -------------------------------------------------------
  const canvas = h("div", { class: "nbflow-canvas" });
  const panel = h("div", { class: "nbflow-detail", hidden: true });
  root.append(h("div", { class: "nbflow-body" }, [canvas, panel]));
  const legend = h("div", { class: "nbflow-legend" });
  root.append(legend);

  let svg = null;
  let nodeEls = new Map();

  function setZoom(step) {
    const current = zoom ?? currentScale();
    let i = ZOOMS.findIndex((z) => z >= current - 1e-6);
    if (i < 0) i = ZOOMS.length - 1;
    zoom = ZOOMS[Math.min(ZOOMS.length - 1, Math.max(0, i + step))];
    drawGraph();
  }

  function currentScale() {
    const width = canvas.clientWidth || 800;
    if (!graph || !graph.width) return 1;
    return Math.max(MIN_FIT, Math.min(1, (width - 16) / graph.width));
  }

  function applyPalette() {
    const palette = model.get("palette") || {};
    for (const [state, p] of Object.entries(palette)) {
      root.style.setProperty(`--nbflow-state-${state}`, p.colour);
    }
    legend.replaceChildren(
      h("span", { class: "nbflow-legend-title", text: "Legend" }),
      ...ORDER.filter((st) => palette[st]).map((st) =>
        h("span", { class: `nbflow-chip nbflow-state-${st}`, title: st }, [
          h("span", { class: "nbflow-swatch" }),
          h("span", { text: `${palette[st].icon} ${palette[st].label}` }),
        ])),
      h("span", { class: "nbflow-chip nbflow-legend-shape", text: "▭▭ mapped" }),
      h("span", { class: "nbflow-chip nbflow-legend-shape", text: "⬡ case" }),
      h("span", { class: "nbflow-chip nbflow-legend-shape", text: "⇢ order only" }),
    );
  }

  function drawGraph() {
    canvas.replaceChildren();
    nodeEls = new Map();
    if (!graph || !graph.nodes) {
      canvas.append(h("div", { class: "nbflow-empty", text: "Waiting for a run…" }));
      return;
    }
    if (graph.nodes.length === 0) {
      canvas.append(h("div", { class: "nbflow-empty", text: "This flow has no tasks." }));
      return;
    }
    const scale = zoom ?? currentScale();
    const pad = 8;
    const width = graph.width + 2 * pad;
    const height = graph.height + 2 * pad;
    svg = s("svg", {
      class: "nbflow-graph", width: Math.ceil(width * scale), height: Math.ceil(height * scale),
      viewBox: `${-pad} ${-pad} ${width} ${height}`, role: "img",
      "aria-label": `Task graph of flow ${model.get("header").flow || ""}`,
    });
    const defs = s("defs");
    const marker = s("marker", { id: `nbflow-arrow-${model.model_id || "x"}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerUnits: "userSpaceOnUse", markerWidth: 9, markerHeight: 9, orient: "auto-start-reverse" });
    marker.append(s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "nbflow-arrowhead" }));
    defs.append(marker);
    svg.append(defs);
    const edges = s("g", { class: "nbflow-edges" });
    const showLabels = graph.edges.length <= 60; // argument names only help on small graphs
    for (const e of graph.edges) {
      const p = e.points;
      if (!p || p.length < 2) continue;
      let d = `M ${p[0][0]} ${p[0][1]}`;
      if (p.length % 3 === 1) {
        for (let i = 1; i + 2 < p.length; i += 3) d += ` C ${p[i][0]} ${p[i][1]} ${p[i + 1][0]} ${p[i + 1][1]} ${p[i + 2][0]} ${p[i + 2][1]}`;
      } else {
        for (let i = 1; i < p.length; i++) d += ` L ${p[i][0]} ${p[i][1]}`;
      }
      const cls = `nbflow-edge${e.data ? "" : " nbflow-edge-order"}${e.mapped ? " nbflow-edge-mapped" : ""}`;
      const path = s("path", { d, class: cls, "marker-end": `url(#${marker.id})` });
      path.append(s("title", { text: `${e.from} → ${e.to}${e.label ? ` (${e.label})` : ""}` }));
      edges.append(path);
      if (e.label && showLabels && !e.label.includes("[")) {
        const a = p[0];
        const b = p[p.length - 1];
        edges.append(s("text", { x: (a[0] + b[0]) / 2 + 5, y: (a[1] + b[1]) / 2 + 3, class: "nbflow-edge-label", text: e.label }));
      }
    }
    svg.append(edges);
    const layer = s("g", { class: "nbflow-nodes" });
    for (const n of graph.nodes) {
      const g = s("g", { class: `nbflow-node nbflow-kind-${n.kind}`, "data-node": n.id, tabindex: 0,
        transform: `translate(${n.x - n.w / 2} ${n.y - n.h / 2})` });
      if (n.kind === "mapped") {
        g.append(s("rect", { x: 4, y: 4, width: n.w, height: n.h, rx: 8, class: "nbflow-shadow" }));
      }
      let shape;
      if (n.kind === "case") {
        const k = 14;
        shape = s("polygon", { points: `${k},0 ${n.w - k},0 ${n.w},${n.h / 2} ${n.w - k},${n.h} ${k},${n.h} 0,${n.h / 2}`,
          class: "nbflow-shape" });
      } else {
        shape = s("rect", { width: n.w, height: n.h, rx: n.kind === "parameter" ? n.h / 2 : 8, class: "nbflow-shape" });
      }
      g.append(shape);
      const pad = n.kind === "case" || n.kind === "parameter" ? 18 : 10;
      const name = s("text", { x: pad, y: 22, class: "nbflow-name" });
      const icon = s("tspan", { class: "nbflow-icon" });
      const label = s("tspan", { text: ` ${fit(n.id, n.w - pad - 28)}` });
      name.append(icon, label);
      const info = s("text", { x: pad, y: 41, class: "nbflow-info" });
      const bar = s("g", { class: "nbflow-bar", transform: `translate(${pad} ${n.h - 9})` });
      const tip = s("title");
      g.append(name, info, bar, tip);
      g.addEventListener("click", () => select(n.id, null, 0));
      g.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") select(n.id, null, 0); });
      layer.append(g);
      nodeEls.set(n.id, { g, icon, info, bar, tip, node: n });
    }
    svg.append(layer);
    canvas.append(svg);
    updateNodes();
  }

  function nodeInfo(sum, node) {
    const parts = [];
    if (sum.total !== undefined) parts.push(`${sum.done}/${sum.total} done`);
    else if (sum.state === "running") parts.push("running");
    if (sum.total === undefined && (sum.attempts > 1 || sum.state === "retrying")) {
      parts.push(`retry ${Math.max(1, sum.attempts - 1)}/${sum.retries}`);
    }
    if (sum.cached) parts.push("cached");
    const ran = sum.attempts > 0 || sum.total !== undefined || ACTIVE.has(sum.state);
    if (ran && sum.duration !== null && sum.duration !== undefined && !sum.cached) {
      const extra = ACTIVE.has(sum.state) && !model.get("header").done ? Date.now() / 1000 - receivedAt : 0;
      parts.push(seconds(sum.duration + extra));
    }
    if (parts.length === 0) parts.push(node.kind === "case" ? "branch" : sum.state.replace("_", " "));
    return parts.join(" · ");
  }

  function updateNodes() {
    const palette = model.get("palette") || {};
    const selected = (model.get("detail") || {}).node;
    for (const [id, ref] of nodeEls) {
      const sum = nodes[id] || { state: "pending", attempts: 0, retries: 0, duration: null, cached: false };
      const state = sum.state;
      ref.g.setAttribute("class", `nbflow-node nbflow-kind-${ref.node.kind} nbflow-state-${state}${id === selected ? " nbflow-selected" : ""}`);
      ref.g.setAttribute("data-state", state);
      ref.icon.textContent = icon(palette, state);
      ref.info.textContent = nodeInfo(sum, ref.node);
      ref.tip.textContent = `${id}: ${state.replace("_", " ")}${sum.total !== undefined ? ` (${sum.done}/${sum.total} children done)` : ""}`;
      ref.bar.replaceChildren();
      if (sum.breakdown && sum.total) {
        const width = ref.node.w - 20;
        let x = 0;
        for (const st of ORDER) {
          const count = sum.breakdown[st];
          if (!count) continue;
          const w = (width * count) / sum.total;
          const seg = s("rect", { x, y: 0, width: Math.max(w, 1), height: 4, class: `nbflow-seg nbflow-state-${st}` });
          seg.append(s("title", { text: `${count} ${st.replace("_", " ")}` }));
          ref.bar.append(seg);
          x += w;
        }
      }
    }
  }

  function updateHeader() {
    const head = model.get("header") || {};
    const palette = model.get("palette") || {};
    receivedAt = Date.now() / 1000;
    title.textContent = head.flow || "";
    const st = head.state || "pending";
    runState.className = `nbflow-run-state nbflow-badge nbflow-state-${st}`;
    runState.textContent = stateText(palette, st);
    runId.textContent = head.run_id ? `run ${head.run_id}` : "";
    tick();
    retryButton.disabled = !head.can_retry;
    cancelButton.disabled = !head.can_cancel;
    cancelButton.hidden = !head.can_cancel && !(head.done === false && head.background);
    const c = head.counts || {};
    const total = Object.values(c).reduce((a, b) => a + b, 0);
    counts.replaceChildren(
      h("span", { class: "nbflow-total", text: `${total} task run${total === 1 ? "" : "s"}` }),
      ...ORDER.filter((k) => c[k]).map((k) =>
        h("span", { class: `nbflow-chip nbflow-state-${k}`, "data-state": k }, [
          h("span", { class: "nbflow-swatch" }),
          h("span", { text: `${icon(palette, k)} ${c[k]} ${k.replace("_", " ")}` }),
        ])),
    );
  }

  function tick() {
    const head = model.get("header") || {};
    const extra = head.done || head.state === "pending" ? 0 : Date.now() / 1000 - receivedAt;
    elapsed.textContent = head.run_id ? seconds((head.elapsed || 0) + extra) : "";
    if (!head.done && head.run_id) {
      for (const [id, ref] of nodeEls) {
        const sum = nodes[id];
        if (sum && ACTIVE.has(sum.state)) ref.info.textContent = nodeInfo(sum, ref.node);
      }
    }
  }

  function select(node, child, page) {
    model.send({ type: "select", node, child, page });
  }

  function updateDetail() {
    const d = model.get("detail") || {};
    const palette = model.get("palette") || {};
    updateNodes();
    if (!d.node) {
      panel.hidden = true;
      panel.replaceChildren();
      return;
    }
    panel.hidden = false;
    const st = d.state;
    const facts = [["state", stateText(palette, st)]];
    if (d.total === undefined) {
      facts.push(["attempts", d.retries ? `${d.attempts} (retries allowed: ${d.retries})` : String(d.attempts)]);
    }
    facts.push(["duration", seconds(d.duration) || "—"]);
    if (d.cached) facts.push(["cached", "yes: result read from the cache"]);
    if (d.total !== undefined) facts.push(["children", `${d.done}/${d.total} done`]);
    if (d.error) facts.push(["error", d.error]);
    else if (d.reason) facts.push(["reason", d.reason]);
    const parts = [
      h("div", { class: "nbflow-detail-head" }, [
        d.child !== null && d.child !== undefined
          ? h("button", { class: "nbflow-button nbflow-back", type: "button", text: "←", title: "Back to the mapped task",
            onclick: () => select(d.node, null, d.page) }) : null,
        h("span", { class: `nbflow-badge nbflow-state-${st}`, text: icon(palette, st) }),
        h("span", { class: "nbflow-detail-title", text: d.name }),
        h("button", { class: "nbflow-button nbflow-close", type: "button", text: "×", title: "Close",
          onclick: () => select(null, null, 0) }),
      ]),
      h("dl", { class: "nbflow-facts" }, facts.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
    ];
    if (d.can_resume) {
      const resume = h("button", {
        class: "nbflow-button nbflow-resume", type: "button", text: "▶ Resume",
        title: "Let this task (trigger manual_only) run now",
        onclick: () => { resume.disabled = true; model.send({ type: "resume", task: d.name }); },
      });
      parts.push(h("div", { class: "nbflow-detail-actions" }, [resume]));
    }
    if (d.history && d.history.length > 1) {
      parts.push(h("div", { class: "nbflow-section", text: "Attempts" }));
      parts.push(h("table", { class: "nbflow-attempts" }, d.history.map((a) =>
        h("tr", { class: `nbflow-state-${a.state}` }, [
          h("td", { text: `#${a.number}` }),
          h("td", { text: stateText(palette, a.state) }),
          h("td", { text: seconds(a.duration) }),
          h("td", { class: "nbflow-attempt-error", text: a.error || "" }),
        ]))));
    }
    if (d.children) {
      parts.push(h("div", { class: "nbflow-section", text: `Children (page ${d.page + 1} of ${d.pages})` }));
      parts.push(h("div", { class: "nbflow-children" }, d.children.map((c) =>
        h("button", { class: `nbflow-child nbflow-state-${c.state}`, type: "button", "data-state": c.state,
          title: `${c.name}: ${c.state}`, onclick: () => select(d.node, c.index, d.page) }, [
          h("span", { class: "nbflow-swatch" }),
          h("span", { text: `${icon(palette, c.state)} [${c.index}]` }),
          h("span", { class: "nbflow-child-info", text: c.cached ? "cached" : seconds(c.duration) }),
        ]))));
      if (d.pages > 1) {
        parts.push(h("div", { class: "nbflow-pager" }, [
          h("button", { class: "nbflow-button", type: "button", text: "‹ previous", disabled: d.page === 0,
            onclick: () => select(d.node, null, d.page - 1) }),
          h("button", { class: "nbflow-button", type: "button", text: "next ›", disabled: d.page >= d.pages - 1,
            onclick: () => select(d.node, null, d.page + 1) }),
        ]));
      }
    }
    if (d.traceback) {
      parts.push(h("div", { class: "nbflow-section", text: "Traceback" }));
      parts.push(h("pre", { class: "nbflow-traceback", text: d.traceback }));
    }
    parts.push(h("div", { class: "nbflow-section", text: `Logs${d.logs_dropped ? ` (last ${d.logs.length})` : ""}` }));
    parts.push(h("pre", { class: "nbflow-logs", text: d.logs && d.logs.length ? d.logs.join("\n") : "(no output)" }));
    panel.replaceChildren(...parts);
  }

  function updateMessage() {
    const text = model.get("message");
    message.textContent = text || "";
    message.hidden = !text;
  }

  applyPalette();
  updateHeader();
  drawGraph();
  updateDetail();
  updateMessage();
  const handlers = [
    ["change:palette", () => { applyPalette(); updateNodes(); }],
    ["change:graph_json", () => { graph = JSON.parse(model.get("graph_json") || "{}"); drawGraph(); }],
    ["change:nodes_json", () => { nodes = JSON.parse(model.get("nodes_json") || "{}"); updateNodes(); }],
    ["change:header", updateHeader],
    ["change:detail", updateDetail],
    ["change:message", updateMessage],
  ];
  for (const [name, fn] of handlers) model.on(name, fn);
  const timer = setInterval(tick, 250);
  let lastWidth = 0;
  const resize = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => {
    const width = canvas.clientWidth;
    if (zoom === null && Math.abs(width - lastWidth) > 20) { lastWidth = width; drawGraph(); }
  });
  if (resize) resize.observe(canvas);
  return () => {
    clearInterval(timer);
    if (resize) resize.disconnect();
    for (const [name, fn] of handlers) model.off(name, fn);
  };
}

export default { render };
