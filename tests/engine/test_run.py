"""``FlowRun`` at run time: results, failures, the table, retry, background and cancel.

Every task is ``cache=False``. Task functions live at module level so they travel to
worker processes. Executions are counted in files, which work across processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nbflow import Flow, State, task
from nbflow.errors import CancelledError, RunError, UpstreamFailedError

EXECUTORS = ["sequential", "threads", "processes"]


def run_on(flow: Flow, executor: str, **options):
    """Run ``flow`` on ``executor``; worker processes are kept to two."""
    if executor == "processes":
        options.setdefault("max_workers", 2)
    return flow.run(executor=executor, **options)


def executions(directory: Path, name: str) -> int:
    path = directory / name
    return len(path.read_text().splitlines()) if path.exists() else 0


class ConfigError(Exception):
    """A user's own exception type: run.result must raise exactly this."""


# -- task functions ------------------------------------------------------------------


def _note(directory: str, name: str) -> None:
    with open(os.path.join(directory, name), "a") as fh:
        fh.write("ran\n")


@task(cache=False)
def counted(directory, name, value):
    _note(directory, name)
    return value


@task(cache=False)
def needs_flag(directory, name, value):
    """Fails until the file ``flag`` exists in ``directory``."""
    _note(directory, name)
    if not os.path.exists(os.path.join(directory, "flag")):
        raise ConfigError("flag file is missing")
    return value


@task(cache=False)
def combine(directory, name, *values):
    _note(directory, name)
    return sum(values)


@task(cache=False)
def summed(directory, name, values):
    _note(directory, name)
    return sum(values)


@task(cache=False)
def inc(x):
    return x + 1


@task(cache=False)
def bad_config():
    raise ConfigError("no such setting 'colour'")


@task(cache=False)
def nap(seconds, value=None):
    time.sleep(seconds)
    return value


@task(cache=False)
def long_with_pid(directory, seconds):
    with open(os.path.join(directory, "pid"), "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(seconds)
    return "finished"


@task(cache=False)
def flag_or_fail(directory, x):
    """Fails for x == 1 until the file ``flag`` exists."""
    _note(directory, f"child{x}")
    if x == 1 and not os.path.exists(os.path.join(directory, "flag")):
        raise ConfigError("child 1 needs the flag")
    return x * 10


# -- results and failures --------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_result_raises_the_tasks_own_exception(executor):
    with Flow("own-error") as flow:
        bad = bad_config()
        after = inc(bad)
    run = run_on(flow, executor)

    with pytest.raises(ConfigError, match="no such setting 'colour'"):
        run.result(bad)
    with pytest.raises(UpstreamFailedError, match="bad_config"):
        run.result(after)
    assert isinstance(run[bad].error, ConfigError)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_failed_lists_the_task_runs_that_did_not_succeed(executor):
    with Flow("failed-list") as flow:
        bad = bad_config()
        inc(bad)
        inc(1)
        inc.map([1, 2])
    run = run_on(flow, executor)

    assert sorted((r.name, r.state) for r in run.failed) == [
        ("bad_config", State.FAILED),
        ("inc", State.UPSTREAM_FAILED),
    ]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_to_pandas_has_one_row_per_task_run_including_mapped_children(executor):
    with Flow("table") as flow:
        bad = bad_config()
        inc(bad)
        xs = inc.map([1, 2, 3])
    run = run_on(flow, executor)

    df = run.to_pandas()
    for column in (
        "task",
        "map_index",
        "state",
        "attempts",
        "start",
        "end",
        "duration",
        "cached",
        "error",
    ):
        assert column in df.columns
    assert len(df) == 2 + 3
    assert sorted(df["state"]) == ["failed", "success", "success", "success", "upstream_failed"]
    children = df[df["map_index"].notna()]
    assert sorted(children["map_index"].astype(int)) == [0, 1, 2]
    assert set(children["task"]) == {run[xs].node.name}
    failed = df[df["state"] == "failed"].iloc[0]
    assert failed["task"] == "bad_config"
    assert failed["attempts"] == 1
    assert "ConfigError" in failed["error"]
    assert "no such setting" in failed["error"]
    assert not failed["cached"]
    finished = df[df["state"] == "success"]
    assert (finished["duration"] >= 0).all()
    assert (finished["end"] >= finished["start"]).all()


@pytest.mark.parametrize("executor", EXECUTORS)
def test_repr_counts_task_runs_per_state(executor):
    with Flow("counts") as flow:
        bad = bad_config()
        inc(bad)
        inc.map([1, 2])
    run = run_on(flow, executor)

    text = repr(run)
    assert "'counts'" in text
    assert "failed" in text
    assert "2 success" in text
    assert "1 failed" in text
    assert "1 upstream_failed" in text


def test_task_start_and_duration_are_those_of_its_attempts_not_of_its_wait_for_a_worker():
    # One thread, two independent 0.2 s tasks: the second waits for the first.
    with Flow("queued") as flow:
        first = nap.with_options(name="first")(0.2)
        second = nap.with_options(name="second")(0.2)
    run = flow.run(executor="threads", max_workers=1)

    for node in (first, second):
        task_run = run[node]
        assert task_run.start == pytest.approx(task_run.history[0].start, abs=0.05)
        assert task_run.duration == pytest.approx(0.2, abs=0.1)


# -- retry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_retry_reexecutes_only_failed_tasks_and_their_downstream(executor, tmp_path):
    d = str(tmp_path)
    with Flow("retry-failed") as flow:
        a = counted(d, "a", 1)
        b = needs_flag(d, "b", 2)
        c = combine(d, "c", a, b)
        side = counted(d, "side", 5)
        after_side = combine(d, "after_side", side)
    first = run_on(flow, executor)

    assert first[b].state is State.FAILED
    assert first[c].state is State.UPSTREAM_FAILED
    assert first.result(after_side) == 5

    (tmp_path / "flag").touch()
    second = first.retry()

    assert second.ok
    assert second.result(c) == 3
    assert {n: executions(tmp_path, n) for n in ("a", "b", "c", "side", "after_side")} == {
        "a": 1,
        "b": 2,
        "c": 1,
        "side": 1,
        "after_side": 1,
    }
    for node in (a, side, after_side):
        assert second[node].cached is True
        assert second[node].state is State.CACHED
    for node in (b, c):
        assert second[node].cached is False
        assert second[node].state is State.SUCCESS
    assert second.result(a) == 1
    assert second.id != first.id


@pytest.mark.parametrize("executor", EXECUTORS)
def test_retry_reexecutes_only_the_failed_children_of_a_mapped_task(executor, tmp_path):
    d = str(tmp_path)
    with Flow("retry-children") as flow:
        xs = flag_or_fail.map([d, d, d], [0, 1, 2])
        s = summed(d, "sum", xs)
    first = run_on(flow, executor)

    assert [c.state for c in first[xs].children] == [
        State.SUCCESS,
        State.FAILED,
        State.SUCCESS,
    ]
    (tmp_path / "flag").touch()
    second = first.retry()

    assert second.ok
    assert second.result(xs) == [0, 10, 20]
    assert second.result(s) == 30
    assert [executions(tmp_path, f"child{i}") for i in range(3)] == [1, 2, 1]
    assert executions(tmp_path, "sum") == 1  # it did not run the first time
    assert [c.cached for c in second[xs].children] == [True, False, True]


def test_retry_of_a_run_that_still_fails_fails_again(tmp_path):
    d = str(tmp_path)
    with Flow("still-failing") as flow:
        b = needs_flag(d, "b", 2)
    first = flow.run(executor="threads")
    second = first.retry()

    assert second[b].state is State.FAILED
    assert executions(tmp_path, "b") == 2
    with pytest.raises(ConfigError):
        second.result(b)


# -- background runs and cancel ------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_background_run_returns_at_once_and_wait_gives_the_results(executor):
    with Flow("background") as flow:
        slow = nap(0.4, "done")
        after = inc(1)
    started = time.monotonic()
    run = run_on(flow, executor, background=True)
    returned = time.monotonic() - started

    assert returned < 0.2
    assert not run.done
    assert run.state in (State.PENDING, State.RUNNING)
    with pytest.raises(RunError, match="not finished"):
        run.result(slow)
    assert run.wait(10) is True
    assert run.done
    assert run.ok
    assert run.result(slow) == "done"
    assert run.result(after) == 2


@pytest.mark.parametrize("executor", EXECUTORS)
def test_cancel_ends_a_background_run_and_its_pending_tasks(executor):
    with Flow("cancelled") as flow:
        slow = nap(0.5, 1)
        later = inc(slow)
        last = inc(later)
    run = run_on(flow, executor, background=True)
    time.sleep(0.1)
    started = time.monotonic()
    run.cancel()
    cancel_took = time.monotonic() - started

    assert cancel_took < 0.3
    assert run.wait(5)
    assert run.state is State.CANCELLED
    assert not run.ok
    assert run[later].state is State.CANCELLED
    assert run[last].state is State.CANCELLED
    assert run[slow].state is State.CANCELLED
    assert run[later].attempts == 0
    with pytest.raises(CancelledError):
        run.result(later)


def test_cancel_terminates_a_running_task_in_a_worker_process(tmp_path):
    with Flow("cancel-processes") as flow:
        long = long_with_pid(str(tmp_path), 30)
        after = inc(long)
    run = run_on(flow, "processes", background=True)
    pid_file = tmp_path / "pid"
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.02)
    pid = int(pid_file.read_text())

    started = time.monotonic()
    run.cancel()
    assert run.wait(5)
    assert time.monotonic() - started < 5
    assert run.state is State.CANCELLED
    assert run[long].state is State.CANCELLED
    assert run[after].state is State.CANCELLED

    deadline = time.monotonic() + 5
    while _alive(pid):
        assert time.monotonic() < deadline, f"worker process {pid} still runs the cancelled task"
        time.sleep(0.05)

    with Flow("after-cancel") as flow:
        again = inc.map([1, 2])
    assert run_on(flow, "processes").result(again) == [2, 3]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child that its parent has not reaped yet is a zombie: not running.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_run_tells_the_executor_it_was_asked_for_and_each_task_run_its_value():
    with Flow("spec-and-value") as flow:
        one = inc(1)
    run = flow.run(executor="sequential", store=False)
    assert run.executor_spec == "sequential"
    assert run[one].value == 2
