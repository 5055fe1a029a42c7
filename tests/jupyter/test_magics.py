"""%%task cells and %flow commands in a real IPython shell (in process)."""

import pathlib
import traceback

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

import nbflow
from nbflow.engine.archive import load_run, runs
from nbflow.jupyter import magics as nbmagics


def get_ipython():
    # globalipapp starts its shell once; later calls return None.
    return globalipapp.get_ipython() or InteractiveShell.instance()


@pytest.fixture
def ip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NBFLOW_NOTEBOOK", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    shell = get_ipython()
    shell.user_ns["tmp"] = str(tmp_path)
    magics = nbmagics.load(shell)
    shell.nbflow = magics
    yield shell
    nbmagics.unload(shell)
    for name in list(shell.user_ns):
        if not name.startswith("_") and name not in ("In", "Out", "get_ipython", "exit", "quit"):
            shell.user_ns.pop(name, None)


def run(ip, source):
    with capture_output() as out:
        result = ip.run_cell(source)
    return result, out


def restart(ip):
    """A new kernel: a fresh namespace and a fresh set of magics (same store)."""
    for name in list(ip.user_ns):
        if not name.startswith("_") and name not in (
            "In",
            "Out",
            "get_ipython",
            "exit",
            "quit",
            "tmp",
        ):
            ip.user_ns.pop(name, None)
    ip.nbflow = nbmagics.load(ip)


COUNT = (
    "import pathlib\n"
    "def bump(name):\n"
    "    p = pathlib.Path(tmp) / name\n"
    "    p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1))\n"
)


def count(ip, name):

    p = pathlib.Path(ip.user_ns["tmp"]) / name
    return int(p.read_text()) if p.exists() else 0


def test_load_ext_registers_the_magics(tmp_path):
    shell = get_ipython()
    nbflow.load_ipython_extension(shell)
    assert "task" in shell.magics_manager.magics["cell"]
    assert "flow" in shell.magics_manager.magics["line"]
    with pytest.raises(TypeError, match=r"need an IPython shell.*%load_ext nbflow"):
        nbflow.load_ipython_extension(object())
    hooks = len(shell.events.callbacks["pre_run_cell"])
    nbflow.load_ipython_extension(shell)  # %reload_ext: the old hook goes
    assert len(shell.events.callbacks["pre_run_cell"]) == hooks
    nbflow.unload_ipython_extension(shell)
    assert len(shell.events.callbacks["pre_run_cell"]) == hooks - 1


def test_a_task_cell_runs_now_publishes_its_outputs_and_shows_a_status_line(ip):
    ip.user_ns["k"] = 10
    result, out = run(ip, "%%task\nx = 2 * k\nprint('x is', x)")
    assert result.success
    assert ip.user_ns["x"] == 20
    assert "x is 20" in out.stdout
    status = [o.data["text/plain"] for o in out.outputs]
    assert any(s.startswith("✓ x: success, 1 attempt") for s in status)
    _, out = run(ip, "%%task\ny = x + 1")
    final = out.outputs[-1].data["text/plain"]
    assert final.startswith("✓ y: success") and "x:" not in final  # reused upstream: quiet


def test_rerunning_an_unchanged_cell_is_a_cache_hit_that_replays_stdout_and_displays(ip):
    run(ip, COUNT)
    cell = "%%task\nbump('a')\nrows = [1, 2, 3]\nprint('made', len(rows))\ndisplay({'n': 3})\nrows"
    first, _ = run(ip, cell)
    second, out2 = run(ip, cell)
    assert first.success and second.success
    assert count(ip, "a") == 1  # the second run did not execute the cell
    assert "made 3" in out2.stdout
    shown = [o.data["text/plain"] for o in out2.outputs]
    assert "{'n': 3}" in shown and "[1, 2, 3]" in shown
    assert any("rows: cached" in s for s in shown)


def test_comments_formatting_and_run_options_do_not_invalidate_a_cell(ip):
    run(ip, COUNT)
    run(ip, "%%task --lazy\nbump('a')\nv = 1")
    run(ip, "%%task\nbump('a')\nv = 1")
    run(ip, "%%task\n# a comment\nbump( 'a' )\n\nv = 1")
    run(ip, "%%task --retries 3 --timeout 60\nbump('a')\nv = 1")
    assert count(ip, "a") == 1
    run(ip, "%%task --map k=[1]\nbump('a')\nv = 1")
    assert count(ip, "a") == 2  # mapping changes what the cell computes


def test_an_upstream_output_is_an_edge_and_a_stale_upstream_runs_first(ip):
    run(ip, COUNT)
    run(ip, "%%task\nbump('base')\nbase = 2")
    run(ip, "%%task\nbump('double')\ndouble = base * 2")
    assert ip.user_ns["double"] == 4
    ip.user_ns["base"] = 100  # a plain assignment does not change the task's output
    run(ip, "%%task\nbump('double')\ndouble = base * 2")
    assert ip.user_ns["double"] == 4 and count(ip, "double") == 1
    # Redefining the upstream lazily makes it stale: running the downstream runs it first.
    run(ip, "%%task --lazy\nbump('base')\nbase = 3")
    run(ip, "%%task\nbump('double')\ndouble = base * 2")
    assert ip.user_ns["double"] == 6
    assert (count(ip, "base"), count(ip, "double")) == (2, 2)


def test_editing_a_helper_or_constant_invalidates_the_cell_and_everything_downstream(ip):
    run(ip, COUNT)
    run(ip, "SCALE = 2\ndef helper(v):\n    return v * SCALE")
    run(ip, "%%task\nbump('a')\na = helper(1)")
    run(ip, "%%task\nbump('b')\nb = a + 1")
    assert ip.user_ns["b"] == 3
    run(ip, "SCALE = 2\ndef helper(v):\n    return v * SCALE + 10")
    run(ip, "%%task\nbump('b')\nb = a + 1")
    assert ip.user_ns["b"] == 13 and (count(ip, "a"), count(ip, "b")) == (2, 2)
    run(ip, "SCALE = 5")
    run(ip, "%%task\nbump('b')\nb = a + 1")
    assert ip.user_ns["b"] == 16 and (count(ip, "a"), count(ip, "b")) == (3, 3)


def test_a_failing_cell_raises_with_a_traceback_of_its_own_lines_and_keeps_earlier_results(ip):
    run(ip, "%%task\nok = 1")
    result, _ = run(ip, "%%task --retries 1\nbad = ok + 1\nraise ValueError(f'bad is {bad}')")
    error = result.error_in_exec
    assert isinstance(error, ValueError) and str(error) == "bad is 2"
    frames = traceback.extract_tb(error.__traceback__)
    cell_frames = [f for f in frames if f.line and "raise ValueError" in f.line]
    assert cell_frames and cell_frames[-1].lineno == 3  # line 1 is the %%task line
    package = str(pathlib.Path(nbflow.__file__).parent)
    inside = [f for f in frames if f.filename.startswith(package) and "magics" not in f.filename]
    assert not inside  # no frames of nbflow's engine: the user's lines only
    assert frames[-1].filename.startswith("<nbflow-cell ")
    assert ip.user_ns["ok"] == 1 and "bad" not in ip.user_ns
    assert ip.nbflow.notebook.status["bad"].state.value == "failed"
    assert ip.nbflow.notebook.status["bad"].task_run.attempts == 2


def test_a_cell_needing_a_failed_unchanged_upstream_ends_upstream_failed_without_rerunning_it(ip):
    run(ip, COUNT)
    run(ip, "%%task\nbump('up')\nup = 1 / 0")
    result, _ = run(ip, "%%task\ndown = up + 1")
    assert isinstance(result.error_in_exec, nbflow.errors.UpstreamFailedError)
    message = str(result.error_in_exec)
    assert "cell 'up' failed earlier" in message and "%flow retry" in message
    assert count(ip, "up") == 1
    assert ip.nbflow.notebook.status["down"].state.value == "upstream_failed"
    latest = load_run("latest")
    assert latest.flow_name == "notebook" and latest["down"].state.value == "upstream_failed"
    # The stand-in for the failed cell shows the user's error, not nbflow's frames.
    shown = latest["up"].traceback
    assert "ZeroDivisionError" in shown and "up = 1 / 0" in shown
    assert "_failed_earlier" not in shown
    # Fixing the upstream cell runs it again, and then the downstream works.
    run(ip, "%%task\nbump('up')\nup = 1")
    result, _ = run(ip, "%%task\ndown = up + 1")
    assert result.success and ip.user_ns["down"] == 2 and count(ip, "up") == 2


def test_a_cell_is_a_cache_hit_after_a_kernel_restart(ip):
    run(ip, COUNT)
    run(ip, "%%task\nbump('a')\nprint('computing')\ndata = list(range(5))")
    restart(ip)
    run(ip, COUNT)
    result, out = run(ip, "%%task\nbump('a')\nprint('computing')\ndata = list(range(5))")
    assert result.success and ip.user_ns["data"] == [0, 1, 2, 3, 4]
    assert count(ip, "a") == 1 and "computing" in out.stdout


def test_flow_retry_after_a_restart_rebuilds_failed_cells_from_the_store(ip):
    run(ip, COUNT)
    run(ip, "BROKEN = True")
    run(ip, "%%task\nbump('src')\nsrc = 5")
    run(ip, "%%task\nbump('mid')\nif BROKEN:\n    raise RuntimeError('flaky')\nmid = src * 2")
    run(ip, "%%task\nend = mid + 1")
    restart(ip)
    run(ip, COUNT)
    ip.user_ns["BROKEN"] = False
    result, out = run(ip, "%flow retry")
    assert result.success, out.stdout
    assert ip.user_ns["end"] == 11
    assert (count(ip, "src"), count(ip, "mid")) == (1, 2)


def test_flow_retry_after_a_restart_uses_recorded_results_when_their_inputs_are_gone(ip):
    run(ip, COUNT)
    run(ip, "BASE = 7\nREADY = False")
    run(ip, "%%task\nbump('src')\nsrc = BASE * 2")
    run(ip, "%%task\nif not READY:\n    raise RuntimeError('not ready')\nout = src + 1")
    restart(ip)
    run(ip, COUNT)
    ip.user_ns["READY"] = True  # BASE is not defined in this kernel
    result, out = run(ip, "%flow retry")
    assert result.success, out.stdout
    assert ip.user_ns["out"] == 15 and count(ip, "src") == 1


def test_a_background_run_returns_at_once_and_publishes_outputs_when_it_ends(ip):
    run(ip, "%%task --lazy\nimport time\ntime.sleep(1.0)\nslow = 'done'")
    result, _ = run(ip, "%flow run --background")
    assert result.success and "slow" not in ip.user_ns
    run_handle = ip.nbflow.notebook.last_run
    assert run_handle.wait(30) and run_handle.ok
    deadline = __import__("time").monotonic() + 10
    while "slow" not in ip.user_ns and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.01)
    assert ip.user_ns["slow"] == "done"


def test_editing_a_cell_so_it_defines_other_names_replaces_its_old_definition(ip):
    with capture_output():
        assert ip.run_cell("%%task\nfirst = 1", cell_id="cell-1").success
        assert ip.run_cell("%%task\nsecond = 2", cell_id="cell-1").success
        # Without the cell id the old definition would still claim 'first'.
        assert ip.run_cell("%%task\nfirst = 3", cell_id="cell-2").success
    assert sorted(ip.nbflow.notebook.cells) == ["first", "second"]
    with capture_output():
        result = ip.run_cell("%%task second\nthird = 3", cell_id="cell-3")
    assert "Another cell already defines task 'second'" in str(result.error_in_exec)


def test_flow_retry_in_the_same_kernel_reruns_only_failed_cells_and_their_downstream(ip):
    run(ip, COUNT)
    run(ip, "FAIL_NOW = True")
    run(ip, "%%task\nbump('a')\na = 1")
    run(ip, "%%task --lazy\nbump('b')\nif FAIL_NOW:\n    raise OSError('down')\nb = a + 1")
    run(ip, "%%task --lazy\nbump('c')\nc = b + 1")
    result, _ = run(ip, "%flow run --executor threads")
    assert isinstance(result.error_in_exec, OSError)
    ip.user_ns["FAIL_NOW"] = False
    result, _ = run(ip, "%flow retry --executor sequential")
    assert result.success
    assert ip.user_ns["c"] == 3
    assert (count(ip, "a"), count(ip, "b"), count(ip, "c")) == (1, 2, 1)
    result, out = run(ip, "%flow retry")
    assert "Nothing to retry" in out.outputs[0].data["text/plain"]


def test_map_runs_the_cell_once_per_element_and_each_output_becomes_a_list(ip):
    run(ip, "%%task\nitems = [1, 2, 3]")
    result, _ = run(ip, "%%task --map x=items\nsquare = x * x\nlabel = f'#{x}'")
    assert result.success
    assert ip.user_ns["square"] == [1, 4, 9] and ip.user_ns["label"] == ["#1", "#2", "#3"]
    run(ip, "%%task --map word='ab'\nupper = word.upper()")
    assert ip.user_ns["upper"] == ["A", "B"]
    run(ip, "%%task --map i=range(len(items))\nshifted = items[i] + 10")
    assert ip.user_ns["shifted"] == [11, 12, 13]
    run(ip, "%%task\ntotal = sum(square)")
    assert ip.user_ns["total"] == 14


def test_after_adds_an_ordering_edge_between_cells(ip):
    run(ip, "%%task setup --lazy\nimport os")
    run(ip, "%%task --after setup --lazy\nreport = 1")
    flow, nodes = ip.nbflow.notebook.build(["report"])
    assert flow.upstream(nodes["report"]) == (nodes["setup"],)


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (["%%task --retires 2\nx = 1"], r"unknown option '--retires'. Did you mean '--retries'"),
        (["%%task --map x\ny = x"], r"--map expects VAR=ITERABLE"),
        (["%%task --after nothing\ny = 1"], r"--after names 'nothing', which is not a task cell"),
        (
            ["%%task a\nqa = 1", "%%task b --after a\nqb = 1", "%%task a --after b\nqa = 1"],
            r"cycle: .*a.*b",
        ),
        (["%%task --trigger sometimes\nz = 1"], r"unknown trigger 'sometimes'"),
        (["%%task --retries -1\nz = 1"], r"--retries to be an int >= 0"),
        (["%%task --timeout inf\nz = 1"], r"--timeout to be a finite number of seconds"),
        (["%%task --timeout 1e400\nz = 1"], r"--timeout to be a finite number of seconds"),
        (["%flow runn"], r"unknown command 'runn'. Did you mean 'run'"),
        (["%flow run --executor gpus"], r"invalid choice"),
        (["%%task\nfrom os import *"], r"import the names you use"),
    ],
)
def test_usage_errors_say_what_to_write_instead(ip, cells, message):
    for source in cells[:-1]:
        assert run(ip, source)[0].success
    result, _ = run(ip, cells[-1])
    assert type(result.error_in_exec).__name__ == "UsageError"
    assert __import__("re").search(message, str(result.error_in_exec)), str(result.error_in_exec)


@pytest.mark.parametrize("executor", ["threads", "processes", "sequential", "dask"])
def test_flow_run_runs_every_cell_as_one_recorded_flow(ip, executor):
    run(ip, "%%task --lazy\nbase = 3")
    run(ip, "%%task --lazy\nleft = base + 1")
    run(ip, "%%task --lazy\nright = base * 2")
    run(ip, "%%task --lazy\nboth = left + right")
    result, out = run(ip, f"%flow run --executor {executor} --jobs 2")
    assert result.success, out.stdout
    assert ip.user_ns["both"] == 10
    latest = load_run("latest")
    assert latest.flow_name == "notebook"
    assert runs()["executor"].iloc[0] == executor
    assert sorted(t.name for t in latest.task_runs) == ["base", "both", "left", "right"]
    assert latest.ok
    assert latest.retry().ok  # the notebook's flow is registered under its name


def test_flow_run_with_names_runs_those_cells_and_their_upstream_only(ip):
    run(ip, "%%task --lazy\nroot = 1")
    run(ip, "%%task --lazy\nleaf = root + 1")
    run(ip, "%%task --lazy\nother = 5")
    result, _ = run(ip, "%flow run leaf")
    assert result.success and ip.user_ns["leaf"] == 2 and "other" not in ip.user_ns
    result, _ = run(ip, "%flow run lief")
    assert "no task cell 'lief'. Did you mean 'leaf'" in str(result.error_in_exec)


def test_flow_run_param_sets_the_variable_and_changes_cache_keys(ip):
    run(ip, COUNT)
    run(ip, "n = 2")
    run(ip, "%%task\nbump('grid')\ngrid = list(range(n))")
    run(ip, "%flow run --param n=4")
    assert ip.user_ns["n"] == 4 and ip.user_ns["grid"] == [0, 1, 2, 3]
    run(ip, "%flow run --param n=4")
    assert count(ip, "grid") == 2
    run(ip, "%flow run --param n=word")
    assert ip.user_ns["n"] == "word" and count(ip, "grid") == 3  # ran: range('word') failed
    assert ip.nbflow.notebook.status["grid"].state.value == "failed"


def test_the_processes_executor_names_an_input_that_cannot_travel(ip):
    run(ip, "import threading\nguard = threading.Lock()")
    run(ip, "%%task --lazy --no-cache\nheld = guard.locked()")
    result, _ = run(ip, "%flow run --executor processes")
    assert "input 'guard'" in str(result.error_in_exec)
    assert "--executor threads" in str(result.error_in_exec)


def test_an_error_in_a_worker_process_keeps_the_workers_traceback(ip):
    run(ip, "%%task --lazy\ndef inner():\n    raise KeyError('missing')\nval = inner()")
    result, _ = run(ip, "%flow run --executor processes")
    assert isinstance(result.error_in_exec, KeyError)
    notes = "".join(getattr(result.error_in_exec, "__notes__", []))
    assert "Traceback in the worker process" in notes and "inner" in notes


def test_an_unhashable_input_is_not_cached_and_the_warning_names_it(ip):
    run(ip, "import threading\nguard = threading.Lock()")
    with pytest.warns(nbflow.store.cache.CacheWarning, match=r"Cell 'held' .* input 'guard'"):
        result, _ = run(ip, "%%task\nheld = guard.locked()")
    assert result.success and ip.user_ns["held"] is False


def test_a_cell_rejected_when_it_first_runs_is_not_left_defined(ip):
    from nbflow.store.cellstore import open_cells

    assert run(ip, "%%task a\nx = 1")[0].success
    result, _ = run(ip, "%%task m --map v=undefined_thing\ny = v")
    assert type(result.error_in_exec).__name__ == "UsageError"
    assert str(result.error_in_exec).endswith(
        "NameError: name 'undefined_thing' is not defined. "
        "Cell 'm' was not defined; fix it and run it again."
    )
    assert list(ip.run_line_magic("flow", "list")["task"]) == ["a"]
    result, _ = run(ip, "%flow run")
    assert result.success, str(result.error_in_exec)
    # A cell redefined badly keeps its earlier definition, in the kernel and the store.
    result, _ = run(ip, "%%task a --map v=undefined_thing\nx = v")
    assert type(result.error_in_exec).__name__ == "UsageError"
    assert ip.nbflow.notebook.cells["a"].options.map_var is None
    stored = open_cells(ip.nbflow.notebook.store_home()).load("notebook")
    assert [(c.name, c.options["map_var"]) for c in stored] == [("a", None)]
    assert run(ip, "%flow run")[0].success
    # After a restart, %flow retry does not bring the rejected cell back.
    restart(ip)
    assert run(ip, "%flow retry")[0].success
    assert list(ip.nbflow.notebook.cells) == ["a"]


def test_a_lazy_cell_that_cannot_run_says_how_to_fix_or_forget_it(ip):
    run(ip, "%%task m --map v=undefined_thing --lazy\ny = v")
    result, _ = run(ip, "%flow run")
    assert str(result.error_in_exec).endswith(
        "Fix cell 'm' and run it again, or forget it with %flow clear m."
    )
    run(ip, "%flow clear m")
    assert run(ip, "%%task a\nx = 1")[0].success and run(ip, "%flow run")[0].success


def test_flow_list_status_runs_show_and_clear(ip):
    run(ip, "LIMIT = 3")
    run(ip, "%%task\nvalues = list(range(LIMIT))")
    run(ip, "%%task --retries 2\ncapped = values[:2]")
    table = ip.run_line_magic("flow", "list")
    assert list(table["task"]) == ["values", "capped"]
    assert table.set_index("task").loc["capped", "upstream"] == "values"
    assert table.set_index("task").loc["values", "notebook inputs"] == "LIMIT"
    assert table.set_index("task").loc["capped", "options"] == "retries=2"
    status = ip.run_line_magic("flow", "status")
    assert set(status["task"]) == {"values", "capped"}
    assert list(status.columns[:2]) == ["state", "name"]
    import pandas as pd

    with pd.option_context("display.width", 80, "display.max_columns", None):
        first_line = status.to_string().splitlines()[0]
    assert first_line.split()[:2] == ["state", "name"]
    history = ip.run_line_magic("flow", "runs")
    assert len(history) == 2 and set(history["flow"]) == {"notebook"}
    drawing = ip.run_line_magic("flow", "show")
    # the latest states: values was reused from the cache by capped's run
    assert drawing.states == {"values": "cached", "capped": "success"}
    assert ">values</text>" in drawing.html  # the edge carries the cell's result
    run(ip, "%flow clear capped --cache")
    assert list(ip.run_line_magic("flow", "list")["task"]) == ["values"]
    result, _ = run(ip, "%flow clear vals")
    assert "no task cell 'vals'. Did you mean 'values'" in str(result.error_in_exec)
    run(ip, "%flow clear --cache")
    assert ip.run_line_magic("flow", "list").empty
    assert nbflow.cache_info()["entries"] == 0


def test_flow_clear_cache_before_the_names_clears_the_results_of_those_cells_only(ip):
    run(ip, "%%task\nvalues = [1, 2, 3]")
    run(ip, "%%task\ncapped = values[:2]")
    assert nbflow.cache_info()["per_task"] == {"values": 1, "capped": 1}
    result, out = run(ip, "%flow clear --cache capped")
    assert result.success, str(result.error_in_exec)
    assert [o.data["text/plain"] for o in out.outputs] == ["Forgot 1 task cell(s) and their cache"]
    assert nbflow.cache_info()["per_task"] == {"values": 1}
    assert list(ip.run_line_magic("flow", "list")["task"]) == ["values"]
    result, _ = run(ip, "%flow run --jobs 1 values")
    assert result.success, str(result.error_in_exec)


def test_the_flow_is_named_after_the_notebook(ip, monkeypatch):
    from nbflow.cells.notebook import flow_name

    assert flow_name() == "notebook"
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/analysis.ipynb")
    assert flow_name() == "analysis"
    monkeypatch.setenv("NBFLOW_NOTEBOOK", "/srv/nb/report.ipynb")
    assert flow_name() == "report"


def test_a_timeout_ends_the_cell_timed_out(ip):
    result, _ = run(ip, "%%task --timeout 0.2\nimport time\ntime.sleep(5)\nslow = 1")
    assert ip.nbflow.notebook.status["slow"].state.value == "timed_out"
    assert "timed out" in str(result.error_in_exec).lower() or "0.2" in str(result.error_in_exec)


def test_definitions_are_kept_in_the_store(ip):
    run(ip, "%%task load --retries 2\nrows = [1]")
    from nbflow.store.cellstore import open_cells

    stored = open_cells(nbflow.store.cache.open_store().path).load("notebook")
    assert [(c.name, c.options["retries"]) for c in stored] == [("load", 2)]
    assert "rows = [1]" in stored[0].source
    assert len(runs()) == 1


def test_ipython_syntax_inside_a_task_cell_works_and_keeps_line_numbers(ip):
    result, _ = run(
        ip, "%%task\nlisting = !echo hello\nfound = listing[0]\nraise ValueError(found)"
    )
    assert isinstance(result.error_in_exec, ValueError) and str(result.error_in_exec) == "hello"
    frames = traceback.extract_tb(result.error_in_exec.__traceback__)
    assert frames[-1].lineno == 4


def test_a_large_result_is_written_to_its_own_file_and_read_back(ip):
    run(ip, "import numpy as np")
    run(ip, "%%task\nbig = np.arange(200_000)")
    restart(ip)
    run(ip, "import numpy as np")
    result, out = run(ip, "%%task\nbig = np.arange(200_000)")
    assert result.success and "big: cached" in out.outputs[-1].data["text/plain"]
    assert int(ip.user_ns["big"].sum()) == sum(range(200_000))
    files = [
        p for p in nbflow.store.cache.open_store().path.rglob("*.val") if p.stat().st_size > 10**6
    ]
    assert files  # the array went to a file of its own, not into the SQLite row


def test_a_cell_with_trigger_all_finished_runs_after_a_failure_and_sees_the_error(ip):
    run(ip, "%%task --lazy\nfetched = int('not a number')")
    run(ip, "%%task --lazy --trigger all_finished\nreport = f'fetch gave {fetched!r}'")
    result, _ = run(ip, "%flow run --executor sequential")
    assert isinstance(result.error_in_exec, ValueError)
    assert ip.user_ns["report"].startswith("fetch gave ValueError(")
    assert ip.nbflow.notebook.status["report"].state.value == "success"


def test_task_cells_run_in_the_main_thread_unless_the_environment_names_an_executor(
    ip, monkeypatch
):
    monkeypatch.delenv("NBFLOW_EXECUTOR", raising=False)
    run(ip, "import threading")
    run(ip, "%%task here\nhere = threading.current_thread() is threading.main_thread()")
    assert ip.user_ns["here"] is True
    assert runs()["executor"][0] == "sequential"
    monkeypatch.setenv("NBFLOW_EXECUTOR", "threads")
    run(ip, "%%task there\nthere = threading.current_thread() is threading.main_thread()")
    assert ip.user_ns["there"] is False
    assert runs()["executor"][0] == "threads"


def test_flow_run_takes_the_executor_and_refresh_of_the_environment_unless_given(ip, monkeypatch):
    run(ip, COUNT)
    run(ip, "%%task --lazy\nbump('first')\nfirst = 1")
    run(ip, "%%task --lazy\nbump('second')\nsecond = first + 1")
    monkeypatch.setenv("NBFLOW_EXECUTOR", "sequential")
    assert run(ip, "%flow run")[0].success
    assert runs()["executor"][0] == "sequential"
    assert run(ip, "%flow run --executor threads")[0].success
    assert runs()["executor"][0] == "threads"
    assert (count(ip, "first"), count(ip, "second")) == (1, 1)  # the second run reused both
    monkeypatch.setenv("NBFLOW_REFRESH", "1")
    assert run(ip, "%flow run")[0].success
    # A refresh from the environment recomputes from the disk cache's point of view,
    # but what this kernel computed stands: nothing ran twice in this "kernel".
    assert (count(ip, "first"), count(ip, "second")) == (1, 1)
    assert run(ip, "%flow run --refresh")[0].success  # asked for here: everything again
    assert (count(ip, "first"), count(ip, "second")) == (2, 2)


def cells(ip, *sources):
    """Run cells as a notebook front end does, each with its own cell id."""
    results = []
    for i, source in enumerate(sources):
        with capture_output() as out:
            result = ip.run_cell(source, cell_id=f"cell-{i}")
        assert result.success, (source, result.error_in_exec, out.stdout)
        results.append(out)
    return results


def test_a_name_rebound_by_a_later_cell_is_read_from_the_nearest_cell_above(ip):
    cells(
        ip,
        "%%task\ntuned = [1, 2]",
        "%%task\nfirst = sum(tuned)",
        "%%task\ntuned = [10, 20]",
        "%%task\nsecond = sum(tuned)",
    )
    assert (ip.user_ns["first"], ip.user_ns["second"]) == (3, 30)
    nb = ip.nbflow.notebook
    assert nb.upstream_of(nb.cells["first"]) == ["tuned"]
    assert nb.upstream_of(nb.cells["second"]) == ["cell 3"]
    # The whole notebook as one flow: each cell still reads the version above it.
    result, out = run(ip, "%flow run --refresh")
    assert result.success, out.stdout
    assert (ip.user_ns["first"], ip.user_ns["second"]) == (3, 30)


def test_underscore_names_are_private_so_two_plotting_cells_both_bind_them(ip):
    cells(
        ip,
        "%%task\n_, axes = 'figure', ['a1']\nfor ax in axes:\n    pass",
        "%%task\n_, axes = 'figure', ['b1', 'b2']\nfor ax in axes:\n    pass",
        "%%task\nn = len(axes)\nlast = _",
    )
    nb = ip.nbflow.notebook
    assert list(nb.cells) == ["axes", "cell 2", "n"]
    assert ip.user_ns["n"] == 2 and nb.upstream_of(nb.cells["n"]) == ["cell 2"]
    assert "_" not in nb.exports(nb.cells["axes"])


def test_without_cell_ids_a_cell_with_the_same_first_output_replaces_the_old_one(ip):
    run(ip, "%%task\ny = 1")
    run(ip, "%%task other\ny = 2")
    run(ip, "%%task\nz = y + 1")
    assert ip.user_ns["z"] == 3
    run(ip, "%%task\ny = 5")  # an edit of the first cell, which 'other' (below) rebinds
    assert list(ip.nbflow.notebook.cells) == ["y", "other", "z"]


def test_a_model_fitted_in_place_is_a_new_version_for_the_cells_below(ip):
    run(ip, COUNT)
    setup = (
        "class Model:\n"
        "    def __init__(self):\n        self.coef = None\n"
        "    def fit(self, k):\n        self.coef = k\n        return self\n"
        "    def predict(self, x):\n"
        "        if self.coef is None:\n            raise ValueError('not fitted')\n"
        "        return self.coef * x"
    )
    run(ip, setup)
    outs = cells(
        ip,
        "%%task\nmodel = Model()\nK = 2",
        "%%task\nbump('fit')\nmodel.fit(K)",
        "%%task\npredicted = model.predict(10)",
    )
    assert ip.user_ns["predicted"] == 20
    nb = ip.nbflow.notebook
    assert nb.upstream_of(nb.cells["predicted"]) == ["cell 2"]
    assert nb.cells["model"] and "fit" not in outs[1].stdout
    # The unfitted version stays unfitted: the fitting cell works on a copy.
    with capture_output():
        assert ip.run_cell("%%task\nmodel = Model()\nK = 3", cell_id="cell-0").success
        result = ip.run_cell("%%task\npredicted = model.predict(10)", cell_id="cell-2")
    assert result.success and ip.user_ns["predicted"] == 30 and count(ip, "fit") == 2
    # A cosmetic edit of the predicting cell is a cache hit on the fitted model.
    with capture_output():
        result = ip.run_cell("%%task\npredicted = model.predict( 10 )  # same", cell_id="cell-2")
    assert result.success and ip.user_ns["predicted"] == 30 and count(ip, "fit") == 2


@pytest.mark.parametrize(
    ("make", "change", "read", "expected"),
    [
        ("rows = [1, 2]", "rows.append(3)", "n = len(rows)", 3),
        (
            "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})",
            "df['c'] = df['a'] * 10",
            "n = int(df['c'].sum())",
            30,
        ),
        (
            "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': [3, 4]})",
            "df.drop(columns=['b'], inplace=True)",
            "n = len(df.columns)",
            1,
        ),
        (
            "import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
            "fig, ax = plt.subplots()",
            "ax.plot([1, 2, 3])",
            "n = len(fig.axes[0].lines) + len(ax.lines)",
            2,
        ),
        ("counts = {'a': 1}", "del counts['a']", "n = len(counts)", 0),
        ("total = [1]", "total += [2]", "n = len(total)", 2),
    ],
)
def test_common_in_place_changes_reach_the_cells_below_and_leave_the_version_above(
    ip, make, change, read, expected
):
    cells(ip, f"%%task\n{make}", f"%%task\n{change}", f"%%task\n{read}")
    assert ip.user_ns["n"] == expected
    # Running the changing cell again changes the version above once more, not twice.
    with capture_output():
        assert ip.run_cell(f"%%task\n{change}\n", cell_id="cell-1").success
        assert ip.run_cell(f"%%task --no-cache\n{read}", cell_id="cell-2").success
    assert ip.user_ns["n"] == expected


def test_a_cell_that_only_prints_or_plots_is_a_task_named_after_its_place(ip):
    run(ip, COUNT)
    outs = cells(ip, "%%task\nvalue = 4", "%%task\nbump('p')\nprint('value is', value)")
    assert "value is 4" in outs[1].stdout
    nb = ip.nbflow.notebook
    assert list(nb.cells) == ["value", "cell 2"]
    assert any("cell 2: success" in o.data["text/plain"] for o in outs[1].outputs)
    with capture_output() as out:
        assert ip.run_cell("%%task\nbump('p')\nprint('value is', value)", cell_id="cell-1").success
    assert "value is 4" in out.stdout and count(ip, "p") == 1
    assert load_run("latest")["cell 2"].state.value == "cached"
    run(ip, "%%task report\nprint('done')")
    assert "report" in nb.cells


def test_after_a_restart_running_one_unchanged_cell_takes_its_upstream_from_the_cache(ip):
    run(ip, COUNT)
    sources = (
        "%%task\nbump('data')\ndata = list(range(10))",
        "%%task\nbump('clf')\nclf = {'mean': sum(data) / len(data)}",
        "%%task\nbump('score')\nscore = clf['mean'] * 2",
    )
    cells(ip, *sources)
    restart(ip)
    run(ip, COUNT)
    with capture_output():
        result = ip.run_cell(sources[2].replace("* 2", "* 3"), cell_id="cell-2")
    assert result.success, result.error_in_exec
    assert ip.user_ns["score"] == 13.5
    assert (count(ip, "data"), count(ip, "clf"), count(ip, "score")) == (1, 1, 2)
    # A stale upstream (edited in the store's kernel) runs first.
    restart(ip)
    run(ip, COUNT)
    with capture_output():
        assert ip.run_cell(sources[0].replace("10", "4"), cell_id="cell-0").success
        assert ip.run_cell(sources[2].replace("* 2", "* 3"), cell_id="cell-2").success
    assert ip.user_ns["score"] == 4.5 and count(ip, "clf") == 2


def test_a_builtin_name_bound_by_a_cell_above_is_an_edge(ip):
    cells(ip, "%%task\nfilter = {'min': 3}\nmax = 10", "%%task\nlimit = (filter['min'], max)")
    assert ip.user_ns["limit"] == (3, 10)
    nb = ip.nbflow.notebook
    assert nb.upstream_of(nb.cells["limit"]) == ["filter"]
    with capture_output():
        ip.run_cell("%%task\nfilter = {'min': 4}\nmax = 10", cell_id="cell-0")
        ip.run_cell("%%task\nlimit = (filter['min'], max)", cell_id="cell-1")
    assert ip.user_ns["limit"] == (4, 10)
    for name in ("filter", "max", "limit"):
        ip.user_ns.pop(name, None)


def test_a_class_reads_the_cells_names_in_order_and_its_methods_when_called(ip):
    cells(
        ip,
        "%%task\nx = 5\nfactor = 2",
        "%%task\nclass F:\n    x = x\n    def scaled(self):\n        return self.x * factor\n"
        "value = F().scaled()",
    )
    nb = ip.nbflow.notebook
    assert ip.user_ns["value"] == 10
    assert set(nb.cells["F"].analysis.inputs) == {"x", "factor"}


def test_without_a_cell_id_the_saved_notebook_tells_cells_binding_the_same_name_apart(
    ip, tmp_path, monkeypatch
):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    sources = ["%%task\nrate = 1", "%%task\nlow = rate * 10", "%%task\nrate = 2"]
    book = new_notebook(cells=[new_code_cell(s) for s in sources])
    nbformat.write(book, tmp_path / "book.ipynb")
    monkeypatch.setenv("NBFLOW_NOTEBOOK", str(tmp_path / "book.ipynb"))
    for source in sources:
        assert run(ip, source)[0].success
    nb = ip.nbflow.notebook
    assert list(nb.cells) == ["rate", "low", "cell 3"]
    assert nb.cell_ids == {c.id: n for c, n in zip(book.cells, nb.cells, strict=True)}
    assert ip.user_ns["low"] == 10 and ip.user_ns["rate"] == 2


def test_an_input_changed_in_place_that_cannot_be_copied_is_shared_with_a_warning(ip):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cells(ip, "%%task\nimport threading\nguard = threading.Lock()", "%%task\nguard.acquire()")
    texts = [str(w.message) for w in caught]
    assert any("cannot copy a lock" in t and "Rebind instead" in t for t in texts), texts
    assert ip.user_ns["guard"].locked()


def test_an_input_passed_to_a_notebook_function_is_a_new_version_but_not_to_a_librarys(ip):
    run(ip, "def train(model):\n    model['fitted'] = True\nfrom json import dumps")
    cells(
        ip,
        "%%task\nmodel = {'fitted': False}",
        "%%task\ntrain(model)",
        "%%task\nfitted = model['fitted']",
        "%%task\ntext = dumps(model)",
    )
    nb = ip.nbflow.notebook
    assert ip.user_ns["fitted"] is True
    assert nb.upstream_of(nb.cells["fitted"]) == ["cell 2"]
    assert nb.exports(nb.cells["text"]) == ("text",)  # json.dumps changes nothing
    # A new kernel without train(): the same versions (decided when the cells were
    # defined), and the cached version above the training cell is still untrained.
    restart(ip)
    with capture_output():
        result = ip.run_cell("%%task\nagain = model['fitted']", cell_id="cell-9")
    assert result.success and ip.user_ns["again"] is True
    from nbflow.store.base import open_store

    key = ip.nbflow.notebook.recorded_keys()["model"]
    assert open_store(str(ip.nbflow.notebook.store_home())).get(key).values == {
        "model": {"fitted": False}
    }


def test_a_new_kernel_without_the_notebooks_imports_sees_the_same_versions(ip):
    run(ip, "import math")
    cells(ip, "%%task\nvals = [1.5]", "%%task\nr = math.floor(vals[0])")
    assert ip.nbflow.notebook.exports(ip.nbflow.notebook.cells["r"]) == ("r",)
    restart(ip)  # math is not imported in this kernel: the stored decision holds
    with capture_output():
        ip.run_cell("%%task --lazy\nlater = 1", cell_id="cell-9")
    nb = ip.nbflow.notebook
    assert nb.exports(nb.cells["r"]) == ("r",) and nb.cells["r"].changes == ()


def test_a_library_model_made_in_a_plain_cell_is_changed_by_fit_but_its_function_is_not(ip):
    run(ip, "from fractions import Fraction\nfrom json import dumps\nclass Box(list):\n    pass")
    run(ip, "box = Box()")  # an instance: its methods may change it
    cells(ip, "%%task\nbox.append(Fraction(1, 2))", "%%task\ntext = dumps(len(box))")
    nb = ip.nbflow.notebook
    assert nb.exports(nb.cells["cell 1"]) == ("box",)
    assert nb.exports(nb.cells["text"]) == ("text",) and ip.user_ns["text"] == "1"


def test_a_cell_deleted_from_the_saved_notebook_is_not_restored_after_a_restart(
    ip, tmp_path, monkeypatch
):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    sources = ["%%task\nx = 1", "%%task\nx = 2", "%%task\ny = x * 10"]
    book = new_notebook(cells=[new_code_cell(s) for s in sources])
    nbformat.write(book, tmp_path / "book.ipynb")
    monkeypatch.setenv("NBFLOW_NOTEBOOK", str(tmp_path / "book.ipynb"))
    restart(ip)  # a kernel started for this notebook
    for source in sources:
        assert run(ip, source)[0].success
    assert ip.user_ns["y"] == 20
    del book.cells[1]
    nbformat.write(book, tmp_path / "book.ipynb")
    restart(ip)
    result, _ = run(ip, sources[2])
    assert result.success and ip.user_ns["y"] == 10
    assert list(ip.nbflow.notebook.cells) == ["x", "y"]


def test_a_no_cache_cell_runs_again_whenever_it_is_run(ip):
    run(ip, "%%task --no-cache\nimport random\nr = random.random()")
    first = ip.user_ns["r"]
    run(ip, "%%task --no-cache\nimport random\nr = random.random()")
    second = ip.user_ns["r"]
    run(ip, "%flow run")
    assert len({first, second, ip.user_ns["r"]}) == 3


# -- cell analysis through real cells: each of these gave a stale or wrong value ------
def test_an_annotation_in_a_nested_function_is_read_when_the_outer_function_runs(ip):
    run(ip, "%%task\nunit = int")
    cell = (
        "%%task\ndef make():\n    def f(v: unit) -> None:\n        return v\n    return f\n"
        "kind = make().__annotations__['v']"
    )
    run(ip, cell)
    assert ip.user_ns["kind"] is int
    run(ip, "%%task --lazy\nunit = str")  # redefined, not run: stale
    result, _ = run(ip, cell)
    assert result.success and ip.user_ns["kind"] is str
    assert ip.nbflow.notebook.upstream_of(ip.nbflow.notebook.cells["make"]) == ["unit"]


def test_a_function_declaring_a_global_sees_what_the_cell_binds_in_this_run(ip):
    under = "def under(v):\n    global limit\n    return v < limit\nok = under(3)"
    run(ip, "%%task\nlimit = 5\n" + under)
    assert ip.user_ns["ok"] is True
    run(ip, "%%task\nlimit = 2\n" + under)
    assert ip.user_ns["ok"] is False and ip.user_ns["limit"] == 2
    # A global the function binds is the cell's output, read by the cells below.
    run(ip, "%%task\ncounter = 10")
    bump = "%%task\ndef bump():\n    global counter\n    counter += 1\nbump()\nafter = counter"
    result, _ = run(ip, bump)
    assert result.success and ip.user_ns["after"] == 11 and ip.user_ns["counter"] == 11
    run(ip, "%%task\nseen = counter")
    assert ip.user_ns["seen"] == 11
    # Run again unchanged: a cache hit, the same value (the cell above keeps its 10).
    result, out = run(ip, bump)
    assert result.success and ip.user_ns["after"] == 11
    assert "cached" in out.outputs[-1].data["text/plain"]
    # A top-level global statement changes nothing, as at the top of a notebook.
    result, _ = run(ip, "%%task\nglobal counter\nnext_one = counter + 1")
    assert result.success and ip.user_ns["next_one"] == 12


def test_a_dotted_key_in_a_match_mapping_pattern_is_an_input(ip):
    run(ip, "%%task\nimport types\nkeys = types.SimpleNamespace(name='a')")
    cell = (
        "%%task\nmatch {'a': 1, 'b': 2}:\n    case {keys.name: v}:\n        found = v\n"
        "    case _:\n        found = None"
    )
    run(ip, cell)
    assert ip.user_ns["found"] == 1
    run(ip, "%%task --lazy\nimport types\nkeys = types.SimpleNamespace(name='b')")
    result, _ = run(ip, cell)
    assert result.success and ip.user_ns["found"] == 2


def test_a_time_magic_in_a_task_cell_binds_in_the_cell_and_reads_its_inputs(ip):
    run(ip, "%%task\nbase = 4")
    cell = (
        "%%task\n%time y = base * 10\nz = y + 1\nt = %time base + 1\n"
        "%timeit -n 1 -r 1 base\n%time z * 2"
    )
    result, out = run(ip, cell)
    assert result.success, result.error_in_exec
    assert (ip.user_ns["y"], ip.user_ns["z"], ip.user_ns["t"]) == (40, 41, 5)
    assert "Wall time" in out.stdout
    assert "82" in [o.data["text/plain"] for o in out.outputs]  # the last line's value
    run(ip, "%%task --lazy\nbase = 5")  # stale: the %time cell runs it first
    result, _ = run(ip, cell)
    assert result.success and (ip.user_ns["y"], ip.user_ns["z"], ip.user_ns["t"]) == (50, 51, 6)
    assert ip.nbflow.notebook.upstream_of(ip.nbflow.notebook.cells["y"]) == ["base"]


def test_names_read_only_in_a_method_body_are_read_when_it_runs(ip):
    run(ip, COUNT)
    cell = (
        "%%task\nbump('c')\nclass Scaler:\n    def apply(self, v):\n        return v * factor\n"
        "factor = 3\nscaled = Scaler().apply(2)"
    )
    run(ip, cell)
    ip.user_ns["factor"] = 100  # the notebook's factor is not the cell's input
    result, _ = run(ip, cell)
    assert result.success and ip.user_ns["scaled"] == 6 and count(ip, "c") == 1


def test_a_failing_cells_traceback_shows_the_users_lines_first_not_the_magic_call(ip):
    run(ip, "%%task\nok = 1")
    _, out = run(ip, "%%task\nbad = ok + 1\nraise ValueError(f'bad is {bad}')")
    shown = out.stdout
    assert "run_cell_magic" not in shown
    first = shown.index("Cell In[")
    assert "raise ValueError(f'bad is {bad}')" in shown[first:] and "ValueError: bad is 2" in shown
    assert shown[first:].splitlines()[0].endswith("line 3, in bad(ok)")
    # nbflow's own errors too: from the cell's first line.
    _, out = run(ip, "%%task\ndown = bad + 1")
    assert "run_cell_magic" not in out.stdout and "UpstreamFailedError" in out.stdout
    assert "down = bad + 1" in out.stdout
    # A cell failing in %flow run: its lines, not the %flow line.
    _, out = run(ip, "%flow run")
    assert "run_line_magic" not in out.stdout and "ValueError: bad is 2" in out.stdout


def test_a_cache_hit_shows_its_own_time_and_what_computing_the_cell_took(ip):
    cell = "%%task\nimport time\ntime.sleep(0.3)\nslept = 1"
    run(ip, cell)
    _, out = run(ip, cell)
    line = out.outputs[-1].data["text/plain"]
    assert line.startswith("◆ slept: cached") and "computed in " in line
    hit, computed = line.split(", ")[1], line.rsplit("computed in ", 1)[1]
    assert float(hit.rstrip("s")) < 0.3 <= float(computed.rstrip("s"))
    frame = ip.run_line_magic("flow", "status")
    row = frame[frame["name"] == "slept"].iloc[0]
    assert row["cached"] and row["duration"] < 0.3 <= row["computed"]
    # After a restart the time comes with the result from the store.
    restart(ip)
    _, out = run(ip, cell)
    assert "computed in 0.3" in out.outputs[-1].data["text/plain"]
