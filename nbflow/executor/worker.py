"""The worker side: run one attempt of one task and return its outcome.

This is all a worker (thread, process or Dask worker) does; deciding what the
outcome means (retry, fail, cache) happens in the scheduler's process.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import linecache
import threading
import time
import traceback as _tb
import types
import weakref
from _thread import allocate_lock as _allocate_lock
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from nbflow import context, logs
from nbflow.errors import FAIL, LOOP
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
    # The number of values the task declares it returns (``@task(nout=...)``), checked here.
    nout: int | None = None
    # Where a task that raised ``LOOP`` goes on after a failed attempt: (loop count,
    # loop result, runs of that iteration so far); None to start at the first.
    loop: tuple[int, Any, int] | None = None


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
    # A failed attempt of a task that raised ``LOOP`` before: where its next attempt
    # goes on (``Attempt.loop``).
    loop: tuple[int, Any, int] | None = None

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
    """The traceback of ``exc`` without its first ``skip`` frames (nbflow's own), or the
    one it carries as ``user_traceback`` (an error standing for an earlier one)."""
    carried = getattr(exc, "user_traceback", None)
    if isinstance(carried, str) and carried:
        return carried
    tb = exc.__traceback__
    for _ in range(skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    return "".join(_tb.format_exception(type(exc), exc, tb))


_MAIN = threading.main_thread()


def _check_nout(attempt: Attempt, value: Any) -> None:
    """Fail (without retries: the same code returns the same shape) a task whose value
    is not ``nout`` values: unpacking would drop or miss some silently."""
    try:
        count = len(value)
    except TypeError:
        count = None
    if count != attempt.nout or isinstance(value, (str, bytes, dict)):
        got = f"{count} values" if count is not None else f"a {type(value).__name__}"
        raise FAIL(
            f"Task '{attempt.label}' declares nout={attempt.nout} but returned {got}; "
            f"return a tuple of exactly {attempt.nout} values, or change nout."
        )


def _await(coroutine: Any) -> Any:
    """Run an ``async def`` task's coroutine to its end and return its value. Where an
    event loop already runs in this thread (a notebook's kernel, for a sequential run),
    the coroutine runs in a loop of its own on a helper thread."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:
            box["error"] = exc

    # The coroutine sees the task's context (nbflow.context) in the helper thread too.
    helper = threading.Thread(
        target=contextvars.copy_context().run, args=(run,), name="nbflow-async", daemon=True
    )
    helper.start()
    helper.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def execute(attempt: Attempt) -> Outcome:
    """Run one attempt, capturing its logs; never raises (but for Ctrl-C in the main
    thread). A task that raises ``LOOP`` runs again here, in the same attempt."""
    cap, previous = logs.begin(attempt.task_name, attempt.log_prints, attempt.echo)
    start = time.time()
    count, result, runs = attempt.loop or (1, None, 0)
    try:
        while True:
            token = context.enter(_context(attempt, count, result, runs))
            try:
                value = _call(attempt)
                break
            except LOOP as signal:
                count, result, runs = count + 1, signal.result, 0
                why = f": {signal.message}" if signal.message else ""
                cap.records.append(
                    LogRecord(time.time(), "INFO", f"LOOP: running again (loop {count}){why}")
                )
            finally:
                context.leave(token)
    except BaseException as exc:
        # Any exception ends this task only. KeyboardInterrupt in the main thread is
        # Ctrl-C (or the kernel's interrupt) during a sequential run: it cancels the run.
        # Any other BaseException (a task raising KeyboardInterrupt in a worker thread,
        # asyncio.CancelledError, GeneratorExit) must not escape: it would kill the
        # worker thread and leave the run waiting forever for an outcome.
        end = time.time()
        logs.end(cap, previous)
        if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is _MAIN:
            raise
        return Outcome(
            error=exc,
            traceback=format_user_traceback(exc, skip=2),
            logs=cap.records or None,
            start=start,
            end=end,
            loop=(count, result, runs + 1) if count > 1 else None,
        )
    end = time.time()
    logs.end(cap, previous)
    return Outcome(value=value, logs=cap.records or None, start=start, end=end)


def _call(attempt: Attempt) -> Any:
    value = attempt.fn(*attempt.args, **attempt.kwargs)
    if isinstance(value, types.CoroutineType):  # an ``async def`` task
        value = _await(value)
    if attempt.nout is not None:
        _check_nout(attempt, value)
    return value


def _context(attempt: Attempt, count: int, result: Any, runs: int) -> dict[str, Any]:
    """The task's ``nbflow.context`` for one call of its function (Prefect 1's keys)."""
    values: dict[str, Any] = {
        "task_name": attempt.task_name,
        "task_full_name": attempt.label,
        # Before any LOOP, the attempt's number; in a loop, the runs of its iteration.
        "task_run_count": attempt.number if count == 1 else runs + 1,
    }
    if count > 1:
        values["task_loop_count"] = count
        values["task_loop_result"] = result
    return values


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


# -- where the user's code came from, across a process boundary ------------------------
# cloudpickle ships functions defined in a notebook or ``__main__`` by value, and (from
# 3.1.3) names every code object it ships so ``<dynamic-code>``: a traceback from a
# worker process would lose the user's file names and lines. ``traveling(fn)`` wraps a
# function so that it unpickles as itself with each code object's file name restored,
# and with the source lines of files the worker cannot read (notebook cells) in its
# ``linecache``. It works with any pickler (loky's, Dask's), because it is the object's
# own reduction, not a change to the pickler.

_DYNAMIC_FILENAME = "<dynamic-code>"
# (qualified name, first line) of a code object -> (file name, source lines or None)
_Origins = dict[tuple[str, int], tuple[str, "list[str] | None"]]
_origins_cache: weakref.WeakKeyDictionary[Any, _Origins] = weakref.WeakKeyDictionary()


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """``code`` and every code object nested in it (inner functions, comprehensions)."""
    stack = [code]
    while stack:
        c = stack.pop()
        yield c
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))


def _functions(fn: Any, limit: int = 200) -> Iterator[types.FunctionType]:
    """``fn`` and the plain functions it reaches through its globals and closure (the
    helpers cloudpickle ships with it), breadth first, at most ``limit`` of them."""
    seen: set[int] = set()
    queue: list[Any] = [fn]
    while queue and len(seen) < limit:
        f = queue.pop(0)
        f = getattr(f, "__func__", f)  # a bound method's function
        if isinstance(f, functools.partial):
            queue.append(f.func)
            continue
        if not isinstance(f, types.FunctionType) or id(f) in seen:
            continue
        seen.add(id(f))
        yield f
        names = {n for c in _codes(f.__code__) for n in c.co_names}
        queue.extend(f.__globals__[n] for n in names if n in f.__globals__)
        queue.extend(c.cell_contents for c in f.__closure__ or () if _filled(c))


def _filled(cell: Any) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:  # a closure variable not assigned yet
        return False
    return True


def _identity(code: types.CodeType) -> tuple[str, int]:
    return getattr(code, "co_qualname", code.co_name), code.co_firstlineno


def _origins(fn: Any) -> _Origins:
    try:
        return _origins_cache[fn]
    except (KeyError, TypeError):
        pass
    found: _Origins = {}
    for f in _functions(fn):
        for c in _codes(f.__code__):
            name = c.co_filename
            if name == _DYNAMIC_FILENAME:
                continue
            # A file the worker may not have (a notebook cell, an IPython input) travels
            # with its lines; a real file is read there as usual.
            lines = linecache.getlines(name) if name.startswith("<") else None
            found[_identity(c)] = (name, lines or None)
    with contextlib.suppress(TypeError):
        _origins_cache[fn] = found
    return found


def _restore(code: types.CodeType, origins: _Origins) -> types.CodeType:
    consts = tuple(
        _restore(k, origins) if isinstance(k, types.CodeType) else k for k in code.co_consts
    )
    origin = origins.get(_identity(code))
    changes: dict[str, Any] = {}
    if consts != code.co_consts:
        changes["co_consts"] = consts
    if origin is not None and code.co_filename != origin[0]:
        changes["co_filename"] = origin[0]
    return code.replace(**changes) if changes else code


def _arrived(fn: Any, origins: _Origins) -> Any:
    """The function as it unpickles in a worker: its code objects named after their
    files again, and the lines of files that exist only in the sender in linecache."""
    for filename, lines in origins.values():
        if lines is not None and filename not in linecache.cache:
            linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    for f in _functions(fn):
        if any(c.co_filename == _DYNAMIC_FILENAME for c in _codes(f.__code__)):
            f.__code__ = _restore(f.__code__, origins)
    return fn


class _Traveling:
    """Pickles as its function plus where that function's code came from."""

    __slots__ = ("fn",)

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __reduce__(self) -> tuple[Any, ...]:
        return (_arrived, (self.fn, _origins(self.fn)))

    # A copy (Dask copies a task's arguments) stays a wrapper: only unpickling unwraps.
    def __copy__(self) -> _Traveling:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Traveling:
        return self


def traveling(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` ready to be pickled for another process: it unpickles as ``fn`` itself,
    with its code's file names and cell lines intact (see above). Use it only where the
    attempt is pickled; in this process it is not callable."""
    return _Traveling(fn)  # type: ignore[return-value]


def ship(fn: Callable[..., Any]) -> bytes:
    """``fn`` pickled as ``traveling`` does, for executors whose own machinery unpickles
    and pickles again on the way (Dask's scheduler does): ``unship`` in the worker."""
    import cloudpickle

    return bytes(cloudpickle.dumps(traveling(fn)))


def unship(payload: bytes) -> Callable[..., Any]:
    """The function ``ship`` pickled, with its origins restored."""
    import cloudpickle

    fn: Callable[..., Any] = cloudpickle.loads(payload)
    return fn
