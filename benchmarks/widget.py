"""The live widget's cost: a 1,000-task threads run with the widget vs ``show=False``.

Run from the repository root: ``python benchmarks/widget.py [--repeats N]``.

Both contenders run in this process, interleaved, after one warm-up round; the numbers
are medians. "widget" makes a ``FlowWidget`` for the flow (as ``flow.run()`` does in a
notebook: graph layout, then live updates from the run's events) and passes its
listener to the run; its time includes making the widget. There is no front end here,
so the comm is ipywidgets' ``DummyComm``: each message the widget would send is
counted and serialised to JSON (what a kernel does before sending it) by wrapping the
comm's ``publish_msg`` once the widget exists (the comm_open that carries its first
state, layout included, is not counted; the comm_close of ``widget.close()`` is). Two
workloads: tasks that sleep 1 ms (work of some size) and
tasks that do nothing (the scheduler's own overhead dominates: a harsher ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_TASKS = 1000


def build(kind: str) -> tuple[Any, list[Any]]:
    from nbflow import Flow, task

    @task(cache=False, name=f"work_{kind}")
    def work(i: int) -> int:
        if kind == "sleep":
            time.sleep(0.001)
        return i

    with Flow(f"widget-bench-{kind}") as flow:
        nodes = [work(i) for i in range(N_TASKS)]
    return flow, nodes


class Counter:
    def __init__(self, widget: Any) -> None:
        self.messages = 0
        self.bytes = 0
        publish = widget.comm.publish_msg

        def counted(
            msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any
        ) -> Any:
            self.messages += 1
            self.bytes += len(json.dumps(data))
            return publish(msg_type, data=data, metadata=metadata, buffers=buffers, **keys)

        widget.comm.publish_msg = counted


def run_plain(flow: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    run = flow.run(show=False, max_workers=2)
    return time.perf_counter() - start, run


def run_widget(flow: Any) -> tuple[float, Any, Counter]:
    from nbflow.widget.model import FlowWidget

    start = time.perf_counter()
    widget = FlowWidget(flow)
    counter = Counter(widget)  # counts from the first message after the widget's creation
    run = flow.run(show=False, max_workers=2, listeners=[widget.listener])
    took = time.perf_counter() - start
    widget.close()
    return took, run, counter


def measure(kind: str, repeats: int) -> dict[str, Any]:
    flow, nodes = build(kind)
    plain: list[float] = []
    shown: list[float] = []
    messages: list[int] = []
    sizes: list[int] = []
    for round_ in range(repeats + 1):
        order = [run_plain, run_widget] if round_ % 2 else [run_widget, run_plain]
        for contender in order:
            out = contender(flow)
            run = out[1]
            assert run.ok and run.result(nodes[-1]) == N_TASKS - 1, run
            if round_ == 0:
                continue  # warm-up: thread pool, layout cache, imports
            if contender is run_plain:
                plain.append(out[0])
            else:
                shown.append(out[0])
                messages.append(out[2].messages)
                sizes.append(out[2].bytes)
    base, with_widget = statistics.median(plain), statistics.median(shown)
    return {
        "workload": f"{N_TASKS} tasks, {'1 ms sleep' if kind == 'sleep' else 'no-op'}",
        "show=False (s)": base,
        "widget (s)": with_widget,
        "ratio": with_widget / base,
        "messages": statistics.median(messages),
        "max messages": max(messages),
        "KB sent": statistics.median(sizes) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["NBFLOW_HOME"] = home
        rows = [measure("sleep", args.repeats), measure("noop", args.repeats)]
    print(f"widget benchmark: median of {args.repeats} interleaved rounds, target ratio <= 1.10")
    print(
        f"{'workload':<24} {'show=False':>10} {'widget':>9} {'ratio':>6} "
        f"{'messages (max)':>15} {'KB sent':>8}"
    )
    for r in rows:
        messages = f"{r['messages']:.0f} ({r['max messages']})"
        print(
            f"{r['workload']:<24} {r['show=False (s)']:>9.3f}s {r['widget (s)']:>8.3f}s "
            f"{r['ratio']:>6.2f} {messages:>15} {r['KB sent']:>8.0f}"
        )


if __name__ == "__main__":
    main()
