"""Readiness: whether a task run whose upstream tasks have ended runs, and its inputs.

Pure reads of the run's records: the scheduler calls these under its lock and applies
what they return.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbflow.engine.plan import NodePlan, materialize
from nbflow.engine.records import Lazy, LazyItems, TaskRun
from nbflow.errors import UpstreamFailedError
from nbflow.graph.flow import Node
from nbflow.graph.triggers import Trigger
from nbflow.state import FAILED_STATES, OK, State

Runs = Mapping[Node, TaskRun]
_SUCCESS, _CACHED = State.SUCCESS, State.CACHED


def upstream_states(plan: NodePlan, runs: Runs, index: int | None) -> tuple[list[State], bool]:
    """States a unit's trigger sees, and whether an upstream skip propagates to it."""
    states: list[State] = []
    skipped = False
    for up in plan.whole:
        run = runs[up]
        if run.children is not None and run.children:
            states.extend(c.state for c in run.children)
            skipped = skipped or run.state is State.SKIPPED
        else:
            states.append(run.state)
            skipped = skipped or run.state is State.SKIPPED
    if index is not None:
        for up in plan.elementwise:
            child = runs[up].children[index]  # type: ignore[index]
            states.append(child.state)
            skipped = skipped or child.state is State.SKIPPED
    return states, skipped


def all_succeeded(plan: NodePlan, runs: Runs) -> bool:
    """Whether every upstream task of ``plan`` succeeded and is not mapped: then a unit
    of it (not a mapped child) is not ``blocked`` under the default trigger, with no
    more to check."""
    for up in plan.whole:
        run = runs[up]
        state = run.state
        if (state is not _SUCCESS and state is not _CACHED) or run.children is not None:
            return False
    return True


def blocked(
    plan: NodePlan, runs: Runs, index: int | None, trigger: Trigger
) -> tuple[State, str] | None:
    """The state and reason a unit ends with without running, or None if it may run.

    An upstream cancellation wins, then an upstream skip (unless the task opts out of
    ``skip_on_upstream_skip``), then the trigger. A trigger that is not met ends the
    unit ``upstream_failed`` when an upstream failed, else as the trigger says.
    """
    states, skipped = upstream_states(plan, runs, index)
    if State.CANCELLED in states:
        return State.CANCELLED, "an upstream task was cancelled"
    if skipped and plan.node.task.skip_on_upstream_skip:
        return State.SKIPPED, "an upstream task was skipped"
    if trigger.met(states):
        return None
    if trigger.on_unmet is State.UPSTREAM_FAILED:
        return (
            State.UPSTREAM_FAILED,
            f"upstream '{first_bad_upstream(plan, runs, index)}' did not succeed",
        )
    why = f"trigger '{trigger}' not met: {trigger.why_not(states)}"
    if any(s in FAILED_STATES for s in states):
        # A failure upstream is carried on, as Prefect 1's TriggerFailed does, so that
        # the terminal tasks that decide the run's state see it.
        bad = first_bad_upstream(plan, runs, index)
        return State.UPSTREAM_FAILED, f"{why} (upstream '{bad}' failed)"
    return trigger.on_unmet, why


def first_bad_upstream(plan: NodePlan, runs: Runs, index: int | None) -> str:
    """The name of the first upstream task run that did not end ok ("?" if none)."""
    for up in plan.whole:
        run = runs[up]
        for r in run.children or (run,):
            if r.state not in OK:
                return r.name
    if index is not None:
        for up in plan.elementwise:
            child = runs[up].children[index]  # type: ignore[index]
            if child.state not in OK:
                return child.name
    return "?"


def inputs(
    plan: NodePlan, runs: Runs, sources: Mapping[Node, Any], index: int | None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments a unit is called with: upstream nodes replaced by their values,
    mapped inputs by item ``index``. ``sources`` holds the lists of the upstream values
    mapped over. Raises what building them raises (an input that cannot be indexed)."""
    call = plan.call
    if plan.literal:
        return call.args, call.kwargs
    values: dict[Node, Any] = {}
    for up in plan.whole:
        if up not in plan.sources:  # a list mapped over is taken from ``sources``
            values[up] = value_of(runs[up])
    for up in plan.elementwise:
        values[up] = _ChildValues(runs[up].children)  # type: ignore[arg-type]
    for up in plan.sources:
        items = sources[up]
        if type(items) is LazyItems and up in plan.held:
            items = items.load()
        values[up] = items
    args = tuple(
        [values[a] if type(a) is Node else materialize(a, values, index) for a in call.args]
    )
    kwargs = {k: materialize(v, values, index) for k, v in call.kwargs.items()}
    return args, kwargs


def value_of(run: TaskRun) -> Any:
    """The value a downstream task receives from ``run``."""
    state = run.state
    if (state is _SUCCESS or state is _CACHED) and run.children is None:
        value = run._value  # run.value, without its call (once per input of every task)
        return value.get() if type(value) is Lazy else value
    if run.children is not None:
        return [value_of(c) for c in run.children]
    if state is State.SKIPPED:
        return None
    if run.error is not None:
        return run.error
    return UpstreamFailedError(f"Task '{run.name}' ended {state.value}: {run.reason}")


class _ChildValues:
    """Indexable view of a mapped node's child values (for element-wise mapping)."""

    __slots__ = ("children",)

    def __init__(self, children: list[TaskRun]) -> None:
        self.children = children

    def __getitem__(self, i: int) -> Any:
        return value_of(self.children[i])
