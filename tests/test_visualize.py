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
