"""The live widget in real JupyterLab and Notebook 7, in real Chromium."""

from __future__ import annotations

import pytest

from nbflow.palette import COLOURS
from nbflow.state import State

pytestmark = pytest.mark.browser

FLOW_CELL = """
import pathlib, time
from nbflow import Flow, task, get_logger

@task(cache=False)
def extract():
    time.sleep(5)
    return [1, 2, 3]

@task(cache=False)
def square(x):
    return x * x

@task(cache=False)
def check(rows):
    switch = pathlib.Path("switch.txt").read_text().strip()
    print(f"checking {len(rows)} rows")
    get_logger().info("the switch reads %r", switch)
    if switch != "on":
        raise RuntimeError(f"the switch is {switch!r}, not 'on'")
    return sum(rows)

@task(cache=False)
def report(total):
    return f"total {total}"

with Flow("browser-etl") as flow:
    rows = extract()
    squares = square.map(rows)
    total = check(squares)
    out = report(total)
run = flow.run()
"""


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # A cell run sent before the kernel is idle can be dropped: wait for it, then a bit.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-StatusBar-TextItem, #jp-NotebookKernelStatus,"
        " .jp-Notebook-ExecutionIndicator')].some(e => /Idle/.test(e.textContent)"
        " || e.getAttribute('data-status') === 'idle')",
        timeout=60_000,
    )
    page.wait_for_timeout(1000)


def _run_cell(page, index: int) -> None:
    cell = page.locator(".jp-Notebook:visible .jp-Cell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def _selector(name: str, state: str) -> str:
    return f'.nbflow-node[data-node="{name}"][data-state="{state}"]'


def _node(page, name: str):
    return page.locator(f'.nbflow-node[data-node="{name}"]')


def test_live_widget_shows_running_then_final_states_logs_and_reruns_failed(lab, page, shot):
    (lab.root / "switch.txt").write_text("off")
    lab.write_notebook("live.ipynb", [FLOW_CELL, "run.state.value"])
    _open(page, lab.lab_url("live.ipynb"))
    _run_cell(page, 0)

    # Live: extract is running while the cell is still executing.
    page.wait_for_selector(_selector("extract", "running"), timeout=30_000)
    prompt = page.locator(".jp-Notebook .jp-Cell").nth(0).locator(".jp-InputPrompt")
    assert "*" in prompt.text_content()
    assert _node(page, "check").get_attribute("data-state") == "pending"
    widget = page.locator(".nbflow-widget").first
    shot(widget, "lab-1-running")

    # Final colours: the failing task red, its downstream upstream-failed, the rest green.
    page.wait_for_selector(_selector("check", "failed"), timeout=60_000)
    page.wait_for_function(
        "() => !document.querySelector('.jp-Notebook .jp-Cell .jp-InputPrompt')"
        ".textContent.includes('*')",
        timeout=30_000,
    )
    assert _node(page, "report").get_attribute("data-state") == "upstream_failed"
    assert _node(page, "extract").get_attribute("data-state") == "success"
    assert _node(page, "square").get_attribute("data-state") == "success"
    assert "3/3 done" in _node(page, "square").text_content()
    for name, state in [("check", State.FAILED), ("extract", State.SUCCESS)]:
        page.wait_for_function(  # the colour eases in over 0.2 s
            "([name, rgb]) => getComputedStyle(document.querySelector("
            "`.nbflow-node[data-node='${name}'] .nbflow-shape`)).fill === rgb",
            arg=[name, _rgb(COLOURS[state])],
            timeout=5_000,
        )
    assert "failed" in page.locator(".nbflow-run-state").first.text_content()
    assert page.locator(".nbflow-retry").first.is_enabled()
    assert page.locator(".nbflow-cancel").first.is_disabled()
    shot(widget, "lab-2-failed")

    # Selecting the failed node shows its captured log and its traceback.
    _node(page, "check").click()
    page.wait_for_selector(".nbflow-detail .nbflow-logs", timeout=20_000)
    detail = page.locator(".nbflow-detail").first
    logs = detail.locator(".nbflow-logs").text_content().splitlines()
    assert logs[0] == "checking 3 rows"  # a printed line reads as printed
    assert logs[1].endswith(" INFO the switch reads 'off'")  # a record: time and level
    assert "RuntimeError" in detail.locator(".nbflow-traceback").text_content()
    shot(widget, "lab-3-failed-detail")

    # The mapped node lists its children.
    _node(page, "square").click()
    page.wait_for_selector(".nbflow-detail .nbflow-child", timeout=20_000)
    assert page.locator(".nbflow-detail .nbflow-child").count() == 3
    shot(widget, "lab-4-mapped-children")

    # Flip the value the failing task reads, then "Re-run failed": the widget follows.
    (lab.root / "switch.txt").write_text("on")
    old_run = page.locator(".nbflow-run-id").first.text_content()
    page.locator(".nbflow-retry").first.click()
    page.wait_for_function(
        f"() => document.querySelector('.nbflow-run-id').textContent !== {old_run!r}",
        timeout=30_000,
    )
    page.wait_for_selector(_selector("report", "success"), timeout=60_000)
    assert _node(page, "check").get_attribute("data-state") == "success"
    assert "success" in page.locator(".nbflow-run-state").first.text_content()
    assert page.locator(".nbflow-retry").first.is_disabled()
    shot(widget, "lab-5-rerun-success")
    shot(page, "lab-6-page")


NOTEBOOK7_CELL = """
from nbflow import Flow, task, case, merge

@task(cache=False)
def pick():
    return "big"

attempts = []

@task(cache=False, retries=2, retry_delay=0)
def shout(word):
    attempts.append(word)
    if len(attempts) == 1:
        raise OSError("a flaky first attempt")
    return word.upper()

with Flow("notebook7-branches") as flow:
    choice = pick()
    with case(choice, "big"):
        a = shout("big")
    with case(choice, "small"):
        b = shout("small")
    out = merge(a, b)
run = flow.run(show=False)
"""


def test_notebook7_renders_the_widget_of_a_run_shown_on_its_own_with_its_branches(lab, page, shot):
    lab.write_notebook("nb7.ipynb", [NOTEBOOK7_CELL, "run"])
    _open(page, lab.notebook7_url("nb7.ipynb"))
    _run_cell(page, 0)
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-Cell .jp-InputPrompt')[0].textContent.includes('1')"
    )
    assert page.locator(".nbflow-widget").count() == 0  # show=False
    _run_cell(page, 1)
    try:
        page.wait_for_selector(_selector("merge", "success"), timeout=60_000)
    finally:
        shot(page, "nb7-page")
    assert _node(page, "shout").get_attribute("data-state") == "success"
    assert "retry 1/2" in _node(page, "shout").text_content()
    assert _node(page, "shout-2").get_attribute("data-state") == "skipped"
    cases = page.locator(".nbflow-node.nbflow-kind-case")
    assert cases.count() == 2
    assert "case(pick == 'big')" in cases.first.text_content()
    shot(page.locator(".nbflow-widget").first, "nb7-branches")


BIG_CELL = """
from nbflow import Flow, task

@task(cache=False)
def part(i):
    return i

@task(cache=False)
def combine(*parts):
    return sum(parts)

with Flow("browser-wide") as flow:
    parts = [part(i) for i in range(300)]
    groups = [combine(*parts[i : i + 30]) for i in range(0, 300, 30)]
    total = combine(*groups)
    squares = part.map(range(2000))
run = flow.run()
"""


def test_a_wide_flow_fits_the_width_and_a_large_map_stays_one_node(lab, page, shot):
    lab.write_notebook("wide.ipynb", [BIG_CELL])
    _open(page, lab.lab_url("wide.ipynb"))
    _run_cell(page, 0)
    page.wait_for_selector(".nbflow-run-state.nbflow-state-success", timeout=60_000)
    shot(page.locator(".nbflow-widget").first, "lab-7-wide")
    assert page.locator(".nbflow-node").count() == 300 + 10 + 1 + 1
    mapped = page.locator(".nbflow-node.nbflow-kind-mapped")
    assert mapped.count() == 1
    assert "2000/2000 done" in mapped.text_content()
    width = "() => document.querySelector('.nbflow-graph').getBoundingClientRect().width"
    fitted = page.evaluate(width)
    page.get_by_role("button", name="+").first.click()
    assert page.evaluate(width) > fitted * 1.2
    page.get_by_role("button", name="Fit").first.click()
    assert page.evaluate(width) == fitted


BACKGROUND_CELL = """
import time
from nbflow import Flow, task

@task(cache=False)
def slow(i):
    time.sleep(30)
    return i

with Flow("browser-background") as flow:
    slow.map(range(3))
run = flow.run(background=True, max_workers=1)
"""


def test_cancel_stops_a_background_run_from_the_widget(lab, page, shot):
    lab.write_notebook("background.ipynb", [BACKGROUND_CELL, "run.wait(60); run.state.value"])
    _open(page, lab.lab_url("background.ipynb"))
    _run_cell(page, 0)
    page.wait_for_selector(".nbflow-run-state.nbflow-state-running", timeout=30_000)
    cancel = page.locator(".nbflow-cancel").first
    page.wait_for_function(
        "() => !document.querySelector('.nbflow-cancel').disabled", timeout=10_000
    )
    assert page.locator(".nbflow-retry").first.is_disabled()
    shot(page.locator(".nbflow-widget").first, "lab-8-background")
    cancel.click()
    page.wait_for_selector(".nbflow-run-state.nbflow-state-cancelled", timeout=30_000)
    assert cancel.is_disabled()
    assert page.locator(".nbflow-retry").first.is_enabled()  # cancelled tasks can run again
    _run_cell(page, 1)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook:not(.lm-mod-hidden) .jp-OutputArea')]"
        ".some(o => o.textContent.includes(\"'cancelled'\"))",
        timeout=30_000,
    )
    shot(page.locator(".nbflow-widget").first, "lab-9-cancelled")


NO_DOT_CELL = """
import os
os.environ["PATH"] = ""  # this kernel cannot find graphviz's dot
from nbflow import Flow, task

@task(cache=False)
def leaf(i):
    return i

@task(cache=False)
def join(a, b):
    return a + b

with Flow("browser-no-dot") as flow:
    a, b, c = leaf(1), leaf(2), leaf(3)
    total = join(join(a, b), c)
run = flow.run()
"""


def test_without_dot_the_notebook_warns_once_and_the_widget_draws_the_layered_layout(
    lab, page, shot
):
    lab.write_notebook("nodot.ipynb", [NO_DOT_CELL])
    _open(page, lab.lab_url("nodot.ipynb"))
    _run_cell(page, 0)
    page.wait_for_selector(".nbflow-run-state.nbflow-state-success", timeout=60_000)
    outputs = page.locator(".jp-Notebook:visible .jp-OutputArea").first.text_content()
    assert outputs.count("apt-get install graphviz") == 1
    ys = page.evaluate(
        "() => [...document.querySelectorAll('.nbflow-node')]"
        ".map(n => n.transform.baseVal[0].matrix.f)"
    )
    assert len(ys) == 5
    assert len(set(ys)) == 3  # three layers: leaves, the first join, the second join
    shot(page.locator(".jp-Notebook:visible .jp-Cell").first, "lab-10-no-dot")


PAUSED_CELL = """
from nbflow import Flow, task

@task(cache=False)
def build():
    return 41

@task(cache=False, trigger="manual_only")
def deploy(x):
    return x + 1

with Flow("browser-approval") as flow:
    deploy(build())
run = flow.run()
"""


def test_resume_in_the_panel_of_a_paused_node_lets_it_run(lab, page, shot):
    lab.write_notebook("approval.ipynb", [PAUSED_CELL, "run.wait(60); run.result('deploy')"])
    _open(page, lab.lab_url("approval.ipynb"))
    _run_cell(page, 0)
    page.wait_for_selector(_selector("deploy", "paused"), timeout=60_000)
    _node(page, "build").click()
    page.wait_for_selector(".nbflow-detail .nbflow-logs", timeout=20_000)
    assert page.locator(".nbflow-detail .nbflow-resume").count() == 0  # not paused
    _node(page, "deploy").click()
    resume = page.locator(".nbflow-detail .nbflow-resume").first
    resume.wait_for(timeout=20_000)
    shot(page.locator(".nbflow-widget").first, "lab-11-paused")
    resume.click()
    page.wait_for_selector(_selector("deploy", "success"), timeout=30_000)
    page.wait_for_selector(".nbflow-run-state.nbflow-state-success", timeout=30_000)
    assert page.locator(".nbflow-detail .nbflow-resume").count() == 0
    assert "waiting" not in page.locator(".nbflow-detail").first.text_content()
    _run_cell(page, 1)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook:not(.lm-mod-hidden) "
        ".jp-OutputArea-output')].some(o => o.textContent.trim() === '42')",
        timeout=30_000,
    )
    shot(page.locator(".nbflow-widget").first, "lab-12-resumed")
