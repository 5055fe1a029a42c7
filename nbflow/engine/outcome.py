"""What an attempt's outcome becomes: the one pure place where an error turns into a state;
and what a flow run's end becomes (its reference tasks, its terminal state handler)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol

from nbflow.errors import FAIL, RETRY, SKIP, SUCCESS, TaskTimeoutError
from nbflow.state import OK, State

if TYPE_CHECKING:
    from nbflow.engine.records import TaskRun
    from nbflow.graph.flow import Flow, Node

log = logging.getLogger("nbflow")


class RetryPolicy(Protocol):
    """What ``verdict`` reads of a task (a ``Task`` is one)."""

    @property
    def retries(self) -> int: ...

    @property
    def retry_on(self) -> tuple[type[BaseException], ...]: ...

    @property
    def retry_delay(self) -> float: ...


class Verdict(NamedTuple):
    """How one attempt ended and what its task run becomes.

    ``attempt`` is the state recorded in the attempt's history; ``state`` the state the
    task run moves to (``retrying``, or the state it ends in); ``reason`` the text shown
    with it; ``delay`` the base wait before a retry (0 when the task raised ``RETRY``).
    """

    attempt: State
    state: State
    reason: str | None = None
    delay: float = 0.0


# The common case allocates nothing.
SUCCEEDED = Verdict(State.SUCCESS, State.SUCCESS)


def verdict(
    error: BaseException | None, timed_out: bool, attempt: int, task: RetryPolicy
) -> Verdict:
    """The verdict on attempt number ``attempt`` (from 1) that raised ``error`` (or None).

    >>> from nbflow import task
    >>> flaky = task(retries=1)(lambda: None)
    >>> verdict(OSError("disk"), False, 1, flaky).state.value
    'retrying'
    >>> verdict(OSError("disk"), False, 2, flaky).state.value
    'failed'
    """
    if error is None:
        return SUCCEEDED
    if isinstance(error, SKIP):
        return Verdict(State.SKIPPED, State.SKIPPED, error.message or "raised SKIP")
    if isinstance(error, SUCCESS):
        return Verdict(State.SUCCESS, State.SUCCESS, error.message or None)
    state = State.TIMED_OUT if timed_out or isinstance(error, TaskTimeoutError) else State.FAILED
    if (
        not isinstance(error, FAIL)
        and attempt <= task.retries
        and isinstance(error, (*task.retry_on, RETRY))
    ):
        delay = 0.0 if isinstance(error, RETRY) else task.retry_delay
        return Verdict(state, State.RETRYING, f"attempt {attempt} {state.value}: {error}", delay)
    return Verdict(state, state, f"{type(error).__name__}: {error}")


def retry_wait(
    delay: float,
    backoff: float,
    jitter: float,
    attempt: int,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait before retrying after attempt number ``attempt`` (from 1).

    >>> retry_wait(2.0, 3.0, 0.0, 3)
    18.0
    """
    wait = delay * backoff ** (attempt - 1)
    if jitter:
        wait *= 1 + uniform(-jitter, jitter)
    return wait


def run_state(cancelled: bool, states: Iterable[State]) -> State:
    """A flow run's final state from those of the task runs that decide it.

    >>> run_state(False, [State.SUCCESS, State.SKIPPED]).value
    'success'
    """
    if cancelled:
        return State.CANCELLED
    return State.SUCCESS if all(s in OK for s in states) else State.FAILED


# The states a terminal state handler may give a run that was not cancelled.
_FINAL = (State.SUCCESS, State.FAILED)


def flow_state(flow: Flow, cancelled: bool, runs: Mapping[Node, TaskRun]) -> State:
    """A flow run's final state: decided by its reference tasks (by default the terminal
    tasks; a mapped one by each of its children), then, unless the run was cancelled,
    by the flow's ``terminal_state_handler`` if it returns a state. A handler that
    raises or returns something else is logged and changes nothing."""
    deciding: list[TaskRun] = []
    for node in flow.reference_tasks:
        run = runs[node]
        deciding.extend(run.children or (run,))
    state = run_state(cancelled, (r.state for r in deciding))
    handler = flow.terminal_state_handler
    if handler is None or cancelled:
        return state
    try:
        chosen = handler(flow, state, deciding)
    except Exception:
        log.exception("nbflow: terminal_state_handler of flow '%s' failed", flow.name)
        return state
    if chosen is None:
        return state
    if chosen not in _FINAL:
        log.error(
            "nbflow: terminal_state_handler of flow '%s' returned %r; it returns "
            "State.SUCCESS, State.FAILED or None. The run's state stays %s.",
            flow.name,
            chosen,
            state.value,
        )
        return state
    return State(chosen)
