"""The states of a task run and of a flow run: one flat enum."""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    """The state of a task run or a flow run.

    Values are lower-case strings, used verbatim in Python, the widget and CSS.

    >>> State.FAILED.value
    'failed'
    >>> State("cached").is_successful
    True
    """

    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    PAUSED = "paused"
    SUCCESS = "success"
    CACHED = "cached"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"

    # Hashed as its value, as it compares (a str): in C, where Enum's own hash is a
    # Python call, which every test of membership in the groups below would pay.
    __hash__ = str.__hash__

    def __str__(self) -> str:
        return self.value

    @property
    def is_finished(self) -> bool:
        """True for the states a task run ends in."""
        return self in FINISHED

    @property
    def is_successful(self) -> bool:
        """True for success and cached: the task produced its value."""
        return self is State.SUCCESS or self is State.CACHED

    @property
    def is_failed(self) -> bool:
        """True for failed, timed_out and upstream_failed."""
        return self in FAILED_STATES

    @property
    def is_ok(self) -> bool:
        """True when this state does not make a run fail: success, cached or skipped."""
        return self is State.SUCCESS or self is State.CACHED or self is State.SKIPPED


# Named groups of states: modules test membership in these instead of listing members,
# so a new state is placed in every group in one place. The properties above keep
# identity tests for the hot paths; tests/test_state.py holds them to these groups.

FINISHED = frozenset(
    {
        State.SUCCESS,
        State.CACHED,
        State.FAILED,
        State.TIMED_OUT,
        State.SKIPPED,
        State.UPSTREAM_FAILED,
        State.CANCELLED,
    }
)
"""The states a task run ends in (``State.is_finished``)."""

IN_PROGRESS = frozenset({State.PENDING, State.RUNNING, State.RETRYING})
"""Not finished and not waiting for a person (``PAUSED`` waits for ``run.resume``)."""

SUCCEEDED = frozenset({State.SUCCESS, State.CACHED})
"""The task produced its value (``State.is_successful``)."""

OK = frozenset({State.SUCCESS, State.CACHED, State.SKIPPED})
"""Finished without making the run fail (``State.is_ok``)."""

NOT_OK = FINISHED - OK
"""Finished and making the run fail: failed, timed out, upstream failed, cancelled."""

FAILED_STATES = frozenset({State.FAILED, State.TIMED_OUT, State.UPSTREAM_FAILED})
"""What triggers count as a failed upstream task (``State.is_failed``)."""

ERRORED = frozenset({State.FAILED, State.TIMED_OUT})
"""An attempt of the task itself raised or ran out of time (it has an error to show)."""

ERRORED_OR_CANCELLED = ERRORED | {State.CANCELLED}
"""The task stopped on its own account: it raised, timed out or was cancelled (not
because an upstream task failed)."""

BLOCKED = NOT_OK - ERRORED
"""Made the run fail without an error of its own: an upstream task failed, or the run
was cancelled."""

NOT_RUN = frozenset({State.UPSTREAM_FAILED, State.SKIPPED, State.CANCELLED})
"""Ended without the task completing an attempt; the task run's ``reason`` says why."""
