"""W4, W5 and W7: the result cache (a fully cached re-run, a large DataFrame result) and a
large DataFrame handed between tasks."""

from __future__ import annotations

import os
import pickle
import tempfile
import time
from typing import Any

import baselines as bl
from harness import Config, Row, check, limit_row, measure, median, ratio_row, timed

from nbflow import Flow, task
from nbflow.engine.keys import Keys
from nbflow.engine.plan import compile_plan

Result = tuple[list[Row], dict[str, Any]]


@task
def square(x: int) -> int:
    return x * x


@task
def make_frame(rows: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.random((rows, 8)), columns=[f"c{i}" for i in range(8)])


@task
def column_means(frame: Any) -> list[float]:
    return [float(v) for v in frame.mean()]


@task
def step(x: int) -> int:
    return x + 1


@task
def blob(i: int, size: int) -> bytes:
    return bytes([i % 256]) * size


@task
def grow(data: bytes, size: int) -> bytes:
    return data[:1] * size


@task
def pieces(n: int, size: int) -> list[bytes]:
    return [bytes([i % 256]) * size for i in range(n)]


@task
def piece_size(data: bytes) -> int:
    return len(data)


@task
def add_up(sizes: list[int]) -> int:
    return sum(sizes)


def bench_w4(cfg: Config) -> Result:
    """Re-running a fully cached 1,000-task flow: independent tasks, and a chain."""
    import diskcache
    import joblib

    n = 1000
    with Flow("w4") as flow:
        nodes = [square(i) for i in range(n)]
    with Flow("w4-chain") as chain:
        links = [step(0)]
        for _ in range(n - 1):
            links.append(step(links[-1]))
    check(flow.run().ok and chain.run().ok, "W4 first runs")

    def c_nbflow() -> float:
        dt, run = timed(flow.run)
        check(run.ok and run.counts() == {"cached": n}, f"W4 all cached: {run.counts()}")
        check(run.result(nodes[7]) == 49, "W4 value")
        return dt

    def c_chain() -> float:
        dt, run = timed(chain.run)
        check(run.ok and run.counts() == {"cached": n}, f"W4 chain all cached: {run.counts()}")
        check(run.result(links[-1]) == n, "W4 chain value")
        return dt

    tmp = tempfile.mkdtemp(prefix="nbflow-w4-")
    raw = diskcache.Cache(os.path.join(tmp, "raw"))
    for i in range(n):
        raw.set(f"k{i}", i * i)

    def c_diskcache() -> float:
        dt, values = timed(lambda: [raw.get(f"k{i}") for i in range(n)])
        check(values[7] == 49, "W4 diskcache")
        return dt

    memory = joblib.Memory(os.path.join(tmp, "joblib"), verbose=0)
    cached_square = memory.cache(square.fn)
    for i in range(n):
        cached_square(i)

    def c_joblib() -> float:
        dt, values = timed(lambda: [cached_square(i) for i in range(n)])
        check(values[7] == 49, "W4 joblib")
        return dt

    samples = measure(
        {"nbflow": c_nbflow, "chain": c_chain, "diskcache": c_diskcache, "joblib": c_joblib},
        cfg.repeats,
    )
    nb, ch, dc, jm = (median(samples[k]) for k in ("nbflow", "chain", "diskcache", "joblib"))
    base = {"diskcache.get loop": dc, "joblib.Memory": jm}
    rows = [
        limit_row("W4", "fully cached re-run, 1,000 independent tasks", "s", nb, 0.010, base),
        limit_row("W4", "fully cached re-run, 1,000-task chain", "s", ch, 0.010, base),
        ratio_row(
            "W4", "cached re-run (independent) / raw diskcache.get loop", "x", nb, "x", dc, 0.5
        ),
        ratio_row("W4", "cached re-run (chain) / raw diskcache.get loop", "x", ch, "x", dc, 0.5),
        ratio_row("W4", "cached re-run / joblib.Memory hits", "x", nb, "x", jm, 99),
    ]
    for row in rows[2:]:
        row.nbflow, row.baselines = None, {}
    rows[-1].target, rows[-1].passed = "", None
    rows[2].note = "nbflow also builds the run: states, events, history"
    lazy_rows, lazy = _lazy_reads(cfg)
    return rows + lazy_rows, {"samples_s": samples, "lazy": lazy}


def _bytes_read() -> int:
    """Bytes this process has read so far (Linux: /proc/self/io, rchar)."""
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def _lazy_reads(cfg: Config) -> tuple[list[Row], dict[str, Any]]:
    """A cached re-run of a chain whose intermediate results total 1 GB (100 MB with
    --quick) reads almost nothing until a result is asked for."""
    from nbflow.store.cache import ResultStore

    links, size = 10, (10 if cfg.quick else 100) * 2**20
    tmp = tempfile.mkdtemp(prefix="nbflow-w4-lazy-")
    store = ResultStore(os.path.join(tmp, "store"))
    try:
        with Flow("w4-lazy") as flow:
            last = blob(0, size)
            for _ in range(links - 1):
                last = grow(last, size)
        check(flow.run(store=store).ok, "W4 lazy first run")
        before = _bytes_read()
        run = flow.run(store=store)
        rerun_read = _bytes_read() - before
        check(run.counts() == {"cached": links}, f"W4 lazy: {run.counts()}")
        before = _bytes_read()
        check(len(run.result(last)) == size, "W4 lazy value")
        asked_read = _bytes_read() - before
        # A map over a list of that size: the list's length is stored beside it.
        with Flow("w4-lazy-map") as mapped:
            total = add_up(piece_size.map(pieces(links, size)))
        check(mapped.run(store=store).result(total) == links * size, "W4 lazy map first")
        before = _bytes_read()
        again = mapped.run(store=store)
        check(again.result(total) == links * size, "W4 lazy map value")
        map_read = _bytes_read() - before
        check(again.counts() == {"cached": links + 2}, f"W4 lazy map: {again.counts()}")
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    total_mb = links * size / 2**20
    rows = [
        limit_row(
            "W4",
            f"cached re-run of a chain of {total_mb:.0f} MB of results: bytes read",
            "MB",
            rerun_read / 2**20,
            1.0,
            {"asking for the last result": asked_read / 2**20},
        ),
        limit_row(
            "W4",
            f"cached re-run of a map over a list of {total_mb:.0f} MB: bytes read",
            "MB",
            map_read / 2**20,
            1.0,
            note="its result asked for; the list is not read, its length is stored",
        ),
    ]
    found = {"rerun_bytes": rerun_read, "asked_bytes": asked_read, "map_bytes": map_read}
    return rows, {**found, "total_mb": total_mb}


def bench_w5(cfg: Config) -> Result:
    """A large DataFrame result: the cost of caching it, and the downstream key."""
    import numpy as np  # noqa: F401 - imported here so the timing below excludes it
    import pandas as pd  # noqa: F401

    from nbflow.store.cache import ResultStore

    big_rows = 800_000 if cfg.quick else 4_700_000  # x 8 float64 columns: ~50 / ~300 MB
    small_rows = 8_000
    frame = make_frame.fn(big_rows)
    size_mb = frame.memory_usage(deep=True).sum() / 2**20
    tmp = tempfile.mkdtemp(prefix="nbflow-w5-")
    store = ResultStore(os.path.join(tmp, "store"))
    counter = iter(range(10**6))

    def c_store() -> float:
        key = f"frame-{next(counter)}"
        dt, ok = timed(lambda: store.set(key, frame, task="make_frame"))
        check(ok, "W5 store.set")
        store.delete(key)
        return dt

    def c_pickle() -> float:
        path = os.path.join(tmp, "raw.pkl")
        start = time.perf_counter()
        with open(path, "wb") as fh:
            pickle.dump(frame, fh, protocol=5)
        dt = time.perf_counter() - start
        os.unlink(path)
        return dt

    samples = measure({"store": c_store, "pickle": c_pickle}, max(3, cfg.repeats // 2))
    write, raw = median(samples["store"]), median(samples["pickle"])
    frame = None  # free it before the flows below make their own

    # The downstream's key: computed from the upstream's key, never from its value.
    key_times = {}
    for label, rows in (("small", small_rows), ("big", big_rows)):
        with Flow(f"w5-{label}") as flow:
            out = column_means(make_frame(rows))
        run = flow.run(store=store)
        check(run.ok and len(run.result(out)) == 8, "W5 flow")
        plan = next(p for p in compile_plan(flow) if p.node is out)
        keys = Keys(run._engine.runs)
        keys.key(plan, None)  # the fingerprint, computed once per run
        reps = 2000
        start = time.perf_counter()
        for _ in range(reps):
            keys.key(plan, None)
        key_times[label] = (time.perf_counter() - start) / reps * 1e6
    rows_out = [
        ratio_row(
            "W5",
            f"cache write of a {size_mb:.0f} MB DataFrame / pickle.dump to a file",
            "s",
            write,
            "pickle.dump",
            raw,
            1.5,
        ),
        Row(
            "W5",
            f"downstream key computation, {size_mb:.0f} MB upstream",
            "us/task",
            key_times["big"],
            {"0.5 MB upstream": key_times["small"]},
            key_times["big"] / key_times["small"],
            "<= 1.5x",
            key_times["big"] / key_times["small"] <= 1.5,
            "independent of the upstream's size: only its key is hashed",
        ),
    ]
    return rows_out, {"samples_s": samples, "key_us": key_times, "frame_mb": size_mb}


def bench_w7(cfg: Config) -> Result:
    """A large DataFrame handed from one task to the next, with no store: on threads, and
    between worker processes."""
    import numpy as np  # noqa: F401 - imported here so the timing below excludes it
    import pandas as pd  # noqa: F401

    rows_n = 800_000 if cfg.quick else 4_700_000  # x 8 float64 columns: ~50 / ~300 MB
    with Flow("w7") as flow:
        out = column_means(make_frame(rows_n))

    def c_nbflow() -> float:
        dt, run = timed(lambda: flow.run(executor="threads", max_workers=2, store=False))
        check(run.ok and len(run.result(out)) == 8, "W7 nbflow")
        return dt

    def c_plain() -> float:
        dt, means = timed(lambda: column_means.fn(make_frame.fn(rows_n)))
        check(len(means) == 8, "W7 plain")
        return dt

    def c_processes() -> float:
        dt, run = timed(lambda: flow.run(executor="processes", max_workers=2, store=False))
        check(run.ok and len(run.result(out)) == 8, "W7 nbflow processes")
        return dt

    def c_loky() -> float:
        # The same by hand: each step submitted to the warm loky pool nbflow uses, the
        # frame coming back to this process and going out again.
        pool = bl.loky_pool(2)
        dt, means = timed(
            lambda: pool.submit(
                column_means.fn, pool.submit(make_frame.fn, rows_n).result()
            ).result()
        )
        check(len(means) == 8, "W7 loky")
        return dt

    repeats = max(3, cfg.repeats // 2)
    samples = measure({"nbflow": c_nbflow, "plain": c_plain}, repeats)
    # Apart: frames going through worker processes leave memory behind (the workers'
    # and the shared-memory files') that the threads' figures must not pay for.
    samples.update(measure({"processes": c_processes, "loky": c_loky}, repeats))
    nb, plain = median(samples["nbflow"]), median(samples["plain"])
    procs, loky = median(samples["processes"]), median(samples["loky"])
    size = "50 MB" if cfg.quick else "300 MB"
    return [
        ratio_row(
            "W7",
            f"{size} DataFrame between two tasks, threads, store=False / plain calls",
            "s",
            nb,
            "plain calls",
            plain,
            1.2,
        ),
        Row(
            "W7",
            f"{size} DataFrame between two tasks, processes, store=False / raw loky submits",
            "s",
            procs,
            {"raw loky submits": loky, "plain calls": plain},
            procs / loky,
            note="large buffers cross through shared-memory files, not loky's pipe",
        ),
    ], {"samples_s": samples}
