"""Cache hits settled before anything runs, and read only when needed.

A Merkle key depends only on the task's fingerprint, its literal arguments and its
upstream keys, so the key every task of the static graph would have, if its upstream
tasks end ok, is known before the run starts. All of them are looked up in one store
query that reads no value. A task is settled ``cached`` at once when its key is stored
and every upstream task is settled too (so a cached task never stands on an upstream
task that runs, and triggers see what they would see in a run that went task by
task). Values are read only for the settled tasks whose value a task that runs needs
(the frontier); the others stay in the store until someone asks (``Lazy``).

A frontier value that cannot be read (evicted or damaged since the query) unsettles
its task and everything settled below it: they run as usual, where the normal lookup
finds what is still stored. A lazy value that cannot be read later is computed again
from its inputs, themselves read or computed first, in graph order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from nbflow.engine.gate import blocked, inputs
from nbflow.engine.keys import Keys
from nbflow.engine.mapping import Lengths
from nbflow.engine.plan import NodePlan
from nbflow.engine.records import Lazy, TaskRun
from nbflow.graph.flow import Node
from nbflow.graph.triggers import ALL_SUCCESSFUL
from nbflow.state import State
from nbflow.store.cache import ResultStore

log = logging.getLogger("nbflow")

LAZY: Any = object()  # a settled task's value, left in the store
_MISSING: Any = object()


class _Presumed:
    """What the keys and the triggers of the tasks below see of a task presumed to end
    cached: its key and its state."""

    __slots__ = ("key",)
    state = State.CACHED
    children = None

    def __init__(self, key: str) -> None:
        self.key = key


class Lookahead:
    """Settles one run's cache hits before its first task is submitted."""

    __slots__ = (
        "_by_node",
        "_keys",
        "_lengths",
        "_lookup",
        "_plans",
        "_runs",
        "_store",
        "absent",
    )

    def __init__(
        self,
        plans: list[NodePlan],
        runs: Mapping[Node, TaskRun],
        keys: Keys,
        store: ResultStore,
        lookup: Callable[[list[str]], dict[str, Any]],
        lengths: Lengths | None = None,
    ) -> None:
        self._plans = plans
        self._lengths = lengths
        self._runs = runs
        self._keys = keys
        self._store = store
        self._lookup = lookup
        # Keys looked up and not stored: a task run with one of them has nothing to
        # look up when it is dispatched (a first run asks the store once, not per task).
        self.absent: set[str] = set()
        self._by_node: dict[Node, tuple[int, NodePlan]] | None = None

    def settle(self) -> dict[Node, tuple[str, Any]]:
        """The tasks that end cached without running, in plan order: their key and
        their value (``LAZY`` for a value no task of this run needs)."""
        presumed: dict[Node, _Presumed] = {}
        seen: Mapping[Node, Any] = presumed  # what the triggers read as the upstream runs
        key_of = self._keys.of_upstream
        for plan in self._plans:
            if plan.mapped or not plan.node.task.cache or plan.trigger.pauses:
                continue
            try:
                upstream = tuple([presumed[up].key for up in plan.whole])
            except KeyError:
                continue  # an upstream task that may run: this one is keyed when it ends
            if (
                plan.trigger is not ALL_SUCCESSFUL  # met when every upstream task is cached
                and blocked(plan, seen, None, plan.trigger) is not None
            ):
                continue
            key = key_of(plan, upstream)
            if key is not None:
                presumed[plan.node] = _Presumed(key)
        if not presumed:
            return {}
        keys = [p.key for p in presumed.values()]
        present = getattr(self._store, "present", None)
        # A store that cannot say which entries will read back (one that checks each
        # entry's signature as it reads it) has every settled value read now.
        if present is not None:
            stored = present(keys, {node.task.name for node in presumed})
        else:
            stored = self._store.sizes(keys)
        if present is None or getattr(self._store, "present_is_complete", False):
            self.absent = {k for k in keys if k not in stored}
        settled: dict[Node, NodePlan] = {}
        for plan in self._plans:
            found = presumed.get(plan.node)
            if found is None or found.key not in stored:
                continue
            for up in plan.whole:
                if up not in settled:
                    break
            else:
                settled[plan.node] = plan
        values = self._read_frontier(settled, presumed, everything=present is None)
        return {node: (presumed[node].key, values.get(node, LAZY)) for node in settled}

    def _read_frontier(
        self, settled: dict[Node, NodePlan], presumed: dict[Node, _Presumed], everything: bool
    ) -> dict[Node, Any]:
        """Values of the settled tasks a task that runs reads (``everything``: of every
        settled task), in one lookup per round; a value that cannot be read unsettles
        its task and what is settled below it."""
        values: dict[Node, Any] = {}
        counted = set() if everything else self._counted(settled, presumed)
        takes = self._takes
        while True:
            frontier = []
            for node, plan in settled.items():
                if node in values:
                    continue
                if everything:
                    frontier.append(node)
                    continue
                for c in plan.consumers:
                    if c.node not in settled and takes(c, node, counted):
                        frontier.append(node)
                        break
            if not frontier:
                return values
            hits = self._lookup([presumed[n].key for n in frontier])
            gone = [n for n in frontier if presumed[n].key not in hits]
            for node in frontier:
                if presumed[node].key in hits:
                    values[node] = hits[presumed[node].key]
            if not gone:
                return values
            log.debug("nbflow: %d cached results vanished since the lookup", len(gone))
            work = list(gone)
            while work:
                node = work.pop()
                dropped = settled.pop(node, None)
                if dropped is not None:
                    values.pop(node, None)
                    work.extend(c.node for c in dropped.consumers)

    def _counted(self, settled: dict[Node, NodePlan], presumed: dict[Node, _Presumed]) -> set[Node]:
        """The settled lists that mapped tasks iterate over whose lengths are stored (a
        mapped task then expands without reading them)."""
        if self._lengths is None:
            return set()
        over = {up for plan in self._plans if plan.mapped for up in plan.sources}
        mapped_over = [node for node in settled if node in over] if over else []
        if not mapped_over:
            return set()
        known = self._lengths.prefetch([presumed[n].key for n in mapped_over])
        return {n for n in mapped_over if presumed[n].key in known}

    @staticmethod
    def _takes(consumer: NodePlan, node: Node, counted: set[Node]) -> bool:
        """Whether ``consumer``, which runs, needs ``node``'s value now: not when it only
        maps over it and its length is known (its items are read if a child runs)."""
        if consumer.mapped and node in counted and node in consumer.sources:
            return node in consumer.held
        return True

    # -- reading a lazy value ------------------------------------------------------
    def load(self, run: TaskRun) -> Any:
        """The value of a task run settled lazily: read from the store, or, when its
        entry has gone, computed again from its inputs."""
        assert run.key is not None
        value = self._store.get(run.key, _MISSING)
        if value is not _MISSING:
            return value
        log.info("nbflow: the cached result of '%s' has gone; computing it again", run.name)
        index = self._index()
        above: list[TaskRun] = []
        seen: set[int] = set()
        work = [self._runs[up] for up in index[run.node][1].whole]
        while work:  # the lazy task runs above ``run``
            current = work.pop()
            if id(current) in seen or type(current._value) is not Lazy:
                continue
            seen.add(id(current))
            above.append(current)
            work.extend(self._runs[up] for up in index[current.node][1].whole)
        # Those gone too are computed first, upstream first, so that a long chain is
        # never a deep recursion; the others are read as the inputs are built.
        above.sort(key=lambda r: index[r.node][0])
        stored = self._store.sizes([r.key for r in above if r.key is not None])
        for current in above:
            lazy = current._value
            if current.key not in stored and type(lazy) is Lazy:
                lazy.get()
        plan = index[run.node][1]
        args, kwargs = inputs(plan, self._runs, {}, None)
        task = plan.node.task
        value = task.fn(*args, **kwargs)
        self._store.set(run.key, value, task=task.name, expire=task.cache_expire)
        return value

    def _index(self) -> dict[Node, tuple[int, NodePlan]]:
        """Each node's place in plan order and its plan (made on the first recovery)."""
        if self._by_node is None:
            self._by_node = {p.node: (i, p) for i, p in enumerate(self._plans)}
        return self._by_node
