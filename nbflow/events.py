"""The event stream of a run: what front ends and the history subscribe to."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from nbflow.state import FINISHED, State

log = logging.getLogger("nbflow")

RUN_STARTED = "run_started"
TASK_STATE = "task_state"
RUN_FINISHED = "run_finished"


class Event(NamedTuple):
    """One change in a run.

    ``kind`` is ``run_started``, ``task_state`` (``task_run`` changed to ``state``) or
    ``run_finished`` (``state`` is the run's). ``run`` is the ``FlowRun``. A named
    tuple: immutable and cheap, since a run emits a few per task.
    """

    kind: str
    run_id: str
    time: float
    state: State
    task_run: Any = None
    run: Any = None


Listener = Callable[[Event], Any]

_process_listeners: tuple[Listener, ...] = ()
_process_lock = threading.Lock()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener(event)`` for every event of every run started in this process
    from now on (the widget and the history use the same events). Returns a function
    that unsubscribes. A listener that raises is logged; it never changes a run.

    >>> import nbflow
    >>> seen = []
    >>> unsubscribe = nbflow.events.subscribe(seen.append)
    >>> unsubscribe()
    """
    global _process_listeners
    if not callable(listener):
        raise TypeError(f"subscribe() needs a callable listener(event), but got {listener!r}.")
    with _process_lock:
        _process_listeners = (*_process_listeners, listener)

    def unsubscribe() -> None:
        global _process_listeners
        with _process_lock:
            _process_listeners = tuple(x for x in _process_listeners if x is not listener)

    return unsubscribe


def process_listeners() -> tuple[Listener, ...]:
    """The listeners given to ``subscribe``."""
    return _process_listeners


class EventBus:
    """Calls each subscriber for each event, in the thread that emitted it.

    A subscriber that raises is logged and kept; it never changes the run.

    >>> bus = EventBus()
    >>> seen = []
    >>> unsubscribe = bus.subscribe(seen.append)
    >>> bus.emit(Event("run_started", "r1", 0.0, State.RUNNING))
    >>> [e.kind for e in seen]
    ['run_started']
    """

    def __init__(self) -> None:
        # The subscribers, in order (read it to ask "is anyone listening?" without a call).
        self.listeners: tuple[Listener, ...] = ()
        # Those that also want the states a task run passes through (running, retrying,
        # paused), not only where it ends: a run makes those events only for them.
        self.every_state: tuple[Listener, ...] = ()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.listeners)

    def subscribe(self, listener: Listener, *, ends_only: bool = False) -> Callable[[], None]:
        """Call ``listener(event)`` for every event (``ends_only``: of a task run, only
        the event of the state it ends in); returns a function that unsubscribes."""
        with self._lock:
            self.listeners = (*self.listeners, listener)
            if not ends_only:
                self.every_state = (*self.every_state, listener)

        def unsubscribe() -> None:
            with self._lock:
                self.listeners = tuple(x for x in self.listeners if x is not listener)
                self.every_state = tuple(x for x in self.every_state if x is not listener)

        return unsubscribe

    def emit(self, event: Event) -> None:
        listeners = self.listeners
        if event.kind == TASK_STATE and event.state not in FINISHED:
            listeners = self.every_state
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("nbflow event listener %r failed on %s", listener, event.kind)
