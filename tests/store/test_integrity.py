"""What the file store does when its files are damaged, shared or taken away: a value
file that was truncated or overwritten, a damaged database, a read-only store, another
process clearing it, and a store that others could write to. Each fault costs caching
(a miss, with a warning that says what to do), never a wrong result or a crash.

Every test has its own store (``NBFLOW_HOME``, set by the root conftest).
"""

from __future__ import annotations

import pickle
import sqlite3
import warnings
from pathlib import Path

import pytest

from nbflow.store.file import CacheWarning, FileStore

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
