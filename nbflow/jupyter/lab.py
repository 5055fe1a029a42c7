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

When a page connects to the kernel (opened, reloaded, reopened) the extension runs
``resend`` silently: the latest state of each of its task cells goes out on a new comm
(opened with ``{"type": "reset"}``), from this kernel's runs or, after a restart,
from the run history.
"""

from __future__ import annotations

import logging
import pathlib
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
        self._comm: Any = None
        self._deliver_lock = threading.Lock()
        self._pending: dict[str, Any] = {}  # cell id -> its task run
        self._results: dict[str, str] = {}  # cell id -> key of the result it shows
        self.shown: dict[str, dict[str, Any]] = {}  # cell id -> the last summary sent
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
        self.shown.update((c["cell_id"], c) for c in cells)
        try:
            self._deliver({"type": "cells", "cells": cells})
        except Exception:
            log.exception("nbflow could not send task states to JupyterLab")

    def reconnect(self, cells: list[dict[str, Any]]) -> None:
        """A page connected (or reloaded): open a new comm (a reloaded page does not
        know the old one) and send it ``cells``, the latest state of each task cell."""
        with self._deliver_lock:
            old, self._comm = self._comm, None
            if old is not None:
                try:
                    old.close()
                except Exception:
                    log.debug("nbflow: closing the old JupyterLab comm failed", exc_info=True)
        try:
            self._deliver({"type": "cells", "cells": cells}, opening={"type": "reset"})
        except Exception:
            log.exception("nbflow could not send task states to JupyterLab")

    def _deliver(self, message: dict[str, Any], opening: dict[str, Any] | None = None) -> None:
        """Send ``message``, on a comm opened first with ``opening`` if there is none
        (by default it keeps the badges the page shows: those restored on connect)."""
        with self._deliver_lock:
            if self._send is not None:
                if opening is not None:
                    self._send(opening)
                self._send(message)
            else:
                if self._comm is None:
                    from comm import create_comm

                    data = opening or {"type": "cells", "cells": []}
                    self._comm = create_comm(target_name=COMM_TARGET, data=data)
                self._comm.send(message)
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


def _row_summary(
    cell_id: str, row: dict[str, Any], children: list[dict[str, Any]]
) -> dict[str, Any]:
    """What a badge shows of a task run recorded in the history."""
    done = total = None
    if row["mapped"]:
        total = len(children)
        done = sum(1 for c in children if State(c["state"]).is_finished)
    start, end = row["start"], row["end"]
    return {
        "cell_id": cell_id,
        "task": row["name"],
        "state": row["state"],
        "attempts": row["attempts"],
        "retries": 0,
        "duration": round(end - start, 3) if start is not None and end is not None else None,
        "done": done,
        "total": total,
    }


def recorded(
    home: pathlib.Path, flow: str, names: dict[str, str], limit: int = 200
) -> list[dict[str, Any]]:
    """The latest recorded state of each cell of ``names`` (cell id -> task name) in the
    run history of the store at ``home`` (nothing when it has none)."""
    from nbflow.store.history import open_history
    from nbflow.store.home import HISTORY_FILE

    if not names or not (home / HISTORY_FILE).exists():
        return []
    wanted = {name: cell_id for cell_id, name in names.items()}
    history = open_history(home)
    found: dict[str, dict[str, Any]] = {}
    # A cell reused by a later cell's run is recorded there as "cached": its badge says
    # how that same result was made (as the live badges do), found in an older run.
    made: dict[str, str] = {}  # name -> key of a cached result whose making is sought
    for run in history.runs(limit):
        if run["flow"] != flow:
            continue
        rows = history.load(run["id"])[1]
        for row in rows:
            name = row["name"]
            if row["map_index"] is not None or name not in wanted:
                continue
            if name in found:
                if made.get(name) is None:
                    continue
                if row["key"] != made.pop(name) or row["state"] != State.SUCCESS.value:
                    continue
            elif row["state"] == State.CACHED.value and row["key"]:
                made[name] = row["key"]
            children = [c for c in rows if c["map_index"] is not None and c["node"] == name]
            found[name] = _row_summary(wanted[name], row, children)
        if len(found) == len(wanted) and not made:
            break  # older runs cannot change a cell's latest state
    return list(found.values())


def stored_names(home: pathlib.Path, flow: str) -> dict[str, str]:
    """Cell id -> task name of the task cells kept in the store at ``home`` for ``flow``."""
    from nbflow.store.cellstore import open_cells
    from nbflow.store.home import CELLS_FILE

    if not (home / CELLS_FILE).exists():
        return {}
    return {c.cell_id: c.name for c in open_cells(home).load(flow) if c.cell_id}


def latest(
    notebook: Any, ids: list[str], shown: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The badges of the cells ``ids`` of a ``NotebookFlow``: as last sent (``shown``),
    else from its runs in this kernel, else from the run history (after a restart)."""
    from nbflow.store.home import home_path

    out: list[dict[str, Any]] = []
    missing: dict[str, str] = {}
    home = home_path(notebook.home)
    stored: dict[str, str] | None = None
    for cell_id in ids:
        if shown and cell_id in shown:
            out.append(shown[cell_id])
            continue
        name = notebook.cell_ids.get(cell_id)
        if name is None:
            if stored is None:
                stored = stored_names(home, notebook.name)
            name = stored.get(cell_id)
        if name is None:
            continue
        status = notebook.status.get(name)
        if status is not None and status.task_run is not None:
            out.append(summary(cell_id, status.task_run))
        else:
            missing[cell_id] = name
    return out + recorded(home, notebook.name, missing)


def resend(shell: Any, encoded: str) -> None:
    """What the JupyterLab extension runs (silently) when a page connects to the kernel:
    send the latest state of the task cells ``encoded`` (base64 of a JSON list of cell
    ids) on a new comm, so badges come back after a page reload, or after reopening the
    notebook (from the run history). Loads nothing heavy when nbflow's magics are not
    loaded in this kernel."""
    import base64
    import json
    import sys

    ids = [str(i) for i in json.loads(base64.b64decode(encoded).decode("utf-8"))]
    magics_module = sys.modules.get("nbflow.jupyter.magics")
    magics = getattr(magics_module, "_loaded", {}).get(id(shell))
    if magics is not None and magics.channel is not None:
        channel = magics.channel
        channel.flush()
        channel.reconnect(latest(magics.notebook, ids, channel.shown))
        return
    from nbflow.cells.definitions import flow_name
    from nbflow.store.home import home_path

    home = home_path()
    flow = flow_name()
    names = {i: n for i, n in stored_names(home, flow).items() if i in set(ids)}
    cells = recorded(home, flow, names)
    if not cells:
        return
    from comm import create_comm

    comm = create_comm(target_name=COMM_TARGET, data={"type": "reset"})
    comm.send({"type": "cells", "cells": cells})
    comm.close()
