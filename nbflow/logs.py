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
        self.records.extend(LogRecord(now, "INFO", line) for line in lines)

    def close(self) -> None:
        if self._partial:
            self.records.append(LogRecord(time.time(), "INFO", self._partial))
            self._partial = ""


_local = threading.local()
_install_lock = threading.Lock()
_active = 0


def current_capture() -> Capture | None:
    """The capture of the task attempt running in this thread, if any."""
    return getattr(_local, "capture", None)


class _StdoutRouter(io.TextIOBase):
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

    def __getattr__(self, name: str) -> Any:
        if name == "target":  # during interpreter shutdown the instance may be cleared
            raise AttributeError(name)
        return getattr(self.target, name)


def begin(name: str, prints: bool, tee: bool = False) -> tuple[Capture, Capture | None]:
    """Start capturing this thread's records; pass the result to ``end``."""
    global _active
    cap = Capture(name, prints, tee)
    previous = getattr(_local, "capture", None)
    if prints:
        with _install_lock:
            if _active == 0 and not isinstance(sys.stdout, _StdoutRouter):
                sys.stdout = _StdoutRouter(sys.stdout)
            _active += 1
    _local.capture = cap
    return cap, previous


def end(cap: Capture, previous: Capture | None) -> None:
    """Stop the capture started by ``begin``."""
    global _active
    _local.capture = previous
    cap.close()
    if cap.prints:
        with _install_lock:
            _active -= 1
            if _active == 0 and isinstance(sys.stdout, _StdoutRouter):
                sys.stdout = sys.stdout.target


@contextmanager
def capture(name: str, prints: bool, tee: bool = False) -> Iterator[Capture]:
    """Capture this thread's ``get_logger()`` records (and prints if ``prints``)."""
    cap, previous = begin(name, prints, tee)
    try:
        yield cap
    finally:
        end(cap, previous)


class _TaskLogHandler(logging.Handler):
    """Adds the records of ``nbflow.task`` loggers to the current attempt's capture."""

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
