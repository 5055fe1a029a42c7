"""Cache keys: the Merkle assembly of a task's fingerprint, its upstream keys and the
hashes of its literal arguments.

The format is pinned: a store written by an earlier version must still hit, so the
keys a run computes are compared with keys assembled here by hand from the same parts.
"""

from __future__ import annotations

import pickle
import threading
import warnings

import pytest

from nbflow import SKIP, Flow, State, task, unmapped
from nbflow.engine.keys import Keys, children_key
from nbflow.engine.plan import compile_plan
from nbflow.engine.records import TaskRun
from nbflow.graph.hashing import digest, fingerprint, hash_value
from nbflow.store.cache import CacheWarning


@task
def load() -> list[int]:
    return [1, 2]


@task
def add(x: int, y: int, k: str = "") -> int:
    return x + y


@task
def inc(x: int) -> int:
    return x + 1


@task
def total(xs: list[int], extra: int = 0) -> int:
    return sum(xs) + extra


def _key(t, args: tuple, kwargs: tuple = ()) -> str:
    """A key as the store has always written it."""
    fp = fingerprint(t.fn, t.cache_version)
    return digest(fp.encode(), pickle.dumps((args, kwargs), protocol=4))


def test_keys_a_run_computes_are_the_keys_the_store_was_written_with():
    with Flow("keys-pinned") as flow:
        listed = load()
        summed = add(3, 4, k="a")
        over_literal = inc.map([5, 6])
        over_node = inc.map(listed)
        chained = inc.map(over_literal)
        whole = total(over_literal, extra=2)
        mixed = total(unmapped(over_node))
    run = flow.run()
    assert run.ok

    load_key = _key(load, ())
    assert run[listed].key == load_key
    assert run[summed].key == _key(add, (3, 4), (("k", "a"),))

    literal_children = [_key(inc, (5,)), _key(inc, (6,))]
    assert [c.key for c in run[over_literal].children] == literal_children
    assert run[over_literal].key == digest(*(k.encode() for k in literal_children))

    node_children = [_key(inc, (("@node", f"{load_key}[{i}]"),)) for i in range(2)]
    assert [c.key for c in run[over_node].children] == node_children

    chained_children = [_key(inc, (("@node", k),)) for k in literal_children]
    assert [c.key for c in run[chained].children] == chained_children

    assert run[whole].key == _key(total, (("@node", run[over_literal].key),), (("extra", 2),))
    assert run[mixed].key == _key(total, (("@node", run[over_node].key),))


class Point:
    """An argument that is not plain data: it enters the key by its hash_value."""

    def __init__(self, x: int) -> None:
        self.x = x


@task
def shaped(a: object, b: object = None) -> int:
    return 0


def test_nested_arguments_enter_the_key_by_their_shape():
    with Flow("keys-shapes") as flow:
        up = load()
        out = shaped([1, (up, 2.5)], b={"k": {3, 1}, "p": Point(4), "n": None, "s": b"x"})
    run = flow.run()
    assert run.ok
    up_key = run[up].key
    b_shape = (
        "dict",
        ("k", ("set", 1, 3)),
        ("p", ("@hash", hash_value(Point(4), "argument"))),
        ("n", None),
        ("s", b"x"),
    )
    assert run[out].key == _key(
        shaped, (("list", 1, ("tuple", ("@node", up_key), 2.5)),), (("b", b_shape),)
    )


def test_a_skipped_upstream_enters_the_key_marked_as_skipped():
    @task
    def maybe() -> int:
        raise SKIP("not today")

    @task(skip_on_upstream_skip=False, trigger="all_finished")
    def after(x: int | None) -> int:
        return 1

    with Flow("keys-skipped") as flow:
        m = maybe()
        a = after(m)
    run = flow.run()
    assert run[m].state.value == "skipped"
    skipped_key = _key(maybe, ())
    assert run[m].key == skipped_key
    assert run[a].key == _key(after, (("@node", "skipped:" + skipped_key),))


# -- the assembly on its own, without a run ----------------------------------------------


def _flow_of(build):
    with Flow("keys-unit") as flow:
        out = build()
    plans = {p.node: p for p in compile_plan(flow)}
    return flow, plans, out


def _runs_for(plans, keys_by_node=None):
    runs = {}
    for node, plan in plans.items():
        run = TaskRun(node, plan.name)
        run.state = State.SUCCESS
        run.key = (keys_by_node or {}).get(node, f"key-of-{plan.name}")
        runs[node] = run
    return runs


def test_a_key_changes_with_an_upstream_key_and_nothing_else():
    holder = {}

    def build():
        holder["up"] = load()
        return add(holder["up"], 1)

    _, plans, out = _flow_of(build)
    runs = _runs_for(plans)
    first = Keys(runs).key(plans[out], None)
    assert Keys(runs).key(plans[out], None) == first
    runs[holder["up"]].key = "another upstream key"
    assert Keys(runs).key(plans[out], None) != first


def test_a_key_changes_with_a_literal_argument():
    _, plans_a, out_a = _flow_of(lambda: add(1, 2))
    _, plans_b, out_b = _flow_of(lambda: add(1, 3))
    _, plans_c, out_c = _flow_of(lambda: add(1, 2))
    key_a = Keys(_runs_for(plans_a)).key(plans_a[out_a], None)
    assert key_a == Keys(_runs_for(plans_c)).key(plans_c[out_c], None)
    assert key_a != Keys(_runs_for(plans_b)).key(plans_b[out_b], None)


def test_an_upstream_that_did_not_end_ok_or_has_no_key_gives_no_key():
    holder = {}

    def build():
        holder["up"] = load()
        return add(holder["up"], 1)

    _, plans, out = _flow_of(build)
    runs = _runs_for(plans)
    runs[holder["up"]].state = State.FAILED
    assert Keys(runs).key(plans[out], None) is None
    runs[holder["up"]].state = State.SUCCESS
    runs[holder["up"]].key = None
    assert Keys(runs).key(plans[out], None) is None


def test_an_unhashable_argument_gives_no_key_and_one_warning():
    lock = threading.Lock()
    _, plans, out = _flow_of(lambda: add(lock, 1))
    keys = Keys(_runs_for(plans))
    with pytest.warns(CacheWarning, match="an argument is a lock"):
        assert keys.key(plans[out], None) is None

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert keys.key(plans[out], None) is None


def test_a_mapped_key_joins_its_children_keys_in_order():
    def child(key):
        run = TaskRun(None, "c")  # type: ignore[arg-type]
        run.key = key
        return run

    ab = children_key([child("a"), child("b")])
    assert ab == digest(b"a", b"b")
    assert ab != children_key([child("b"), child("a")])
    assert children_key([child("a"), child(None)]) is None
    assert children_key([]) == digest()
