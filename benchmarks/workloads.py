"""The workloads: each ``bench_*`` measures nbflow and its baselines and returns rows.

Task functions live at module level so worker processes can import them by name.
Tasks use ``cache=False`` except in the rows that say "results written" (the defaults,
each run to a store of its own); a cached re-run is measured in ``cache_workloads``.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import baselines as bl
from cache_workloads import bench_w4, bench_w5, bench_w7
from harness import Config, Row, check, limit_row, measure, median, ratio_row, timed

from nbflow import Flow, task
from nbflow.store.base import open_store

Result = tuple[list[Row], dict[str, Any]]  # rows, raw samples for the JSON file

WORKERS = 2


# -- the work itself ------------------------------------------------------------------


def inc(x: int) -> int:
    return x + 1


def total(xs: list[int]) -> int:
    return sum(xs)


def total_of(*xs: int) -> int:
    return sum(xs)


def ident(x: Any) -> Any:
    return x


def burn(n: int) -> int:
    """Pure-Python CPU work: a loop of ``n`` additions (holds the GIL throughout)."""
    s = 0
    for i in range(n):
        s += i
    return s


inc_t = task(cache=False, name="inc")(inc)
total_t = task(cache=False, name="total")(total)
# The same without print capture, to tell its cost apart.
inc_bare = task(cache=False, name="inc", log_prints=False)(inc)
total_bare = task(cache=False, name="total", log_prints=False)(total)
inc_cached = task(name="inc")(inc)  # results written: the default
total_cached = task(name="total")(total)
ident_t = task(cache=False, name="tiny")(ident)
burn_t = task(cache=False, name="burn")(burn)


# -- flows ----------------------------------------------------------------------------


_versions = iter(range(1 << 62))


def _tasks(kind: str | bool) -> tuple[Any, Any]:
    """inc and total as tasks: "bare" (no print capture), "cached" (the defaults:
    results written), "new" (the defaults, with a cache version never used before, so
    every key is new to a store that has been used), else cache=False."""
    if kind == "cached":
        return inc_cached, total_cached
    if kind == "new":
        version = f"v{next(_versions)}"
        return (
            task(name="inc", cache_version=version)(inc),
            task(name="total", cache_version=version)(total),
        )
    return (inc_bare, total_bare) if kind else (inc_t, total_t)


def chain_flow(n: int, bare: str | bool = False) -> tuple[Flow, Any]:
    inc_ = _tasks(bare)[0]
    with Flow("bench-chain") as flow:
        x = inc_(0)
        for _ in range(n - 1):
            x = inc_(x)
    return flow, x


def fan_flow(n: int, bare: str | bool = False) -> tuple[Flow, Any]:
    inc_, total_ = _tasks(bare)
    with Flow("bench-fan") as flow:
        out = total_([inc_(i) for i in range(n)])
    return flow, out


def map_flow(n: int, bare: bool = False) -> tuple[Flow, Any]:
    inc_, total_ = (inc_bare, total_bare) if bare else (inc_t, total_t)
    with Flow("bench-map") as flow:
        out = total_(inc_.map(range(n)))
    return flow, out


# -- W1, W2: a chain, and independent tasks plus a reduce ------------------------------


def bench_w1(cfg: Config) -> Result:
    n = 1000
    return _dag_workload(
        "W1",
        "chain",
        n,
        n,
        n,
        plain=lambda: _plain_chain(n),
        graph=lambda: bl.chain_graph(inc, n),
        graph_key=n - 1,
        dask_build=lambda: bl.dask_chain(inc, n),
        build=chain_flow,
        cfg=cfg,
    )


def bench_w2(cfg: Config) -> Result:
    n = 1000
    expected = n * (n + 1) // 2
    return _dag_workload(
        "W2",
        "fan",
        n,
        n + 1,
        expected,
        plain=lambda: total([inc(i) for i in range(n)]),
        graph=lambda: bl.fan_graph(inc, total_of, n),
        graph_key="total",
        dask_build=lambda: bl.dask_fan(inc, total, n),
        build=fan_flow,
        cfg=cfg,
    )


def _plain_chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = inc(x)
    return x


def _dag_workload(
    wid: str,
    shape: str,
    n: int,
    tasks: int,
    expected: int,
    *,
    plain: Callable[[], int],
    graph: Callable[[], bl.Graph],
    graph_key: Any,
    dask_build: Callable[[], Any],
    build: Callable[[int, Any], tuple[Flow, Any]],
    cfg: Config,
) -> Result:
    def flow(bare: str | bool = False) -> tuple[Flow, Any]:
        return build(n, bare)

    def c_plain() -> float:
        dt, value = timed(plain)
        check(value == expected, f"{wid} plain Python gave {value}")
        return dt

    def c_threads() -> dict[str, float]:
        t_build, (fl, out) = timed(flow)
        t_run, run = timed(lambda: fl.run(executor="threads", max_workers=WORKERS))
        check(run.ok and run.result(out) == expected, f"{wid} nbflow threads: {run.state}")
        return {"build": t_build, "run": t_run}

    def c_nostore() -> float:
        fl, out = flow()
        t_run, run = timed(lambda: fl.run(executor="threads", max_workers=WORKERS, store=False))
        check(run.ok and run.result(out) == expected, f"{wid} nbflow store=False: {run.state}")
        return t_run

    # The defaults, every result written: to a store already in use (its history
    # open), as a first run of new work meets it, each time with keys never seen.
    used = open_store(tempfile.mkdtemp(prefix=f"nbflow-{wid}-used-"))

    def c_written() -> float:
        fl, out = flow(bare="new")
        t_run, run = timed(lambda: fl.run(executor="threads", max_workers=WORKERS, store=used))
        check(run.ok and run.result(out) == expected, f"{wid} nbflow written: {run.state}")
        check(run.counts() == {"success": tasks}, f"{wid} written: {run.counts()}")
        return t_run

    def c_new_store() -> float:
        # The same to a store of its own each time: its run history is created first.
        fl, out = flow(bare="cached")
        store = open_store(tempfile.mkdtemp(prefix=f"nbflow-{wid}-"))
        store.get_many(["warm"])  # open its database before the clock starts
        t_run, run = timed(lambda: fl.run(executor="threads", max_workers=WORKERS, store=store))
        check(run.ok and run.result(out) == expected, f"{wid} nbflow new store: {run.state}")
        check(run.counts() == {"success": tasks}, f"{wid} new store: {run.counts()}")
        shutil.rmtree(store.path, ignore_errors=True)
        return t_run

    def c_bare() -> float:
        fl, out = flow(bare=True)
        t_run, run = timed(lambda: fl.run(executor="threads", max_workers=WORKERS, store=False))
        check(run.ok and run.result(out) == expected, f"{wid} nbflow bare: {run.state}")
        return t_run

    def c_sequential() -> float:
        fl, out = flow()
        t_run, run = timed(lambda: fl.run(executor="sequential"))
        check(run.ok and run.result(out) == expected, f"{wid} nbflow sequential: {run.state}")
        return t_run

    def c_hand() -> float:
        g = graph()
        dt, res = timed(lambda: bl.MiniScheduler(WORKERS).run(g))
        check(res[graph_key] == expected, f"{wid} hand-written scheduler gave {res[graph_key]}")
        return dt

    def c_dask() -> dict[str, float]:
        t_build, obj = timed(dask_build)
        t_run, value = timed(lambda: bl.dask_compute(obj, WORKERS))
        check(value == expected, f"{wid} dask gave {value}")
        return {"build": t_build, "run": t_run}

    contenders: dict[str, Callable[[], Any]] = {
        "plain": c_plain,
        "nbflow_threads": c_threads,
        "nbflow_nostore": c_nostore,
        "nbflow_written": c_written,
        "nbflow_new_store": c_new_store,
        "nbflow_bare": c_bare,
        "nbflow_sequential": c_sequential,
        "hand": c_hand,
    }
    has_dask = bl.dask_version() is not None
    if has_dask:
        contenders["dask"] = c_dask
    try:
        samples = measure(contenders, cfg.repeats)
    finally:
        shutil.rmtree(used.path, ignore_errors=True)
    us = {k: median(v) * 1e6 / tasks for k, v in samples.items()}
    nb_run = us["nbflow_threads.run"]
    nb_total = nb_run + us["nbflow_threads.build"]
    dask_run = us.get("dask.run")
    dask_total = None if dask_run is None else dask_run + us["dask.build"]

    base = {"plain": us["plain"], "hand": us["hand"]}
    if dask_run is not None:
        base["dask"] = dask_run
    what = f"{tasks} tasks, {shape}"
    rows = [
        Row(wid, f"threads run ({what})", "us/task", nb_run, base),
        Row(
            wid,
            "threads overhead vs plain Python",
            "us/task",
            nb_run - us["plain"],
        ),
        ratio_row(wid, "threads run / hand-written", "us/task", nb_run, "hand", us["hand"], 1.5),
        ratio_row(wid, "threads run / dask compute", "us/task", nb_run, "dask", dask_run, 0.25),
        ratio_row(
            wid,
            "threads build+run / dask build+compute",
            "us/task",
            nb_total,
            "dask",
            dask_total,
            0.25,
        ),
        ratio_row(
            wid,
            "threads run, results written (the defaults) / hand-written",
            "us/task",
            us["nbflow_written"],
            "hand",
            us["hand"],
            2.0,
            note="to a store in use, every key new",
        ),
        _against_hand(
            wid,
            "threads run, results written to a new store (its history created)",
            us,
            "nbflow_new_store",
        ),
        ratio_row(
            wid,
            "threads run, store=False (no result store, no history) / hand-written",
            "us/task",
            us["nbflow_nostore"],
            "hand",
            us["hand"],
            1.3,
        ),
        _against_hand(wid, "threads run, store=False and log_prints=False", us, "nbflow_bare"),
        limit_row(
            wid,
            "sequential executor run, cache=False",
            "us/task",
            us["nbflow_sequential"],
            10.0,
            {"plain": us["plain"]},
        ),
    ]
    scaling, scaling_samples = _build_scaling(wid, build, 1000, cfg.build_big, cfg.build_repeats)
    if "dask.build" in us:
        scaling[0].baselines["dask delayed"] = us["dask.build"]
    rows += scaling
    return rows, {"samples_s": samples, "build_scaling_s": scaling_samples}


def _against_hand(wid: str, what: str, us: dict[str, float], name: str) -> Row:
    """A row of us/task with its ratio to the hand-written scheduler, and no target."""
    return Row(wid, what, "us/task", us[name], {"hand": us["hand"]}, us[name] / us["hand"])


def _build_scaling(
    wid: str, build: Callable[[int, bool], tuple[Flow, Any]], small: int, big: int, repeats: int
) -> tuple[list[Row], dict[str, list[float]]]:
    """Building a flow should cost the same per task at any size (linear, not quadratic)."""
    samples = measure(
        {
            str(small): lambda: timed(lambda: build(small, False))[0],
            str(big): lambda: timed(lambda: build(big, False))[0],
        },
        repeats,
        warmup=0,
    )
    per_small = median(samples[str(small)]) * 1e6 / small
    per_big = median(samples[str(big)]) * 1e6 / big
    rows = [
        Row(wid, f"flow build ({small} tasks)", "us/task", per_small),
        ratio_row(
            wid,
            f"flow build per task, {big} vs {small} tasks",
            "us/task",
            per_big,
            f"{small} tasks",
            per_small,
            1.5,
            note="linear build: per-task cost independent of size",
        ),
    ]
    return rows, samples


# -- W3: CPU-bound tasks on processes; per-task overhead of the process pool ----------


def _calibrate(seconds: float) -> int:
    """Loop length for ``burn`` to take about ``seconds`` here (best of three)."""
    n = 1_000_000
    best = min(timed(lambda: burn(n))[0] for _ in range(3))
    return max(1000, int(n * seconds / best))


def bench_w3(cfg: Config) -> Result:
    rows: list[Row] = []
    # Cold start: the first processes run in this process starts the worker pool.
    tiny_flow, _ = _tiny_flow(cfg.tiny_n)
    t_cold, run = timed(lambda: tiny_flow.run(executor="processes", max_workers=WORKERS))
    check(run.ok, f"W3 tiny tasks on processes: {run.state}")
    rows.append(
        Row("W3", f"processes cold start ({cfg.tiny_n} tiny tasks, pool starts)", "s", t_cold)
    )

    # Per-task overhead on the warm pool.
    expected = list(range(cfg.tiny_n))

    def c_tiny_nbflow() -> float:
        fl, nodes = _tiny_flow(cfg.tiny_n)
        dt, run = timed(lambda: fl.run(executor="processes", max_workers=WORKERS))
        check(run.ok and [run.result(x) for x in nodes] == expected, "W3 tiny nbflow")
        return dt

    def c_tiny_loky() -> float:
        dt, values = timed(lambda: bl.loky_map(ident, range(cfg.tiny_n), WORKERS))
        check(values == expected, "W3 tiny loky")
        return dt

    tiny = measure({"nbflow": c_tiny_nbflow, "loky": c_tiny_loky}, cfg.tiny_repeats)
    nb_us = median(tiny["nbflow"]) * 1e6 / cfg.tiny_n
    loky_us = median(tiny["loky"]) * 1e6 / cfg.tiny_n
    rows.append(
        limit_row(
            "W3",
            f"processes per-task overhead, warm pool ({cfg.tiny_n} tiny tasks)",
            "us/task",
            nb_us,
            1000,
            {"loky": loky_us},
        )
    )
    rows[-1].ratio = nb_us / loky_us

    # Speedup of 8 CPU-bound tasks on 2 worker processes.
    n = _calibrate(cfg.cpu_seconds)
    want = burn(n)
    count = 8

    def c_sequential() -> float:
        dt, values = timed(lambda: [burn(n) for _ in range(count)])
        check(values == [want] * count, "W3 sequential")
        return dt

    def c_nbflow() -> float:
        with Flow("bench-cpu") as fl:
            nodes = [burn_t(n) for _ in range(count)]
        dt, run = timed(lambda: fl.run(executor="processes", max_workers=WORKERS))
        check(run.ok and all(run.result(x) == want for x in nodes), f"W3 nbflow: {run.state}")
        return dt

    def c_loky() -> float:
        dt, values = timed(lambda: bl.loky_map(burn, [n] * count, WORKERS))
        check(values == [want] * count, "W3 loky")
        return dt

    cpu = measure(
        {"sequential": c_sequential, "nbflow": c_nbflow, "loky": c_loky},
        cfg.cpu_repeats,
        warmup=0,
    )
    seq = median(cpu["sequential"])
    nb = median(cpu["nbflow"])
    lk = median(cpu["loky"])
    rows.append(
        Row(
            "W3",
            f"{count} x {cfg.cpu_seconds:g} s CPU tasks, processes, {WORKERS} workers",
            "s",
            nb,
            {"sequential": seq, "loky": lk},
        )
    )
    rows.append(
        limit_row(
            "W3",
            "speedup vs sequential plain Python",
            "x",
            seq / nb,
            1.8,
            {"loky": seq / lk},
            at_least=True,
        )
    )
    rows.append(
        ratio_row(
            "W3",
            "CPU tasks: nbflow time / raw loky time",
            "s",
            nb,
            "loky",
            lk,
            1.1,
            note="separates nbflow's own cost from a busy machine (loky's speedup drops too)",
        )
    )
    return rows, {"tiny_s": tiny, "cpu_s": cpu, "cold_start_s": t_cold, "burn_loop": n}


def _tiny_flow(n: int) -> tuple[Flow, list[Any]]:
    with Flow("bench-tiny") as flow:
        nodes = [ident_t(i) for i in range(n)]
    return flow, nodes


# -- W6: a 10,000-element map and a reduce; time and memory ----------------------------


def bench_w6(cfg: Config) -> Result:
    n = cfg.map_n
    tasks = n + 1
    expected = n * (n + 1) // 2

    def c_plain() -> float:
        dt, value = timed(lambda: total([inc(i) for i in range(n)]))
        check(value == expected, "W6 plain")
        return dt

    def c_nbflow() -> float:
        fl, out = map_flow(n)
        dt, run = timed(lambda: fl.run(executor="threads", max_workers=WORKERS))
        check(run.ok and run.result(out) == expected, f"W6 nbflow: {run.state}")
        return dt

    def c_nostore() -> float:
        fl, out = map_flow(n)
        dt, run = timed(lambda: fl.run(executor="threads", max_workers=WORKERS, store=False))
        check(run.ok and run.result(out) == expected, f"W6 nbflow store=False: {run.state}")
        return dt

    def c_bare() -> float:
        fl, out = map_flow(n, bare=True)
        dt, run = timed(lambda: fl.run(executor="threads", max_workers=WORKERS, store=False))
        check(run.ok and run.result(out) == expected, f"W6 nbflow bare: {run.state}")
        return dt

    def c_hand() -> float:
        g = bl.fan_graph(inc, total_of, n)
        dt, res = timed(lambda: bl.MiniScheduler(WORKERS).run(g))
        check(res["total"] == expected, "W6 hand-written")
        return dt

    samples = measure(
        {
            "plain": c_plain,
            "nbflow": c_nbflow,
            "nostore": c_nostore,
            "bare": c_bare,
            "hand": c_hand,
        },
        cfg.map_repeats,
    )
    us = {k: median(v) * 1e6 / tasks for k, v in samples.items()}
    rows = [
        limit_row(
            "W6",
            f"threads run ({n:,}-element map + reduce)",
            "us/task",
            us["nbflow"],
            300,
            {"plain": us["plain"], "hand": us["hand"]},
        ),
        Row("W6", "threads overhead vs plain Python", "us/task", us["nbflow"] - us["plain"]),
        ratio_row(
            "W6", "threads run / hand-written", "us/task", us["nbflow"], "hand", us["hand"], 1.5
        ),
        Row(
            "W6",
            "threads run, store=False (no result store, no history)",
            "us/task",
            us["nostore"],
            {"hand": us["hand"]},
            us["nostore"] / us["hand"],
        ),
        Row(
            "W6",
            "threads run, store=False and log_prints=False",
            "us/task",
            us["bare"],
            {"hand": us["hand"]},
            us["bare"] / us["hand"],
        ),
    ]

    mem_rows, mem = _memory(cfg.mem_n)
    return rows + mem_rows, {"samples_s": samples, "memory_bytes": mem}


def _memory(n: int) -> tuple[list[Row], dict[str, dict[int, dict[str, int]]]]:
    """What a finished task keeps, from the difference between a map of n and of 2n."""
    _traced_nbflow(n)  # warm-up: lazy imports and first-use caches are not per task
    mem = {
        "nbflow": {k: _traced_nbflow(k) for k in (n, 2 * n)},
        "hand": {k: _traced_hand(k) for k in (n, 2 * n)},
    }

    def per_task(who: str, what: str) -> float:
        m = mem[who]
        return (m[2 * n][what] - m[n][what]) / n

    result_size = sys.getsizeof(n + 1)
    leaked = max(mem["nbflow"][k]["leaked"] / k for k in (n, 2 * n))
    linear = mem["nbflow"][2 * n]["retained"] / (2 * mem["nbflow"][n]["retained"])
    rows = [
        limit_row(
            "W6",
            f"memory kept per finished task while the run is alive ({n:,} vs {2 * n:,} map)",
            "B/task",
            per_task("nbflow", "retained"),
            1024,
            {"hand": per_task("hand", "retained")},
            note=f"the result itself is {result_size} B; the hand-written scheduler keeps "
            "only results",
        ),
        Row(
            "W6",
            "peak memory per task during the run",
            "B/task",
            per_task("nbflow", "peak"),
            {"hand": per_task("hand", "peak")},
        ),
        limit_row(
            "W6",
            "memory left per task after the run is dropped",
            "B/task",
            leaked,
            8,
            note="should be ~0: nothing should hold a finished run once the user drops it",
        ),
        limit_row(
            "W6",
            f"memory kept, {2 * n:,}-map / (2 x {n:,}-map)",
            "x",
            linear,
            1.2,
            note="linear in the number of tasks",
        ),
    ]
    return rows, mem


def _traced(setup: Callable[[], Any], run: Callable[[Any], Any]) -> dict[str, int]:
    """Bytes retained by ``run(setup())``'s result, its peak, and what stays after."""
    obj = setup()
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = run(obj)
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        del result
        time.sleep(0.1)  # background work of the run (e.g. writing its history) may end
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return {"retained": current - base, "peak": peak - base, "leaked": after - base}


def _traced_nbflow(n: int) -> dict[str, int]:
    expected = n * (n + 1) // 2

    def go(built: tuple[Flow, Any]) -> Any:
        fl, out = built
        run = fl.run(executor="threads", max_workers=WORKERS)
        check(run.ok and run.result(out) == expected, "W6 memory nbflow")
        return run

    return _traced(lambda: map_flow(n), go)


def _traced_hand(n: int) -> dict[str, int]:
    return _traced(
        lambda: bl.fan_graph(inc, total_of, n), lambda g: bl.MiniScheduler(WORKERS).run(g)
    )


# -- import time ---------------------------------------------------------------------

# What `import nbflow` must not load (DESIGN.md: "loads nothing heavy").
HEAVY = (
    "IPython",
    "ipywidgets",
    "anywidget",
    "pandas",
    "numpy",
    "joblib",
    "graphviz",
    "dask",
    "distributed",
    "nbformat",
    "nbclient",
    "rich",
)


def _run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, cwd=os.getcwd()
    )


def bench_import(cfg: Config) -> Result:
    def c_pass() -> float:
        return timed(lambda: _run_python("-c", "pass"))[0]

    def c_import() -> float:
        return timed(lambda: _run_python("-c", "import nbflow"))[0]

    samples = measure({"pass": c_pass, "import": c_import}, cfg.import_repeats)
    wall_ms = (median(samples["import"]) - median(samples["pass"])) * 1e3

    cumulative = []
    for _ in range(3):
        err = _run_python("-X", "importtime", "-c", "import nbflow").stderr
        for line in err.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2] == "nbflow":
                cumulative.append(int(parts[1]) / 1e3)
    importtime_ms = median(cumulative) if cumulative else float("nan")

    probe = (
        "import sys, nbflow; import json; "
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    loaded = json.loads(_run_python("-c", probe).stdout)
    everything = json.loads(
        _run_python(
            "-c",
            "import sys; b = set(sys.modules); import nbflow, json; "
            "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - b})))",
        ).stdout
    )
    rows = [
        limit_row(
            "IMPORT",
            "import nbflow, fresh process (wall, minus `python -c pass`)",
            "ms",
            wall_ms,
            100,
            {"python -c pass": median(samples["pass"]) * 1e3},
        ),
        Row("IMPORT", "import nbflow, -X importtime cumulative", "ms", importtime_ms),
        Row(
            "IMPORT",
            "heavy modules loaded by import nbflow",
            "modules",
            float(len(loaded)),
            target="none",
            passed=not loaded,
            note=", ".join(loaded) or "none",
        ),
    ]
    return rows, {
        "samples_s": samples,
        "importtime_ms": cumulative,
        "heavy_loaded": loaded,
        "modules_loaded": everything,
    }


WORKLOADS: dict[str, Callable[[Config], Result]] = {
    "IMPORT": bench_import,
    "W1": bench_w1,
    "W2": bench_w2,
    "W6": bench_w6,
    "W3": bench_w3,
    "W4": bench_w4,
    "W5": bench_w5,
    "W7": bench_w7,
}


def settle(seconds: float = 0.2) -> None:
    """Let threads of the previous workload end before the next one starts."""
    gc.collect()
    time.sleep(seconds)
