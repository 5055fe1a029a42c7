"""Triggers: when a task runs, given the final states of its upstream tasks.

Each trigger is an object (``met``, ``why_not``, ``on_unmet``, ``pauses``), so the
scheduler asks it rather than comparing names. Seven are named by strings
(``trigger="all_finished"``, resolved with ``as_trigger``); ``some_failed(...)`` and
``some_successful(...)`` build one with bounds. A skipped upstream task counts as a
successful one, as in Prefect 1. ``manual_only`` waits, once its upstream tasks succeeded, until
``run.resume(task)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nbflow.errors import TaskDefinitionError
from nbflow.state import FAILED_STATES, OK, State


class Trigger:
    """When a task runs, given the final states of its upstream tasks.

    ``met(states)`` says whether it runs; a task with no upstream tasks always does.
    When not met, the task ends ``upstream_failed`` if an upstream task failed (the
    failure propagates, as Prefect 1's ``TriggerFailed`` does), else ``on_unmet``:
    ``skipped`` for all but the triggers that wait for success, with
    ``why_not(states)`` as the reason. ``pauses``: once met, the task waits for
    ``run.resume(task)``.

    >>> NAMED["any_failed"].met([State.SUCCESS, State.FAILED])
    True
    """

    name: str
    pauses: bool = False
    on_unmet: State = State.SKIPPED

    def met(self, states: Sequence[State]) -> bool:
        raise NotImplementedError

    def why_not(self, states: Sequence[State]) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, repr=False)
class _Named(Trigger):
    """A trigger named by a string; each subclass is one test over the upstream states
    (a method of its own, as the scheduler asks it once per task run)."""

    name: str
    unmet: str
    on_unmet: State = State.SKIPPED
    pauses: bool = False

    def why_not(self, states: Sequence[State]) -> str:
        return self.unmet

    def __repr__(self) -> str:
        return f"<trigger {self.name}>"


class _AllOk(_Named):
    def met(self, states: Sequence[State]) -> bool:
        return all(s in OK for s in states)


class _AllFinished(_Named):
    def met(self, states: Sequence[State]) -> bool:
        return True


class _AnyFailed(_Named):
    def met(self, states: Sequence[State]) -> bool:
        return not states or any(s in FAILED_STATES for s in states)


class _AllFailed(_Named):
    def met(self, states: Sequence[State]) -> bool:
        return all(s in FAILED_STATES for s in states)


class _AnySuccessful(_Named):
    def met(self, states: Sequence[State]) -> bool:
        # A skipped upstream counts as successful, as for all_successful (and Prefect 1).
        return not states or any(s in OK for s in states)


class _NotAllSkipped(_Named):
    def met(self, states: Sequence[State]) -> bool:
        if not states:
            return True
        return not all(s is State.SKIPPED for s in states) and all(s in OK for s in states)

    def why_not(self, states: Sequence[State]) -> str:
        if all(s is State.SKIPPED for s in states):
            return "every upstream task was skipped"
        return _NOT_OK


_NOT_OK = "an upstream task did not succeed"
NAMED: dict[str, Trigger] = {
    t.name: t
    for t in (
        _AllOk("all_successful", _NOT_OK, State.UPSTREAM_FAILED),
        _AllFinished("all_finished", ""),
        _AnyFailed("any_failed", "no upstream task failed"),
        _AllFailed("all_failed", "not every upstream task failed"),
        _AnySuccessful("any_successful", "no upstream task succeeded"),
        _NotAllSkipped("not_all_skipped", _NOT_OK),
        _AllOk("manual_only", _NOT_OK, State.UPSTREAM_FAILED, pauses=True),
    )
}
ALL_SUCCESSFUL = NAMED["all_successful"]  # the default trigger
TRIGGERS = tuple(NAMED)  # the names @task(trigger=...) and %%task --trigger accept


@dataclass(frozen=True)
class SomeFailed(Trigger):
    """A trigger with bounds on how many upstream tasks failed (``some_failed``) or
    succeeded, skipped ones included (``some_successful``: ``counts="succeeded"``)."""

    name: str
    at_least: int | float | None = None
    at_most: int | float | None = None
    counts: str = "failed"

    def met(self, states: Sequence[State]) -> bool:
        return not states or not self.why_not(states)

    def why_not(self, states: Sequence[State]) -> str:
        """Why the bounds are not met ("" when they are)."""
        group = OK if self.counts == "succeeded" else FAILED_STATES
        found = sum(s in group for s in states)
        n = len(states)

        def bound(value: int | float) -> float:
            return value * n if isinstance(value, float) else value

        what = f"{found} of {n} upstream tasks {self.counts}"
        if self.at_least is not None and found < bound(self.at_least):
            return f"{what}, fewer than {self.at_least}"
        if self.at_most is not None and found > bound(self.at_most):
            return f"{what}, more than {self.at_most}"
        return ""


def some_failed(
    at_least: int | float | None = None, at_most: int | float | None = None
) -> SomeFailed:
    """Run when the number of failed upstream tasks is within bounds.

    An int is a count, a float between 0 and 1 a fraction of the upstream tasks.

    >>> some_failed(at_least=1, at_most=0.5).met([State.FAILED, State.SUCCESS])
    True
    """
    return _bounded("some_failed", "failed", at_least, at_most)


def some_successful(
    at_least: int | float | None = None, at_most: int | float | None = None
) -> SomeFailed:
    """Run when the number of successful (or skipped) upstream tasks is within bounds.

    An int is a count, a float between 0 and 1 a fraction of the upstream tasks.

    >>> some_successful(at_least=2).met([State.SUCCESS, State.SKIPPED, State.FAILED])
    True
    >>> some_successful(at_most=0.5).why_not([State.SUCCESS, State.SUCCESS, State.FAILED])
    '2 of 3 upstream tasks succeeded, more than 0.5'
    """
    return _bounded("some_successful", "succeeded", at_least, at_most)


def _bounded(
    name: str, counts: str, at_least: int | float | None, at_most: int | float | None
) -> SomeFailed:
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
    return SomeFailed(f"{name}(at_least={at_least}, at_most={at_most})", at_least, at_most, counts)


def as_trigger(trigger: str | Trigger) -> Trigger:
    """The trigger object for a trigger name (a ``Trigger`` is returned as it is).

    >>> as_trigger("manual_only").pauses
    True
    """
    if isinstance(trigger, Trigger):
        return trigger
    try:
        return NAMED[trigger]
    except KeyError:
        raise TaskDefinitionError(f"unknown trigger {trigger!r}") from None
