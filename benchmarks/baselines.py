"""The baselines nbflow is measured against, in the same run: small, hand-written.

- plain Python function calls (what the work itself costs);
- ``MiniScheduler``: a minimal ready-set DAG scheduler on ``ThreadPoolExecutor``;
- ``dask.delayed`` with the threaded scheduler (when dask is installed);
- raw loky: one ``submit`` per task on joblib's reusable executor.

A graph for ``MiniScheduler`` is a dict ``{key: (fn, consts, deps)}``: the node calls
``fn(*consts, *[result of d for d in deps])``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Graph = dict[Hashable, tuple[Callable[..., Any], tuple[Any, ...], tuple[Hashable, ...]]]


class MiniScheduler:
    """Submit each node to a thread pool as soon as its last upstream has finished.

    >>> MiniScheduler(2).run({"a": (int, ("1",), ()), "b": (abs, (), ("a",))})["b"]
    1
    """

    def __init__(self, max_workers: int = 2) -> None:
        self.max_workers = max_workers

    def run(self, graph: Graph) -> dict[Hashable, Any]:
        results: dict[Hashable, Any] = {}
        waiting = {key: len(deps) for key, (_, _, deps) in graph.items()}
        downstream: dict[Hashable, list[Hashable]] = {key: [] for key in graph}
        for key, (_, _, deps) in graph.items():
            for dep in deps:
                downstream[dep].append(key)
        lock = threading.Lock()
        done = threading.Event()
        remaining = [len(graph)]
        errors: list[BaseException] = []

        with ThreadPoolExecutor(self.max_workers) as pool:

            def submit(key: Hashable) -> None:
                fn, consts, deps = graph[key]
                future = pool.submit(fn, *consts, *[results[d] for d in deps])
                future.add_done_callback(lambda f: finished(key, f))

            def finished(key: Hashable, future: Future[Any]) -> None:
                error = future.exception()
                if error is not None:
                    errors.append(error)
                    done.set()
                    return
                ready = []
                with lock:
                    results[key] = future.result()
                    for down in downstream[key]:
                        waiting[down] -= 1
                        if waiting[down] == 0:
                            ready.append(down)
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()
                for down in ready:
                    submit(down)

            roots = [key for key, count in waiting.items() if count == 0]
            if not roots:
                done.set()
            for key in roots:
                submit(key)
            done.wait()
        if errors:
            raise errors[0]
        return results


# -- graphs for MiniScheduler ---------------------------------------------------------


def chain_graph(inc: Callable[[int], int], n: int) -> Graph:
    """``n`` nodes, each ``inc`` of the previous one, starting from ``inc(0)``."""
    graph: Graph = {0: (inc, (0,), ())}
    for i in range(1, n):
        graph[i] = (inc, (), (i - 1,))
    return graph


def fan_graph(inc: Callable[[int], int], reduce: Callable[..., Any], n: int) -> Graph:
    """``n`` independent ``inc(i)`` nodes and one node ``"total"`` that takes them all."""
    graph: Graph = {i: (inc, (i,), ()) for i in range(n)}
    graph["total"] = (reduce, (), tuple(range(n)))
    return graph


# -- dask -----------------------------------------------------------------------------


def dask_version() -> str | None:
    """The installed dask's version, or None when dask cannot be imported."""
    try:
        import dask
    except ImportError:
        return None
    return str(dask.__version__)


def dask_chain(inc: Callable[[int], int], n: int) -> Any:
    from dask import delayed

    d_inc = delayed(inc)
    x = d_inc(0)
    for _ in range(n - 1):
        x = d_inc(x)
    return x


def dask_fan(inc: Callable[[int], int], total: Callable[[list[int]], int], n: int) -> Any:
    from dask import delayed

    d_inc = delayed(inc)
    return delayed(total)([d_inc(i) for i in range(n)])


def dask_compute(obj: Any, max_workers: int = 2) -> Any:
    import dask

    (value,) = dask.compute(obj, scheduler="threads", num_workers=max_workers)
    return value


# -- raw loky -------------------------------------------------------------------------


def loky_pool(max_workers: int = 2) -> Any:
    """joblib's reusable loky executor (the same warm pool nbflow's processes use)."""
    from joblib.externals.loky import get_reusable_executor

    return get_reusable_executor(max_workers=max_workers, timeout=300)


def loky_map(fn: Callable[[Any], Any], items: Iterable[Any], max_workers: int = 2) -> list[Any]:
    """One ``submit`` per item, then wait for all of them."""
    pool = loky_pool(max_workers)
    futures = [pool.submit(fn, item) for item in items]
    return [f.result() for f in futures]
