"""Per-task log capture at run time: ``get_logger()`` records and ``print`` output.

Every task is ``cache=False``. Task functions live at module level so they travel to
worker processes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
import time

import pytest

from nbflow import Flow, State, get_logger, task
from nbflow.logs import LogRecord

EXECUTORS = ["sequential", "threads", "processes"]


def run_on(flow: Flow, executor: str, **options):
    """Run ``flow`` on ``executor``; worker processes are kept to two."""
    if executor == "processes":
        options.setdefault("max_workers", 2)
    return flow.run(executor=executor, **options)


def messages(task_run) -> list[str]:
    return [record.message for record in task_run.logs]


# -- task functions ------------------------------------------------------------------


@task(cache=False)
def talk(name):
    logger = get_logger()
    logger.info("hello %s", name)
    logger.warning("careful, %s", name)
    logger.error("oops")
    return name


@task(cache=False)
def chatty(label):
    print(f"{label} says hi")
    print("two", "words")
    print("no newline at the end", end="")
    return label


@task(cache=False, log_prints=False)
def loud(label):
    print(f"{label} is not captured")
    get_logger().info("logger records are still kept")
    return label


@task(cache=False)
def many_lines(label, n):
    for i in range(n):
        print(f"{label} line {i}")
        if i % 10 == 0:
            time.sleep(0.005)  # let the other tasks' threads interleave
    return label


@task(cache=False, retries=1)
def flaky_talker(path):
    with open(path, "a") as fh:
        fh.write("x\n")
    with open(path) as fh:
        n = len(fh.read().splitlines())
    print(f"attempt {n}")
    if n == 1:
        raise OSError("first attempt fails")
    return n


_long_task_started = threading.Event()


@task(cache=False)
def long_capture():
    _long_task_started.set()
    time.sleep(0.5)
    return "long"


@task(cache=False)
def log_exception():
    try:
        raise KeyError("missing")
    except KeyError:
        get_logger().exception("could not find it")
    return 1


# -- get_logger ----------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_get_logger_records_are_kept_with_the_task_run(executor):
    with Flow("logger") as flow:
        node = talk("ada")
    run = run_on(flow, executor)

    logs = run[node].logs
    assert [(r.level, r.message) for r in logs] == [
        ("INFO", "hello ada"),
        ("WARNING", "careful, ada"),
        ("ERROR", "oops"),
    ]
    history = run[node].history[0]
    for record in logs:
        assert isinstance(record, LogRecord)
        assert history.start - 0.01 <= record.time <= history.end + 0.01
    line = str(logs[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO hello ada", line), line


@pytest.mark.parametrize("executor", EXECUTORS)
def test_logged_exception_keeps_its_traceback(executor):
    with Flow("logged-exception") as flow:
        node = log_exception()
    run = run_on(flow, executor)

    (record,) = run[node].logs
    assert record.level == "ERROR"
    assert record.message.startswith("could not find it\nTraceback")
    assert "KeyError: 'missing'" in record.message


def test_get_logger_records_also_reach_normal_logging(caplog):
    with Flow("propagate") as flow:
        talk("bob")
    with caplog.at_level(logging.INFO):
        run_on(flow, "threads")

    found = [(r.name, r.getMessage()) for r in caplog.records if r.name.startswith("nbflow.task")]
    assert ("nbflow.task.talk", "hello bob") in found


# -- prints ----------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_prints_are_captured_per_task_run(executor):
    with Flow("prints") as flow:
        a = chatty("a")
        b = chatty("b")
    run = run_on(flow, executor)

    assert messages(run[a]) == ["a says hi", "two words", "no newline at the end"]
    assert messages(run[b]) == ["b says hi", "two words", "no newline at the end"]
    assert all(r.level == "INFO" for r in run[a].logs)


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_prints_are_not_captured_with_log_prints_false(executor, capsys):
    with Flow("no-prints") as flow:
        node = loud("x")
    run = run_on(flow, executor)

    assert run.result(node) == "x"
    assert messages(run[node]) == ["logger records are still kept"]
    assert "x is not captured" in capsys.readouterr().out


def test_prints_are_not_captured_with_log_prints_false_in_a_worker_process():
    with Flow("no-prints-processes") as flow:
        node = loud("y")
    run = run_on(flow, "processes")

    assert run.result(node) == "y"
    assert messages(run[node]) == ["logger records are still kept"]


def test_prints_of_a_task_do_not_reach_the_notebook_output(capsys):
    with Flow("quiet") as flow:
        node = chatty("c")
    run = run_on(flow, "threads")

    assert messages(run[node])[0] == "c says hi"
    assert "c says hi" not in capsys.readouterr().out


def test_prints_are_captured_when_sys_stdout_was_replaced_while_another_task_ran():
    # A task of a background run is capturing when the front end swaps sys.stdout
    # (as pytest, %%capture or contextlib.redirect_stdout do): a task run afterwards
    # must still have its prints captured, not written to the new stream.
    _long_task_started.clear()
    with Flow("long") as long_flow:
        long_capture()
    background = long_flow.run(executor="threads", background=True)
    assert _long_task_started.wait(5)
    with contextlib.redirect_stdout(io.StringIO()) as elsewhere:
        with Flow("short") as flow:
            node = chatty("d")
        run = flow.run(executor="threads")
    assert background.wait(5)

    assert messages(run[node]) == ["d says hi", "two words", "no newline at the end"]
    assert "d says hi" not in elsewhere.getvalue()


def test_concurrent_tasks_on_threads_each_keep_only_their_own_lines_in_order():
    with Flow("crowd") as flow:
        nodes = [many_lines.with_options(name=f"t{i}")(f"t{i}", 50) for i in range(8)]
    run = flow.run(executor="threads", max_workers=8)

    assert run.ok
    for i, node in enumerate(nodes):
        assert messages(run[node]) == [f"t{i} line {j}" for j in range(50)]
    starts = sorted(run[n].history[0].start for n in nodes)
    ends = sorted(run[n].history[0].end for n in nodes)
    assert starts[-1] < ends[0]  # they really ran at the same time


@pytest.mark.parametrize("executor", EXECUTORS)
def test_logs_of_every_attempt_are_kept(executor, tmp_path):
    with Flow("attempt-logs") as flow:
        node = flaky_talker(str(tmp_path / "n"))
    run = run_on(flow, executor)

    assert run[node].state is State.SUCCESS
    assert messages(run[node]) == ["attempt 1", "attempt 2"]


def test_prints_from_worker_processes_are_shipped_back():
    with Flow("shipped") as flow:
        nodes = [many_lines.with_options(name=f"p{i}")(f"p{i}", 20) for i in range(3)]
        mapped = chatty.map(["m0", "m1"])
    run = run_on(flow, "processes")

    for i, node in enumerate(nodes):
        assert messages(run[node]) == [f"p{i} line {j}" for j in range(20)]
    assert messages(run["chatty[1]"])[0] == "m1 says hi"
    assert run[mapped].state is State.SUCCESS
