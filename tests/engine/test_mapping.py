"""Mapping over hand-made records: child counts, why a map cannot expand, children's
waits, and a mapped task's state from its children's."""

from __future__ import annotations

import pytest

from nbflow import Flow, State, task, unmapped
from nbflow.engine.mapping import Mapper, Unmappable, parent_state
from nbflow.engine.plan import compile_plan
from nbflow.engine.records import TaskRun


@task
def items() -> list[int]:
    return [1, 2, 3]


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def inc(x: int) -> int:
    return x + 1


def _setup(build):
    with Flow("mapping") as flow:
        nodes = build()
    plans = {p.node: p for p in compile_plan(flow)}
    runs = {node: TaskRun(node, plan.name) for node, plan in plans.items()}
    return plans, runs, nodes


def _ended(runs, node, value, state=State.SUCCESS):
    runs[node].state = state
    runs[node]._value = value


def test_a_map_over_literals_gets_one_child_per_item():
    plans, runs, out = _setup(lambda: add.map([1, 2, 3], y=unmapped(10)))
    assert Mapper(runs, lambda v: v).count(plans[out]) == 3


def test_a_map_over_an_upstream_value_counts_its_items_and_keeps_them():
    plans, runs, (src, out) = _setup(lambda: (s := items(), inc.map(s)))
    _ended(runs, src, (7, 8))
    fetched = []
    mapper = Mapper(runs, lambda v: fetched.append(v) or v)
    assert mapper.count(plans[out]) == 2
    assert mapper.values[src] == [7, 8]
    assert fetched == [(7, 8)]


def test_a_map_over_a_mapped_task_gets_as_many_children_as_it():
    plans, runs, (first, second) = _setup(lambda: (f := inc.map([1, 2]), inc.map(f)))
    mapper = Mapper(runs, lambda v: v)
    children = mapper.expand(plans[first], runs[first], 2)
    assert [c.name for c in children] == ["inc[0]", "inc[1]"]
    assert [c.map_index for c in children] == [0, 1]
    assert mapper.count(plans[second]) == 2


def test_children_wait_for_the_children_of_the_same_index_that_have_not_ended():
    plans, runs, (first, second) = _setup(lambda: (f := inc.map([1, 2]), inc.map(f)))
    mapper = Mapper(runs, lambda v: v)
    upstream = mapper.expand(plans[first], runs[first], 2)
    upstream[0].state = State.SUCCESS
    children = mapper.expand(plans[second], runs[second], 2)
    assert [c._waiting for c in children] == [0, 1]


def test_the_parent_is_done_when_its_last_child_ends():
    plans, runs, out = _setup(lambda: inc.map([1, 2, 3]))
    mapper = Mapper(runs, lambda v: v)
    mapper.expand(plans[out], runs[out], 3)
    assert [mapper.child_ended(out) for _ in range(3)] == [False, False, True]


@pytest.mark.parametrize(
    ("state", "ends"),
    [
        (State.FAILED, State.UPSTREAM_FAILED),
        (State.SKIPPED, State.SKIPPED),
        (State.CANCELLED, State.CANCELLED),
    ],
)
def test_a_map_over_an_upstream_that_did_not_succeed_ends_without_children(state, ends):
    plans, runs, (src, out) = _setup(lambda: (s := items(), inc.map(s)))
    _ended(runs, src, None, state)
    assert Mapper(runs, lambda v: v).count(plans[out]) == Unmappable(
        ends, f"cannot map over 'items': it ended {state.value}"
    )


def test_inputs_of_different_lengths_fail_the_map_with_a_value_error():
    plans, runs, out = _setup(lambda: add.map([1, 2], [1, 2, 3]))
    found = Mapper(runs, lambda v: v).count(plans[out])
    assert isinstance(found, Unmappable)
    assert found.state is State.FAILED
    assert isinstance(found.error, ValueError)
    assert found.reason == (
        "Task 'add' maps over inputs of different lengths: '0' has 2, '1' has 3. Mapped "
        "inputs are zipped: give them the same length, or wrap constants in unmapped(...)."
    )


def test_a_value_that_cannot_be_iterated_fails_the_map_with_a_type_error():
    plans, runs, (src, out) = _setup(lambda: (s := items(), inc.map(s)))
    _ended(runs, src, 5)
    found = Mapper(runs, lambda v: v).count(plans[out])
    assert isinstance(found, Unmappable)
    assert found.state is State.FAILED
    assert isinstance(found.error, TypeError)
    assert found.reason.startswith("Task 'inc' cannot map over its input: ")


S, C, K, F = State.SUCCESS, State.CACHED, State.SKIPPED, State.FAILED


@pytest.mark.parametrize(
    ("states", "parent"),
    [
        ([S, C], S),
        ([C, C], C),
        ([K, K], K),
        ([K, S], S),
        ([S, State.TIMED_OUT], F),
        ([S, State.UPSTREAM_FAILED], State.UPSTREAM_FAILED),
        ([F, State.UPSTREAM_FAILED], F),
        ([F, State.CANCELLED], State.CANCELLED),
        ([], S),
    ],
)
def test_a_mapped_task_ends_in_the_state_its_children_give(states, parent):
    children = [TaskRun(None, "c", i) for i in range(len(states))]  # type: ignore[arg-type]
    for child, state in zip(children, states, strict=True):
        child.state = state
    assert parent_state(children) is parent
