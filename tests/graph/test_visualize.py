"""flow.visualize(): a graphviz drawing, coloured by state with the shared palette."""

import shutil

from nbflow import Flow, State, task
from nbflow.palette import COLOURS


@task(cache=False)
def inc(x):
    return x + 1


@task(cache=False)
def boom(x):
    raise ValueError("no")


def _flow():
    with Flow("drawn") as flow:
        xs = inc.map([1, 2, 3])
        bad = boom(inc(0))
        after = inc(bad)
    return flow, xs, bad, after


def test_visualize_without_a_run_draws_every_task_and_edge():
    flow, *_ = _flow()
    source = flow.visualize().source
    for name in ("inc", "inc-2", "boom", "inc-3"):
        assert f"{name}" in source
    assert source.count("->") == len(flow.edges)
    assert "(mapped)" in source


def test_visualize_with_a_run_colours_nodes_by_state_and_counts_mapped_children():
    flow, *_ = _flow()
    run = flow.run(executor="sequential")
    source = run.visualize().source
    assert COLOURS[State.FAILED] in source
    assert COLOURS[State.UPSTREAM_FAILED] in source
    assert COLOURS[State.SUCCESS] in source
    assert "3/3 done" in source


def test_visualize_renders_to_svg_with_dot():
    assert shutil.which("dot"), (
        "make test installs graphviz; install it with apt-get install graphviz"
    )
    flow, *_ = _flow()
    svg = flow.visualize(flow.run(executor="sequential")).pipe(format="svg").decode()
    assert svg.startswith("<?xml") and "boom" in svg


def _branches():
    from nbflow import Parameter, case, merge

    with Flow("drawn-branches") as flow:
        n = Parameter("n", default=1)
        x = inc(n)
        with case(x, 2):
            yes = inc(10)
        with case(x, 3):
            no = inc(20)
        merge(yes, no)
    return flow


def _nodes(source):
    """Each node of a dot source by the name in its label (icon left out): its label
    and attributes as one text."""
    import re

    found = {}
    for match in re.finditer(r"^\t\d+ \[(.*?)\]$", source, re.M | re.S):
        text = match.group(1)
        label = re.match(r'label=(?:"([^"]*)"|(\S+))', text)
        first = (label.group(1) or label.group(2)).split("\n")[0]
        found[first.split(" ", 1)[-1] if first[:1] in "✓↷✗" else first] = text
    return found


def test_visualize_draws_case_conditions_as_hexagons_as_the_widget_does():
    from nbflow.widget.model import FlowWidget

    flow = _branches()
    nodes = _nodes(flow.visualize().source)
    hexagons = {name for name, attrs in nodes.items() if "shape=hexagon" in attrs}
    assert hexagons == {"case(inc == 2)", "case(inc == 3)"}
    widget_kinds = {n["id"]: n["kind"] for n in FlowWidget(flow).graph["nodes"]}
    assert hexagons == {name for name, kind in widget_kinds.items() if kind == "case"}
    assert "shape=oval" in nodes["n"] and widget_kinds["n"] == "parameter"
    assert "branch" in nodes["case(inc == 2)"]


def test_visualize_of_a_run_marks_the_branch_taken_and_the_one_not_taken():
    run = _branches().run(executor="sequential")
    assert run.ok
    nodes = _nodes(run.visualize().source)
    assert "\ntaken" in nodes["case(inc == 2)"]
    assert "not taken" in nodes["case(inc == 3)"]
    assert COLOURS[State.SKIPPED] in nodes["case(inc == 3)"]
    assert COLOURS[State.SKIPPED] in nodes["inc-3"]  # the task inside the branch not taken
