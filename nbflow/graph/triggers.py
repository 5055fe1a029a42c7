"""Triggers: when a task runs, given the final states of its upstream tasks.

Seven are named by strings (``trigger="all_finished"``); ``some_failed(...)`` and
``some_successful(...)`` build one with bounds. A skipped upstream task counts as a
successful one, as in Prefect 1. ``manual_only`` waits, once its upstream tasks succeeded, until
``run.resume(task)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nbflow.errors import TaskDefinitionError
from nbflow.state import FAILED_STATES, OK, State

TRIGGERS = (
    "all_successful",
    "all_finished",
    "any_failed",
    "all_failed",
    "any_successful",
    "not_all_skipped",
    "manual_only",
)


@dataclass(frozen=True)
class Trigger:
    """A trigger with bounds on how many upstream tasks failed (``some_failed``) or
    succeeded (``some_successful``, ``counts="succeeded"``)."""

    name: str
    at_least: int | float | None = None
    at_most: int | float | None = None
    counts: str = "failed"

    def __str__(self) -> str:
        return self.name

    def met(self, states: Sequence[State]) -> tuple[bool, str]:
        group = OK if self.counts == "succeeded" else FAILED_STATES
        found = sum(s in group for s in states)
        n = len(states)

        def bound(value: int | float) -> float:
            return value * n if isinstance(value, float) else value

        what = f"{found} of {n} upstream tasks {self.counts}"
        if self.at_least is not None and found < bound(self.at_least):
            return False, f"{what}, fewer than {self.at_least}"
        if self.at_most is not None and found > bound(self.at_most):
            return False, f"{what}, more than {self.at_most}"
        return True, ""


def some_failed(at_least: int | float | None = None, at_most: int | float | None = None) -> Trigger:
    """Run when the number of failed upstream tasks is within bounds.

    An int is a count, a float between 0 and 1 a fraction of the upstream tasks.

    >>> some_failed(at_least=1, at_most=0.5).met([State.FAILED, State.SUCCESS])
    (True, '')
    """
    return _bounded("some_failed", "failed", at_least, at_most)


def some_successful(
    at_least: int | float | None = None, at_most: int | float | None = None
) -> Trigger:
    """Run when the number of successful (or skipped) upstream tasks is within bounds.

    An int is a count, a float between 0 and 1 a fraction of the upstream tasks.

    >>> some_successful(at_least=2).met([State.SUCCESS, State.SKIPPED, State.FAILED])
    (True, '')
    >>> some_successful(at_most=0.5).met([State.SUCCESS, State.SUCCESS, State.FAILED])
    (False, '2 of 3 upstream tasks succeeded, more than 0.5')
    """
    return _bounded("some_successful", "succeeded", at_least, at_most)


def _bounded(
    name: str, counts: str, at_least: int | float | None, at_most: int | float | None
) -> Trigger:
    for label, value in (("at_least", at_least), ("at_most", at_most)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise TaskDefinitionError(
                f"{name}(): expected {label} to be a count (int >= 0) or a fraction "
                f"(float between 0 and 1), but got {value!r}."
            )
        if isinstance(value, float) and value > 1:
            raise TaskDefinitionError(
                f"{name}(): {label}={value!r} is a float above 1; give a count as an int "
                "or a fraction between 0 and 1."
            )
    if at_least is None and at_most is None:
        at_least = 1
    return Trigger(f"{name}(at_least={at_least}, at_most={at_most})", at_least, at_most, counts)


def trigger_met(trigger: str | Trigger, states: Sequence[State]) -> tuple[bool, str]:
    """Whether ``trigger`` is met by these upstream states, and if not, why."""
    if isinstance(trigger, Trigger):
        return trigger.met(states) if states else (True, "")
    if not states or trigger == "all_finished":
        return True, ""
    if trigger == "all_successful" or trigger == "manual_only":
        return all(s in OK for s in states), "an upstream task did not succeed"
    if trigger == "any_failed":
        return any(s in FAILED_STATES for s in states), "no upstream task failed"
    if trigger == "all_failed":
        return all(s in FAILED_STATES for s in states), "not every upstream task failed"
    if trigger == "any_successful":
        # A skipped upstream counts as successful, as for all_successful (and Prefect 1).
        return any(s in OK for s in states), "no upstream task succeeded"
    if trigger == "not_all_skipped":
        if all(s is State.SKIPPED for s in states):
            return False, "every upstream task was skipped"
        return all(s in OK for s in states), "an upstream task did not succeed"
    raise TaskDefinitionError(f"unknown trigger {trigger!r}")
