"""The kernel side of the JupyterLab extension: task states by cell, on one comm.

The extension (``labextension/``) registers the comm target ``nbflow``; this module
opens a comm to it and sends, for the notebook's own flow, one small summary per
``%%task`` cell whose task changed state::

    {"type": "cells", "cells": [{"cell_id": "…", "task": "load", "state": "running",
      "attempts": 1, "retries": 3, "duration": null, "done": null, "total": null}]}

Updates are coalesced per cell and sent at most ten times a second from a
background thread (the final state of a run always goes out at once), so a run's
speed does not depend on its display. Without the extension the comm is simply
not answered; nothing else changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from nbflow import events
from nbflow.events import RUN_FINISHED, TASK_STATE, Event
from nbflow.state import SUCCEEDED, State

log = logging.getLogger("nbflow")

COMM_TARGET = "nbflow"
INTERVAL = 0.1  # seconds between two messages at most ten a second

# cell_of(flow_name, task_name) -> the JupyterLab cell id that defines the task, or None
CellLookup = Callable[[str, str], "str | None"]


def summary(cell_id: str, task_run: Any) -> dict[str, Any]:
    """What a badge shows of one task run (for a mapped task: its children's progress)."""
    done = total = None
    if task_run.children is not None:
        total = len(task_run.children)
        done = sum(1 for c in task_run.children if c.state.is_finished)
    return {
        "cell_id": cell_id,
        "task": task_run.name,
        "state": task_run.state.value,
        "attempts": task_run.attempts,
        "retries": task_run.task.retries,
        "duration": task_run.duration if task_run.state.is_finished else None,
        "done": done,
        "total": total,
    }


class LabChannel:
    """Sends cell-level task states of notebook flows to JupyterLab.

    ``send`` is the function that delivers one message (a comm's ``send``); by
    default a comm to the ``nbflow`` target is opened on first use.
    """

    def __init__(self, cell_of: CellLookup, send: Callable[[dict[str, Any]], None] | None = None):
        self._cell_of = cell_of
        self._send = send
        self._pending: dict[str, Any] = {}  # cell id -> its task run
        self._results: dict[str, str] = {}  # cell id -> key of the result it shows
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._urgent = False
        self._closed = False
        self.messages = 0  # how many messages were sent (the benchmark and tests read it)
        self._thread = threading.Thread(target=self._loop, name="nbflow-lab", daemon=True)
        self._thread.start()
        self._unsubscribe = events.subscribe(self.on_event)

    def close(self) -> None:
        """Stop listening; what is pending is sent first."""
        self._unsubscribe()
        with self._lock:
            self._closed = True
            self._urgent = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def on_event(self, event: Event) -> None:
        if event.kind == RUN_FINISHED:
            with self._lock:
                if self._pending:
                    self._urgent = True
                    self._wake.notify()
            return
        if event.kind != TASK_STATE or event.run is None:
            return
        task_run = event.task_run
        if task_run.map_index is not None:  # a mapped child: its parent's badge shows it
            task_run = event.run[task_run.node]
        cell = self._cell_of(event.run.flow.name, event.run.flow.name_of(task_run.node))
        if cell is None:
            return
        state = task_run.state
        if state in SUCCEEDED and task_run.key is not None:
            # An upstream cell reused by a later cell's run comes back "cached": its
            # badge keeps saying how that same result was made.
            if state is State.CACHED and self._results.get(cell) == task_run.key:
                return
            self._results[cell] = task_run.key
        with self._lock:
            first = not self._pending
            self._pending[cell] = task_run
            if first:
                self._wake.notify()

    def flush(self) -> None:
        """Send what is pending now."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        cells = [summary(cell, tr) for cell, tr in batch.items()]
        try:
            self._deliver({"type": "cells", "cells": cells})
        except Exception:
            log.exception("nbflow could not send task states to JupyterLab")

    def _deliver(self, message: dict[str, Any]) -> None:
        if self._send is None:
            from comm import create_comm

            comm = create_comm(target_name=COMM_TARGET, data={"type": "reset"})
            self._send = lambda data: comm.send(data)
        self._send(message)
        self.messages += 1

    def _loop(self) -> None:
        last = 0.0
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed and not self._pending:
                    return
                deadline = last + INTERVAL
                while not (self._urgent or self._closed):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                self._urgent = False
            self.flush()
            last = time.monotonic()
