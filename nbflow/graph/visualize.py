"""Static drawing of a flow with graphviz, coloured by state when a run is given.

Nodes are drawn as the live widget draws them (``branch.node_kind``): a ``case``
condition is a hexagon named after what it compares, a ``Parameter`` an oval, a mapped
task a doubled box; ordering-only edges are dashed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbflow.graph.branch import edge_label, node_kind
from nbflow.palette import COLOURS, ICONS
from nbflow.state import State

if TYPE_CHECKING:
    import graphviz

    from nbflow.graph.flow import Flow


# As the widget: a hexagon for a branch condition, a rounded pill for a parameter.
_SHAPES = {"case": "hexagon", "parameter": "oval"}


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

    A mapped task is one node labelled with how many of its children are done; a
    ``case`` condition is a hexagon, marked taken or not taken once it has run.

    >>> from nbflow import Flow, task
    >>> @task
    ... def inc(x):
    ...     return x + 1
    >>> with Flow("draw") as flow:
    ...     b = inc(inc(1))
    >>> "inc-2" in draw(flow).source
    True
    >>> from nbflow import case
    >>> with Flow("draw-case") as flow:
    ...     with case(inc(1), 2):
    ...         _ = inc(10)
    >>> [line.strip() for line in draw(flow).source.splitlines() if "hexagon" in line]
    ['branch" fillcolor="#d9d9d9" peripheries=1 shape=hexagon tooltip=pending]']
    """
    import graphviz

    dot = graphviz.Digraph(name=flow.name, graph_attr={"rankdir": "TB", "label": flow.name})
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11")
    for node in flow.tasks:
        kind = node_kind(flow, node)
        task_run = run.get(node) if run is not None else None
        label, state = _label(flow.name_of(node), task_run)
        attrs = {"shape": _SHAPES[kind]} if kind in _SHAPES else {}
        if kind == "case":
            done = task_run is not None and state.is_finished
            label += "\n" + (
                "branch"
                if not done
                else "taken"
                if state.is_ok and state is not State.SKIPPED
                else "not taken"
            )
        elif run is None and kind == "mapped":
            label += "\n(mapped)"
        dot.node(
            str(node.id),
            label,
            fillcolor=COLOURS[state],
            peripheries="2" if kind == "mapped" else "1",
            tooltip=state.value,
            **attrs,
        )
    for edge in flow.edges:
        label = edge_label(flow, edge)
        attrs = {"label": label} if label else {}
        if edge.key is None:
            attrs["style"] = "dashed"
        dot.edge(str(edge.upstream.id), str(edge.downstream.id), **attrs)
    return dot
