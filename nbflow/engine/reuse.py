"""Reuse of a prior run's results: what a retry run takes over instead of running again.

A task run is reused when its prior run ended ok, its key (if any) is the same, every
upstream it reads was itself reused, and its value is at hand (a recorded run's value
is read from the store).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nbflow.engine.plan import NodePlan
from nbflow.engine.records import UNLOADED, TaskRun
from nbflow.graph.flow import Node
from nbflow.state import OK, State


class Reuse:
    """The prior task runs of one run (by name) and which of this run's were reused.

    ``lookup(keys)`` reads stored values as cache hits are read; None when the run has
    no store (then keys are not compared and recorded values cannot be read).
    """

    __slots__ = ("_lookup", "_prior", "_reused", "_runs")

    def __init__(
        self,
        prior: Mapping[str, TaskRun],
        runs: Mapping[Node, TaskRun],
        lookup: Callable[[list[str]], dict[str, Any]] | None,
    ) -> None:
        self._prior = prior
        self._runs = runs
        self._lookup = lookup
        self._reused: set[int] = set()  # ids of this run's reused task runs

    def prior_of(self, plan: NodePlan, unit: TaskRun) -> TaskRun | None:
        """The prior task run whose result ``unit`` takes over, or None to run it."""
        prior = self._prior.get(unit.name)
        if (
            prior is not None
            and prior.state in OK
            and (self._lookup is None or prior.key is None or prior.key == unit.key)
            and self.all_reused(plan, unit.map_index)
            and self._load(prior)
        ):
            return prior
        return None

    def take(self, unit: TaskRun, prior: TaskRun) -> tuple[State, str | None]:
        """Copy ``prior``'s result and records into ``unit``; the state and reason it
        ends with."""
        unit._value = prior._value
        unit.logs = list(prior.logs)
        unit.history = list(prior.history)
        unit.attempts = 0
        unit.cached = prior.state is not State.SKIPPED
        unit.key = prior.key
        # Its start and end are this run's (set when it ends): the time of the reuse, not
        # the time since the prior run computed it.
        self._reused.add(id(unit))
        if prior.state is State.SKIPPED:
            return State.SKIPPED, prior.reason
        return State.CACHED, None

    def node_ended(self, plan: NodePlan, run: TaskRun) -> None:
        """A mapped task run ended: it counts as reused when all its children were (or,
        with none, when its inputs were). The elements of a flatten are reused with the
        task run they come from."""
        if plan.flat is not None and id(self._runs[plan.flat]) in self._reused:
            self._reused.add(id(run))
            self._reused.update(id(c) for c in run.children or ())
        elif run.children:
            if all(id(c) in self._reused for c in run.children):
                self._reused.add(id(run))
        elif run.children is not None and self.all_reused(plan, None):
            self._reused.add(id(run))  # an empty map over reused inputs

    def all_reused(self, plan: NodePlan, index: int | None) -> bool:
        """Whether every upstream task run ``plan``'s unit ``index`` reads was reused."""
        reused = self._reused
        for up in plan.whole:
            if id(self._runs[up]) not in reused:
                return False
        if index is not None:
            for up in plan.elementwise:
                if id(self._runs[up].children[index]) not in reused:  # type: ignore[index]
                    return False
        return True

    def _load(self, prior: TaskRun) -> bool:
        """Make sure a prior run's value is at hand (a recorded run's comes from the store)."""
        if prior._value is not UNLOADED or prior.state is State.SKIPPED:
            return True
        if self._lookup is None or prior.key is None:
            return False
        # Read as a cache hit is: a large value may be left to the executor's workers.
        hits = self._lookup([prior.key])
        if prior.key not in hits:
            return False
        prior._value = hits[prior.key]
        return True
