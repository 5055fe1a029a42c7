"""What a run remembers of each task run: plain records, filled by the scheduler."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from nbflow.state import State

if TYPE_CHECKING:
    from nbflow.graph.flow import Node
    from nbflow.graph.task import Task
    from nbflow.logs import LogRecord


class _Unloaded:
    def __repr__(self) -> str:
        return "<not loaded>"


UNLOADED: Any = _Unloaded()  # a recorded task run's value, not read from the store yet


class Lazy:
    """A cache hit's value, not read yet: ``get()`` reads it once, on first use, with
    the loader the scheduler gave (which computes it again if its entry has gone)."""

    __slots__ = ("_load", "_lock", "run")

    def __init__(self, run: TaskRun, load: Callable[[TaskRun], Any]) -> None:
        self.run = run
        self._load = load
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            run = self.run
            if run._value is self:
                run._value = self._load(run)
            return run._value

    def __repr__(self) -> str:
        return "<not read yet>"


class LazyItems:
    """The items of a cached list a mapped task iterates over, not read yet: its length
    is known (stored beside its entry), the items are read on first use."""

    __slots__ = ("_fetch", "_items", "_lock", "n", "run")

    def __init__(self, run: TaskRun, n: int, fetch: Callable[[Any], Any]) -> None:
        self.run = run
        self.n = n
        self._fetch = fetch
        self._items: list[Any] | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._items is not None

    def load(self) -> list[Any]:
        with self._lock:
            if self._items is None:
                self._items = list(self._fetch(self.run.value))
            return self._items

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        return self.load()[index]

    def __repr__(self) -> str:
        return f"<{self.n} items, not read yet>"


DEFERRED: Any = object()  # inputs built when the unit is submitted (it was no cache hit)


class AttemptRecord(NamedTuple):
    """One attempt of a task run (a named tuple)."""

    number: int
    start: float
    end: float
    state: State
    error: BaseException | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


class TaskRun:
    """The run of one task (or one mapped child) within a flow run.

    Fields: ``state``, ``attempts``, ``history`` (one ``AttemptRecord`` per attempt),
    ``error``, ``traceback``, ``logs``, ``start``, ``end``, ``duration``, ``cached``,
    ``key``, ``reason`` (why it was skipped or did not run), ``map_index`` and, for a
    mapped task, ``children``.
    """

    __slots__ = (
        "_inputs",
        "_loop",
        "_value",
        "_waiting",
        "attempts",
        "cached",
        "children",
        "end",
        "error",
        "history",
        "key",
        "logs",
        "map_index",
        "name",
        "node",
        "reason",
        "start",
        "state",
        "traceback",
    )

    def __init__(self, node: Node, name: str, map_index: int | None = None) -> None:
        self.node = node
        self.name = name
        self.map_index = map_index
        self.state = State.PENDING
        self.attempts = 0
        self.history: list[AttemptRecord] = []
        self.error: BaseException | None = None
        self.traceback: str | None = None
        self.logs: list[LogRecord] = []
        self.start: float | None = None
        self.end: float | None = None
        self.cached = False
        self.key: str | None = None
        self.reason: str | None = None
        self.children: list[TaskRun] | None = None
        self._value: Any = None
        self._waiting = 0
        self._inputs: Any = None
        # Where the next attempt of a task that raised LOOP goes on (Outcome.loop).
        self._loop: Any = None

    @property
    def task(self) -> Task[Any, Any]:
        """The task this is a run of."""
        return self.node.task

    @property
    def value(self) -> Any:
        """The value as the run holds it: None until it succeeds; for an executor that
        leaves values on its workers, a handle (``FlowRun.result`` fetches it). A cache
        hit's value is read from the store here, the first time it is asked for."""
        value = self._value
        if type(value) is Lazy:
            return value.get()
        return value

    @property
    def duration(self) -> float | None:
        """Seconds from the first attempt's start to the end, or None."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    @property
    def mapped(self) -> bool:
        """True for the parent run of a mapped task."""
        return self.children is not None

    def __repr__(self) -> str:
        extra = f", {self.attempts} attempts" if self.attempts > 1 else ""
        if self.children is not None:
            done = sum(c.state.is_finished for c in self.children)
            extra += f", {done}/{len(self.children)} children done"
        return f"<TaskRun '{self.name}' {self.state.value}{extra}>"
