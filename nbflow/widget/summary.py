"""What the widget shows of a run, read through the public ``FlowRun``/``TaskRun`` API.

A node's summary is small and fixed-size (a mapped task's children are counted, not
listed), so the synced state grows with the number of nodes, never with events.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nbflow.palette import COLOURS, ICONS
from nbflow.state import NOT_OK, State

if TYPE_CHECKING:
    from nbflow.engine.records import TaskRun
    from nbflow.engine.run import FlowRun

CHILDREN_PAGE = 50
MAX_LOG_LINES = 400


def palette() -> dict[str, dict[str, str]]:
    """Each state's colour, icon and label, from ``nbflow.palette`` (the one source).

    >>> palette()["failed"]
    {'colour': '#ff7b7b', 'icon': '✗', 'label': 'failed'}
    """
    return {
        s.value: {"colour": COLOURS[s], "icon": ICONS[s], "label": s.value.replace("_", " ")}
        for s in State
    }


def node_summary(task_run: TaskRun) -> dict[str, Any]:
    """``state``, ``attempts``, ``retries``, ``duration``, ``cached`` and, for a mapped
    task, ``done``/``total`` children and ``breakdown`` (children per state).

    >>> from nbflow import Flow, task
    >>> @task(cache=False)
    ... def inc(x):
    ...     return x + 1
    >>> with Flow("summary-doc") as flow:
    ...     xs = inc.map([1, 2])
    >>> summary = node_summary(flow.run(show=False)[xs])
    >>> summary["state"], summary["done"], summary["total"], summary["breakdown"]
    ('success', 2, 2, {'success': 2})
    """
    out: dict[str, Any] = {
        "state": task_run.state.value,
        "attempts": task_run.attempts,
        "retries": task_run.task.retries,
        "duration": _duration(task_run),
        "cached": task_run.cached,
    }
    children = task_run.children
    if children is not None:
        breakdown: dict[str, int] = {}
        for child in children:
            value = child.state.value
            breakdown[value] = breakdown.get(value, 0) + 1
        out["total"] = len(children)
        out["done"] = sum(n for s, n in breakdown.items() if State(s).is_finished)
        out["breakdown"] = breakdown
        out["cached"] = bool(children) and all(c.cached for c in children)
    return out


def _duration(task_run: TaskRun) -> float | None:
    if task_run.start is None:
        return None
    end = task_run.end if task_run.end is not None else time.time()
    return round(end - task_run.start, 3)


def header(run: FlowRun | None, flow_name: str, finished: bool = False) -> dict[str, Any]:
    """The run's name, state, counts per state, elapsed time and which buttons apply
    (``finished``: the run's last event was seen, although ``run.done`` may lag)."""
    if run is None:
        return {"flow": flow_name, "state": "pending", "counts": {}, "elapsed": 0.0}
    done = finished or run.done
    counts = run.counts()
    failed = any(State(s) in NOT_OK for s in counts)
    return {
        "flow": flow_name,
        "run_id": run.id,
        "state": run.state.value,
        "counts": counts,
        "elapsed": round(run.duration or 0.0, 3),
        "done": done,
        "background": run.background,
        "can_retry": done and failed,
        "can_cancel": not done and run.background,
    }


def detail(run: FlowRun, node_id: str, child: int | None, page: int) -> dict[str, Any]:
    """The panel of a selected node (or of one child of a mapped node): logs,
    traceback, attempts, reason and, for a mapped node, one page of its children."""
    parent = run[node_id]
    task_run = parent
    if child is not None and parent.children is not None and 0 <= child < len(parent.children):
        task_run = parent.children[child]
    else:
        child = None
    # Printed lines read as printed; logger records keep their time and level.
    logs = [r.message if getattr(r, "printed", False) else str(r) for r in task_run.logs]
    out: dict[str, Any] = {
        "node": node_id,
        "child": child,
        "name": task_run.name,
        **node_summary(task_run),
        "reason": task_run.reason,
        "can_resume": task_run.state is State.PAUSED,  # the Resume button
        "error": None if task_run.error is None else _error_text(task_run.error),
        "traceback": task_run.traceback,
        "logs": logs[-MAX_LOG_LINES:],
        "logs_dropped": max(0, len(logs) - MAX_LOG_LINES),
        "history": [
            {
                "number": a.number,
                "state": a.state.value,
                "duration": round(a.duration, 3),
                "error": None if a.error is None else _error_text(a.error),
            }
            for a in task_run.history
        ],
    }
    if child is not None:
        out["page"] = child // CHILDREN_PAGE  # of the parent's children: Back returns there
    elif parent.children is not None:
        pages = max(1, -(-len(parent.children) // CHILDREN_PAGE))
        page = min(max(page, 0), pages - 1)
        first = page * CHILDREN_PAGE
        out["page"], out["pages"] = page, pages
        out["children"] = [
            {
                "index": first + i,
                "name": c.name,
                "state": c.state.value,
                "attempts": c.attempts,
                "duration": _duration(c),
                "cached": c.cached,
            }
            for i, c in enumerate(parent.children[first : first + CHILDREN_PAGE])
        ]
    return out


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
