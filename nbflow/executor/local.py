"""Executors in the scheduler's own process: sequential and threads."""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from typing import Any

from nbflow.errors import TaskTimeoutError
from nbflow.executor.worker import Attempt, Outcome, Promise, execute, failure
from nbflow.logs import LogRecord
from nbflow.timer import Timer

log = logging.getLogger("nbflow")


def check_max_workers(max_workers: object) -> None:
    """Refuse a ``max_workers`` that is not None or an int >= 1."""
    if max_workers is not None and (
        isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
    ):
        raise ValueError(f"Expected max_workers to be an int >= 1, but got {max_workers!r}.")


def _resolve(future: Promise, outcome: Outcome) -> bool:
    return future.set_result(outcome)


class SequentialExecutor:
    """Runs each attempt in the calling thread, one at a time.

    Timeouts: in the main thread an attempt is interrupted with ``SIGALRM`` (this
    stops Python code and sleeps, not a C call that never returns to Python). In
    any other thread it cannot be interrupted: it runs to its end and is then
    marked ``timed_out`` if it overran, with its result discarded.
    """

    name = "sequential"
    inline = True

    def submit(self, attempt: Attempt) -> Promise:
        future = Promise()
        future.set_result(self.run(attempt))
        return future

    def run(self, attempt: Attempt) -> Outcome:
        """Run ``attempt`` here and now: its outcome (what ``submit``'s future holds)."""
        if attempt.timeout is None:
            outcome = execute(attempt)
        elif threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            outcome = _execute_with_alarm(attempt, attempt.timeout)
        else:
            outcome = execute(attempt)
            if outcome.end - outcome.start > attempt.timeout:
                outcome = failure(
                    TaskTimeoutError(
                        f"Task '{attempt.label}' ran {outcome.end - outcome.start:.2f}s, over "
                        f"its timeout of {attempt.timeout:g}s. The sequential executor cannot "
                        "interrupt a task outside the main thread, so it ran to its end and "
                        "its result was discarded."
                    ),
                    outcome.start,
                    timed_out=True,
                )
        return outcome

    def shutdown(self, cancel: bool = False) -> None:
        pass


def sequential_executor(max_workers: int | None = None) -> SequentialExecutor:
    """The executor registered as "sequential" (one at a time: ``max_workers`` is moot)."""
    return SequentialExecutor()


def _execute_with_alarm(attempt: Attempt, timeout: float) -> Outcome:
    def on_alarm(signum: int, frame: Any) -> None:
        raise TaskTimeoutError(f"Task '{attempt.label}' timed out after {timeout:g}s.")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    outer, _ = signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        outcome = execute(attempt)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer > 0:  # someone else's alarm (e.g. a test timeout) was armed: re-arm it
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3))
    if isinstance(outcome.error, TaskTimeoutError):
        outcome.timed_out = True
    return outcome


_STOP = None
_PARK: Any = object()  # the pool shut down: wait for the next one, warm

# Threads of pools that were shut down, waiting for a new pool (like loky's reusable
# executor): a run does not start threads of its own, and a thread keeps its malloc
# arena, so a large result does not pay its page faults again in every run.
_parked: list[_Worker] = []
_parked_lock = threading.Lock()
_parked_changed = threading.Condition(_parked_lock)
_MAX_PARKED = 32
_PARKED_FOR = 300.0  # seconds an unused thread waits before it ends


def _adopt(pool: ThreadExecutor) -> _Worker | None:
    """A parked thread, now working for ``pool`` (None if there is none)."""
    with _parked_lock:
        if not _parked:
            return None
        worker = _parked.pop()
    worker.inbox.put(pool)
    return worker


class _Worker(threading.Thread):
    def __init__(self, pool: ThreadExecutor, number: int) -> None:
        super().__init__(name=f"nbflow-worker-{number}", daemon=True)
        self.pool = pool
        self.capturing = False
        self.slot: tuple[Attempt, Promise] | None = None
        self.abandoned = False
        self.inbox: queue.SimpleQueue[ThreadExecutor] = queue.SimpleQueue()

    def run(self) -> None:
        while self._serve():
            if not self._park():
                return

    def _park(self) -> bool:
        """Wait for a new pool; False when none came in time (the thread then ends)."""
        with _parked_lock:
            if len(_parked) >= _MAX_PARKED:
                return False
            _parked.append(self)
            _parked_changed.notify_all()
        try:
            self.pool = self.inbox.get(timeout=_PARKED_FOR)
        except queue.Empty:
            with _parked_lock:
                if self in _parked:
                    _parked.remove(self)
                    return False
            self.pool = self.inbox.get()  # adopted just now
        return True

    def _serve(self) -> bool:
        """Run the pool's attempts until it stops (False) or parks its threads (True)."""
        pool = self.pool
        get = pool._queue.get
        while True:
            item = self.slot
            if item is None:
                item = get()
                if item is _STOP:
                    return False
                if item is _PARK:
                    return True
            self.slot = None
            attempt, future = item
            if future.done():  # cancelled while it waited
                continue
            if attempt.timeout is not None:
                pool._watch(self, attempt, future)
            outcome = execute(attempt)
            if self.abandoned:
                # Timed out earlier: the run moved on; this thread was replaced.
                log.warning(
                    "Task '%s' finished %.1fs after its timeout; its result was discarded.",
                    attempt.label,
                    time.time() - outcome.start - (attempt.timeout or 0),
                )
                return False
            # Completing the future runs the scheduler's callback in this thread; the
            # first attempt it submits lands in self.slot and runs next, right here.
            self.capturing = True
            _resolve(future, outcome)
            self.capturing = False


class ThreadExecutor:
    """Runs attempts on a pool of threads in this process.

    A thread that completes an attempt runs the next ready attempt itself when the
    scheduler submits one from its callback, so a chain of tasks does not hop
    between threads. A timed-out attempt cannot be stopped (Python threads cannot be
    killed): the run moves on, a warning says so, and a fresh thread replaces it.

    >>> ThreadExecutor(max_workers=4).max_workers
    4
    """

    name = "threads"
    inline = False

    def __init__(self, max_workers: int | None = None) -> None:
        check_max_workers(max_workers)
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._spawned = 0
        self._timer: Timer | None = None

    def __repr__(self) -> str:
        return f"ThreadExecutor(max_workers={self.max_workers})"

    def submit(self, attempt: Attempt) -> Promise:
        future = Promise()
        me = threading.current_thread()
        if isinstance(me, _Worker) and me.pool is self and me.capturing and me.slot is None:
            me.slot = (attempt, future)
            return future
        self._queue.put((attempt, future))
        if len(self._workers) < self.max_workers:
            self._spawn()
        return future

    def _spawn(self) -> None:
        with self._lock:
            if len(self._workers) >= self.max_workers:
                return
            worker = _adopt(self)
            if worker is not None:
                self._workers.append(worker)
                return
            self._spawned += 1
            worker = _Worker(self, self._spawned)
            self._workers.append(worker)
        worker.start()

    def _watch(self, worker: _Worker, attempt: Attempt, future: Promise) -> None:
        if self._timer is None:
            with self._lock:
                if self._timer is None:
                    self._timer = Timer("threads")
        assert attempt.timeout is not None
        started = time.time()

        def expire() -> None:
            if future.done():
                return
            message = (
                f"Task '{attempt.label}' timed out after {attempt.timeout:g}s. Its thread "
                "could not be stopped (Python threads cannot be killed) and keeps running "
                "in the background; its result will be discarded. Use "
                "executor='processes' to stop runaway tasks."
            )
            outcome = failure(TaskTimeoutError(message), started, timed_out=True)
            outcome.logs = [LogRecord(time.time(), "WARNING", message)]
            if _resolve(future, outcome):
                log.warning(message)
                worker.abandoned = True
                with self._lock:
                    if worker in self._workers:
                        self._workers.remove(worker)
                self._spawn()

        self._timer.call_at(time.monotonic() + attempt.timeout, expire)

    def shutdown(self, cancel: bool = False) -> None:
        """Let the threads go (they finish their current attempt, then wait, warm, for
        the next pool); the pool can be reused."""
        with self._lock:
            workers, self._workers = self._workers, []
        if cancel:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP and item is not _PARK:
                    item[1].cancel()
        for _ in workers:
            self._queue.put(_PARK)
        if not cancel:
            # Idle threads park at once: wait (briefly) so the next run finds them.
            deadline = time.monotonic() + 0.2
            with _parked_changed:
                while not all(w in _parked or not w.is_alive() for w in workers):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    _parked_changed.wait(left)
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
