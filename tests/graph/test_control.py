"""Prefect 1 idioms: parameters, case/merge, flatten, indexing, nout, reference tasks,
SUCCESS/RETRY, some_failed, state-change handlers and process-wide events."""

import logging
import pathlib
import time

import pytest

import nbflow
from nbflow import (
    RETRY,
    SUCCESS,
    Flow,
    Parameter,
    State,
    case,
    flatten,
    merge,
    some_failed,
    task,
)
from nbflow.errors import RunError, TaskDefinitionError

EXECUTORS = ["threads", "processes"]


def _run(flow, executor, **options):
    if executor == "processes":
        options.setdefault("max_workers", 2)
    return flow.run(executor=executor, **options)


@task
def times(x, factor):
    return x * factor


@task(cache=False)
def choose(value):
    return value


@task(cache=False)
def label(text):
    return text


@task(cache=False)
def upto(n):
    return list(range(n))


@task(cache=False)
def square(x):
    return x * x


@task(cache=False)
def record():
    return {"name": "ada", "scores": [3, 5]}


@task(cache=False, nout=2)
def split(xs):
    return xs[: len(xs) // 2], xs[len(xs) // 2 :]


@task(cache=False)
def total(xs):
    return sum(xs)


@task(cache=False)
def explode():
    raise ValueError("broken")


@task(cache=False, trigger="all_finished")
def cleanup(_):
    return "cleaned"


# -- parameters -------------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_parameters_take_defaults_and_values_given_at_run_time(executor):
    with Flow("params") as flow:
        n = Parameter("n", default=2)
        factor = Parameter("factor", default=10)
        out = times(n, factor)
    assert _run(flow, executor).result(out) == 20
    assert _run(flow, executor, parameters={"n": 3}).result(out) == 30
    assert _run(flow, executor, n=4, factor=100).result(out) == 400


def test_parameter_values_are_part_of_the_cache_keys():
    with Flow("param-keys") as flow:
        n = Parameter("n")
        out = times(n, 2)
    first = flow.run(n=1)
    assert first[out].state is State.SUCCESS
    other = flow.run(n=2)
    assert other[out].state is State.SUCCESS and other.result(out) == 4
    again = flow.run(n=1)
    assert again[out].state is State.CACHED and again.result(out) == 2


def test_a_missing_required_parameter_and_an_unknown_one_are_clear_errors():
    with Flow("param-errors") as flow:
        times(Parameter("rows"), Parameter("factor", default=1))
    with pytest.raises(RunError, match=r"needs a value for parameter 'rows'.*rows, factor"):
        flow.run()
    with pytest.raises(RunError, match=r"unexpected option 'row'\. Did you mean 'rows'\?"):
        flow.run(row=3)
    with pytest.raises(RunError, match=r"has no parameter 'colour'\. Its parameters: rows"):
        flow.run(parameters={"rows": 1, "colour": "red"})


def test_a_parameter_name_must_be_an_identifier():
    with pytest.raises(TaskDefinitionError, match="Python identifier"):
        Parameter("two words")


def test_retry_keeps_the_parameters_of_the_run():
    marker = {"fail": True}

    @task(cache=False)
    def flaky(x):
        if marker["fail"]:
            raise RuntimeError("not yet")
        return x + 1

    with Flow("param-retry") as flow:
        out = flaky(Parameter("x"))
    run = flow.run(x=41)
    assert not run.ok
    marker["fail"] = False
    assert run.retry().result(out) == 42


# -- case, merge, skip_on_upstream_skip -------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize(("value", "expected"), [("a", "took a"), ("b", "took b")])
def test_case_runs_only_the_branch_taken_and_merge_returns_its_value(executor, value, expected):
    with Flow("case") as flow:
        which = choose(value)
        with case(which, "a"):
            a = label("took a")
        with case(which, "b"):
            b = label("took b")
        out = merge(a, b)
    run = _run(flow, executor)
    assert run.result(out) == expected
    skipped = b if value == "a" else a
    assert run[skipped].state is State.SKIPPED
    assert "case not taken" in run[skipped].reason or "skipped" in run[skipped].reason
    assert run.ok


def test_a_task_can_join_skipped_branches_with_skip_on_upstream_skip_false():
    @task(cache=False, skip_on_upstream_skip=False)
    def report(a, b):
        return f"a={a} b={b}"

    @task(cache=False)
    def after_skip(a):
        return a

    with Flow("join") as flow:
        which = choose("a")
        with case(which, "a"):
            a = label("yes")
        with case(which, "b"):
            b = label("no")
        joined = report(a, b)
        plain = after_skip(b)
    run = flow.run(executor="sequential")
    assert run.result(joined) == "a=yes b=None"
    assert run[plain].state is State.SKIPPED


def test_nested_cases_need_both_conditions():
    with Flow("nested") as flow:
        x = choose(1)
        y = choose(2)
        with case(x, 1), case(y, 3):
            inner = label("inner")
    run = flow.run(executor="sequential")
    assert run[inner].state is State.SKIPPED


def test_case_outside_a_flow_is_an_error():
    with pytest.raises(nbflow.errors.FlowError, match="inside 'with Flow"), case(1, 1):
        pass


def test_visualize_shows_the_case_conditions():
    with Flow("drawn-case") as flow:
        which = choose("a")
        with case(which, "a"):
            label("a")
    source = flow.visualize().source
    assert "case(choose == 'a')" in source.replace("&#x27;", "'")


# -- flatten, indexing, nout ---------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_flatten_maps_over_the_items_of_a_mapped_tasks_lists(executor):
    with Flow("flat") as flow:
        nested = upto.map([1, 2, 3])
        squares = square.map(flatten(nested))
        summed = total(squares)
    run = _run(flow, executor)
    assert run.result(squares) == [0, 0, 1, 0, 1, 4]
    assert run.result(summed) == 6
    assert len(run[squares].children) == 6


@pytest.mark.parametrize("executor", EXECUTORS)
def test_indexing_a_node_selects_from_its_result(executor):
    with Flow("index") as flow:
        rec = record()
        name = rec["name"]
        first = rec["scores"][0]
    run = _run(flow, executor)
    assert run.result(name) == "ada"
    assert run.result(first) == 3


def test_indexing_outside_the_flow_block_still_refuses_with_the_usual_message():
    with Flow("index-out") as flow:
        rec = record()
    with pytest.raises(TypeError, match=r"not a value.*flow\.run\(\)"):
        rec["name"]
    assert flow.run().ok


@pytest.mark.parametrize("executor", EXECUTORS)
def test_nout_unpacks_a_task_call_into_several_nodes(executor):
    with Flow("nout") as flow:
        left, right = split([1, 2, 3, 4])
        out = total(right)
    run = _run(flow, executor)
    assert run.result(left) == [1, 2]
    assert run.result(out) == 7


def test_nout_must_be_a_positive_int():
    with pytest.raises(TaskDefinitionError, match="expected nout to be an int >= 1"):
        task(nout=0)(lambda: (1,))


# -- reference tasks -----------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_reference_tasks_decide_the_flow_state(executor):
    with Flow("reference") as flow:
        done = cleanup(explode())
    run = _run(flow, executor)
    # By default the terminal task decides: the cleanup ran, so the run succeeded.
    assert run.ok and run.state is State.SUCCESS
    assert run.result(done) == "cleaned"
    assert [r.name for r in run.failed] == ["explode"]
    flow.set_reference_tasks([flow.node(explode)])
    run = _run(flow, executor)
    assert not run.ok and run.state is State.FAILED
    assert [r.name for r in run.failed] == ["explode"]


def test_set_reference_tasks_needs_tasks_of_the_flow():
    with Flow("reference-errors") as flow:
        cleanup(explode())
    with pytest.raises(nbflow.errors.FlowError, match="has no task named 'nothing'"):
        flow.set_reference_tasks(["nothing"])
    with pytest.raises(nbflow.errors.FlowError, match="expects a list of tasks or nodes"):
        flow.set_reference_tasks(3)


# -- signals and triggers ------------------------------------------------------------------


@pytest.mark.parametrize("executor", EXECUTORS)
def test_success_signal_ends_the_task_with_its_result(executor):
    with Flow("success-signal") as flow:
        out = total(early_exit())
    run = _run(flow, executor)
    assert run.result(out) == 6
    assert run["early_exit"].state is State.SUCCESS


@task(cache=False)
def early_exit():
    raise SUCCESS("already there", result=[1, 2, 3])


@pytest.mark.parametrize("executor", EXECUTORS)
def test_retry_signal_retries_at_once_and_counts_against_retries(executor, tmp_path):
    counter = tmp_path / "attempts"
    with Flow("retry-signal") as flow:
        ok = retry_twice.with_options(retries=2, retry_delay=30)(str(counter))
    run = _run(flow, executor)
    assert run.result(ok) == 3
    assert run[ok].attempts == 3  # the 30 s retry_delay does not apply to RETRY
    counter.unlink()
    with Flow("retry-signal-exhausted") as flow2:
        bad = retry_twice.with_options(retries=1)(str(counter))
    run2 = _run(flow2, executor)
    assert run2[bad].state is State.FAILED and run2[bad].attempts == 2


@task(cache=False)
def retry_twice(path):
    p = pathlib.Path(path)
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    if n < 3:
        raise RETRY(f"attempt {n}: try again")
    return n


@pytest.mark.parametrize(
    ("trigger", "runs"),
    [
        (some_failed(at_least=1), True),
        (some_failed(at_least=2), False),
        (some_failed(at_most=0), False),
        (some_failed(at_least=0.5, at_most=0.5), True),
    ],
)
def test_some_failed_counts_failed_upstream_tasks(trigger, runs):
    @task(cache=False)
    def judge(a, b):
        return "ran"

    with Flow("some-failed") as flow:
        verdict = judge.with_options(trigger=trigger)(explode(), label("fine"))
    run = flow.run(executor="sequential")
    assert (run[verdict].state is State.SUCCESS) is runs
    if not runs:  # an upstream failed: the failure is carried on
        assert run[verdict].state is State.UPSTREAM_FAILED
        assert "some_failed" in run[verdict].reason


def test_some_failed_checks_its_bounds():
    with pytest.raises(TaskDefinitionError, match="float above 1"):
        some_failed(at_least=1.5)


# -- state-change handlers and process-wide events ---------------------------------------


def test_state_change_handlers_are_called_once_per_transition_in_order(tmp_path):
    seen = []
    flow_seen = []

    def on_change(task_, task_run, old, new):
        seen.append((task_run.name, old.value, new.value))

    counter = tmp_path / "n"

    @task(cache=False, retries=1, on_state_change=on_change)
    def flaky():
        n = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(n))
        if n == 1:
            raise OSError("once")
        return n

    with Flow(
        "handlers",
        on_state_change=lambda t, r, old, new: flow_seen.append((type(t).__name__, new.value)),
    ) as flow:
        flaky()
    run = flow.run(executor="threads")
    assert run.ok
    assert seen == [
        ("flaky", "pending", "running"),
        ("flaky", "running", "retrying"),
        ("flaky", "retrying", "running"),
        ("flaky", "running", "success"),
    ]
    assert [v for kind, v in flow_seen if kind == "Task"] == [
        "running",
        "retrying",
        "running",
        "success",
    ]
    # and the run's own changes, as hook(flow, flow_run, old, new)
    assert [v for kind, v in flow_seen if kind == "Flow"] == ["running", "success"]


def test_a_state_change_handler_that_raises_is_logged_and_changes_nothing(caplog):
    def broken(*args):
        raise RuntimeError("handler bug")

    @task(cache=False, on_state_change=broken)
    def fine():
        return 1

    with Flow("handler-raises") as flow:
        node = fine()
    with caplog.at_level(logging.ERROR, logger="nbflow"):
        run = flow.run()
    assert run.ok and run.result(node) == 1
    assert "broken" in caplog.text


def test_process_wide_subscribers_see_every_run_until_they_unsubscribe():
    kinds = []
    unsubscribe = nbflow.events.subscribe(lambda e: kinds.append((e.kind, e.state.value)))
    with Flow("subscribed") as flow:
        label("x")
    flow.run(executor="sequential")
    unsubscribe()
    flow.run(executor="sequential")
    assert kinds[0] == ("run_started", "running")
    assert ("task_state", "success") in kinds
    assert kinds[-1] == ("run_finished", "success")
    assert len([k for k in kinds if k[0] == "run_started"]) == 1


# -- manual_only ---------------------------------------------------------------------------


@task(cache=False)
def prepare():
    return 1


@task(cache=False, trigger="manual_only")
def deploy(x):
    return x + 1


@task(cache=False)
def announce(x):
    return x * 10


@pytest.mark.parametrize("executor", [*EXECUTORS, "sequential"])
def test_a_manual_only_task_waits_for_resume_and_the_run_then_finishes(executor):
    with Flow("manual") as flow:
        waiting = deploy(prepare())
        after = announce(waiting)
        independent = label("done meanwhile")
    run = _run(flow, executor)
    assert run.state is State.PAUSED and not run.done
    assert run[waiting].state is State.PAUSED
    assert run[independent].state is State.SUCCESS
    assert [r.name for r in run.paused] == ["deploy"]
    assert "run.resume('deploy')" in run[waiting].reason
    run.resume(waiting)
    assert run.done and run.ok
    assert run.result(after) == 20


def test_a_background_run_shows_paused_and_resumes_from_another_thread():
    with Flow("manual-bg") as flow:
        after = announce(deploy(prepare()))
    run = flow.run(background=True)
    deadline = time.monotonic() + 10
    while run.state is not State.PAUSED and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.state is State.PAUSED
    run.resume("deploy")
    assert run.wait(10)
    assert run.result(after) == 20


def test_a_manual_only_task_after_a_failure_does_not_wait():
    with Flow("manual-failed") as flow:
        waiting = deploy(explode())
    run = flow.run()
    assert run.done and run[waiting].state is State.UPSTREAM_FAILED


def test_resume_of_a_task_that_is_not_waiting_is_an_error():
    with Flow("manual-wrong") as flow:
        deploy(prepare())
        plain = label("x")
    run = flow.run()
    with pytest.raises(nbflow.NbflowError, match=r"'label' is not waiting.*'deploy'"):
        run.resume(plain)
    run.cancel()
    assert run.state is State.CANCELLED
