"""Run options left out come from NBFLOW_EXECUTOR, NBFLOW_MAX_WORKERS and NBFLOW_REFRESH
(how ``nbflow run`` passes its options to the runs a notebook's kernel makes)."""

import pytest

from nbflow import Flow, task
from nbflow.errors import RunError


def _flow(log):
    path = str(log)

    @task
    def count():
        with open(path, "a") as fh:  # a file: the key must not depend on a changing value
            fh.write("x")
        return 1

    with Flow("defaults") as flow:
        count()
    return flow


def test_the_environment_chooses_the_executor_and_workers_when_the_caller_does_not(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("NBFLOW_EXECUTOR", "sequential")
    monkeypatch.setenv("NBFLOW_MAX_WORKERS", "3")
    run = _flow(tmp_path / "log").run(store=False)
    assert type(run._engine.executor).__name__ == "SequentialExecutor"
    explicit = _flow(tmp_path / "log").run(executor="threads", max_workers=2, store=False)
    assert type(explicit._engine.executor).__name__ == "ThreadExecutor"
    assert explicit._engine.executor.max_workers == 2
    monkeypatch.setenv("NBFLOW_EXECUTOR", "")
    threads = _flow(tmp_path / "log").run(store=False)
    assert threads._engine.executor.max_workers == 3


def test_nbflow_refresh_recomputes_cached_results_unless_the_caller_says_otherwise(
    monkeypatch, tmp_path
):
    log = tmp_path / "log"
    flow = _flow(log)
    flow.run()
    flow.run()
    assert log.read_text() == "x"
    monkeypatch.setenv("NBFLOW_REFRESH", "1")
    flow.run()
    assert log.read_text() == "xx"
    flow.run(refresh=False)
    assert log.read_text() == "xx"
    monkeypatch.setenv("NBFLOW_REFRESH", "0")
    flow.run()
    assert log.read_text() == "xx"


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_a_bad_nbflow_max_workers_is_refused_with_its_name(monkeypatch, tmp_path, bad):
    monkeypatch.setenv("NBFLOW_MAX_WORKERS", bad)
    with pytest.raises(RunError, match="Expected NBFLOW_MAX_WORKERS to be a whole number >= 1"):
        _flow(tmp_path / "log").run(store=False)
