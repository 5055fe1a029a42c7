"""The Dask worker's side of an attempt: run it, persist its value there, report back.

A Dask task's result is the task's *value*, so it stays on the worker and flows to
downstream tasks as a Dask future. Everything else the scheduler needs (errors,
captured logs, timings) travels as two small worker events on the client's own
topic: one when the attempt starts, one when it ends. Nothing here imports
``distributed`` at module level: the scheduler's process imports this module
without needing a cluster.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

from nbflow.errors import SUCCESS, NbflowError, RemoteError, TaskTimeoutError
from nbflow.executor.worker import Attempt, Outcome, execute, unship

STORE_ID = "store-id"  # a file in the store naming it, so a worker can tell it is the same
REMOTE = "remote"  # the ident of a store workers reach over the network (a bucket)


class StoreRef(NamedTuple):
    """A result store as a worker sees it: its path, the id that proves it is the same
    store (same machine or a shared filesystem) and not a namesake, and the store
    pickled (as its path), unpickled only once the id matches."""

    path: str
    ident: str
    pickled: bytes


class Spec(NamedTuple):
    """What the worker needs besides the function and its inputs."""

    topic: str
    token: int
    task_name: str
    label: str
    number: int
    timeout: float | None
    log_prints: bool
    store: StoreRef | None = None
    key: str | None = None
    expire: float | None = None
    nout: int | None = None


class _InterruptedError(TaskTimeoutError):
    """Raised asynchronously in an attempt's thread when its time is up."""


def _arm_interrupt(timeout: float) -> Callable[[], None]:
    """Raise ``_InterruptedError`` in this thread after ``timeout`` seconds: a Dask worker
    thread cannot be killed, but Python code running in it can be interrupted, which
    frees the thread for other tasks (a call into C returns first)."""
    tid = threading.get_ident()
    lock = threading.Lock()
    live = [True]

    def fire() -> None:
        with lock:
            if live[0]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(tid), ctypes.py_object(_InterruptedError)
                )

    timer = threading.Timer(timeout, fire)
    timer.daemon = True
    timer.start()

    def disarm() -> None:
        with lock:
            live[0] = False
        timer.cancel()

    return disarm


class _CancelledAttemptError(Exception):
    """Raised asynchronously in an attempt's thread when its run was cancelled."""


_running: dict[tuple[str, int], int] = {}  # (topic, token) -> thread id
_running_lock = threading.Lock()


def interrupt(topic: str, tokens: list[int]) -> int:
    """Run on each worker (``client.run``) when a run is cancelled: interrupt the
    Python code of those attempts still running here, freeing their threads."""
    count = 0
    with _running_lock:
        for token in tokens:
            tid = _running.get((topic, token))
            if tid is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(tid), ctypes.py_object(_CancelledAttemptError)
                )
                count += 1
    return count


_stores: dict[StoreRef, Any] = {}
_stores_lock = threading.Lock()


def _worker_store(ref: StoreRef) -> Any:
    """The store on this worker, or None when it is not reachable here (another
    machine without a shared filesystem, or owned by another user)."""
    with _stores_lock:
        if ref in _stores:
            return _stores[ref]
        store = None
        try:
            if ref.ident == REMOTE:
                # A bucket is the same wherever it is reached from; the worker needs
                # credentials and a route to it, which one request shows.
                store = pickle.loads(ref.pickled)
                store.check()
            else:
                with open(os.path.join(ref.path, STORE_ID)) as fh:
                    same = fh.read().strip() == ref.ident
                if same:
                    store = pickle.loads(ref.pickled)
        except Exception:
            store = None
        _stores[ref] = store
        return store


def _persist(spec: Spec, value: Any) -> tuple[bool, str | None]:
    """Write ``value`` to the store from the worker: (handled here, warning text)."""
    assert spec.store is not None and spec.key is not None
    store = _worker_store(spec.store)
    if store is None:
        return False, None
    store.begin_run()  # a failure on an earlier task does not stop this one trying
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = store.set(spec.key, value, task=spec.task_name, expire=spec.expire)
    if ok:
        return True, None
    return True, "; ".join(str(w.message) for w in caught) or "the result was not cached"


def reachable(ref: StoreRef) -> bool:
    """Whether this worker sees the store (a probe the scheduler's process sends)."""
    return _worker_store(ref) is not None


def load_value(ref: StoreRef, key: str) -> Any:
    """A cached value read on the worker, for a cache hit the scheduler left here."""
    store = _worker_store(ref)
    missing = object()
    value = missing if store is None else store.get(key, missing)
    if value is missing:
        raise NbflowError(
            f"The cached result '{key}' could not be read on this Dask worker (evicted, "
            f"expired or unreadable since it was looked up in '{ref.path}'). Run the flow "
            "again: it is recomputed."
        )
    return value


def _emit(topic: str, message: dict[str, Any]) -> None:
    from distributed import get_worker

    get_worker().log_event(topic, message)


START_REPORT_DELAY = 0.05  # seconds


class _StartReports:
    """Reports an attempt's start once it has run ``START_REPORT_DELAY``: a short
    attempt costs one report (its end), not two. A start matters only to a deadline
    (reported at once) and to a worker lost mid-attempt (a longer one)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[tuple[str, int], tuple[float, Any, dict[str, Any]]] = {}
        self.thread: threading.Thread | None = None

    def add(self, topic: str, token: int, message: dict[str, Any]) -> None:
        from distributed import get_worker

        with self.lock:
            self.pending[(topic, token)] = (time.monotonic(), get_worker(), message)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._loop, name="nbflow-start-reports", daemon=True
                )
                self.thread.start()

    def remove(self, topic: str, token: int) -> None:
        # Under the lock: a start report being sent goes out before this attempt's end.
        with self.lock:
            self.pending.pop((topic, token), None)

    def _loop(self) -> None:
        while True:
            time.sleep(START_REPORT_DELAY / 2)
            now = time.monotonic()
            with self.lock:
                due = [k for k, (t, _, _) in self.pending.items() if now - t >= START_REPORT_DELAY]
                for key in due:
                    _, worker, message = self.pending.pop(key)
                    worker.log_event(key[0], message)


_starts = _StartReports()


def _dumps(outcome: Outcome) -> bytes:
    import cloudpickle

    try:
        return bytes(cloudpickle.dumps(outcome))
    except Exception:
        error = outcome.error
        outcome.error = RemoteError(f"{type(error).__name__}: {error}")
        return bytes(cloudpickle.dumps(outcome))


def run_attempt(fn: bytes, args: tuple[Any, ...], kwargs: dict[str, Any], spec: Spec) -> Any:
    """The function each Dask task runs (``fn`` as ``ship`` pickled it). Returns the
    task's value (None if it failed)."""
    from distributed import get_worker

    start = {"k": spec.token, "s": time.time(), "w": get_worker().address, "p": os.getpid()}
    if spec.timeout is not None:
        _emit(spec.topic, start)  # its deadline runs from here
    else:
        _starts.add(spec.topic, spec.token, start)
    attempt = Attempt(
        unship(fn),
        args,
        kwargs,
        spec.task_name,
        spec.label,
        spec.number,
        None,
        spec.log_prints,
        nout=spec.nout,
    )
    disarm = _arm_interrupt(spec.timeout) if spec.timeout is not None else None
    running = (spec.topic, spec.token)
    with _running_lock:
        _running[running] = threading.get_ident()
    try:
        outcome = execute(attempt)
    finally:
        with _running_lock:  # no interrupt can be aimed at this thread after this
            del _running[running]
        if disarm is not None:
            disarm()
        if spec.timeout is None:
            _starts.remove(spec.topic, spec.token)
    if isinstance(outcome.error, _InterruptedError):
        outcome.error = TaskTimeoutError(
            f"Task '{spec.label}' timed out after {spec.timeout:g}s; it was interrupted "
            "on its Dask worker."
        )
        outcome.timed_out = True
    value = outcome.value
    note = None
    if outcome.error is None and spec.store is not None:
        try:
            outcome.persisted, note = _persist(spec, value)
        except Exception as exc:  # the worker's store failed in an unforeseen way
            note = f"the worker could not write the result store: {type(exc).__name__}: {exc}"
    error = outcome.error
    if isinstance(error, SUCCESS):
        # Its result is the value: it stays here, like any other.
        value = error.result
        error.result = None
    outcome.value = None
    _emit(
        spec.topic,
        {"k": spec.token, "o": _dumps(outcome), "n": note, "w": start["w"], "p": start["p"]},
    )
    return value if error is None or isinstance(error, SUCCESS) else None
