"""Executors by name: registering one, running a flow on it, capabilities, bad names."""

from __future__ import annotations

import threading

import pytest
from IPython.core.error import UsageError

from nbflow import Flow, NbflowError, task
from nbflow.cells.line import flow_parser
from nbflow.cli.main import build_parser
from nbflow.executor import (
    RemoteValues,
    SequentialExecutor,
    ThreadExecutor,
    executor_info,
    executor_names,
    register_executor,
    resolve_executor,
    unregister_executor,
)


class CountingExecutor(SequentialExecutor):
    """Runs attempts in the calling thread and counts them."""

    name = "counting"

    def __init__(self, max_workers: int | None) -> None:
        self.max_workers = max_workers
        self.submitted: list[str] = []

    def submit(self, attempt):
        self.submitted.append(attempt.label)
        return super().submit(attempt)


@pytest.fixture
def counting():
    made: list[CountingExecutor] = []

    def factory(max_workers):
        made.append(CountingExecutor(max_workers))
        return made[-1]

    register_executor("counting", factory, summary="counts attempts", inline=True)
    yield made
    unregister_executor("counting")


@task(cache=False)
def double(x):
    return 2 * x


def test_a_registered_executor_runs_a_flow_by_name(counting):
    with Flow("registry-run") as flow:
        a = double(1)
        b = double(a)
    run = flow.run(executor="counting", max_workers=3)
    assert run.ok and run.result(b) == 4
    assert len(counting) == 1
    assert counting[0].max_workers == 3
    assert sorted(counting[0].submitted) == ["double", "double-2"]


def test_a_registered_executor_is_a_choice_of_the_command_line_and_the_magics(counting, capsys):
    assert executor_names()[-1] == "counting"
    args = build_parser().parse_args(["run", "flows.py", "--executor", "counting"])
    assert args.executor == "counting"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    assert "counting: counts attempts" in " ".join(capsys.readouterr().out.split())
    assert flow_parser().parse_args(["run", "--executor", "counting"]).executor == "counting"


def test_an_unregistered_executor_is_no_longer_a_choice():
    register_executor("brief", lambda max_workers: SequentialExecutor())
    assert flow_parser().parse_args(["run", "--executor", "brief"]).executor == "brief"
    unregister_executor("brief")
    assert "brief" not in executor_names()
    with pytest.raises(UsageError, match=r"invalid choice: 'brief'"):
        flow_parser().parse_args(["run", "--executor", "brief"])


def test_the_built_in_executors_are_registered_in_order():
    assert executor_names()[:4] == ("threads", "processes", "sequential", "dask")


@pytest.mark.parametrize("name", ["threads", "processes", "sequential", "dask"])
def test_declared_capabilities_match_the_executor_classes(name):
    from nbflow.executor import DaskExecutor, ProcessExecutor

    cls = {
        "threads": ThreadExecutor,
        "processes": ProcessExecutor,
        "sequential": SequentialExecutor,
        "dask": DaskExecutor,
    }[name]
    info = executor_info(name)
    assert info.inline is cls.inline
    assert info.remote_values is hasattr(cls, "fetch")
    assert info.other_processes is (name in ("processes", "dask"))
    assert cls.name == name


def test_resolve_executor_builds_the_named_kind():
    threads = resolve_executor("threads", 2)
    try:
        assert isinstance(threads, ThreadExecutor) and not threads.inline
    finally:
        threads.shutdown()
    assert isinstance(resolve_executor("sequential", None), SequentialExecutor)
    assert not isinstance(resolve_executor("sequential", None), RemoteValues)


def test_an_unknown_executor_name_suggests_the_closest_and_lists_the_choices():
    with Flow("registry-typo") as flow:
        double(1)
    with pytest.raises(
        NbflowError,
        match=r"Unknown executor 'thread'\. Did you mean 'threads'\? Choose one of: threads, "
        r"processes, sequential, dask, or pass an executor instance\.",
    ):
        flow.run(executor="thread")


def test_a_name_is_registered_once_unless_replaced():
    register_executor("twice", "nbflow.executor.local:ThreadExecutor")
    try:
        with pytest.raises(NbflowError, match=r"'twice' is already registered; pass replace=True"):
            register_executor("twice", "nbflow.executor.local:ThreadExecutor")
        register_executor("twice", "nbflow.executor.local:sequential_executor", replace=True)
        assert isinstance(resolve_executor("twice", None), SequentialExecutor)
    finally:
        unregister_executor("twice")


@pytest.mark.parametrize("name", ["", "two words", "--executor", 3])
def test_a_name_that_cannot_be_a_command_line_choice_is_refused(name):
    with pytest.raises(NbflowError, match=r"Expected an executor name to be a non-empty word"):
        register_executor(name, "nbflow.executor.local:ThreadExecutor")


def test_a_factory_that_returns_no_executor_is_named_in_the_error():
    register_executor("broken", lambda max_workers: threading.Lock())
    try:
        with pytest.raises(NbflowError, match=r"factory of executor 'broken' returned .* not an"):
            resolve_executor("broken", None)
    finally:
        unregister_executor("broken")


def test_unregistering_an_unknown_name_says_so():
    with pytest.raises(NbflowError, match=r"No executor 'nowhere' is registered"):
        unregister_executor("nowhere")
