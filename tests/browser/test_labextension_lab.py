"""The JupyterLab extension, installed from the built wheel into a fresh environment,
in real JupyterLab and Chromium: badges on %%task cells and the flow commands."""

from __future__ import annotations

import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Lab, serve_lab
from conftest import idle as _idle
from conftest import open_notebook as _open
from conftest import palette as _palette
from nbflow.palette import COLOURS
from nbflow.state import State

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]

CELLS = [
    "%load_ext nbflow",
    "%%task --lazy\nrows = list(range(10))",
    "%%task --lazy\ntotal = sum(rows)",
    (
        "%%task check --lazy\n"
        "import pathlib\n"
        "switch = pathlib.Path('switch.txt').read_text().strip()\n"
        "if switch != 'on':\n"
        "    raise RuntimeError(f'the switch is {switch!r}')\n"
        "checked = total * 2"
    ),
]


@pytest.fixture(scope="module")
def wheel_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab from a new virtual environment where only the built wheel (and what
    it depends on) is installed: what `pip install jupyter-nbflow` gives a user."""
    base = tmp_path_factory.mktemp("wheel-lab")
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = dist.glob("jupyter_nbflow-*.whl")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=900)
    listing = subprocess.run(
        [str(env_dir / "bin" / "jupyter"), "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(x for x in (listing.stdout + listing.stderr).splitlines() if "jupyter-nbflow" in x)
    assert "enabled" in line and "OK" in line
    with serve_lab(base, str(python)) as server:
        yield server


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def _badges(page) -> list[str | None]:
    """The badge state of each %%task cell, in notebook order."""
    return page.evaluate(
        "() => [...document.querySelectorAll('.jp-Notebook .jp-Cell.nbflow-task-cell')]"
        ".map(c => c.querySelector('.nbflow-cell-badge')?.dataset.state ?? null)"
    )


def test_badges_follow_run_flow_and_rerun_failed_from_the_palette(wheel_lab, page, shot):
    (wheel_lab.root / "switch.txt").write_text("off")
    wheel_lab.write_notebook("badges.ipynb", CELLS)
    _open(page, wheel_lab.lab_url("badges.ipynb"))

    # The task cells are marked as such before anything runs, and have no badge yet.
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-Cell.nbflow-task-cell').length === 3"
    )
    assert _badges(page) == [None, None, None]

    _palette(page, "Run All Cells")  # defines the three cells (--lazy)
    _idle(page)
    page.wait_for_timeout(500)
    _palette(page, "Run flow")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.nbflow-cell-badge')]"
        ".map(b => b.dataset.state).join() === 'success,success,failed'",
        timeout=60_000,
    )
    failed = page.locator(".nbflow-cell-badge.nbflow-state-failed")
    assert failed.text_content().startswith("failed")
    assert "click to see the error" in (failed.get_attribute("title") or "")
    # The command's output (the live DAG) is in a panel next to the notebook.
    page.wait_for_selector(".nbflow-output-panel .nbflow-widget", timeout=30_000)
    shot(page, "lab-ext-1-run-flow-failed")

    # Clicking the failed badge makes its cell the active one.
    failed.click()
    page.wait_for_function(
        "() => document.querySelector('.jp-Cell.jp-mod-active .nbflow-cell-badge')"
        "?.dataset.state === 'failed'",
        timeout=10_000,
    )

    # Fix the input, then "Re-run failed tasks": the failed cell runs again and passes.
    (wheel_lab.root / "switch.txt").write_text("on")
    _palette(page, "Re-run failed tasks")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.nbflow-cell-badge')]"
        ".map(b => b.dataset.state).join() === 'success,success,success'",
        timeout=60_000,
    )
    assert _badges(page) == ["success", "success", "success"]
    shot(page, "lab-ext-2-rerun-failed")

    # Dark theme: the badges keep the palette's fill and dark text (readable on both).
    _palette(page, "Use Theme: JupyterLab Dark")
    page.wait_for_selector("body[data-jp-theme-light='false']", state="attached", timeout=20_000)
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=30_000)
    page.wait_for_timeout(500)
    colours = page.evaluate(
        "() => { const s = getComputedStyle(document.querySelector('.nbflow-cell-badge'));"
        " return [s.backgroundColor, s.color]; }"
    )
    assert colours == [_rgb(COLOURS[State.SUCCESS]), "rgb(27, 27, 27)"]
    shot(page, "lab-ext-3-dark")

    # The toolbar has the same two commands.
    toolbar = page.locator(".jp-NotebookPanel-toolbar").first
    assert toolbar.get_by_text("Run flow").count() == 1
    assert toolbar.get_by_text("Re-run failed tasks").count() == 1


def test_clear_cache_asks_first(wheel_lab, page):
    wheel_lab.write_notebook("clear.ipynb", CELLS[:2])
    _open(page, wheel_lab.lab_url("clear.ipynb"))
    _palette(page, "Clear flow cache")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=10_000)
    assert "Clear the flow cache?" in dialog.text_content()
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="detached", timeout=10_000)
    # Nothing ran: no output panel was opened.
    assert page.locator(".nbflow-output-panel").count() == 0
