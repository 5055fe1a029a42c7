"""A cached dynamic map expands without reading the list it maps over: the list's
length is stored beside its entry. Real file stores; the store counts what is read."""

from __future__ import annotations

import pytest
from marks import executed, mark

from nbflow import Flow, task, unmapped
from nbflow.store.file import FileStore


class ReadCounting(FileStore):
    """A file store that remembers the keys whose values were read."""

    def __init__(self, path):
        super().__init__(path)
        self.read: list[str] = []

    def get(self, key, default=None):
        self.read.append(key)
        return super().get(key, default)

    def get_many(self, keys):
        self.read.extend(keys)
        return super().get_many(keys)


@pytest.fixture
def marks(tmp_path):
    return tmp_path / "marks"


def _flow(marks, n, offset=0):
    @task(name="items")
    def items(n):
        mark(marks, "items")
        return [bytes(1000) + bytes([i]) for i in range(n)]

    @task(name="measure")
    def measure(blob, offset):
        mark(marks, "measure")
        return len(blob) + blob[-1] + offset

    @task(name="total")
    def total(sizes):
        return sum(sizes)

    with Flow("cached map") as flow:
        xs = items(n)
        end = total(measure.map(xs, unmapped(offset)))
    return flow, xs, end


def _expected(n, offset=0):
    return sum(1001 + i + offset for i in range(n))


def test_a_cached_map_expands_to_its_children_without_reading_its_list(tmp_path, marks):
    store = ReadCounting(tmp_path / "store")
    flow, xs, end = _flow(marks, 6)
    first = flow.run(store=store)
    assert first.result(end) == _expected(6)
    executed(marks)
    store.read.clear()
    again = flow.run(store=store)
    assert again.counts() == {"cached": 8}
    assert [c.cached for c in again["measure"].children] == [True] * 6
    assert again.result(end) == _expected(6)
    assert executed(marks) == []
    assert first[xs].key not in store.read  # the list was never read


@pytest.mark.parametrize("executor", ["threads", "processes", "sequential"])
def test_a_child_that_runs_reads_the_cached_list_and_takes_its_item(tmp_path, marks, executor):
    store = ReadCounting(tmp_path / "store")
    flow, _, _ = _flow(marks, 5)
    first = flow.run(store=store, executor=executor)
    gone = first["measure"].children[3].key
    store.delete(gone)
    flow2, _, end2 = _flow(marks, 5)
    executed(marks)
    again = flow2.run(store=store, executor=executor)
    assert again.result(end2) == _expected(5)
    assert [c.cached for c in again["measure"].children] == [True, True, True, False, True]
    assert executed(marks) == ["measure"]


def test_a_changed_list_maps_to_its_new_children(tmp_path, marks):
    store = ReadCounting(tmp_path / "store")
    flow, _, end = _flow(marks, 4)
    assert flow.run(store=store).result(end) == _expected(4)
    longer, _, end2 = _flow(marks, 7)
    run = longer.run(store=store)
    assert len(run["measure"].children) == 7
    assert run.result(end2) == _expected(7)
    again = longer.run(store=store)
    assert again.counts() == {"cached": 9} and len(again["measure"].children) == 7
    assert again.result(end2) == _expected(7)


def test_a_lost_length_entry_falls_back_to_reading_the_list(tmp_path, marks):
    store = ReadCounting(tmp_path / "store")
    flow, xs, end = _flow(marks, 3)
    first = flow.run(store=store)
    store.delete(first[xs].key + ":len")
    store.read.clear()
    again = flow.run(store=store)
    assert again.result(end) == _expected(3) and again.counts() == {"cached": 5}
    assert first[xs].key in store.read
    third = flow.run(store=store)  # the length was stored again
    assert third.result(end) == _expected(3)


def test_a_list_whose_entry_is_gone_is_computed_again_when_a_child_needs_it(tmp_path, marks):
    store = ReadCounting(tmp_path / "store")
    flow, xs, end = _flow(marks, 4)
    first = flow.run(store=store)
    store.delete(first[xs].key)
    store.delete(first["measure"].children[0].key)
    executed(marks)
    again = flow.run(store=store)
    assert again.result(end) == _expected(4)
    assert executed(marks) == ["items", "measure"]


def test_the_length_entry_is_not_counted_as_an_entry(tmp_path, marks):
    store = FileStore(tmp_path / "store")
    flow, _, _ = _flow(marks, 3)
    flow.run(store=store)
    assert store.info()["per_task"] == {"items": 1, "measure": 3, "total": 1}


def test_a_cached_list_mapped_over_and_also_passed_whole_is_read_for_its_whole_use(tmp_path, marks):
    @task(name="words")
    def words():
        mark(marks, "words")
        return ["a", "bb", "ccc"]

    @task(name="share")
    def share(word, everything):
        mark(marks, "share")
        return len(word) / sum(len(w) for w in everything)

    with Flow("held") as flow:
        ws = words()
        parts = share.map(ws, unmapped(ws))
    store = FileStore(tmp_path / "store")
    first = flow.run(store=store)
    assert first.result(parts) == [1 / 6, 2 / 6, 3 / 6]
    store.delete(first["share"].children[1].key)
    executed(marks)
    again = flow.run(store=store)
    assert again.result(parts) == [1 / 6, 2 / 6, 3 / 6]
    assert executed(marks) == ["share"]


def test_a_flatten_and_a_second_map_over_a_cached_list(tmp_path, marks):
    from nbflow import flatten

    @task(name="nested")
    def nested():
        mark(marks, "nested")
        return [[1, 2], [3]]

    @task(name="double")
    def double(x):
        mark(marks, "double")
        return 2 * x

    @task(name="count")
    def count(xs):
        return len(xs)

    with Flow("flat") as flow:
        lists = nested()
        doubled = double.map(flatten(lists))
        sizes = count.map(lists)
    store = FileStore(tmp_path / "store")
    first = flow.run(store=store)
    assert first.result(doubled) == [2, 4, 6] and first.result(sizes) == [2, 1]
    executed(marks)
    again = flow.run(store=store)
    assert again.result(doubled) == [2, 4, 6] and again.result(sizes) == [2, 1]
    assert executed(marks) == []
