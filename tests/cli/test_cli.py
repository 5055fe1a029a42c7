"""``nbflow`` on Python files: the real console script in a subprocess, a real store."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from clihelp import (
    CONTROL,
    NBFLOW,
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

FLOWS = textwrap.dedent(
    """
    import os, pathlib, time
    from nbflow import Flow, Parameter, task

    HERE = pathlib.Path(__file__).parent

    def mark(name):
        with (HERE / "executed.log").open("a") as fh:
            fh.write(name + "\\n")

    @task
    def first(n):
        mark("first")
        return n

    @task
    def second(x):
        mark("second")
        if not (HERE / "fixed").exists():
            raise ValueError("input not fixed yet")
        return x + 1

    @task
    def third(x):
        mark("third")
        (HERE / "answer.txt").write_text(str(x * 10))
        return x * 10

    @task
    def side(x):
        mark("side")
        return -x

    @task
    def inc(x):
        mark("inc")
        return x + 1

    with Flow("etl") as flow:
        n = Parameter("n", default=1)
        a = first(n)
        c = third(second(a))
        s = side(a)
        xs = inc.map([1, 2, 3])
    """
)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "flows.py").write_text(FLOWS)
    return tmp_path


def _executed(folder):
    log = folder / "executed.log"
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return sorted(lines)


def test_a_python_files_flow_runs_fills_the_cache_and_is_recorded(project):
    (project / "fixed").touch()
    out = nbflow("run", "flows.py", "--param", "n=4", cwd=project, env=cli_env(project))
    assert out.returncode == 0, out.stderr
    assert (project / "answer.txt").read_text() == "50"  # (4 + 1) * 10
    assert "run " in out.stdout and "of flow 'etl': 8 success" in out.stdout
    (run_id, flow, state), *_ = latest_runs(project / ".nbflow")
    assert (flow, state) == ("etl", "success")
    assert task_states(project / ".nbflow", run_id)["third"] == "success"
    source = history_rows(project / ".nbflow", "SELECT kind, path FROM run_sources")
    assert source == [("python", str(project / "flows.py"))]

    again = nbflow("run", "flows.py", "--param", "n=4", cwd=project, env=cli_env(project))
    assert again.returncode == 0
    assert "7 cached, 1 success" in again.stdout  # only the parameter itself runs
    assert _executed(project) == ["first", "inc", "inc", "inc", "second", "side", "third"]


def test_a_failing_task_exits_1_and_the_summary_shows_the_end_of_its_error(project):
    out = nbflow("run", "flows.py", cwd=project, env=cli_env(project))
    assert out.returncode == 1, out.stderr
    summary = out.stdout[out.stdout.index("Failed tasks:") :]
    assert "second failed:" in summary
    assert 'raise ValueError("input not fixed yet")' in summary
    assert "ValueError: input not fixed yet" in summary
    assert "Did not run (upstream failed or cancelled): third" in summary


def test_retry_after_fixing_the_input_recomputes_only_the_failed_task(project):
    env = cli_env(project)
    assert nbflow("run", "flows.py", "--param", "n=2", cwd=project, env=env).returncode == 1
    assert _executed(project) == ["first", "inc", "inc", "inc", "second", "side"]
    (project / "fixed").touch()

    out = nbflow("retry", cwd=project, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert _executed(project) == ["second", "third"]  # the failed task and its downstream
    assert (project / "answer.txt").read_text() == "30"  # the run's parameter n=2 again
    (run_id, _, state), (failed_id, _, _) = latest_runs(project / ".nbflow", 2)
    assert state == "success"
    states = task_states(project / ".nbflow", run_id)
    assert states["first"] == states["side"] == "cached"
    assert states["second"] == states["third"] == "success"

    again = nbflow("retry", failed_id[:-2], cwd=project, env=env)  # a unique prefix
    assert again.returncode == 0
    assert _executed(project) == []  # everything is cached now


def test_retry_of_a_run_that_succeeded_does_nothing(project):
    (project / "fixed").touch()
    env = cli_env(project)
    assert nbflow("run", "flows.py", cwd=project, env=env).returncode == 0
    _executed(project)
    out = nbflow("retry", "latest", cwd=project, env=env)
    assert out.returncode == 0
    assert "succeeded; nothing to retry" in out.stdout
    assert _executed(project) == []


SLOW = textwrap.dedent(
    """
    import os, pathlib, time
    from nbflow import Flow, task

    HERE = pathlib.Path(__file__).parent

    @task
    def quick():
        return 41

    @task
    def slow(x):
        (HERE / "slow.pid").write_text(str(os.getpid()))
        time.sleep(120)
        return x

    with Flow("sleepy") as flow:
        slow(quick())
    """
)


def test_sigint_cancels_the_run_kills_process_tasks_and_keeps_finished_results(tmp_path):
    (tmp_path / "sleepy.py").write_text(SLOW)
    env = cli_env(tmp_path)
    proc = start("run", "sleepy.py", "--executor", "processes", cwd=tmp_path, env=env)
    pid_file = tmp_path / "slow.pid"
    wait_for(pid_file.exists, what="the slow task to start")
    worker = int(pid_file.read_text())

    status, out, _ = interrupt(proc)
    assert status == 130
    assert "(interrupted): 1 cancelled, 1 success" in out
    wait_for(lambda: not pid_alive(worker), timeout=20, what="the worker to be terminated")
    home = tmp_path / ".nbflow"
    (run_id, _, state), *_ = latest_runs(home)
    assert state == "cancelled"
    assert task_states(home, run_id) == {"quick": "success", "slow": "cancelled"}
    info = nbflow("cache", "info", cwd=tmp_path, env=env)
    assert info.stdout.splitlines()[2:] == ["quick  1"]  # the finished result, kept


def test_ctrl_c_in_a_terminal_reaches_the_workers_too_and_still_cancels_the_run(tmp_path):
    # A terminal sends SIGINT to the whole foreground process group, workers included.
    (tmp_path / "sleepy.py").write_text(SLOW)
    proc = subprocess.Popen(
        [str(NBFLOW), "run", "sleepy.py", "--executor", "processes", "--jobs", "2"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for((tmp_path / "slow.pid").exists, what="the slow task to start")
    worker = int((tmp_path / "slow.pid").read_text())
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "1 cancelled, 1 success" in out  # not a task failed by its own KeyboardInterrupt
    wait_for(lambda: not pid_alive(worker), timeout=20, what="the worker to be terminated")
    (run_id, _, state), *_ = latest_runs(tmp_path / ".nbflow")
    assert state == "cancelled"
    assert task_states(tmp_path / ".nbflow", run_id)["slow"] == "cancelled"


def test_timeout_stops_the_run_and_exits_1(tmp_path):
    (tmp_path / "sleepy.py").write_text(SLOW.replace("time.sleep(120)", "time.sleep(30)"))
    out = nbflow("run", "sleepy.py", "--timeout", "1", cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 1
    assert "stopping the run: --timeout 1s reached" in out.stdout
    assert "stopped after --timeout 1s" in out.stderr
    assert "1 cancelled, 1 success" in out.stdout


def test_output_to_a_pipe_is_one_plain_line_per_event_without_control_characters(project):
    out = nbflow("run", "flows.py", cwd=project, env=cli_env(project, TERM="xterm-256color"))
    assert out.returncode == 1
    assert not CONTROL.search(out.stdout + out.stderr)
    events = [line.split()[1:3] for line in out.stdout.splitlines() if line[:2].isdigit()]
    assert ["failed", "second:"] in events
    assert ["success", "inc[2]"] in events
    assert ["upstream_failed", "third:"] in events


def test_in_a_terminal_the_live_view_is_a_table_coloured_by_state(project):
    (project / "fixed").touch()
    status, screen = in_terminal("run", "flows.py", cwd=project, env=cli_env(project))
    assert status == 0, screen
    assert "\x1b[" in screen  # colours and cursor movement
    assert "\x1b[32m" in screen  # success is green (palette.TERMINAL)
    for name in ("first", "second", "third", "inc"):
        assert name in screen
    assert "3/3" in screen  # the mapped task is one row with its children done
    assert "8 success" in screen
    first_frame = screen[: screen.index("\x1b[1A")]  # before the first redraw
    assert all(name in first_frame for name in ("first", "second", "third", "side", "inc"))


def test_a_file_with_several_flows_needs_a_name_and_the_error_lists_them(tmp_path):
    (tmp_path / "two.py").write_text(
        textwrap.dedent(
            """
            from nbflow import Flow, task

            @task
            def one():
                return 1

            with Flow("alpha") as a:
                one()
            with Flow("beta") as b:
                one()
            """
        )
    )
    env = cli_env(tmp_path)
    out = nbflow("run", "two.py", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "nbflow: error: 'two.py' defines several flows ('alpha', 'beta'); choose one, "
        "e.g. nbflow run two.py:alpha"
    )
    chosen = nbflow("run", "two.py:beta", cwd=tmp_path, env=env)
    assert chosen.returncode == 0
    assert "of flow 'beta': 1 success" in chosen.stdout
    by_variable = nbflow("run", "two.py:a", cwd=tmp_path, env=env)
    assert "of flow 'alpha': 1 cached" in by_variable.stdout  # same task, same key


def test_a_file_whose_import_raises_exits_1_with_its_traceback(tmp_path):
    (tmp_path / "broken.py").write_text("import nbflow\nraise RuntimeError('bad module')\n")
    out = nbflow("run", "broken.py", cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 1
    assert "importing" in out.stderr and "RuntimeError: bad module" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.py"], "No such file: 'missing.py'"),
        (["run", "notes.txt"], "'notes.txt' is neither a notebook (.ipynb) nor a Python file"),
        (["run", "flows.py", "--param", "n"], "Expected --param NAME=VALUE"),
        (["run", "flows.py", "--param", "2x=1"], "Expected --param NAME=VALUE"),
        (["run", "flows.py", "--param", "m=1"], "Flow 'etl' has no parameter 'm'"),
        (["run", "flows.py:nope"], "'flows.py' defines no flow named 'nope'. Its flows: 'etl'"),
        (["run", "flows.py", "--output", "x.ipynb"], "--output writes an executed notebook"),
        (["run", "flows.py", "--jobs", "0"], "argument --jobs: expected a whole number >= 1"),
        (["run", "flows.py", "--executor", "gpu"], "argument --executor: invalid choice"),
        (["run", "flows.py", "--timeout", "-3"], "expected a number of seconds > 0"),
        (["run"], "the following arguments are required: PATH"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["show", "20991231-nope"], "No run '20991231-nope' in the history"),
        (["retry", "20991231-nope"], "No run '20991231-nope' in the history"),
        (["runs", "--path", "elsewhere"], "--path 'elsewhere' is not a directory"),
        (["cache", "clear", "--older-than", "soon"], "Expected an age like 7d"),
        (["cache", "info", "--task", "first"], "--task and --older-than apply to"),
        (["visualize", "flows.py", "-o", "dag.gif"], "-o must end with .svg, .png"),
    ],
)
def test_usage_errors_are_one_line_on_stderr_and_exit_2(project, args, message):
    (project / "fixed").touch()
    (project / "notes.txt").write_text("hello")
    env = cli_env(project)
    assert nbflow("run", "flows.py", cwd=project, env=env).returncode == 0  # a history exists
    out = nbflow(*args, cwd=project, env=env)
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("nbflow: error: ")
    assert message in lines[0]


def test_commands_that_read_the_history_say_where_they_looked_when_there_is_none(tmp_path):
    out = nbflow("runs", cwd=tmp_path, env=cli_env(tmp_path))
    assert out.returncode == 2
    assert out.stderr.startswith(f"nbflow: error: There is no nbflow run history in '{tmp_path}")
    assert "--path DIR" in out.stderr


def test_runs_lists_past_runs_and_show_gives_tasks_logs_and_errors(project):
    env = cli_env(project)
    assert nbflow("run", "flows.py", cwd=project, env=env).returncode == 1
    (project / "fixed").touch()
    assert nbflow("retry", cwd=project, env=env).returncode == 0
    (newest, _, _), (older, _, _) = latest_runs(project / ".nbflow", 2)

    table = nbflow("runs", "--path", project, cwd=project.parent, env=env)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["run", "flow", "state", "start", "duration", "tasks", "failed"]
    assert lines[1].split()[:3] == [newest, "etl", "success"]
    assert lines[2].split()[:3] == [older, "etl", "failed"]
    assert lines[2].split()[-2:] == ["8", "2"]  # 8 tasks, 2 failed (second, third)

    shown = nbflow("show", older, cwd=project, env=env)
    assert shown.returncode == 0
    assert f"run {older} of flow 'etl': failed" in shown.stdout
    assert f"from python '{project / 'flows.py'}'" in shown.stdout
    rows = {line.split()[0]: line.split()[1] for line in shown.stdout.splitlines() if line}
    assert rows["second"] == "failed" and rows["third"] == "upstream_failed"
    assert rows["inc[1]"] == "success"
    assert "── second: failed after 1 attempt(s) ──" in shown.stdout
    assert 'raise ValueError("input not fixed yet")' in shown.stdout
    assert "third: upstream_failed:" in shown.stdout


def test_cache_info_counts_results_per_task_and_clear_removes_them(project):
    (project / "fixed").touch()
    env = cli_env(project)
    assert nbflow("run", "flows.py", cwd=project, env=env).returncode == 0
    info = nbflow("cache", "info", cwd=project, env=env)
    assert info.returncode == 0
    assert ": 7 results," in info.stdout
    counts = dict(line.split() for line in info.stdout.splitlines()[2:])
    assert counts == {"first": "1", "inc": "3", "second": "1", "side": "1", "third": "1"}

    none_old = nbflow("cache", "clear", "--older-than", "7d", cwd=project, env=env)
    assert none_old.stdout.startswith("removed 0 cached results older than 7d")
    one_task = nbflow("cache", "clear", "--task", "inc", cwd=project, env=env)
    assert one_task.stdout.startswith("removed 3 cached results of task 'inc'")
    everything = nbflow("cache", "clear", "--path", project, cwd=project.parent, env=env)
    assert everything.stdout.startswith("removed 4 cached results")
    assert ": 0 results," in nbflow("cache", "info", cwd=project, env=env).stdout


def test_visualize_draws_the_flow_as_svg_and_png(project):
    env = cli_env(project)
    out = nbflow("visualize", "flows.py", "-o", "dag.svg", cwd=project, env=env)
    assert out.returncode == 0, out.stderr
    svg = (project / "dag.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for name in ("first", "second", "third", "side", "inc"):
        assert f">{name}<" in svg or f">{name}\n" in svg or name in svg
    out = nbflow("visualize", "flows.py:etl", "-o", "dag.png", cwd=project, env=env)
    assert out.returncode == 0
    assert (project / "dag.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_dash_m_nbflow_is_the_same_command(project):
    out = subprocess.run(
        [sys.executable, "-m", "nbflow", "run", "flows.py"],
        cwd=project,
        env=cli_env(project),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "second failed:" in out.stdout
    help_text = subprocess.run(
        [sys.executable, "-m", "nbflow", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("run", "retry", "runs", "show", "cache", "visualize"):
        assert command in help_text.stdout


def test_help_loads_no_heavy_library_so_the_command_starts_fast():
    code = (
        "import contextlib, io, json, sys\n"
        "from nbflow.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "heavy = ['pandas', 'joblib', 'IPython', 'rich', 'nbclient', 'nbformat',\n"
        "         'jupyter_client', 'diskcache', 'graphviz', 'numpy', 'sqlite3']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


DASK_FLOW = """
from nbflow import Flow, task

@task
def square(x):
    print("squaring", x)
    return x * x

@task
def total(xs):
    return sum(xs)

with Flow("on-dask") as flow:
    t = total(square.map(range(5)))
"""


def test_executor_dask_runs_a_files_flow_on_a_local_cluster_and_exits_cleanly(tmp_path):
    (tmp_path / "flows.py").write_text(DASK_FLOW)
    env = cli_env(tmp_path)
    out = nbflow("run", "flows.py", "--executor", "dask", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "of flow 'on-dask': 6 success" in out.stdout
    # the cluster is closed at exit without errors from Dask's callback threads
    assert "Traceback" not in out.stderr and "ERROR" not in out.stderr, out.stderr
    again = nbflow("run", "flows.py", "--executor", "dask", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "6 cached" in again.stdout


def test_show_gives_a_cached_tasks_hit_time_and_what_computing_it_took(tmp_path):
    (tmp_path / "slow.py").write_text(
        "import time\nfrom nbflow import Flow, task\n\n"
        "@task\ndef slow():\n    time.sleep(0.4)\n    return 1\n\n"
        "with Flow('slowflow') as flow:\n    slow()\n"
    )
    env = cli_env(tmp_path)
    assert nbflow("run", "slow.py", cwd=tmp_path, env=env).returncode == 0
    assert nbflow("run", "slow.py", cwd=tmp_path, env=env).returncode == 0
    shown = nbflow("show", "latest", cwd=tmp_path, env=env).stdout
    row = next(line.split(None, 4) for line in shown.splitlines() if line.startswith("slow "))
    _, state, attempts, duration, cached = row
    assert (state, attempts) == ("cached", "0")
    assert float(duration.rstrip("s")) < 0.4  # the hit's own time
    assert cached.startswith("yes, computed in ")
    assert 0.4 <= float(cached.split()[-1].rstrip("s")) < 5
