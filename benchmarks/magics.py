"""Overhead of ``%%task`` on a trivial cell, against the same cell without the magic.

Run from the repository root: ``python benchmarks/magics.py [--repeats N]``.
All contenders run in one process, in one IPython shell (``globalipapp``), interleaved
round by round; the figures are medians. Measures:

- plain: ``y = x + 1`` as an ordinary cell (the baseline);
- first run: a ``%%task`` cell seen for the first time (define, persist the definition,
  run, write the result and the history);
- cache hit: the same ``%%task`` cell run again in the same kernel;
- cache hit, new kernel: the same cell after a restart (the result read from the store).

- define 200 chained cells: ``c{i} = c{i-1} + 1`` defined one after the other
  (analysis, the graph's checks, the stored definition), nothing run.

Targets (issue 5): overhead <= 5 ms on a first run and <= 2 ms on a cache hit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="nbflow-bench-")
    os.environ["NBFLOW_HOME"] = home
    try:
        return _run(args.repeats, args.strict)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run(repeats: int, strict: bool) -> int:
    from IPython.testing import globalipapp
    from IPython.utils.capture import capture_output

    from nbflow.jupyter import magics

    ip = globalipapp.get_ipython()
    magics.load(ip)
    ip.run_cell("x = 1")

    def timed(source: str) -> float:
        with capture_output():
            t0 = time.perf_counter()
            result = ip.run_cell(source)
            elapsed = time.perf_counter() - t0
        if not result.success:
            raise SystemExit(f"benchmark cell failed: {source!r}: {result.error_in_exec!r}")
        return elapsed

    samples: dict[str, list[float]] = {"plain": [], "first": [], "hit": [], "restart": []}
    timed("%%task\nwarm = x + 1")  # imports and first-use costs out of the way
    for i in range(repeats):
        samples["plain"].append(timed(f"y{i} = x + {i}"))
        samples["first"].append(timed(f"%%task\nz{i} = x + {i}"))
        samples["hit"].append(timed(f"%%task\nz{i} = x + {i}"))
        magics.load(ip)  # a fresh set of magics (the old ones unloaded): nothing in memory
        samples["restart"].append(timed(f"%%task\nz{i} = x + {i}"))
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    base = med["plain"]
    version = sys.version.split()[0]
    print(f"%%task overhead on a trivial cell (median of {repeats}, ms; python {version})")
    print(f"{'measure':<26}{'ms':>9}{'overhead ms':>13}{'ratio':>9}{'target':>10}")
    rows = [
        ("plain cell (baseline)", "plain", None),
        ("%%task first run", "first", 5.0),
        ("%%task cache hit", "hit", 2.0),
        ("%%task hit, new kernel", "restart", None),
    ]
    missed = 0
    for label, key, target in rows:
        over = med[key] - base
        verdict = ""
        if target is not None:
            ok = over <= target
            missed += not ok
            verdict = f"<= {target:g} {'ok' if ok else 'MISSED'}"
        print(f"{label:<26}{med[key]:>9.3f}{over:>13.3f}{med[key] / base:>9.1f}x{verdict:>14}")
    print(f"define 200 chained cells: {_chain(5):.3f} s (median of 5)")
    return 1 if missed and strict else 0


def _chain(repeats: int) -> float:
    from nbflow.cells.definitions import CellOptions
    from nbflow.cells.notebook import NotebookFlow

    times = []
    for rep in range(repeats):
        cells = NotebookFlow({}, name=f"chain-{rep}", home=tempfile.mkdtemp(prefix="nbflow-"))
        lazy = CellOptions(lazy=True)
        t0 = time.perf_counter()
        cells.define(None, "c0 = 1", lazy, "<c0>")
        for i in range(1, 200):
            cells.define(None, f"c{i} = c{i - 1} + 1", lazy, f"<c{i}>")
        times.append(time.perf_counter() - t0)
        shutil.rmtree(cells.store_home(), ignore_errors=True)
    return statistics.median(times)


if __name__ == "__main__":
    raise SystemExit(main())
