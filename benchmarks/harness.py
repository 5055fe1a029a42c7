"""Timing helpers, result rows and the report table of the benchmark suite."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Sample = float | dict[str, float]


@dataclass(frozen=True)
class Config:
    """How big and how often: the full suite, or ``--quick``."""

    quick: bool
    repeats: int  # W1/W2 timings
    build_big: int  # the larger graph of the build-scaling check
    build_repeats: int
    cpu_repeats: int  # W3 speedup
    cpu_seconds: float  # per CPU task
    tiny_n: int  # W3 per-task overhead
    tiny_repeats: int
    map_n: int  # W6
    map_repeats: int
    mem_n: int  # W6 memory: a map of mem_n against one of 2 * mem_n
    import_repeats: int

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(
                quick=True,
                repeats=3,
                build_big=2000,
                build_repeats=1,
                cpu_repeats=1,
                cpu_seconds=0.25,
                tiny_n=200,
                tiny_repeats=3,
                map_n=10_000,
                map_repeats=3,
                mem_n=5_000,
                import_repeats=5,
            )
        return cls(
            quick=False,
            repeats=7,
            build_big=4000,
            build_repeats=3,
            cpu_repeats=5,
            cpu_seconds=0.25,
            tiny_n=200,
            tiny_repeats=7,
            map_n=10_000,
            map_repeats=5,
            mem_n=10_000,
            import_repeats=11,
        )


def measure(
    contenders: dict[str, Callable[[], Sample]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Run each contender ``repeats`` times, interleaved (the order rotates each round).

    A contender times itself and returns seconds, or a dict of named seconds (stored
    as ``"name.key"``). Interleaving spreads the noise of a shared machine evenly.
    """
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    samples: dict[str, list[float]] = {}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            out = contenders[name]()
            if isinstance(out, dict):
                for key, value in out.items():
                    samples.setdefault(f"{name}.{key}", []).append(value)
            else:
                samples.setdefault(name, []).append(out)
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, value)`` of one call."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def check(ok: bool, what: str) -> None:
    """A benchmark that computes a wrong answer measures nothing: stop."""
    if not ok:
        raise AssertionError(f"benchmark check failed: {what}")


@dataclass
class Row:
    """One line of the report: a measure of nbflow, its baselines, ratio and target."""

    workload: str
    measure: str
    unit: str  # "us/task", "s", "ms", "B/task", "x" (a ratio or speedup)
    nbflow: float | None
    baselines: dict[str, float] = field(default_factory=dict)
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""


def ratio_row(
    workload: str,
    measure: str,
    unit: str,
    value: float,
    name: str,
    base: float | None,
    limit: float,
    note: str = "",
) -> Row:
    """A row whose verdict is ``value / base <= limit`` (no verdict without a baseline)."""
    if base is None:
        return Row(workload, measure, unit, value, {}, None, f"<= {limit:g}x", None, note)
    ratio = value / base
    return Row(
        workload, measure, unit, value, {name: base}, ratio, f"<= {limit:g}x", ratio <= limit, note
    )


def limit_row(
    workload: str,
    measure: str,
    unit: str,
    value: float,
    limit: float,
    baselines: dict[str, float] | None = None,
    *,
    at_least: bool = False,
    note: str = "",
) -> Row:
    """A row whose verdict is ``value <= limit`` (or ``>=`` with ``at_least``)."""
    passed = value >= limit if at_least else value <= limit
    target = f"{'>=' if at_least else '<='} {_num(limit, unit)}"
    return Row(workload, measure, unit, value, baselines or {}, None, target, passed, note)


# -- the table ------------------------------------------------------------------------


def _num(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "B/task":
        return f"{value:,.0f} B/task"
    if unit == "us/task":
        return f"{value:.1f} us/task" if abs(value) < 1000 else f"{value:,.0f} us/task"
    return f"{value:g} {unit}"


def format_row(row: Row) -> list[str]:
    unit = row.unit
    nb = "" if row.nbflow is None else _num(row.nbflow, unit)
    base = ", ".join(f"{name} {_num(v, unit)}" for name, v in row.baselines.items())
    ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
    verdict = {True: "PASS", False: "FAIL", None: "-"}[row.passed]
    if row.target and row.passed is None:
        verdict = "n/a"
    return [row.workload, row.measure, nb, base, ratio, row.target, verdict]


HEADER = ["workload", "measure", "nbflow", "baseline(s)", "ratio", "target", "result"]


def table(rows: list[Row], markdown: bool = False) -> str:
    """The rows as a plain-text table (or a Markdown one)."""
    cells = [HEADER, *(format_row(r) for r in rows)]
    if markdown:
        lines = ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in cells]
        lines.insert(1, "|" + "|".join("---" for _ in HEADER) + "|")
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    out = []
    for n, line in enumerate(cells):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
