"""Executors at run time: where attempts run, timeouts, dead workers, parallelism.

Every task is ``cache=False``. Task functions live at module level so they travel to
worker processes by reference; lambdas and closures travel by value (cloudpickle).
"""

from __future__ import annotations

import contextlib
import linecache
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from itertools import pairwise

import pytest

from nbflow import Flow, NbflowError, State, task
from nbflow.errors import TaskTimeoutError, WorkerDiedError
from nbflow.executor import ProcessExecutor, ThreadExecutor

EXECUTORS = ["sequential", "threads", "processes"]

# How long a task that overruns its timeout would sleep. A killed process costs
# nothing, but a thread cannot be stopped: keep abandoned threads short-lived so they
# do not outlive their test by much.
OVERRUN = {"threads": 1.0, "processes": 3.0}


def run_on(flow: Flow, executor: str, **options):
    """Run ``flow`` on ``executor``; worker processes are kept to two."""
    if executor == "processes":
        options.setdefault("max_workers", 2)
    return flow.run(executor=executor, **options)


def bump(path: str) -> int:
    """Count one more attempt in the file ``path``; return the new count."""
    with open(path, "a") as fh:
        fh.write("x\n")
    with open(path) as fh:
        return len(fh.read().splitlines())


# -- task functions ------------------------------------------------------------------


@task(cache=False)
def pid_of_worker():
    return os.getpid()


@task(cache=False)
def nap(seconds, value=None):
    time.sleep(seconds)
    return value


@task(cache=False)
def interval(seconds):
    start = time.time()
    time.sleep(seconds)
    return (start, time.time())


@task(cache=False, timeout=0.5)
def runaway(kind):
    if kind == "sleep":
        time.sleep(30)
    else:
        deadline = time.time() + 30
        while time.time() < deadline:
            pass
    return "finished"


@task(cache=False)
def slow_then_fast(path, slow):
    """Overruns its timeout on the first attempt only."""
    n = bump(path)
    if n == 1:
        time.sleep(slow)
    return n


@task(cache=False, trigger="all_finished")
def describe(x):
    return type(x).__name__


@task(cache=False)
def die(code):
    os._exit(code)


@task(cache=False)
def inc(x):
    return x + 1


# -- where tasks run ------------------------------------------------------------------


def test_processes_run_tasks_in_other_processes():
    with Flow("pids") as flow:
        nodes = [pid_of_worker.with_options(name=f"pid{i}")() for i in range(3)]
    run = run_on(flow, "processes")

    assert run.ok
    pids = {run.result(n) for n in nodes}
    assert os.getpid() not in pids
    assert all(isinstance(p, int) for p in pids)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_module_functions_lambdas_and_closures_run_on_every_executor(executor):
    offset = 100

    def add_offset(x):
        return x + offset

    square = task(lambda x: x * x, name="square", cache=False)
    shifted = task(add_offset, cache=False)
    with Flow("callables") as flow:
        a = inc(1)
        b = square(a)
        c = shifted(b)
        d = shifted.map([1, 2])
    run = run_on(flow, executor)

    assert run.ok, run.failed
    assert run.result(b) == 4
    assert run.result(c) == 104
    assert run.result(d) == [101, 102]


def test_sequential_runs_tasks_in_the_calling_thread_one_at_a_time():
    @task(cache=False)
    def thread_name():
        return threading.current_thread().name

    with Flow("sequential-thread") as flow:
        name = thread_name()
        spans = [interval.with_options(name=f"span{i}")(0.05) for i in range(3)]
    run = run_on(flow, "sequential")

    assert run.result(name) == threading.current_thread().name
    intervals = sorted(run.result(s) for s in spans)
    for (_, end), (start, _) in pairwise(intervals):
        assert end <= start


# -- timeouts --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sleep", "busy"])
def test_processes_kill_a_runaway_task_and_the_rest_of_the_run_goes_on(kind):
    with Flow("runaway") as flow:
        stuck = runaway(kind)
        bystander = nap(0.8, "bystander")  # runs alongside, past the kill
        after = inc(1)
    started = time.monotonic()
    run = run_on(flow, "processes")
    took = time.monotonic() - started

    assert run[stuck].state is State.TIMED_OUT
    assert isinstance(run[stuck].error, TaskTimeoutError)
    assert isinstance(run[stuck].error, TimeoutError)
    assert "timed out" in str(run[stuck].error)
    assert run.result(bystander) == "bystander"
    assert run.result(after) == 2
    assert run.state is State.FAILED
    assert took < 10

    with Flow("after-runaway") as flow:
        again = inc.map([1, 2, 3])
    next_run = run_on(flow, "processes")
    assert next_run.ok
    assert next_run.result(again) == [2, 3, 4]


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_timed_out_attempt_is_retried(executor, tmp_path):
    with Flow("timeout-retry") as flow:
        node = slow_then_fast.with_options(timeout=0.3, retries=1)(
            str(tmp_path / "n"), OVERRUN[executor]
        )
    started = time.monotonic()
    run = run_on(flow, executor)
    took = time.monotonic() - started

    assert run[node].state is State.SUCCESS
    assert run.result(node) == 2
    assert run[node].attempts == 2
    assert [h.state for h in run[node].history] == [State.TIMED_OUT, State.SUCCESS]
    assert isinstance(run[node].history[0].error, TaskTimeoutError)
    assert took < OVERRUN[executor] - 0.1  # the first attempt was not waited for


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_task_that_always_times_out_ends_timed_out_after_its_retries(executor):
    with Flow("timeout-twice") as flow:
        node = nap.with_options(timeout=0.2, retries=1)(OVERRUN[executor])
    started = time.monotonic()
    run = run_on(flow, executor)
    took = time.monotonic() - started

    assert run[node].state is State.TIMED_OUT
    assert run[node].attempts == 2
    assert [h.state for h in run[node].history] == [State.TIMED_OUT, State.TIMED_OUT]
    assert took < OVERRUN[executor] - 0.1  # neither attempt was waited for
    with pytest.raises(TaskTimeoutError):
        run.result(node)


def test_a_worker_killed_for_a_timeout_does_not_fail_a_task_of_the_next_run():
    # The pool is shared: the next run may start before loky has noticed the kill.
    for attempt in range(6):
        with Flow("kills") as first:
            nap.with_options(name="stuck", timeout=0.2)(OVERRUN["processes"])
        assert run_on(first, "processes", show=False)["stuck"].state is State.TIMED_OUT
        with Flow("innocent") as second:
            naps = nap.map([0.05] * 4)
        run = run_on(second, "processes", show=False)
        errors = [c.error for c in run[naps].children or () if c.error is not None]
        assert run.ok, f"try {attempt}: {errors}"


def test_threads_move_on_from_a_timed_out_task_and_warn_that_its_thread_was_abandoned(caplog):
    with Flow("thread-timeout") as flow:
        stuck = nap.with_options(name="stuck", timeout=0.2)(OVERRUN["threads"], "late")
        other = nap(0.05, "other")
        after = inc(1)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="nbflow"):
        run = run_on(flow, "threads")
    took = time.monotonic() - started

    assert run[stuck].state is State.TIMED_OUT
    assert run.result(other) == "other"
    assert run.result(after) == 2
    assert took < 0.9  # the stuck task was not waited for
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "nbflow" and r.levelno == logging.WARNING
    ]
    assert any("'stuck'" in m and "thread" in m for m in warnings), warnings
    assert any("'stuck'" in m and "thread" in m for m in map(str, run[stuck].logs))


def test_timed_out_task_on_the_only_thread_does_not_stall_the_run():
    with Flow("one-thread-timeout") as flow:
        stuck = nap.with_options(name="stuck", timeout=0.2)(OVERRUN["threads"], "late")
        report = describe(stuck)
        queued = nap(0.05, "queued")
    started = time.monotonic()
    run = flow.run(executor="threads", max_workers=1)
    took = time.monotonic() - started

    assert run[stuck].state is State.TIMED_OUT
    assert run.result(report) == "TaskTimeoutError"
    assert run.result(queued) == "queued"
    assert took < 0.9  # the stuck task was not waited for


def test_sequential_interrupts_a_sleeping_task_in_the_main_thread():
    with Flow("sequential-timeout") as flow:
        stuck = nap.with_options(timeout=0.2)(5.0)
        after = inc(1)
    started = time.monotonic()
    run = run_on(flow, "sequential")
    took = time.monotonic() - started

    assert run[stuck].state is State.TIMED_OUT
    assert isinstance(run[stuck].error, TaskTimeoutError)
    assert run.result(after) == 2
    assert took < 2


def test_sequential_outside_the_main_thread_marks_an_overrunning_task_timed_out():
    with Flow("sequential-background-timeout") as flow:
        stuck = nap.with_options(timeout=0.1)(0.3, "late")
        after = inc(1)
    run = run_on(flow, "sequential", background=True)
    assert run.wait(5)

    assert run[stuck].state is State.TIMED_OUT
    assert isinstance(run[stuck].error, TaskTimeoutError)
    assert "timeout" in str(run[stuck].error)
    assert run.result(after) == 2


# -- dead workers --------------------------------------------------------------------------


def test_worker_that_dies_fails_only_its_own_task():
    with Flow("dying") as flow:
        dead = die(3)
        bystander = nap(0.4, "alive")
        chained = inc(nap.with_options(name="first")(0.1, 1))
    run = run_on(flow, "processes")

    assert run[dead].state is State.FAILED
    assert isinstance(run[dead].error, WorkerDiedError)
    assert "worker process died (exit code 3)" in str(run[dead].error)
    assert run[dead].attempts == 1
    assert run.result(bystander) == "alive"
    assert run.result(chained) == 2
    assert [r.name for r in run.failed] == ["die"]

    with Flow("after-death") as flow:
        again = inc.map([1, 2, 3])
    next_run = run_on(flow, "processes")
    assert next_run.ok
    assert next_run.result(again) == [2, 3, 4]


# -- configuring executors -------------------------------------------------------------------


def test_executor_instances_are_accepted_and_keep_their_settings():
    with Flow("instances") as flow:
        spans = [interval.with_options(name=f"span{i}")(0.1) for i in range(3)]

    serial = flow.run(executor=ThreadExecutor(max_workers=1))
    intervals = sorted(serial.result(s) for s in spans)
    for (_, end), (start, _) in pairwise(intervals):
        assert end <= start  # one thread: no overlap

    wide = flow.run(executor=ThreadExecutor(max_workers=4))
    intervals = sorted(wide.result(s) for s in spans)
    assert intervals[-1][0] < intervals[0][1]  # all three overlap

    processes = flow.run(executor=ProcessExecutor(max_workers=2))
    assert processes.ok
    assert len(processes.to_pandas()) == 3


@pytest.mark.parametrize(
    "make",
    [lambda: ThreadExecutor(max_workers=2), lambda: ProcessExecutor(max_workers=2)],
    ids=["threads", "processes"],
)
def test_an_executor_instance_can_serve_several_runs(make):
    executor = make()
    with Flow("reused-executor") as flow:
        xs = inc.map([1, 2, 3])
    for _ in range(3):
        run = flow.run(executor=executor)
        assert run.ok, run.failed
        assert run.result(xs) == [2, 3, 4]


def test_unknown_executor_name_is_refused_with_a_suggestion():
    with Flow("typo") as flow:
        inc(1)
    with pytest.raises(NbflowError, match="Did you mean 'threads'"):
        flow.run(executor="thread")
    with pytest.raises(NbflowError, match="Did you mean 'processes'"):
        flow.run(executor="proceses")


def test_eight_sleeping_tasks_on_eight_threads_finish_in_well_under_the_sequential_time():
    with Flow("parallel") as flow:
        nodes = [nap.with_options(name=f"nap{i}")(0.2, i) for i in range(8)]
    started = time.monotonic()
    run = flow.run(executor="threads", max_workers=8)
    took = time.monotonic() - started

    assert [run.result(n) for n in nodes] == list(range(8))
    assert took < 1.0  # sequential: 1.6 s


CELL_SOURCE = """\
def helper(n):
    return {}[n]

def cell_task(n):
    return helper(n) + 1
"""


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_a_traceback_from_a_worker_process_names_the_users_file_and_lines(executor):
    # Functions from a notebook travel by value; their file and lines must survive.
    filename = "<nbflow-cell 1234abcd>"
    linecache.cache[filename] = (len(CELL_SOURCE), None, CELL_SOURCE.splitlines(True), filename)
    namespace: dict = {"__name__": "nbflow_no_such_module"}
    exec(compile(CELL_SOURCE, filename, "exec"), namespace)
    with Flow("origins") as flow:
        task(namespace["cell_task"], cache=False)(7)
    run = run_on(flow, executor, max_workers=1)
    (failed,) = run.failed
    assert isinstance(failed.error, KeyError) or "KeyError" in failed.traceback
    text = failed.traceback
    assert f'File "{filename}", line 5, in cell_task' in text
    assert "return helper(n) + 1" in text
    assert f'File "{filename}", line 2, in helper' in text
    assert "return {}[n]" in text
    assert "<dynamic-code>" not in text


SCRIPT_CALLING_ANOTHER_TASK = """\
import sys
from nbflow import Flow, task

@task(cache=False)
def inner(x):
    return x + 1

@task(cache=False)
def outer(x):
    return inner.fn(x) * 2

if __name__ == "__main__":
    with Flow("script") as flow:
        r = outer(1)
    run = flow.run(executor="processes", max_workers=1, show=False)
    print("ok" if run.ok else "failed", run.result(r) if run.ok else run[r].error)
"""


def test_a_script_task_that_uses_another_task_runs_on_processes_and_never_hangs(tmp_path):
    # A Task defined in a script's __main__ is pickled along with the function that uses
    # it; a worker that cannot rebuild it used to break the pool and be resubmitted forever.
    script = tmp_path / "script.py"
    script.write_text(SCRIPT_CALLING_ANOTHER_TASK)
    env = {**os.environ, "NBFLOW_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "4"]


class _Unpicklable:
    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise AttributeError("Can't get attribute 'gone' on <module '__main__'>")


@task(cache=False)
def takes(value):
    return "ran"


def test_an_attempt_a_worker_cannot_rebuild_fails_that_task_with_the_reason():
    with Flow("unrebuildable") as flow:
        bad = takes(_Unpicklable())
        good = takes(1)
    run = run_on(flow, "processes", max_workers=1)
    assert run.result(good) == "ran"
    assert run[bad].state is State.FAILED
    message = str(run[bad].error)
    assert "Task 'takes" in message and "could not rebuild it" in message
    assert "Can't get attribute 'gone'" in message


# -- large values between processes ----------------------------------------------------


@task(cache=False)
def big_array(n, seed):
    import numpy as np

    return np.random.default_rng(seed).random(n)


@task(cache=False)
def frame_of(values):
    import pandas as pd

    return pd.DataFrame({"a": values, "b": values * 2})


@task(cache=False)
def doubled_in_place(frame):
    frame["a"] *= 2  # an input changed in place: the worker's copy only
    frame.loc[0, "b"] = -1.0
    return frame


@task(cache=False)
def files_in(folder, *after):
    return sorted(os.listdir(folder))


def _mapped(array) -> bool:
    """Whether ``array``'s memory is a file mapped into this process."""
    import mmap

    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return base is not None


def test_large_values_cross_between_processes_intact_and_leave_no_files():
    np = pytest.importorskip("numpy")
    n = 2_000_000  # 16 MB arrays: their buffers travel through files, not the pipe
    executor = ProcessExecutor(max_workers=2)
    folder = executor._dir
    with Flow("large values") as flow:
        values = big_array(n, 7)
        frame = frame_of(values)
        changed = doubled_in_place(frame)
        seen = files_in(folder, changed)
    run = flow.run(executor=executor)
    assert run.ok, run.counts()
    want = np.random.default_rng(7).random(n)
    assert np.array_equal(run.result(values), want)
    assert _mapped(run.result(values))  # it came through shared memory, not the pipe
    original = run.result(frame)
    assert np.array_equal(original["a"].to_numpy(), want)  # not changed by its consumer
    assert np.array_equal(original["b"].to_numpy(), want * 2)
    result = run.result(changed)
    assert np.array_equal(result["a"].to_numpy(), want * 2)
    assert result.loc[0, "b"] == -1.0 and result.loc[1, "b"] == want[1] * 2
    result["a"] += 1  # what came back is the caller's to change
    assert result.loc[0, "a"] == want[0] * 2 + 1
    # When the last task ran, the files of the finished ones were gone: only its own
    # start marker was left (its small inputs travel in the pickle).
    assert len(run.result(seen)) == 1 and run.result(seen)[0].isdigit(), run.result(seen)
    assert not os.path.exists(folder)  # the run's folder went with the run


def test_large_values_travel_in_the_pickle_when_shared_memory_is_full(monkeypatch):
    """A container's /dev/shm is often 64 MB: a buffer that does not fit goes in the
    pickle, as it did before, and nothing is left behind."""
    import errno

    np = pytest.importorskip("numpy")
    from nbflow.executor import processes

    class FullDisk:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def open(path, flags, mode=0o777):
            fd = os.open(path, flags, mode)
            if ".in" in os.path.basename(path):  # a buffer of an attempt: the disk is full
                os.close(fd)
                raise OSError(errno.ENOSPC, "No space left on device", path)
            return fd

    monkeypatch.setattr(processes, "os", FullDisk())
    executor = ProcessExecutor(max_workers=2)
    folder = executor._dir
    with Flow("full shared memory") as flow:
        frame = frame_of(np.arange(300_000, dtype=float))  # 2.4 MB: spilled if it fits
        changed = doubled_in_place(frame)
        seen = files_in(folder, changed)
    run = flow.run(executor=executor)
    assert run.ok, run.counts()
    assert run.result(changed)["a"].sum() == np.arange(300_000).sum() * 2
    assert len(run.result(seen)) == 1, run.result(seen)


def _rebuilt_only_in(pid):
    if os.getpid() != pid:
        raise RuntimeError("this value cannot be rebuilt outside the process that made it")
    return "rebuilt"


class _OnlyWhereMade:
    def __reduce__(self):
        return _rebuilt_only_in, (os.getpid(),)


@task(cache=False)
def only_where_made():
    return _OnlyWhereMade()


def test_a_result_the_runs_process_cannot_rebuild_fails_that_task_with_the_reason():
    with Flow("unreceivable") as flow:
        bad = only_where_made()
        good = inc(1)
    run = run_on(flow, "processes")
    assert run.result(good) == 2
    assert run[bad].state is State.FAILED
    message = str(run[bad].error)
    assert "Task 'only_where_made'" in message and "send back its result" in message
    assert "cannot be rebuilt outside the process that made it" in message


@task(cache=False)
def raises_base(kind):
    import asyncio

    raise {
        "interrupt": KeyboardInterrupt,
        "cancelled": asyncio.CancelledError,
        "exit": GeneratorExit,
    }[kind]()


@pytest.mark.parametrize("executor", ["threads", "processes"])
@pytest.mark.parametrize("kind", ["interrupt", "cancelled", "exit"])
def test_a_task_raising_a_base_exception_ends_that_task_not_the_run(executor, kind):
    with Flow("base") as flow:
        bad = raises_base(kind)
        good = inc(2)
    run = run_on(flow, executor, background=True)
    assert run.wait(timeout=60), "the run never ended"
    assert run.result(good) == 3
    assert run[bad].state is State.FAILED
    assert run[bad].attempts == 1 and "raises_base" in (run[bad].traceback or "")


@task(cache=False)
async def fetch_twice(x):
    import asyncio

    await asyncio.sleep(0.01)
    return x * 2


@task(cache=False)
async def fails_async():
    raise ValueError("async boom")


@pytest.mark.parametrize("executor", EXECUTORS)
def test_an_async_task_is_awaited_and_its_value_or_error_is_the_tasks(executor):
    with Flow("async") as flow:
        doubled = fetch_twice(21)
        broken = fails_async()
        later = inc(doubled)
    run = run_on(flow, executor)
    assert run.result(doubled) == 42 and run.result(later) == 43
    assert isinstance(run[broken].error, ValueError) and str(run[broken].error) == "async boom"


def test_an_async_task_called_outside_a_flow_returns_its_value():
    assert fetch_twice(4) == 8


def test_a_generator_argument_is_refused_with_a_fix_but_a_mapped_one_is_read_once():
    numbers = (n for n in range(3))
    generator = r"argument 'x' is a generator.*x=list\(\.\.\.\)"
    with pytest.raises(NbflowError, match=generator), Flow("gen"):
        inc(numbers)
    with pytest.raises(NbflowError, match=r"argument 'x' is an iterator \(map\)"):
        inc(map(int, "12"))
    with Flow("mapped") as flow:
        out = inc.map(n for n in range(3))
    first, second = flow.run(), flow.run()
    assert first.result(out) == second.result(out) == [1, 2, 3]


def test_an_async_task_runs_where_an_event_loop_is_already_running():
    # As in a notebook's kernel: the calling thread runs an event loop already.
    import asyncio

    async def inside_a_loop():
        return fetch_twice(5)

    # In a thread of its own: the test runner's main thread may hold an event loop of
    # an earlier test.
    found = {}
    helper = threading.Thread(target=lambda: found.update(v=asyncio.run(inside_a_loop())))
    helper.start()
    helper.join(60)
    assert found == {"v": 10}


@task(cache=False, nout=2)
def pair(n):
    return tuple(range(n)) if n >= 0 else None


@pytest.mark.parametrize("executor", [*EXECUTORS, "dask"])
def test_a_task_returning_more_or_fewer_values_than_its_nout_fails_without_retries(executor):
    with Flow("nout") as flow:
        a, b = pair(2)
        c, _d = pair.with_options(retries=2)(3)
        e, _f = pair(-1)
    run = run_on(flow, executor, max_workers=1) if executor == "dask" else run_on(flow, executor)
    assert (run.result(a), run.result(b)) == (0, 1)
    for node, got in (("pair-2", "3 values"), ("pair-3", "a NoneType")):
        assert run[node].state is State.FAILED and run[node].attempts == 1
        assert f"declares nout=2 but returned {got}" in str(run[node].error)
    assert run[c].state is State.UPSTREAM_FAILED and run[e].state is State.UPSTREAM_FAILED


SCRIPT_OF_MANY_SLOW_TASKS = """
import os, pathlib, sys, time
from nbflow import Flow, task

LOG = pathlib.Path(sys.argv[1])

@task(cache=False)
def work(i):
    with LOG.open("a") as fh:
        fh.write(f"{os.getpid()} {time.time()}\\n")
    time.sleep(0.3)
    return i

if __name__ == "__main__":
    with Flow("many") as flow:
        work.map(list(range(40)))
    flow.run(executor="processes", max_workers=2, show=False)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie no longer runs
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_processes_start_nothing_more_and_end_when_their_parent_is_killed(tmp_path):
    script, log = tmp_path / "script.py", tmp_path / "started.log"
    script.write_text(SCRIPT_OF_MANY_SLOW_TASKS)
    env = {**os.environ, "NBFLOW_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, str(script), str(log)], env=env)
    pids: set[int] = set()
    try:
        deadline = time.time() + 60
        while len(pids) < 2 and time.time() < deadline:
            time.sleep(0.05)
            lines = log.read_text().splitlines() if log.exists() else []
            pids = {int(line.split()[0]) for line in lines}
        assert len(pids) == 2, "the workers never started"
        proc.kill()
        killed = time.time()
        proc.wait(timeout=30)
        deadline = time.time() + 10
        while any(_alive(pid) for pid in pids) and time.time() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in pids if _alive(pid)], "workers outlived their parent"
        starts = [float(line.split()[1]) for line in log.read_text().splitlines()]
        assert max(starts) < killed + 0.1, "a worker started a task after its parent died"
    finally:
        proc.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)


@task(cache=False)
def interrupted_by_the_terminal(x):
    # What Ctrl-C in a terminal does to every process of the group, workers included.
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
    return x + 1


def test_a_worker_process_ignores_sigint_so_only_the_runs_process_decides():
    with Flow("sigint-worker") as flow:
        out = interrupted_by_the_terminal(1)
    run = run_on(flow, "processes", max_workers=1)
    assert run.result(out) == 2


def test_runs_on_threads_reuse_warm_worker_threads():
    seen: list[tuple[int, str]] = []

    @task(cache=False)
    def where(i):
        time.sleep(0.02)  # long enough that both threads take a share
        seen.append((threading.get_ident(), threading.current_thread().name))
        return i

    with Flow("warm") as flow:
        for i in range(6):
            where(i)
    first = flow.run(executor="threads", max_workers=2, store=False)
    first_threads = set(seen)
    seen.clear()
    second = flow.run(executor="threads", max_workers=2, store=False)
    assert first.ok and second.ok
    assert all(name.startswith("nbflow-worker-") for _, name in first_threads)
    # The second run started no thread: it ran on the first run's, parked between runs.
    assert set(seen) <= first_threads
