"""Run-time behaviour of the scheduler: retries, triggers, signals, mapping, hooks.

Every task is ``cache=False``: these tests are about running, not about the cache.
Task functions live at module level so they travel to worker processes.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from itertools import pairwise
from pathlib import Path

import pytest

from nbflow import FAIL, SKIP, Flow, State, task, unmapped

EXECUTORS = ["sequential", "threads", "processes"]


def run_on(flow: Flow, executor: str, **options):
    """Run ``flow`` on ``executor``; worker processes are kept to two."""
    if executor == "processes":
        options.setdefault("max_workers", 2)
    return flow.run(executor=executor, **options)


def bump(path: str) -> int:
    """Count one more attempt in the file ``path`` and return the new count.

    A file works across threads and worker processes alike.
    """
    with open(path, "a") as fh:
        fh.write("x\n")
    with open(path) as fh:
        return len(fh.read().splitlines())


def count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


# -- task functions ----------------------------------------------------------------


@task(cache=False)
def flaky(path, fails):
    n = bump(path)
    if n <= fails:
        raise OSError(f"attempt {n} failed")
    return n


@task(cache=False)
def raise_kind(path, kind):
    bump(path)
    raise {"os": OSError, "value": ValueError}[kind](f"{kind} error")


@task(cache=False)
def inc(x):
    return x + 1


@task(cache=False)
def add(x, y):
    return x + y


@task(cache=False)
def ident(x):
    return x


@task(cache=False)
def boom(x=None):
    raise ValueError("boom went the task")


@task(cache=False)
def nap(seconds, value=None):
    time.sleep(seconds)
    return value


@task(cache=False)
def fail_at(x, bad):
    if x == bad:
        raise ValueError(f"element {x} is bad")
    return x * 10


@task(cache=False)
def make_list(n):
    return list(range(n))


@task(cache=False)
def total(xs):
    return sum(xs)


@task(cache=False, trigger="all_finished")
def collect(xs):
    return [type(x).__name__ if isinstance(x, BaseException) else x for x in xs]


@task(cache=False, trigger="all_finished")
def describe(x):
    if isinstance(x, BaseException):
        return ("error", type(x).__name__, str(x))
    return ("value", x)


@task(cache=False, trigger="any_failed")
def on_any_failure(*xs):
    return "ran"


@task(cache=False, trigger="all_failed")
def on_all_failed(*xs):
    return [type(x).__name__ for x in xs]


@task(cache=False, trigger="any_successful")
def on_any_success(*xs):
    return [type(x).__name__ if isinstance(x, BaseException) else x for x in xs]


@task(cache=False)
def skipper(reason):
    raise SKIP(reason)


@task(cache=False, retries=3)
def failer(path):
    bump(path)
    raise FAIL("given up on purpose")


@task(cache=False)
def slow_by_element(x):
    time.sleep(0.5 if x == 1 else 0.05)
    return x


# -- retries -------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_flaky_task_is_retried_until_it_succeeds(executor, tmp_path):
    attempts = tmp_path / "attempts"
    with Flow("flaky") as flow:
        node = flaky.with_options(retries=3)(str(attempts), fails=2)
    run = run_on(flow, executor)

    task_run = run[node]
    assert run.ok
    assert task_run.state is State.SUCCESS
    assert run.result(node) == 3
    assert task_run.attempts == 3
    assert count(attempts) == 3
    history = task_run.history
    assert [h.number for h in history] == [1, 2, 3]
    assert [h.state for h in history] == [State.FAILED, State.FAILED, State.SUCCESS]
    assert [type(h.error) for h in history] == [OSError, OSError, type(None)]
    assert str(history[1].error) == "attempt 2 failed"
    for h in history:
        assert h.start <= h.end
    for before, after in pairwise(history):
        assert before.end <= after.start
    assert task_run.start <= history[0].start
    assert task_run.end >= history[-1].end
    assert task_run.error is None


@pytest.mark.parametrize("executor", EXECUTORS)
def test_task_that_keeps_failing_ends_failed_with_the_error_of_its_last_attempt(executor, tmp_path):
    attempts = tmp_path / "attempts"
    with Flow("hopeless") as flow:
        node = flaky.with_options(retries=2)(str(attempts), fails=99)
    run = run_on(flow, executor)

    task_run = run[node]
    assert not run.ok
    assert run.state is State.FAILED
    assert task_run.state is State.FAILED
    assert task_run.attempts == 3
    assert count(attempts) == 3
    assert isinstance(task_run.error, OSError)
    assert str(task_run.error) == "attempt 3 failed"
    assert [h.state for h in task_run.history] == [State.FAILED] * 3
    assert "in flaky" in task_run.traceback
    assert "raise OSError" in task_run.traceback
    assert "OSError: attempt 3 failed" in task_run.traceback
    with pytest.raises(OSError, match="attempt 3 failed"):
        run.result(node)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_retry_delay_separates_attempts(executor, tmp_path):
    with Flow("delayed") as flow:
        node = flaky.with_options(retries=2, retry_delay=0.2)(str(tmp_path / "n"), fails=2)
    run = run_on(flow, executor)

    history = run[node].history
    assert run[node].state is State.SUCCESS
    assert len(history) == 3
    assert history[1].start - history[0].end >= 0.2
    assert history[2].start - history[1].end >= 0.2


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_retry_backoff_multiplies_the_delay_of_each_further_retry(executor, tmp_path):
    task_ = flaky.with_options(retries=2, retry_delay=dt.timedelta(seconds=0.1), retry_backoff=3)
    with Flow("backoff") as flow:
        node = task_(str(tmp_path / "n"), fails=2)
    run = run_on(flow, executor)

    history = run[node].history
    assert run[node].state is State.SUCCESS
    first_gap = history[1].start - history[0].end
    second_gap = history[2].start - history[1].end
    assert 0.1 <= first_gap < 0.28
    assert second_gap >= 0.3


@pytest.mark.parametrize("executor", EXECUTORS)
def test_retry_on_retries_listed_errors_only(executor, tmp_path):
    picky = raise_kind.with_options(retries=2, retry_on=(OSError,))
    with Flow("picky") as flow:
        os_node = picky(str(tmp_path / "os"), "os")
        value_node = picky(str(tmp_path / "value"), "value")
    run = run_on(flow, executor)

    assert run[os_node].state is State.FAILED
    assert run[os_node].attempts == 3
    assert count(tmp_path / "os") == 3
    assert run[value_node].state is State.FAILED
    assert run[value_node].attempts == 1
    assert count(tmp_path / "value") == 1
    assert isinstance(run[value_node].error, ValueError)


def test_task_waiting_to_retry_does_not_hold_the_only_worker(tmp_path):
    # One worker thread. The flaky task is added first, so it takes the worker first;
    # while it waits 0.5 s to retry, the other task must get the worker and finish.
    with Flow("waiting") as flow:
        retried = flaky.with_options(retries=1, retry_delay=0.5)(str(tmp_path / "n"), fails=1)
        other = nap(0.1, "other")
    run = flow.run(executor="threads", max_workers=1)

    assert run.ok
    history = run[retried].history
    assert len(history) == 2
    other_attempt = run[other].history[0]
    assert other_attempt.start >= history[0].end
    assert other_attempt.end <= history[1].start


# -- triggers and signals --------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_failed_upstream_makes_a_default_task_upstream_failed(executor):
    with Flow("default-trigger") as flow:
        bad = boom()
        after = inc(bad)
        later = inc(after)
    run = run_on(flow, executor)

    assert run[bad].state is State.FAILED
    assert run[after].state is State.UPSTREAM_FAILED
    assert run[later].state is State.UPSTREAM_FAILED
    assert run[after].attempts == 0
    assert "boom" in run[after].reason
    assert run.state is State.FAILED
    assert not run.ok


@task(cache=False)
def listed() -> list[int]:
    return [1, 2]


@task(cache=False)
def size(items: frozenset[object]) -> int:
    return len(items)


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_a_task_whose_inputs_cannot_be_built_fails_with_the_reason_and_its_downstream_does_not_run(
    executor,
):
    # A list cannot go in a frozenset: building the inputs raises, after the upstream
    # task succeeded (the node is plain, and made ready where its upstream ends).
    with Flow("inputs-fail") as flow:
        up = listed()
        bad = size(frozenset([up]))
        after = inc(bad)
        fine = inc(inc(1))
    run = run_on(flow, executor)

    assert run[up].state is State.SUCCESS
    assert run[bad].state is State.FAILED
    assert run[bad].attempts == 0
    assert run[bad].reason.startswith("could not build its inputs: ")
    assert "unhashable type: 'list'" in run[bad].reason
    assert isinstance(run[bad].error, TypeError)
    assert run[after].state is State.UPSTREAM_FAILED
    assert run.result(fine) == 3
    assert run.state is State.FAILED


@pytest.mark.parametrize("executor", EXECUTORS)
def test_all_finished_task_receives_the_upstream_exception(executor):
    with Flow("all-finished") as flow:
        bad = boom()
        good = inc(1)
        on_bad = describe(bad)
        on_good = describe(good)
    run = run_on(flow, executor)

    assert run[on_bad].state is State.SUCCESS
    assert run.result(on_bad) == ("error", "ValueError", "boom went the task")
    assert run.result(on_good) == ("value", 2)
    # The terminal tasks decide the run's state: both ran, so it succeeded; the
    # failed upstream is still listed.
    assert run.state is State.SUCCESS
    assert [r.name for r in run.failed] == ["boom"]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_any_failed_runs_only_when_an_upstream_failed(executor):
    with Flow("any-failed") as flow:
        bad = boom()
        good = inc(1)
        alarm = on_any_failure(bad, good)
        quiet = on_any_failure(good, inc(2))
    run = run_on(flow, executor)

    assert run[alarm].state is State.SUCCESS
    assert run.result(alarm) == "ran"
    assert run[quiet].state is State.SKIPPED
    assert run[quiet].attempts == 0
    assert "any_failed" in run[quiet].reason
    assert run.result(quiet) is None


@pytest.mark.parametrize("executor", EXECUTORS)
def test_all_failed_runs_only_when_every_upstream_failed(executor):
    with Flow("all-failed") as flow:
        first = boom()
        second = boom()
        good = inc(1)
        both = on_all_failed(first, second)
        mixed = on_all_failed(first, good)
    run = run_on(flow, executor)

    assert run[both].state is State.SUCCESS
    assert run.result(both) == ["ValueError", "ValueError"]
    # Not met, with a failed upstream: the failure is carried on (Prefect's TriggerFailed).
    assert run[mixed].state is State.UPSTREAM_FAILED
    assert "all_failed" in run[mixed].reason
    assert "upstream 'boom' failed" in run[mixed].reason
    assert not run.ok


@pytest.mark.parametrize("executor", EXECUTORS)
def test_any_successful_runs_when_one_upstream_succeeded(executor):
    with Flow("any-successful") as flow:
        bad = boom()
        good = inc(1)
        some = on_any_success(bad, good)
        none = on_any_success(bad, boom())
    run = run_on(flow, executor)

    assert run[some].state is State.SUCCESS
    assert run.result(some) == ["ValueError", 2]
    assert run[none].state is State.UPSTREAM_FAILED
    assert "any_successful" in run[none].reason


@pytest.mark.parametrize("executor", EXECUTORS)
def test_skip_signal_skips_the_task_and_its_downstream(executor):
    with Flow("skip") as flow:
        skipped = skipper("nothing to do today")
        after = inc(skipped)
        other = inc(1)
    run = run_on(flow, executor)

    assert run[skipped].state is State.SKIPPED
    assert run[skipped].reason == "nothing to do today"
    assert run[after].state is State.SKIPPED
    assert run[after].attempts == 0
    assert run.result(other) == 2
    assert run.result(skipped) is None
    assert run.ok
    assert run.state is State.SUCCESS


@pytest.mark.parametrize("executor", EXECUTORS)
def test_fail_signal_fails_at_once_without_retries(executor, tmp_path):
    with Flow("fail") as flow:
        node = failer(str(tmp_path / "n"))
    run = run_on(flow, executor)

    assert run[node].state is State.FAILED
    assert run[node].attempts == 1
    assert count(tmp_path / "n") == 1
    assert isinstance(run[node].error, FAIL)
    assert "given up on purpose" in str(run[node].error)
    with pytest.raises(FAIL, match="given up on purpose"):
        run.result(node)


def test_run_is_ok_when_every_task_succeeded_or_was_skipped():
    with Flow("ok") as flow:
        inc(1)
        skipper("not needed")
    run = flow.run(executor="threads")
    assert run.ok
    assert run.state is State.SUCCESS
    assert sorted(r.state.value for r in run.task_runs) == ["skipped", "success"]

    with Flow("not-ok") as flow:
        inc(1)
        boom()
    assert not flow.run(executor="threads").ok


# -- mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_map_over_a_literal_list_makes_one_child_per_element(executor):
    with Flow("map-literal") as flow:
        xs = inc.map([1, 2, 3])
    run = run_on(flow, executor)

    assert run.result(xs) == [2, 3, 4]
    assert [c.name for c in run[xs].children] == ["inc[0]", "inc[1]", "inc[2]"]
    assert [c.map_index for c in run[xs].children] == [0, 1, 2]
    assert run["inc[2]"].state is State.SUCCESS
    assert run.result("inc[2]") == 4
    assert run[xs].state is State.SUCCESS


@pytest.mark.parametrize("executor", EXECUTORS)
def test_map_over_an_upstream_result_makes_as_many_children_as_it_has_items(executor):
    with Flow("map-dynamic") as flow:
        items = make_list(4)
        xs = inc.map(items)
        s = total(xs)
    run = run_on(flow, executor)

    assert len(run[xs].children) == 4
    assert run.result(xs) == [1, 2, 3, 4]
    assert run.result(s) == 10
    assert run["inc[3]"].state is State.SUCCESS


@pytest.mark.parametrize("executor", EXECUTORS)
def test_several_mapped_arguments_are_zipped(executor):
    with Flow("zip") as flow:
        ys = make_list(3)
        sums = add.map([1, 2, 3], ys)
        keyword = add.map(x=[10, 20], y=[1, 2])
    run = run_on(flow, executor)

    assert run.result(sums) == [1, 3, 5]
    assert run.result(keyword) == [11, 22]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_mapping_over_inputs_of_different_lengths_fails_naming_the_lengths(executor):
    with Flow("zip-mismatch") as flow:
        ys = make_list(2)
        sums = add.map([1, 2, 3], ys)
        after = total(sums)
    run = run_on(flow, executor)

    assert run[sums].state is State.FAILED
    assert run[after].state is State.UPSTREAM_FAILED
    message = str(run[sums].error)
    assert "has 3" in message
    assert "has 2" in message
    assert "unmapped" in message
    with pytest.raises(ValueError, match="different lengths"):
        run.result(sums)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_unmapped_arguments_are_the_same_for_every_child(executor):
    with Flow("unmapped") as flow:
        offset = inc(99)
        constant = add.map([1, 2, 3], unmapped(10))
        from_node = add.map([1, 2], unmapped(offset))
        whole_list = add.map([[0], [1]], unmapped([7, 8]))
    run = run_on(flow, executor)

    assert run.result(constant) == [11, 12, 13]
    assert run.result(from_node) == [101, 102]
    assert run.result(whole_list) == [[0, 7, 8], [1, 7, 8]]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_map_over_a_mapped_node_is_element_wise(executor):
    with Flow("map-of-map") as flow:
        first = inc.map([1, 2, 3])
        second = inc.map(first)
    run = run_on(flow, executor)

    assert run.result(second) == [3, 4, 5]
    assert run["inc-2[1]"].state is State.SUCCESS
    assert run.result("inc-2[1]") == 4


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_map_over_a_mapped_node_has_no_barrier(executor):
    # first[1] sleeps 0.5 s, the other children 0.05 s: second[0] must not wait for it.
    with Flow("no-barrier") as flow:
        first = slow_by_element.map([0, 1, 2])
        second = inc.map(first)
    run = run_on(flow, executor, max_workers=3) if executor == "threads" else run_on(flow, executor)

    assert run.result(second) == [1, 2, 3]
    slowest = run[first].children[1]
    assert run[second].children[0].start < slowest.end
    assert run[second].children[0].end < slowest.end


@pytest.mark.parametrize("executor", EXECUTORS)
def test_each_mapped_child_retries_on_its_own(executor, tmp_path):
    paths = [str(tmp_path / f"child{i}") for i in range(3)]
    with Flow("map-retries") as flow:
        xs = flaky.with_options(retries=2).map(paths, [0, 1, 2])
    run = run_on(flow, executor)

    assert run.ok
    assert run.result(xs) == [1, 2, 3]
    assert [c.attempts for c in run[xs].children] == [1, 2, 3]
    assert [count(Path(p)) for p in paths] == [1, 2, 3]
    assert run[xs].attempts == 6


@pytest.mark.parametrize("executor", EXECUTORS)
def test_map_over_an_empty_list_makes_no_children_and_a_reduce_gets_an_empty_list(executor):
    with Flow("empty-map") as flow:
        items = make_list(0)
        xs = inc.map(items)
        literal = inc.map([])
        s = ident(xs)
        t = ident(literal)
    run = run_on(flow, executor)

    assert run.ok
    assert run[xs].children == []
    assert run.result(xs) == []
    assert run.result(s) == []
    assert run.result(t) == []


@pytest.mark.parametrize("executor", EXECUTORS)
def test_failed_child_fails_only_its_own_branch(executor):
    with Flow("branch") as flow:
        first = fail_at.map([0, 1, 2, 3], unmapped(2))
        second = inc.map(first)
        reduced = total(second)
        report = collect(second)
    run = run_on(flow, executor)

    assert [c.state for c in run[first].children] == [
        State.SUCCESS,
        State.SUCCESS,
        State.FAILED,
        State.SUCCESS,
    ]
    assert [c.state for c in run[second].children] == [
        State.SUCCESS,
        State.SUCCESS,
        State.UPSTREAM_FAILED,
        State.SUCCESS,
    ]
    assert run.result("inc[3]") == 31
    assert run[reduced].state is State.UPSTREAM_FAILED
    assert run[report].state is State.SUCCESS
    assert run.result(report) == [1, 11, "UpstreamFailedError", 31]
    assert run.state is State.FAILED
    with pytest.raises(ValueError, match="element 2 is bad"):
        run.result(first)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_all_finished_reduce_gets_the_exception_at_the_failed_position(executor):
    with Flow("reduce-errors") as flow:
        first = fail_at.map([0, 1, 2], unmapped(1))
        report = collect(first)
    run = run_on(flow, executor)

    assert run.result(report) == [0, "ValueError", 20]


# -- dynamic scheduling ---------------------------------------------------------------------


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_fast_chain_goes_on_while_a_slow_task_of_the_first_level_runs(executor):
    with Flow("two-chains") as flow:
        slow = nap(0.5, 1)
        fast = nap(0.05, 2)
        fast_next = ident(fast)
        slow_next = ident(slow)
        add(fast_next, slow_next)  # joins the two chains: a diamond
    run = run_on(flow, executor, max_workers=2)

    assert run.ok
    assert run[fast_next].start < run[slow].end
    assert run[fast_next].end < run[slow].end


# -- hooks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_task_hooks_are_called_with_the_task_and_its_run(executor, tmp_path):
    calls = []

    def record(kind):
        def hook(task_, task_run):
            calls.append((kind, task_.name, task_run.name, task_run.state, task_run.attempts))

        return hook

    hooks = {
        "on_success": record("success"),
        "on_failure": record("failure"),
        "on_retry": record("retry"),
    }
    with Flow("hooks") as flow:
        good = flaky.with_options(retries=2, **hooks)(str(tmp_path / "good"), fails=1)
        bad = flaky.with_options(name="bad", retries=2, **hooks)(str(tmp_path / "bad"), fails=9)
    run = run_on(flow, executor)

    assert run[good].state is State.SUCCESS
    assert run[bad].state is State.FAILED
    assert sorted(c for c in calls if c[1] == "flaky") == [
        ("retry", "flaky", "flaky", State.RETRYING, 1),
        ("success", "flaky", "flaky", State.SUCCESS, 2),
    ]
    assert [c for c in calls if c[1] == "bad"] == [
        ("retry", "bad", "bad", State.RETRYING, 1),
        ("retry", "bad", "bad", State.RETRYING, 2),
        ("failure", "bad", "bad", State.FAILED, 3),
    ]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_flow_hooks_are_called_with_the_flow_and_its_run(executor):
    calls = []

    def on_success(flow, flow_run):
        calls.append(("success", flow.name, flow_run.state, flow_run.result(node)))

    def on_failure(flow, flow_run):
        calls.append(("failure", flow.name, flow_run.state, [r.name for r in flow_run.failed]))

    with Flow("good-flow", on_success=on_success, on_failure=on_failure) as good_flow:
        node = inc(1)
    with Flow("bad-flow", on_success=on_success, on_failure=on_failure) as bad_flow:
        boom()
    good_run = run_on(good_flow, executor)
    bad_run = run_on(bad_flow, executor)

    assert good_run.ok and not bad_run.ok
    assert calls == [
        ("success", "good-flow", State.SUCCESS, 2),
        ("failure", "bad-flow", State.FAILED, ["boom"]),
    ]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_hook_that_raises_is_logged_and_does_not_change_the_outcome(executor, caplog):
    def broken_hook(task_, task_run):
        raise RuntimeError("hook is broken")

    def broken_flow_hook(flow, flow_run):
        raise RuntimeError("flow hook is broken")

    with Flow("broken-hooks", on_success=broken_flow_hook) as flow:
        node = inc.with_options(on_success=broken_hook)(1)
        after = inc(node)
    with caplog.at_level(logging.WARNING, logger="nbflow"):
        run = run_on(flow, executor)

    assert run.ok
    assert run[node].state is State.SUCCESS
    assert run.result(after) == 3
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("nbflow")]
    assert any("broken_hook" in m for m in messages), messages
    assert any("broken_flow_hook" in m for m in messages), messages


class _RunsInSubmit:
    """An executor that runs each attempt inside ``submit`` though it says it is not
    inline (against the protocol): the engine must still not recurse per task."""

    name = "runs-in-submit"
    inline = False

    def submit(self, attempt):
        from nbflow.executor.worker import Promise, execute

        future = Promise()
        future.set_result(execute(attempt))
        return future

    def shutdown(self, cancel: bool = False) -> None:
        pass


def test_a_long_chain_on_an_executor_that_runs_attempts_in_submit_does_not_recurse():
    import sys

    n = sys.getrecursionlimit() * 3
    with Flow("runs-in-submit") as flow:
        x = inc(0)
        for _ in range(n - 1):
            x = inc(x)
    run = flow.run(executor=_RunsInSubmit(), store=False)
    assert run.ok
    assert run.result(x) == n
    assert run.counts() == {"success": n}


def test_a_chain_on_threads_tells_each_task_running_then_finished_in_order():
    """A task made ready by the end of its only upstream task is submitted from the
    thread that ended it: each still reports running before it ends, one attempt each,
    and each starts after its upstream task ended."""
    seen: list[tuple[str, str]] = []
    with Flow("chain-follows") as flow:
        nodes = [inc(0)]
        for _ in range(49):
            nodes.append(inc(nodes[-1]))
    run = flow.run(
        executor="threads",
        max_workers=2,
        store=False,
        listeners=[lambda e: e.task_run and seen.append((e.task_run.name, e.state.value))],
    )
    assert run.ok and run.result(nodes[-1]) == 50
    names = [run[n].name for n in nodes]
    assert seen == [(name, s) for name in names for s in ("running", "success")]
    assert all(run[n].attempts == 1 and len(run[n].history) == 1 for n in nodes)
    for before, after in pairwise(nodes):
        assert run[before].end <= run[after].start
