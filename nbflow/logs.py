"""Per-task log capture: ``get_logger()`` records and ``print`` output, per thread.

Capture is per thread, not a global redirect: ``sys.stdout`` is replaced once by a
router that sends the writes of a capturing thread to that thread's buffer and every
other write to the stream it replaced.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

TASK_LOGGER = "nbflow.task"


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One captured log line of a task run.

    >>> str(LogRecord(time=0.0, level="INFO", message="hello"))[-11:]
    ' INFO hello'
    """

    time: float
    level: str
    message: str
    # A line the task printed (log_prints), not a logger record: shown as printed.
    printed: bool = False

    def __str__(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        return f"{stamp}.{int(self.time % 1 * 1000):03d} {self.level} {self.message}"


class Capture:
    """The records of one attempt, filled by its thread."""

    __slots__ = ("_partial", "name", "prints", "records", "tee")

    def __init__(self, name: str, prints: bool, tee: bool = False) -> None:
        self.name = name
        self.prints = prints
        self.tee = tee
        self.records: list[LogRecord] = []
        self._partial = ""

    def write(self, text: str) -> None:
        text = self._partial + text
        *lines, self._partial = text.split("\n")
        now = time.time()
        self.records.extend(LogRecord(now, "INFO", line, printed=True) for line in lines)

    def close(self) -> None:
        if self._partial:
            self.records.append(LogRecord(time.time(), "INFO", self._partial, printed=True))
            self._partial = ""


_local = threading.local()
_install_lock = threading.Lock()


def current_capture() -> Capture | None:
    """The capture of the task attempt running in this thread, if any."""
    return getattr(_local, "capture", None)


class _StdoutRouter(io.TextIOBase):
    """Stands in for ``sys.stdout``: a capturing thread's writes go to its buffer,
    everyone else's to the stream it replaced. Installed once and left in place."""

    def __init__(self, target: TextIO) -> None:
        self.target = target

    def write(self, s: str) -> int:
        cap: Capture | None = getattr(_local, "capture", None)
        if cap is None or not cap.prints:
            return self.target.write(s)
        cap.write(s)
        if cap.tee:
            self.target.write(s)
        return len(s)

    def flush(self) -> None:
        self.target.flush()

    def close(self) -> None:
        pass  # never close the stream it stands in for

    @property
    def closed(self) -> bool:
        return bool(getattr(self.target, "closed", False))

    def fileno(self) -> int:
        return self.target.fileno()

    def isatty(self) -> bool:
        return self.target.isatty()

    def __getattr__(self, name: str) -> Any:
        if name == "target":  # during interpreter shutdown the instance may be cleared
            raise AttributeError(name)
        return getattr(self.target, name)


def _ensure_router() -> None:
    # Checked at every capture: whoever replaced sys.stdout since (a notebook's
    # %%capture, redirect_stdout, pytest) gets wrapped in turn.
    if not isinstance(sys.stdout, _StdoutRouter):
        with _install_lock:
            if not isinstance(sys.stdout, _StdoutRouter):
                sys.stdout = _StdoutRouter(sys.stdout)


def begin(name: str, prints: bool, tee: bool = False) -> tuple[Capture, Capture | None]:
    """Start capturing this thread's records; pass the result to ``end``."""
    cap = Capture(name, prints, tee)
    previous = getattr(_local, "capture", None)
    if prints and type(sys.stdout) is not _StdoutRouter:
        _ensure_router()
    _local.capture = cap
    return cap, previous


def push(cap: Capture) -> Capture | None:
    """Make ``cap`` this thread's capture (a ``Capture`` subclass, e.g. a cell's
    output); returns the previous one, for ``end``."""
    previous = getattr(_local, "capture", None)
    if cap.prints and type(sys.stdout) is not _StdoutRouter:
        _ensure_router()
    _local.capture = cap
    return previous


def end(cap: Capture, previous: Capture | None) -> None:
    """Stop the capture started by ``begin``."""
    _local.capture = previous
    cap.close()


@contextmanager
def capture(name: str, prints: bool, tee: bool = False) -> Iterator[Capture]:
    """Capture this thread's ``get_logger()`` records (and prints if ``prints``)."""
    cap, previous = begin(name, prints, tee)
    try:
        yield cap
    finally:
        end(cap, previous)


class _TaskLogHandler(logging.Handler):
    """Adds the records of ``nbflow.graph.task`` loggers to the current attempt's capture."""

    def emit(self, record: logging.LogRecord) -> None:
        cap: Capture | None = getattr(_local, "capture", None)
        if cap is None:
            return
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        cap.records.append(LogRecord(record.created, record.levelname, message))


_handler = _TaskLogHandler()


def _task_root_logger() -> logging.Logger:
    root = logging.getLogger(TASK_LOGGER)
    if _handler not in root.handlers:
        root.addHandler(_handler)
        if root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
    return root


def get_logger() -> logging.Logger:
    """The logger to use inside a task: its records are kept with the task run.

    Records also propagate to normal ``logging`` (logger ``nbflow.task.<task name>``).

    >>> from nbflow import task, get_logger
    >>> @task(cache=False)
    ... def hello():
    ...     get_logger().info("hello from a task")
    ...     return 1
    >>> hello()
    1
    """
    root = _task_root_logger()
    cap = current_capture()
    if cap is None:
        return root
    return root.getChild(cap.name)
