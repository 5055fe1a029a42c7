"""Attempts in worker processes: joblib's reusable loky executor (cloudpickle).

Functions defined in a notebook or ``__main__`` travel by value. Large buffers (the
arrays of a DataFrame, of NumPy, bytes) travel out of band through files of the run's
folder in shared memory (``/dev/shm``), mapped copy-on-write by the side that reads
them, so a large value crosses between processes at the speed of memory, not through
loky's pipe as a pickle copied three times. The pool stays warm across runs. A worker
that dies fails only the attempt it was running; attempts that died with it through no
fault of their own run again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import mmap
import os
import pickle
import re
import shutil
import signal
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

from nbflow.errors import RemoteError, TaskTimeoutError, WorkerDiedError
from nbflow.executor.local import check_max_workers
from nbflow.executor.worker import Attempt, Outcome, Promise, execute, failure, traveling
from nbflow.timer import Timer

log = logging.getLogger("nbflow")

WATCH = 0.2  # seconds between two looks of a worker at its parent process
REPLACED = 10.0  # seconds an attempt waits for loky to replace a pool whose worker we killed

# The pools in which nbflow killed a worker (a timeout, a cancelled run). loky's reusable
# pool is shared by every ProcessExecutor of this process, so this is too: a run that
# starts while the pool of the previous run's kill has not broken yet must neither
# submit to it nor blame its own attempts for the death. Weak: a dead pool goes away.
_killed: weakref.WeakSet[Any] = weakref.WeakSet()
_killed_lock = threading.Lock()


def _mark_killed(pools: Any) -> None:
    with _killed_lock:
        for pool in pools:
            _killed.add(pool)


def _unmark_killed(pool: Any) -> None:
    with _killed_lock:
        _killed.discard(pool)


def _was_killed(pool: Any) -> bool:
    with _killed_lock:
        return pool in _killed


_watched: int | None = None  # in a worker: the parent process its watcher follows


def _orphaned(parent: int) -> bool:
    """In a worker: the process that sent the work (its parent) is gone. A worker is
    re-parented when its parent dies, so its parent pid changes; nothing will ever
    receive its outcomes."""
    return os.getppid() != parent


def _watch_parent(parent: int) -> None:
    """In a worker: end this process when ``parent`` dies, also while an attempt runs
    or the worker waits idle (the pool keeps idle workers for minutes).

    A thread that polls, not ``prctl(PR_SET_PDEATHSIG)``: that signal follows the
    parent thread that started the worker, and loky starts workers from whichever
    thread submits, some of them short-lived."""
    global _watched
    if _watched == parent:
        return
    _watched = parent

    def watch() -> None:
        while not _orphaned(parent):
            time.sleep(WATCH)
        os._exit(1)

    threading.Thread(target=watch, name="nbflow-parent-watch", daemon=True).start()


SPILL_AT = 1 << 20  # bytes: a buffer this large travels through a file of its own


class _Spilled(NamedTuple):
    """A pickle (protocol 5) whose large buffers wait in files, in order."""

    data: bytes
    paths: list[str]


def _spill(obj: Any, stem: str) -> _Spilled:
    """``obj`` pickled with cloudpickle, each buffer of ``SPILL_AT`` bytes or more written
    to a file of its own (``stem.0``, ``stem.1``...) instead of into the pickle."""
    import cloudpickle

    paths: list[str] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: in the pickle
            return True
        if raw.nbytes < SPILL_AT:
            return True
        path = f"{stem}.{len(paths)}"
        paths.append(path)  # before it is written: a failed write is removed too
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
            fh.write(raw)
        return False

    try:
        data = cloudpickle.dumps(obj, protocol=5, buffer_callback=out_of_band)
    except OSError as exc:  # no room for them (a container's small /dev/shm): in the pickle
        _remove(paths)
        log.debug("nbflow: large buffers travel in the pickle: %s", exc)
        return _Spilled(bytes(cloudpickle.dumps(obj, protocol=5)), [])
    except BaseException:
        _remove(paths)
        raise
    return _Spilled(bytes(data), paths)


def _unspill(spilled: _Spilled) -> Any:
    """The object ``_spill`` pickled; its files are mapped copy-on-write (the value may
    be changed in place; the file is not) and removed (a mapping outlives its file)."""
    buffers = []
    try:
        for path in spilled.paths:
            with open(path, "rb") as fh:
                buffers.append(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY))
    finally:
        _remove(spilled.paths)
    return pickle.loads(spilled.data, buffers=buffers)


def _remove(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _run_in_worker(
    payload: bytes, spilled: list[str], marker: str, label: str, parent: int
) -> Outcome | _Spilled:
    """The function the worker process runs: rebuild the attempt, mark the start, run,
    unmark. A worker whose parent (``parent``, the submitting process) died starts
    nothing more: it ends at once, before a queued attempt repeats side effects that
    the attempt's retry in a new run will have again.

    The attempt arrives pickled by ``_portable``, as bytes and the names of the files
    its large buffers wait in: loky itself only unpickles those, which cannot fail. An
    attempt that cannot be rebuilt here (a task or value pickled by reference to a
    module the worker cannot import, such as a script's ``__main__``) fails this
    attempt with the reason, instead of breaking the pool. The outcome goes back the
    same way (its large buffers in files next to ``marker``), or as it is when it
    cannot be pickled so: then loky tries, and says why it cannot.
    """
    if _orphaned(parent):
        os._exit(1)
    _watch_parent(parent)
    _ignore_sigint()
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, f"{os.getpid()} {time.time()}".encode())
    os.close(fd)
    try:
        try:
            attempt: Attempt = _unspill(_Spilled(payload, spilled))
        except Exception as exc:
            return failure(RemoteError(_unrebuildable(label, exc)), time.time())
        outcome = execute(attempt)
        if outcome.error is not None:
            try:
                pickle.dumps(outcome.error)
            except Exception:
                outcome.error = RemoteError(f"{type(outcome.error).__name__}: {outcome.error}")
        try:
            return _spill(outcome, f"{marker}.out{os.getpid()}")  # a resend: another worker
        except Exception:
            return outcome
    finally:
        os.unlink(marker)


def _unrebuildable(label: str, exc: Exception) -> str:
    return (
        f"Task '{label}': the worker process could not rebuild it from what was sent: "
        f"{type(exc).__name__}: {exc}. Something the task uses travels by reference to a "
        "module the worker cannot import (for example an object defined in a script's "
        "__main__); define it in an importable module, or use executor='threads'."
    )


def _portable(attempt: Attempt, stem: str) -> _Spilled:
    """The attempt as it is sent: pickled here (cloudpickle, so notebook functions travel
    by value), its function keeping its file names and cell lines, its large buffers in
    files ``stem.N``."""
    return _spill(attempt._replace(fn=traveling(attempt.fn)), stem)


def _ignore_sigint() -> None:
    """A worker ignores Ctrl-C: a terminal sends SIGINT to the whole process group, and
    the run's own process cancels the run and stops its workers. A worker that raised
    KeyboardInterrupt itself would fail its task instead of being cancelled with the run.
    (The run also starts its workers with SIGINT blocked, but a worker may be started
    from a thread that did not block it.)"""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _submit(pool: Any, job: _Job) -> Any:
    """Send ``job``'s attempt to a worker of ``pool``; returns loky's future. The files
    of its buffers are the job's until it finishes (each send writes its own)."""
    attempt = job.attempt
    job.sends += 1
    payload = _portable(attempt, f"{job.marker}.in{job.sends}")
    job.spilled.extend(payload.paths)
    return pool.submit(
        _run_in_worker, payload.data, payload.paths, job.marker, attempt.label, os.getpid()
    )


def _received(result: Outcome | _Spilled) -> Outcome:
    """What a worker sent back, as an outcome."""
    if isinstance(result, _Spilled):
        outcome: Outcome = _unspill(result)
        return outcome
    return result


def _read_marker(path: str) -> tuple[int, float] | None:
    try:
        with open(path) as fh:
            pid, started = fh.read().split()
        return int(pid), float(started)
    except (OSError, ValueError):
        return None


def _exit_code_text(exc: BaseException) -> str:
    found = re.search(r"\{([^}]*)\}", str(exc))
    if not found:
        return "exit code unknown"
    codes = []
    for part in found.group(1).split(","):
        m = re.match(r"\s*(\w+)\((-?\d+)\)", part)
        if not m:
            continue
        name, code = m.groups()
        codes.append(f"exit code {code}" if name == "EXIT" else f"exit code {code}, {name}")
    return "; ".join(codes) or "exit code unknown"


@dataclass(eq=False)
class _Job:
    attempt: Attempt
    outer: Promise
    marker: str
    pool: Any = None
    submitted: float = field(default_factory=time.time)
    waiting: float | None = None  # since when it waits for a pool to be replaced
    sends: int = 0
    spilled: list[str] = field(default_factory=list)  # files of its buffers, removed at its end


class ProcessExecutor:
    """Runs attempts in a warm pool of worker processes.

    >>> ProcessExecutor(max_workers=2).max_workers
    2
    """

    name = "processes"
    inline = False

    def __init__(self, max_workers: int | None = None) -> None:
        check_max_workers(max_workers)
        self.max_workers = max_workers or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count()
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self._dir = tempfile.mkdtemp(prefix="nbflow-", dir=base)
        self._dir_ready = True
        self._timer = Timer("processes")
        # The pools whose breakage this executor has dealt with, for its own attempts.
        # Keyed by id(); the values keep the pools alive so that ids are not reused.
        self._handled_pools: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"ProcessExecutor(max_workers={self.max_workers})"

    def _pool(self) -> Any:
        from joblib.externals.loky import get_reusable_executor

        return get_reusable_executor(
            max_workers=self.max_workers, timeout=300, initializer=_ignore_sigint
        )

    def submit(self, attempt: Attempt) -> Promise:
        if not self._dir_ready:
            os.makedirs(self._dir, mode=0o700, exist_ok=True)
            self._dir_ready = True
        number = next(self._ids)
        job = _Job(attempt, Promise(), os.path.join(self._dir, str(number)))
        with self._lock:
            self._jobs[number] = job
        self._send(number, job)
        return job.outer

    def _send(self, number: int, job: _Job) -> None:
        if job.outer.done():
            return
        from joblib.externals.loky.process_executor import (
            BrokenProcessPool,
            ShutdownExecutorError,
        )

        try:
            pool = self._pool()
            if _was_killed(pool) and self._wait_for_new_pool(number, job):
                return
            try:
                inner = _submit(pool, job)
            except (BrokenProcessPool, ShutdownExecutorError):
                # It broke (or was shut down) since we got it: loky replaces it.
                if self._wait_for_new_pool(number, job):
                    return
                raise
        except Exception as exc:  # e.g. the function cannot be pickled
            self._finish(number, job, failure(exc, time.time()))
            return
        job.pool = pool
        inner.add_done_callback(lambda f: self._on_done(number, job, f))
        if job.attempt.timeout is not None:
            self._timer.call_at(
                time.monotonic() + job.attempt.timeout, lambda: self._check_deadline(number, job)
            )

    def _wait_for_new_pool(self, number: int, job: _Job) -> bool:
        """Send ``job`` again soon, when loky will have replaced the pool in which a
        worker was killed (it notices the death within milliseconds); False once it
        has waited ``REPLACED`` seconds: then it goes to that pool anyway."""
        now = time.monotonic()
        if job.waiting is None:
            job.waiting = now
        elif now - job.waiting > REPLACED:
            return False
        self._timer.call_at(now + 0.02, partial(self._send, number, job))
        return True

    def _finish(self, number: int, job: _Job, outcome: Outcome) -> bool:
        with self._lock:
            self._jobs.pop(number, None)
        _remove(job.spilled)
        return job.outer.set_result(outcome)

    def _on_done(self, number: int, job: _Job, inner: Future[Any]) -> None:
        from joblib.externals.loky.process_executor import BrokenProcessPool

        if job.outer.done():
            if not inner.cancelled():
                late = inner.exception()
                if isinstance(late, BrokenProcessPool):
                    self._on_broken(job.pool, late)
                elif late is None and isinstance(result := inner.result(), _Spilled):
                    _remove(result.paths)  # ended meanwhile (a timeout): not read
            return
        if inner.cancelled():
            self._finish(number, job, failure(RemoteError("cancelled"), job.submitted))
            return
        exc = inner.exception()
        if exc is None:
            try:
                outcome = _received(inner.result())
            except Exception as unpickling:  # e.g. a class this process cannot import
                exc = unpickling
            else:
                self._finish(number, job, outcome)
                return
        if not isinstance(exc, BrokenProcessPool):
            self._finish(
                number,
                job,
                failure(
                    RemoteError(
                        f"Task '{job.attempt.label}': the worker process could not run it or "
                        f"send back its result: {type(exc).__name__}: {exc}"
                    ),
                    job.submitted,
                ),
            )
            return
        self._on_broken(job.pool, exc)

    def _on_broken(self, pool: Any, exc: BaseException) -> None:
        """A pool broke: blame the attempt whose worker died, run the others again."""
        pool_id = id(pool)
        with self._lock:
            if pool_id in self._handled_pools:
                return
            self._handled_pools[pool_id] = pool
            jobs = [(n, j) for n, j in self._jobs.items() if id(j.pool) == pool_id]
        killed_by_us = _was_killed(pool)
        started = [(n, j) for n, j in jobs if os.path.exists(j.marker) and not j.outer.done()]
        waiting = [(n, j) for n, j in jobs if (n, j) not in started and not j.outer.done()]
        _remove([j.marker for _, j in started])
        if killed_by_us:
            # nbflow killed a worker (to stop a timed-out attempt, in this run or another
            # sharing the pool, or to cancel a run): everything else is innocent.
            retry = started + waiting
        elif len(started) == 1:
            n, j = started[0]
            self._finish(n, j, self._died(j, _exit_code_text(exc)))
            retry = waiting
        else:
            retry = waiting
            for n, j in started:
                threading.Thread(
                    target=self._isolate, args=(n, j), name="nbflow-isolate", daemon=True
                ).start()
        # Resubmit from the timer thread, not from loky's own (dying) manager thread.
        for n, j in retry:
            self._timer.call_at(time.monotonic(), partial(self._send, n, j))

    def _died(self, job: _Job, codes: str) -> Outcome:
        return failure(
            WorkerDiedError(
                f"Task '{job.attempt.label}': worker process died ({codes}). This is a crash "
                "in native code, os._exit() or the system killing it for using too much memory."
            ),
            job.submitted,
        )

    def _isolate(self, number: int, job: _Job) -> None:
        """Run one suspect alone in a fresh process, so a death is attributed exactly."""
        from joblib.externals.loky import ProcessPoolExecutor
        from joblib.externals.loky.process_executor import BrokenProcessPool

        pool = ProcessPoolExecutor(max_workers=1)
        try:
            inner = _submit(pool, job)
            try:
                outcome = _received(inner.result(timeout=job.attempt.timeout))
            except TimeoutError:
                pool.shutdown(wait=False, kill_workers=True)
                outcome = failure(
                    TaskTimeoutError(
                        f"Task '{job.attempt.label}' timed out after {job.attempt.timeout:g}s; "
                        "its worker process was killed."
                    ),
                    job.submitted,
                    timed_out=True,
                )
            except BrokenProcessPool as exc:
                outcome = self._died(job, _exit_code_text(exc))
            except Exception as exc:
                outcome = failure(RemoteError(f"{type(exc).__name__}: {exc}"), job.submitted)
            self._finish(number, job, outcome)
        finally:
            pool.shutdown(wait=False)

    def _check_deadline(self, number: int, job: _Job) -> None:
        if job.outer.done():
            return
        timeout = job.attempt.timeout
        assert timeout is not None
        marker = _read_marker(job.marker)
        now = time.time()
        if marker is None:  # not started yet: look again soon
            self._timer.call_at(
                time.monotonic() + min(timeout, 0.25), lambda: self._check_deadline(number, job)
            )
            return
        pid, started = marker
        if now - started < timeout:
            self._timer.call_at(
                time.monotonic() + started + timeout - now,
                lambda: self._check_deadline(number, job),
            )
            return
        outcome = failure(
            TaskTimeoutError(
                f"Task '{job.attempt.label}' timed out after {timeout:g}s; its worker process "
                f"(pid {pid}) was killed and replaced."
            ),
            started,
            timed_out=True,
        )
        # Marked before the attempt is finished: finishing it runs the scheduler, which
        # may submit the retry at once, and the retry must not go to the pool about to
        # break (it would run there, be lost with the pool and run a second time).
        _mark_killed([job.pool])
        if self._finish(number, job, outcome):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        else:  # it ended on its own meanwhile: nothing is killed
            _unmark_killed(job.pool)

    def shutdown(self, cancel: bool = False) -> None:
        """Release this run's resources; the warm pool stays unless ``cancel``."""
        if cancel:
            with self._lock:
                jobs = list(self._jobs.items())
                pools = {id(j.pool): j.pool for _, j in jobs if j.pool is not None}
                self._handled_pools.update(pools)
            _mark_killed(pools.values())
            for pool in pools.values():
                pool.shutdown(wait=False, kill_workers=True)
            for n, j in jobs:
                self._finish(n, j, failure(RemoteError("cancelled"), j.submitted))
        self._timer.stop()
        self._dir_ready = False
        shutil.rmtree(self._dir, ignore_errors=True)
