"""Prefect 1.4.1's looping tests (tests/core/test_flow.py, tests/engine/test_task_runner.py
TestLooping, tests/core/test_task_map.py TestLooping), ported: ``raise LOOP(result=...)``
runs the task again with ``nbflow.context``'s ``task_loop_count`` and
``task_loop_result``; names follow theirs.

Task functions live at module level so they travel to worker processes.
"""

from __future__ import annotations

import pytest

from nbflow import LOOP, Flow, State, context, task

EXECUTORS = ["sequential", "threads", "processes"]


@task(cache=False)
def looper(x):
    if context.get("task_loop_count", 1) < 20:
        raise LOOP(result=context.get("task_loop_result", 0) + x)
    return context.get("task_loop_result") + x


@task(cache=False)
def downstream(value):
    return value**2


@pytest.mark.parametrize("executor", EXECUTORS)
def test_looping_works_in_a_flow(executor):
    with Flow("looping") as f:
        inter = looper(10)
        final = downstream(inter)
    run = f.run(executor=executor)
    assert run.ok
    assert run.result(inter) == 200
    assert run.result(final) == 200**2
    assert run[inter].attempts == 1  # a loop is not an attempt
    assert [r.message for r in run[inter].logs].count("LOOP: running again (loop 20)") == 1


@task(cache=False, retries=1)
def looper_failing_once_at_loop_2(x):
    if context.get("task_loop_count") == 2 and context.get("task_run_count", 1) == 1:
        raise ValueError("err")
    if context.get("task_loop_count", 1) < 20:
        raise LOOP(result=context.get("task_loop_result", 0) + x)
    return context.get("task_loop_result") + x


@pytest.mark.parametrize("executor", EXECUTORS)
def test_looping_with_retries_works_in_a_flow(executor):
    with Flow("looping") as f:
        inter = looper_failing_once_at_loop_2(10)
        final = downstream(inter)
    run = f.run(executor=executor)
    assert run.ok
    assert run.result(inter) == 200
    assert run.result(final) == 200**2
    assert run[inter].attempts == 2
    assert [a.state for a in run[inter].history] == [State.FAILED, State.SUCCESS]


def test_looping_with_retries_resets_run_count():
    run_counts = []

    @task(cache=False, retries=1)
    def counting_looper(x):
        run_counts.append(context.get("task_run_count"))
        if context.get("task_loop_count") == 2 and context.get("task_run_count", 1) == 1:
            raise ValueError("err")
        if context.get("task_loop_count", 1) < 20:
            raise LOOP(result=context.get("task_loop_result", 0) + x)
        return context.get("task_loop_result") + x

    with Flow("looping") as f:
        inter = counting_looper(1)
    run = f.run(executor="sequential")
    assert run.ok
    assert run.result(inter) == 20
    assert [c for c in run_counts if c == 2] == [2]
    assert len(run_counts) == 21  # 20 iterations, one of them run twice


@task(cache=False)
def my_task():
    if context.get("task_loop_count", 1) < 3:
        raise LOOP()
    return 42


def test_looping_works():
    assert my_task() == 42


def test_looping_calls_state_handlers_appropriately():
    seen = []

    def handler(task_, task_run, old, new):
        seen.append(new)

    looping = my_task.with_options(on_state_change=handler)
    with Flow("handled") as f:
        node = looping()
    run = f.run(executor="sequential")
    assert run.result(node) == 42
    # A loop runs inside one attempt: the task run is running, then succeeds.
    assert seen == [State.RUNNING, State.SUCCESS]


@task(cache=False)
def accumulating():
    curr = context.get("task_loop_result", 0)
    if context.get("task_loop_count", 1) < 3:
        raise LOOP(result=curr + 1)
    return curr + 1


def test_looping_accumulates():
    assert accumulating() == 3


@task(cache=False, retries=2, retry_delay=0)
def loop_then_fail_once():
    if context.get("task_loop_count", 1) == 2:
        if context.get("task_run_count", 1) > 1:
            return 42
        raise SyntaxError("failure")
    if context.get("task_loop_count", 1) < 3:
        raise LOOP()
    return None


def test_looping_works_with_retries():
    with Flow("loop-retry") as f:
        node = loop_then_fail_once()
    run = f.run(executor="sequential")
    assert run.result(node) == 42
    assert run[node].attempts == 2


@task(cache=False, retries=2, retry_delay=0)
def loop_results_then_fail_once():
    if context.get("task_loop_count", 1) == 3:
        if context.get("task_run_count", 1) > 1:
            return context.get("task_loop_result")
        raise SyntaxError("failure")
    if context.get("task_loop_count", 1) < 3:
        raise LOOP(result=context.get("task_loop_result", 0) + 1)
    return None


def test_loop_results_work_with_retries():
    with Flow("loop-results-retry") as f:
        node = loop_results_then_fail_once()
    run = f.run(executor="sequential")
    assert run.ok
    assert run.result(node) == 2


@task(cache=False)
def mapped_looper(i):
    if context.get("task_loop_count", 1) < 3:
        raise LOOP(result=context.get("task_loop_result", i) + 3)
    return context.get("task_loop_result")


@pytest.mark.parametrize("executor", EXECUTORS)
def test_looping_works_with_mapping(executor):
    with Flow("looping-mapping") as flow:
        output = mapped_looper.map(i=[1, 20])
    run = flow.run(executor=executor)
    assert run.ok
    assert run.result(output) == [7, 26]


def test_looping_works_with_mapping_and_individual_retries():
    states = []

    @task(
        cache=False, retries=1, retry_delay=0, on_state_change=lambda t, r, o, n: states.append(n)
    )
    def flaky_looper(i):
        if context.get("task_loop_count", 1) < 3:
            raise LOOP(result=context.get("task_loop_result", i) + 3)
        if context.get("task_loop_count", 1) == 3 and context.get("task_run_count", 0) <= 1:
            raise ValueError("Can't do it")
        return context.get("task_loop_result")

    with Flow("looping-mapping") as flow:
        output = flaky_looper.map(i=[1, 20])
    run = flow.run(executor="sequential")
    assert run.ok
    assert run.result(output) == [7, 26]
    assert [c.attempts for c in run[output].children] == [2, 2]
    assert states.count(State.RETRYING) == 2


# -- nbflow's own ------------------------------------------------------------------------


@task(cache=False, retries=0)
def loops_without_retries():
    if context.get("task_loop_count", 1) < 50:
        raise LOOP(result=context.get("task_loop_count", 1))
    return context.get("task_loop_result")


def test_loops_do_not_count_against_retries():
    with Flow("no-retries") as f:
        node = loops_without_retries()
    run = f.run(executor="sequential")
    assert run.result(node) == 49
    assert run[node].attempts == 1


@task(cache=False)
def reads_its_context(x=None):
    return {k: context.get(k) for k in ("task_name", "task_full_name", "task_run_count")}


def test_the_task_context_names_the_task_run_and_is_empty_outside():
    with Flow("ctx") as f:
        one = reads_its_context()
        many = reads_its_context.map([1, 2])
    run = f.run(executor="threads")
    assert run.result(one) == {
        "task_name": "reads_its_context",
        "task_full_name": "reads_its_context",
        "task_run_count": 1,
    }
    assert [c["task_full_name"] for c in run.result(many)] == [c.name for c in run[many].children]
    assert run[many].children[1].name.endswith("[1]")
    assert context.get("task_name") is None
    assert context.to_dict() == {}


@task(cache=False)
async def async_looper():
    if context.get("task_loop_count", 1) < 4:
        raise LOOP(result=context.get("task_loop_count", 1))
    return context.get("task_loop_result")


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_an_async_task_loops_and_sees_its_context(executor):
    with Flow("async-loop") as f:
        node = async_looper()
    assert f.run(executor=executor).result(node) == 3


def test_a_loop_message_is_logged():
    @task(cache=False)
    def says_why():
        if context.get("task_loop_count", 1) < 2:
            raise LOOP("more to do", result=1)
        return context.get("task_loop_result")

    with Flow("why") as f:
        node = says_why()
    run = f.run(executor="sequential")
    assert run.result(node) == 1
    assert "LOOP: running again (loop 2): more to do" in [r.message for r in run[node].logs]
