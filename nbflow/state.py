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
FAILED_STATES = frozenset({State.FAILED, State.TIMED_OUT, State.UPSTREAM_FAILED})
