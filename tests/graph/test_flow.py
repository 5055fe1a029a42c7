"""Tests of building flows: the functional API (calls inside ``with Flow``), the
imperative API (``add_task``, ``add_edge``, ``set_dependencies``), inspection, copying
and merging, and the errors raised while a flow is built."""

from __future__ import annotations

import pytest

from nbflow import Flow, Node, task, unmapped
from nbflow.errors import CycleError, FlowError, TaskDefinitionError
from nbflow.graph.flow import Call, Edge


@task(cache=False)
def inc(x):
    return x + 1


@task(cache=False)
def add(x, y):
    return x + y


@task(cache=False)
def total(xs):
    return sum(xs)


@task(cache=False)
def pack(items, named):
    return items, named


@task(cache=False)
def load(path):
    return [f"row from {path}", "  ", "another row"]


@task(cache=False)
def clean(df):
    return [row.strip() for row in df if row.strip()]


@task(cache=False)
def report(df):
    return f"{len(df)} rows"


def run_sequentially(flow):
    run = flow.run(executor="sequential")
    assert run.ok, run.failed
    return run


# -- the functional API -----------------------------------------------------------------


def test_calling_a_task_inside_a_flow_returns_a_node_and_runs_nothing():
    calls = []

    @task(cache=False)
    def record(x):
        calls.append(x)
        return x

    with Flow("lazy") as flow:
        node = record(1)

    assert isinstance(node, Node)
    assert node.task is record
    assert node.name == "record"
    assert flow.tasks == (node,)
    assert calls == []

    run = run_sequentially(flow)

    assert run.result(node) == 1
    assert calls == [1]


def test_nodes_passed_as_arguments_become_data_edges():
    with Flow("chain") as flow:
        a = inc(1)
        b = inc(a)
        c = add(a, y=b)

    assert flow.edges == (
        Edge(a, b, "x"),
        Edge(a, c, "x"),
        Edge(b, c, "y"),
    )
    assert flow.upstream(c) == (a, b)
    assert flow.downstream(a) == (b, c)
    assert flow.downstream(c) == ()
    run = run_sequentially(flow)
    assert (run.result(a), run.result(b), run.result(c)) == (2, 3, 5)


def test_nodes_inside_lists_tuples_and_dicts_are_found_as_edges():
    with Flow("containers") as flow:
        a = inc(1)
        b = inc(2)
        c = inc(3)
        s = total([a, b, 10])
        p = pack((a, 5), {"b": b, "nested": [c, {"deep": a}]})

    assert set(flow.upstream(s)) == {a, b}
    assert set(flow.upstream(p)) == {a, b, c}
    assert Edge(a, s, "xs") in flow.edges
    assert Edge(b, s, "xs") in flow.edges
    assert Edge(a, p, "items") in flow.edges
    assert Edge(b, p, "named") in flow.edges
    assert Edge(c, p, "named") in flow.edges
    assert set(flow.downstream(a)) == {s, p}

    run = run_sequentially(flow)

    assert run.result(s) == 2 + 3 + 10
    assert run.result(p) == ((2, 5), {"b": 3, "nested": [4, {"deep": 2}]})


def test_literal_arguments_are_passed_as_they_are():
    with Flow("literals") as flow:
        p = pack([1, "two", None], named={"k": (3.0,)})

    assert flow.edges == ()
    assert flow.upstream(p) == ()
    assert run_sequentially(flow).result(p) == ([1, "two", None], {"k": (3.0,)})


def test_the_same_task_called_twice_makes_two_nodes_with_distinct_names():
    with Flow("twice") as flow:
        a = inc(1)
        b = inc(a)
        c = inc(b)

    assert [n.name for n in flow.tasks] == ["inc", "inc-2", "inc-3"]
    assert a is not b
    run = run_sequentially(flow)
    assert [run.result(n) for n in (a, b, c)] == [2, 3, 4]
    assert run.result("inc-3") == 4


def test_an_unexpected_keyword_argument_fails_at_build_time_with_a_suggestion():
    with (
        Flow("etl") as flow,
        pytest.raises(
            TaskDefinitionError,
            match=r"^Task 'load' got an unexpected argument 'pth'\. Did you mean 'path'\?$",
        ),
    ):
        load(pth="data.csv")
    assert flow.tasks == ()


def test_a_missing_positional_argument_fails_at_build_time():
    with (
        Flow("missing") as flow,
        pytest.raises(
            TaskDefinitionError,
            match=r"Task 'add' cannot be called like this: missing a required argument: 'y'\. "
            r"Its signature is add\(x, y\)\.",
        ),
    ):
        add(1)
    assert flow.tasks == ()


def test_too_many_positional_arguments_fail_at_build_time():
    with (
        Flow("too-many") as flow,
        pytest.raises(
            TaskDefinitionError,
            match=r"Task 'add' cannot be called like this: too many positional arguments",
        ),
    ):
        add(1, 2, 3)
    assert flow.tasks == ()


def test_a_failed_call_leaves_the_flow_as_it_was():
    with Flow("intact") as flow:
        a = inc(1)
        with pytest.raises(TaskDefinitionError):
            add(a, z=2)

    assert flow.tasks == (a,)
    assert flow.edges == ()
    assert flow.downstream(a) == ()
    assert run_sequentially(flow).result(a) == 2


REFUSALS = {
    "bool": (bool, r"a truth test"),
    "unpacking": (lambda n: [*n], r"iteration"),
    "len": (len, r"len\(\)"),
    "neg": (lambda n: -n, r"arithmetic"),
    "float": (float, r"float\(\)"),
    "int": (int, r"int\(\)"),
}


@pytest.mark.parametrize(("use", "action"), REFUSALS.values(), ids=REFUSALS.keys())
def test_a_node_refuses_to_act_as_a_value_and_says_to_run_the_flow(use, action):
    with Flow("proxy"):
        a = inc(1)
        with pytest.raises(
            TypeError,
            match=rf"'inc' is a node of a flow, not a value: it cannot be used for {action}.*"
            r"Run the flow with run = flow\.run\(\) and get the value with run\.result\(inc\)",
        ):
            use(a)


ARITHMETIC = {
    "add": (lambda n: n + 1, r"\+"),
    "radd": (lambda n: 1 + n, r"\+"),
    "sub": (lambda n: n - 1, "-"),
    "mul": (lambda n: n * 2, r"\*"),
    "truediv": (lambda n: n / 2, "/"),
    "floordiv": (lambda n: n // 2, "//"),
    "mod": (lambda n: n % 2, "%"),
    "pow": (lambda n: n**2, r"\*\*"),
    "lt": (lambda n: n < 2, "<"),
}


@pytest.mark.parametrize(("use", "symbol"), ARITHMETIC.values(), ids=ARITHMETIC.keys())
def test_an_operator_on_a_node_outside_its_flow_block_says_to_run_the_flow(use, symbol):
    with Flow("proxy-op"):
        a = inc(1)
    with pytest.raises(
        TypeError,
        match=rf"'inc' is a node of a flow, not a value: it cannot be used for '{symbol}' "
        r"outside its flow's 'with' block.*run\.result\(inc\)",
    ):
        use(a)


def test_a_node_refuses_attribute_access_and_says_to_run_the_flow():
    with Flow("proxy-attr"):
        a = load("data.csv")
        with pytest.raises(
            AttributeError,
            match=r"'load' is a node of a flow, not a value: it cannot be used for attribute "
            r"access \(\.shape\).*flow\.run\(\)",
        ):
            _ = a.shape


def test_wait_for_adds_ordering_edges_without_data():
    order = []

    @task(cache=False)
    def step(label):
        order.append(label)
        return label

    with Flow("ordered") as flow:
        first = step("first")
        second = step("second")
        last = step("last", wait_for=[second, first])

    assert Edge(second, last) in flow.edges
    assert Edge(first, last) in flow.edges
    assert Edge(first, last).key is None
    assert set(flow.upstream(last)) == {first, second}
    run = run_sequentially(flow)
    assert run.result(last) == "last"
    assert order[-1] == "last"
    assert sorted(order) == ["first", "last", "second"]


def test_wait_for_a_single_node_and_on_a_mapped_call():
    with Flow("ordered-map") as flow:
        a = inc(0)
        xs = inc.map([1, 2, 3], wait_for=a)

    assert Edge(a, xs) in flow.edges
    assert flow.upstream(xs) == (a,)
    run = run_sequentially(flow)
    assert run.result(xs) == [2, 3, 4]


def test_wait_for_is_not_passed_to_a_task_taking_any_keyword():
    @task(cache=False)
    def collect(**kw):
        return kw

    with Flow("kw") as flow:
        a = inc(1)
        c = collect(first=a, second=2, wait_for=[a])

    assert run_sequentially(flow).result(c) == {"first": 2, "second": 2}


def test_mapped_nodes_feed_reduces_and_other_maps():
    with Flow("map") as flow:
        xs = inc.map([1, 2, 3])
        ys = add.map(xs, unmapped(10))
        t = total(ys)

    assert Edge(xs, ys, "x", mapped=True) in flow.edges
    assert Edge(ys, t, "xs") in flow.edges
    run = run_sequentially(flow)
    assert run.result(xs) == [2, 3, 4]
    assert run.result(ys) == [12, 13, 14]
    assert run.result(t) == 39


@pytest.mark.parametrize("literal", ["abc", 5])
def test_map_over_a_string_or_int_literal_suggests_unmapped(literal):
    with (
        Flow("bad-map") as flow,
        pytest.raises(
            TaskDefinitionError,
            match=rf"Task 'add'\.map\(\) maps over argument 'y', but got "
            rf"{type(literal).__name__} {literal!r}, which is not a list\. "
            r"Wrap constants in unmapped\(\.\.\.\)\.",
        ),
    ):
        add.map([1, 2], literal)
    assert flow.tasks == ()


def test_map_with_every_argument_unmapped_is_refused():
    with (
        Flow("all-unmapped"),
        pytest.raises(
            TaskDefinitionError,
            match=r"Task 'add'\.map\(\) needs at least one argument to map over, or a task "
            r"in wait_for=\[\.\.\.\] to map over; every argument is wrapped in "
            r"unmapped\(\.\.\.\)\.",
        ),
    ):
        add.map(unmapped([1, 2]), unmapped(3))


def test_a_node_of_another_flow_used_as_an_argument_is_refused():
    with Flow("first"):
        a = inc(1)
    with Flow("second") as second:
        with pytest.raises(
            FlowError,
            match=r"Node 'inc' belongs to another flow, not to 'second'\. Build both parts in "
            r"the same flow, or merge them with flow\.update\(other\)\.",
        ):
            inc(a)
        with pytest.raises(FlowError, match=r"Node 'inc' belongs to another flow"):
            total([1, a])
        with pytest.raises(FlowError, match=r"Node 'inc' belongs to another flow"):
            inc(1, wait_for=[a])
    assert second.tasks == ()


def test_a_task_called_outside_the_with_block_runs_now():
    with Flow("outside") as flow:
        a = inc(1)

    assert inc(1) == 2
    assert inc.map([1, 2]) == [2, 3]
    assert flow.tasks == (a,)


def test_a_with_block_that_raised_still_ends_the_flow_context():
    flow = Flow("raised")
    with pytest.raises(RuntimeError, match="cell failed"), flow:
        inc(1)
        raise RuntimeError("cell failed")

    assert inc(5) == 6
    assert len(flow.tasks) == 1


def test_nested_flows_each_get_their_own_calls():
    with Flow("outer") as outer:
        a = inc(1)
        with Flow("inner") as inner:
            b = inc(10)
        c = inc(a)

    assert outer.tasks == (a, c)
    assert inner.tasks == (b,)
    assert run_sequentially(outer).result(c) == 3
    assert run_sequentially(inner).result(b) == 11


def test_a_flow_can_be_run_many_times_with_the_same_results():
    calls = []

    @task(cache=False)
    def record(x):
        calls.append(x)
        return x * 3

    with Flow("again") as flow:
        a = record(2)
        b = inc(a)

    first = run_sequentially(flow)
    second = run_sequentially(flow)

    assert first is not second
    assert first.result(b) == second.result(b) == 7
    assert first.result(a) == second.result(a) == 6
    assert calls == [2, 2]


def test_reentering_a_flow_extends_it():
    with Flow("cells") as flow:
        a = inc(1)
    run_sequentially(flow)
    with flow:
        b = inc(a)
    with flow:
        c = add(a, b)

    assert flow.tasks == (a, b, c)
    assert flow.upstream(c) == (a, b)
    run = run_sequentially(flow)
    assert run.result(c) == 5


def test_a_task_passed_as_an_argument_stands_for_its_only_node():
    with Flow("by-task") as flow:
        a = load("data.csv")
        c = clean(load)

    assert flow.upstream(c) == (a,)
    assert len(flow.tasks) == 2
    assert run_sequentially(flow).result(c) == ["row from data.csv", "another row"]


def test_a_task_that_appears_several_times_passed_as_an_argument_says_to_use_its_nodes():
    with Flow("ambiguous-arg") as flow:
        a = inc(1)
        b = inc(2)
        with pytest.raises(
            FlowError,
            match=r"Task 'inc' appears 2 times in flow 'ambiguous-arg' \(nodes 'inc', 'inc-2'\); "
            r"use the node returned when it was added\.",
        ):
            total([inc])
    assert flow.tasks == (a, b)


def test_a_task_that_appears_several_times_in_wait_for_says_to_use_its_nodes():
    with Flow("ambiguous-wait") as flow:
        a = inc(1)
        b = inc(2)
        with pytest.raises(FlowError, match=r"Task 'inc' appears 2 times .*use the node"):
            add(1, 2, wait_for=[inc])
    assert flow.tasks == (a, b)


# -- the imperative API ------------------------------------------------------------------


def test_add_task_returns_a_node_and_adding_the_same_task_again_returns_it():
    flow = Flow("imperative")
    node = flow.add_task(load)

    assert isinstance(node, Node)
    assert node.task is load
    assert flow.add_task(load) is node
    assert flow.tasks == (node,)
    assert flow.node(load) is node
    assert flow.node("load") is node


def test_add_task_with_new_adds_another_node_of_the_same_task():
    flow = Flow("imperative-new")
    first = flow.add_task(inc)
    second = flow.add_task(inc, new=True)

    assert first is not second
    assert [n.name for n in flow.tasks] == ["inc", "inc-2"]
    flow.set_dependencies(first, keyword_tasks={"x": 1})
    flow.add_edge(first, second, key="x")
    assert run_sequentially(flow).result(second) == 3


def test_add_task_refuses_a_plain_function():
    flow = Flow("plain")
    with pytest.raises(
        FlowError, match=r"Flow 'plain' can only hold tasks, .*decorate the function with @task"
    ):
        flow.add_task(len)


def test_flow_built_from_a_list_of_tasks():
    flow = Flow("listed", tasks=[load, clean])

    assert [n.task for n in flow.tasks] == [load, clean]
    assert flow.edges == ()
    flow.set_dependencies(load, keyword_tasks={"path": "x.csv"})
    flow.add_edge(load, clean, key="df")
    assert run_sequentially(flow).result(clean) == ["row from x.csv", "another row"]


def test_set_dependencies_adds_tasks_edges_and_literal_constants():
    flow = Flow("etl")
    c = flow.set_dependencies(clean, keyword_tasks={"df": load})
    flow.set_dependencies(load, keyword_tasks={"path": "data.csv"})
    r = flow.set_dependencies(report, upstream_tasks=[load], keyword_tasks={"df": c})

    l_node = flow.node(load)
    assert [n.task for n in flow.tasks] == [clean, load, report]
    assert set(flow.edges) == {
        Edge(l_node, c, "df"),
        Edge(l_node, r),
        Edge(c, r, "df"),
    }
    assert flow.call(l_node).kwargs == {"path": "data.csv"}
    assert flow.upstream(r) == (l_node, c)
    run = run_sequentially(flow)
    assert run.result(load) == ["row from data.csv", "  ", "another row"]
    assert run.result(c) == ["row from data.csv", "another row"]
    assert run.result(r) == "2 rows"


def test_set_dependencies_with_only_literals_makes_a_runnable_node():
    flow = Flow("constants")
    node = flow.set_dependencies(add, keyword_tasks={"x": 1, "y": 2})

    assert flow.edges == ()
    assert run_sequentially(flow).result(node) == 3


def test_set_dependencies_mapped_maps_over_literal_and_node_inputs():
    flow = Flow("imperative-map")
    xs = flow.set_dependencies(inc, keyword_tasks={"x": [1, 2, 3]}, mapped=True)
    ys = flow.set_dependencies(
        inc.with_options(name="inc_again"), keyword_tasks={"x": xs}, mapped=True
    )

    assert Edge(xs, ys, "x", mapped=True) in flow.edges
    run = run_sequentially(flow)
    assert run.result(xs) == [2, 3, 4]
    assert run.result(ys) == [3, 4, 5]


def test_set_dependencies_refuses_an_unknown_keyword_with_a_suggestion():
    flow = Flow("etl-typo")
    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'load' got an unexpected argument 'pth'\. Did you mean 'path'\?",
    ):
        flow.set_dependencies(load, keyword_tasks={"pth": "data.csv"})


def test_an_argument_cannot_be_given_two_values():
    flow = Flow("twice-set")
    a = flow.set_dependencies(load, keyword_tasks={"path": "a.csv"})
    with pytest.raises(FlowError, match=r"Argument 'path' of 'load' in flow 'twice-set'"):
        flow.set_dependencies(load, keyword_tasks={"path": "b.csv"})
    c = flow.add_edge(a, clean, key="df").downstream
    with pytest.raises(
        FlowError,
        match=r"Argument 'df' of 'clean' in flow 'twice-set' is already set; "
        r"each argument takes one value\.",
    ):
        flow.add_edge(a, c, key="df")
    assert run_sequentially(flow).result(c) == ["row from a.csv", "another row"]


def test_add_edge_without_key_is_an_ordering_edge_and_with_key_a_data_edge():
    order = []

    @task(cache=False)
    def announce():
        order.append("announce")
        return "ready"

    flow = Flow("edges")
    a = flow.add_task(announce)
    flow.set_dependencies(load, keyword_tasks={"path": "p.csv"})
    ordering = flow.add_edge(a, load)
    data = flow.add_edge(load, report, key="df")

    assert ordering == Edge(a, flow.node(load), None)
    assert data == Edge(flow.node(load), flow.node(report), "df")
    assert flow.edges == (ordering, data)
    assert flow.upstream(load) == (a,)
    run = run_sequentially(flow)
    assert run.result(report) == "3 rows"
    assert order == ["announce"]


def test_add_edge_adds_tasks_that_are_not_in_the_flow_yet():
    flow = Flow("adds")
    edge = flow.add_edge(load, clean, key="df")

    assert [n.task for n in flow.tasks] == [load, clean]
    assert edge.upstream.task is load
    assert edge.downstream.task is clean


def test_add_edge_refuses_an_unknown_key_with_a_suggestion():
    flow = Flow("bad-key")
    with pytest.raises(
        TaskDefinitionError,
        match=r"Task 'clean' got an unexpected argument 'dff'\. Did you mean 'df'\?",
    ):
        flow.add_edge(load, clean, key="dff")
    assert flow.edges == ()


def test_a_task_that_appears_several_times_where_a_node_is_expected_says_to_use_its_nodes():
    with Flow("several") as flow:
        a = inc(1)
        b = inc(a)

    pattern = (
        r"Task 'inc' appears 2 times in flow 'several' \(nodes 'inc', 'inc-2'\); "
        r"use the node returned when it was added\."
    )
    with pytest.raises(FlowError, match=pattern):
        flow.upstream(inc)
    with pytest.raises(FlowError, match=pattern):
        flow.downstream(inc)
    with pytest.raises(FlowError, match=pattern):
        run_sequentially(flow).result(inc)
    assert flow.upstream(b) == (a,)


def test_add_edge_from_a_task_that_appears_several_times_says_to_use_its_nodes():
    with Flow("several-edge") as flow:
        a = inc(1)
        b = inc(a)
        t = total([b])

    with pytest.raises(FlowError, match=r"Task 'inc' appears 2 times .*use the node"):
        flow.add_edge(inc, t)
    assert flow.tasks == (a, b, t)


def test_set_dependencies_on_a_task_that_appears_several_times_says_to_use_its_nodes():
    with Flow("several-deps") as flow:
        a = inc(1)
        b = inc(2)
        s = add(a, b)

    with pytest.raises(FlowError, match=r"Task 'inc' appears 2 times .*use the node"):
        flow.set_dependencies(inc, upstream_tasks=[s])
    assert flow.tasks == (a, b, s)


def test_a_node_not_in_the_flow_is_refused_by_inspection():
    with Flow("one") as one:
        a = inc(1)
    other = Flow("other")
    with pytest.raises(FlowError, match=r"Node 'inc' is not part of flow 'other'\."):
        other.upstream(a)
    with pytest.raises(
        FlowError, match=r"Flow 'one' has no task named 'ink'\. Did you mean 'inc'\?"
    ):
        one.upstream("ink")


# -- cycles ------------------------------------------------------------------------------


def test_an_edge_that_closes_a_cycle_is_refused_naming_the_cycle():
    flow = Flow("etl")
    flow.set_dependencies(load, keyword_tasks={"path": "data.csv"})
    flow.add_edge(load, clean, key="df")

    with pytest.raises(
        CycleError,
        match=r"^Flow 'etl' would have a cycle: clean -> load -> clean\. "
        r"Remove one of these dependencies\.$",
    ):
        flow.add_edge(clean, load)

    assert flow.upstream(load) == ()
    assert len(flow.edges) == 1
    assert run_sequentially(flow).result(clean) == ["row from data.csv", "another row"]


def test_a_longer_cycle_names_every_node_on_it():
    flow = Flow("ring")
    a = flow.add_task(inc)
    b = flow.add_task(inc, new=True)
    c = flow.add_task(inc, new=True)
    flow.add_edge(a, b, key="x")
    flow.add_edge(b, c, key="x")

    with pytest.raises(CycleError, match=r"Flow 'ring' would have a cycle: inc-3 -> inc -> "):
        flow.add_edge(c, a, key="x")
    with pytest.raises(CycleError, match=r"inc-3 -> inc -> inc-2 -> inc-3\."):
        flow.add_edge(c, a)
    assert flow.call(a).kwargs == {}
    assert flow.upstream(a) == ()


def test_an_edge_from_a_node_to_itself_is_refused():
    flow = Flow("self")
    node = flow.add_task(inc)
    with pytest.raises(CycleError, match=r"Flow 'self' would have a cycle: inc -> inc\."):
        flow.add_edge(node, node)
    assert flow.edges == ()


def test_a_cycle_error_is_a_flow_error_and_a_value_error():
    flow = Flow("kinds")
    node = flow.add_task(inc)
    with pytest.raises(ValueError, match="would have a cycle"):
        flow.add_edge(node, node)
    assert issubclass(CycleError, FlowError)


# -- inspection, sorting, copying and merging --------------------------------------------


def test_sorted_puts_every_node_after_its_upstream_nodes():
    flow = Flow("diamond")
    # Add the nodes in reverse so that insertion order is not a topological order.
    r = flow.add_task(report)
    c = flow.add_task(clean)
    left = flow.add_task(load)
    right = flow.add_task(load.with_options(name="load_more"))
    flow.set_dependencies(left, keyword_tasks={"path": "a.csv"})
    flow.set_dependencies(right, keyword_tasks={"path": "b.csv"})
    flow.add_edge(left, c, key="df")
    flow.add_edge(right, c)
    flow.add_edge(c, r, key="df")

    order = flow.sorted()

    assert set(order) == {r, c, left, right}
    assert order.index(left) < order.index(c)
    assert order.index(right) < order.index(c)
    assert order.index(c) < order.index(r)
    assert order == (left, right, c, r)
    assert run_sequentially(flow).result(r) == "2 rows"


def test_copy_is_independent_of_the_original():
    with Flow("base") as base:
        a = inc(1)
        b = inc(a)
    copy = base.copy()

    assert copy is not base
    assert copy.name == "base"
    assert copy.tasks == base.tasks
    assert copy.edges == base.edges

    with copy:
        c = add(a, b)
    after = copy.add_edge(c, inc.with_options(name="after"), key="x").downstream

    assert base.tasks == (a, b)
    assert base.downstream(a) == (b,)
    assert copy.downstream(a) == (b, c)
    assert len(copy.tasks) == 4
    copy_run = run_sequentially(copy)
    assert copy_run.result(c) == 5
    assert copy_run.result(after) == 6
    base_run = run_sequentially(base)
    assert base_run.result(b) == 3
    with pytest.raises(FlowError, match=r"Node 'add' is not part of flow 'base'"):
        base_run.result(c)


def test_copy_does_not_share_arguments_with_the_original():
    flow = Flow("args")
    node = flow.add_task(add)
    flow.set_dependencies(node, keyword_tasks={"x": 1})
    copy = flow.copy()

    copy.set_dependencies(node, keyword_tasks={"y": 10})
    flow.set_dependencies(node, keyword_tasks={"y": 100})

    assert run_sequentially(copy).result(node) == 11
    assert run_sequentially(flow).result(node) == 101


def test_update_merges_the_nodes_and_edges_of_another_flow():
    with Flow("main") as main:
        a = inc(1)
    with Flow("part") as part:
        s = add(1, 2)
        t = total([s, 4])

    main.update(part)

    assert main.tasks == (a, s, t)
    assert set(main.edges) == {Edge(s, t, "xs")}
    assert part.tasks == (s, t)
    with main:
        both = add(a, t)
    assert part.tasks == (s, t)
    run = run_sequentially(main)
    assert run.result(t) == 7
    assert run.result(both) == 9


def test_update_merges_flows_that_use_the_same_task():
    with Flow("left") as left:
        a = inc(1)
    with Flow("right") as right:
        b = inc(10)

    left.update(right)

    assert set(left.tasks) == {a, b}
    run = run_sequentially(left)
    assert run.result(a) == 2
    assert run.result(b) == 11


def test_update_refuses_a_merge_that_would_close_a_cycle():
    with Flow("forward") as forward:
        a = inc(1)
        b = inc(a)
    backward = Flow("backward")
    backward.add_task(a)
    backward.add_task(b)
    backward.add_edge(b, a)

    with pytest.raises(CycleError, match=r"Flow 'forward' would have a cycle"):
        forward.update(backward)
    assert forward.upstream(a) == ()


def test_update_refuses_something_that_is_not_a_flow():
    flow = Flow("merge-target")
    with pytest.raises(FlowError, match=r"Flow\.update\(\) expects a Flow, but got \[1\]\."):
        flow.update([1])


def test_functional_and_imperative_building_mix():
    with Flow("mixed") as flow:
        raw = load("data.csv")
        c = clean(raw)
    r = flow.set_dependencies(report, keyword_tasks={"df": c})
    announce = flow.add_task(inc.with_options(name="announce"))
    flow.set_dependencies(announce, keyword_tasks={"x": 0})
    flow.add_edge(announce, raw)
    with flow:
        size = total([inc(1), 2], wait_for=[r])

    assert flow.upstream(raw) == (announce,)
    assert flow.upstream(r) == (c,)
    assert r in flow.upstream(size)
    order = flow.sorted()
    assert order.index(announce) < order.index(raw) < order.index(c) < order.index(r)
    run = run_sequentially(flow)
    assert run.result(r) == "2 rows"
    assert run.result(size) == 4
    assert run.result(announce) == 1


def test_flow_name_must_be_a_non_empty_string():
    with pytest.raises(
        FlowError, match=r"Expected the flow name to be a non-empty string, but got ''\."
    ):
        Flow("")


def test_replace_call_gives_a_node_other_arguments_and_keeps_its_edges():
    with Flow("replace") as flow:
        a = inc(1)
        b = inc(a)
    flow.replace_call(a, Call((10,), {}, False))
    assert flow.call(a).args == (10,)
    assert flow.upstream(b) == (a,)
    assert flow.run(store=False).result(b) == 12


def test_replace_call_refuses_arguments_that_hold_nodes():
    with Flow("replace-nodes") as flow:
        a = inc(1)
        b = inc(2)
    with pytest.raises(FlowError, match=r"replace_call\(\) takes arguments without nodes"):
        flow.replace_call(b, Call((a,), {}, False))


def _nested(depth):
    outer = inner = []
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


@pytest.mark.parametrize("depth", [400, 5000])
def test_an_argument_nested_too_deep_is_refused_naming_the_task_and_the_argument(depth):
    @task
    def keep(first, deep):
        return deep

    with Flow("deep") as flow:
        with pytest.raises(TaskDefinitionError) as refused:
            keep(1, _nested(depth))
        with pytest.raises(TaskDefinitionError, match="argument 'deep' nests"):
            keep(1, deep=_nested(depth))
    assert str(refused.value).startswith(
        "Task 'keep': argument 'deep' nests lists, tuples, sets or dicts more than 333 levels deep"
    )
    assert "Flatten it" in str(refused.value)
    assert flow.tasks == ()


def test_an_argument_nested_as_deep_as_allowed_runs():
    @task
    def depth_of(value):
        n = 0
        while value:
            value, n = value[0], n + 1
        return n

    with Flow("deep-enough") as flow:
        node = depth_of(_nested(333))
    run = flow.run(executor="sequential", store=False, show=False)
    assert run.result(node) == 333


def test_nodes_sort_in_waves_in_the_order_they_were_added_on_random_graphs():
    """The topological order is graphlib's, wave by wave in the order nodes were added,
    also with edges added later that point back to earlier nodes."""
    import random

    @task(cache=False)
    def node(*xs):
        return 0

    rng = random.Random(7)
    for trial in range(40):
        flow = Flow(f"random-{trial}")
        nodes = [flow.add_task(node, new=True) for _ in range(rng.randint(1, 30))]
        order = list(range(len(nodes)))
        rng.shuffle(order)  # a hidden order that keeps the graph acyclic
        rank = {n: order[i] for i, n in enumerate(nodes)}
        for _ in range(rng.randint(0, 60)):
            a, b = rng.sample(nodes, 2) if len(nodes) > 1 else (nodes[0], nodes[0])
            if a is not b and rank[a] < rank[b] and a not in flow.upstream(b):
                flow.add_edge(a, b)
        expected = flow._sorted_by_graphlib({n: i for i, n in enumerate(nodes)})
        assert flow.sorted() == expected
        placed = {n: i for i, n in enumerate(flow.sorted())}
        assert all(placed[e.upstream] < placed[e.downstream] for e in flow.edges)
