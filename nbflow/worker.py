"""The worker side: run one attempt of one task and return its outcome.

This is all a worker (thread, process or Dask worker) does; deciding what the
outcome means (retry, fail, cache) happens in the scheduler's process.
"""

from __future__ import annotations

import time
import traceback as _tb
from _thread import allocate_lock as _allocate_lock
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from nbflow import logs
from nbflow.logs import LogRecord


class Attempt(NamedTuple):
    """What a worker needs to run one attempt: the function, its inputs and options.

    (A named tuple: immutable, and cheap to create once per attempt.)
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    task_name: str
    label: str
    number: int
    timeout: float | None = None
    log_prints: bool = True
    echo: bool = False
    # (store, key, expire) for executors that persist values where they were computed.
    cache: tuple[Any, str, float | None] | None = None


@dataclass(slots=True)
class Outcome:
    """What came of one attempt: a value or an error, its logs and its timings."""

    value: Any = None
    error: BaseException | None = None
    traceback: str | None = None
    logs: list[LogRecord] | None = None
    start: float = 0.0
    end: float = 0.0
    timed_out: bool = False
    # The executor wrote the value to the result store itself (a remote worker did).
    persisted: bool = False
    # A warning about that write, to repeat in the scheduler's process.
    warning: str | None = None
    # Runs of this attempt lost with their worker and run again by the executor's own
    # recomputation: (start, end, why) each; recorded as extra failed attempts.
    lost: list[tuple[float, float, str]] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Promise:
    """A minimal future for outcomes: ``add_done_callback``, ``set_result``, ``result``.

    ``concurrent.futures.Future`` carries a condition variable per future; the
    scheduler only needs callbacks, so this costs a third as much per task.
    """

    __slots__ = ("_callbacks", "_cancelled", "_done", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = _allocate_lock()
        self._callbacks: list[Callable[[Promise], Any]] = []
        self._done = False
        self._cancelled = False
        self._value: Any = None

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._cancelled

    def result(self) -> Any:
        if not self._done or self._cancelled:
            raise RuntimeError("the outcome is not available")
        return self._value

    def add_done_callback(self, fn: Callable[[Promise], Any]) -> None:
        with self._lock:
            if not self._done:
                self._callbacks.append(fn)
                return
        fn(self)

    def _complete(self, value: Any, cancelled: bool) -> bool:
        with self._lock:
            if self._done:
                return False
            self._value = value
            self._cancelled = cancelled
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)
        return True

    def set_result(self, value: Any) -> bool:
        """Complete with ``value``; False if it was already complete."""
        return self._complete(value, False)

    def cancel(self) -> bool:
        """Complete as cancelled; False if it was already complete."""
        return self._complete(None, True)


def format_user_traceback(exc: BaseException, skip: int = 1) -> str:
    """The traceback of ``exc`` without its first ``skip`` frames (nbflow's own)."""
    tb = exc.__traceback__
    for _ in range(skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    return "".join(_tb.format_exception(type(exc), exc, tb))


def execute(attempt: Attempt) -> Outcome:
    """Run one attempt, capturing its logs; never raises (but for KeyboardInterrupt)."""
    cap, previous = logs.begin(attempt.task_name, attempt.log_prints, attempt.echo)
    start = time.time()
    try:
        value = attempt.fn(*attempt.args, **attempt.kwargs)
    except (Exception, SystemExit) as exc:
        end = time.time()
        logs.end(cap, previous)
        return Outcome(
            error=exc,
            traceback=format_user_traceback(exc),
            logs=cap.records or None,
            start=start,
            end=end,
        )
    except BaseException:
        logs.end(cap, previous)
        raise
    end = time.time()
    logs.end(cap, previous)
    return Outcome(value=value, logs=cap.records or None, start=start, end=end)


def failure(error: BaseException, start: float, *, timed_out: bool = False) -> Outcome:
    """An outcome for an attempt that the executor ended (timeout, dead worker)."""
    now = time.time()
    return Outcome(
        error=error,
        traceback=f"{type(error).__name__}: {error}\n",
        start=start or now,
        end=now,
        timed_out=timed_out,
    )
