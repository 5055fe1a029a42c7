"""The widget in a real kernel (nbclient): shown by flow.run(), by a run on its own,
not by show=False, and saved in the notebook in its final state."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbhelp import execute_book

WIDGET = "application/vnd.jupyter.widget-view+json"

SETUP = """
from nbflow import Flow, task

@task(cache=False)
def inc(x):
    return x + 1

with Flow("kernel-widget") as flow:
    a = inc(1)
    b = inc.map([a, 2, 3])
"""


def _execute(tmp_path, cells):
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    return execute_book(book, tmp_path)


def _saved_widgets(book):
    """The nbflow widgets' states saved in the notebook, their JSON-text parts parsed."""
    saved = book.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return [
        {
            **m["state"],
            "nodes": json.loads(m["state"]["nodes_json"]),
            "graph": json.loads(m["state"]["graph_json"]),
        }
        for m in saved.values()
        if m["state"].get("_anywidget_id", "").startswith("nbflow")
    ]


def _widget_outputs(cell):
    return [o for o in cell.get("outputs", []) if WIDGET in o.get("data", {})]


def _texts(cell):
    return [o["data"]["text/plain"] for o in cell.get("outputs", []) if "data" in o]


@pytest.mark.slow
def test_flow_run_in_a_notebook_shows_one_live_widget_and_the_saved_state_is_final(tmp_path):
    book = _execute(
        tmp_path,
        [
            SETUP,
            "run = flow.run()",
            "run",
            "flow.run(show=False)",
            "flow.run()",
            "run2 = flow.run(show=False)",
            "run2",
            "again = run.retry()",
        ],
    )
    cells = book.cells
    assert len(_widget_outputs(cells[1])) == 1  # displayed live by flow.run()
    assert len(_widget_outputs(cells[2])) == 1  # a run on its own shows the widget
    assert _widget_outputs(cells[3]) == []  # show=False, also for the run it returns
    assert any(t.startswith("<FlowRun 'kernel-widget' success") for t in _texts(cells[3]))
    # The run returned by the cell that already shows it live is not drawn twice.
    assert len(_widget_outputs(cells[4])) == 1
    assert any(t.startswith("<FlowRun 'kernel-widget' success") for t in _texts(cells[4]))

    assert len(_widget_outputs(cells[6])) == 1  # asked for in a later cell: shown
    assert len(_widget_outputs(cells[7])) == 1  # run.retry() shows its run live too
    shown = _saved_widgets(book)
    assert len(shown) == 5
    for state in shown:
        assert state["header"]["state"] == "success"
        assert state["header"]["done"] is True
        assert state["nodes"]["inc"]["state"] in ("success", "cached")  # cached: the retry
        assert state["nodes"]["inc-2"]["done"] == state["nodes"]["inc-2"]["total"] == 3
        assert state["graph"]["engine"] == "dot"
    # The saved state is a summary per node, not an event log.
    assert len(json.dumps(shown[0]["nodes"])) < 400


@pytest.mark.slow
def test_flow_run_of_task_cells_shows_the_widget_and_a_cell_run_its_text_status(tmp_path):
    book = _execute(
        tmp_path,
        [
            "%load_ext nbflow",
            "%%task\nxs = [1, 2, 3]",
            "%%task total\ntotal = sum(xs)",
            "%flow run",
        ],
    )
    cells = book.cells
    # a cell's own run: one compact text line, no widget
    assert _widget_outputs(cells[2]) == []
    assert any("total" in t for t in _texts(cells[2]))
    # the notebook's whole flow: the live DAG widget
    assert len(_widget_outputs(cells[3])) == 1
    (state,) = _saved_widgets(book)
    assert state["header"]["state"] == "success"
    assert {n: s["state"] for n, s in state["nodes"].items()} == {
        "xs": "cached",
        "total": "cached",
    }
