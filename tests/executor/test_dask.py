"""The Dask executor on a real LocalCluster: 2 worker processes of 1 thread, 127.0.0.1.

One cluster serves the whole module. Task functions live at module level so they
travel to the workers by reference; the scripts run in subprocesses define theirs in
``__main__`` (they travel by value).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time

import distributed
import pytest

from nbflow import SKIP, SUCCESS, Flow, NbflowError, State, get_logger, task, unmapped
from nbflow.errors import TaskTimeoutError, WorkerDiedError
from nbflow.executor import DaskExecutor
from nbflow.store.cache import open_store

# The test's own process; worker processes import this module too, and inherit this.
PARENT = int(os.environ.setdefault("NBFLOW_TEST_PARENT_PID", str(os.getpid())))


@pytest.fixture(scope="module")
def client():
    import dask

    with (
        # A task whose worker dies twice is given up on (Dask's default is 3 deaths).
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            processes=True,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture()
def dask(client):
    client.wait_for_workers(2, timeout=60)  # a test may have killed one: the nanny restarts it
    return DaskExecutor(client=client)


def first_time(path: str) -> bool:
    """True the first time it is called with ``path`` (in any process)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


# -- task functions ------------------------------------------------------------------


@task(retries=1, cache=False)
def flaky(x, marker_dir):
    if first_time(os.path.join(marker_dir, f"flaky-{x}")):
        raise OSError(f"flaky {x}: first attempt fails")
    return x * 10


@task(timeout=1, retries=1, cache=False)
def runaway(x):
    deadline = time.time() + 30
    while time.time() < deadline:  # Python code: interruptible on the worker
        time.sleep(0.02)
    return x


@task(cache=False)
def total(xs):
    return sum(xs)


@task(cache=False)
def chatty(x):
    print(f"printed by item {x}")
    get_logger().warning("logged by item %s", x)
    return os.getpid()


@task(cache=False)
def die_once(marker, value):
    if first_time(marker):
        time.sleep(0.5)  # mid-run: the worker has reported the attempt's start
        os._exit(1)
    return value


@task(cache=False)
def always_dies():
    time.sleep(0.3)
    os._exit(1)


@task(cache=False)
def boom():
    raise ValueError("boom on a worker")


@task(cache=False, trigger="all_finished")
def cleanup(upstream):
    return f"cleaned up after {type(upstream).__name__}: {upstream}"


@task(cache=False)
def skipper():
    raise SKIP("nothing to do")


@task(cache=False)
def early():
    raise SUCCESS("nothing left to do", result=41)


@task(cache=False)
def after_skip(x):
    return x


@task(cache=False)
def inc(x):
    return x + 1


class Tripwire:
    """Unpickles anywhere but in the test's own process: proves a value never came back."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __setstate__(self, state: dict) -> None:
        if os.getpid() == PARENT:
            raise RuntimeError("a Tripwire reached the notebook process")
        self.__dict__.update(state)


@task
def make_tripwire(n):
    return Tripwire(b"x" * n)


@task
def measure(wire):
    return len(wire.payload)


@task(cache=False)
def measure_once_failing(wire, marker):
    if first_time(marker):
        raise OSError("the first run fails")
    return len(wire.payload)


@task
def make_blob(n):
    return b"x" * n


@task(cache=False)
def blob_size(blob):
    return len(blob)


@task(cache=False)
def sleepy(seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        time.sleep(0.02)
    return seconds


# -- tests ---------------------------------------------------------------------------


def test_mapped_flow_with_retries_and_a_timeout_runs_on_the_cluster(dask, tmp_path):
    with Flow("dask-map") as flow:
        tens = flaky.map([1, 2, 3], marker_dir=unmapped(str(tmp_path)))
        t = total(tens)
        slow = runaway(7)
    started = time.time()
    run = flow.run(executor=dask)
    took = time.time() - started
    assert run.result(t) == 60
    assert [c.attempts for c in run[tens].children] == [2, 2, 2]
    assert all(c.state is State.SUCCESS for c in run[tens].children)
    assert run[tens].children[0].history[0].state is State.FAILED
    assert run[slow].state is State.TIMED_OUT
    assert run[slow].attempts == 2
    assert isinstance(run[slow].error, TaskTimeoutError)
    assert "timed out after 1s" in str(run[slow].error)
    assert run.state is State.FAILED
    # Two 1 s timeouts in a row, not the task's 30 s: the attempts were stopped.
    assert took < 20


def test_prints_and_logs_on_workers_are_captured_per_task(dask):
    with Flow("dask-logs") as flow:
        pids = chatty.map([1, 2, 3])
    run = flow.run(executor=dask)
    assert run.ok
    for i, child in enumerate(run[pids].children, start=1):
        messages = [(r.level, r.message) for r in child.logs]
        assert ("INFO", f"printed by item {i}") in messages
        assert ("WARNING", f"logged by item {i}") in messages
        assert len(messages) == 2  # nothing from the other items
    assert PARENT not in run.result(pids)


def test_values_stay_on_the_workers_and_the_workers_write_the_cache(dask):
    with Flow("dask-tripwire") as flow:
        wire = make_tripwire(1000)
        size = measure(wire)
    run = flow.run(executor=dask)
    assert run.ok
    assert run.result(size) == 1000  # the Tripwire went from worker to worker only
    store = open_store()
    assert run[wire].key in store.cache  # written there: this process never had it
    with pytest.raises(RuntimeError, match="reached the notebook process"):
        run.result(wire)  # asking for it is what brings it here


class DictStore:
    """A result store in this process only: workers can neither read nor write it."""

    def __init__(self):
        self.values = {}

    def get(self, key, default=None):
        return self.values.get(key, default)

    def get_many(self, keys):
        return {k: self.values[k] for k in keys if k in self.values}

    def sizes(self, keys):
        return {k: 100_000 for k in keys if k in self.values}  # all "large": offered to Dask

    def set(self, key, value, *, task, expire=None):
        self.values[key] = value
        return True

    def begin_run(self):
        pass

    def delete(self, key):
        self.values.pop(key, None)

    def info(self):
        return {"path": "memory", "entries": len(self.values), "bytes": 0, "per_task": {}}

    def clear(self, task=None, older_than=None):
        count = len(self.values)
        self.values.clear()
        return count


def test_a_store_that_is_not_a_folder_is_written_and_read_by_this_process(dask):
    store = DictStore()
    with Flow("dask-dict-store") as flow:
        blobs = make_blob.map([10, 20])
        sizes = blob_size.map(blobs)
    first = flow.run(executor=dask, store=store)
    assert first.ok and first.result(sizes) == [10, 20]
    assert sorted(store.values.values()) == [b"x" * 10, b"x" * 20]
    second = flow.run(executor=dask, store=store)
    assert [c.state for c in second[blobs].children] == [State.CACHED, State.CACHED]
    assert second.result(sizes) == [10, 20]


def test_a_worker_killed_mid_run_is_replaced_and_the_run_succeeds(dask, tmp_path):
    marker = str(tmp_path / "died")
    with Flow("dask-kill") as flow:
        ones = inc.map([0, 0, 0, 0])
        dying = die_once(marker, 5)
        t = total(ones)
    run = flow.run(executor=dask)
    assert run.ok, run.failed
    assert run.result(dying) == 5
    assert run.result(t) == 4
    died = run[dying]
    assert died.attempts == 2
    assert died.history[0].state is State.FAILED
    assert isinstance(died.history[0].error, WorkerDiedError)
    assert died.history[1].state is State.SUCCESS
    assert any("was lost while running it" in r.message for r in died.logs)


def test_a_task_that_keeps_killing_its_worker_fails_with_each_run_recorded(dask):
    with Flow("dask-kill-always") as flow:
        doomed = always_dies()
        fine = inc(1)
    run = flow.run(executor=dask)
    assert run.result(fine) == 2
    assert run[doomed].state is State.FAILED
    assert isinstance(run[doomed].error, WorkerDiedError)
    assert "Dask gave up on it" in str(run[doomed].error)
    assert run[doomed].attempts == 2  # the first run lost with its worker, then the last
    assert [a.state for a in run[doomed].history] == [State.FAILED, State.FAILED]


def test_cache_hits_on_the_second_run_and_large_values_are_loaded_by_the_workers(dask):
    with Flow("dask-cache") as flow:
        wires = make_tripwire.map([100_000, 200_000])  # large: each in a file of its own
        sizes = measure.map(wires)
        again = measure.with_options(cache=False).map(wires)
    first = flow.run(executor=dask)
    second = flow.run(executor=dask)
    assert first.ok and second.ok
    every = [*second[wires].children, *second[sizes].children]
    assert {c.state for c in every} == {State.CACHED}
    assert second.result(sizes) == [100_000, 200_000]
    # A downstream that runs again gets the cached values on the workers, not from here.
    assert [c.state for c in second[again].children] == [State.SUCCESS, State.SUCCESS]
    assert second.result(again) == [100_000, 200_000]


@task
def word_list(n):
    return [f"w{i}" * (i + 1) for i in range(n)]


@task
def word_length(word):
    return len(word)


def test_a_cached_list_expands_its_map_on_dask_and_a_child_that_runs_gets_its_item(dask, tmp_path):
    with Flow("dask-cached-map") as flow:
        lengths = word_length.map(word_list(4))
    store = open_store(str(tmp_path / "store"))
    first = flow.run(executor=dask, store=store)
    expected = [len(f"w{i}" * (i + 1)) for i in range(4)]
    assert first.result(lengths) == expected
    store.delete(first[lengths].children[2].key)
    again = flow.run(executor=dask, store=store)
    assert again.result(lengths) == expected
    assert [c.cached for c in again[lengths].children] == [True, True, False, True]


def test_retry_of_a_recorded_run_reuses_a_large_result_without_bringing_it_here(dask, tmp_path):
    import nbflow

    with Flow("dask-retry") as flow:
        wire = make_tripwire(150_000)
        size = measure_once_failing(wire, str(tmp_path / "failed-once"))
    first = flow.run(executor=dask)
    assert first[size].state is State.FAILED
    again = nbflow.load_run(first.id).retry(flow=flow, executor=dask)
    assert again.ok
    assert again[wire].state is State.CACHED  # reused from the store, read on a worker
    assert again.result(size) == 150_000


def test_a_store_the_workers_cannot_see_is_written_and_read_by_the_notebook_process(tmp_path):
    # The worker runs in a mount namespace of its own where the store's directory is
    # hidden under an empty tmpfs: to it, the store is on another machine.
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    store_dir = hidden / "store"
    path = [os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    with (
        distributed.LocalCluster(
            n_workers=0, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        command = (
            f"mount -t tmpfs none {hidden} && exec {sys.executable} -m "
            f"distributed.cli.dask_worker {cluster.scheduler_address} --nthreads 1 "
            "--no-nanny --host 127.0.0.1"
        )
        worker = subprocess.Popen(["unshare", "-m", "sh", "-c", command], env=env)
        try:
            client.wait_for_workers(1, timeout=60)
            executor = DaskExecutor(client=client)
            with Flow("dask-far-store") as flow:
                blobs = make_blob.map([100_000])
                sizes = blob_size.map(blobs)
            first = flow.run(executor=executor, store=str(store_dir))
            assert first.ok
            store = open_store(store_dir)
            assert run_key_stored(store, first[blobs].children[0].key)
            # Here the store and its id exist; the worker does not see them.
            ident = str(store_dir / "store-id")
            assert os.path.exists(ident)
            assert list(client.run(os.path.exists, ident).values()) == [False]
            second = flow.run(executor=executor, store=str(store_dir))
            assert second[blobs].children[0].state is State.CACHED
            # Read here from the store, then sent to the worker that needs it.
            assert second.result(sizes) == [100_000]
        finally:
            worker.terminate()
            worker.wait(30)


def run_key_stored(store, key) -> bool:
    return key is not None and key in store.cache


SCRIPT = """
import os, sys
from nbflow import Flow, task
from nbflow.executor import DaskExecutor

@task
def square(x):
    print("computing", x)
    return x * x

@task
def add(xs):
    return sum(xs)

with Flow("dask-subprocess") as flow:
    t = add(square.map([1, 2, 3]))

if __name__ == "__main__":
    run = flow.run(executor=DaskExecutor(address=sys.argv[1]))
    states = sorted({r.state.value for r in run.task_runs})
    print(run.result(t), ",".join(states))
"""


def test_cache_hits_from_a_new_process(client, tmp_path):
    script = tmp_path / "flow_script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "NBFLOW_HOME": str(tmp_path / "store")}
    address = client.scheduler.address
    outs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, str(script), address],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        outs.append(out.stdout.strip().splitlines()[-1])
    assert outs == ["14 success", "14 cached"]


def test_failures_triggers_and_signals_behave_as_on_local_executors(dask):
    failed_hooks = []

    def on_failure(task_, task_run):
        failed_hooks.append((task_run.name, os.getpid()))

    with Flow("dask-fail") as flow:
        b = boom.with_options(on_failure=[on_failure])()
        c = cleanup(b)
        after = inc(b)
        s = skipper()
        a = after_skip(s)
        e = inc(early())
    run = flow.run(executor=dask)
    assert run.result(e) == 42  # SUCCESS's result stays on the worker, like any value
    assert run[e].state is State.SUCCESS
    assert run[b].state is State.FAILED
    with pytest.raises(ValueError, match="boom on a worker"):
        run.result(b)
    assert "ValueError: boom on a worker" in run[b].traceback
    assert run.result(c) == "cleaned up after ValueError: boom on a worker"
    assert run[after].state is State.UPSTREAM_FAILED
    assert run[s].state is State.SKIPPED and run[s].reason == "nothing to do"
    assert run[a].state is State.SKIPPED
    assert failed_hooks == [("boom", PARENT)]


def test_a_background_run_can_be_cancelled(dask):
    with Flow("dask-cancel") as flow:
        naps = sleepy.map([10, 10, 10, 10])
    run = flow.run(executor=dask, background=True)
    time.sleep(1.0)
    run.cancel()
    assert run.wait(30)
    assert run.state is State.CANCELLED
    assert {c.state for c in run[naps].children} == {State.CANCELLED}
    # The attempts that were running were interrupted: the workers are free at once,
    # not after the rest of their 10 s.
    started = time.time()
    assert dask.client.submit(pickle.dumps, 1, pure=False).result(timeout=30)
    assert time.time() - started < 5


def test_the_dashboard_link_is_in_the_run_summary(dask, client):
    with Flow("dask-dashboard") as flow:
        inc(1)
    run = flow.run(executor=dask)
    assert run.dashboard_link == client.dashboard_link
    assert run.dashboard_link.startswith("http://127.0.0.1:")
    assert f"dashboard {client.dashboard_link}" in repr(run)


def test_executor_dask_by_name_starts_a_local_cluster_on_localhost_and_reuses_it():
    from nbflow.executor import dask_cluster

    with Flow("dask-by-name") as flow:
        t = total(inc.map([1, 2]))
    try:
        first = flow.run(executor="dask", max_workers=1)
        second = flow.run(executor="dask", max_workers=1, refresh=True)
        assert first.result(t) == second.result(t) == 5
        own = dask_cluster._own_cluster["client"]
        assert first._engine.executor.client is second._engine.executor.client is own
        assert own.scheduler.address.startswith("tcp://127.0.0.1:")
        workers = own.scheduler_info()["workers"]
        assert len(workers) == 1 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
        assert first.dashboard_link.startswith("http://127.0.0.1:")
    finally:
        dask_cluster.close_all()
    assert dask_cluster._own_cluster == {}


def test_a_user_client_is_never_closed(dask, client):
    with Flow("dask-user-client") as flow:
        inc(1)
    flow.run(executor=dask)
    dask.shutdown()
    assert client.status == "running"
    assert client.submit(pickle.dumps, 1).result()


def test_dask_executor_arguments_are_checked():
    with pytest.raises(NbflowError, match="an address or a client, not both"):
        DaskExecutor(address="tcp://127.0.0.1:8786", client=object())
    with pytest.raises(NbflowError, match=r"Expected n_workers to be an int >= 1 or None"):
        DaskExecutor(n_workers=0)
    with pytest.raises(NbflowError, match=r"Expected threads_per_worker to be an int >= 1"):
        DaskExecutor(threads_per_worker="2")
    with pytest.raises(NbflowError, match="Expected address to be a Dask scheduler address"):
        DaskExecutor(address=8786)
    with pytest.raises(NbflowError, match=r"Expected client to be a distributed\.Client"):
        DaskExecutor(client="tcp://127.0.0.1:8786")
    with pytest.raises(NbflowError, match="size it where you start it"):
        DaskExecutor(address="tcp://127.0.0.1:8786", n_workers=2)


def test_a_closed_client_is_reported_not_replaced(client):
    closed = distributed.Client(client.scheduler.address)
    closed.close()
    with Flow("dask-closed-client") as flow:
        inc(1)
    with pytest.raises(NbflowError, match="given to DaskExecutor is closed"):
        flow.run(executor=DaskExecutor(client=closed))


def test_an_unreachable_scheduler_address_is_reported():
    import dask

    executor = DaskExecutor(address="tcp://127.0.0.1:9")
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(NbflowError, match="Could not connect to the Dask scheduler"),
    ):
        executor.client  # noqa: B018


BLOCKED = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("distributed", "dask"):
            raise ImportError(f"No module named {name!r} (blocked)")
        return None

sys.meta_path.insert(0, Block())
from nbflow import Flow, NbflowError, task

@task(cache=False)
def one():
    return 1

with Flow("no-dask") as flow:
    one()
try:
    flow.run(executor="dask")
except NbflowError as exc:
    print(exc)
"""


def test_without_distributed_the_error_says_how_to_install_it():
    out = subprocess.run(
        [sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'jupyter-nbflow[dask]'" in out.stdout
    assert "needs Dask distributed" in out.stdout
