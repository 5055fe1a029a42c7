"""The JupyterLab extension works from the notebook document, in real JupyterLab and
Chromium: Run flow on a notebook nothing has run in, Re-run failed after editing a cell
without executing it, badges after a page reload and after reopening the notebook."""

from __future__ import annotations

import json
import urllib.request

import pytest

from conftest import idle as _idle
from conftest import open_notebook as _open
from conftest import palette as _palette

pytestmark = pytest.mark.browser

CELLS = [
    "%load_ext nbflow",
    "%%task\nrows = list(range(10))",
    "%%task\ntotal = sum(rows)",
    "%%task check\nraise RuntimeError('the check is broken')\nchecked = total * 2",
]
FIXED = "%%task check\nchecked = total * 2"


BADGES = (
    "[...document.querySelectorAll('.jp-Notebook .jp-Cell.nbflow-task-cell')]"
    ".map(c => c.querySelector('.nbflow-cell-badge')?.dataset.state ?? '-').join()"
)


def _wait_badges(page, states: list[str | None]) -> None:
    """Wait until the %%task cells, in notebook order, show these badge states."""
    expected = ",".join(s or "-" for s in states)
    try:
        page.wait_for_function(f"(expected) => {BADGES} === expected", arg=expected, timeout=60_000)
    except Exception:
        shown = page.evaluate(f"() => {BADGES}")
        raise AssertionError(f"badges {shown!r}, expected {expected!r}") from None


def _execution_counts(page) -> list[str]:
    return page.evaluate(
        "() => [...document.querySelectorAll('.jp-Notebook .jp-Cell .jp-InputPrompt')]"
        ".map(p => p.textContent.trim())"
    )


def _edit(page, index: int, source: str) -> None:
    """Replace a cell's source in its editor, without running it."""
    editor = page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(source)
    page.keyboard.press("Escape")


def _save(page) -> None:
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    page.wait_for_function(
        "() => !document.querySelector('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty')",
        timeout=20_000,
    )


def _shut_down_kernels(lab) -> None:
    """Every kernel of the server goes (a new one starts when a notebook opens)."""
    url = f"{lab.url}api/sessions?token={lab.token}"
    with urllib.request.urlopen(url, timeout=10) as reply:
        sessions = json.load(reply)
    for session in sessions:
        request = urllib.request.Request(
            f"{lab.url}api/sessions/{session['id']}?token={lab.token}", method="DELETE"
        )
        urllib.request.urlopen(request, timeout=30).close()


def test_run_flow_rerun_failed_and_badges_work_from_the_document(lab, page, shot):
    lab.write_notebook("document.ipynb", CELLS)
    _open(page, lab.lab_url("document.ipynb"))
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-Cell.nbflow-task-cell').length === 3"
    )
    _wait_badges(page, [None, None, None])

    # A freshly opened notebook, nothing executed: Run flow runs its three task cells.
    _palette(page, "Run flow")
    _wait_badges(page, ["success", "success", "failed"])
    page.wait_for_selector(".nbflow-output-panel .nbflow-widget", timeout=30_000)
    assert all("[ ]" in p or p == "" for p in _execution_counts(page)), _execution_counts(page)
    shot(page, "doc-1-run-flow-fresh-notebook")
    # Its error is the cell's own, under the command's one line of code.
    errors = page.locator(".nbflow-output-panel [data-mime-type='application/vnd.jupyter.stderr']")
    errors.wait_for(state="attached", timeout=30_000)
    assert "RuntimeError: the check is broken" in errors.text_content()
    assert "use_document" not in page.locator(".nbflow-output-panel").text_content()
    errors.scroll_into_view_if_needed()
    shot(page.locator(".nbflow-output-panel"), "doc-1b-run-flow-error")

    # The broken cell is fixed in the editor, not executed: Re-run failed runs the fix.
    _edit(page, 3, FIXED)
    _palette(page, "Re-run failed tasks")
    _wait_badges(page, ["success", "success", "success"])
    panel = page.locator(".nbflow-output-panel")
    page.wait_for_selector(
        ".nbflow-output-panel .nbflow-node[data-node='check'][data-state='success']",
        timeout=30_000,
    )
    assert "the check is broken" not in panel.text_content()
    shot(page, "doc-2-rerun-failed-after-edit")

    # Show flow DAG: the widget's graph, coloured by the latest states, within the panel.
    _palette(page, "Show flow DAG")
    picture = page.locator(".nbflow-output-panel svg.nbflow-picture")
    picture.wait_for(timeout=30_000)
    states = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll("
        "'.nbflow-output-panel svg.nbflow-picture [data-node]')]"
        ".map(n => [n.dataset.node, n.dataset.state]))"
    )
    assert states == {"rows": "success", "total": "success", "check": "success"}
    page.wait_for_timeout(300)
    inside = page.evaluate(
        "() => { const p = document.querySelector('.nbflow-output-panel .jp-OutputArea')"
        ".getBoundingClientRect(); const s = document.querySelector("
        "'.nbflow-output-panel svg.nbflow-picture').getBoundingClientRect();"
        " return [s.top >= p.top, s.bottom <= p.bottom + 1, s.right <= p.right + 1, s.height]; }"
    )
    assert inside[:3] == [True, True, True], inside
    assert inside[3] > 100
    shot(page, "doc-2b-show-dag")

    # A page reload: the badges come back from the running kernel.
    _save(page)
    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    _wait_badges(page, ["success", "success", "success"])
    shot(page, "doc-3-after-reload")

    # Reopened with a new kernel: the badges come back from the run history.
    _shut_down_kernels(lab)
    page.goto("about:blank")
    _open(page, lab.lab_url("document.ipynb"))
    _wait_badges(page, ["success", "success", "success"])
    assert all("[ ]" in p or p == "" for p in _execution_counts(page)), _execution_counts(page)
    shot(page, "doc-4-reopened")


def test_a_reopened_saved_notebook_shows_the_final_picture_of_its_run(lab, page, shot):
    # --lazy: Run All goes on to %flow run; a new constant: not cached by the other test
    lazy = [c.replace("%%task", "%%task --lazy", 1).replace("10", "12") for c in CELLS]
    lab.write_notebook("reopen.ipynb", [*lazy, "%flow run"])
    _open(page, lab.lab_url("reopen.ipynb"))
    _palette(page, "Run All Cells")
    page.wait_for_selector(
        ".jp-Notebook .nbflow-widget .nbflow-node[data-node='check'][data-state='failed']",
        timeout=60_000,
    )
    _idle(page)
    _save(page)

    _shut_down_kernels(lab)
    page.goto("about:blank")
    _open(page, lab.lab_url("reopen.ipynb"))
    picture = page.locator(".jp-Notebook .nbflow-picture-output .nbflow-static svg")
    picture.wait_for(timeout=30_000)
    states = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll("
        "'.jp-Notebook .nbflow-picture-output [data-node]')]"
        ".map(n => [n.dataset.node, n.dataset.state]))"
    )
    assert states.pop("check") == "failed"
    assert states == {"rows": "success", "total": "success"}
    assert "model not found" not in page.locator(".jp-Notebook").first.text_content()
    box = picture.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100
    picture.scroll_into_view_if_needed()
    shot(page, "doc-5-reopened-picture")
