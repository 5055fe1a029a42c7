"""Readiness over hand-made records: what a task run ends with when it cannot run,
and the inputs it gets when it can."""

from __future__ import annotations

import pytest

from nbflow import Flow, State, some_failed, task
from nbflow.engine.gate import blocked, first_bad_upstream, inputs, upstream_states, value_of
from nbflow.engine.plan import compile_plan
from nbflow.engine.records import TaskRun
from nbflow.errors import UpstreamFailedError
from nbflow.graph.triggers import NAMED


@task
def one() -> int:
    return 1


@task
def two() -> int:
    return 2


@task
def pair(a: int, b: int, scale: int = 1) -> int:
    return (a + b) * scale


@task
def inc(x: int) -> int:
    return x + 1


def _two_upstreams(**options):
    """A flow pair(one(), two(), scale=3); its plans and runs, upstreams ended ok."""
    with Flow("gate") as flow:
        a, b = one(), two()
        out = pair.with_options(**options)(a, b, scale=3) if options else pair(a, b, scale=3)
    plans = {p.node: p for p in compile_plan(flow)}
    runs = {node: TaskRun(node, plan.name) for node, plan in plans.items()}
    for node, value in ((a, 1), (b, 2)):
        runs[node].state = State.SUCCESS
        runs[node]._value = value
    return plans[out], runs, a, b


def test_a_task_whose_upstreams_succeeded_runs_with_their_values():
    plan, runs, _, _ = _two_upstreams()
    assert blocked(plan, runs, None, NAMED["all_successful"]) is None
    assert inputs(plan, runs, {}, None) == ((1, 2), {"scale": 3})


def test_an_upstream_failure_ends_the_task_upstream_failed_naming_it():
    plan, runs, _, b = _two_upstreams()
    runs[b].state = State.FAILED
    assert blocked(plan, runs, None, NAMED["all_successful"]) == (
        State.UPSTREAM_FAILED,
        "upstream 'two' did not succeed",
    )
    assert first_bad_upstream(plan, runs, None) == "two"


def test_an_unmet_trigger_that_does_not_wait_for_success_skips_the_task():
    plan, runs, _, _ = _two_upstreams()
    assert blocked(plan, runs, None, NAMED["any_failed"]) == (
        State.SKIPPED,
        "trigger 'any_failed' not met: no upstream task failed",
    )
    assert blocked(plan, runs, None, some_failed(at_least=1)) == (
        State.SKIPPED,
        "trigger 'some_failed(at_least=1, at_most=None)' not met: "
        "0 of 2 upstream tasks failed, fewer than 1",
    )


def test_a_cancelled_upstream_wins_over_the_trigger():
    plan, runs, a, _ = _two_upstreams()
    runs[a].state = State.CANCELLED
    assert blocked(plan, runs, None, NAMED["all_finished"]) == (
        State.CANCELLED,
        "an upstream task was cancelled",
    )


def test_an_upstream_skip_skips_the_task_unless_it_opts_out():
    plan, runs, a, _ = _two_upstreams()
    runs[a].state = State.SKIPPED
    assert upstream_states(plan, runs, None) == ([State.SKIPPED, State.SUCCESS], True)
    assert blocked(plan, runs, None, NAMED["all_successful"]) == (
        State.SKIPPED,
        "an upstream task was skipped",
    )
    plan, runs, a, _ = _two_upstreams(skip_on_upstream_skip=False)
    runs[a].state = State.SKIPPED
    assert blocked(plan, runs, None, NAMED["all_successful"]) is None
    assert inputs(plan, runs, {}, None) == ((None, 2), {"scale": 3})


def test_a_failed_upstream_passes_its_error_as_the_value():
    _, runs, a, b = _two_upstreams()
    error = ValueError("bad")
    runs[a].state, runs[a].error = State.FAILED, error
    runs[b].state, runs[b].reason = State.UPSTREAM_FAILED, "upstream 'x' did not succeed"
    assert value_of(runs[a]) is error
    passed = value_of(runs[b])
    assert isinstance(passed, UpstreamFailedError)
    assert str(passed) == "Task 'two' ended upstream_failed: upstream 'x' did not succeed"


def test_mapped_inputs_take_item_index_of_each_mapped_upstream():
    with Flow("gate-map") as flow:
        first = inc.map([10, 20])
        second = inc.map(first)
    plans = {p.node: p for p in compile_plan(flow)}
    runs = {node: TaskRun(node, plan.name) for node, plan in plans.items()}
    parent = runs[first]
    parent.children = [TaskRun(first, f"inc[{i}]", i) for i in range(2)]
    for child, value in zip(parent.children, (11, 21), strict=True):
        child.state, child._value = State.SUCCESS, value
    assert inputs(plans[first], runs, {}, 1) == ((20,), {})
    assert inputs(plans[second], runs, {}, 0) == ((11,), {})
    assert inputs(plans[second], runs, {}, 1) == ((21,), {})
    assert upstream_states(plans[second], runs, 1) == ([State.SUCCESS], False)
    parent.children[1].state = State.FAILED
    assert first_bad_upstream(plans[second], runs, 1) == "inc[1]"
    assert blocked(plans[second], runs, 0, NAMED["all_successful"]) is None


def test_an_input_that_cannot_be_indexed_raises():
    with Flow("gate-bad-map") as flow:
        xs = one()
        out = inc.map(xs)
    plans = {p.node: p for p in compile_plan(flow)}
    runs = {node: TaskRun(node, plan.name) for node, plan in plans.items()}
    with pytest.raises(TypeError):
        inputs(plans[out], runs, {xs: 5}, 0)  # type: ignore[dict-item]
