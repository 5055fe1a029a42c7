"""What the file store does when its files are damaged, shared or taken away: a value
file that was truncated or overwritten, a damaged database, a read-only store, another
process clearing it, and a store that others could write to. Each fault costs caching
(a miss, with a warning that says what to do), never a wrong result or a crash.

Every test has its own store (``NBFLOW_HOME``, set by the root conftest).
"""

from __future__ import annotations

import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest
from clihelp import NBFLOW

import nbflow
from nbflow.store.file import CacheWarning, FileStore
from nbflow.store.home import DamagedStoreError

BIG_BYTES = bytes(range(256)) * 1024  # 256 KiB: a file of its own
BIG_TEXT = "ünïcode " * 20_000
BIG_LIST = list(range(30_000))  # pickles to more than 64 KiB


def _value_files(store: FileStore) -> list[Path]:
    return sorted((store.path / "cache").rglob("*.val"))


def _get(store: FileStore, key: str, default: object = None) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = store.get(key, default)
    return value, [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _overwrite(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same length, one byte different
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _overwrite])
@pytest.mark.parametrize("value", [BIG_BYTES, BIG_TEXT, {"numbers": BIG_LIST}])
def test_a_truncated_or_overwritten_value_file_is_a_miss_with_a_warning_naming_the_task(
    _private_store, value, damage
):
    store = FileStore(_private_store)
    assert store.set("key-1", value, task="produce")
    assert store.get("key-1") == value
    (path,) = _value_files(store)
    damage(path)

    got, caught = _get(store, "key-1", "MISS")
    assert got == "MISS"
    assert len(caught) == 1, caught
    assert "'produce'" in caught[0] and "key-1" in caught[0] and "recomputed" in caught[0]
    assert _value_files(store) == []  # the damaged entry is gone
    assert store.set("key-1", value, task="produce")
    assert store.get("key-1") == value


def test_a_pickle_whose_truncated_opcodes_still_load_is_a_miss(_private_store):
    # Bytes objects of a pickle stream are written out of the frame, so cutting the file
    # right after one of them and appending STOP still unpickles, to a different value.
    value = [bytes(70_000), b"x" * 70_000]
    store = FileStore(_private_store)
    assert store.set("k", value, task="produce")
    (path,) = _value_files(store)
    data = path.read_bytes()
    first = pickle.dumps(value[0], protocol=5)[2:-1]  # its opcodes without PROTO/STOP
    cut = data.index(first) + len(first)
    forged = data[:cut] + b"e."  # APPENDS, STOP: a one-element list
    assert len(pickle.loads(forged)) == 1
    path.write_bytes(forged)

    got, caught = _get(store, "k", "MISS")
    assert got == "MISS"
    assert len(caught) == 1 and "'produce'" in caught[0], caught


def test_a_file_entry_written_before_checksums_is_a_quiet_miss(_private_store):
    store = FileStore(_private_store)
    assert store.set("old", BIG_BYTES, task="produce")
    with sqlite3.connect(store.path / "cache" / "cache.db") as db:  # as older nbflow wrote it
        assert db.execute("UPDATE Cache SET value = NULL WHERE key = 'old'").rowcount == 1
    got, caught = _get(FileStore(_private_store), "old", "MISS")
    assert (got, caught) == ("MISS", [])
    assert store.set("old", BIG_BYTES, task="produce")
    assert store.get("old") == BIG_BYTES


def _checksum_row(store: FileStore, key: str) -> bytes:
    with sqlite3.connect(store.path / "cache" / "cache.db") as db:
        (value,) = db.execute("SELECT value FROM Cache WHERE key = ?", (key,)).fetchone()
    return bytes(value)


def test_a_value_file_carries_its_length_and_xxh3_digest(_private_store):
    import xxhash

    store = FileStore(_private_store)
    assert store.set("k", {"numbers": BIG_LIST}, task="produce")
    (path,) = _value_files(store)
    data = path.read_bytes()
    want = b"nbf2" + len(data).to_bytes(8, "little") + xxhash.xxh3_128(data).digest()
    assert _checksum_row(store, "k") == want


@pytest.mark.parametrize("value", [BIG_BYTES, BIG_TEXT, {"numbers": BIG_LIST}])
def test_an_entry_checked_with_sha1_by_an_earlier_version_still_reads_and_still_checks(
    _private_store, value
):
    import hashlib

    store = FileStore(_private_store)
    assert store.set("old", value, task="produce")
    (path,) = _value_files(store)
    data = path.read_bytes()
    sha1 = b"nbf1" + len(data).to_bytes(8, "little") + hashlib.sha1(data).digest()
    with sqlite3.connect(store.path / "cache" / "cache.db") as db:  # as the earlier one wrote it
        db.execute("UPDATE Cache SET value = ? WHERE key = 'old'", (sha1,))

    got, caught = _get(FileStore(_private_store), "old", "MISS")
    assert (got, caught) == (value, [])
    _overwrite(path)
    got, caught = _get(FileStore(_private_store), "old", "MISS")
    assert got == "MISS"
    assert len(caught) == 1 and "'produce'" in caught[0], caught


def test_small_and_large_values_of_every_kind_read_back_equal(_private_store):
    store = FileStore(_private_store)
    values = {
        "small-bytes": b"abc",
        "small-text": "abc",
        "int": 7,
        "float": 1.5,
        "small-pickle": {"a": 1},
        "big-bytes": BIG_BYTES,
        "big-text": BIG_TEXT,
        "big-pickle": {"numbers": BIG_LIST},
        "empty-text": "",
    }
    for key, value in values.items():
        assert store.set(key, value, task=key)
    fresh = FileStore(_private_store)
    for key, value in values.items():
        got, caught = _get(fresh, key)
        assert (got, caught) == (value, []), key


def test_a_damaged_array_written_straight_into_its_file_is_a_miss(_private_store):
    np = pytest.importorskip("numpy")
    store = FileStore(_private_store)
    assert store.set("k", np.arange(100_000), task="produce")
    assert (store.get("k") == np.arange(100_000)).all()
    (path,) = _value_files(store)
    _overwrite(path)
    got, caught = _get(store, "k", "MISS")
    assert isinstance(got, str) and got == "MISS"
    assert len(caught) == 1 and "'produce'" in caught[0], caught


# -- a damaged database ----------------------------------------------------------------

FLOW = textwrap.dedent(
    """
    import os, pathlib, warnings
    from nbflow import Flow, task

    @task
    def one():
        with open(os.environ["EXEC_LOG"], "a") as fh:
            fh.write("one\\n")
        return b"x" * 100_000

    with Flow("damaged") as flow:
        one()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = flow.run()
    print(run.state.value, sum(t.cached for t in run.task_runs))
    for w in caught:
        print("WARNING", w.category.__name__, w.message)
    """
)


def _run_flow(tmp_path: Path, home: Path) -> tuple[str, list[str]]:
    script = tmp_path / "flow.py"
    script.write_text(FLOW)
    env = dict(os.environ, NBFLOW_HOME=str(home), EXEC_LOG=str(tmp_path / "log"))
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    first, *warned = out.stdout.splitlines()
    return first, warned


def _cli(*args: object, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NBFLOW), *map(str, args), "--path", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _damage(db: Path) -> None:
    """Garbage over the first 4 KiB of a closed database (its header and first page)."""
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with open(db, "r+b") as fh:
        fh.write(os.urandom(4096))


def test_a_damaged_cache_database_gives_one_line_and_cache_clear_repairs_it(
    tmp_path, _private_store
):
    home = _private_store
    assert _run_flow(tmp_path, home) == ("success 0", [])
    db = home / "cache" / "cache.db"
    _damage(db)

    for action in (["info"], ["clear", "--task", "one"]):
        out = _cli("cache", *action, home=home)
        assert out.returncode == 2, out
        assert out.stdout == "" and len(out.stderr.splitlines()) == 1, out.stderr
        assert "Traceback" not in out.stderr
        assert f"'{db}' is damaged" in out.stderr
        assert f"nbflow cache clear --path '{home}'" in out.stderr

    # A run goes on without caching, with one warning that says how to fix it; so does
    # the next one (the store is not silently left off).
    for _ in range(2):
        state, warned = _run_flow(tmp_path, home)
        assert state == "success 0"
        assert len(warned) == 1, warned
        assert "CacheWarning" in warned[0] and f"'{db}' is damaged" in warned[0]
        assert "nbflow cache clear" in warned[0]

    out = _cli("cache", "clear", home=home)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert _cli("cache", "info", home=home).stdout.startswith(f"store {home}: 0 results")
    assert _run_flow(tmp_path, home) == ("success 0", [])
    assert _run_flow(tmp_path, home) == ("success 1", [])
    assert (tmp_path / "log").read_text().split() == ["one"] * 4


def test_clear_cache_repairs_a_damaged_database_in_process(_private_store):
    store = FileStore(_private_store)
    assert store.set("k", BIG_BYTES, task="produce")
    store.cache.close()
    _damage(_private_store / "cache" / "cache.db")
    damaged = FileStore(_private_store)
    with pytest.raises(DamagedStoreError, match="nbflow cache clear"):
        damaged.info()
    assert damaged.clear() == 1  # the one value file
    assert damaged.info()["entries"] == 0
    assert damaged.set("k", BIG_BYTES, task="produce")
    assert FileStore(_private_store).get("k") == BIG_BYTES


def test_a_damaged_history_gives_one_line_naming_the_file_and_the_fix(tmp_path, _private_store):
    home = _private_store
    assert _run_flow(tmp_path, home)[0] == "success 0"
    history = home / "history.sqlite"
    _damage(history)

    out = _cli("runs", home=home)
    assert out.returncode == 2
    assert out.stdout == "" and len(out.stderr.splitlines()) == 1, out.stderr
    assert f"'{history}' is damaged" in out.stderr and f"rm '{history}'*" in out.stderr
    with pytest.raises(DamagedStoreError, match="Delete it to start a new one"):
        nbflow.runs(home)

    # A run still runs (and uses the cache), unrecorded, saying why.
    state, warned = _run_flow(tmp_path, home)
    assert state == "success 1"
    assert len(warned) == 1 and f"rm '{history}'*" in warned[0], warned

    for path in home.glob("history.sqlite*"):  # the fix the message gives
        path.unlink()
    assert _run_flow(tmp_path, home) == ("success 1", [])
    assert _cli("runs", home=home).returncode == 0


# -- a read-only store ---------------------------------------------------------------

READ_ONLY_FLOW = textwrap.dedent(
    """
    import os, sys, warnings
    from nbflow import Flow, task

    @task
    def small():
        print("ran small", file=sys.stderr)
        return 1

    @task
    def big():
        print("ran big", file=sys.stderr)
        return b"x" * 100_000

    @task
    def new(a, b):  # only in the second version: never cached
        print("ran new", file=sys.stderr)
        return a + len(b)

    with Flow("read-only") as flow:
        s, b = small(), big()
        if os.environ.get("WITH_NEW"):
            new(s, b)

    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = flow.run()
        cached = sorted(t.name for t in run.task_runs if t.cached)
        print(run.state.value, ",".join(cached))
        for w in caught:
            if w.category.__name__ == "CacheWarning":
                print("WARNING", w.message)
    """
)


def test_a_read_only_store_is_read_and_not_written_with_one_warning(tmp_path):
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs a mount namespace (unshare -m) for a read-only bind mount")
    home = tmp_path / "store"
    script = tmp_path / "flow.py"
    script.write_text(READ_ONLY_FLOW)
    env = dict(os.environ, NBFLOW_HOME=str(home))
    first = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["success ", "success big,small"]

    command = (
        f"mount --bind {home} {home} && mount -o remount,bind,ro {home} && "
        f"exec {sys.executable} {script}"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", command],
        env=dict(env, WITH_NEW="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "success big,small" and lines[2] == "success big,small", lines
    warned = [line for line in lines if line.startswith("WARNING")]
    assert len(warned) == 2, lines  # one per run
    assert f"'{home}' is read-only" in warned[0] and "new ones are not written" in warned[0]
    assert done.stderr.count("ran new") == 2  # it could not be cached
    assert "ran small" not in done.stderr and "ran big" not in done.stderr
    assert "Traceback" not in done.stderr


# -- another process clears or deletes the store -------------------------------------


@pytest.mark.parametrize("removed", ["cache", "store"])
def test_a_store_deleted_by_another_process_during_a_run_is_created_again_and_written(
    tmp_path, _private_store, removed
):
    from nbflow import Flow, task

    log = tmp_path / "log"
    target = _private_store / "cache" if removed == "cache" else _private_store

    @task
    def first():
        with open(log, "a") as fh:
            fh.write("first\n")
        return b"1" * 100_000

    @task
    def second(x):
        with open(log, "a") as fh:
            fh.write("second\n")
        if not (tmp_path / "removed-once").exists():
            (tmp_path / "removed-once").touch()
            # first's result is written in the background while this runs: give it
            # the time to be, so that what is deleted is a store nobody writes to.
            time.sleep(0.5)
            shutil.rmtree(target)  # as `rm -rf` or a repair elsewhere would
        return len(x)

    @task
    def third(n):
        with open(log, "a") as fh:
            fh.write("third\n")
        return n + 1

    with Flow("deleted") as flow:
        t = third(second(first()))

    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = flow.run(executor="threads")
        assert run.ok and run.result(t) == 100_001
        about = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
        assert about == []
    # The first run cached second and third in the new store: only first ran again.
    assert log.read_text().split() == ["first", "second", "third", "first"]
    assert (_private_store / "cache").stat().st_mode & 0o077 == 0


def test_a_store_cleared_by_another_process_keeps_being_written_from_every_thread(
    _private_store,
):
    store = FileStore(_private_store)
    assert store.set("before", BIG_BYTES, task="t")
    cleared = subprocess.run(
        [str(NBFLOW), "cache", "clear", "--path", str(_private_store)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cleared.returncode == 0, cleared.stderr
    shutil.rmtree(_private_store / "cache")  # and then the folder itself
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(store.set("k", BIG_BYTES, task="t")))
    thread.start()
    thread.join(30)
    assert results == [True] and store.disabled is None
    assert store.set("small", 1, task="t")
    fresh = FileStore(_private_store)
    assert fresh.get("k") == BIG_BYTES and fresh.get("small") == 1
    assert fresh.get("before", "MISS") == "MISS"


# -- a store others could write to -------------------------------------------------


def test_making_a_store_owner_only_again_does_not_make_it_trusted_until_it_is_cleared(
    _private_store,
):
    from nbflow.store.file import open_file_store
    from nbflow.store.home import UnsafeStoreError

    store = FileStore(_private_store)
    assert store.set("k", BIG_BYTES, task="produce")
    value_dir = _value_files(store)[0].parent
    os.chmod(value_dir, 0o777)  # anyone could have put a pickle of theirs here
    with pytest.raises(UnsafeStoreError) as refused:
        open_file_store(_private_store)
    assert "nbflow cache clear --path" in str(refused.value)
    assert "chmod" not in str(refused.value)

    os.chmod(value_dir, 0o700)  # the old advice: chmod -R go-w
    with pytest.raises(UnsafeStoreError, match="was found writable by other users") as again:
        open_file_store(_private_store)
    assert f"nbflow cache clear --path '{_private_store}'" in str(again.value)
    out = _cli("runs", home=_private_store)  # the history is refused with it, in one line
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out.stderr

    cleared = _cli("cache", "clear", home=_private_store)
    assert cleared.returncode == 0, cleared.stderr
    assert not (_private_store / "UNTRUSTED").exists()
    reopened = open_file_store(_private_store)
    assert reopened.get("k", "MISS") == "MISS"
    assert reopened.set("k", BIG_BYTES, task="produce")


def _not_root() -> bool:
    return os.geteuid() != 0


@pytest.mark.skipif(_not_root(), reason="giving a file to another user needs root")
def test_a_value_file_of_another_user_at_any_depth_is_refused_at_every_open(_private_store):
    from nbflow.store.file import open_file_store
    from nbflow.store.home import UnsafeStoreError

    store = open_file_store(_private_store)
    assert store.set("k", BIG_BYTES, task="produce")
    assert open_file_store(_private_store) is store  # the same process opens it again
    (path,) = _value_files(store)
    os.chown(path, 4321, -1)
    with pytest.raises(UnsafeStoreError, match="owned by another user") as refused:
        open_file_store(_private_store)
    assert str(path) in str(refused.value)
    assert "nbflow cache clear --path" in str(refused.value)


@pytest.mark.skipif(_not_root(), reason="giving a file to another user needs root")
def test_a_store_already_open_does_not_load_a_value_file_of_another_user(_private_store):
    store = FileStore(_private_store)
    assert store.set("k", BIG_BYTES, task="produce")
    (path,) = _value_files(store)
    os.chown(path, 4321, -1)
    got, caught = _get(store, "k", "MISS")
    assert got == "MISS"
    assert len(caught) == 1 and "owned by another user" in caught[0], caught
    assert (_private_store / "UNTRUSTED").exists()  # and the store is refused from now on


# -- the warnings themselves -------------------------------------------------------


def test_reading_large_values_leaves_no_file_open(_private_store):
    import gc

    np = pytest.importorskip("numpy")
    store = FileStore(_private_store)
    values = {"b": BIG_BYTES, "t": BIG_TEXT, "p": {"numbers": BIG_LIST}, "a": np.ones(20_000)}
    for key, value in values.items():
        assert store.set(key, value, task=key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for key in values:
            store.get(key)
        assert set(store.get_many(list(values))) == set(values)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_cache_warning_points_at_the_code_that_ran_the_flow(_private_store):
    from nbflow import Flow, task

    @task
    def produce():
        return BIG_BYTES

    @task
    def unpicklable():
        return lambda: None

    with Flow("where") as flow:
        produce()
        unpicklable()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheWarning)
        assert flow.run(executor="sequential").ok
    (path,) = _value_files(FileStore(_private_store))
    _overwrite(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = flow.run(executor="sequential")  # this line
        # A cache hit is read when asked for: the damaged entry is found here.
        assert run.result("produce") == BIG_BYTES  # read here
    assert run.ok
    about = [w for w in caught if issubclass(w.category, CacheWarning)]
    assert len(about) == 2, [str(w.message) for w in about]
    where = [(w.filename, w.lineno) for w in about]
    assert where == [(__file__, _line_of("# this line")), (__file__, _line_of("# read here"))]


def _line_of(marker: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.strip().endswith(marker))
