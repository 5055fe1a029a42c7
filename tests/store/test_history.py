"""Run history: recorded as it happens, read back in new processes, retried."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import nbflow
from nbflow import Flow, State, task
from nbflow.errors import RunError

FLOW_MODULE = textwrap.dedent(
    """
    import os, pathlib, time
    from nbflow import Flow, task

    LOG = pathlib.Path(os.environ["EXEC_LOG"])

    def mark(name):
        with LOG.open("a") as fh:
            fh.write(name + "\\n")

    @task
    def first():
        mark("first")
        return 1

    @task
    def second(x):
        mark("second")
        if os.environ.get("SLOW_SECOND"):
            time.sleep(60)
        if not pathlib.Path(os.environ["FIXED"]).exists():
            raise ValueError("input not fixed yet")
        return x + 1

    @task
    def third(x):
        mark("third")
        return x * 10

    @task
    def side(x):
        mark("side")
        return -x

    with Flow("history-demo") as flow:
        a = first()
        b = second(a)
        c = third(b)
        s = side(a)
    """
)


def _script(tmp_path, body):
    (tmp_path / "histflow.py").write_text(FLOW_MODULE)
    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent(body))
    return script


def _env(tmp_path, home, **extra):
    env = dict(os.environ, NBFLOW_HOME=str(home), EXEC_LOG=str(tmp_path / "log"))
    env["FIXED"] = str(tmp_path / "fixed")
    env["PYTHONPATH"] = str(tmp_path)
    env.update(extra)
    return env


def _executed(tmp_path):
    log = tmp_path / "log"
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return sorted(lines)


def test_a_failed_run_is_retried_from_the_history_in_a_new_process(tmp_path, _private_store):
    run_script = _script(
        tmp_path,
        """
        import histflow
        run = histflow.flow.run()
        print(run.state.value)
        """,
    )
    env = _env(tmp_path, _private_store)
    out = subprocess.run([sys.executable, run_script], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["failed"], out.stderr
    assert _executed(tmp_path) == ["first", "second", "side"]

    (tmp_path / "fixed").touch()
    retry_script = tmp_path / "retry.py"
    retry_script.write_text(
        textwrap.dedent(
            """
            import histflow, nbflow
            past = nbflow.load_run("latest")
            print(past["second"].state.value, past["third"].state.value)
            run = past.retry()
            print(run.state.value, run.result(histflow.c))
            print(run["first"].state.value, run["side"].state.value)
            """
        )
    )
    out = subprocess.run([sys.executable, retry_script], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["failed", "upstream_failed", "success", "20", "cached", "cached"]
    assert _executed(tmp_path) == ["second", "third"]


def test_runs_lists_past_runs_newest_first_with_counts(_private_store):
    @task
    def ok():
        return 1

    @task
    def bad(x):
        raise RuntimeError("no")

    with Flow("listed") as flow:
        bad(ok())
    first = flow.run(executor="sequential")
    second = flow.run(executor="sequential")
    table = nbflow.runs()
    assert list(table["id"][:2]) == [second.id, first.id]
    assert list(table["flow"][:2]) == ["listed", "listed"]
    assert list(table["state"][:2]) == ["failed", "failed"]
    assert int(table["failed"].iloc[0]) == 1
    assert int(table["tasks"].iloc[0]) == 2


def test_a_loaded_run_has_the_recorded_errors_logs_and_attempts(_private_store):
    @task(retries=1)
    def noisy():
        print("about to fail")
        raise KeyError("missing")

    with Flow("loaded") as flow:
        noisy()
    run = flow.run(executor="sequential")
    past = nbflow.load_run(run.id[:12])
    record = past["noisy"]
    assert record.state is State.FAILED
    assert record.attempts == 2
    assert "KeyError" in str(record.error)
    assert "missing" in record.traceback
    assert [log.message for log in record.logs] == ["about to fail", "about to fail"]
    assert [a.number for a in record.history] == [1, 2]
    assert past.failed[0].name == "noisy"


def test_a_run_killed_mid_flow_is_interrupted_and_retry_runs_only_what_did_not_finish(
    tmp_path, _private_store
):
    (tmp_path / "fixed").touch()
    script = _script(
        tmp_path,
        """
        import histflow
        histflow.flow.run(executor="sequential")
        """,
    )
    env = _env(tmp_path, _private_store, SLOW_SECOND="1")
    proc = subprocess.Popen([sys.executable, script], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log = tmp_path / "log"
        if log.exists() and "second" in log.read_text():
            break
        time.sleep(0.05)
    time.sleep(0.3)  # let the history writer record 'first' (it batches, within ms)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _executed(tmp_path) == ["first", "second"]

    retry = tmp_path / "retry.py"
    retry.write_text(
        textwrap.dedent(
            """
            import histflow, nbflow
            past = nbflow.load_run("latest")
            print(past.state.value, past.interrupted)
            run = past.retry(executor="sequential")
            print(run.state.value, run["first"].state.value)
            """
        )
    )
    out = subprocess.run(
        [sys.executable, retry], env=_env(tmp_path, _private_store), capture_output=True, text=True
    )
    assert out.stdout.split() == ["cancelled", "True", "success", "cached"], out.stderr
    assert _executed(tmp_path) == ["second", "side", "third"]


def test_retry_needs_the_flow_defined_in_this_process(tmp_path, _private_store):
    script = _script(tmp_path, "import histflow\nhistflow.flow.run()\n")
    subprocess.run([sys.executable, script], env=_env(tmp_path, _private_store), check=True)
    past = nbflow.load_run("latest")
    with pytest.raises(RunError, match="No flow named 'history-demo' is defined in this process"):
        past.retry()


def test_an_unknown_run_id_says_where_to_look(_private_store):
    @task
    def one():
        return 1

    with Flow("some") as flow:
        one()
    flow.run()
    with pytest.raises(RunError, match="No run 'nope' in the history"):
        nbflow.load_run("nope")


def test_cache_info_and_clear_cache_by_task(_private_store):
    @task
    def keep(x):
        return x

    @task
    def drop(x):
        return -x

    with Flow("managed") as flow:
        keep.map([1, 2, 3])
        drop(1)
    flow.run()
    info = nbflow.cache_info()
    assert info["per_task"] == {"keep": 3, "drop": 1}
    assert info["entries"] == 4 and info["bytes"] > 0
    assert nbflow.clear_cache(task="drop") == 1
    assert nbflow.cache_info()["per_task"] == {"keep": 3}
    assert nbflow.clear_cache(older_than=3600) == 0
    assert nbflow.clear_cache() == 3
    assert nbflow.cache_info()["entries"] == 0


@task(cache=False)
def ok_task():
    return 1


def test_a_history_file_deleted_while_the_process_runs_is_created_again(_private_store):
    with Flow("vanishing") as flow:
        ok_task()
    assert flow.run().ok
    for suffix in ("", "-wal", "-shm"):
        path = _private_store / f"history.sqlite{suffix}"
        if path.exists():
            path.unlink()
    second = flow.run()
    assert second.ok
    assert (_private_store / "history.sqlite").exists()
    (row,) = nbflow.runs()[["id", "state"]].itertuples(index=False)
    assert tuple(row) == (second.id, "success")


HISTORY_ON_A_FULL_DISK = """
import logging, os, pathlib, sys
import nbflow
from nbflow import Flow, task

logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
home = pathlib.Path(os.environ["NBFLOW_HOME"])

@task(cache=False)
def step(i):
    return i

with Flow("full-disk") as flow:
    step.map(range(50))

flow.run(executor="sequential")                  # creates the history
filler = home / "filler"
with open(filler, "wb") as fh:                  # now the disk is full
    try:
        while True:
            fh.write(b"x" * 65536)
            fh.flush()
    except OSError:
        pass
run = flow.run(executor="sequential")
print("RUN", run.state.value)
filler.unlink()                                 # space again: the kept records are written
from nbflow.store.history import open_history
open_history(home).flush()
import time; time.sleep(1.5)
rows = nbflow.runs()
print("STATES", " ".join(rows["state"]))
print("IDS", run.id in set(rows["id"]))
past = nbflow.load_run(run.id)  # written after a failed try: the times are the run's
children = run["step"].children
print("TIMES", len(children) == 50 and all(
    abs(past[c.name].start - c.start) < 1e-5 and abs(past[c.name].end - c.end) < 1e-5
    for c in children
))
"""


def test_a_full_disk_keeps_history_records_warns_once_and_writes_them_later(tmp_path):
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs a mount namespace (unshare -m) for a small tmpfs")
    home = tmp_path / "home"
    home.mkdir()
    script = tmp_path / "full.py"
    script.write_text(HISTORY_ON_A_FULL_DISK)
    command = f"mount -t tmpfs -o size=2m,mode=0700 none {home} && exec {sys.executable} {script}"
    env = {**os.environ, "NBFLOW_HOME": str(home)}
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", command], env=env, capture_output=True, text=True, timeout=120
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr + out
    assert "RUN success" in out
    assert out.count("could not write the run history") == 1, out
    assert "is written again" in out
    assert "STATES success success" in out and "IDS True" in out and "TIMES True" in out


def test_a_loaded_run_retries_with_show_as_flow_run_does(_private_store):
    attempts = []

    @task
    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first time")
        return "ok"

    with Flow("loaded-retry") as flow:
        node = flaky()
    assert not flow.run(executor="sequential").ok
    again = nbflow.load_run("latest").retry(flow=flow, show=False, executor="sequential")
    assert again.ok and again.result(node) == "ok"
    with pytest.raises(nbflow.NbflowError, match="Expected show to be True, False or None"):
        nbflow.load_run("latest").retry(flow=flow, show="yes")


def test_plain_task_runs_are_written_together_and_read_back_one_by_one(_private_store):
    import sqlite3

    from nbflow.store.history import open_history

    @task
    def leaf(i):
        return i

    @task
    def join(*xs):
        return sum(xs)

    @task(cache=False)
    def fresh(x):
        return -x

    with Flow("grouped") as flow:
        leaves = [leaf(i) for i in range(50)]
        total = join(*leaves)
        fresh(total)
    first = flow.run(executor="sequential")
    again = flow.run(executor="sequential")
    assert again.counts() == {"cached": 51, "success": 1}
    history = open_history(_private_store)
    history.flush()
    with sqlite3.connect(_private_store / "history.sqlite") as db:
        stored = db.execute(
            "SELECT COUNT(*) FROM task_runs WHERE run_id = ?", (again.id,)
        ).fetchone()[0]
        expanded = db.execute(
            "SELECT name, state, key FROM task_rows WHERE run_id = ? ORDER BY row_id, seq",
            (again.id,),
        ).fetchall()
    assert stored <= 2  # 52 task runs: the 51 hits settled at once, and the one that ran
    names = [n for n, _, _ in expanded]
    assert sorted(names) == sorted(t.name for t in again.task_runs)
    assert names.index("join") > max(names.index(n) for n in ("leaf", "leaf-50"))
    keys = {n: k for n, _, k in expanded}
    assert keys == {t.name: t.key for t in again.task_runs}
    assert {s for n, s, _ in expanded if n != "fresh"} == {"cached"}

    past = nbflow.load_run(again.id)
    assert past["join"].state is State.CACHED and past["join"].key == again["join"].key
    for name in ("join", "fresh", "leaf-50"):
        assert abs(past[name].start - again[name].start) < 1e-5
        assert abs(past[name].end - again[name].end) < 1e-5
    assert past["fresh"].state is State.SUCCESS
    assert len(past.task_runs) == 52 and not past.failed
    table = nbflow.runs()
    assert list(table["id"][:2]) == [again.id, first.id]
    assert list(table["tasks"][:2]) == [52, 52]
    assert history.unfinished(again.id) == []
    runs, rows = history.activity(os.getpid(), again.start)
    assert [r["id"] for r in runs] == [again.id]
    assert [r["name"] for r in rows] == names
    assert [r["rowid"] for r in rows] == sorted(r["rowid"] for r in rows)
    assert history.activity(os.getpid(), again.start, after=rows[-1]["rowid"])[1] == []
    assert set(history.computed([again["fresh"].key, again["join"].key])) == {
        again["fresh"].key,
        again["join"].key,  # computed in the first run
    }


def test_task_runs_with_errors_logs_or_children_keep_rows_of_their_own(_private_store):
    @task(cache=False)
    def double(x):
        return 2 * x

    @task(cache=False)
    def talk(xs):
        print("said")
        return xs

    @task(cache=False)
    def boom(xs):
        raise ValueError("no")

    with Flow("mixed") as flow:
        doubled = double.map(list(range(20)))
        said = talk(doubled)
        boom(said)
    run = flow.run(executor="sequential")
    past = nbflow.load_run(run.id)
    assert past["talk"].logs[0].message == "said"
    assert past["boom"].state is State.FAILED and "no" in str(past["boom"].error)
    assert past["double"].mapped and [c.map_index for c in past["double"].children] == list(
        range(20)
    )
    assert all(c.state is State.SUCCESS and c.attempts == 1 for c in past["double"].children)
    assert [c.key for c in past["double"].children] == [c.key for c in run["double"].children]
    assert int(nbflow.runs()["tasks"].iloc[0]) == 22  # the children, not their parent


def test_a_runs_plan_lists_the_tasks_of_the_flow_as_it_is_when_it_runs(_private_store):
    import json
    import sqlite3

    from nbflow.store.history import open_history

    @task(cache=False)
    def one():
        return 1

    with Flow("growing") as flow:
        one()
    before = flow.run(executor="sequential")
    with flow:
        one()
    after = flow.run(executor="sequential")
    open_history(_private_store).flush()
    with sqlite3.connect(_private_store / "history.sqlite") as db:
        plans = dict(db.execute("SELECT run_id, tasks FROM run_plans").fetchall())
    assert json.loads(plans[before.id]) == ["one"]
    assert json.loads(plans[after.id]) == ["one", "one-2"]
