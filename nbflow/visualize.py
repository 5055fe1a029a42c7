"""Static drawing of a flow with graphviz, coloured by state when a run is given."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbflow.palette import COLOURS, ICONS
from nbflow.state import State

if TYPE_CHECKING:
    import graphviz

    from nbflow.flow import Flow


def _label(name: str, run: Any) -> tuple[str, State]:
    if run is None:
        return name, State.PENDING
    state: State = run.state
    lines = [f"{ICONS[state]} {name}"]
    if run.children is not None:
        done = sum(1 for c in run.children if c.state.is_finished)
        lines.append(f"{done}/{len(run.children)} done")
    elif run.attempts > 1:
        lines.append(f"{run.attempts} attempts")
    if run.cached:
        lines.append("cached")
    if run.duration is not None and state.is_finished and not run.cached:
        lines.append(f"{run.duration:.2f}s")
    return "\n".join(lines), state


def draw(flow: Flow, run: Any = None) -> graphviz.Digraph:
    """A ``graphviz.Digraph`` of ``flow``; with ``run``, nodes are coloured by state.

    A mapped task is one node labelled with how many of its children are done.

    >>> from nbflow import Flow, task
    >>> @task
    ... def inc(x):
    ...     return x + 1
    >>> with Flow("draw") as flow:
    ...     b = inc(inc(1))
    >>> "inc-2" in draw(flow).source
    True
    """
    import graphviz

    dot = graphviz.Digraph(name=flow.name, graph_attr={"rankdir": "TB", "label": flow.name})
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11")
    runs = run._engine.runs if run is not None else {}
    for node in flow.tasks:
        mapped = flow.call(node).mapped
        label, state = _label(flow.name_of(node), runs.get(node))
        if run is None and mapped:
            label += "\n(mapped)"
        dot.node(
            str(node.id),
            label,
            fillcolor=COLOURS[state],
            peripheries="2" if mapped else "1",
            tooltip=state.value,
        )
    for edge in flow.edges:
        attrs = {"label": edge.key} if edge.key and not edge.key.startswith("arg") else {}
        if edge.key is None:
            attrs["style"] = "dashed"
        dot.edge(str(edge.upstream.id), str(edge.downstream.id), **attrs)
    return dot
