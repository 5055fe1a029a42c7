"""nbflow on Dask distributed against the same graphs submitted with raw ``client.submit``.

    python benchmarks/dask_workloads.py            # W2, W6 and W5 on a 2-worker LocalCluster
    python benchmarks/dask_workloads.py --quick    # fewer repeats, a 50 MB frame
    python benchmarks/run.py --only DASK           # the same, inside the suite

One ``LocalCluster(n_workers=2, threads_per_worker=1)`` on 127.0.0.1 serves every
contender; nbflow and raw Dask run interleaved in the same rounds, so their ratio
holds up on a busy machine. W5 measures bytes, not time: what the workers sent out
and what the notebook (this) process allocated while a ~300 MB DataFrame went from
one task to the next, against a raw round trip through this process.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from cache_workloads import column_means, make_frame  # noqa: E402
from harness import Config, Row, check, limit_row, measure, median, ratio_row, table  # noqa: E402
from workloads import fan_flow, inc, map_flow, total  # noqa: E402

from nbflow import Flow  # noqa: E402

Result = tuple[list[Row], dict[str, Any]]


def _cluster() -> tuple[Any, Any]:
    import distributed

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    return cluster, distributed.Client(cluster)


def _dag(
    wid: str, n: int, build: Any, client: Any, executor: Any, repeats: int
) -> tuple[list[Row], dict[str, Any]]:
    """``total`` over ``n`` ``inc`` tasks: nbflow on Dask against raw ``client.submit``."""
    expected = sum(range(1, n + 1))

    def c_nbflow() -> float:
        flow, out = build(n)
        start = time.perf_counter()
        run = flow.run(executor=executor)
        value = run.result(out)
        dt = time.perf_counter() - start
        check(run.ok and value == expected, f"{wid} nbflow on dask: {run.state}")
        return dt

    def c_raw() -> float:
        start = time.perf_counter()
        futures = [client.submit(inc, i, pure=False) for i in range(n)]
        value = client.submit(total, futures, pure=False).result()
        dt = time.perf_counter() - start
        check(value == expected, f"{wid} raw dask gave {value}")
        del futures
        return dt

    samples = measure({"nbflow": c_nbflow, "raw": c_raw}, repeats)
    us = {k: median(v) / (n + 1) * 1e6 for k, v in samples.items()}
    what = "1,000 independent tasks + reduce" if wid == "W2" else f"{n:,}-element map + reduce"
    rows = [
        ratio_row(
            wid,
            f"dask executor ({what}) / raw client.submit",
            "us/task",
            us["nbflow"],
            "raw",
            us["raw"],
            1.2,
        ),
        Row(
            wid,
            "dask executor overhead over raw submit",
            "us/task",
            us["nbflow"] - us["raw"],
        ),
    ]
    return rows, {"samples": samples, "us_per_task": us}


def _sent_by_workers(client: Any) -> int:
    """Bytes the workers have sent to anyone (other workers, the scheduler, clients)."""
    counts = client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
    return int(sum(counts.values()))


def _w5(client: Any, executor: Any, quick: bool) -> Result:
    """A large DataFrame from one task to the next: bytes that reach this process."""
    rows_n = 800_000 if quick else 4_700_000  # x 8 float64 columns: ~50 / ~300 MB
    size = rows_n * 8 * 8
    out: dict[str, Any] = {"frame_bytes": size}

    def traced(fn: Any) -> tuple[int, int, float, Any]:
        before = _sent_by_workers(client)
        tracemalloc.start()
        start = time.perf_counter()
        value = fn()
        dt = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return _sent_by_workers(client) - before, peak, dt, value

    def nbflow_run() -> Any:
        with Flow("dask-w5") as flow:
            means = column_means(make_frame(rows_n))
        run = flow.run(executor=executor)
        check(run.ok, f"W5 nbflow on dask: {run.state}")
        return run.result(means)

    def raw_round_trip() -> Any:
        frame = client.submit(make_frame.fn, rows_n, pure=False).result()  # to this process
        return client.submit(column_means.fn, frame, pure=False).result()  # and back

    # Warm up (imports, the store, the cluster) on a small frame, then let the
    # in-process scheduler (LocalCluster runs it here) settle after W6's 10,000 tasks.
    with Flow("dask-w5-warmup") as warm:
        column_means(make_frame(1000))
    check(warm.run(executor=executor).ok, "W5 warm-up")
    gc.collect()
    time.sleep(2.0)
    sent, peak, dt, means = traced(nbflow_run)
    check(len(means) == 8, "W5 nbflow means")
    raw_sent, raw_peak, raw_dt, raw_means = traced(raw_round_trip)
    check(len(raw_means) == 8, "W5 raw means")
    out.update(
        nbflow_sent=sent, nbflow_peak=peak, nbflow_s=dt, raw_sent=raw_sent, raw_peak=raw_peak
    )
    mb = size / 2**20
    rows = [
        limit_row(
            "W5",
            f"bytes sent by workers while a {mb:.0f} MB frame goes task to task (nbflow)",
            "KiB",
            sent / 2**10,
            1024.0,
            {"raw round trip": raw_sent / 2**10},
        ),
        limit_row(
            "W5",
            "peak memory allocated in the notebook process (and its in-process "
            "Dask scheduler) during the run (nbflow)",
            "KiB",
            peak / 2**10,
            0.1 * mb * 1024,
            {"raw round trip": raw_peak / 2**10},
        ),
        Row("W5", "nbflow run, value cached by the worker", "s", dt, {"raw round trip": raw_dt}),
    ]
    return rows, out


def bench_dask(cfg: Config) -> Result:
    """W2, W6 and W5 on Dask distributed (nbflow's DaskExecutor vs raw client.submit)."""
    from nbflow.executor import DaskExecutor

    home = tempfile.mkdtemp(prefix="nbflow-dask-bench-")
    os.environ.setdefault("NBFLOW_HOME", home)
    cluster, client = _cluster()
    try:
        executor = DaskExecutor(client=client)
        repeats = 3 if cfg.quick else 5
        map_repeats = 1 if cfg.quick else 3
        rows, raw = _dag("W2", 1000, fan_flow, client, executor, repeats)
        more, raw6 = _dag("W6", cfg.map_n, map_flow, client, executor, map_repeats)
        rows += more
        w5, raw5 = _w5(client, executor, cfg.quick)
        rows += w5
        rows.append(Row("DASK", f"dashboard {client.dashboard_link}", "", None))
        return rows, {"W2": raw, "W6": raw6, "W5": raw5}
    finally:
        client.close()
        cluster.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, a 50 MB frame")
    args = parser.parse_args(argv)
    rows, _ = bench_dask(Config.make(args.quick))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
