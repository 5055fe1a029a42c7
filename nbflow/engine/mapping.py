"""Dynamic mapping: how many children a mapped task gets, its children, and their end.

A mapped task expands once every upstream it waits for as a whole has ended: into one
child per item of its mapped inputs (zipped), each an ordinary unit for the scheduler.
The node of a ``flatten`` expands into one child per element of its upstream's lists,
each taking its element, or the state of the upstream child it comes from.

The length of a list mapped over is stored beside its cache entry (``Lengths``): a
re-run whose list is a cache hit expands the mapped task without reading the list,
and reads it only if a child is no cache hit and runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from nbflow.engine.plan import NodePlan
from nbflow.engine.records import Lazy, LazyItems, TaskRun
from nbflow.graph.control import check_flattenable, flat_items
from nbflow.graph.flow import Node
from nbflow.graph.hashing import digest
from nbflow.state import State
from nbflow.store.cache import ResultStore


class Element(NamedTuple):
    """What a child of a ``flatten`` ends with: its value, key, state and reason."""

    value: Any
    key: str | None
    state: State
    reason: str | None


class Unmappable(NamedTuple):
    """Why a mapped task ends without expanding: its state, reason and error (if any)."""

    state: State
    reason: str
    error: BaseException | None = None


LENGTH = ":len"


def length_key(key: str) -> str:
    """The store key of the length of the list stored under ``key``."""
    return key + LENGTH


class Lengths:
    """The lengths of lists mapped over, kept in the run's store beside their entries."""

    __slots__ = ("_known", "_store")

    def __init__(self, store: ResultStore) -> None:
        self._store = store
        self._known: dict[str, int] = {}

    def prefetch(self, keys: list[str]) -> set[str]:
        """Look up the lengths of the lists stored under ``keys`` at once; the keys whose
        length is known."""
        found = self._store.get_many([length_key(k) for k in keys])
        for key in keys:
            n = found.get(length_key(key))
            if type(n) is int:
                self._known[key] = n
        return {k for k in keys if k in self._known}

    def get(self, key: str) -> int | None:
        n = self._known.get(key)
        if n is None:
            n = self._store.get(length_key(key), None)
        return n if type(n) is int else None

    def put(self, key: str, n: int, task: str) -> None:
        """Keep the length ``n`` of the list under ``key`` (a read first: a list read
        on every run has its length written once)."""
        if self.get(key) != n:
            self._store.set(length_key(key), n, task=task)
        self._known[key] = n


class Mapper:
    """One run's mapped tasks: their children, the values they map over, children done.

    ``fetch`` turns a value an executor left on its workers into the value itself (the
    items of a list mapped over are needed here, to count and index them).
    """

    __slots__ = ("_done", "_fetch", "_flat", "_lengths", "_runs", "values")

    def __init__(
        self,
        runs: Mapping[Node, TaskRun],
        fetch: Callable[[Any], Any],
        lengths: Lengths | None = None,
    ) -> None:
        self._runs = runs
        self._fetch = fetch
        self._lengths = lengths
        # The lists of upstream values (of tasks not mapped) that mapped tasks iterate.
        self.values: dict[Node, Any] = {}  # a list, or LazyItems
        self._done: dict[Node, int] = {}
        # Per flatten node: (upstream task run, element, index in its list) per child.
        self._flat: dict[Node, list[tuple[TaskRun, Any, int]]] = {}

    def count(self, plan: NodePlan) -> int | Unmappable:
        """How many children ``plan``'s task gets, or why it cannot be mapped."""
        if plan.flat is not None:
            return self._flatten(plan, plan.flat)
        runs = self._runs
        for src in plan.sources:
            state = runs[src].state
            if not state.is_successful:
                end_state = (
                    state if state in (State.SKIPPED, State.CANCELLED) else State.UPSTREAM_FAILED
                )
                return Unmappable(
                    end_state, f"cannot map over '{src.name}': it ended {state.value}"
                )
        lengths: dict[str, int] = {}
        try:
            for key, value in plan.call.mapped_inputs():
                source = value.source
                if isinstance(source, Node):
                    src_run = runs[source]
                    if source in self.values or source in plan.sources:
                        if source not in self.values:
                            self.values[source] = self._items(src_run)
                        lengths[f"{source.name}"] = len(self.values[source])
                    elif src_run.children is None:
                        return Unmappable(
                            State.UPSTREAM_FAILED,
                            f"cannot map over '{source.name}': it ended {src_run.state.value}",
                        )
                    else:
                        lengths[source.name] = len(src_run.children)
                else:
                    lengths[key] = len(source)
        except TypeError as exc:
            error = TypeError(f"Task '{plan.name}' cannot map over its input: {exc}")
            return Unmappable(State.FAILED, str(error), error)
        if len(set(lengths.values())) > 1:
            sizes = ", ".join(f"'{k}' has {v}" for k, v in lengths.items())
            verror = ValueError(
                f"Task '{plan.name}' maps over inputs of different lengths: {sizes}. Mapped "
                "inputs are zipped: give them the same length, or wrap constants in unmapped(...)."
            )
            return Unmappable(State.FAILED, str(verror), verror)
        return next(iter(lengths.values()), 0)

    def _items(self, run: TaskRun) -> Any:
        """The items of ``run``'s list: not read yet when it is a cache hit not read
        and its length is stored; else read (and its length stored)."""
        book, key = self._lengths, run.key
        if book is not None and key is not None and type(run._value) is Lazy:
            n = book.get(key)
            if n is not None:
                return LazyItems(run, n, self._fetch)
        items = list(self._fetch(run.value))
        if book is not None and key is not None and run.state.is_successful:
            book.put(key, len(items), run.node.task.name)
        return items

    def _flatten(self, plan: NodePlan, src: Node) -> int | Unmappable:
        """Count the elements the node of a ``flatten`` gets from ``src`` (and keep them)."""
        run = self._runs[src]
        items: list[tuple[TaskRun, Any, int]] = []
        try:
            if run.children is None:  # a task that is not mapped (or did not expand)
                state = run.state
                if not state.is_successful:
                    end = state if state in (State.SKIPPED, State.CANCELLED) else None
                    return Unmappable(
                        end or State.UPSTREAM_FAILED,
                        f"cannot flatten '{src.name}': it ended {state.value}",
                    )
                nested = self._fetch(run.value)
                check_flattenable(nested)
                flat = [v for inner in nested for v in flat_items(inner)]
                items = [(run, v, j) for j, v in enumerate(flat)]
            else:
                done = [c for c in run.children if c.state.is_successful]
                values = iter(self._fetch([c.value for c in done]) if done else ())
                for child in run.children:
                    if child.state.is_successful:
                        found = flat_items(next(values))
                        items.extend((child, v, j) for j, v in enumerate(found))
                    else:  # keeps its place: one element, in the state it ended
                        items.append((child, None, 0))
        except TypeError as exc:
            error = TypeError(f"Task '{plan.name}' cannot flatten '{src.name}': {exc}")
            return Unmappable(State.FAILED, str(error), error)
        self._flat[plan.node] = items
        return len(items)

    def element(self, plan: NodePlan, index: int | None) -> Element:
        """Child ``index`` of the node of a ``flatten``: its element, or the state of the
        upstream task run it comes from."""
        assert index is not None, "the units of a flatten are its children"
        origin, value, j = self._flat[plan.node][index]
        key = None if origin.key is None else digest(b"flatten", origin.key.encode(), b"%d" % j)
        state = origin.state
        if state.is_successful:
            return Element(value, key, State.SUCCESS, None)
        if state is State.SKIPPED:
            return Element(None, key, State.SKIPPED, f"'{origin.name}' was skipped")
        if state is State.CANCELLED:
            return Element(None, None, State.CANCELLED, f"'{origin.name}' was cancelled")
        return Element(
            None, None, State.UPSTREAM_FAILED, f"upstream '{origin.name}' did not succeed"
        )

    def expand(self, plan: NodePlan, run: TaskRun, count: int) -> list[TaskRun]:
        """Give ``run`` its ``count`` children, each waiting for the children of the same
        index of the mapped tasks it maps over element-wise that have not ended."""
        children = [TaskRun(plan.node, f"{plan.name}[{i}]", i) for i in range(count)]
        run.children = children
        self._done[plan.node] = 0
        runs = self._runs
        for i, unit in enumerate(children):
            waiting = 0
            for up in plan.elementwise:
                if not runs[up].children[i].state.is_finished:  # type: ignore[index]
                    waiting += 1
            unit._waiting = waiting
        return children

    def child_ended(self, node: Node) -> bool:
        """Count one more ended child of ``node``; True once all of them have ended."""
        done = self._done[node] = self._done[node] + 1
        return done == len(self._runs[node].children or ())


def parent_state(children: list[TaskRun]) -> State:
    """A mapped task's state once all its children have ended.

    >>> kids = [TaskRun(None, "c", i) for i in range(2)]  # type: ignore[arg-type]
    >>> kids[0].state, kids[1].state = State.SUCCESS, State.TIMED_OUT
    >>> parent_state(kids).value
    'failed'
    """
    states = {c.state for c in children}
    if State.CANCELLED in states:
        return State.CANCELLED
    if State.FAILED in states or State.TIMED_OUT in states:
        return State.FAILED
    if State.UPSTREAM_FAILED in states:
        return State.UPSTREAM_FAILED
    if states == {State.SKIPPED}:
        return State.SKIPPED
    if states == {State.CACHED}:
        return State.CACHED
    return State.SUCCESS
