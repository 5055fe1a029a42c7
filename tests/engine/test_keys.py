"""Cache keys: the Merkle assembly of a task's fingerprint, its upstream keys and the
hashes of its literal arguments.

The format is pinned: a store written by an earlier version must still hit, so the
keys a run computes are compared with keys assembled here by hand from the same parts.
"""

from __future__ import annotations

import pickle

from nbflow import Flow, task, unmapped
from nbflow.graph.hashing import digest, fingerprint


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


def test_a_skipped_upstream_enters_the_key_marked_as_skipped():
    from nbflow import SKIP

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
