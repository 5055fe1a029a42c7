"""The runner seam: flow.run() and a task called outside a flow reach whatever runner
is registered; the package face registers the engine's by path."""

import subprocess
import sys

import pytest

from nbflow import Flow, NbflowError, task
from nbflow.graph import runner as seam
from nbflow.seam import Seam


class Recording:
    def __init__(self):
        self.calls = []

    def start(self, flow, show, options):
        self.calls.append(("start", flow.name, show, options["executor"]))
        return "a run"

    def run_now(self, task, args, kwargs, mapped):
        self.calls.append(("now", task.name, args, kwargs, mapped))
        return 42


@pytest.fixture
def recording():
    runner = Recording()
    previous = seam.register_runner(runner)
    yield runner
    seam.register_runner(previous)


@task(cache=False)
def double(x):
    return 2 * x


def test_flow_run_and_a_task_called_outside_a_flow_go_to_the_registered_runner(recording):
    with Flow("seam") as flow:
        double(1)
    assert flow.run(executor="sequential", show=False) == "a run"
    assert (
        double(
            5,
        )
        == 42
    )
    assert recording.calls == [
        ("start", "seam", False, "sequential"),
        ("now", "double", (5,), {}, False),
    ]


def test_the_default_runner_is_the_engine_and_runs_for_real():
    with Flow("real") as flow:
        n = double(21)
    assert flow.run(show=False).result(n) == 42
    assert double(4) == 8


def test_a_runner_registered_by_path_is_imported_at_first_use_only():
    code = (
        "import sys, nbflow\n"
        "loaded = 'nbflow.engine.run' in sys.modules\n"
        "@nbflow.task(cache=False)\n"
        "def one():\n"
        "    return 1\n"
        "print(loaded, one(), 'nbflow.engine.run' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "1", "True"]


def test_a_seam_with_nothing_registered_says_what_is_missing():
    empty: Seam[object] = Seam("widget maker")
    with pytest.raises(NbflowError, match="No widget maker is registered"):
        empty.get()
    empty.register("collections:OrderedDict")
    from collections import OrderedDict

    assert empty.get() is OrderedDict
