"""The dispatcher on its own: store lookups, attempts, submits and outcomes, with a real
store in ``tmp_path`` and the sequential executor (no threads)."""

from __future__ import annotations

from typing import Any

from nbflow import Flow, task
from nbflow.engine.dispatch import Dispatcher
from nbflow.engine.records import TaskRun
from nbflow.executor import SequentialExecutor
from nbflow.executor.worker import Outcome
from nbflow.store.cache import FILE_THRESHOLD, ResultStore


@task
def double(x: int) -> int:
    return 2 * x


@task(cache=False)
def uncached(x: int) -> int:
    return x


@task
def broken(x: int) -> int:
    raise ValueError(f"no {x}")


def _unit(t: Any, key: str | None, x: int = 21) -> TaskRun:
    with Flow("dispatch"):
        node = t(x)
    unit = TaskRun(node, t.name)
    unit.key = key
    unit._inputs = ((x,), {})
    return unit


class _Delivered:
    def __init__(self) -> None:
        self.outcomes: list[tuple[TaskRun, Outcome]] = []
        self.held: list[bool] = []

    def __call__(self, unit: TaskRun, outcome: Outcome, held: bool = False) -> None:
        self.outcomes.append((unit, outcome))
        self.held.append(held)


def test_hits_are_the_stored_values_of_first_attempts_of_cached_tasks(tmp_path):
    store = ResultStore(tmp_path)
    for key in ("a", "b", "c"):
        store.set(key, key.upper(), task="t")
    fresh, retried, opted_out, missing = (
        _unit(double, "a"),
        _unit(double, "b"),
        _unit(uncached, "c"),
        _unit(double, "z"),
    )
    retried.attempts = 1
    dispatcher = Dispatcher(SequentialExecutor(), store, _Delivered())
    assert dispatcher.hits([fresh, retried, opted_out, missing]) == {"a": "A"}


def test_there_are_no_hits_without_a_store_or_when_refreshing(tmp_path):
    store = ResultStore(tmp_path)
    store.set("a", 1, task="t")
    unit = _unit(double, "a")
    assert Dispatcher(SequentialExecutor(), None, _Delivered()).hits([unit]) == {}
    refreshing = Dispatcher(SequentialExecutor(), store, _Delivered(), refresh=True)
    assert refreshing.hits([unit]) == {}


def test_an_executor_that_loads_values_itself_gets_handles_for_large_ones(tmp_path):
    store = ResultStore(tmp_path)
    big = b"x" * (FILE_THRESHOLD + 1)
    store.set("big", big, task="t")
    store.set("small", 1, task="t")

    class Loading(SequentialExecutor):
        def load(self, store: ResultStore, key: str) -> Any:
            return ("handle", key)

    dispatcher = Dispatcher(Loading(), store, _Delivered())
    assert dispatcher.lookup(["big", "small", "none"]) == {
        "big": ("handle", "big"),
        "small": 1,
    }
    assert Dispatcher(SequentialExecutor(), store, _Delivered()).lookup(["big"]) == {"big": big}


def test_an_attempt_carries_the_inputs_number_and_options_of_its_unit():
    unit = _unit(double, "k", x=4)
    unit.attempts = 2
    attempt = Dispatcher(SequentialExecutor(), None, _Delivered(), echo=True).attempt(unit)
    assert (attempt.fn, attempt.args, attempt.kwargs) == (double.fn, (4,), {})
    assert (attempt.task_name, attempt.label, attempt.number) == ("double", "double", 2)
    assert attempt.echo is True
    assert attempt.cache is None  # values come back here to be stored


def test_a_success_is_stored_before_its_outcome_is_delivered(tmp_path):
    store = ResultStore(tmp_path)
    delivered = _Delivered()
    seen_in_store = []

    def deliver(unit: TaskRun, outcome: Outcome, held: bool) -> None:
        seen_in_store.append(store.get_many([unit.key]))  # type: ignore[list-item]
        delivered(unit, outcome, held)

    dispatcher = Dispatcher(SequentialExecutor(), store, deliver)
    ok, failing, unkeyed = _unit(double, "ok"), _unit(broken, "bad"), _unit(double, None)
    ok.attempts = failing.attempts = unkeyed.attempts = 1
    dispatcher.submit([(u, dispatcher.attempt(u)) for u in (ok, failing, unkeyed)])
    values = [(u.name, o.value, type(o.error).__name__) for u, o in delivered.outcomes]
    assert values == [
        ("double", 42, "NoneType"),
        ("broken", None, "ValueError"),
        ("double", 42, "NoneType"),
    ]
    assert seen_in_store[0] == {"ok": 42}
    assert store.get_many(["ok", "bad"]) == {"ok": 42}
    assert delivered.held == [False, False, False]  # the sequential executor writes at once


def test_on_threads_results_go_to_the_group_writer_and_are_reported_durable_once_written(
    tmp_path,
):
    import threading

    from nbflow.executor import ThreadExecutor

    store = ResultStore(tmp_path)
    delivered = _Delivered()
    durable: list[tuple[str | None, dict[str, Any]]] = []
    all_written = threading.Event()

    def written(units: list[TaskRun]) -> None:
        for unit in units:
            durable.append((unit.key, store.get_many([unit.key])))  # type: ignore[list-item]
        if len(durable) == 20:
            all_written.set()

    dispatcher = Dispatcher(ThreadExecutor(2), store, delivered, durable=written)
    units = [_unit(double, f"k{i}", i) for i in range(20)]
    for u in units:
        u.attempts = 1
    dispatcher.submit([(u, dispatcher.attempt(u)) for u in units])
    assert all_written.wait(10)
    dispatcher.close(cancel=False)
    assert sorted(delivered.held) == [True] * 20  # each delivered before it was written
    # Reported durable only when its value could be read back from the store.
    assert dict(durable) == {f"k{i}": {f"k{i}": 2 * i} for i in range(20)}


def test_fetch_is_the_identity_for_executors_that_return_values():
    dispatcher = Dispatcher(SequentialExecutor(), None, _Delivered())
    value = [1, 2]
    assert dispatcher.fetch(value) is value
