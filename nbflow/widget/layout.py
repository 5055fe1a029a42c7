"""Where the widget draws each node: graphviz ``dot`` once per graph shape, cached.

Without ``dot`` on the PATH, one ``NbflowWarning`` says how to install it and a layered
layout by topological depth is used instead. Coordinates are CSS pixels, origin top left.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import threading
import warnings
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbflow.errors import NbflowWarning
from nbflow.graph.branch import edge_label, node_kind

if TYPE_CHECKING:
    from nbflow.graph.flow import Flow

log = logging.getLogger("nbflow")

_PX_PER_INCH = 72.0
NODE_HEIGHT = 58.0
_MIN_WIDTH = 150.0
_MAX_WIDTH = 260.0
_CHAR_WIDTH = 7.2  # 12 px sans-serif, on average
_DOT_TIMEOUT = 60.0
_CACHE_SIZE = 32
_UNFLATTEN_ABOVE = 24

_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
# The same flow object at the same version has the same shape: skip even hashing it.
_by_flow: weakref.WeakKeyDictionary[Flow, tuple[int, dict[str, Any]]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()
_warned = False


def shape_of(flow: Flow) -> dict[str, Any]:
    """The flow as plain data: node ids, labels, kinds, sizes and edges (what the layout
    depends on, and nothing that changes during a run)."""
    nodes = []
    for node in flow.tasks:
        name = flow.name_of(node)
        width = min(_MAX_WIDTH, max(_MIN_WIDTH, _CHAR_WIDTH * len(name) + 56.0))
        nodes.append({"id": name, "kind": node_kind(flow, node), "w": width, "h": NODE_HEIGHT})
    edges = []
    for edge in flow.edges:
        edges.append(
            {
                "from": flow.name_of(edge.upstream),
                "to": flow.name_of(edge.downstream),
                "label": edge_label(flow, edge),
                "data": edge.key is not None,
                "mapped": edge.mapped,
            }
        )
    return {"nodes": nodes, "edges": edges}


def layout(flow: Flow) -> dict[str, Any]:
    """The flow's graph with positions: ``{"nodes", "edges", "width", "height", "engine"}``.

    Computed once per graph shape (cached in this process); ``engine`` is ``"dot"`` or
    ``"layered"`` (the fallback).

    >>> from nbflow import Flow, task
    >>> @task
    ... def inc(x):
    ...     return x + 1
    >>> with Flow("layout-doc") as flow:
    ...     b = inc(inc(1))
    >>> graph = layout(flow)
    >>> [n["id"] for n in graph["nodes"]], graph["engine"] in ("dot", "layered")
    (['inc', 'inc-2'], True)
    >>> graph["nodes"][0]["y"] < graph["nodes"][1]["y"]
    True
    """
    known = _by_flow.get(flow)
    if known is not None and known[0] == flow.version:
        return known[1]
    graph = _layout_shape(shape_of(flow))
    _by_flow[flow] = (flow.version, graph)
    return graph


def _layout_shape(shape: dict[str, Any]) -> dict[str, Any]:
    key = hashlib.blake2b(repr(shape).encode(), digest_size=16).hexdigest()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    graph = _dot_layout(shape) if shutil.which("dot") else None
    if graph is None:
        _warn_no_dot()
        graph = layered_layout(shape)
    with _cache_lock:
        _cache[key] = graph
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return graph


def _warn_no_dot() -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        "nbflow's widget lays out graphs with graphviz's 'dot', which is not installed; "
        "it draws a simpler layered layout instead. Install graphviz for the full layout: "
        "'apt-get install graphviz' or 'conda install graphviz'.",
        NbflowWarning,
        stacklevel=_first_frame_outside_nbflow(),
    )


def _first_frame_outside_nbflow() -> int:
    """The ``stacklevel`` of the caller's code (a notebook cell), however deep in nbflow
    the warning is raised."""
    package = str(Path(__file__).resolve().parents[1])
    frame = sys._getframe(1)  # the function that calls warnings.warn
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back
        level += 1
    return level


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_source(shape: dict[str, Any]) -> str:
    lines = [
        "digraph G {",
        "graph [rankdir=TB, nodesep=0.3, ranksep=0.45];",
        'node [shape=box, fixedsize=true, label=""];',
        "edge [arrowsize=0.6];",
    ]
    for i, node in enumerate(shape["nodes"]):
        lines.append(
            f"n{i} [width={node['w'] / _PX_PER_INCH:.3f}, height={node['h'] / _PX_PER_INCH:.3f}];"
        )
    index = {n["id"]: i for i, n in enumerate(shape["nodes"])}
    for j, edge in enumerate(shape["edges"]):
        lines.append(f"n{index[edge['from']]} -> n{index[edge['to']]} [id=e{j}];")
    lines.append("}")
    return "\n".join(lines)


def _run(cmd: list[str], source: str) -> str:
    return subprocess.run(
        cmd, input=source, capture_output=True, text=True, timeout=_DOT_TIMEOUT, check=True
    ).stdout


def _dot_layout(shape: dict[str, Any]) -> dict[str, Any] | None:
    source = _dot_source(shape)
    try:
        if len(shape["nodes"]) > _UNFLATTEN_ABOVE and shutil.which("unflatten"):
            # Many independent nodes would sit in one very wide row: graphviz's unflatten
            # stacks them in short chains of invisible edges instead.
            stagger = str(max(3, min(10, len(shape["nodes"]) // 30)))
            source = _run(["unflatten", "-f", "-l", stagger, "-c", "12"], source)
        out = _run(["dot", "-Tplain"], source)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nbflow: graphviz 'dot' failed (%s); using the layered layout", exc)
        return None
    return _parse_plain(out, shape)


def _parse_plain(text: str, shape: dict[str, Any]) -> dict[str, Any]:
    """Read ``dot -Tplain``: inches, y pointing up; edges as B-spline control points."""
    height = 0.0
    width = 0.0
    pos: dict[int, tuple[float, float]] = {}
    splines: dict[tuple[int, int], list[list[tuple[float, float]]]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "graph":
            width, height = float(parts[2]), float(parts[3])
        elif parts[0] == "node":
            pos[int(parts[1][1:])] = (float(parts[2]), float(parts[3]))
        elif parts[0] == "edge" and parts[-2] != "invis":
            n = int(parts[3])
            coords = [float(v) for v in parts[4 : 4 + 2 * n]]
            pair = (int(parts[1][1:]), int(parts[2][1:]))
            splines.setdefault(pair, []).append(list(zip(coords[0::2], coords[1::2], strict=True)))

    def px(x: float, y: float) -> list[float]:
        return [round(x * _PX_PER_INCH, 1), round((height - y) * _PX_PER_INCH, 1)]

    nodes = []
    for i, node in enumerate(shape["nodes"]):
        x, y = px(*pos[i])
        nodes.append({**node, "x": x, "y": y})
    index = {n["id"]: i for i, n in enumerate(shape["nodes"])}
    edges = []
    for edge in shape["edges"]:
        found = splines.get((index[edge["from"]], index[edge["to"]]))
        spline = found.pop(0) if found else [pos[index[edge["from"]]], pos[index[edge["to"]]]]
        edges.append({**edge, "points": [px(x, y) for x, y in spline]})
    return {
        "nodes": nodes,
        "edges": edges,
        "width": round(width * _PX_PER_INCH, 1),
        "height": round(height * _PX_PER_INCH, 1),
        "engine": "dot",
    }


def layered_layout(shape: dict[str, Any]) -> dict[str, Any]:
    """Rows by topological depth (longest path from a source), nodes side by side.

    >>> shape = {"nodes": [{"id": "a", "kind": "task", "w": 150.0, "h": 58.0},
    ...                    {"id": "b", "kind": "task", "w": 150.0, "h": 58.0}],
    ...          "edges": [{"from": "a", "to": "b", "label": "", "data": True, "mapped": False}]}
    >>> [(n["id"], n["y"]) for n in layered_layout(shape)["nodes"]]
    [('a', 33.0), ('b', 125.0)]
    """
    gap_x, gap_y, margin = 24.0, 34.0, 4.0
    ups: dict[str, list[str]] = {n["id"]: [] for n in shape["nodes"]}
    for edge in shape["edges"]:
        ups[edge["to"]].append(edge["from"])
    depth: dict[str, int] = {}
    for node in shape["nodes"]:  # nodes come in insertion order, which is topological
        depth[node["id"]] = 1 + max((depth.get(u, 0) for u in ups[node["id"]]), default=-1)
    rows: dict[int, list[dict[str, Any]]] = {}
    for node in shape["nodes"]:
        rows.setdefault(depth[node["id"]], []).append(node)
    row_widths = {d: sum(n["w"] for n in row) + gap_x * (len(row) - 1) for d, row in rows.items()}
    width = max(row_widths.values(), default=0.0) + 2 * margin
    placed: dict[str, dict[str, Any]] = {}
    for d in sorted(rows):
        x = margin + (width - 2 * margin - row_widths[d]) / 2
        y = margin + d * (NODE_HEIGHT + gap_y) + NODE_HEIGHT / 2
        for node in rows[d]:
            placed[node["id"]] = {**node, "x": round(x + node["w"] / 2, 1), "y": round(y, 1)}
            x += node["w"] + gap_x
    edges = []
    for edge in shape["edges"]:
        a, b = placed[edge["from"]], placed[edge["to"]]
        start = [a["x"], a["y"] + NODE_HEIGHT / 2]
        end = [b["x"], b["y"] - NODE_HEIGHT / 2]
        mid = (start[1] + end[1]) / 2
        edges.append({**edge, "points": [start, [start[0], mid], [end[0], mid], end]})
    height = margin * 2 + len(rows) * (NODE_HEIGHT + gap_y) - gap_y if rows else 0.0
    return {
        "nodes": [placed[n["id"]] for n in shape["nodes"]],
        "edges": edges,
        "width": round(width, 1),
        "height": round(height, 1),
        "engine": "layered",
    }
