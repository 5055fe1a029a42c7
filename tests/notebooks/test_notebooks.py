"""The example notebooks, run top to bottom by nbclient in a real kernel."""

import json

import pytest
from test_prefect_notebooks import NOTEBOOKS, _execute, _text

import nbflow

FOLDER = NOTEBOOKS.parent


def _errors(cell):
    return [o["ename"] for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def _widget_nodes(book, cell):
    """Each node's state in the nbflow widget a cell shows (its saved final state)."""
    views = [
        o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for o in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(views) == 1
    saved = book.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    state = saved[views[0]]["state"]
    return state["header"]["state"], {
        name: node["state"] for name, node in json.loads(state["nodes_json"]).items()
    }


def _html(cell):
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.get("outputs", []))


@pytest.mark.slow
def test_the_quickstart_runs_a_flow_retries_and_draws_it(tmp_path):
    cells = _execute("quickstart", tmp_path, FOLDER).cells
    assert not any(_errors(c) for c in cells)
    assert "success - loaded 8 rows, largest 9" in _text(cells[3])
    assert "extract took 2 attempts" in _text(cells[3])
    assert "image/svg+xml" in cells[5]["outputs"][0]["data"]
    assert "{'cached': 4}" in _text(cells[9])


@pytest.mark.slow
def test_the_cells_notebook_fails_once_then_retries_and_a_second_kernel_reuses_the_cache(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("NBFLOW_NOTEBOOK", str(FOLDER / "cells.ipynb"))
    book = _execute("cells", tmp_path, FOLDER)
    cells = book.cells
    assert "generated 1000 rows" in _text(cells[3])
    assert "<table" in _html(cells[3])
    assert "sales: success" in _text(cells[3])
    assert _errors(cells[7]) == ["ConnectionError"]
    assert "rates: failed, 3 attempts" in _text(cells[7])
    assert _errors(cells[8]) == ["UpstreamFailedError"]
    assert "rates: failed earlier in this kernel, not run again" in _text(cells[8])
    # %flow retry shows the live DAG: the failed cells ran, the others came from the cache
    state, nodes = _widget_nodes(book, cells[10])
    assert state == "success"
    assert nodes["rates"] == nodes["by_region"] == "success"
    assert nodes["sales"] == nodes["revenue"] == "cached"
    assert "north" in _text(cells[11]) and not _errors(cells[11])
    assert "image/svg+xml" in cells[13]["outputs"][0]["data"]
    # A new kernel on the same store: the generating cell is a cache hit that shows
    # the same printed line and table.
    again = _execute("cells", tmp_path, FOLDER).cells
    assert "sales: cached" in _text(again[3])
    assert "generated 1000 rows" in _text(again[3]) and "<table" in _html(again[3])
    # Every cell run is in the history under the notebook's name, as the command
    # line reads it; the failing cell ran (3 attempts) once per kernel, no more.
    history = nbflow.runs()
    assert set(history["flow"]) == {"cells"}
    attempts = [
        nbflow.load_run(run_id)["rates"].attempts
        for run_id in history["id"]
        if "rates" in {t.name for t in nbflow.load_run(run_id).task_runs}
    ]
    assert sorted(attempts, reverse=True)[:2] == [3, 3] and attempts.count(3) == 2


@pytest.mark.slow
def test_the_mapping_notebook_fans_out_cells_and_tasks(tmp_path):
    cells = _execute("mapping", tmp_path, FOLDER).cells
    assert not any(_errors(c) for c in cells)
    assert "'Paris (5 letters)', 'Lyon (4 letters)'" in _text(cells[4])
    assert "longest: Marseille" in _text(cells[4])
    assert "letters: success, 4/4 mapped" in _text(cells[3])
    shown = [o["data"]["text/plain"] for o in cells[5]["outputs"] if "data" in o]
    assert shown[-3:] == ["1", "8", "27"]  # each child shows its last expression
    assert "[10, 20, 30, 40] 100" in _text(cells[7])
