"""Cache hits settled before anything runs: one lookup for the whole graph, values read
only when needed, and what happens when an entry goes away before it is read.

Real file stores on disk; executions are counted by lines the tasks append to a file.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from marks import executed
from marks import mark as _mark

from nbflow import Flow, State, task
from nbflow.store.file import FileStore


def _executed(log: Path) -> list[str]:
    """The names marked since the last call, in order (the log is emptied)."""
    return executed(log, ordered=True)


def _chain(log: Path, n: int) -> tuple[Flow, list]:
    @task
    def step(x):
        _mark(log, f"step{x}")
        return x + 1

    with Flow("chain") as flow:
        nodes = [step(0)]
        for _ in range(n - 1):
            nodes.append(step(nodes[-1]))
    return flow, nodes


class CountingStore(FileStore):
    """The file store, counting the values it reads and the lookups it answers."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.reads = 0
        self.lookups = 0

    def get(self, key, default=None):
        self.reads += 1
        return super().get(key, default)

    def get_many(self, keys):
        self.reads += len(keys)
        return super().get_many(keys)

    def present(self, keys, tasks=()):
        self.lookups += 1
        self.tasks = set(tasks)
        return super().present(keys, tasks)


def test_a_cached_rerun_is_one_lookup_and_reads_only_what_is_asked_for(tmp_path):
    log = tmp_path / "log"
    flow, nodes = _chain(log, 50)
    store = CountingStore(tmp_path / "store")
    first = flow.run(store=store)
    assert first.ok and first.result(nodes[-1]) == 50
    assert len(_executed(log)) == 50
    store.reads = store.lookups = 0

    run = flow.run(store=store)
    assert run.counts() == {"cached": 50}
    assert _executed(log) == []
    assert store.lookups == 1
    assert store.tasks == {n.task.name for n in nodes}  # the store may narrow its listing
    assert store.reads == 0  # nothing ran, so no value was needed
    assert run.result(nodes[-1]) == 50
    assert run.result(nodes[10]) == 11
    assert store.reads == 2


def test_a_task_that_runs_reads_only_the_cached_values_it_takes(tmp_path):
    log = tmp_path / "log"

    @task
    def load(n):
        _mark(log, "load")
        return list(range(n))

    @task
    def total(xs):
        _mark(log, "total")
        return sum(xs)

    @task(cache=False)
    def report(t):
        _mark(log, "report")
        return f"total {t}"

    with Flow("partly") as flow:
        r = report(total(load(100)))
    store = CountingStore(tmp_path / "store")
    assert flow.run(store=store).result(r) == "total 4950"
    assert _executed(log) == ["load", "total", "report"]
    store.reads = 0
    run = flow.run(store=store)
    assert run.result(r) == "total 4950"
    assert _executed(log) == ["report"]
    assert (run["load"].state, run["total"].state) == (State.CACHED, State.CACHED)
    assert store.reads == 1  # total's value, which report takes; never load's


def test_a_task_below_one_that_always_runs_waits_for_it(tmp_path):
    """A cached task is settled early only when its upstream tasks are settled too: it
    never stands on an upstream task that fails in this run."""
    log = tmp_path / "log"
    broken = tmp_path / "broken"

    @task(cache=False)
    def fetch():
        _mark(log, "fetch")
        if broken.exists():
            raise ConnectionError("the server is down")
        return 3

    @task
    def double(x):
        _mark(log, "double")
        return 2 * x

    with Flow("always") as flow:
        d = double(fetch())
    assert flow.run().result(d) == 6
    second = flow.run()
    assert (second["fetch"].state, second[d].state) == (State.SUCCESS, State.CACHED)
    assert _executed(log) == ["fetch", "double", "fetch"]
    broken.touch()
    third = flow.run()
    assert third["fetch"].state is State.FAILED
    assert third[d].state is State.UPSTREAM_FAILED


def test_lazy_values_gone_before_they_are_read_are_computed_again_in_order(tmp_path):
    log = tmp_path / "log"
    flow, nodes = _chain(log, 300)
    store = FileStore(tmp_path / "store")
    assert flow.run(store=store).ok
    _executed(log)
    run = flow.run(store=store)
    assert run.counts() == {"cached": 300}
    # Another process clears the store after the lookup, before anything is read.
    assert store.clear() == 300
    assert run.result(nodes[-1]) == 300  # 300 deep: computed upstream first, no recursion
    assert _executed(log) == [f"step{i}" for i in range(300)]
    assert run.result(nodes[5]) == 6  # computed on the way, and stored again
    assert _executed(log) == []
    assert FileStore(tmp_path / "store").present([run[n].key for n in nodes]) == {
        run[n].key for n in nodes
    }


class EvictingStore(FileStore):
    """A file store whose entry for one key goes away just after the run's lookup (as
    when another process evicts it)."""

    victim: str | None = None

    def present(self, keys, tasks=()):
        found = super().present(keys, tasks)
        if self.victim is not None:
            self.delete(self.victim)
        return found


def test_a_needed_value_gone_after_the_lookup_is_computed_again_with_what_needs_it(tmp_path):
    log = tmp_path / "log"
    edited = tmp_path / "edited"

    @task
    def base():
        _mark(log, "base")
        return 10

    @task
    def middle(x):
        _mark(log, "middle")
        return x + 1

    @task(cache=False)
    def last(x):
        _mark(log, "last")
        return x * (3 if edited.exists() else 2)

    with Flow("evicted") as flow:
        out = last(middle(base()))
    store = EvictingStore(tmp_path / "store")
    first = flow.run(store=store)
    assert first.result(out) == 22
    _executed(log)
    store.victim = first["middle"].key
    edited.touch()
    run = flow.run(store=store)
    assert run.ok
    assert run.result(out) == 33
    # middle's value was needed and had gone: it ran again, on base's cached value.
    assert _executed(log) == ["middle", "last"]
    assert (run["base"].state, run["middle"].state) == (State.CACHED, State.SUCCESS)


SHARED = textwrap.dedent(
    """
    import os
    from nbflow import Flow, task

    @task
    def square(x):
        with open(os.environ["SQUARES_LOG"], "a") as fh:
            fh.write(f"square{x}\\n")
        return x * x

    with Flow("shared") as flow:
        nodes = [square(i) for i in range(20)]

    if __name__ == "__main__":
        run = flow.run(store=os.environ["SQUARES_STORE"])
        assert run.ok
        print(sum(run.result(n) for n in nodes))
    """
)


def test_two_processes_share_a_store_while_one_reads_lazily(tmp_path, monkeypatch):
    log = tmp_path / "log"
    script = tmp_path / "shared.py"
    script.write_text(SHARED)
    store_path = tmp_path / "store"
    monkeypatch.setenv("SQUARES_LOG", str(log))
    monkeypatch.setenv("SQUARES_STORE", str(store_path))

    def other_process() -> int:
        out = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1])

    assert other_process() == sum(i * i for i in range(20))
    assert len(_executed(log)) == 20
    namespace = {"__name__": "shared_flow"}
    exec(compile(SHARED, str(script), "exec"), namespace)
    flow, nodes = namespace["flow"], namespace["nodes"]
    run = flow.run(store=str(store_path))
    assert run.counts() == {"cached": 20}  # the same code: the other process's entries
    # The other process clears the store and fills it again while this run's values
    # are still unread: they read what is there now, the same results.
    FileStore(store_path).clear()
    assert other_process() == sum(i * i for i in range(20))
    assert len(_executed(log)) == 20
    assert [run.result(n) for n in nodes] == [i * i for i in range(20)]
    assert _executed(log) == []  # read from the other process's entries, not computed


def test_hits_settled_without_being_read_are_marked_used_for_eviction(tmp_path):
    import time

    log = tmp_path / "log"
    flow, nodes = _chain(log, 5)
    store = FileStore(tmp_path / "store")
    first = flow.run(store=store)
    key = first[nodes[1]].key

    def used() -> float:
        sql = "SELECT access_time FROM Cache WHERE key = ?"
        return store.cache._sql(sql, (key,)).fetchone()[0]

    before = used()
    time.sleep(0.05)
    again = flow.run(store=store)
    assert again.counts() == {"cached": 5}
    deadline = time.monotonic() + 10
    while used() == before and time.monotonic() < deadline:  # marked in the background
        time.sleep(0.01)
    assert used() > before  # as if read: the least recently used go first
