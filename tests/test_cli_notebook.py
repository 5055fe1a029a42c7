"""``nbflow run`` on notebooks: a real kernel (nbclient), the store beside the notebook.

These notebooks build and run flows in code cells (``@task`` and ``Flow``); each
flow run in the kernel is recorded in the history the command follows.
"""

import json
import os

import nbclient
import nbformat
import pytest
from clihelp import (
    CONTROL,
    cli_env,
    history_rows,
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

TASKS = """\
import os, pathlib, time
from nbflow import Flow, task

HERE = pathlib.Path.cwd()

def mark(name):
    with (HERE / "executed.log").open("a") as fh:
        fh.write(name + "\\n")

@task
def load(n):
    mark("load")
    return list(range(n))

@task
def square(x):
    mark("square")
    return x * x

@task
def check(xs):
    mark("check")
    if not (HERE / "fixed").exists():
        raise ValueError("input not fixed yet")
    return xs

@task
def total(xs):
    mark("total")
    (HERE / "total.txt").write_text(str(sum(xs)))
    return sum(xs)
"""

FLOW = """\
with Flow("analysis") as flow:
    rows = load(n)
    squares = square.map(rows)
    t = total(check(squares))
run = flow.run()
print(run.state.value, run.counts())
"""


def _notebook(folder, name="analysis.ipynb", extra=()):
    cells = [
        new_markdown_cell("# An analysis"),
        new_code_cell("n = 3", metadata={"tags": ["parameters"]}),
        new_code_cell(TASKS),
        new_code_cell(FLOW),
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


def _execute_in_kernel(path, env):
    """The notebook run as JupyterLab would: a kernel in its folder, no nbflow command."""
    book = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(book, kernel_name="python3", timeout=120)
    client.execute(cwd=str(path.parent), env=env)
    return book


def test_a_headless_run_fills_the_cache_that_a_kernel_then_hits_for_every_task(tmp_path):
    path = _notebook(tmp_path)
    (tmp_path / "fixed").touch()
    env = cli_env(tmp_path)
    out = nbflow("run", path, cwd=tmp_path.parent, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "notebook 'analysis.ipynb': 6 success" in out.stdout
    assert _executed(tmp_path) == ["check", "load", "square", "square", "square", "total"]
    home = tmp_path / ".nbflow"  # beside the notebook, not in the command's folder
    assert (home / "history.sqlite").exists() and not (tmp_path.parent / ".nbflow").exists()

    book = _execute_in_kernel(path, env)
    assert "success" in book.cells[3].outputs[0]["text"]
    assert _executed(tmp_path) == []  # nothing ran again
    (run_id, flow, _), *_ = latest_runs(home)
    states = task_states(home, run_id)
    assert flow == "analysis"
    assert set(states.values()) == {"cached"} and len(states) == 6


def test_a_kernel_run_fills_the_cache_that_a_headless_run_then_hits_for_every_task(tmp_path):
    path = _notebook(tmp_path)
    (tmp_path / "fixed").touch()
    env = cli_env(tmp_path)
    _execute_in_kernel(path, env)
    assert _executed(tmp_path) == ["check", "load", "square", "square", "square", "total"]

    out = nbflow("run", path.name, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "notebook 'analysis.ipynb': 6 cached in" in out.stdout
    assert _executed(tmp_path) == []
    assert (tmp_path / "total.txt").read_text() == "5"


def test_a_failing_task_gives_exit_1_and_retry_after_the_fix_recomputes_only_it(tmp_path):
    path = _notebook(tmp_path)
    env = cli_env(tmp_path)
    out = nbflow("run", path, "--param", "n=4", cwd=tmp_path, env=env)
    assert out.returncode == 1
    summary = out.stdout[out.stdout.index("Failed tasks:") :]
    assert "check failed:" in summary
    assert "ValueError: input not fixed yet" in summary
    assert "Did not run (upstream failed or cancelled): total" in summary
    assert "Other cells that raised" not in out.stdout  # the flow cell did not raise
    assert _executed(tmp_path) == ["check", "load"] + ["square"] * 4

    (tmp_path / "fixed").touch()
    again = nbflow("retry", "--path", tmp_path, cwd=tmp_path.parent, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _executed(tmp_path) == ["check", "total"]
    assert (tmp_path / "total.txt").read_text() == "14"  # n=4 again: 0 + 1 + 4 + 9
    source = history_rows(tmp_path / ".nbflow", "SELECT DISTINCT kind, path FROM run_sources")
    assert source == [("notebook", str(path))]


def test_parameters_are_injected_after_the_parameters_cell_and_output_is_signed(
    tmp_path, monkeypatch
):
    path = _notebook(tmp_path)
    (tmp_path / "fixed").touch()
    original = path.read_text()
    env = cli_env(tmp_path)
    out = nbflow("run", path, "--param", "n=5", "--output", "done.ipynb", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert path.read_text() == original  # the source notebook is not modified
    done = nbformat.read(str(tmp_path / "done.ipynb"), as_version=4)
    injected = done.cells[2]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert "n = 5" in injected.source
    assert done.cells[1].source == "n = 3"
    assert "success" in done.cells[4].outputs[0]["text"]
    assert (tmp_path / "total.txt").read_text() == "30"
    monkeypatch.setenv("JUPYTER_DATA_DIR", env["JUPYTER_DATA_DIR"])
    from nbformat.sign import NotebookNotary

    assert NotebookNotary().check_signature(done)


def test_a_notebook_without_a_parameters_cell_gets_its_parameters_first(tmp_path):
    book = new_notebook(cells=[new_code_cell(TASKS), new_code_cell("n = 2\n" + FLOW)])
    nbformat.write(book, str(tmp_path / "plain.ipynb"))
    (tmp_path / "fixed").touch()
    env = cli_env(tmp_path)
    out = nbflow(
        "run", "plain.ipynb", "--param", "flag='x'", "--output", "o.ipynb", cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr
    done = nbformat.read(str(tmp_path / "o.ipynb"), as_version=4)
    assert done.cells[0].source.splitlines()[-1] == "flag = 'x'"


def test_a_cell_that_raises_outside_any_task_is_named_and_gives_exit_1(tmp_path):
    path = _notebook(tmp_path, extra=[new_code_cell("print('report')"), new_code_cell("1 / 0")])
    (tmp_path / "fixed").touch()
    out = nbflow("run", path, cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 1
    assert "Cells that raised:\n  cell 6: ZeroDivisionError: division by zero" in out.stdout
    assert "6 success" in out.stdout  # the flow itself succeeded


def test_notebook_output_to_a_pipe_has_no_control_characters(tmp_path):
    path = _notebook(tmp_path)
    out = nbflow("run", path, cwd=tmp_path, env=cli_env(tmp_path, TERM="xterm-256color"))
    assert out.returncode == 1
    assert not CONTROL.search(out.stdout + out.stderr)
    events = [line.split()[1:3] for line in out.stdout.splitlines() if line[:2].isdigit()]
    assert ["failed", "check:"] in events and ["success", "square[2]"] in events


def test_executor_and_jobs_reach_the_runs_of_the_kernel(tmp_path):
    path = _notebook(tmp_path)
    (tmp_path / "fixed").touch()
    env = cli_env(tmp_path)
    out = nbflow(
        "run", path, "--executor", "processes", "--jobs", "2", "--refresh", cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (run_id, _, _), *_ = latest_runs(tmp_path / ".nbflow")
    rows = history_rows(tmp_path / ".nbflow", "SELECT executor FROM runs WHERE id = ?", (run_id,))
    assert rows == [("processes",)]
    everything = ["check", "load", "square", "square", "square", "total"]
    assert _executed(tmp_path) == everything
    assert nbflow("run", path, cwd=tmp_path, env=env).returncode == 0
    assert _executed(tmp_path) == []
    assert nbflow("run", path, "--refresh", cwd=tmp_path, env=env).returncode == 0
    assert _executed(tmp_path) == everything  # recomputed although cached


SLOW_CELLS = [
    new_code_cell(
        "import os, pathlib, time\nfrom nbflow import Flow, task\n"
        "pathlib.Path('kernel.pid').write_text(str(os.getpid()))"
    ),
    new_code_cell(
        "@task\ndef quick():\n    return 41\n\n"
        "@task\ndef slow(x):\n"
        "    pathlib.Path('slow.pid').write_text(str(os.getpid()))\n"
        "    time.sleep(120)\n    return x\n\n"
        "with Flow('sleepy') as flow:\n    slow(quick())\n"
        "run = flow.run(executor='processes')"
    ),
    new_code_cell("pathlib.Path('after.txt').write_text('ran')"),
]


def test_sigint_interrupts_the_kernel_cancels_the_run_and_keeps_finished_results(tmp_path):
    nbformat.write(new_notebook(cells=SLOW_CELLS), str(tmp_path / "sleepy.ipynb"))
    env = cli_env(tmp_path)
    proc = start("run", "sleepy.ipynb", cwd=tmp_path, env=env)
    wait_for((tmp_path / "slow.pid").exists, timeout=90, what="the slow task to start")
    kernel, worker = (int((tmp_path / f).read_text()) for f in ("kernel.pid", "slow.pid"))

    status, out, err = interrupt(proc, timeout=90)
    assert status == 130, out + err
    assert "interrupting the kernel" in out
    assert "notebook 'sleepy.ipynb' (interrupted): 1 cancelled, 1 success" in out
    assert not (tmp_path / "after.txt").exists()  # no cell ran after the interrupt
    wait_for(lambda: not pid_alive(worker), timeout=20, what="the worker to be terminated")
    wait_for(lambda: not pid_alive(kernel), timeout=20, what="the kernel to shut down")
    home = tmp_path / ".nbflow"
    (run_id, _, state), *_ = latest_runs(home)
    assert state == "cancelled"
    assert task_states(home, run_id) == {"quick": "success", "slow": "cancelled"}
    info = nbflow("cache", "info", cwd=tmp_path, env=env)
    assert info.stdout.splitlines()[2:] == ["quick  1"]


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


def test_a_notebook_target_does_not_take_a_flow_name(tmp_path):
    path = _notebook(tmp_path)
    out = nbflow("run", f"{path}:analysis", cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 2
    assert "No such file" in out.stderr or "applies to Python files only" in out.stderr
    assert os.path.exists(path)
