"""Events and hooks of a run: recorded under the run's lock, delivered outside it, in order."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from nbflow.events import Event, EventBus
from nbflow.state import FINISHED

log = logging.getLogger("nbflow")

Hook = Callable[..., Any]


class Outbox:
    """What a run has to tell: events for its bus and hook calls, in the order recorded.

    The scheduler appends to ``events`` and ``hooks`` with its lock held (so they cost a
    list append on the hot path); ``flush`` delivers them without holding it, so a slow
    listener or hook never blocks the run.
    """

    __slots__ = ("_bus", "_lock", "_order", "_pending", "_released", "events", "holding", "hooks")

    def __init__(self, bus: EventBus, lock: AbstractContextManager[Any]) -> None:
        self._bus = bus
        self._lock = lock
        self._order = threading.RLock()
        self.events: list[Event] = []
        self.hooks: list[tuple[Hook, tuple[Any, ...]]] = []
        # Task runs (by id) whose result is not durable yet: their end is told only
        # once it is, and every later event waits behind it, so events keep their order.
        self.holding: set[int] = set()
        self._pending: deque[Event] = deque()
        self._released = False  # a release since the last flush: held events may go

    def release(self, units: list[Any]) -> None:
        """These task runs' results are durable: their ends may be told."""
        with self._lock:
            for unit in units:
                self.holding.discard(id(unit))
            self._released = True

    def flush(self) -> None:
        """Deliver what was recorded. Serialised, so events reach listeners in the order
        they happened, whichever thread recorded them."""
        if not (self.events or self.hooks or self._released):
            # Nothing can be told (read without the lock: whoever records an event or a
            # hook flushes after it; events held back wait for a release, which flushes).
            return
        with self._order:
            with self._lock:
                self._released = False
                if self.holding or self._pending:
                    pending = self._pending
                    pending.extend(self.events)
                    events = []
                    while pending:
                        event = pending[0]
                        if (
                            event.task_run is not None
                            and id(event.task_run) in self.holding
                            and event.state in FINISHED
                        ):
                            break
                        events.append(pending.popleft())
                    self.events = []
                else:
                    events, self.events = self.events, []
                hooks, self.hooks = self.hooks, []
            for event in events:
                self._bus.emit(event)
            for hook, args in hooks:
                call_hook(hook, *args)


def call_hook(hook: Hook, *args: Any) -> None:
    """Call a user's hook; an error in it is logged and changes nothing else."""
    try:
        hook(*args)
    except Exception:
        name = getattr(hook, "__qualname__", repr(hook))
        log.exception("nbflow: hook '%s' raised; the run's outcome is unchanged", name)
