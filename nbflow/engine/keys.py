"""Cache keys: the Merkle assembly of a task's fingerprint, upstream keys and literal arguments.

A key depends on an upstream task's key, never on its value, so a downstream key costs
the same whatever the upstream returned. The bytes hashed are the store's format: a
store written before must still hit, so any change here must keep every key the same.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from typing import Any

from nbflow.engine.plan import NodePlan
from nbflow.engine.records import TaskRun
from nbflow.graph.flow import MapSource, Node
from nbflow.graph.hashing import Unhashable, digest, fingerprint, hash_value
from nbflow.graph.task import Task
from nbflow.state import OK, State
from nbflow.store.cache import CacheWarning

_SKIPPED = State.SKIPPED


class Keys:
    """Computes the cache keys of one run's task runs from the keys of their upstreams.

    A key is None when the task cannot be cached: its function or an argument cannot
    be hashed (warned once), or an upstream has no key or did not end ok.
    """

    __slots__ = ("_fingerprints", "_runs", "_warned")

    def __init__(self, runs: Mapping[Node, TaskRun]) -> None:
        self._runs = runs
        self._fingerprints: dict[int, str | None] = {}
        self._warned: set[int] = set()

    def fingerprint(self, task: Task[Any, Any]) -> str | None:
        """The task's function fingerprint, computed once per run."""
        found = self._fingerprints.get(id(task), "")
        if found != "":
            return found
        try:
            fp: str | None = fingerprint(task.fn, task.cache_version)
        except Unhashable as exc:
            fp = None
            warnings.warn(
                f"Task '{task.name}' is not cached: its {exc.what} is a {exc.type_name} that "
                "cannot be hashed. Pass it as an argument, or make it hashable (picklable).",
                CacheWarning,
                stacklevel=2,
            )
        self._fingerprints[id(task)] = fp
        return fp

    def key(
        self, plan: NodePlan, index: int | None, runs: Mapping[Node, Any] | None = None
    ) -> str | None:
        """The key of ``plan``'s task run (child ``index`` of a mapped one): the
        fingerprint, then the arguments with upstream nodes standing as their keys.
        ``runs`` (anything with ``key``, ``state`` and ``children`` per node) stands in
        for the run's records, to compute keys before the upstream tasks have ended."""
        fp = self.fingerprint(plan.node.task)
        if fp is None:
            return None
        if runs is None:
            runs = self._runs
        keys: dict[Node, Any] = {}
        for up in plan.whole:
            run = runs[up]
            key, state = run.key, run.state
            if key is None or state not in OK:
                return None
            keys[up] = key if state is not _SKIPPED else "skipped:" + key
        if index is None and (plan.frozen if plan.frozen is not None else _freeze(plan)):
            return self._from_upstream(plan, fp, tuple(keys.values()), keys)
        for up in plan.elementwise:
            child = runs[up].children[index]  # type: ignore[index]
            if child.key is None or not child.state.is_ok:
                return None
            keys[up] = _Keyed(child.key)
        for up in plan.sources:
            run = runs[up]
            if run.key is None:
                return None
            keys[up] = _Keyed(f"{run.key}[{index}]")
        return self._assemble(plan, fp, keys, index)

    def of_upstream(self, plan: NodePlan, upstream: tuple[str, ...]) -> str | None:
        """The key of ``plan``'s task run (not mapped) if its upstream tasks, ``plan.whole``
        in order, end ok and not skipped with the keys ``upstream``: ``key`` for a graph
        whose tasks have not run yet, without records to stand in for them."""
        fp = self.fingerprint(plan.node.task)
        if fp is None:
            return None
        return self._from_upstream(plan, fp, upstream)

    def _from_upstream(
        self,
        plan: NodePlan,
        fp: str,
        upstream: tuple[str, ...],
        keys: dict[Node, Any] | None = None,
    ) -> str | None:
        """The key of ``plan``'s task run (not mapped) from its fingerprint and its upstream
        keys in ``plan.whole`` order (``keys``: the same by node, if at hand). With
        arguments that cannot change, the key follows from what it was made of: it is
        remembered on the plan and reused while they are the same."""
        memo = plan.key_memo  # set only for frozen arguments
        if memo is not None and memo[1] == upstream and memo[0] == fp:
            return memo[2]
        if keys is None:
            keys = dict(zip(plan.whole, upstream, strict=True))
        key = self._assemble(plan, fp, keys, None)
        if key is not None and _frozen_args(plan):
            plan.key_memo = (fp, upstream, key)
        return key

    def _assemble(
        self, plan: NodePlan, fp: str, keys: dict[Node, Any], index: int | None
    ) -> str | None:
        call = plan.call
        try:
            args = []
            for a in call.args:  # _shape, with its two common cases first
                kind = type(a)
                if kind is Node:
                    found = keys[a]
                    args.append(("@node", found.key if type(found) is _Keyed else found))
                elif kind in _PLAIN_LEAVES:
                    args.append(a)
                else:
                    args.append(_shape(a, keys, index))
            kwargs = call.kwargs
            shape = (
                tuple(args),
                tuple([(k, _shape(v, keys, index)) for k, v in kwargs.items()]) if kwargs else (),
            )
            return digest(fp.encode(), pickle.dumps(shape, protocol=4))
        except Unhashable as exc:
            if id(plan) not in self._warned:
                self._warned.add(id(plan))
                warnings.warn(
                    f"Task '{plan.name}' is not cached: an argument is a {exc.type_name} that "
                    "cannot be hashed.",
                    CacheWarning,
                    stacklevel=2,
                )
            return None


def children_key(children: list[TaskRun]) -> str | None:
    """A mapped task run's key: its children's keys in order (None if one has none)."""
    if not all(c.key is not None for c in children):
        return None
    return digest(*(c.key.encode() for c in children if c.key is not None))


class _Keyed:
    """Stands for an upstream value by its cache key inside an argument's shape."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key


_PLAIN_LEAVES = (int, float, str, bytes, bool, type(None))


def _frozen_args(plan: NodePlan) -> bool:
    """Whether ``plan``'s arguments cannot change between runs (checked once per plan)."""
    return plan.frozen if plan.frozen is not None else _freeze(plan)


def _freeze(plan: NodePlan) -> bool:
    """Whether ``plan``'s arguments hold only nodes and immutable plain values (a list,
    a dict or any other object may change between runs, so its key is made each time)."""
    call = plan.call
    plan.frozen = not plan.mapped and all(_frozen(v) for v in (*call.args, *call.kwargs.values()))
    return plan.frozen


def _frozen(value: Any) -> bool:
    t = type(value)
    if t in _PLAIN_LEAVES or t is Node:
        return True
    if t is tuple or t is frozenset:
        return all(_frozen(v) for v in value)
    return False


def _shape(value: Any, keys: dict[Node, Any], index: int | None) -> Any:
    """An argument as plain data to hash: nodes become their keys, other leaves that
    are not plain become their ``hash_value`` (raises ``Unhashable``)."""
    t = type(value)
    if t in _PLAIN_LEAVES:
        return value
    if t is Node:
        found = keys[value]
        return ("@node", found.key if isinstance(found, _Keyed) else found)
    if t is MapSource:
        src = value.source
        if isinstance(src, Node):
            found = keys[src]
            return ("@node", found.key if isinstance(found, _Keyed) else f"{found}[{index}]")
        return _shape(src[index], keys, index)
    if t is list or t is tuple:
        return (t.__name__, *(_shape(v, keys, index) for v in value))
    if t is dict:
        return (
            "dict",
            *((_shape(k, keys, index), _shape(v, keys, index)) for k, v in value.items()),
        )
    if t is set or t is frozenset:
        return ("set", *sorted((_shape(v, keys, index) for v in value), key=repr))
    return ("@hash", hash_value(value, "argument"))
