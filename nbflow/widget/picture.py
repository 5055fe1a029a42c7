"""A static picture of a run: the widget's graph as one SVG, coloured by node state.

The widget's output carries it as its fallback (``text/html``), so a saved notebook
shows the run's final state where the live widget cannot be drawn: a reopened notebook
whose widget state was not saved, GitHub, nbviewer, nbconvert. ``%flow show`` draws
the notebook's graph with it too. Every style is an attribute (sanitisers drop
``<style>``), and the ``viewBox`` lets the picture shrink to its container.
"""

from __future__ import annotations

import html
import math
from typing import Any

from nbflow.palette import COLOURS, ICONS
from nbflow.state import State

PAD = 8.0
# A saved notebook keeps the fallback of every widget output: above this many nodes
# (about 0.5 KB each) it keeps the heading alone.
MAX_KEPT_NODES = 400
_FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
_TEXT = "#1b1b1b"
_EDGE = "#6b6b6b"
_FAILED_STROKE = "#960000"


def _state(summary: dict[str, Any] | None) -> State:
    try:
        return State((summary or {}).get("state", "pending"))
    except ValueError:
        return State.PENDING


def _fit(text: str, width: float) -> str:
    most = max(4, int(width // 7.1))
    return text if len(text) <= most else text[: most - 1] + "…"


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{round(value * 1000)} ms"
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    minutes = int(value // 60)
    return f"{minutes} min {round(value - 60 * minutes)} s"


def node_info(summary: dict[str, Any] | None) -> str:
    """The small line under a node's name, as the widget writes it.

    >>> node_info({"state": "success", "attempts": 1, "duration": 0.25, "cached": False})
    '250 ms'
    >>> node_info({"state": "success", "total": 3, "done": 3, "cached": True, "attempts": 0})
    '3/3 done · cached'
    >>> node_info(None)
    'pending'
    """
    s = summary or {}
    parts = []
    if s.get("total") is not None:
        parts.append(f"{s.get('done', 0)}/{s['total']} done")
    elif s.get("attempts", 0) > 1:
        parts.append(f"retry {s['attempts'] - 1}/{s.get('retries', 0)}")
    if s.get("cached"):
        parts.append("cached")
    elif s.get("attempts", 0) > 0 and s.get("duration") is not None:
        parts.append(_seconds(s["duration"]))
    if not parts:
        parts.append(_state(summary).value.replace("_", " "))
    return " · ".join(parts)


def _edge_path(points: list[list[float]]) -> str:
    d = f"M {points[0][0]} {points[0][1]}"
    if len(points) % 3 == 1:  # a B-spline from dot: cubic segments
        for i in range(1, len(points) - 2, 3):
            (a, b), (c, e), (f, g) = points[i], points[i + 1], points[i + 2]
            d += f" C {a} {b} {c} {e} {f} {g}"
    else:
        d += "".join(f" L {x} {y}" for x, y in points[1:])
    return d


def svg(
    graph: dict[str, Any],
    nodes: dict[str, dict[str, Any]],
    *,
    title: str = "",
    max_height: str | None = None,
) -> str:
    """The graph laid out by ``widget.layout`` as SVG text, each node coloured by its
    summary in ``nodes`` (``widget.summary.node_summary``; missing: pending).
    ``max_height`` (CSS, e.g. ``"80vh"``) keeps a tall graph within a panel.

    >>> graph = {"nodes": [{"id": "a", "kind": "task", "x": 80, "y": 33, "w": 150, "h": 58}],
    ...          "edges": [], "width": 160, "height": 66}
    >>> picture = svg(graph, {"a": {"state": "failed", "attempts": 1, "duration": 2.0}})
    >>> 'data-node="a"' in picture and 'data-state="failed"' in picture
    True
    """
    labels = len(graph.get("edges", [])) <= 60
    width = float(graph.get("width") or 0) + 2 * PAD
    height = float(graph.get("height") or 0) + 2 * PAD
    style = f"max-width:100%;height:auto;font-family:{_FONT};font-size:12px"
    if max_height is not None:
        style += f";max-height:{max_height}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="nbflow-picture" '
        f'width="{width:g}" height="{height:g}" viewBox="{-PAD:g} {-PAD:g} {width:g} {height:g}" '
        f'role="img" aria-label="{html.escape(title or "task graph")}" style="{style}">',
    ]
    if title:
        out.append(f"<title>{html.escape(title)}</title>")
    for edge in graph.get("edges", []):
        points = edge.get("points") or []
        if len(points) < 2:
            continue
        dash = "" if edge.get("data", True) else ' stroke-dasharray="5 4"'
        path = _edge_path(points)
        out.append(f'<path d="{path}" fill="none" stroke="{_EDGE}" stroke-width="1.3"{dash}/>')
        (x1, y1), (x2, y2) = points[-2], points[-1]
        out.append(_arrowhead(x1, y1, x2, y2))
        label = edge.get("label") or ""
        if label and labels and "[" not in label:  # argument names help on small graphs
            (ax, ay), (bx, by) = points[0], points[-1]
            out.append(
                f'<text x="{(ax + bx) / 2 + 5:g}" y="{(ay + by) / 2 + 3:g}" fill="{_EDGE}" '
                f'font-size="10">{html.escape(label)}</text>'
            )
    for node in graph.get("nodes", []):
        summary = nodes.get(node["id"])
        state = _state(summary)
        w, h = float(node["w"]), float(node["h"])
        x, y = float(node["x"]) - w / 2, float(node["y"]) - h / 2
        fill = COLOURS[state]
        failed = state in (State.FAILED, State.TIMED_OUT)
        stroke = f'stroke="{_FAILED_STROKE}" stroke-width="2"' if failed else 'stroke="#666"'
        out.append(
            f'<g class="nbflow-picture-node" data-node="{html.escape(node["id"])}" '
            f'data-state="{state.value}" transform="translate({x:g} {y:g})">'
        )
        out.append(f"<title>{html.escape(node['id'])}: {state.value.replace('_', ' ')}</title>")
        if node.get("kind") == "mapped":
            out.append(
                f'<rect x="4" y="4" width="{w:g}" height="{h:g}" rx="8" fill="{fill}" {stroke}/>'
            )
        if node.get("kind") == "case":
            k = 14
            points = f"{k},0 {w - k:g},0 {w:g},{h / 2:g} {w - k:g},{h:g} {k},{h:g} 0,{h / 2:g}"
            out.append(f'<polygon points="{points}" fill="{fill}" {stroke}/>')
        else:
            rx = h / 2 if node.get("kind") == "parameter" else 8
            out.append(f'<rect width="{w:g}" height="{h:g}" rx="{rx:g}" fill="{fill}" {stroke}/>')
        pad = 18 if node.get("kind") in ("case", "parameter") else 10
        name = _fit(node["id"], w - pad - 28)
        out.append(
            f'<text x="{pad}" y="22" fill="{_TEXT}" font-weight="600">'
            f"{ICONS[state]} {html.escape(name)}</text>"
        )
        out.append(
            f'<text x="{pad}" y="41" fill="{_TEXT}" font-size="11">'
            f"{html.escape(node_info(summary))}</text>"
        )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _arrowhead(x1: float, y1: float, x2: float, y2: float) -> str:
    angle = math.atan2(y2 - y1, x2 - x1)
    size = 8.0
    left = (x2 - size * math.cos(angle - 0.4), y2 - size * math.sin(angle - 0.4))
    right = (x2 - size * math.cos(angle + 0.4), y2 - size * math.sin(angle + 0.4))
    points = f"{x2:g},{y2:g} {left[0]:.1f},{left[1]:.1f} {right[0]:.1f},{right[1]:.1f}"
    return f'<polygon points="{points}" fill="{_EDGE}"/>'


def legend(counts: dict[str, int]) -> str:
    """One line of counts per state, e.g. ``✓ 2 success · ✗ 1 failed``.

    >>> legend({"success": 2, "failed": 1})
    '✓ 2 success · ✗ 1 failed'
    """
    parts = []
    for state in State:
        n = counts.get(state.value)
        if n:
            parts.append(f"{ICONS[state]} {n} {state.value.replace('_', ' ')}")
    return " · ".join(parts)


def page(graph: dict[str, Any], nodes: dict[str, dict[str, Any]], header: dict[str, Any]) -> str:
    """The HTML of the fallback: a heading (flow, state, run id, counts) over the SVG
    (left out above ``MAX_KEPT_NODES`` nodes).

    >>> node = {"kind": "task", "x": 80, "y": 33, "w": 150, "h": 58}
    >>> many = [{**node, "id": f"t{i}"} for i in range(MAX_KEPT_NODES + 1)]
    >>> graph = {"nodes": many, "edges": [], "width": 9, "height": 9}
    >>> "<svg" in page(graph, {}, {"flow": "wide", "state": "success"})
    False
    """
    flow = html.escape(str(header.get("flow", "")))
    state = _state(header)
    bits = [f"<strong>{flow}</strong>", f"{ICONS[state]} {state.value.replace('_', ' ')}"]
    if header.get("run_id"):
        bits.append(f"run {html.escape(str(header['run_id']))}")
    counts = legend(header.get("counts") or {})
    if counts:
        bits.append(html.escape(counts))
    title = f"nbflow run of {header.get('flow', '')}: {state.value}"
    count = len(graph.get("nodes", []))
    drawing = (
        svg(graph, nodes, title=title)
        if count <= MAX_KEPT_NODES
        else f"<div>(a graph of {count} tasks: too large to keep a picture of)</div>"
    )
    return (
        '<div class="nbflow-static" style="font-family:system-ui,sans-serif;font-size:12px">'
        f'<div style="margin:4px 0">{" · ".join(bits)}</div>{drawing}</div>'
    )


class FlowPicture:
    """A graph drawn once, coloured by given node states: what ``%flow show`` returns.
    Displays as the SVG (``text/html``, and ``image/svg+xml`` for other front ends),
    fitted to the width of its output.

    >>> graph = {"nodes": [{"id": "a", "kind": "task", "x": 80, "y": 33, "w": 150, "h": 58}],
    ...          "edges": [], "width": 160, "height": 66}
    >>> FlowPicture("etl", graph, {"a": {"state": "success"}}).states
    {'a': 'success'}
    """

    def __init__(self, flow: str, graph: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> None:
        self.flow = flow
        self.graph = graph
        self.nodes = nodes

    @property
    def states(self) -> dict[str, str]:
        """Each node's state as drawn (pending where none is known)."""
        return {n["id"]: _state(self.nodes.get(n["id"])).value for n in self.graph["nodes"]}

    @property
    def html(self) -> str:
        counts = legend(self._counts())
        head = f"<strong>{html.escape(self.flow)}</strong> · latest states: {html.escape(counts)}"
        drawing = svg(self.graph, self.nodes, title=f"Task graph of {self.flow}")
        return (
            '<div class="nbflow-static nbflow-dag" '
            'style="font-family:system-ui,sans-serif;font-size:12px">'
            f'<div style="margin:4px 0">{head}</div>{drawing}</div>'
        )

    def __repr__(self) -> str:
        return f"<FlowPicture of '{self.flow}': {legend(self._counts())}>"

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state in self.states.values():
            counts[state] = counts.get(state, 0) + 1
        return counts

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        # HTML first (JupyterLab fits it to the output); the bare SVG for the others.
        drawing = svg(self.graph, self.nodes, title=f"Task graph of {self.flow}")
        return {"text/html": self.html, "image/svg+xml": drawing, "text/plain": repr(self)}
