"""The result cache: hits on re-runs (in this process and in new ones), what an edit
recomputes, refresh, opting out, expiry, mapped children, store permissions, and the
failures that must only cost caching (corrupt entries, unhashable inputs, unpicklable
results, a shared or read-only store), never the run.

Every test has its own store (``NBFLOW_HOME``, set by the root conftest). Executions
are counted by lines the task functions append to a file in ``tmp_path``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest
from marks import executed as _executed
from marks import mark as _mark

from nbflow import Flow, State, task
from nbflow.store.cache import CacheWarning, ResultStore, UnsafeStoreError, open_store

# -- helpers -------------------------------------------------------------------------


def _run(flow: Flow, **options):
    """Run ``flow``; return the run and the messages of the CacheWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = flow.run(**options)
    return run, [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def _states(run) -> dict[str, str]:
    return {r.name: r.state.value for r in run.task_runs}


_imported = itertools.count()


def _import(path: Path, source: str):
    """Write ``source`` to ``path`` and import it under a name of its own (fingerprints
    read the source with ``inspect.getsource``, so it must be a real file)."""
    path.write_text(source)
    name = f"_nbflow_cache_test_{path.stem}_{next(_imported)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# A flow in a file of its own, as a user would write it. Each edit below changes one
# thing in it; LOG is the same path for every version (same folder).
EDITS_FLOW = textwrap.dedent(
    """
    import pathlib

    from nbflow import Flow, task

    LOG = pathlib.Path(__file__).with_name("executed.log")
    SCALE = 3


    def mark(name):
        with LOG.open("a") as fh:
            fh.write(name + "\\n")


    def offset(x):
        return x + 1


    @task
    def load():
        mark("load")
        return 10


    @task
    def shifted(x):
        mark("shifted")
        return offset(x)


    @task
    def report(s):
        mark("report")
        return f"shifted {s}"


    @task
    def scaled(x):
        mark("scaled")
        return x * SCALE


    @task(cache_version="1")
    def doubled(x):
        mark("doubled")
        return x * 2


    with Flow("edits") as flow:
        raw = load()
        out = report(shifted(raw))
        sc = scaled(raw)
        d = doubled(raw)


    if __name__ == "__main__":
        import json

        run = flow.run()
        print(json.dumps({
            "states": {r.name: r.state.value for r in run.task_runs},
            "cached": {r.name: r.cached for r in run.task_runs},
            "results": [run.result(out), run.result(sc), run.result(d)],
        }))
    """
)
ALL_EDITS_TASKS = ["doubled", "load", "report", "scaled", "shifted"]

HELPER_EDIT = ("    return x + 1\n", "    return x + 2\n")
COSMETIC_EDIT = (
    "def offset(x):\n    return x + 1\n",
    'def offset( x ):\n    """Add one."""\n    # one more than x\n\n    return (x+1)  # plus one\n',
)


def _edited(*edits: tuple[str, str]) -> str:
    source = EDITS_FLOW
    for old, new in edits:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    return source


# -- hits ----------------------------------------------------------------------------


def test_a_second_run_takes_every_result_from_the_cache_without_executing(tmp_path):
    log = tmp_path / "log"

    @task
    def numbers():
        _mark(log, "numbers")
        return [1, 2, 3]

    @task
    def total(xs):
        _mark(log, "total")
        return {"sum": sum(xs)}

    with Flow("hits") as flow:
        t = total(numbers())

    first = flow.run()
    assert first.ok
    assert _states(first) == {"numbers": "success", "total": "success"}
    assert not any(r.cached for r in first.task_runs)
    assert _executed(log) == ["numbers", "total"]

    second = flow.run()
    assert second.ok
    assert _states(second) == {"numbers": "cached", "total": "cached"}
    assert all(r.cached for r in second.task_runs)
    assert _executed(log) == []
    assert second.result(t) == first.result(t) == {"sum": 6}
    assert second.result("numbers") == [1, 2, 3]
    assert second[t].key == first[t].key


def test_a_failed_task_is_not_cached_and_runs_again(tmp_path):
    log = tmp_path / "log"
    fixed = tmp_path / "fixed"

    @task
    def fragile():
        _mark(log, "fragile")
        if not fixed.exists():
            raise ValueError("not yet")
        return "fine"

    with Flow("fragile") as flow:
        f = fragile()

    assert flow.run().state is State.FAILED
    assert flow.run().state is State.FAILED
    assert _executed(log) == ["fragile", "fragile"]
    fixed.touch()
    run = flow.run()
    assert run.result(f) == "fine"
    assert run[f].cached is False
    assert _executed(log) == ["fragile"]


def test_a_run_in_a_new_process_reuses_the_cache_and_an_edited_helper_recomputes_its_tasks(
    tmp_path, _private_store
):
    script = tmp_path / "edits.py"
    script.write_text(EDITS_FLOW)
    env = dict(os.environ, NBFLOW_HOME=str(_private_store))
    log = tmp_path / "executed.log"

    def run_script():
        out = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run_script()
    assert set(first["states"].values()) == {"success"}
    assert first["results"] == ["shifted 11", 30, 20]
    assert _executed(log) == ALL_EDITS_TASKS

    second = run_script()
    assert second["states"] == dict.fromkeys(ALL_EDITS_TASKS, "cached")
    assert all(second["cached"].values())
    assert second["results"] == ["shifted 11", 30, 20]
    assert _executed(log) == []

    # The kernel restarts after an edit of the helper 'offset': only 'shifted', which
    # calls it, and 'report', downstream of it, run again.
    script.write_text(_edited(HELPER_EDIT))
    third = run_script()
    assert third["results"] == ["shifted 12", 30, 20]
    assert _executed(log) == ["report", "shifted"]
    assert third["states"] == {
        "load": "cached",
        "shifted": "success",
        "report": "success",
        "scaled": "cached",
        "doubled": "cached",
    }


@pytest.mark.parametrize(
    ("edits", "recomputed", "results"),
    [
        pytest.param([HELPER_EDIT], ["report", "shifted"], ["shifted 12", 30, 20], id="helper"),
        pytest.param([COSMETIC_EDIT], [], ["shifted 11", 30, 20], id="comments-and-formatting"),
        pytest.param(
            [('    mark("load")\n', '    # Where the data comes from.\n    mark( "load" )\n')],
            [],
            ["shifted 11", 30, 20],
            id="task-comments-and-formatting",
        ),
        pytest.param(
            [("SCALE = 3", "SCALE = 4")], ["scaled"], ["shifted 11", 40, 20], id="constant"
        ),
        pytest.param(
            [('cache_version="1"', 'cache_version="2"')],
            ["doubled"],
            ["shifted 11", 30, 20],
            id="cache_version",
        ),
    ],
)
def test_an_edit_recomputes_exactly_the_tasks_it_affects(tmp_path, edits, recomputed, results):
    log = tmp_path / "executed.log"
    v1 = _import(tmp_path / "flow_v1.py", EDITS_FLOW)
    assert v1.flow.run().ok
    assert _executed(log) == ALL_EDITS_TASKS

    v2 = _import(tmp_path / "flow_v2.py", _edited(*edits))
    run = v2.flow.run()
    assert run.ok
    assert _executed(log) == recomputed
    assert [run.result(v2.out), run.result(v2.sc), run.result(v2.d)] == results
    for r in run.task_runs:
        expected = "success" if r.name in recomputed else "cached"
        assert (r.name, r.state.value) == (r.name, expected)
        assert r.cached is (r.name not in recomputed)


# -- refresh, opting out, expiry ------------------------------------------------------


def test_refresh_recomputes_every_task_and_overwrites_its_entry(tmp_path):
    log = tmp_path / "log"

    @task
    def stamp():
        # What it returns depends on the outside world (how often it ran), which is
        # not part of its key: only a refresh can bring in the new value.
        _mark(log, "stamp")
        return len(log.read_text().split())

    @task
    def twice(n):
        _mark(log, "twice")
        return 2 * n

    with Flow("refresh") as flow:
        s = stamp()
        t = twice(s)

    assert flow.run().result(t) == 2
    assert flow.run().result(t) == 2  # cached
    refreshed = flow.run(refresh=True)
    assert _states(refreshed) == {"stamp": "success", "twice": "success"}
    assert not any(r.cached for r in refreshed.task_runs)
    assert refreshed.result(s) == 3  # ran once, then once more now (2 marks + this one)
    assert refreshed.result(t) == 6

    after = flow.run()
    assert _states(after) == {"stamp": "cached", "twice": "cached"}
    assert (after.result(s), after.result(t)) == (3, 6)
    assert _executed(log) == ["stamp", "stamp", "twice", "twice"]


def test_a_task_with_cache_false_is_never_read_from_or_written_to_the_store(tmp_path):
    log = tmp_path / "log"

    @task(cache=False)
    def send():
        _mark(log, "send")
        return "sent"

    @task
    def after(x):
        _mark(log, "after")
        return x.upper()

    with Flow("side-effect") as flow:
        a = after(send())

    for _ in range(3):
        run = flow.run()
        assert run.result(a) == "SENT"
        assert run["send"].state is State.SUCCESS
        assert run["send"].cached is False
    assert _executed(log) == ["after", "send", "send", "send"]
    per_task = open_store().info()["per_task"]
    assert "send" not in per_task
    assert per_task["after"] == 1


def test_an_entry_past_its_cache_expire_is_gone_and_the_task_recomputes(tmp_path):
    log = tmp_path / "log"

    @task(cache_expire=0.5)
    def fleeting():
        _mark(log, "fleeting")
        return 7

    with Flow("expiry") as flow:
        f = fleeting()

    first = flow.run()
    key = first[f].key
    assert open_store().get(key, None) == 7
    assert flow.run()[f].state is State.CACHED
    assert _executed(log) == ["fleeting"]

    time.sleep(0.7)
    assert open_store().get(key, None) is None
    third = flow.run()
    assert third[f].state is State.SUCCESS
    assert third.result(f) == 7
    assert _executed(log) == ["fleeting"]


# -- mapped children -----------------------------------------------------------------


def test_mapped_children_are_cached_one_by_one(tmp_path):
    log = tmp_path / "log"

    @task
    def square(x):
        _mark(log, f"square-{x}")
        return x * x

    @task
    def total(xs):
        _mark(log, "total")
        return sum(xs)

    def build(values):
        with Flow("mapped") as flow:
            squares = square.map(values)
            t = total(squares)
        return flow, squares, t

    flow, squares, t = build([1, 2, 3])
    assert flow.run().result(t) == 14
    assert _executed(log) == ["square-1", "square-2", "square-3", "total"]

    again = flow.run()
    assert [c.state.value for c in again[squares].children] == ["cached"] * 3
    assert _executed(log) == []

    flow, squares, t = build([1, 20, 3])
    run = flow.run()
    assert run.result(squares) == [1, 400, 9]
    assert run.result(t) == 410
    assert _executed(log) == ["square-20", "total"]
    children = run[squares].children
    assert [c.state.value for c in children] == ["cached", "success", "cached"]
    assert [c.cached for c in children] == [True, False, True]


# -- permissions ---------------------------------------------------------------------


def _tiny_flow(log: Path) -> Flow:
    @task
    def one():
        _mark(log, "one")
        return 1

    with Flow("tiny") as flow:
        one()
    return flow


def test_the_store_directory_is_created_owner_only(tmp_path, monkeypatch):
    home = tmp_path / "not-yet" / "store"
    monkeypatch.setenv("NBFLOW_HOME", str(home))
    assert _tiny_flow(tmp_path / "log").run().ok
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for path in [home / "cache", *home.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path


@pytest.mark.parametrize("where", [".", "cache", "cache/cache.db"])
def test_a_store_that_others_can_write_to_is_refused_with_how_to_fix_it(
    tmp_path, _private_store, where
):
    flow = _tiny_flow(tmp_path / "log")
    assert flow.run().ok
    target = _private_store / where
    os.chmod(target, 0o770 if target.is_dir() else 0o660)
    with pytest.raises(UnsafeStoreError, match="nbflow cache clear") as info:
        flow.run()
    assert str(_private_store) in str(info.value)
    assert _executed(tmp_path / "log") == ["one"]  # refused before running anything


def test_a_group_writable_store_is_refused_before_it_is_first_opened(tmp_path, monkeypatch):
    home = tmp_path / "shared-store"
    home.mkdir()
    os.chmod(home, 0o770)
    monkeypatch.setenv("NBFLOW_HOME", str(home))
    with pytest.raises(UnsafeStoreError, match="nbflow cache clear") as info:
        _tiny_flow(tmp_path / "log").run()
    assert f"'{home}'" in str(info.value)
    assert isinstance(info.value, PermissionError)


# -- failures that cost only caching -------------------------------------------------

BIG = list(range(30_000))  # pickles to more than 64 KiB: stored in a file of its own


def _corrupt_files(cache_dir: Path, how: str) -> int:
    files = list(cache_dir.rglob("*.val"))
    for path in files:
        data = path.read_bytes()
        if how == "garbage":
            path.write_bytes(b"this is not a pickle" * 100)
        elif how == "truncated":
            path.write_bytes(data[: len(data) // 2])
        elif how == "empty":
            path.write_bytes(b"")
    return len(files)


def _corrupt_rows(cache_dir: Path) -> int:
    with sqlite3.connect(cache_dir / "cache.db") as db:
        return db.execute(
            "UPDATE Cache SET value = ? WHERE tag = 'produce'", (b"\x80\x05garbage",)
        ).rowcount


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty", "row"])
def test_a_corrupted_entry_is_a_miss_with_a_warning_and_is_recomputed(
    tmp_path, _private_store, how
):
    log = tmp_path / "log"

    @task
    def produce():
        _mark(log, "produce")
        return {"numbers": BIG} if how != "row" else {"small": 1}

    @task
    def count(d):
        _mark(log, "count")
        return len(d.get("numbers", d))

    with Flow("corrupt") as flow:
        c = count(produce())

    expected = len(BIG) if how != "row" else 1
    assert flow.run().result(c) == expected
    cache_dir = _private_store / "cache"
    if how == "row":
        assert _corrupt_rows(cache_dir) == 1
    else:
        assert _corrupt_files(cache_dir, how) == 1
    assert _executed(log) == ["count", "produce"]

    run, caught = _run(flow)
    assert run.ok
    assert _states(run) == {"produce": "cached", "count": "cached"}
    assert run.result(c) == expected
    # Nothing needed the damaged value, so nothing read it: the run computed nothing.
    assert _executed(log) == []
    assert caught == []
    # Asked for, it is read, found damaged (with a warning) and computed again.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert run.result("produce") == ({"numbers": BIG} if how != "row" else {"small": 1})
    assert _executed(log) == ["produce"]
    caught = [str(w.message) for w in seen if issubclass(w.category, CacheWarning)]
    assert any("could not be read" in m and "recomputed" in m for m in caught), caught

    # The bad entry was replaced: the store works as before.
    third, caught = _run(flow)
    assert _states(third) == {"produce": "cached", "count": "cached"}
    assert third.result(c) == expected
    assert caught == []


_SHARED_LOCK = threading.Lock()


def test_an_unhashable_argument_gives_one_warning_and_the_task_is_not_cached(tmp_path):
    log = tmp_path / "log"
    lock = threading.Lock()

    @task
    def guarded(lk, x):
        _mark(log, "guarded")
        with lk:
            return x + 1

    @task
    def plain():
        _mark(log, "plain")
        return 5

    with Flow("unhashable-arg") as flow:
        g = guarded(lock, plain())

    for _ in range(2):
        run, caught = _run(flow)
        assert run.ok
        assert run.result(g) == 6
        assert len(caught) == 1, caught
        assert "'guarded'" in caught[0]
        assert "lock" in caught[0]
    assert _executed(log) == ["guarded", "guarded", "plain"]
    assert run["guarded"].cached is False
    assert run["plain"].state is State.CACHED


def test_a_task_reading_an_unhashable_global_warns_and_is_not_cached(tmp_path):
    log = tmp_path / "log"

    @task
    def uses_global():
        _mark(log, "uses_global")
        with _SHARED_LOCK:
            return "done"

    with Flow("unhashable-global") as flow:
        u = uses_global()

    for _ in range(2):
        run, caught = _run(flow)
        assert run.result(u) == "done"
        assert len(caught) == 1, caught
        assert "'uses_global'" in caught[0]
        assert "'_SHARED_LOCK'" in caught[0]
    assert _executed(log) == ["uses_global", "uses_global"]
    assert run[u].state is State.SUCCESS


def test_a_task_closing_over_an_unhashable_value_warns_and_is_not_cached(tmp_path):
    log = tmp_path / "log"
    lock = threading.Lock()

    @task
    def uses_closure():
        _mark(log, "uses_closure")
        with lock:
            return "done"

    with Flow("unhashable-closure") as flow:
        u = uses_closure()

    for _ in range(2):
        run, caught = _run(flow)
        assert run.result(u) == "done"
        assert [m for m in caught if "'uses_closure'" in m and "lock" in m] == caught
        assert len(caught) == 1
    assert _executed(log) == ["uses_closure", "uses_closure"]


@pytest.mark.parametrize(
    ("make", "use", "type_name", "expected"),
    [
        (threading.Lock, lambda lk: lk.acquire(blocking=False), "lock", True),
        (lambda: (i * i for i in range(4)), sum, "generator", 14),
    ],
    ids=["lock", "generator"],
)
def test_an_unpicklable_result_warns_and_still_reaches_downstream(
    tmp_path, make, use, type_name, expected
):
    log = tmp_path / "log"

    @task
    def produce():
        _mark(log, "produce")
        return make()

    @task
    def consume(value):
        _mark(log, "consume")
        return use(value)

    with Flow("unpicklable") as flow:
        c = consume(produce())

    run, caught = _run(flow)
    assert run.ok
    assert run.result(c) == expected
    assert type(run.result("produce")).__name__ == type_name
    assert len(caught) == 1, caught
    assert "'produce'" in caught[0]
    assert type_name in caught[0]
    assert _executed(log) == ["consume", "produce"]

    # Not in the store, so it runs again; its key is unchanged, so 'consume' is a hit.
    second, caught = _run(flow)
    assert second.ok
    assert second["produce"].state is State.SUCCESS
    assert second["consume"].state is State.CACHED
    assert second.result(c) == expected
    assert _executed(log) == ["produce"]


def test_a_result_whose_pickling_raises_valueerror_costs_only_its_own_caching(tmp_path):
    # ctypes pointers refuse to pickle with ValueError, not TypeError.
    log = tmp_path / "log"

    @task
    def pointer():
        _mark(log, "pointer")
        return ctypes.pointer(ctypes.c_int(41))

    @task
    def follow(p):
        _mark(log, "follow")
        return p.contents.value + 1

    with Flow("pointer") as flow:
        f = follow(pointer())

    run, caught = _run(flow)
    assert run.result(f) == 42
    assert len(caught) == 1, caught
    assert "'pointer'" in caught[0]
    assert _executed(log) == ["follow", "pointer"]

    second, _ = _run(flow)
    assert second.result(f) == 42
    assert second["follow"].state is State.CACHED
    assert _executed(log) == ["pointer"]


def test_a_store_that_failed_in_one_run_is_used_again_by_the_next(tmp_path, _private_store):
    # A database that cannot be opened (here: a directory where the file should be)
    # turns caching off for that run only; once it is repaired, caching is back.
    log = tmp_path / "log"
    blocker = _private_store / "cache" / "cache.db"
    blocker.mkdir(parents=True, mode=0o700)
    os.chmod(_private_store / "cache", 0o700)
    flow = _tiny_flow(log)

    run, caught = _run(flow)
    assert run.ok
    assert any("could not use its result store" in m for m in caught), caught

    blocker.rmdir()
    assert flow.run().ok
    again = flow.run()
    assert again["one"].state is State.CACHED
    assert _executed(log) == ["one", "one"]


def test_a_read_only_store_degrades_to_no_caching_with_a_warning(tmp_path, _private_store):
    log = tmp_path / "log"

    @task
    def value(x):
        _mark(log, f"value-{x}")
        return x * 10

    def build(x):
        with Flow("read-only") as flow:
            v = value(x)
        return flow, v

    flow, v = build(1)
    assert flow.run().result(v) == 10
    cache_dir = _private_store / "cache"
    if os.geteuid() == 0:
        # Permissions do not bind root. Stand in with a store sqlite cannot open (a
        # directory where its database should be): the same failure, one step earlier.
        for path in cache_dir.glob("cache.db*"):
            path.unlink()
        (cache_dir / "cache.db").mkdir(mode=0o700)
    else:
        for path in cache_dir.rglob("*"):
            os.chmod(path, 0o500 if path.is_dir() else 0o400)
        os.chmod(cache_dir, 0o500)

    try:
        flow, v = build(2)  # a new result: the store would have to be written
        for _ in range(2):
            # A store opened afresh, as a new kernel would find it.
            run, caught = _run(flow, store=ResultStore(_private_store))
            assert run.ok
            assert run.result(v) == 20
            assert run[v].cached is False
            about_store = [m for m in caught if "could not use its result store" in m]
            assert len(about_store) == 1, caught
            assert str(_private_store) in about_store[0]
        assert _executed(log) == ["value-1", "value-2", "value-2"]
    finally:
        for path in [cache_dir, *cache_dir.rglob("*")]:
            os.chmod(path, 0o700 if path.is_dir() else 0o600)


CONCURRENT_FLOW = textwrap.dedent(
    """
    import os, pathlib, sys, time

    from nbflow import Flow, task

    LOG = pathlib.Path(os.environ["EXEC_LOG"])


    @task
    def part(i):
        with LOG.open("a") as fh:
            fh.write(f"part-{i}\\n")
        time.sleep(0.2)
        return list(range(i * 10_000))  # some above the file threshold, some not


    @task
    def total(parts):
        return sum(len(p) for p in parts)


    with Flow("shared") as flow:
        t = total(part.map(range(6)))

    # Start together: say ready, wait for the test's go.
    READY = pathlib.Path(os.environ["READY_DIR"])
    (READY / str(os.getpid())).touch()
    while not (READY.parent / "go").exists():
        time.sleep(0.005)
    run = flow.run(max_workers=3)
    print(run.state.value, run.result(t), sum(r.cached for r in run.task_runs))
    """
)


def test_two_processes_running_one_flow_at_once_both_succeed_and_the_store_stays_readable(
    tmp_path, _private_store
):
    script = tmp_path / "shared.py"
    script.write_text(CONCURRENT_FLOW)
    log = tmp_path / "log"
    ready = tmp_path / "ready"
    ready.mkdir()
    env = dict(os.environ, NBFLOW_HOME=str(_private_store), EXEC_LOG=str(log), READY_DIR=str(ready))
    cmd = [sys.executable, str(script)]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    deadline = time.monotonic() + 30
    while len(list(ready.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=60) for p in procs]
    expected_total = sum(i * 10_000 for i in range(6))
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
        state, total, _ = out.split()
        assert (state, int(total)) == ("success", expected_total)
        assert "Traceback" not in err
    executed = _executed(log)
    assert sorted(set(executed)) == [f"part-{i}" for i in range(6)]
    assert len(executed) > 6  # they did overlap: some parts ran in both

    third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0, third.stderr
    assert third.stdout.split() == ["success", str(expected_total), "7"]
    assert _executed(log) == []


def test_a_group_writable_directory_deep_in_the_store_is_refused(_private_store):
    from nbflow.store.cache import ResultStore, UnsafeStoreError

    store = ResultStore(_private_store / "deep")
    assert store.set("k", bytes(200_000), task="big")  # stored in a file two levels down
    value_dirs = [d for d in (_private_store / "deep" / "cache").rglob("*") if d.is_dir()]
    deepest = max(value_dirs, key=lambda d: len(d.parts))
    assert len(deepest.relative_to(_private_store / "deep" / "cache").parts) == 2
    os.chmod(deepest, 0o770)
    with pytest.raises(UnsafeStoreError, match="nbflow cache clear"):
        ResultStore(_private_store / "deep")


def test_a_batch_of_results_keeps_the_stores_counts_and_replaces_old_values(tmp_path):
    """set_many writes new keys with one statement: entries and bytes are counted as
    one set at a time would count them; a key stored before, or twice in the batch, is
    replaced (its old value file removed); an unpicklable value costs only itself."""
    from nbflow.store.file import FILE_THRESHOLD, open_file_store

    store = open_file_store(tmp_path / "home")
    big = b"x" * (FILE_THRESHOLD + 10)
    store.set("old", big + b"old", task="t")
    cache = store.cache
    old_files = {p for p in (tmp_path / "home").rglob("*.val")}
    assert len(old_files) == 1
    with pytest.warns(CacheWarning, match="cannot be pickled"):
        kept = store.set_many(
            [
                ("a", 1, "t", None),
                ("old", big + b"new", "t", None),
                ("b", threading.Lock(), "t", None),
                ("c", big, "u", 60.0),
                ("a", 2, "t", None),
            ]
        )
    assert kept == [True, True, False, True, True]
    assert store.get("a") == 2 and store.get("old") == big + b"new" and store.get("c") == big
    assert store.get("b", "missing") == "missing"
    assert not any(p.exists() for p in old_files)
    assert len(cache) == 3  # diskcache's own count of entries
    on_disk = sum(p.stat().st_size for p in (tmp_path / "home").rglob("*.val"))
    assert cache.reset("size") == cache._sql("SELECT SUM(size) FROM Cache").fetchone()[0]
    assert cache.reset("size") == on_disk
    info = store.info()
    assert info["entries"] == 3 and info["per_task"] == {"t": 2, "u": 1}
    (expire,) = cache._sql("SELECT expire_time FROM Cache WHERE key = 'c'").fetchone()
    assert 50 < expire - time.time() <= 60


@pytest.mark.parametrize("n", [1, 99, 100, 237])
def test_a_large_batch_goes_in_many_rows_to_a_statement_and_every_row_reads_back(tmp_path, n):
    """Rows go in 100 to a statement, the rest in powers of two: whatever the count,
    every result reads back, with its task and expiry, and the counts are right."""
    from nbflow.store.file import open_file_store

    store = open_file_store(tmp_path / "home")
    items = [(f"k{i}", {"i": i}, f"t{i % 3}", 60.0 if i % 2 else None) for i in range(n)]
    assert store.set_many(items) == [True] * n
    assert store.get_many([k for k, *_ in items]) == {f"k{i}": {"i": i} for i in range(n)}
    cache = store.cache
    assert len(cache) == n
    assert cache.reset("size") == cache._sql("SELECT SUM(size) FROM Cache").fetchone()[0]
    tags = dict(cache._sql("SELECT key, tag FROM Cache").fetchall())
    assert tags == {f"k{i}": f"t{i % 3}" for i in range(n)}
    expiring = {k for (k,) in cache._sql("SELECT key FROM Cache WHERE expire_time IS NOT NULL")}
    assert expiring == {f"k{i}" for i in range(n) if i % 2}
