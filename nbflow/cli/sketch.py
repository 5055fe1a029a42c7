"""A notebook's ``%%task`` cells drawn as a graph, without a kernel.

The cells are read from the file and analysed as the magics analyse them (the same
``CellGraph``: inputs, outputs, ``--after``), so the drawing shows the DAG JupyterLab
would run; a node is coloured by its task's latest state in the run history, if any.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbflow.cli.source import UsageError, is_task_cell
from nbflow.palette import COLOURS, ICONS
from nbflow.state import State

if TYPE_CHECKING:
    import graphviz

    from nbflow.cells.definitions import CellGraph


def cell_graph(book: Any, label: str) -> CellGraph:
    """The graph of the notebook's task cells (a usage error names a cell that is wrong)."""
    from IPython.core.error import UsageError as MagicUsageError

    from nbflow.cells.definitions import CellError, CellGraph
    from nbflow.cells.line import parse_task_line

    graph = CellGraph()
    number = 0
    for cell in book.cells:
        number += 1
        if not is_task_cell(cell):
            continue
        line, _, body = cell.source.lstrip().partition("\n")
        if "!" in body or "%" in body:
            # IPython syntax (!ls, %time) as the kernel turns it into Python.
            body = _transformer().transform_cell(body)
        try:
            name, options = parse_task_line(line[len("%%task") :])
            graph.define(name, body, options, f"<cell {number}>", cell.get("id"))
        except (MagicUsageError, CellError) as exc:
            raise UsageError(f"{label}, cell {number}: {exc}") from None
    if not graph.cells:
        raise UsageError(f"{label} has no %%task cells to draw.")
    return graph


def _transformer() -> Any:
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()  # type: ignore[no-untyped-call]


def draw_cells(graph: CellGraph, name: str, states: dict[str, State]) -> graphviz.Digraph:
    """A ``graphviz.Digraph`` of the cells, coloured by ``states`` (task name -> state)."""
    import graphviz

    dot = graphviz.Digraph(name=name, graph_attr={"rankdir": "TB", "label": name})
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11")
    for cell in sorted(graph.cells.values(), key=lambda c: c.position):
        state = states.get(cell.name, State.PENDING)
        label = f"{ICONS[state]} {cell.name}" if cell.name in states else cell.name
        mapped = cell.options.map_var is not None
        if mapped:
            label += f"\n(--map {cell.options.map_var})"
        dot.node(
            cell.name,
            label,
            fillcolor=COLOURS[state],
            peripheries="2" if mapped else "1",
            tooltip=state.value,
        )
    for cell in graph.cells.values():
        data = set(graph.sources(cell).values())
        for up in graph.upstream_of(cell):  # an --after edge only orders: dashed
            dot.edge(up, cell.name, **({} if up in data else {"style": "dashed"}))
    return dot
