"""Past runs: ``runs()``, ``load_run()``, and the cache's ``cache_info()``/``clear_cache()``."""

from __future__ import annotations

import json
import os
from functools import partial
from typing import TYPE_CHECKING, Any

from nbflow.engine.display import start_shown
from nbflow.engine.records import UNLOADED, AttemptRecord, TaskRun
from nbflow.engine.run import FlowRun, start_run
from nbflow.errors import RunError
from nbflow.graph.flow import Flow, registered_flow
from nbflow.logs import LogRecord
from nbflow.state import State
from nbflow.store.base import open_store
from nbflow.store.history import History, open_history
from nbflow.store.home import HISTORY_FILE, UnsafeStoreError, home_path

if TYPE_CHECKING:
    import pandas as pd


class RecordedError(Exception):
    """An error as recorded in the history (its type name and message)."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


def _history(path: str | os.PathLike[str] | None) -> History:
    home = home_path(path)
    if not (home / HISTORY_FILE).exists():
        raise RunError(
            f"There is no nbflow run history in '{home}'. Run a flow there first, or point "
            "to the right store with path=... (or NBFLOW_HOME)."
        )
    open_store(home)  # checks ownership and permissions
    return open_history(home)


def runs(path: str | os.PathLike[str] | None = None, limit: int | None = None) -> pd.DataFrame:
    """A DataFrame of past runs, newest first (id, flow, state, start, end, counts)."""
    import pandas as pd

    rows = _history(path).runs(limit)
    frame = pd.DataFrame(
        rows,
        columns=[
            "id",
            "flow",
            "start",
            "end",
            "state",
            "interrupted",
            "executor",
            "tasks",
            "failed",
        ],
    )
    frame["interrupted"] = frame["interrupted"].astype(bool)
    frame["duration"] = frame["end"] - frame["start"]
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], unit="s")
    return frame


class LoadedRun:
    """A run read back from the history (also after a kernel restart).

    ``retry()`` re-runs it: only tasks that did not succeed (failed, interrupted,
    cancelled, upstream failed) and their downstream execute; every other result
    comes from the store.
    """

    def __init__(self, history: History, run_id: str, home: Any) -> None:
        row, task_rows = history.load(run_id)
        self.id: str = row["id"]
        self.flow_name: str = row["flow"]
        self.start: float | None = row["start"]
        self.end: float | None = row["end"]
        self.interrupted = bool(row["interrupted"])
        self.state = State(row["state"]) if row["state"] != "running" else State.RUNNING
        self._home = home
        self._by_name: dict[str, TaskRun] = {}
        parents: dict[str, TaskRun] = {}
        for t in task_rows:
            tr = TaskRun(None, t["name"], t["map_index"])  # type: ignore[arg-type]
            tr.state = State(t["state"])
            tr.attempts = t["attempts"]
            if t["error"] is not None:
                tr.error = RecordedError(t["error_type"], t["error"])
            tr.traceback = t["traceback"]
            tr.logs = [LogRecord(*r) for r in json.loads(t["logs"])] if t["logs"] else []
            if t["history"]:
                tr.history = [
                    AttemptRecord(
                        n, s, e, State(st), None if err is None else RecordedError("", err)
                    )
                    for n, s, e, st, err in json.loads(t["history"])
                ]
            elif t["attempts"] == 1:
                tr.history = [AttemptRecord(1, t["start"], t["end"], State(t["state"]))]
            tr.start, tr.end, tr.key = t["start"], t["end"], t["key"]
            tr.cached = bool(t["cached"])
            tr.reason = t["reason"]
            tr._value = UNLOADED
            if t["mapped"]:
                tr.children = []
                parents[t["name"]] = tr
            self._by_name[tr.name] = tr
        for tr in self._by_name.values():
            if tr.map_index is not None:
                parent = parents.get(tr.name.rpartition("[")[0])
                if parent is not None and parent.children is not None:
                    parent.children.append(tr)

    @property
    def task_runs(self) -> list[TaskRun]:
        return [t for t in self._by_name.values() if t.children is None]

    @property
    def failed(self) -> list[TaskRun]:
        return [t for t in self.task_runs if not t.state.is_ok]

    @property
    def ok(self) -> bool:
        return self.state is State.SUCCESS

    def __getitem__(self, name: str) -> TaskRun:
        try:
            return self._by_name[name]
        except KeyError:
            raise RunError(
                f"Run {self.id} of flow '{self.flow_name}' has no task '{name}'."
            ) from None

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "name": t.name,
                    "map_index": t.map_index,
                    "state": t.state.value,
                    "attempts": t.attempts,
                    "duration": t.duration,
                    "cached": t.cached,
                    "error": None if t.error is None else str(t.error),
                }
                for t in self.task_runs
            ]
        )

    def retry(self, flow: Flow | None = None, show: bool | None = None, **options: Any) -> FlowRun:
        """Run the flow again, executing only what did not succeed in this run. ``show``
        as in ``flow.run()``: in a notebook the new run's live widget is displayed."""
        if flow is None:
            flow = registered_flow(self.flow_name)
        if flow is None:
            raise RunError(
                f"No flow named '{self.flow_name}' is defined in this process. Run the cells "
                "or import the module that define it, or pass it: "
                f"load_run('{self.id}').retry(flow=...)."
            )
        options.setdefault("store", self._home)
        return start_shown(flow, show, partial(start_run, flow, prior=dict(self._by_name)), options)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for t in self.task_runs:
            counts[t.state.value] = counts.get(t.state.value, 0) + 1
        text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        extra = " (interrupted)" if self.interrupted else ""
        return f"<LoadedRun {self.id} '{self.flow_name}' {self.state.value}{extra}: {text}>"


def load_run(run_id: str = "latest", path: str | os.PathLike[str] | None = None) -> LoadedRun:
    """A past run from the history: ``"latest"``, a run id, or a unique prefix of one."""
    if not isinstance(run_id, str) or not run_id:
        raise RunError(f"Expected a run id or 'latest', but got {run_id!r}.")
    history = _history(path)
    found = history.resolve(run_id)
    if found is None:
        raise RunError(
            f"No run '{run_id}' in the history at '{home_path(path)}'. "
            "See nbflow.runs() for the runs recorded there."
        )
    return LoadedRun(history, found, home_path(path))


def cache_info(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Entries, bytes and entries per task of the result store."""
    return open_store(path).info()


def clear_cache(
    task: str | None = None,
    older_than: float | None = None,
    path: str | os.PathLike[str] | None = None,
) -> int:
    """Remove cached results (of one task, and/or older than ``older_than`` seconds)."""
    if older_than is not None and (
        isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or older_than < 0
    ):
        raise RunError(
            f"Expected older_than to be a number of seconds >= 0, but got {older_than!r}."
        )
    if task is None and older_than is None:
        try:
            store = open_store(path)
        except UnsafeStoreError:
            # Refused because others could write it: clearing all of it is the fix.
            from nbflow.store.file import reset_file_store

            return reset_file_store(path)
        return store.clear()
    return open_store(path).clear(task=task, older_than=older_than)
