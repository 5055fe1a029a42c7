"""Prefect 1's tutorial flows, rewritten as notebooks, run top to bottom in a real kernel."""

import pathlib

import nbformat
import pytest
from nbhelp import execute_book

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "prefect"


def _execute(name, workdir, folder=NOTEBOOKS):
    return execute_book(nbformat.read(folder / f"{name}.ipynb", as_version=4), workdir)


def _text(cell):
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


@pytest.mark.slow
def test_the_etl_tutorial_loads_rows_for_each_parameter_value(tmp_path):
    cells = _execute("etl", tmp_path).cells
    assert "loaded 5 rows" in _text(cells[3])
    assert "<FlowRun 'aircraft-etl' success" in _text(cells[3])
    assert "loaded 5 rows for EDDF" in _text(cells[4])
    assert "rows in the database: 10" in _text(cells[4])
    assert "image/svg+xml" in cells[5]["outputs"][0]["data"]


@pytest.mark.slow
def test_the_handling_failure_tutorial_retries_fails_skips_and_recovers(tmp_path):
    cells = _execute("handling_failure", tmp_path).cells
    first = _text(cells[3])
    assert "3 attempts for the download" in first
    assert "failed - negative values: [-4]" in first
    assert "upstream_failed" in first  # publishing did not run after the failed check
    assert "cleaned up after:" in first
    assert "flaky_download: retrying after 1 attempt(s)" in first
    second = _text(cells[5])
    assert "success" in second and "published 4 rows; cleaned up" in second


@pytest.mark.slow
def test_the_mapping_examples_map_reduce_and_flat_map(tmp_path):
    cells = _execute("mapping", tmp_path).cells
    assert "[11, 12, 13] [22, 24, 26] 72" in _text(cells[2])
    flat = _text(cells[3])
    assert "[[1], [1, 2], [1, 2, 3]]" in flat
    assert "[100, 100, 200, 100, 200, 300]" in flat


@pytest.mark.slow
def test_the_branching_examples_ifelse_switch_merge_and_loop(tmp_path):
    cells = _execute("branching", tmp_path).cells
    parity = _text(cells[2])
    assert "4 is even | success skipped" in parity
    assert "7 is odd | skipped success" in parity
    sizes = _text(cells[3])
    assert sizes.index("3 is small") < sizes.index("42 is medium") < sizes.index("500 is large")
    assert "merge: skipped" in _text(cells[4])
    looped = _text(cells[6])
    assert "steps: [8, 16, 111] attempts: [1, 1, 1]" in looped
    assert "LOOP: running again (loop 9): at 1" in looped
    assert "27 takes more than 100 steps" in looped
