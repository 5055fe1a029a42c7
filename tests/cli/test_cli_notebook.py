"""``nbflow run`` on notebooks: a real kernel (nbclient), the store beside the notebook.

These notebooks build and run flows in code cells (``@task`` and ``Flow``); each
flow run in the kernel is recorded in the history the command follows.
"""

import json
import os
import re
import subprocess
import sys
import time

import nbclient
import nbformat
import pytest
from clihelp import (
    CONTROL,
    cli_env,
    history_rows,
    in_terminal,
    interrupt,
    latest_runs,
    nbflow,
    pid_alive,
    start,
    task_states,
    wait_for,
)
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

pytestmark = pytest.mark.slow

SETUP = """\
import os, pathlib, time

HERE = pathlib.Path.cwd()

def mark(name):
    with (HERE / "executed.log").open("a") as fh:
        fh.write(name + "\\n")
"""

TASK_CELLS = [
    "%%task load\nmark('load')\nrows = list(range(n))",
    "%%task square --map x=rows\nmark('square')\nsquares = x * x",
    "%%task check\nmark('check')\n"
    "if not (HERE / 'fixed').exists():\n    raise ValueError('input not fixed yet')\n"
    "checked = squares",
    "%%task total\nmark('total')\ntotal = sum(checked)\n"
    "(HERE / 'total.txt').write_text(str(total))\nprint('total', total)",
]


def _notebook(folder, name="analysis.ipynb", extra=()):
    cells = [
        new_markdown_cell("# An analysis"),
        new_code_cell("%load_ext nbflow"),
        new_code_cell("n = 3", metadata={"tags": ["parameters"]}),
        new_code_cell(SETUP),
        *(new_code_cell(source) for source in TASK_CELLS),
        *extra,
    ]
    path = folder / name
    nbformat.write(new_notebook(cells=cells), str(path))
    return path


def _executed(folder):
    log = folder / "executed.log"
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return sorted(lines)


def _execute_in_kernel(path, env, allow_errors=False):
    """The notebook run as JupyterLab runs it: a kernel in its folder (JupyterLab names
    the session after the notebook), no nbflow command."""
    book = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(
        book, kernel_name="python3", timeout=120, allow_errors=allow_errors
    )
    client.execute(cwd=str(path.parent), env={**env, "JPY_SESSION_NAME": str(path)})
    return book


def _text(cell):
    return "".join(out.get("text", "") for out in cell.outputs if out["output_type"] == "stream")


def _rows_since(home, since):
    return history_rows(
        home,
        "SELECT t.name, t.state FROM task_rows t JOIN runs r ON r.id = t.run_id "
        "WHERE r.start >= ? AND t.mapped = 0",
        (since,),
    )


EVERYTHING = ["check", "load", "square", "square", "square", "total"]


def test_a_headless_run_fills_the_cache_that_a_kernel_then_hits_for_every_task(tmp_path):
    path = _notebook(tmp_path)
    (tmp_path / "fixed").touch()
    env = cli_env(tmp_path)
    out = nbflow("run", path, cwd=tmp_path.parent, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "notebook 'analysis.ipynb': 7 success" in out.stdout  # with the map's source
    assert _executed(tmp_path) == EVERYTHING
    home = tmp_path / ".nbflow"  # beside the notebook, not in the command's folder
    assert (home / "history.sqlite").exists() and not (tmp_path.parent / ".nbflow").exists()
    assert {flow for _, flow, _ in latest_runs(home, 10)} == {"analysis"}

    since = time.time()
    book = _execute_in_kernel(path, env)
    assert _executed(tmp_path) == []  # nothing ran again
    assert "total 5" in _text(book.cells[-1])  # the cell's output is replayed
    rows = _rows_since(home, since)
    assert {name for name, _ in rows} >= {"load", "square[2]", "check", "total"}
    assert {state for _, state in rows} == {"cached"}


def test_a_kernel_run_fills_the_cache_that_a_headless_run_then_hits_for_every_task(tmp_path):
    path = _notebook(tmp_path)
    (tmp_path / "fixed").touch()
    env = cli_env(tmp_path)
    _execute_in_kernel(path, env)
    assert _executed(tmp_path) == EVERYTHING

    since = time.time()
    out = nbflow("run", path.name, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "notebook 'analysis.ipynb': 7 cached in" in out.stdout
    assert _executed(tmp_path) == []
    assert {state for _, state in _rows_since(tmp_path / ".nbflow", since)} == {"cached"}


def test_a_failing_task_gives_exit_1_and_retry_after_the_fix_recomputes_only_it(tmp_path):
    path = _notebook(tmp_path)
    env = cli_env(tmp_path)
    out = nbflow("run", path, "--param", "n=4", cwd=tmp_path, env=env)
    assert out.returncode == 1
    summary = out.stdout[out.stdout.index("Failed tasks:") :]
    assert "  check failed:" in summary
    assert "raise ValueError('input not fixed yet')" in summary  # the task's own traceback
    assert "ValueError: input not fixed yet" in summary
    assert "Did not run (upstream failed or cancelled): total" in summary
    assert "Other cells that raised" not in summary  # only task cells raised
    assert _executed(tmp_path) == ["check", "load"] + ["square"] * 4  # check ran once

    (tmp_path / "fixed").touch()
    again = nbflow("retry", "--path", tmp_path, cwd=tmp_path.parent, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _executed(tmp_path) == ["check", "total"]
    assert (tmp_path / "total.txt").read_text() == "14"  # n=4 again: 0 + 1 + 4 + 9
    source = history_rows(tmp_path / ".nbflow", "SELECT DISTINCT kind, path FROM run_sources")
    assert source == [("notebook", str(path))]

    # nbflow runs: one row per notebook run, its cell runs inside (oldest first).
    table = nbflow("runs", "--path", tmp_path, cwd=tmp_path, env=env).stdout.splitlines()
    groups = [i for i, line in enumerate(table) if line.startswith("notebook run (")]
    assert len(groups) == 2 and groups[0] == 1, table
    retried, first = table[groups[0]].split(), table[groups[1]].split()
    assert retried[4:6] == ["analysis", "success"] and retried[-1] == "0"
    assert first[4:6] == ["analysis", "failed"] and first[-1] == "2"  # check, total
    inside = table[groups[1] + 1 :]
    assert len(inside) == int(first[2].strip("(")) and all(r.startswith("  ") for r in inside)
    assert [r.split()[1:3] for r in inside] == [
        ["analysis", "success"],
        ["analysis", "success"],
        ["analysis", "failed"],
        ["analysis", "failed"],
    ]


def test_parameters_are_injected_after_the_parameters_cell_and_output_is_signed(
    tmp_path, monkeypatch
):
    widget = new_code_cell("import ipywidgets\nipywidgets.IntSlider(value=7)")
    path = _notebook(tmp_path, extra=[widget])
    (tmp_path / "fixed").touch()
    original = path.read_text()
    env = cli_env(tmp_path)
    out = nbflow("run", path, "--param", "n=5", "--output", "done.ipynb", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert path.read_text() == original  # the source notebook is not modified
    done = nbformat.read(str(tmp_path / "done.ipynb"), as_version=4)
    injected = done.cells[3]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert "n = 5" in injected.source
    assert done.cells[2].source == "n = 3"
    assert "total 30" in _text(done.cells[-2])
    state = done.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    sliders = [m for m in state.values() if m["model_name"] == "IntSliderModel"]
    assert [m["state"]["value"] for m in sliders] == [7]
    view = done.cells[-1].outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in view
    assert (tmp_path / "total.txt").read_text() == "30"
    monkeypatch.setenv("JUPYTER_DATA_DIR", env["JUPYTER_DATA_DIR"])
    from nbformat.sign import NotebookNotary

    assert NotebookNotary().check_signature(done)


def test_a_notebook_without_a_parameters_cell_gets_its_parameters_first(tmp_path):
    cells = ["%load_ext nbflow", "n = 2\n" + SETUP, *TASK_CELLS]
    book = new_notebook(cells=[new_code_cell(c) for c in cells])
    nbformat.write(book, str(tmp_path / "plain.ipynb"))
    (tmp_path / "fixed").touch()
    env = cli_env(tmp_path)
    args = ["run", "plain.ipynb", "--param", "flag='x'", "--output", "o.ipynb"]
    out = nbflow(*args, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    done = nbformat.read(str(tmp_path / "o.ipynb"), as_version=4)
    assert done.cells[0].source.splitlines()[-1] == "flag = 'x'"


def test_a_cell_that_raises_outside_any_task_is_named_and_gives_exit_1(tmp_path):
    path = _notebook(tmp_path, extra=[new_code_cell("print('report')"), new_code_cell("1 / 0")])
    (tmp_path / "fixed").touch()
    out = nbflow("run", path, cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 1
    assert "Cells that raised:\n  cell 10: ZeroDivisionError: division by zero" in out.stdout
    assert "7 success" in out.stdout  # every task succeeded


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        (["%load_ext nbflow", "%%task a\nx = (1"], "UsageError: %%task a: line 2:"),
        (
            ["%load_ext nbflow", "%%task a --retries x\nx = 1"],
            "UsageError: %%task a: expected --retries to be an int >= 0, but got 'x'.",
        ),
        (
            ["import nbflow", "%%task a\nx = 1"],
            "UsageError: Cell magic `%%task` not found. Add a cell with %load_ext nbflow",
        ),
    ],
    ids=["syntax", "option", "no-load-ext"],
)
def test_a_rejected_task_cell_gives_exit_1_naming_the_cell_and_the_reason(tmp_path, cells, reason):
    book = new_notebook(cells=[new_code_cell(c) for c in cells])
    nbformat.write(book, str(tmp_path / "rejected.ipynb"))
    out = nbflow("run", "rejected.ipynb", cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"Cells that raised:\n  cell {len(cells)} (%%task): {reason}" in out.stdout


def test_notebook_output_to_a_pipe_has_no_control_characters(tmp_path):
    path = _notebook(tmp_path)
    out = nbflow("run", path, cwd=tmp_path, env=cli_env(tmp_path, TERM="xterm-256color"))
    assert out.returncode == 1
    assert not CONTROL.search(out.stdout + out.stderr)
    events = [line.split()[1:3] for line in out.stdout.splitlines() if line[:2].isdigit()]
    assert ["failed", "check:"] in events and ["success", "square[2]"] in events


FLOW_CELLS = [
    SETUP
    + "from nbflow import Flow, task\n\n"
    + "@task\ndef load(n):\n    mark('load')\n    return list(range(n))\n\n"
    + "@task\ndef square(x):\n    mark('square')\n    return x * x\n",
    "with Flow('analysis') as flow:\n    squares = square.map(load(3))\n"
    "run = flow.run()\nprint(run.state.value)",
]


def test_executor_jobs_and_refresh_reach_flows_run_in_code_cells(tmp_path):
    # Code cells that build and run a Flow: their runs take the command's options.
    book = new_notebook(cells=[new_code_cell(c) for c in FLOW_CELLS])
    path = tmp_path / "flows.ipynb"
    nbformat.write(book, str(path))
    env = cli_env(tmp_path)
    args = ["run", path, "--executor", "processes", "--jobs", "2"]
    out = nbflow(*args, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "notebook 'flows.ipynb': 4 success" in out.stdout
    (run_id, flow, _), *_ = latest_runs(tmp_path / ".nbflow")
    rows = history_rows(tmp_path / ".nbflow", "SELECT executor FROM runs WHERE id = ?", (run_id,))
    assert (flow, rows) == ("analysis", [("processes",)])
    assert _executed(tmp_path) == ["load", "square", "square", "square"]
    assert nbflow("run", path, cwd=tmp_path, env=env).returncode == 0
    assert _executed(tmp_path) == []
    assert nbflow("run", path, "--refresh", cwd=tmp_path, env=env).returncode == 0
    assert _executed(tmp_path) == ["load", "square", "square", "square"]  # recomputed


SLOW_CELLS = [
    "%load_ext nbflow",
    "import os, pathlib, time\npathlib.Path('kernel.pid').write_text(str(os.getpid()))",
    "%%task quick\nfirst = 41",
    "%%task slow\npathlib.Path('slow.pid').write_text(str(os.getpid()))\n"
    "time.sleep(120)\nsecond = first + 1",
    "pathlib.Path('after.txt').write_text('ran')",
]


def _interrupted(tmp_path, cells, *options):
    book = new_notebook(cells=[new_code_cell(c) for c in cells])
    nbformat.write(book, str(tmp_path / "sleepy.ipynb"))
    proc = start("run", "sleepy.ipynb", *options, cwd=tmp_path, env=cli_env(tmp_path))
    wait_for((tmp_path / "slow.pid").exists, timeout=90, what="the slow task to start")
    kernel, worker = (int((tmp_path / f).read_text()) for f in ("kernel.pid", "slow.pid"))
    status, out, err = interrupt(proc, timeout=90)
    assert status == 130, out + err
    assert "interrupting the kernel" in out
    assert not (tmp_path / "after.txt").exists()  # no cell ran after the interrupt
    wait_for(lambda: not pid_alive(worker), timeout=20, what="the task to be stopped")
    wait_for(lambda: not pid_alive(kernel), timeout=20, what="the kernel to shut down")
    home = tmp_path / ".nbflow"
    (run_id, _, state), *_ = latest_runs(home)
    assert state == "cancelled"
    info = nbflow("cache", "info", cwd=tmp_path, env=cli_env(tmp_path))
    assert info.stdout.splitlines()[2:] == ["quick  1"]  # the finished result is kept
    return out, task_states(home, run_id)


def test_sigint_interrupts_the_kernel_cancels_the_task_cell_and_keeps_finished_results(
    tmp_path,
):
    out, states = _interrupted(tmp_path, SLOW_CELLS)
    assert "notebook 'sleepy.ipynb' (interrupted): 1 cancelled, 1 success" in out
    assert states == {"quick": "cached", "slow": "cancelled"}


def test_sigint_still_writes_the_output_notebook_with_the_cells_that_ran(tmp_path, monkeypatch):
    out, _ = _interrupted(tmp_path, SLOW_CELLS, "--output", "partial.ipynb")
    assert f"wrote {tmp_path / 'partial.ipynb'}" in out
    cells = nbformat.read(str(tmp_path / "partial.ipynb"), as_version=4).cells
    counts = [c.execution_count for c in cells]
    assert counts[:4] == [1, 2, 3, 4] and counts[4] is None  # the cell after never ran
    quick = "".join(o.get("text", "") + str(o.get("data", "")) for o in cells[2].outputs)
    assert "quick" in quick
    stopped = [o for o in cells[3].outputs if o.output_type == "error"]
    assert stopped and stopped[0].ename in ("KeyboardInterrupt", "CancelledError")
    monkeypatch.setenv("JUPYTER_DATA_DIR", cli_env(tmp_path)["JUPYTER_DATA_DIR"])
    from nbformat.sign import NotebookNotary

    book = nbformat.read(str(tmp_path / "partial.ipynb"), as_version=4)
    assert NotebookNotary().check_signature(book)


def test_sigint_terminates_the_worker_processes_of_a_flow_run_in_the_kernel(tmp_path):
    cells = [
        SLOW_CELLS[1],
        "from nbflow import Flow, task\n\n@task\ndef quick():\n    return 41\n\n"
        "@task\ndef slow(x):\n"
        "    pathlib.Path('slow.pid').write_text(str(os.getpid()))\n"
        "    time.sleep(120)\n    return x\n\n"
        "with Flow('sleepy') as flow:\n    slow(quick())\n"
        "run = flow.run(executor='processes')",
        SLOW_CELLS[-1],
    ]
    out, states = _interrupted(tmp_path, cells)
    assert "notebook 'sleepy.ipynb' (interrupted): 1 cancelled, 1 success" in out
    assert states == {"quick": "success", "slow": "cancelled"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "'bad.ipynb' is not a notebook: it is not valid JSON"),
        (json.dumps({"cells": "x"}), "'bad.ipynb' is not a valid notebook"),
        (
            nbformat.writes(new_notebook(cells=[new_code_cell("x = 1")])),
            "'bad.ipynb' has no tasks: no %%task cell and no use of nbflow",
        ),
    ],
)
def test_a_file_that_is_not_a_notebook_with_tasks_is_a_usage_error(tmp_path, content, message):
    (tmp_path / "bad.ipynb").write_text(content)
    out = nbflow("run", "bad.ipynb", cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 2
    assert out.stderr.startswith("nbflow: error: " + message)
    assert len(out.stderr.splitlines()) == 1
    assert not (tmp_path / ".nbflow").exists()


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("missing/done.ipynb", "The folder of --output '{tmp}/missing/done.ipynb' does not exist"),
        (".", "--output '{tmp}' is a directory"),
    ],
    ids=["missing-folder", "directory"],
)
def test_an_output_that_cannot_be_written_is_a_usage_error_before_anything_runs(
    tmp_path, output, message
):
    path = _notebook(tmp_path)
    out = nbflow("run", path, "--output", output, cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 2
    assert out.stderr.startswith("nbflow: error: " + message.format(tmp=tmp_path))
    assert len(out.stderr.splitlines()) == 1
    assert _executed(tmp_path) == [] and not (tmp_path / ".nbflow").exists()


def test_a_notebook_target_does_not_take_a_flow_name(tmp_path):
    path = _notebook(tmp_path)
    out = nbflow("run", f"{path}:analysis", cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 2
    assert "No such file" in out.stderr or "applies to Python files only" in out.stderr
    assert os.path.exists(path)


def test_visualize_draws_the_task_cells_coloured_by_their_latest_states(tmp_path):
    path = _notebook(tmp_path)
    env = cli_env(tmp_path)
    before = nbflow("visualize", path, "-o", "before.dot", cwd=tmp_path, env=env)
    assert before.returncode == 0, before.stderr
    dot = (tmp_path / "before.dot").read_text()
    assert "tooltip=pending" in dot and "tooltip=failed" not in dot
    assert nbflow("run", path, cwd=tmp_path, env=env).returncode == 1
    out = nbflow("visualize", path, "-o", "dag.dot", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    dot = (tmp_path / "dag.dot").read_text()
    states = dict(re.findall(r"^\s*(\w+) \[label=[^\]]*tooltip=(\w+)\]", dot, re.M))
    assert states == {  # latest: later cells' runs reused load and square from the cache
        "load": "cached",
        "square": "cached",
        "check": "failed",
        "total": "upstream_failed",
    }
    edges = re.findall(r"^\s*(\w+) -> (\w+)", dot, re.M)
    assert edges == [("load", "square"), ("square", "check"), ("check", "total")]
    assert "peripheries=2" in dot  # the mapped cell
    svg = nbflow("visualize", path, "-o", "dag.svg", cwd=tmp_path, env=env)
    assert svg.returncode == 0 and "<svg" in (tmp_path / "dag.svg").read_text()


def test_visualize_reads_ipython_syntax_in_task_cells_as_the_kernel_does(tmp_path):
    cells = [
        "%load_ext nbflow",
        "%%task base\nbase = 2",
        "%%task scaled\n%time scaled = base * 3\nfiles = !ls",
        "%%task shown\n%timeit -n 1 scaled + 1\nshown = 1",
    ]
    nbformat.write(new_notebook(cells=[new_code_cell(c) for c in cells]), tmp_path / "m.ipynb")
    out = nbflow("visualize", "m.ipynb", "-o", "dag.dot", cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 0, out.stderr
    edges = re.findall(r"^\s*(\w+) -> (\w+)", (tmp_path / "dag.dot").read_text(), re.M)
    assert edges == [("base", "scaled"), ("scaled", "shown")]


def test_visualize_names_the_cell_whose_task_line_is_wrong(tmp_path):
    cells = ["%load_ext nbflow", "%%task a\nx = 1", "%%task b --retries -1\ny = x"]
    book = new_notebook(cells=[new_code_cell(c) for c in cells])
    nbformat.write(book, str(tmp_path / "wrong.ipynb"))
    out = nbflow("visualize", "wrong.ipynb", "-o", "d.svg", cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 2
    assert out.stderr.startswith(
        "nbflow: error: 'wrong.ipynb', cell 3: %%task b: expected --retries"
    )


def test_in_a_terminal_a_notebook_run_shows_its_tasks_live(tmp_path):
    path = _notebook(tmp_path)
    status, screen = in_terminal("run", path, cwd=tmp_path, env=cli_env(tmp_path))
    assert status == 1, screen
    assert "\x1b[31m" in screen  # failed is red (palette.TERMINAL)
    first_frame = screen[: screen.index("\x1b[1A")]  # before the first redraw
    for name in ("load", "square", "check", "total"):  # every task cell, from the start
        assert name in first_frame
    assert first_frame.count("pending") == 4
    assert "3/3" in screen
    assert "1 failed" in screen and "Failed tasks:" in screen


def test_refresh_recomputes_every_task_cell_once(tmp_path):
    path = _notebook(tmp_path)
    (tmp_path / "fixed").touch()
    env = cli_env(tmp_path)
    assert nbflow("run", path, cwd=tmp_path, env=env).returncode == 0
    everything = ["check", "load", "square", "square", "square", "total"]
    assert _executed(tmp_path) == everything
    assert nbflow("run", path, cwd=tmp_path, env=env).returncode == 0
    assert _executed(tmp_path) == []  # all cached
    out = nbflow("run", path, "--refresh", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "warning" not in out.stderr
    # Each cell once: a later cell reuses its upstream computed afresh in this kernel.
    assert _executed(tmp_path) == everything
    (run_id, _, state), *_ = latest_runs(tmp_path / ".nbflow")
    assert (state, task_states(tmp_path / ".nbflow", run_id)["total"]) == ("success", "success")


def test_retry_of_a_refreshed_notebook_run_recomputes_only_what_failed(tmp_path):
    path = _notebook(tmp_path)
    env = cli_env(tmp_path)
    assert nbflow("run", path, cwd=tmp_path, env=env).returncode == 1
    _executed(tmp_path)
    assert nbflow("run", path, "--refresh", cwd=tmp_path, env=env).returncode == 1
    assert _executed(tmp_path) == ["check", "load", "square", "square", "square"]
    (tmp_path / "fixed").touch()
    out = nbflow("retry", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _executed(tmp_path) == ["check", "total"]


PID_CELLS = [
    "%load_ext nbflow",
    "import json, os, pathlib\nkernel = os.getpid()",
    "%%task --lazy\nfirst = os.getpid()",
    "%%task --lazy\nsecond = (first, os.getpid())",
    "%flow run",
    "%%task\nthird = os.getpid()",
    "pathlib.Path('pids.json').write_text(json.dumps([kernel, *second, third]))",
]


@pytest.mark.parametrize(
    ("options", "elsewhere"), [(["--executor", "processes", "--jobs", "2"], True), ([], False)]
)
def test_executor_reaches_flow_run_and_task_cells_in_the_notebook(tmp_path, options, elsewhere):
    book = new_notebook(cells=[new_code_cell(c) for c in PID_CELLS])
    nbformat.write(book, str(tmp_path / "pids.ipynb"))
    out = nbflow("run", "pids.ipynb", *options, cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    kernel, first, second, third = json.loads((tmp_path / "pids.json").read_text())
    assert (first != kernel, second != kernel, third != kernel) == (elsewhere,) * 3
    executors = history_rows(tmp_path / ".nbflow", "SELECT executor FROM runs ORDER BY start")
    # Without options, %flow run uses threads (in the kernel) and a task cell its main thread.
    assert executors == ([("processes",)] * 2 if elsewhere else [("threads",), ("sequential",)])


def test_a_kernel_that_dies_ends_the_run_with_exit_1_naming_the_cell(tmp_path):
    cells = ["%load_ext nbflow", "%%task a\nx = 1", "import os\nos._exit(3)", "%%task b\ny = x"]
    book = new_notebook(cells=[new_code_cell(c) for c in cells])
    nbformat.write(book, str(tmp_path / "dies.ipynb"))
    out = nbflow("run", "dies.ipynb", cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 1
    assert out.stderr.strip().endswith(
        "nbflow: the kernel died while running cell 3 of 'dies.ipynb'; "
        "the cells after it did not run."
    )
    assert "1 success" in out.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_the_kernel_of_a_killed_command_dies_with_it_and_runs_nothing_more(tmp_path):
    # A kernel started through a wrapper (conda run, a shell script): ipykernel's own
    # watch of its parent then follows the wrapper, which outlives the command.
    spec = tmp_path / "jupyter" / "data" / "kernels" / "wrapped"
    spec.mkdir(parents=True)
    launch = f"{sys.executable} -m ipykernel_launcher -f {{connection_file}}; true"
    argv = ["/bin/sh", "-c", launch]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "wrapped", "language": "python"})
    )
    cells = [
        "%load_ext nbflow\nimport os, pathlib, time\n"
        "pathlib.Path('kernel.pid').write_text(str(os.getpid()))",
        "%%task slow\ntime.sleep(4)\npathlib.Path('late.txt').write_text('x')\nx = 1",
    ]
    book = new_notebook(cells=[new_code_cell(c) for c in cells])
    book.metadata["kernelspec"] = {"name": "wrapped", "display_name": "wrapped"}
    nbformat.write(book, str(tmp_path / "killed.ipynb"))
    proc = start("run", "killed.ipynb", cwd=tmp_path, env=cli_env(tmp_path))
    kernel = None
    try:
        wait_for(lambda: (tmp_path / "kernel.pid").exists(), what="the kernel's first cell")
        kernel = int((tmp_path / "kernel.pid").read_text())
        time.sleep(0.5)  # into the slow cell
        proc.kill()
        proc.communicate(timeout=30)
        wait_for(lambda: not pid_alive(kernel), timeout=10, what="the kernel to die")
        time.sleep(5)  # past the end of the slow cell, had the kernel gone on
        assert not (tmp_path / "late.txt").exists()
    finally:
        proc.kill()
        if kernel is not None and pid_alive(kernel):
            os.kill(kernel, 9)


def test_timeout_interrupts_the_notebook_and_exits_1(tmp_path):
    cells = [*SLOW_CELLS[:2], "%%task slow\ntime.sleep(60)\nx = 1", SLOW_CELLS[-1]]
    book = new_notebook(cells=[new_code_cell(c) for c in cells])
    nbformat.write(book, str(tmp_path / "slow.ipynb"))
    started = time.time()
    out = nbflow("run", "slow.ipynb", "--timeout", "3", cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 1
    assert time.time() - started < 40  # well before the cell's 60 s
    assert "stopped after --timeout 3s" in out.stderr
    assert "1 cancelled" in out.stdout
    assert not (tmp_path / "after.txt").exists()


def test_retry_of_a_notebook_run_made_in_jupyterlab_finds_the_notebook_beside_its_store(
    tmp_path,
):
    path = _notebook(tmp_path)
    env = cli_env(tmp_path)
    _execute_in_kernel(path, env, allow_errors=True)  # the history has no source for it
    assert _executed(tmp_path) == ["check", "load", "square", "square", "square"]
    (tmp_path / "fixed").touch()
    out = nbflow("retry", "--path", tmp_path, cwd=tmp_path.parent, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _executed(tmp_path) == ["check", "total"]


def test_retry_of_a_run_from_elsewhere_says_how_to_retry_it(tmp_path):
    code = (
        "from nbflow import Flow, task\n@task\ndef bad():\n    raise ValueError('no')\n"
        "with Flow('api') as flow:\n    bad()\nflow.run()\n"
    )
    env = cli_env(tmp_path)
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True)
    out = nbflow("retry", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert "of flow 'api' was not started by 'nbflow run'" in out.stderr
    assert "load_run(...).retry()" in out.stderr


def test_with_nbflow_home_the_kernel_and_the_command_share_that_store(tmp_path):
    path = _notebook(tmp_path)
    (tmp_path / "fixed").touch()
    home = tmp_path / "elsewhere"
    env = cli_env(tmp_path, home=home)
    out = nbflow("run", path, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "7 success" in out.stdout  # the command followed the runs recorded there
    assert not (tmp_path / ".nbflow").exists()
    assert {flow for _, flow, _ in latest_runs(home, 10)} == {"analysis"}
    assert nbflow("runs", cwd=tmp_path, env=env).stdout.count(" analysis ") >= 4


def test_a_notebook_asking_for_a_kernel_that_is_not_installed_is_a_usage_error(tmp_path):
    book = new_notebook(cells=[new_code_cell("%load_ext nbflow"), new_code_cell("%%task\nx = 1")])
    book.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "?", "language": "x"}
    nbformat.write(book, str(tmp_path / "k.ipynb"))
    out = nbflow("run", "k.ipynb", cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "nbflow: error: The notebook asks for the kernel 'no-such-kernel', which is not "
        "installed here. Install it, or change the notebook's kernel."
    )
