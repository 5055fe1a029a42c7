"""Prefect 1.4.1's own tests (tests/core/test_flow.py, tests/test_triggers.py,
tests/tasks/test_control_flow.py, tests/core/test_parameter.py, tests/core/test_task.py),
ported where the behaviour is the same in nbflow: names follow theirs where sensible.

Task functions live at module level so they travel to worker processes.
"""

from __future__ import annotations

import datetime as dt

import pytest

from nbflow import (
    Flow,
    Parameter,
    State,
    case,
    flatten,
    ifelse,
    merge,
    some_successful,
    switch,
    task,
    unmapped,
)
from nbflow.errors import FlowError, TaskDefinitionError
from nbflow.graph.triggers import as_trigger


@task(cache=False)
def identity(x):
    return x


@task(cache=False)
def constant():
    return "constant"


@task(cache=False)
def inc(x):
    return x + 1


@task(cache=False)
def add(x, y):
    return x + y


@task(cache=False)
def boom():
    raise ValueError("boom")


@task(cache=False)
def nested_or_not(x):
    return x


@task(cache=False, skip_on_upstream_skip=False)
def describe(x):
    return f"got {x!r}"


def run_seq(flow, **options):
    return flow.run(executor="sequential", **options)


# -- merge (item 1) ---------------------------------------------------------------------


def test_merge_with_all_branches_skipped_is_skipped_and_so_is_what_follows():
    with Flow("all-skipped") as flow:
        cond = identity("c")
        with case(cond, "a"):
            a = constant()
        with case(cond, "b"):
            b = constant()
        out = merge(a, b)
        after = inc(out)
    run = run_seq(flow)
    assert run[out].state is State.SKIPPED
    assert "every upstream task was skipped" in run[out].reason
    assert run[after].state is State.SKIPPED
    assert run.ok


def test_merge_in_a_case_block_not_taken_is_skipped():
    with Flow("merge-in-case") as flow:
        cond = identity(False)
        outside = identity(1)
        with case(cond, True):
            inner = merge(outside)
    run = run_seq(flow)
    assert run[inner].state is State.SKIPPED
    assert "not taken" in run[inner].reason


def test_merge_in_a_case_block_taken_returns_the_value():
    with Flow("merge-in-taken-case") as flow:
        cond = identity(True)
        outside = identity(1)
        with case(cond, True):
            inner = merge(outside)
    assert run_seq(flow).result(inner) == 1


def test_merge_returns_none_from_a_branch_that_ran_and_returned_none():
    with Flow("merge-none") as flow:
        out = merge(identity(None))
    run = run_seq(flow)
    assert run[out].state is State.SUCCESS
    assert run.result(out) is None


def test_merge_with_a_failed_branch_does_not_run():
    with Flow("merge-failed") as flow:
        out = merge(boom(), identity(1))
        after = inc(out)
    run = run_seq(flow)
    # Prefect 1: TriggerFailed, which the terminal task carries on and the run fails.
    assert run[out].state is State.UPSTREAM_FAILED
    assert "an upstream task did not succeed" in run[out].reason
    assert run[after].state is State.UPSTREAM_FAILED
    assert not run.ok


# -- switch / ifelse ---------------------------------------------------------------------


@pytest.mark.parametrize(("value", "taken"), [("a", 0), ("b", 1), ("c", 2)])
def test_switch(value, taken):
    with Flow("switch") as flow:
        branches = [identity("a"), identity("b"), identity("c")]
        switch(identity(value), dict(zip("abc", branches, strict=True)))
        out = merge(*branches)
    run = run_seq(flow)
    states = [run[b].state for b in branches]
    assert states == [State.SUCCESS if i == taken else State.SKIPPED for i in range(3)]
    assert run.result(out) == value


def test_switch_skips_what_depends_on_a_branch_not_taken():
    with Flow("switch-downstream") as flow:
        a, b = identity("a"), identity("b")
        switch(identity("a"), {"a": a, "b": b})
        after_b = inc(b)
    run = run_seq(flow)
    assert run[after_b].state is State.SKIPPED


def test_switch_takes_tasks_not_yet_in_the_flow():
    with Flow("switch-tasks") as flow:
        switch(identity(1), {1: constant, 2: boom})
    run = run_seq(flow)
    assert run[flow.node(constant)].state is State.SUCCESS
    assert run[flow.node(boom)].state is State.SKIPPED
    assert run.ok


def test_switch_refuses_cases_that_are_not_tasks_before_changing_the_flow():
    with Flow("switch-bad") as flow:
        cond = identity(1)
        with pytest.raises(FlowError, match="the case 2 is 'constant', not a task or a node"):
            switch(cond, {1: constant, 2: "constant"})
    assert flow.tasks == (cond,)


@pytest.mark.parametrize(("condition", "expected"), [(1, "true"), (0, "false"), ([], "false")])
def test_ifelse(condition, expected):
    with Flow("ifelse") as flow:
        yes, no = identity("true"), identity("false")
        ifelse(identity(condition), yes, no)
        out = merge(yes, no)
    assert run_seq(flow).result(out) == expected


def test_ifelse_and_switch_need_a_flow():
    with pytest.raises(FlowError, match=r"ifelse\(\.\.\.\) is used inside 'with Flow"):
        ifelse(identity, constant, boom)


def test_ifelse_on_a_flow_built_imperatively():
    flow = Flow("ifelse-imperative")
    cond = flow.add_task(constant)
    yes = flow.set_dependencies(identity, keyword_tasks={"x": "yes"})
    no = flow.set_dependencies(boom)
    ifelse(cond, yes, no, flow=flow)
    run = run_seq(flow)
    assert run.result(yes) == "yes"
    assert run[no].state is State.SKIPPED


# -- case / merge with flow= -------------------------------------------------------------


def test_case_and_merge_on_a_flow_built_imperatively():
    flow = Flow("case-imperative")
    cond = flow.set_dependencies(identity, keyword_tasks={"x": "b"})
    with case(cond, "a", flow=flow):
        a = flow.add_task(constant)
    with case(cond, "b", flow=flow):
        b = flow.set_dependencies(inc, keyword_tasks={"x": 1})
    out = merge(a, b, flow=flow)
    run = run_seq(flow)
    assert run[a].state is State.SKIPPED
    assert run.result(out) == 2


def test_case_refuses_a_flow_that_is_not_a_flow():
    with pytest.raises(FlowError, match="expected flow= to be a Flow"), case(1, 1, flow="f"):
        pass


# -- flatten (item 2) ----------------------------------------------------------------


def test_flatten_keeps_items_that_are_not_lists():
    with Flow("flatten-plain") as flow:
        values = nested_or_not.map([[1, 2], 3, "ab", {"k": 1}, (4,)])
        out = identity.map(flatten(values))
    assert run_seq(flow).result(out) == [1, 2, 3, "ab", {"k": 1}, 4]


def test_flatten_of_a_list_of_plain_values_is_the_list():
    with Flow("flatten-flat") as flow:
        out = inc.map(flatten(identity([1, 2, 3])))
    assert run_seq(flow).result(out) == [2, 3, 4]


# -- Flow.update (item 3) --------------------------------------------------------------


def test_update_with_a_task_both_flows_share_joins_them_in_one_node():
    shared = identity.with_options(name="shared")
    first = Flow("first")
    first.set_dependencies(shared, keyword_tasks={"x": 1})
    first.add_edge(shared, inc, key="x")
    second = Flow("second")
    second.add_task(shared)
    second.add_edge(shared, describe, key="x")
    first.update(second)
    assert [n.task for n in first.tasks].count(shared) == 1
    run = run_seq(first)
    node = first.node(shared)
    assert set(first.downstream(node)) == {first.node(inc), first.node(describe)}
    assert run.result(first.node(inc)) == 2
    assert run.result(first.node(describe)) == "got 1"


def test_update_keeps_two_calls_of_one_task_with_different_arguments():
    with Flow("a") as a:
        inc(1)
    with Flow("b") as b:
        inc(10)
    a.update(b)
    assert len(a.tasks) == 2
    assert sorted(run_seq(a).result(n) for n in a.tasks) == [2, 11]


def test_update_keeps_two_calls_that_set_the_same_argument():
    first = Flow("k1")
    first.set_dependencies(identity, keyword_tasks={"x": 1})
    second = Flow("k2")
    second.set_dependencies(identity, keyword_tasks={"x": 2})
    first.update(second)
    assert sorted(run_seq(first).result(n) for n in first.tasks) == [1, 2]


def test_update_joins_a_shared_parameter():
    x = Parameter("x", default=3)
    with Flow("p1") as p1:
        one = inc(x)
    with Flow("p2") as p2:
        two = add(x, 10)
    p1.update(p2)
    assert list(p1.parameters()) == ["x"]
    run = run_seq(p1, x=5)
    assert (run.result(one), run.result(two)) == (6, 15)


# -- add_edge (item 4) ----------------------------------------------------------------


def test_add_edge_with_prefect_keywords():
    flow = Flow("edges")
    flow.add_edge(upstream_task=constant, downstream_task=identity, key="x")
    assert run_seq(flow).result(flow.node(identity)) == "constant"


def test_add_edge_into_a_parameter_is_refused():
    flow = Flow("edge-into-param")
    x = Parameter("x", default=1)
    with pytest.raises(FlowError, match="parameter 'x' cannot have upstream tasks"):
        flow.add_edge(constant, x)
    with pytest.raises(FlowError, match="parameter 'x' cannot have upstream tasks"):
        flow.set_dependencies(x, upstream_tasks=[constant])
    with pytest.raises(FlowError, match="parameter 'x' cannot have upstream tasks"):
        flow.set_dependencies(x, keyword_tasks={"value": 3})
    assert flow.edges == ()
    assert flow.tasks == ()


# -- Parameter (item 5) --------------------------------------------------------------


def test_create_parameter_twice_in_one_flow_is_refused():
    with Flow("dup") as flow:
        Parameter("x")
        with pytest.raises(FlowError, match="already has a parameter named 'x'"):
            Parameter("x")
    assert list(flow.parameters()) == ["x"]


def test_a_flows_parameters_follow_tasks_added_after_they_were_asked_for():
    with Flow("grows") as flow:
        inc(Parameter("x", default=1))
    assert list(flow.parameters()) == ["x"]
    flow.parameters().clear()  # a copy: what the flow keeps is not changed
    with flow:
        inc(Parameter("y", default=2))
    assert list(flow.parameters()) == ["x", "y"]
    flow.add_task(Parameter("z", default=3))
    assert list(flow.parameters()) == ["x", "y", "z"]


def test_copying_a_flow_with_a_parameter_keeps_it():
    with Flow("copy") as flow:
        inc(Parameter("x", default=1))
    assert list(flow.copy().parameters()) == ["x"]


def test_calling_a_parameter_returns_it():
    with Flow("called") as flow:
        x = Parameter("x", default=2)
        node = x()
        out = inc(x())
    assert node is flow.node(x)
    assert len(flow.tasks) == 2
    assert run_seq(flow).result(out) == 3


def test_calling_parameter_is_ok():
    with Flow("test") as f:
        Parameter("x")()
    assert len(f.tasks) == 1


def test_call_accepts_flow():
    f = Flow("test")
    node = Parameter("x")(flow=f)
    assert f.tasks == (node,)


def test_call_must_have_a_flow_out_of_context():
    with pytest.raises(FlowError, match=r"Parameter\('x'\)\(\.\.\.\) is used inside 'with Flow"):
        Parameter("x")()


@pytest.mark.parametrize("attr", ["mapped", "task_args", "upstream_tasks"])
def test_call_does_not_accept_most_args(attr):
    x = Parameter("x")
    with pytest.raises(TypeError, match="takes no arguments, but got unexpected keyword"):
        x(**{attr: None})


def test_raise_error_if_two_parameters_have_same_name():
    f = Flow("test")
    f.add_task(Parameter("x"))
    assert "x" in f.parameters()
    with pytest.raises(ValueError, match="already has a parameter named 'x'"):
        f.add_task(Parameter("x"))


def test_create_parameter_with_default_none():
    x = Parameter("x", default=None)
    assert x.default is None
    assert not x.required


# -- triggers (item 6 and the new ones) -----------------------------------------------

S, K, F, U = State.SUCCESS, State.SKIPPED, State.FAILED, State.UPSTREAM_FAILED


@pytest.mark.parametrize(
    ("states", "met"),
    [([S], True), ([K], True), ([K, F], True), ([F, U], False), ([], True)],
)
def test_any_successful(states, met):
    assert as_trigger("any_successful").met(states) is met


@pytest.mark.parametrize(
    ("states", "met"),
    [([S], True), ([S, K], True), ([K, K], False), ([K], False), ([S, F], False), ([], True)],
)
def test_not_all_skipped(states, met):
    assert as_trigger("not_all_skipped").met(states) is met


def test_not_all_skipped_says_why():
    trigger = as_trigger("not_all_skipped")
    assert not trigger.met([K, K])
    assert trigger.why_not([K, K]) == "every upstream task was skipped"


@pytest.mark.parametrize(
    ("bounds", "states", "met"),
    [
        ({"at_least": 1}, [S, F], True),
        ({"at_least": 2}, [S, F], False),
        ({"at_least": 2}, [S, K, F], True),
        ({"at_most": 1}, [S, S], False),
        ({"at_least": 0.5}, [S, F], True),
        ({"at_most": 0.5}, [S, S, F], False),
        ({}, [F, F], False),
    ],
)
def test_some_successful(bounds, states, met):
    assert some_successful(**bounds).met(states) is met


def test_some_successful_refuses_a_float_above_one():
    with pytest.raises(TaskDefinitionError, match=r"some_successful\(\): at_least=1.5"):
        some_successful(at_least=1.5)


def test_any_successful_counts_a_skipped_upstream_in_a_run():
    @task(cache=False, trigger="any_successful", skip_on_upstream_skip=False)
    def either(a, b):
        return "ran"

    with Flow("any-skipped") as flow:
        cond = identity(False)
        with case(cond, True):
            skipped = constant()
        out = either(skipped, boom())
    assert run_seq(flow).result(out) == "ran"


def test_some_successful_trigger_in_a_run():
    @task(cache=False, trigger=some_successful(at_least=2), skip_on_upstream_skip=False)
    def enough(*values):
        return len(values)

    with Flow("some-successful") as flow:
        yes = enough(identity(1), identity(2), boom())
        no = enough(identity(1), boom(), boom())
    run = run_seq(flow)
    assert run.result(yes) == 3
    assert run[no].state is State.UPSTREAM_FAILED
    assert "1 of 3 upstream tasks succeeded, fewer than 2" in run[no].reason


# -- options (item 7) ------------------------------------------------------------------


def test_retry_on_accepts_a_set():
    t = task(retries=1, retry_on={RuntimeError, OSError})(identity.fn)
    assert set(t.retry_on) == {RuntimeError, OSError}
    assert t.retry_on == task(retry_on={OSError, RuntimeError})(identity.fn).retry_on


def test_retry_delay_none_is_no_delay():
    assert task(retries=2, retry_delay=None)(identity.fn).retry_delay == 0.0
    assert task(retry_delay=dt.timedelta(seconds=2))(identity.fn).retry_delay == 2.0


def test_wait_for_takes_unmapped_tasks():
    with Flow("wait-unmapped") as flow:
        first = constant()
        out = inc.map([1, 2], wait_for=[unmapped(first)])
        plain = inc(1, wait_for=[unmapped(first)])
    assert set(flow.upstream(out)) == {first}
    assert set(flow.upstream(plain)) == {first}
    assert run_seq(flow).result(out) == [2, 3]


# -- membership (item 9) ---------------------------------------------------------------


def test_a_task_of_the_flow_is_in_flow_tasks():
    with Flow("membership") as flow:
        node = inc(1)
    assert inc in flow.tasks
    assert node in flow.tasks
    assert add not in flow.tasks
    assert flow.tasks == (node,)


# -- chain, set_upstream / set_downstream, set_dependencies(downstream_tasks=) --------------


def test_chain():
    flow = Flow("chain")
    a, b, c = (flow.add_task(constant, new=True) for _ in range(3))
    edges = flow.chain(a, b, c)
    assert [(e.upstream, e.downstream) for e in edges] == [(a, b), (b, c)]
    assert flow.sorted() == (a, b, c)


def test_chain_needs_two_tasks():
    with pytest.raises(FlowError, match="two or more"):
        Flow("short").chain(constant)


def test_set_upstream_and_set_downstream_with_flow():
    flow = Flow("set-up-down")
    identity.set_upstream(constant, flow=flow, key="x")
    constant.set_downstream(boom, flow=flow)
    assert flow.upstream(identity) == (flow.node(constant),)
    assert flow.downstream(constant) == (flow.node(identity), flow.node(boom))
    assert run_seq(flow).result(flow.node(identity)) == "constant"


def test_set_upstream_on_a_node_in_a_flow_block():
    with Flow("node-set-upstream") as flow:
        first = constant()
        second = inc(1)
        second.set_upstream(first)
    assert flow.upstream(second) == (first,)


@pytest.mark.parametrize("method", ["set_upstream", "set_downstream"])
def test_set_upstream_and_downstream_return_the_node_for_chaining(method):
    with Flow("chaining") as flow:
        a, b = constant(), inc(1)
        assert getattr(b, method)(a) is b
        assert b.set_dependencies(upstream_tasks=[constant()]) is b
        assert identity.set_dependencies(flow, keyword_tasks={"x": 1}) is identity
    assert len(flow.edges) == 2  # a constant argument is not an edge
    assert flow.call(identity).kwargs == {"x": 1}


def test_set_upstream_with_properties():
    flow = Flow("props")
    numbers = flow.set_dependencies(identity, keyword_tasks={"x": [1, 2]})
    inc.set_upstream(numbers, flow=flow, key="x", mapped=True)
    describe.set_upstream(constant, flow=flow, key="x")
    run = run_seq(flow)
    assert run.result(flow.node(inc)) == [2, 3]
    assert run.result(flow.node(describe)) == "got 'constant'"
    assert [e.mapped for e in flow.edges if e.key] == [True, False]


def test_set_upstream_needs_a_flow():
    with pytest.raises(FlowError, match=r"set_upstream\(other, flow=flow\)"):
        identity.set_upstream(constant)


def test_set_dependencies_with_downstream_tasks():
    flow = Flow("downstream-tasks")
    node = flow.set_dependencies(constant, downstream_tasks=[boom, identity])
    assert flow.downstream(node) == (flow.node(boom), flow.node(identity))


# -- operators on nodes --------------------------------------------------------------


def test_operators_on_nodes_build_tasks():
    with Flow("operators") as flow:
        x = identity(6)
        y = identity(3)
        results = {
            "add": x + 1,
            "radd": 1 + x,
            "sub": x - y,
            "rsub": 10 - x,
            "mul": x * y,
            "div": x / y,
            "floordiv": x // 4,
            "mod": x % 4,
            "pow": y**2,
            "rpow": 2**y,
            "lt": x < y,
            "ge": x >= y,
            "and": x & y,
            "rand": 0 & x,
            "is_equal": x.is_equal(6),
            "is_not_equal": x.is_not_equal(y),
            "not": x.not_(),
            "and_": x.and_(0),
            "or_": y.or_(0),
            "sum": x + y,
        }
    run = run_seq(flow)
    assert {k: run.result(v) for k, v in results.items()} == {
        "add": 7,
        "radd": 7,
        "sub": 3,
        "rsub": 4,
        "mul": 18,
        "div": 2.0,
        "floordiv": 1,
        "mod": 2,
        "pow": 9,
        "rpow": 8,
        "lt": False,
        "ge": True,
        "and": 3,
        "rand": 0,
        "is_equal": True,
        "is_not_equal": True,
        "not": False,
        "and_": 0,
        "or_": 3,
        "sum": 9,
    }
    assert flow.name_of(results["add"]) == "identity + 1"


def test_a_pipe_makes_an_ordering_edge_as_in_prefect():
    with Flow("pipe") as flow:
        a, b, c = constant(), inc(1), inc(2)
        returned = a | b | c
    assert returned is c
    assert flow.upstream(b) == (a,)
    assert flow.upstream(c) == (b,)
    assert all(e.key is None for e in flow.edges)


def test_a_pipe_from_a_task_to_a_node():
    with Flow("pipe-task") as flow:
        b = inc(1)
        assert (constant | b) is b
    assert flow.upstream(b) == (flow.node(constant),)


def test_equality_of_nodes_stays_identity():
    with Flow("eq") as flow:
        x = identity(1)
    assert x == x
    assert x != flow.add_task(constant)
    assert {x: 1}[x] == 1


def test_bool_of_a_node_is_still_refused():
    with Flow("bool"):
        x = identity(1)
        with pytest.raises(TypeError, match="a truth test"):
            bool(x < 2)


# -- flow state handlers -----------------------------------------------------------------


def test_flow_state_handlers_are_called_on_the_flows_transitions():
    seen = []

    def handler(flow, old, new):
        seen.append((flow.name, old, new))
        return new

    with Flow("handled", state_handlers=[handler]) as flow:
        boom()
    flow.run(executor="sequential")
    assert seen == [
        ("handled", State.PENDING, State.RUNNING),
        ("handled", State.RUNNING, State.FAILED),
    ]


def test_flow_state_handlers_see_the_flow_not_the_run_copy_with_parameters():
    seen = []
    with Flow("handled-params", state_handlers=lambda f, old, new: seen.append(f)) as flow:
        inc(Parameter("x", default=1))
    flow.run(executor="sequential", x=2)
    assert seen == [flow, flow]


def test_a_failing_flow_state_handler_is_logged_and_changes_nothing(caplog):
    def broken(flow, old, new):
        raise RuntimeError("handler broke")

    with Flow("broken-handler", state_handlers=broken) as flow:
        out = inc(1)
    run = flow.run(executor="sequential")
    assert run.ok
    assert run.result(out) == 2
    assert "state handler" in caplog.text
    assert "broken-handler" in caplog.text


def test_flow_state_handlers_must_be_callable():
    with pytest.raises(FlowError, match="state_handlers to be a callable"):
        Flow("bad-handlers", state_handlers=["not callable"])


# -- tests/tasks/test_control_flow.py -------------------------------------------------


@task(cache=False)
def success_task():
    return 1


@task(cache=False)
def skip_task():
    from nbflow import SKIP

    raise SKIP("not today")


def _branch(name):
    return success_task.with_options(name=name)


@pytest.mark.parametrize("condition_value", [True, False])
def test_ifelse_doesnt_add_None_task(condition_value):  # noqa: N802 - Prefect's name
    true_branch = _branch("true branch")
    with Flow("test") as flow:
        ifelse(identity(condition_value), true_branch, None)
    run = run_seq(flow)
    expected = State.SUCCESS if condition_value else State.SKIPPED
    assert run[flow.node(true_branch)].state is expected
    assert len(flow.tasks) == 4  # identity, bool, one condition, the branch


@pytest.mark.parametrize("condition_value", [1, "a", "False", True, [1], {1: 2}])
def test_ifelse_with_truthy_conditions(condition_value):
    true_branch, false_branch = _branch("true branch"), _branch("false branch")
    with Flow("test") as flow:
        ifelse(identity(condition_value), true_branch, false_branch)
    run = run_seq(flow)
    assert run[flow.node(true_branch)].state is State.SUCCESS
    assert run[flow.node(false_branch)].state is State.SKIPPED


@pytest.mark.parametrize("condition_value", [0, "", None, False, [], {}])
def test_ifelse_with_falsey_conditions(condition_value):
    true_branch, false_branch = _branch("true branch"), _branch("false branch")
    with Flow("test") as flow:
        ifelse(identity(condition_value), true_branch, false_branch)
    run = run_seq(flow)
    assert run[flow.node(true_branch)].state is State.SKIPPED
    assert run[flow.node(false_branch)].state is State.SUCCESS


@pytest.mark.parametrize("condition_value", ["a", "b", "c", "d", "x"])
def test_switch_with_four_cases(condition_value):
    branches = {key: _branch(key) for key in "abcd"}
    with Flow("test") as flow:
        switch(identity(condition_value), branches)
        assert len(flow.tasks) == 9
    run = run_seq(flow)
    for key, branch in branches.items():
        expected = State.SUCCESS if key == condition_value else State.SKIPPED
        assert run[flow.node(branch)].state is expected
    assert run.ok


def test_merging_diamond_flow():
    true_branch = [_branch(f"true branch {i}") for i in range(3)]
    false_branch = [_branch(f"false branch {i}") for i in range(3)]
    with Flow("test") as flow:
        ifelse(identity(True), true_branch[0], false_branch[0])
        flow.chain(*true_branch)
        flow.chain(*false_branch)
        merge_task = merge(flow.node(true_branch[-1]), flow.node(false_branch[-1]))
    run = run_seq(flow)
    assert all(run[flow.node(t)].state is State.SUCCESS for t in true_branch)
    assert all(run[flow.node(t)].state is State.SKIPPED for t in false_branch)
    assert run[merge_task].state is State.SUCCESS


def test_merge_imperative_flow():
    flow = Flow("test")
    cond = flow.set_dependencies(identity, keyword_tasks={"x": True})
    with case(cond, True, flow=flow):
        a = flow.set_dependencies(inc, keyword_tasks={"x": 1})
    with case(cond, False, flow=flow):
        b = flow.set_dependencies(add, keyword_tasks={"x": 2, "y": 1})
    c = merge(a, b, flow=flow)
    run = run_seq(flow)
    assert run.result(cond) is True
    assert run.result(a) == 2
    assert run[b].state is State.SKIPPED
    assert run.result(c) == 2


class SpecialObject:
    def __eq__(self, other):
        return self

    __hash__ = object.__hash__

    def __bool__(self):
        raise SyntaxError("You can't handle the truth!")


@task(cache=False)
def return_special():
    return SpecialObject()


def test_merging_with_objects_that_cant_be_equality_compared():
    success = _branch("success")
    with Flow("test-merge") as flow:
        ifelse(identity(False), success, return_special)
        merge_task = merge(flow.node(success), flow.node(return_special))
    run = run_seq(flow)
    assert run.ok
    assert isinstance(run.result(merge_task), SpecialObject)


def test_merging_skips_if_all_upstreams_skip():
    with Flow("skipper") as flow:
        merge_task = merge(skip_task(), skip_task())
    run = run_seq(flow)
    assert run.ok
    assert run[merge_task].state is State.SKIPPED
    assert run.result(merge_task) is None


def test_list_of_tasks_as_a_case_each_waits_for_the_condition():
    true_branch = [_branch("t1"), _branch("t2")]
    false_branch = _branch("f")
    with Flow("test") as flow:
        ifelse(identity(False), true_branch, false_branch)
    run = run_seq(flow)
    assert [run[flow.node(t)].state for t in true_branch] == [State.SKIPPED] * 2
    assert run[flow.node(false_branch)].state is State.SUCCESS


@pytest.mark.parametrize(("condition", "expected"), [(True, 1), (False, 0)])
def test_merge_diamond_flow_with_results(condition, expected):
    @task(cache=False)
    def true_branch():
        return 1

    @task(cache=False)
    def false_branch():
        return 0

    with Flow("test") as flow:
        ifelse(identity(condition), true_branch, false_branch)
        merge_task = merge(flow.node(true_branch), flow.node(false_branch))
    assert run_seq(flow).result(merge_task) == expected


def test_merge_can_distinguish_between_a_none_result_and_an_unrun_task():
    @task(cache=False)
    def true_branch():
        return None

    @task(cache=False)
    def false_branch():
        return 0

    with Flow("test") as flow:
        ifelse(identity(True), true_branch, false_branch)
        merge_task = merge(flow.node(true_branch), flow.node(false_branch))
    run = run_seq(flow)
    assert run[merge_task].state is State.SUCCESS
    assert run.result(merge_task) is None


def test_merge_with_list():
    with Flow("test") as flow:
        out = merge(identity([1, 2]), identity(0))
    assert run_seq(flow).result(out) == [1, 2]


def test_merge_order():
    with Flow("test") as flow:
        merge_task = merge(identity("x"), identity("y"))
    assert run_seq(flow).result(merge_task) == "x"


def test_case_errors():
    with Flow("test"), pytest.raises(TypeError, match="compares with a plain value"):  # noqa: SIM117
        with case(identity(True), identity(False)):
            pass


@pytest.mark.parametrize("branch", ["a", "b", "c"])
def test_case_execution(branch):
    with Flow("test") as flow:
        cond = identity(branch)
        with case(cond, "a"):
            a = identity(1)
            b = inc(a)
        with case(cond, "b"):
            c = identity(3)
            d = inc(c)
        e = merge(b, d)
    run = run_seq(flow)
    expected = {"a": {a: 1, b: 2, e: 2}, "b": {c: 3, d: 4, e: 4}, "c": {}}[branch]
    for node in (a, b, c, d, e):
        if node in expected:
            assert run.result(node) == expected[node]
        else:
            assert run[node].state is State.SKIPPED


@pytest.mark.parametrize("branch1", [True, False])
@pytest.mark.parametrize("branch2", [True, False])
def test_nested_case_execution(branch1, branch2):
    with Flow("test") as flow:
        cond1 = identity(branch1)
        a = identity(0)
        with case(cond1, True):
            cond2 = identity(branch2)
            b = identity(10)
            with case(cond2, True):
                c = inc(a)
                d = inc(c)
            with case(cond2, False):
                e = inc(b)
                f = inc(e)
            g = merge(d, f)
        with case(cond1, False):
            h = identity(3)
            i = inc(h)
        j = merge(g, i)
    run = run_seq(flow)
    sol = {a: 0, cond1: branch1}
    if branch1:
        sol[cond2] = branch2
        sol[b] = 10
        if branch2:
            sol[c] = 1
            sol[d] = sol[g] = sol[j] = 2
        else:
            sol[e] = 11
            sol[f] = sol[g] = sol[j] = 12
    else:
        sol[h] = 3
        sol[i] = sol[j] = 4
    for node in (cond1, cond2, a, b, c, d, e, f, g, h, i, j):
        if node in sol:
            assert run.result(node) == sol[node]
        else:
            assert run[node].state is State.SKIPPED


# -- tests/core/test_flow.py -----------------------------------------------------------


def _plain(name):
    return constant.with_options(name=name)


def test_add_edge():
    f = Flow("test")
    t1, t2 = _plain("t1"), _plain("t2")
    f.add_edge(upstream_task=t1, downstream_task=t2)
    assert f.upstream(t2) == (f.node(t1),)
    assert f.upstream(t1) == ()
    assert f.downstream(t2) == ()
    assert f.downstream(t1) == (f.node(t2),)


def test_add_edge_raise_error_for_downstream_parameter():
    f = Flow("test")
    with pytest.raises(ValueError, match="cannot have upstream tasks"):
        f.add_edge(upstream_task=_plain("t"), downstream_task=Parameter("p"))


def test_add_edge_returns_edge():
    f = Flow("test")
    t1, t2 = _plain("t1"), _plain("t2")
    edge = f.add_edge(upstream_task=t1, downstream_task=t2)
    assert edge in f.edges
    assert (edge.upstream.task, edge.downstream.task, edge.key) == (t1, t2, None)


def test_chain_of_four():
    f = Flow("test")
    tasks = [_plain(f"t{i}") for i in range(4)]
    edges = f.chain(*tasks)
    assert set(f.tasks) == {f.node(t) for t in tasks}
    assert set(f.edges) == set(edges)


def test_splatting_chain_works_in_flow_context_without_duplication():
    with Flow("test") as f:
        f.chain(*[constant() for _ in range(10)])
    assert len(f.tasks) == 10
    assert len(f.edges) == 9


def test_chain_works_in_flow_context_without_duplication():
    with Flow("test") as f:
        f.chain(constant(), constant(), constant(), _plain("t"))
    assert len(f.tasks) == 4
    assert len(f.edges) == 3


def test_update():
    f1, f2 = Flow("test"), Flow("test")
    t1, t2, t3 = _plain("t1"), _plain("t2"), _plain("t3")
    f1.add_edge(t1, t2)
    f2.add_edge(t2, t3)
    f2.update(f1)
    assert {n.task for n in f2.tasks} == {t1, t2, t3}
    assert len(f2.tasks) == 3
    assert len(f2.edges) == 2
    assert run_seq(f2).ok


def test_update_with_constants():
    with Flow("math") as f:
        x = Parameter("x")
        d = x["d"] + 4
    new_flow = Flow("test")
    new_flow.update(f)
    run = run_seq(new_flow, x={"d": 42})
    assert run.ok
    assert run.result(d) == 46


@task(cache=False)
def add_one(a_number):
    return a_number + 1


@task(cache=False)
def mult_one(z):
    return z * 1


@task(cache=False)
def sub_one(a_number, another_number):
    return a_number - another_number


def test_update_with_parameter_merge():
    with Flow("Add") as add_fl:
        pos_two = mult_one(add_one(Parameter("a_number", default=1)))
    with Flow("Subtract") as subtract_fl:
        a_number = Parameter("a_number", default=2)
        neg_one = mult_one(sub_one(a_number, Parameter("another_number", default=2)))
    before = (add_fl.tasks, add_fl.edges)
    with pytest.raises(ValueError, match="already has a parameter named 'a_number'"):
        add_fl.update(subtract_fl)
    assert (add_fl.tasks, add_fl.edges) == before  # refused before changing anything
    add_fl.update(subtract_fl, merge_parameters=True)
    assert list(add_fl.parameters()) == ["a_number", "another_number"]
    assert add_fl.parameters()["a_number"] is a_number
    run = run_seq(add_fl)
    assert run.ok
    assert (run.result(pos_two), run.result(neg_one)) == (3, 0)


def test_parameters_can_not_be_downstream_dependencies():
    with Flow("test"):
        p = Parameter("x")
        t = constant()
        with pytest.raises(ValueError, match="cannot have upstream tasks"):
            t.set_downstream(p)


def test_a_parameter_stands_for_its_node_in_operators_and_indexing():
    with Flow("param-ops") as flow:
        x = Parameter("x", default={"d": 1, "n": 5})
        n = x["n"]
        doubled = 2 * n
        small = n < 10
    run = run_seq(flow)
    assert (run.result(n), run.result(doubled), run.result(small)) == (5, 10, True)
    assert len(flow.parameters()) == 1


def test_indexing_a_parameter_outside_a_flow_says_what_to_do():
    with pytest.raises(TypeError, match=r"Parameter 'x' is not a value.*x\[key\], x \+ 1"):
        Parameter("x")["d"]


# -- flatten: what needs the engine -------------------------------------------------------


@task(cache=False)
def skip_odd(n):
    from nbflow import SKIP

    if n % 2:
        raise SKIP("odd")
    return [n, n]


@task(cache=False)
def fail_on_three(n):
    if n == 3:
        raise ValueError("three")
    return [n]


def test_flatten_keeps_the_place_of_a_skipped_child():
    with Flow("flatten-skip-place") as flow:
        flat = flatten(skip_odd.map([2, 3, 4]))
        out = describe.map(flat)
    run = run_seq(flow)
    assert run.result(flat) == [2, 2, None, 4, 4]
    assert run.result(out)[2] == "got None"


def test_flatten_skips_only_the_element_of_a_skipped_child():
    with Flow("flatten-skip") as flow:
        out = identity.map(flatten(skip_odd.map([2, 3, 4])))
    run = run_seq(flow)
    assert [c.state for c in run[out].children] == [State.SUCCESS] * 2 + [State.SKIPPED] + [
        State.SUCCESS
    ] * 2


def test_flatten_fails_only_the_element_of_a_failed_child():
    with Flow("flatten-fail") as flow:
        out = identity.map(flatten(fail_on_three.map([1, 2, 3, 4])))
    run = run_seq(flow)
    assert [c.state for c in run[out].children] == [
        State.SUCCESS,
        State.SUCCESS,
        State.UPSTREAM_FAILED,
        State.SUCCESS,
    ]


# -- tests/core/test_task_map.py: TestFlatMap ------------------------------------------


@task(cache=False)
def list_task():
    return [1, 2, 3]


@task(cache=False)
def nest(x):
    return [x]


@task(cache=False)
def add_task(x, y=1):
    return x + y


@task(cache=False)
def nest_non_iterable(x):
    return x if x == 2 else [x]


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_flatmap_constant(executor):
    with Flow("test") as f:
        a = add_task.map(flatten([[1, 2, 3]]))
        b = add_task.map(flatten([[1], [2], [3]]))
        c = add_task.map(flatten([[1], [2, 3]]))
        d = add_task.map(flatten([1, 2, 3]))
    run = f.run(executor=executor)
    assert [run.result(t) for t in (a, b, c, d)] == [[2, 3, 4]] * 4


def test_flatmap_task_result():
    with Flow("test") as f:
        x = add_task.map(flatten(nest(list_task())))
    assert run_seq(f).result(x) == [2, 3, 4]


def test_flatmap_mapped_result():
    with Flow("test") as f:
        x = add_task.map(flatten(nest.map(list_task())))
    assert run_seq(f).result(x) == [2, 3, 4]


def test_flatmap_flatmapped_result():
    with Flow("test") as f:
        nested = nest.map(list_task())
        nested2 = nest.map(flatten(nested))
        x = add_task.map(flatten(nested2))
    assert run_seq(f).result(x) == [2, 3, 4]


def test_flatmap_reduced_result():
    with Flow("test") as f:
        nested = nest.map(list_task())
        nested2 = nest(flatten(nested))
        x = add_task.map(flatten(nested2))
    assert run_seq(f).result(x) == [2, 3, 4]


def test_flatmap_unnested_input():
    with Flow("test") as flow:
        z = add_task.map(x=flatten([1]))
    run = run_seq(flow)
    assert len(run[z].children) == 1
    assert run.result(z) == [2]


def test_flatmap_one_unnested_input():
    with Flow("test") as flow:
        z = add_task.map(x=flatten([1]), y=flatten([[5]]))
    assert run_seq(flow).result(z) == [6]


def test_flatmap_one_unmappable_input():
    with Flow("test") as flow:
        flat = flatten(1)
        z = add_task.map(x=flat, y=flatten([[1]]))
    run = run_seq(flow)
    assert run[flat].state is State.FAILED
    assert "flatten() needs a list (of lists) to flatten, but got int 1" in str(run[flat].error)
    assert run[z].state is State.UPSTREAM_FAILED


def test_flatmap_nested_noniterable_input():
    with Flow("test") as flow:
        z = add_task.map(flatten(nest_non_iterable.map(list_task())))
    assert run_seq(flow).result(z) == [2, 3, 4]


@task(cache=False)
def nest_with_signal(x):
    from nbflow import SKIP

    if x == 2:
        raise SKIP("Skip this task execution")
    return [x]


@task(cache=False)
def nest_with_exception(x):
    if x == 2:
        raise ValueError("This task failed!")
    return [x]


@pytest.mark.parametrize("executor", ["sequential", "threads", "processes"])
def test_flatmap_nested_signal_input(executor):
    with Flow("test") as flow:
        nested = nest_with_signal.map(list_task())
        z = add_task.map(flatten(nested))
    run = flow.run(executor=executor)
    assert run.result(z) == [2, None, 4]
    assert [c.state for c in run[z].children] == [State.SUCCESS, State.SKIPPED, State.SUCCESS]


@pytest.mark.parametrize("executor", ["sequential", "threads", "processes"])
def test_flatmap_nested_exception_input(executor):
    with Flow("test") as flow:
        nested = nest_with_exception.map(list_task())
        z = add_task.map(flatten(nested))
        seen = identity.with_options(trigger="all_finished")(z)
    run = flow.run(executor=executor)
    children = run[z].children
    assert len(children) == 3
    assert [c.state for c in children] == [
        State.SUCCESS,
        State.UPSTREAM_FAILED,
        State.SUCCESS,
    ]
    values = run.result(seen)
    assert (values[0], values[2]) == (2, 4)
    assert "did not succeed" in str(values[1])
    assert run[z].state is State.UPSTREAM_FAILED


def test_a_flatten_keeps_positions_when_children_give_several_elements_or_fail():
    with Flow("positions") as flow:
        flat = flatten(fail_on_three.map([1, 2, 3, 4]))
        nested = flatten(upto.map([0, 2, 1]))
        doubled = inc.map(nested)
    run = run_seq(flow)
    assert [c.name for c in run[flat].children] == [f"{flow.name_of(flat)}[{i}]" for i in range(4)]
    assert "upstream 'fail_on_three[2]' did not succeed" in run[flat].children[2].reason
    assert run.result(nested) == [0, 1, 0]
    assert run.result(doubled) == [1, 2, 1]


@task(cache=False)
def upto(n):
    return list(range(n))


def test_a_flatten_of_a_task_that_failed_as_a_whole_is_upstream_failed():
    with Flow("whole-failed") as flow:
        flat = flatten(boom())
        after = inc.map(flat)
    run = run_seq(flow)
    assert run[flat].state is State.UPSTREAM_FAILED
    assert "cannot flatten 'boom': it ended failed" in run[flat].reason
    assert run[after].state is State.UPSTREAM_FAILED


def test_a_flatten_of_a_task_that_returns_no_list_fails():
    with Flow("not-a-list") as flow:
        flat = flatten(identity(5))
    run = run_seq(flow)
    assert run[flat].state is State.FAILED
    assert "flatten() needs a list (of lists) to flatten, but got int 5" in str(run[flat].error)


@task
def cached_nest(x):
    return [x, x * 10]


@task
def cached_add(x):
    return x + 1


def test_a_flat_map_is_cached_element_by_element(tmp_path):
    def run(items):
        with Flow("flat-cache") as flow:
            nested = cached_nest.map(items)
            out = cached_add.map(flatten(nested))
        done = flow.run(executor="sequential", store=tmp_path)
        return (
            done.result(out),
            [c.cached for c in done[nested].children],
            [c.cached for c in done[out].children],
        )

    assert run([1, 2]) == ([2, 11, 3, 21], [False, False], [False] * 4)
    assert run([1, 2]) == ([2, 11, 3, 21], [True, True], [True] * 4)
    # A new item: only its own elements run
    assert run([1, 3]) == ([2, 11, 4, 31], [True, False], [True, True, False, False])


# -- reference tasks: tests/core/test_flow.py, tests/engine/test_flow_runner.py ----------


def test_reference_tasks_are_terminal_tasks_by_default():
    f = Flow("test")
    t1, t2, t3, t4 = (_plain(f"t{i}") for i in range(1, 5))
    f.add_edge(t1, t2)
    f.add_edge(t2, t3)
    f.add_task(t4)
    assert f.reference_tasks == f.terminal_tasks == (f.node(t3), f.node(t4))


def test_set_reference_tasks():
    f = Flow("test")
    t1, t2, t3 = (_plain(f"t{i}") for i in range(1, 4))
    f.add_edge(t1, t2)
    f.add_edge(t2, t3)
    f.set_reference_tasks([])
    assert f.reference_tasks == f.terminal_tasks
    f.set_reference_tasks([t2])
    assert f.reference_tasks == (f.node(t2),)


def test_reset_reference_tasks_to_terminal_tasks():
    f = Flow("test")
    t1, t2, t3 = (_plain(f"t{i}") for i in range(1, 4))
    f.add_edge(t1, t2)
    f.add_edge(t2, t3)
    f.set_reference_tasks([t2])
    assert f.reference_tasks == (f.node(t2),)
    f.set_reference_tasks([])
    assert f.reference_tasks == f.terminal_tasks == (f.node(t3),)


def test_set_reference_tasks_refuses_a_task_not_in_the_flow():
    f = Flow("test")
    f.add_task(_plain("t1"))
    with pytest.raises(FlowError, match="is not part of flow 'test'"):
        f.set_reference_tasks([_plain("elsewhere")])
    assert f.reference_tasks == f.terminal_tasks


def test_reference_tasks_survive_a_copy():
    f = Flow("test")
    t1, t2 = _plain("t1"), _plain("t2")
    f.add_edge(t1, t2)
    f.set_reference_tasks([t1])
    assert f.copy().reference_tasks == (f.node(t1),)


@task(cache=False)
def error_task():
    raise ValueError("custom-error-message")


@task(cache=False)
def raise_fail_task():
    from nbflow import FAIL

    raise FAIL("custom-fail-message")


def test_flow_run_state_determined_by_reference_tasks():
    flow = Flow("test")
    t2 = success_task.with_options(trigger="all_finished")
    flow.add_edge(error_task, t2)
    flow.set_reference_tasks([error_task])
    run = run_seq(flow)
    assert run.state is State.FAILED
    assert run[error_task].state is State.FAILED
    assert run[t2].state is State.SUCCESS


def test_flow_runner_runs_basic_flow_with_2_dependent_tasks_and_first_task_fails():
    flow = Flow("test")
    flow.add_edge(error_task, success_task)
    run = run_seq(flow)
    assert run.state is State.FAILED
    assert run[error_task].state is State.FAILED
    assert run[success_task].state is State.UPSTREAM_FAILED


def test_flow_runner_runs_flow_with_2_dependent_tasks_and_first_task_fails_and_second_has_trigger():
    flow = Flow("test")
    task2 = success_task.with_options(trigger="all_failed")
    flow.add_edge(error_task, task2)
    run = run_seq(flow)
    assert run.state is State.SUCCESS  # flow state is determined by terminal states
    assert run.ok
    assert run[error_task].state is State.FAILED
    assert run[task2].state is State.SUCCESS
    assert [r.name for r in run.failed] == ["error_task"]


def test_flow_runner_runs_basic_flow_with_2_dependent_tasks_and_first_task_fails_with_FAIL():  # noqa: N802
    flow = Flow("test")
    flow.add_edge(raise_fail_task, success_task)
    run = run_seq(flow)
    assert run.state is State.FAILED
    assert run[raise_fail_task].state is State.FAILED
    assert run[success_task].state is State.UPSTREAM_FAILED


def test_flow_runner_runs_basic_flow_with_2_dependent_tasks_and_second_task_fails():
    flow = Flow("test")
    flow.add_edge(success_task, error_task)
    run = run_seq(flow)
    assert run.state is State.FAILED
    assert run[success_task].state is State.SUCCESS
    assert run[error_task].state is State.FAILED


def test_a_flow_whose_last_task_handles_a_failure_succeeds():
    @task(cache=False, trigger="any_failed")
    def alert(x):
        return f"alerted: {x}"

    with Flow("handled") as flow:
        out = alert(error_task())
    run = run_seq(flow)
    assert run.ok and run.state is State.SUCCESS
    assert run.result(out) == "alerted: custom-error-message"
    assert [r.name for r in run.failed] == ["error_task"]


def test_an_unmet_trigger_with_a_failed_upstream_carries_the_failure_on():
    @task(cache=False, trigger="all_failed")
    def all_bad(a, b):
        return "ran"

    with Flow("carried") as flow:
        out = all_bad(error_task(), success_task())
        after = describe(out)
    run = run_seq(flow)
    assert run[out].state is State.UPSTREAM_FAILED
    assert "trigger 'all_failed' not met" in run[out].reason
    assert "upstream 'error_task' failed" in run[out].reason
    # skip_on_upstream_skip=False does not let a task run after an upstream failure
    assert run[after].state is State.UPSTREAM_FAILED
    assert not run.ok


def test_an_unmet_trigger_without_a_failed_upstream_is_skipped_and_the_run_succeeds():
    @task(cache=False, trigger="any_failed")
    def alert(x):
        return "alerted"

    with Flow("quiet") as flow:
        out = alert(success_task())
    run = run_seq(flow)
    assert run[out].state is State.SKIPPED
    assert run.ok


@task(cache=False)
def div(x):
    return 1 / x


@task(cache=False)
def zeros():
    return [0, 0, 0]


@task(cache=False, trigger="all_failed")
def register(x):
    return True


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_map_tracks_non_mapped_upstream_tasks(executor):
    with Flow("test") as f:
        res = register.map(div.map(zeros()), wait_for=[div(1)])
    run = f.run(executor=executor)
    assert run.state is State.FAILED
    assert all(c.state is State.UPSTREAM_FAILED for c in run[res].children)
    assert all("trigger 'all_failed' not met" in c.reason for c in run[res].children)


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_reduce_task_honors_trigger_across_all_mapped_states(executor):
    with Flow("test") as f:
        d = div.map(identity([0, 1]))
        total = sum_task(d)
    run = f.run(executor=executor)
    assert run.state is State.FAILED
    assert run[total].state is State.UPSTREAM_FAILED


@task(cache=False)
def sum_task(x):
    return sum(x)


@task(cache=False)
def append_four(values):
    return [*values, 4]


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_task_map_downstreams_handle_single_failures(executor):
    with Flow("test") as f:
        dived = div.map(identity([1, 0, 3]))  # the middle child fails
        big_list = append_four(dived)  # this task does not run
        again = div.map(dived)
    run = f.run(executor=executor)
    assert run.state is State.FAILED
    assert len(run[dived].children) == 3
    assert run[big_list].state is State.UPSTREAM_FAILED
    assert [run.result(c.name) for c in run[again].children[0::2]] == [1, 3]
    assert run[again].children[1].state is State.UPSTREAM_FAILED


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_a_terminal_all_finished_task_after_a_failed_child_makes_the_run_succeed(executor):
    with Flow("test") as f:
        dived = div.map([1, 0, 2])
        again = inc.map(dived)
        final = identity.with_options(trigger="all_finished")(again)
    run = f.run(executor=executor)
    assert run.state is State.SUCCESS  # the terminal task ran
    assert [c.state for c in run[again].children] == [
        State.SUCCESS,
        State.UPSTREAM_FAILED,
        State.SUCCESS,
    ]
    values = run.result(final)
    assert (values[0], values[2]) == (2.0, 1.5)
    assert "did not succeed" in str(values[1])


# -- terminal_state_handler: tests/core/test_flow.py TestTerminalStateHandler ------------


def test_terminal_state_handler_determines_final_state():
    seen = []

    def handler(flow, state, reference_task_runs):
        seen.append((flow.name, state, [r.state for r in reference_task_runs]))
        return State.FAILED if all(r.state.is_successful for r in reference_task_runs) else None

    with Flow("test", terminal_state_handler=handler) as flow:
        fake = _plain("fake")
        fake_2 = _plain("fake_2")
        flow.add_edge(fake, fake_2)
    assert flow.terminal_state_handler is handler
    run = run_seq(flow)
    assert run.state is State.FAILED
    assert not run.ok
    assert seen == [("test", State.SUCCESS, [State.SUCCESS])]  # the reference task: fake_2


def test_flow_state_used_if_terminal_state_handler_does_not_return_a_new_state():
    with Flow("test", terminal_state_handler=lambda flow, state, runs: None) as flow:
        flow.add_task(_plain("fake"))
    run = run_seq(flow)
    assert run.ok and run.state is State.SUCCESS


def test_terminal_state_handler_example_from_docs():
    messages = []

    def custom_terminal_state_handler(flow, state, reference_task_runs):
        failed = [r.name for r in reference_task_runs if r.state.is_failed]
        if failed:
            messages.append(f"Some important tasks have failed: {failed}")
        return state

    flow = Flow("with handler", terminal_state_handler=custom_terminal_state_handler)
    flow.add_task(error_task)
    run = run_seq(flow)
    assert run.state is State.FAILED
    assert messages == ["Some important tasks have failed: ['error_task']"]


def test_terminal_state_handler_can_make_a_failed_run_succeed_and_hooks_follow():
    hooks = []
    with Flow(
        "forgiven",
        terminal_state_handler=lambda flow, state, runs: State.SUCCESS,
        on_success=lambda flow, run: hooks.append("success"),
        on_failure=lambda flow, run: hooks.append("failure"),
    ) as flow:
        error_task()
    run = run_seq(flow)
    assert run.ok and run.state is State.SUCCESS
    assert hooks == ["success"]
    assert [r.name for r in run.failed] == ["error_task"]


def test_terminal_state_handler_sees_mapped_children_and_the_flow_not_its_run_copy():
    seen = []

    def handler(flow, state, runs):
        seen.append((flow, [r.name for r in runs]))

    with Flow("mapped-ref", terminal_state_handler=handler) as flow:
        inc.map([Parameter("x", default=1), 2])
    run = run_seq(flow, x=5)
    assert run.ok
    assert seen == [(flow, ["inc[0]", "inc[1]"])]


def test_a_terminal_state_handler_that_raises_or_returns_nonsense_is_logged(caplog):
    def broken(flow, state, runs):
        raise RuntimeError("handler broke")

    with Flow("broken-terminal", terminal_state_handler=broken) as flow:
        success_task()
    assert run_seq(flow).ok
    assert "terminal_state_handler of flow 'broken-terminal' failed" in caplog.text
    with Flow("nonsense-terminal", terminal_state_handler=lambda f, s, r: "maybe") as flow:
        success_task()
    assert run_seq(flow).ok
    assert "returned 'maybe'" in caplog.text


def test_terminal_state_handler_must_be_callable():
    with pytest.raises(FlowError, match="expected terminal_state_handler to be a callable"):
        Flow("bad", terminal_state_handler="not callable")


def test_terminal_state_handler_is_not_asked_about_a_cancelled_run():
    import threading

    gate = threading.Event()
    seen = []

    @task(cache=False)
    def wait():
        gate.wait(5)

    with Flow("cancelled", terminal_state_handler=lambda f, s, r: seen.append(s)) as flow:
        wait()
    run = flow.run(executor="threads", background=True)
    run.cancel()
    gate.set()
    run.wait(5)
    assert run.state is State.CANCELLED
    assert seen == []


def test_flow_on_state_change_is_also_called_for_the_flows_own_transitions():
    seen = []

    def hook(owner, run, old, new):
        seen.append((type(owner).__name__, getattr(owner, "name", None), old, new))

    with Flow("watched", on_state_change=hook) as flow:
        out = inc(Parameter("x", default=1))
    run = flow.run(executor="sequential", x=2)
    assert run.result(out) == 3
    flow_changes = [s for s in seen if s[0] == "Flow"]
    assert flow_changes == [
        ("Flow", "watched", State.PENDING, State.RUNNING),
        ("Flow", "watched", State.RUNNING, State.SUCCESS),
    ]
    task_changes = [s[2:] for s in seen if s[0] != "Flow"]
    assert task_changes[-1] == (State.RUNNING, State.SUCCESS)


def test_flow_on_state_change_gets_the_flow_and_its_run():
    got = []
    with Flow(
        "watched-run", on_state_change=lambda owner, run, old, new: got.append((owner, run))
    ) as flow:
        error_task()
    run = run_seq(flow)
    assert got[0] == (flow, run)
    assert got[-1] == (flow, run)
    assert run.state is State.FAILED


# -- mapped ordering edges: tests/core/test_flow.py, tests/core/test_task_map.py --------


def test_set_dependencies_creates_mapped_edges():
    f = Flow("test")
    t1, t2 = _plain("t1"), _plain("t2")
    f.set_dependencies(task=t1, upstream_tasks=[t2], mapped=True)
    assert len(f.edges) == 1
    assert f.edges[0].mapped is True
    assert f.call(t1).mapped


def test_set_dependencies_respects_unmapped():
    f = Flow("test")
    t1, t2 = _plain("t1"), _plain("t2")
    f.set_dependencies(task=t1, upstream_tasks=[unmapped(t2)], mapped=True)
    assert len(f.edges) == 1
    assert f.edges[0].mapped is False
    assert not f.call(t1).mapped


@task(cache=False)
def make_list():
    return []


@task(cache=False)
def return_1():
    return 1


@task(cache=False)
def ll(start=1):
    return [start + 0, start + 1, start + 2]


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_map_handles_non_keyed_upstream_empty(executor):
    with Flow("test") as f:
        res = return_1.map(wait_for=[make_list])
    run = f.run(executor=executor)
    assert run.ok
    assert run[res].children == []
    assert run.result(res) == []


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_map_can_handle_nonkeyed_upstreams(executor):
    with Flow("test") as f:
        res = ll.map(wait_for=[ll()])
    run = f.run(executor=executor)
    assert run.ok
    assert run.result(res) == [[1, 2, 3] for _ in range(3)]


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_map_can_handle_nonkeyed_mapped_upstreams(executor):
    with Flow("test") as f:
        mapped = identity.map(ll())  # 1, 2, 3
        res = ll.map(wait_for=[mapped])
    run = f.run(executor=executor)
    assert run.ok
    assert run.result(res) == [[1, 2, 3] for _ in range(3)]
    assert [e.mapped for e in f.edges if e.downstream is res] == [True]


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_map_can_handle_nonkeyed_nonmapped_upstreams_and_mapped_args(executor):
    with Flow("test") as f:
        res = ll.map(start=ll(), wait_for=[unmapped(identity(5))])
    run = f.run(executor=executor)
    assert run.ok
    assert run.result(res) == [[1 + i, 2 + i, 3 + i] for i in range(3)]


@pytest.mark.parametrize("executor", ["sequential", "threads"])
def test_map_can_handle_nonkeyed_mapped_upstreams_and_mapped_args(executor):
    with Flow("test") as f:
        mapped = identity.map(ll())  # 1, 2, 3
        res = ll.map(start=ll(), wait_for=[mapped])
    run = f.run(executor=executor)
    assert run.ok
    assert len(run[res].children) == 3
    assert run.result(res) == [[1 + i, 2 + i, 3 + i] for i in range(3)]


def test_a_map_whose_only_upstream_is_an_ordering_edge_built_imperatively():
    flow = Flow("imperative-mapped-ordering")
    items = flow.set_dependencies(ll, keyword_tasks={"start": 10})
    each = flow.set_dependencies(return_1, upstream_tasks=[items], mapped=True)
    run = run_seq(flow)
    assert run.result(each) == [1, 1, 1]
    assert flow.upstream(each) == (items,)


def test_a_mapped_ordering_edge_waits_child_by_child_and_carries_a_failure():
    with Flow("mapped-ordering-children") as flow:
        dived = div.map([1, 0, 2])
        after = return_1.map(wait_for=[dived])
    run = run_seq(flow)
    assert [c.state for c in run[after].children] == [
        State.SUCCESS,
        State.UPSTREAM_FAILED,
        State.SUCCESS,
    ]


def test_a_mapped_ordering_edge_with_add_edge_and_set_upstream():
    flow = Flow("mapped-edge")
    flow.add_edge(ll, return_1, mapped=True)
    identity.set_upstream(ll, flow=flow, key="x", mapped=True)
    run = run_seq(flow)
    assert run.result(flow.node(return_1)) == [1, 1, 1]
    assert run.result(flow.node(identity)) == [1, 2, 3]


def test_a_mapped_ordering_edge_into_a_flow_copy_and_update():
    flow = Flow("mapped-copy")
    flow.add_edge(ll, return_1, mapped=True)
    other = Flow("other")
    other.update(flow)
    assert run_seq(flow.copy()).result(flow.node(return_1)) == [1, 1, 1]
    assert run_seq(other).result(other.node(return_1)) == [1, 1, 1]


def test_map_with_nothing_to_map_over_says_so():
    with Flow("nothing"), pytest.raises(TaskDefinitionError, match="or a task in wait_for"):
        inc.map(unmapped(1))


def test_a_mapped_ordering_edge_over_a_value_that_is_not_a_list_fails_the_map():
    with Flow("not-a-list") as flow:
        res = return_1.map(wait_for=[identity(3)])
    run = run_seq(flow)
    assert run[res].state is State.FAILED
    assert "cannot map over its input" in str(run[res].error)


_retry_calls: list[str] = []


@task(cache=False)
def counted_add(x):
    _retry_calls.append("add")
    return x + 1


@task(cache=False)
def total_after_fix(xs):
    if "fixed" not in _retry_calls:
        raise ValueError("not yet")
    return sum(xs)


def test_a_retry_reuses_the_elements_of_a_flatten():
    _retry_calls.clear()
    with Flow("flat-retry") as flow:
        added = counted_add.map(flatten(upto.map([2, 3])))
        total = total_after_fix(added)
    run = flow.run(executor="sequential", store=False)
    assert run[total].state is State.FAILED
    assert _retry_calls.count("add") == 5
    _retry_calls.append("fixed")
    again = run.retry()
    assert again.result(total) == 1 + 2 + 1 + 2 + 3
    assert _retry_calls.count("add") == 5  # the flattened elements were reused
    assert {c.state for c in again[added].children} == {State.CACHED}


@task
def cached_nested(n):
    return [[n], [n, n + 1]]


def test_a_flat_map_over_a_task_that_is_not_mapped_is_cached_too(tmp_path):
    def run():
        with Flow("flat-cache-plain") as flow:
            flat = flatten(cached_nested(1))
            out = cached_add.map(flat)
        done = flow.run(executor="sequential", store=tmp_path)
        return done.result(flat), done.result(out), [c.cached for c in done[out].children]

    assert run() == ([1, 1, 2], [2, 2, 3], [False] * 3)
    assert run() == ([1, 1, 2], [2, 2, 3], [True] * 3)


def test_set_reference_tasks_at_init_with_empty_flow_raises_error():
    with pytest.raises(FlowError, match="is not part of flow 'test'"):
        Flow("test", reference_tasks=[_plain("t1")])


def test_set_reference_tasks_at_init():
    t1 = _plain("t1")
    f = Flow("test", reference_tasks=[t1], tasks=[t1])
    assert f.reference_tasks == f.tasks == f.terminal_tasks == (f.node(t1),)
    t2 = _plain("t2")
    f = Flow("test", reference_tasks=[t2], tasks=[t1, t2])
    assert f.reference_tasks == (f.node(t2),)


# -- tests/engine/test_flow_runner.py TestFlowStateHandlers -------------------------------


def _counting_handler(counts):
    def flow_handler(flow, old_state, new_state):
        assert isinstance(flow, Flow)
        assert isinstance(old_state, State)
        assert isinstance(new_state, State)
        counts.append(new_state)
        return new_state

    return flow_handler


def test_flow_handlers_are_called():
    counts = []
    flow = Flow("test", state_handlers=[_counting_handler(counts)])
    run_seq(flow)
    # the flow changed state twice: Pending -> Running -> Success
    assert counts == [State.RUNNING, State.SUCCESS]


def test_flow_handlers_can_return_none():
    counts = []
    flow = Flow("test", state_handlers=[lambda f, old, new: counts.append(new)])
    assert run_seq(flow).ok
    assert len(counts) == 2


def test_flow_on_failure_is_not_called():
    called = []
    flow = Flow("test", on_failure=lambda f, r: called.append(r), tasks=[success_task])
    assert run_seq(flow).ok
    assert called == []


def test_task_on_failure_is_called():
    called = []
    flow = Flow("test", tasks=[error_task], on_failure=lambda f, r: called.append((f, r)))
    run = run_seq(flow)
    assert called == [(flow, run)]
    assert run.state is State.FAILED


def test_multiple_flow_handlers_are_called():
    counts = []
    handler = _counting_handler(counts)
    flow = Flow("test", state_handlers=[handler, handler])
    run_seq(flow)
    assert len(counts) == 4
