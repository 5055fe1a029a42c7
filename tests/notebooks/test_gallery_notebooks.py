"""scikit-learn gallery examples as notebooks with %%task on every code cell, run by
nbclient in real kernels, then edited and run again on the same store."""

import pathlib
import re
import shutil

import nbformat
import pytest
from nbhelp import execute_book
from test_prefect_notebooks import _text

import nbflow

GALLERY = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "gallery"

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def _copy(name, tmp_path, monkeypatch):
    path = tmp_path / f"{name}.ipynb"
    shutil.copy(GALLERY / path.name, path)
    # As `nbflow run` does: the kernel knows its notebook, so cells that bind the same
    # names are told apart by their ids although nbclient does not send them.
    monkeypatch.setenv("NBFLOW_NOTEBOOK", str(path))
    monkeypatch.setenv("NBFLOW_HOME", str(tmp_path / ".nbflow"))
    return path


def _run(path, tmp_path):
    book = execute_book(nbformat.read(path, as_version=4), tmp_path)
    errors = [
        (i, o["ename"], o["evalue"])
        for i, c in enumerate(book.cells)
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    return {i: _text(c) for i, c in enumerate(book.cells) if c.cell_type == "code"}


def _edit(path, old, new):
    book = nbformat.read(path, as_version=4)
    cells = [c for c in book.cells if old in c.source]
    assert len(cells) == 1
    cells[0].source = cells[0].source.replace(old, new)
    nbformat.write(book, path)


def _accuracy(text):
    return float(re.search(r"accuracy\s+([0-9.]+)", text).group(1))


@pytest.mark.slow
def test_the_digits_classification_runs_and_a_new_gamma_reaches_every_result(tmp_path, monkeypatch):
    path = _copy("digits_classification", tmp_path, monkeypatch)
    out = _run(path, tmp_path)
    assert "Classification report for classifier SVC(gamma=0.001)" in out[11]
    assert _accuracy(out[11]) == pytest.approx(0.97, abs=0.01)
    assert "cell 5: success" in out[8] and "SVC(gamma=0.001)" in out[8]  # fitted in place
    assert "Confusion matrix:" in out[12] and _accuracy(out[13]) == _accuracy(out[11])
    # The two plotting cells both bind _, axes and ax: each is its own task.
    assert "digits: success" in out[4] and "axes: success" in out[10]
    # A new kernel, unchanged notebook: every cell is a cache hit.
    again = _run(path, tmp_path)
    assert "digits: cached" in again[4] and "cell 5: cached" in again[8]
    assert _accuracy(again[11]) == _accuracy(out[11])
    # Edit the parameter cell and run it all again: nothing downstream is stale.
    _edit(path, "gamma = 0.001", "gamma = 0.1")
    edited = _run(path, tmp_path)
    assert "SVC(gamma=0.1)" in edited[8] and "SVC(gamma=0.1)" in edited[11]
    assert _accuracy(edited[11]) < 0.5
    assert "digits: cached" in edited[4] and "cell 5: success" in edited[8]
    names = {t.name for t in nbflow.load_run("latest").task_runs}
    assert names <= {"plt", "digits", "gamma", "n_samples", "cell 5", "predicted", "axes"} | {
        "cell 8",
        "disp",
        "cm",
    }


@pytest.mark.slow
def test_the_grid_search_fits_in_place_and_a_rebound_grid_reaches_only_the_cells_below(
    tmp_path, monkeypatch
):
    path = _copy("grid_search_digits", tmp_path, monkeypatch)
    out = _run(path, tmp_path)
    # The refit strategy picks the fastest model to predict: timings decide which.
    best = out[10][out[10].index("{") :]
    assert "'kernel'" in best  # best_params_ of the fitted search
    assert "avg" in out[11]  # predicted with the fitted search
    assert "'kernel': 'rbf'" in out[14]
    # A new kernel with the narrower grid edited: the fitted search above is a cache
    # hit (not an unfitted one), the narrow search below is run again.
    _edit(path, '"C": [1, 10]}]', '"C": [1]}]')
    edited = _run(path, tmp_path)
    assert "cell 5: cached" in edited[9] and "cell 6: cached" in edited[10]
    assert best in edited[10]
    assert "{'C': 1, 'gamma'" in edited[14]
    assert "narrow: success" in edited[14]
