"""Command-line benchmarks: start-up of ``nbflow --help``, ``nbflow run`` on a fully
cached 100-task notebook against plain nbclient execution of the same notebook, and
``nbflow run`` on a 1000-task Python file against ``flow.run()`` in plain Python.

    python benchmarks/cli.py            # about a minute on 2 shared cores
    python benchmarks/cli.py --quick    # fewer repeats
    python benchmarks/cli.py --cells flow   # tasks as @task/Flow code cells

Contenders run interleaved, round after round (order rotating), after a warm-up; the
figures are medians; compare the ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(sys.executable).parent
NBFLOW = HERE / "nbflow"
TASKS = 100
MAPPED = 1000
BIG = f"""
from nbflow import Flow, task

@task(cache=False)
def inc(x):
    return x + 1

@task(cache=False)
def total(xs):
    return sum(xs)

with Flow("big") as flow:
    total(inc.map(list(range({MAPPED}))))
"""


def _timed(cmd: list[str], cwd: pathlib.Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return took


def _rounds(contenders: dict[str, list[str]], cwd, env, repeats: int) -> dict[str, float]:
    names = list(contenders)
    for name in names:  # warm-up: file caches, compiled bytecode, the kernel's imports
        _timed(contenders[name], cwd, env)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            samples[name].append(_timed(contenders[name], cwd, env))
    return {n: statistics.median(s) for n, s in samples.items()}


def _notebook(folder: pathlib.Path, kind: str) -> pathlib.Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    if kind == "magics":
        cells = [new_code_cell("%load_ext nbflow"), new_code_cell("%%task step0\nx0 = 0")]
        cells += [new_code_cell(f"%%task step{i}\nx{i} = x{i - 1} + 1") for i in range(1, TASKS)]
    else:
        cells = [
            new_code_cell(
                "from nbflow import Flow, task\n\n@task\ndef step(prev):\n    return prev + 1\n"
                "x = 0"
            )
        ]
        # One cell, one run, one task: what a %%task cell execution is.
        cells += [
            new_code_cell(
                f"with Flow('steps') as flow:\n    node = step({i})\nx = flow.run().result(node)"
            )
            for i in range(TASKS)
        ]
    path = folder / "hundred.ipynb"
    nbformat.write(new_notebook(cells=cells), str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cells", choices=("magics", "flow"), default=None)
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    kind = args.cells
    if kind is None:
        try:
            import nbflow.jupyter.magics  # noqa: F401

            kind = "magics"
        except ImportError:
            kind = "flow"

    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        env = {k: v for k, v in os.environ.items() if k != "NBFLOW_HOME"}
        for sub in ("config", "data", "runtime", "ipython"):
            (folder / "jupyter" / sub).mkdir(parents=True)
        env.update(
            JUPYTER_CONFIG_DIR=str(folder / "jupyter/config"),
            JUPYTER_DATA_DIR=str(folder / "jupyter/data"),
            JUPYTER_RUNTIME_DIR=str(folder / "jupyter/runtime"),
            IPYTHONDIR=str(folder / "jupyter/ipython"),
        )

        startup = _rounds(
            {
                "python -c pass": [sys.executable, "-c", "pass"],
                "nbflow --help": [str(NBFLOW), "--help"],
            },
            folder,
            env,
            repeats * 3,
        )

        book = _notebook(folder, kind)
        plain = (
            "import nbformat, nbclient, sys, os\n"
            "nb = nbformat.read(sys.argv[1], as_version=4)\n"
            "nbclient.NotebookClient(nb, kernel_name='python3', allow_errors=False)"
            ".execute(cwd=os.path.dirname(sys.argv[1]))\n"
        )
        # The same over IPC sockets, as nbflow run starts its kernels: the difference
        # with nbflow run is then the command's own work alone.
        ipc = (
            "import asyncio, os, sys, tempfile, nbformat, nbclient\n"
            "from jupyter_client.manager import AsyncKernelManager\n"
            "nb = nbformat.read(sys.argv[1], as_version=4)\n"
            "async def go():\n"
            "    km = AsyncKernelManager(kernel_name='python3', transport='ipc',\n"
            "                            ip=os.path.join(tempfile.mkdtemp(), 'k'))\n"
            "    client = nbclient.NotebookClient(nb, km=km)\n"
            "    await client.async_execute(cwd=os.path.dirname(sys.argv[1]))\n"
            "    await km.shutdown_kernel()\n"
            "asyncio.run(go())\n"
        )
        _timed([str(NBFLOW), "run", str(book)], folder, env)  # fills the cache
        cached = _rounds(
            {
                "nbclient": [sys.executable, "-c", plain, str(book)],
                "nbclient ipc": [sys.executable, "-c", ipc, str(book)],
                "nbflow run": [str(NBFLOW), "run", str(book)],
            },
            folder,
            env,
            repeats,
        )

        (folder / "big.py").write_text(BIG)
        direct = "import sys; sys.path.insert(0, '.'); import big; assert big.flow.run().ok"
        python_file = _rounds(
            {
                "python": [sys.executable, "-c", direct],
                "nbflow run": [str(NBFLOW), "run", "big.py"],
            },
            folder,
            env,
            repeats,
        )

    base, cli = startup["python -c pass"], startup["nbflow --help"]
    print(f"start-up (median of {repeats * 3}):")
    print(f"  python -c pass     {base * 1000:7.1f} ms")
    print(
        f"  nbflow --help      {cli * 1000:7.1f} ms   ratio {cli / base:5.1f}x   "
        f"target < 200 ms: {'met' if cli < 0.2 else 'MISSED'}"
    )
    base, cli = cached["nbclient"], cached["nbflow run"]
    print(f"fully cached {TASKS}-task notebook ({kind} cells, median of {repeats}):")
    print(f"  plain nbclient     {base * 1000:7.1f} ms")
    print(
        f"  nbflow run         {cli * 1000:7.1f} ms   ratio {cli / base:5.2f}x   "
        f"overhead {(cli - base) * 1000:+.0f} ms"
    )
    base = cached["nbclient ipc"]
    print(
        f"  nbclient over IPC  {base * 1000:7.1f} ms   nbflow run against it: ratio "
        f"{cli / base:5.2f}x, overhead {(cli - base) * 1000:+.0f} ms (the command's own work)"
    )
    base, cli = python_file["python"], python_file["nbflow run"]
    print(f"Python file, {MAPPED} mapped tasks, not cached (median of {repeats}):")
    print(f"  python -c 'flow.run()' {base * 1000:7.1f} ms")
    print(
        f"  nbflow run         {cli * 1000:7.1f} ms   ratio {cli / base:5.2f}x   "
        f"overhead {(cli - base) * 1000:+.0f} ms (plain output, one line per event)"
    )


if __name__ == "__main__":
    main()
