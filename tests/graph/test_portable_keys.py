"""Cache keys are the same on every machine for the same code and inputs: a flow copied
into two folders and run by two processes (with different hash seeds, as two
interpreters have) gets the same key for every task. Nothing of where the code lives,
who runs it or where objects sit in memory may reach a key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# A project as a user writes it: a helper module, module-level values, a class, a
# lambda with constants of every kind, defaults, closures, mapped and keyword inputs.
HELPERS = textwrap.dedent(
    """
    import pathlib

    RATE = 0.25
    NAMES = {"b", "a", "c"}


    def scale(x, by=2):
        return x * by


    class Box:
        def __init__(self, v):
            self.v = v

        def doubled(self):
            return scale(self.v)


    def here():
        return pathlib.Path(__file__).name
    """
)

FLOW = textwrap.dedent(
    """
    import json
    import os
    import sys

    import helpers
    from helpers import NAMES, RATE, Box, scale

    from nbflow import Flow, task

    WEIGHTS = {"x": 1, "y": (2, 3), "z": frozenset({"p", "q", "r"})}
    pick = lambda xs: [x for x in xs if x in {"a", "b", "c", "d"}]  # noqa: E731


    def make_adder(n):
        def add(x):
            return x + n

        return add


    ADD_3 = make_adder(3)


    @task
    def source(n, tags=("t1", "t2")):
        return list(range(n))


    @task
    def weighted(xs, weights=None):
        return [scale(x, RATE) + len(WEIGHTS) for x in xs]


    @task
    def boxed(x):
        return Box(x).doubled() + ADD_3(x)


    @task
    def named(xs):
        return sorted(NAMES) + pick(["a", "z"]) + [helpers.here()]


    @task
    def total(parts, extra):
        return sum(parts) + extra


    with Flow("portable") as flow:
        s = source(4)
        w = weighted(s, weights={"k": {1, 2, 3}, "v": [1.5, None]})
        b = boxed.map(s)
        n = named(w)
        total(b, extra=len("abc"))

    run = flow.run(executor="sequential")
    assert run.ok, [(r.name, r.error) for r in run.task_runs]
    keys = {}
    for r in run.task_runs:
        keys[r.name] = r.key
    json.dump(keys, sys.stdout)
    """
)


def _keys(folder: Path, seed: str) -> dict[str, str]:
    folder.mkdir(parents=True)
    (folder / "helpers.py").write_text(HELPERS)
    (folder / "pipeline.py").write_text(FLOW)
    env = {
        **os.environ,
        "PYTHONHASHSEED": seed,
        "NBFLOW_HOME": str(folder / ".nbflow"),
        "USER": f"user-{seed}",
        "HOME": str(folder),
    }
    out = subprocess.run(
        [sys.executable, "pipeline.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_two_folders_and_two_processes_compute_the_same_cache_keys(tmp_path):
    first = _keys(tmp_path / "alice" / "project", "1")
    second = _keys(tmp_path / "elsewhere" / "bob-checkout", "2")
    assert len(first) == 8  # five tasks, four of them mapped children
    assert all(first.values())
    assert first == second
