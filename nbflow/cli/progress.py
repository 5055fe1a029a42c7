"""Progress of a run in a terminal: a live ``rich`` table, or plain lines when not a TTY.

A ``Board`` holds one row per task (a mapped task is one row with n/N children done),
fed either by a run's events (a Python file run in this process) or by rows of the run
history (a notebook whose kernel records its runs). Feeding never writes to the
terminal: the command's main loop calls ``Board.drain()`` (plain lines) or lets the
live view redraw about ten times a second, so the scheduler's threads never wait on
the terminal.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbflow.events import TASK_STATE, Event
from nbflow.palette import ICONS, TERMINAL
from nbflow.state import BLOCKED, ERRORED, FAILED_STATES, NOT_RUN, State

if TYPE_CHECKING:
    from rich.console import RenderableType

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TAIL_LINES = 6


def clean(text: str) -> str:
    """One line of text with no control characters (no colours, no carriage returns).

    >>> clean("a\\tb\\x1b[31mc")
    'a b [31mc'
    """
    return _CONTROL.sub(" ", text)


def error_tail(error: str | None, traceback: str | None, lines: int = _TAIL_LINES) -> list[str]:
    """The last lines of a task's traceback (or its error message), cleaned."""
    text = traceback or error or ""
    kept = [clean(line.rstrip()) for line in text.strip().splitlines() if line.strip()]
    return kept[-lines:]


@dataclass
class Row:
    """What the view shows of one task: state, attempts, duration, children done."""

    name: str
    state: State = State.PENDING
    attempts: int = 0
    start: float | None = None
    end: float | None = None
    cached: bool = False
    total: int | None = None  # a mapped task: how many children
    children: dict[int, State] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    reason: str | None = None
    changed: float = 0.0

    @property
    def done(self) -> int:
        return sum(1 for s in self.children.values() if s.is_finished)

    def duration(self, now: float) -> float | None:
        if self.start is None:
            return None
        return (self.end if self.end is not None else now) - self.start


class Board:
    """The rows of a run (or of the runs of one notebook execution), thread-safe.

    >>> board = Board()
    >>> board.update("load", State.SUCCESS, attempts=1, start=0.0, end=0.5)
    >>> board.update("inc[0]", State.FAILED, attempts=2, error="ValueError: bad")
    >>> board.counts()
    {'success': 1, 'failed': 1}
    >>> [line.split(" ", 1)[1] for line in board.drain()]
    ['success    load (0.50s)', 'failed     inc[0] after 2 attempts: ValueError: bad']
    >>> [f.name for f in board.failed()]
    ['inc[0]']
    """

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.rows: dict[str, Row] = {}
        self.units: dict[str, Row] = {}  # what counts: plain tasks and mapped children
        self.note = ""  # e.g. which notebook cell is running
        self.started = time.time()
        self._lines: list[str] = []
        self._lock = threading.Lock()

    # -- feeding ----------------------------------------------------------------
    def update(
        self,
        name: str,
        state: State,
        *,
        attempts: int = 0,
        start: float | None = None,
        end: float | None = None,
        cached: bool = False,
        total: int | None = None,
        error: str | None = None,
        traceback: str | None = None,
        reason: str | None = None,
        mapped: bool = False,
    ) -> None:
        """A task (``name``), a mapped child (``name[i]``) or a mapped parent changed."""
        now = time.time()
        parent, index = _split_child(name)
        with self._lock:
            if mapped or total is not None:
                row = self.rows.setdefault(name, Row(name))
                row.total = total if total is not None else row.total
                if row.total is None and state.is_finished:
                    row.total = len(row.children)  # every child has ended by now
                row.state, row.end, row.changed = state, end, now
                row.start = start if start is not None else row.start
                row.reason = reason or row.reason
                if state.is_finished and state is not State.SUCCESS:
                    self._line(now, state, name, reason or "")
                return
            unit = self.units.setdefault(name, Row(name))
            unit.state, unit.attempts, unit.cached = state, attempts, cached
            unit.end, unit.changed = end, now
            unit.start = start if start is not None else unit.start
            unit.error, unit.traceback, unit.reason = error, traceback, reason
            if parent is not None and index is not None:
                row = self.rows.setdefault(parent, Row(parent, State.RUNNING))
                row.children[index] = state
                if row.start is None or (start is not None and start < row.start):
                    row.start = start
                row.attempts = max(row.attempts, attempts)
                row.changed = now
                if not row.state.is_finished:
                    row.state = State.RUNNING
            else:
                self.rows[name] = unit
            if state is not State.PENDING:
                self._line(now, state, name, _detail(unit))

    def expect(self, names: list[str]) -> None:
        """Rows for tasks known to come (shown pending until they report); they do not
        count until then, so a task that never runs changes no count."""
        with self._lock:
            for name in names:
                self.rows.setdefault(name, Row(name))

    def on_event(self, event: Event) -> None:
        """A run's event listener (``flow.run(listeners=[board.on_event])``)."""
        if event.kind != TASK_STATE:
            return
        tr = event.task_run
        error = None if tr.error is None else f"{type(tr.error).__name__}: {tr.error}"
        if tr.children is not None:
            self.update(
                tr.name,
                event.state,
                start=tr.start,
                end=tr.end,
                total=len(tr.children),
                reason=tr.reason,
            )
            return
        self.update(
            tr.name,
            event.state,
            attempts=tr.attempts,
            start=tr.start,
            end=tr.end if event.state.is_finished else None,
            cached=bool(tr.cached),
            error=error,
            traceback=tr.traceback,
            reason=tr.reason,
        )

    def on_history_row(self, row: dict[str, Any]) -> None:
        """A finished task row of the run history (what another process recorded).

        Each task cell execution is a run that also reuses its upstream cells: a task
        already computed or reused during this command keeps its state then."""
        seen = self.units.get(row["name"]) or self.rows.get(row["name"])
        if seen is not None and seen.state.is_successful and row["state"] == "cached":
            return
        error = row["error"]
        if error is not None and row["error_type"]:
            error = f"{row['error_type']}: {error}"
        traceback = row["traceback"]
        if seen is not None and seen.state.is_failed and State(row["state"]).is_failed:
            # The same failure reported again by a later cell that needed it: the first
            # report has the task's own error and traceback.
            error, traceback = seen.error or error, seen.traceback or traceback
        if row["mapped"]:
            self.update(
                row["name"], State(row["state"]), start=row["start"], end=row["end"], mapped=True
            )
            return
        self.update(
            row["name"],
            State(row["state"]),
            attempts=row["attempts"],
            start=row["start"],
            end=row["end"],
            cached=bool(row["cached"]),
            error=error,
            traceback=traceback,
            reason=row["reason"],
        )

    def _line(self, now: float, state: State, name: str, detail: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(now))
        self._lines.append(clean(f"{stamp} {state.value:<10} {name}{detail}"))

    def say(self, text: str) -> None:
        """A line of its own in the plain output (e.g. a notebook cell that raised)."""
        with self._lock:
            stamp = time.strftime("%H:%M:%S")
            self._lines.append(clean(f"{stamp} {text}"))

    # -- reading ----------------------------------------------------------------
    def drain(self) -> list[str]:
        """The plain lines added since the last call."""
        with self._lock:
            lines, self._lines = self._lines, []
        return lines

    def counts(self) -> dict[str, int]:
        """Task runs (mapped children counted one by one) per state."""
        with self._lock:
            out: dict[str, int] = {}
            for unit in self.units.values():
                out[unit.state.value] = out.get(unit.state.value, 0) + 1
            return out

    def failed(self) -> list[Row]:
        """Task runs that failed or timed out (not those that only did not run)."""
        with self._lock:
            return [u for u in self.units.values() if u.state in ERRORED]

    def blocked(self) -> list[Row]:
        """Task runs that did not run because an upstream failed, or were cancelled."""
        with self._lock:
            return [u for u in self.units.values() if u.state in BLOCKED]

    def ok(self) -> bool:
        with self._lock:
            return all(u.state.is_ok for u in self.units.values())

    def render(self, max_rows: int = 30) -> RenderableType:
        """The live view: a rich table of the rows most worth seeing, and the counts."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = time.time()
        with self._lock:
            rows = list(self.rows.values())
        if len(rows) > max_rows:
            # What moves or went wrong first, then what changed last.
            def rank(r: Row) -> tuple[int, float]:
                urgent = not r.state.is_finished or r.state in FAILED_STATES
                return (0 if urgent else 1, -r.changed)

            hidden = len(rows) - max_rows
            rows = sorted(rows, key=rank)[:max_rows]
        else:
            hidden = 0
        table = Table(title=self.title or None, expand=False, show_edge=False, pad_edge=False)
        table.add_column("", width=1)
        table.add_column("task", overflow="fold")
        table.add_column("state")
        table.add_column("attempts", justify="right")
        table.add_column("done", justify="right")
        table.add_column("time", justify="right")
        for r in rows:
            style = TERMINAL[r.state]
            took = r.duration(now)
            table.add_row(
                Text(ICONS[r.state], style=style),
                r.name,
                Text(r.state.value, style=style),
                str(r.attempts) if r.attempts else "",
                f"{r.done}/{r.total if r.total is not None else '?'}" if r.children else "",
                f"{took:.1f}s" if took is not None else "",
            )
        counts = self.counts()
        summary = Text(f"{time.time() - self.started:.1f}s  ")
        for state in State:
            if counts.get(state.value):
                summary.append(f"{counts[state.value]} {state.value}  ", style=TERMINAL[state])
        parts: list[RenderableType] = [table]
        if hidden:
            parts.append(Text(f"… and {hidden} more tasks", style="grey50"))
        if self.note:
            parts.append(Text(self.note, style="grey62"))
        parts.append(summary)
        return Group(*parts)


def _split_child(name: str) -> tuple[str | None, int | None]:
    if name.endswith("]") and "[" in name:
        base, _, index = name[:-1].rpartition("[")
        if index.isdigit():
            return base, int(index)
    return None, None


def _detail(unit: Row) -> str:
    state = unit.state
    if state is State.CACHED:
        return ""
    parts = []
    if unit.attempts > 1 or state is State.RETRYING:
        parts.append(f" after {unit.attempts} attempt{'s' if unit.attempts != 1 else ''}")
    took = unit.duration(time.time()) if state.is_finished else None
    if took is not None and state is State.SUCCESS:
        parts.append(f" ({took:.2f}s)")
    if (state in ERRORED or state is State.RETRYING) and unit.error:
        parts.append(": " + unit.error.strip().splitlines()[0])
    elif state in NOT_RUN and unit.reason:
        parts.append(f": {unit.reason}")
    return "".join(parts)


def summary(board: Board, title: str, took: float) -> list[str]:
    """The lines printed at the end: counts, then each failed task with its error."""
    counts = board.counts()
    text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no tasks"
    lines = [clean(f"{title}: {text} in {took:.2f}s")]
    failed = board.failed()
    if failed:
        lines.append("Failed tasks:")
        for row in failed:
            how = "timed out" if row.state is State.TIMED_OUT else "failed"
            tries = f" after {row.attempts} attempts" if row.attempts > 1 else ""
            lines.append(clean(f"  {row.name} {how}{tries}:"))
            lines.extend("    " + line for line in error_tail(row.error, row.traceback))
    blocked = board.blocked()
    if blocked:
        names = ", ".join(r.name for r in blocked)
        lines.append(clean(f"Did not run (upstream failed or cancelled): {names}"))
    return lines


class Live:
    """The live view in a terminal; a context manager (rich's ``Live``, 10 Hz)."""

    def __init__(self, board: Board, console: Any) -> None:
        from rich.live import Live as RichLive

        self.board = board
        self.console = console
        self._live = RichLive(
            get_renderable=self._render,
            console=console,
            refresh_per_second=10,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def _render(self) -> RenderableType:
        height = self.console.size.height
        return self.board.render(max_rows=max(5, height - 8))

    def __enter__(self) -> Live:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.refresh()
        self._live.__exit__(None, None, None)
