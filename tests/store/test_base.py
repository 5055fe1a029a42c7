"""Result stores opened by URL scheme, a custom store used by a run, and the home
folder's layout on disk (a home written before is read after)."""

from __future__ import annotations

import os
import pathlib
import sqlite3

import pytest

from nbflow import Flow, NbflowError, State, task
from nbflow.store.base import (
    ResultStore,
    open_store,
    register_store,
    store_schemes,
    unregister_store,
)
from nbflow.store.cellstore import open_cells
from nbflow.store.file import FileStore, home_of


@task
def square(x, log=None):
    """x * x; each execution adds a line to the file ``log`` (a cache hit does not)."""
    if log is not None:
        with open(log, "a") as fh:
            fh.write(f"{x}\n")
    return x * x


def executions(log: pathlib.Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


class MemoryStore:
    """A result store in a dict: the smallest thing that satisfies the protocol."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.values: dict[str, object] = {}
        self.tasks: dict[str, str] = {}
        self.runs = 0

    def get(self, key, default=None):
        return self.values.get(key, default)

    def get_many(self, keys):
        return {k: self.values[k] for k in keys if k in self.values}

    def sizes(self, keys):
        return {k: 0 for k in keys if k in self.values}

    def set(self, key, value, *, task, expire=None):
        self.values[key] = value
        self.tasks[key] = task
        return True

    def begin_run(self):
        self.runs += 1

    def delete(self, key):
        self.values.pop(key, None)

    def info(self):
        return {"path": self.url, "entries": len(self.values), "bytes": 0, "per_task": {}}

    def clear(self, task=None, older_than=None):
        gone = [k for k in self.values if task is None or self.tasks[k] == task]
        for key in gone:
            del self.values[key]
        return len(gone)


@pytest.fixture
def memory():
    opened: dict[str, MemoryStore] = {}

    def opener(url: str) -> MemoryStore:
        return opened.setdefault(url, MemoryStore(url))

    register_store("memory", opener)
    yield opened
    unregister_store("memory")


def test_a_path_and_a_file_url_open_the_same_file_store(tmp_path):
    by_path = open_store(tmp_path / "results")
    assert isinstance(by_path, FileStore) and isinstance(by_path, ResultStore)
    assert open_store(str(tmp_path / "results")) is by_path
    assert open_store((tmp_path / "results").as_uri()) is by_path
    assert open_store(f"file://localhost{tmp_path / 'results'}") is by_path
    assert by_path.path == (tmp_path / "results").resolve()


def test_no_location_opens_the_file_store_in_the_home_folder():
    store = open_store()
    assert isinstance(store, FileStore)
    assert store.path == pathlib.Path(os.environ["NBFLOW_HOME"]).resolve()


def test_a_file_url_with_a_host_is_refused(tmp_path):
    with pytest.raises(NbflowError, match=r"a file:// URL names a folder on this machine"):
        open_store("file://server/share/results")


def test_an_unknown_scheme_names_the_known_ones():
    with pytest.raises(
        NbflowError,
        match=r"Cannot open the result store 'hdfs://bucket/results': no opener is registered "
        r"for 'hdfs://'\. Known schemes: file, s3, gs, az\. Give a folder path, or register an "
        r"opener with nbflow\.store\.base\.register_store\('hdfs', opener\)\.",
    ):
        open_store("hdfs://bucket/results")


def test_an_unknown_scheme_close_to_a_known_one_is_suggested(memory):
    with pytest.raises(
        NbflowError, match=r"Did you mean 'memory'\? Known schemes: file, s3, gs, az, memory"
    ):
        open_store("memroy://x")


def test_a_custom_store_keeps_the_results_of_a_run_opened_by_url(memory, tmp_path):
    log = tmp_path / "log"
    with Flow("memory-store") as flow:
        node = square(7, str(log))
    first = flow.run(store="memory://scratch", executor="sequential")
    assert first.ok and first.result(node) == 49
    store = memory["memory://scratch"]
    assert list(store.values.values()) == [49]
    assert store.tasks == {first[node].key: "square"}

    again = flow.run(store="memory://scratch", executor="threads")
    assert again[node].state is State.CACHED and again.result(node) == 49
    assert executions(log) == ["7"]
    assert store.runs == 2


def test_a_custom_store_object_is_used_as_given_and_the_history_goes_home(tmp_path):
    store = MemoryStore("memory://given")
    with Flow("memory-object") as flow:
        node = square(3)
    run = flow.run(store=store, executor="sequential")
    assert run.result(node) == 9 and list(store.values.values()) == [9]
    home = pathlib.Path(os.environ["NBFLOW_HOME"]).resolve()
    assert home_of(store) == home
    assert run.wait(5)
    rows = sqlite3.connect(home / "history.sqlite").execute("SELECT id FROM runs").fetchall()
    assert (run.id,) in rows
    assert not (home / "cache").exists()  # results went to the custom store only


def test_an_opener_that_returns_no_store_is_named_in_the_error():
    register_store("broken", lambda url: {"not": "a store"})
    try:
        with pytest.raises(NbflowError, match=r"opener of 'broken://' stores returned .* not a"):
            open_store("broken://x")
    finally:
        unregister_store("broken")


def test_a_scheme_is_registered_once_unless_replaced(memory):
    with pytest.raises(NbflowError, match=r"'memory://' already have an opener; pass replace"):
        register_store("memory", MemoryStore)
    register_store("memory", MemoryStore, replace=True)
    assert isinstance(open_store("memory://fresh"), MemoryStore)
    assert store_schemes() == ("file", "s3", "gs", "az", "memory")


def test_the_file_scheme_cannot_be_unregistered_nor_a_bad_scheme_registered():
    with pytest.raises(NbflowError, match=r"'file' store opens plain paths"):
        unregister_store("file")
    with pytest.raises(NbflowError, match=r"Expected a URL scheme such as 's3'"):
        register_store("two words", MemoryStore)


# -- the layout on disk: unchanged, so a store written before is read after ----------


def test_a_run_writes_the_home_layout_it_always_has(tmp_path):
    home = tmp_path / "proj" / ".nbflow"
    with Flow("layout") as flow:
        node = square(4)
    run = flow.run(store=home, executor="sequential")
    assert run.wait(5) and run.result(node) == 16
    assert (home / "history.sqlite").is_file()
    assert (home / "cache" / "cache.db").is_file()
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    conn = sqlite3.connect(home / "history.sqlite")
    assert conn.execute("SELECT flow FROM runs WHERE id = ?", (run.id,)).fetchone() == ("layout",)
    assert open_cells(home).path == home / "cells.sqlite"


def test_a_result_written_in_the_old_layout_is_read(tmp_path):
    import diskcache

    home = tmp_path / ".nbflow"
    home.mkdir(mode=0o700)
    log = tmp_path / "log"
    with Flow("old-layout") as flow:
        node = square(5, str(log))
    key = flow.run(store=tmp_path / "elsewhere", executor="sequential")[node].key
    assert key is not None
    # What an earlier release left: a diskcache at <home>/cache holding the key.
    with diskcache.Cache(str(home / "cache")) as cache:
        cache.set(key, 1234, tag="square")
    for path in (home / "cache").rglob("*"):
        path.chmod(path.stat().st_mode & ~0o022)
    run = flow.run(store=home, executor="sequential")
    assert run[node].state is State.CACHED and run.result(node) == 1234
    assert executions(log) == ["5"]  # only the run that computed the key
    assert open_store(home).info()["per_task"] == {"square": 1}
