"""Reuse of a prior run's results over hand-made records: which task runs are taken
over, with which state, and when a value must be read from the store."""

from __future__ import annotations

from nbflow import Flow, State, task
from nbflow.engine.plan import compile_plan
from nbflow.engine.records import UNLOADED, TaskRun
from nbflow.engine.reuse import Reuse


@task
def load() -> int:
    return 1


@task
def inc(x: int) -> int:
    return x + 1


def _chain():
    with Flow("reuse") as flow:
        first = load()
        second = inc(first)
    plans = {p.node: p for p in compile_plan(flow)}
    runs = {node: TaskRun(node, plan.name) for node, plan in plans.items()}
    return plans, runs, first, second


def _prior(name: str, state: State, value=42, key: str | None = "k") -> TaskRun:
    prior = TaskRun(None, name)  # type: ignore[arg-type]
    prior.state, prior._value, prior.key = state, value, key
    prior.start, prior.attempts = 5.0, 3
    return prior


def test_a_task_that_succeeded_before_is_taken_over_as_cached():
    plans, runs, first, _ = _chain()
    prior = _prior("load", State.SUCCESS)
    reuse = Reuse({"load": prior}, runs, None)
    unit = runs[first]
    assert reuse.prior_of(plans[first], unit) is prior
    assert reuse.take(unit, prior) == (State.CACHED, None)
    assert (unit._value, unit.cached, unit.attempts, unit.start) == (42, True, 0, None)


def test_a_task_skipped_before_stays_skipped_for_the_same_reason():
    plans, runs, first, _ = _chain()
    prior = _prior("load", State.SKIPPED)
    prior.reason = "not today"
    reuse = Reuse({"load": prior}, runs, None)
    assert reuse.take(runs[first], reuse.prior_of(plans[first], runs[first])) == (
        State.SKIPPED,
        "not today",
    )
    assert runs[first].cached is False


def test_a_task_that_failed_before_runs_again_and_so_does_what_reads_it():
    plans, runs, first, second = _chain()
    reuse = Reuse(
        {"load": _prior("load", State.FAILED), "inc": _prior("inc", State.SUCCESS)}, runs, None
    )
    assert reuse.prior_of(plans[first], runs[first]) is None
    assert reuse.prior_of(plans[second], runs[second]) is None


def test_a_downstream_is_taken_over_once_its_upstream_was():
    plans, runs, first, second = _chain()
    reuse = Reuse(
        {"load": _prior("load", State.SUCCESS), "inc": _prior("inc", State.SUCCESS)}, runs, None
    )
    assert reuse.prior_of(plans[second], runs[second]) is None
    reuse.take(runs[first], reuse.prior_of(plans[first], runs[first]))  # type: ignore[arg-type]
    assert reuse.prior_of(plans[second], runs[second]) is not None


def test_with_a_store_a_changed_key_runs_the_task_again():
    plans, runs, first, _ = _chain()
    reuse = Reuse({"load": _prior("load", State.SUCCESS, key="old")}, runs, lambda keys: {})
    runs[first].key = "new"
    assert reuse.prior_of(plans[first], runs[first]) is None
    runs[first].key = "old"
    assert reuse.prior_of(plans[first], runs[first]) is not None


def test_a_recorded_value_is_read_from_the_store_and_a_missing_one_runs_the_task():
    plans, runs, first, _ = _chain()
    looked_up = []

    def lookup(keys):
        looked_up.extend(keys)
        return {"stored": 7}

    stored = _prior("load", State.SUCCESS, value=UNLOADED, key="stored")
    reuse = Reuse({"load": stored}, runs, lookup)
    runs[first].key = "stored"
    assert reuse.prior_of(plans[first], runs[first]) is stored
    assert (stored._value, looked_up) == (7, ["stored"])

    gone = _prior("load", State.SUCCESS, value=UNLOADED, key="gone")
    runs[first].key = "gone"
    assert Reuse({"load": gone}, runs, lookup).prior_of(plans[first], runs[first]) is None
    assert Reuse({"load": gone}, runs, None).prior_of(plans[first], runs[first]) is None


def test_a_reused_result_takes_the_time_of_the_reuse_not_the_time_since_it_was_computed():
    import time as _time

    from nbflow import Flow, task

    @task(cache=False)
    def slow():
        _time.sleep(0.3)
        return 1

    @task(cache=False)
    def fails(x):
        raise ValueError("again")

    with Flow("reuse-time") as flow:
        s = slow()
        fails(s)
    first = flow.run()
    _time.sleep(0.5)
    again = first.retry()
    assert first[s].duration >= 0.3
    assert again[s].state.value == "cached"
    assert again[s].duration < 0.2
    assert again[s].start >= first.end
