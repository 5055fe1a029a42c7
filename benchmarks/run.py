"""nbflow's benchmark suite: one entry point.

    python benchmarks/run.py                 # everything (about 80 s)
    python benchmarks/run.py --quick         # smaller and fewer repeats (about 30 s)
    python benchmarks/run.py --only W1,W3    # some workloads (IMPORT, W1, W2, W3, W4, W5, W6, W7)
    python benchmarks/run.py --only DASK     # W2, W6, W5 on Dask distributed (dask_workloads.py)

Each measure is the median of several interleaved repeats; baselines run in the same
process, in the same rounds, so ratios hold up on a shared, noisy machine. Prints a
table and writes benchmarks/results/latest.json. ``--strict`` exits 1 when a target
is missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# Runs record their history in a store: a fresh one, not the user's ./.nbflow.
_HOME = tempfile.mkdtemp(prefix="nbflow-bench-")
os.environ["NBFLOW_HOME"] = _HOME

import baselines as bl  # noqa: E402
import workloads  # noqa: E402
from harness import Config, Row, table  # noqa: E402

import nbflow  # noqa: E402


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=HERE, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _meta(cfg: Config, selected: list[str]) -> dict[str, Any]:
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": cfg.quick,
        "workloads": selected,
        "config": dataclasses.asdict(cfg),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "nbflow": nbflow.__version__,
        "git": _git("describe", "--always", "--dirty"),
        "dask": bl.dask_version(),
        "loadavg_start": os.getloadavg(),
        "nbflow_home": "a fresh temporary directory (NBFLOW_HOME)",
    }


def _bench_dask(cfg: Config) -> tuple[list[Row], dict[str, Any]]:
    import dask_workloads

    return dask_workloads.bench_dask(cfg)


def _bench_s3(cfg: Config) -> tuple[list[Row], dict[str, Any]]:
    import s3_workloads

    return s3_workloads.bench_s3(cfg)


workloads.WORKLOADS["DASK"] = _bench_dask
workloads.WORKLOADS["S3"] = _bench_s3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller, fewer repeats (~30 s)")
    parser.add_argument(
        "--only", default="", help=f"comma-separated workloads: {','.join(workloads.WORKLOADS)}"
    )
    parser.add_argument(
        "--json", type=Path, default=HERE / "results" / "latest.json", help="where to write"
    )
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    # DASK starts a cluster of its own, S3 a server: they run when named (--only DASK,S3).
    selected = [w for w in workloads.WORKLOADS if w not in ("DASK", "S3")]
    if args.only:
        wanted = [w.strip().upper() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in workloads.WORKLOADS]
        if unknown:
            parser.error(
                f"unknown workload {unknown[0]!r}; choose from {', '.join(workloads.WORKLOADS)}"
            )
        selected = [w for w in workloads.WORKLOADS if w in wanted]

    cfg = Config.make(args.quick)
    meta = _meta(cfg, selected)
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    started = time.perf_counter()
    for wid in selected:
        print(f"[{wid}] running ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        found, data = workloads.WORKLOADS[wid](cfg)
        data["seconds"] = time.perf_counter() - t0
        rows += found
        raw[wid] = data
        print(f"[{wid}] done in {data['seconds']:.1f} s", file=sys.stderr, flush=True)
        workloads.settle()
    meta["seconds"] = time.perf_counter() - started
    meta["loadavg_end"] = os.getloadavg()

    print()
    print(
        f"nbflow {meta['nbflow']} ({meta['git']}), Python {meta['python']}, "
        f"{meta['cpu_count']} CPUs, load {meta['loadavg_start'][0]:.2f} -> "
        f"{meta['loadavg_end'][0]:.2f}, {'quick' if cfg.quick else 'full'} run in "
        f"{meta['seconds']:.0f} s; medians of interleaved repeats."
    )
    print()
    print(table(rows))
    notes = [(r.workload, r.measure, r.note) for r in rows if r.note]
    if notes:
        print()
        for wid, measure, note in notes:
            print(f"  {wid} {measure}: {note}")
    if args.markdown:
        print()
        print(table(rows, markdown=True))
    failed = [r for r in rows if r.passed is False]
    print()
    checked = sum(r.passed is not None for r in rows)
    print(f"{checked - len(failed)}/{checked} targets met.")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "rows": [dataclasses.asdict(r) for r in rows], "raw": raw}
    args.json.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    print(f"Results written to {args.json}")
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    try:
        code = main()
    finally:
        shutil.rmtree(_HOME, ignore_errors=True)
    sys.exit(code)
