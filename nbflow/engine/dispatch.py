"""Where attempts go: result store lookups, executor submits and futures, retry timers.

Holds no run state and takes no lock: the scheduler decides, under its lock, what to
look up and what to submit; this talks to the store and the executor outside of it.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

from nbflow.engine.records import TaskRun
from nbflow.executor import Executor, OutcomeFuture
from nbflow.executor.local import SequentialExecutor
from nbflow.executor.worker import Attempt, Outcome
from nbflow.store.batch import GroupWriter
from nbflow.store.cache import CacheWarning, ResultStore
from nbflow.timer import Timer

log = logging.getLogger("nbflow")


class Dispatcher:
    """One run's side of the executor and the result store.

    ``deliver(unit, outcome, held)`` is called with each attempt's outcome, in the
    thread that completed its future. A successful result is stored first, or, on an
    executor whose attempts run in other threads or processes, handed to a group
    writer (``held`` is then True): ``durable(units)`` is called once their results
    are written, and the run tells their end only then.
    """

    __slots__ = (
        "_deliver",
        "_fetch",
        "_load",
        "_name",
        "_run",
        "_timer",
        "_writer",
        "absent",
        "echo",
        "executor",
        "refresh",
        "store",
    )

    def __init__(
        self,
        executor: Executor,
        store: ResultStore | None,
        deliver: Callable[[TaskRun, Outcome, bool], None],
        *,
        durable: Callable[[list[Any]], None] | None = None,
        refresh: bool = False,
        echo: bool = False,
        name: str = "run",
    ) -> None:
        self.executor = executor
        self.store = store
        self.refresh = refresh
        self.echo = echo
        self._deliver = deliver
        self._name = name
        # An executor whose outcomes carry handles to values left where they were
        # computed has a ``fetch``; values then come here only when needed.
        self._fetch: Callable[[list[Any]], list[Any]] | None = getattr(executor, "fetch", None)
        self._load: Callable[[ResultStore, str], Any] | None = getattr(executor, "load", None)
        self._timer: Timer | None = None
        # The sequential executor, unless a subclass submits its own way: attempts run
        # here and return their outcomes directly.
        self._run: Callable[[Attempt], Outcome] | None = (
            executor.run  # type: ignore[attr-defined]
            if getattr(type(executor), "submit", None) is SequentialExecutor.submit
            else None
        )
        self.absent: set[str] = set()  # keys known not to be stored (no lookup needed)
        self._writer: GroupWriter | None = None
        if store is not None and durable is not None and not executor.inline and not self._fetch:
            self._writer = GroupWriter(store, durable, f"writer-{name}")

    # -- the result store ------------------------------------------------------------
    def hits(self, batch: list[TaskRun]) -> dict[str, Any]:
        """Stored values for the first attempts of cached units, by key (none when
        there is no store or the run recomputes everything)."""
        if self.store is None or self.refresh:
            return {}
        keys = [u.key for u in batch if u.key is not None and self.looks_up(u)]
        return self.lookup(keys) if keys else {}

    def looks_up(self, unit: TaskRun) -> bool:
        """Whether dispatching ``unit`` asks the store for its key: a first attempt of a
        cached task, whose key is not known to be absent."""
        key = unit.key
        return (
            key is not None
            and self.store is not None
            and not self.refresh
            and unit.attempts == 0
            and unit.node.task.cache
            and key not in self.absent
        )

    def lookup(self, keys: list[str]) -> dict[str, Any]:
        """Cache hits by key. With an executor that can ``load`` a stored value where
        it runs, a large value (one in a file of its own) is left to it: the hit is then
        a handle, and the value never passes through this process."""
        store = self.store
        assert store is not None
        if self._load is None:
            return store.get_many(keys)
        sizes = store.sizes(keys)  # only the keys stored
        here = [k for k, size in sizes.items() if not size]
        handles = {}
        for key in [k for k, size in sizes.items() if size]:
            handle = self._load(store, key)
            if handle is None:  # the executor cannot read it where it runs
                here.append(key)
            else:
                handles[key] = handle
        # One transaction; an entry evicted since its size was read is simply a miss.
        hits = store.get_many(here)
        hits.update(handles)
        return hits

    def fetch(self, value: Any) -> Any:
        """``value`` itself, or, for a handle the executor left its value behind, that
        value (a list is fetched element by element, in one round trip)."""
        if self._fetch is None:
            return value
        if type(value) is list:
            return self._fetch(value)
        return self._fetch([value])[0]

    # -- the executor ----------------------------------------------------------------
    def attempt(self, unit: TaskRun) -> Attempt:
        """The next attempt of ``unit`` (its inputs set, its ``attempts`` counted)."""
        task = unit.node.task
        args, kwargs = unit._inputs
        persist = None
        if self._fetch is not None and unit.key is not None and task.cache:
            # The worker stores the value where it was computed.
            persist = (self.store, unit.key, task.cache_expire)
        return Attempt(
            task.fn,
            args,
            kwargs,
            task.name,
            unit.name,
            unit.attempts,
            task.timeout,
            task.log_prints,
            self.echo,
            persist,
            task.nout if unit.map_index is None else None,
        )

    def submit(self, attempts: list[tuple[TaskRun, Attempt]]) -> None:
        run = self._run
        if run is not None:  # runs each attempt here: no future to wait on
            for unit, attempt in attempts:
                self._ended(unit, run(attempt))
            return
        for unit, attempt in attempts:
            future = self.executor.submit(attempt)
            future.add_done_callback(partial(self._done, unit))

    def _done(self, unit: TaskRun, future: OutcomeFuture) -> None:
        if not future.cancelled():
            self._ended(unit, future.result())

    def _ended(self, unit: TaskRun, outcome: Outcome) -> None:
        task = unit.node.task
        if outcome.warning is not None:
            warnings.warn(outcome.warning, CacheWarning, stacklevel=2)
        if (
            outcome.error is None
            and unit.key is not None
            and task.cache
            and self.store
            and not outcome.persisted
        ):
            # A result is durable before the task is told done: once a run has ended,
            # every result it reported is on disk, even if the process exits right after.
            writer = self._writer
            if writer is not None:
                self._deliver(unit, outcome, True)  # held until its batch is written
                writer.put((unit.key, outcome.value, task.name, task.cache_expire), unit)
                return
            self._persist(unit, outcome.value)
        self._deliver(unit, outcome, False)

    def _persist(self, unit: TaskRun, value: Any) -> None:
        assert self.store is not None and unit.key is not None
        task = unit.node.task
        if self._fetch is not None:
            try:
                value = self._fetch([value])[0]
            except Exception as exc:
                warnings.warn(
                    f"Task '{unit.name}': its result could not be fetched from the executor "
                    f"to be cached ({type(exc).__name__}: {exc}); it is not cached.",
                    CacheWarning,
                    stacklevel=3,
                )
                return
        self.store.set(unit.key, value, task=task.name, expire=task.cache_expire)

    # -- retries and the end ----------------------------------------------------------
    def call_later(self, wait: float, due: Callable[[], None]) -> None:
        """Call ``due()`` in ``wait`` seconds, on the run's timer thread."""
        if self._timer is None:
            self._timer = Timer(f"retry-{self._name}")
        self._timer.call_at(time.monotonic() + wait, due)

    def drain(self) -> None:
        """Wait until every result handed to the group writer is written."""
        if self._writer is not None:
            self._writer.drain()

    def close(self, cancel: bool) -> None:
        """Shut the executor down (abandoning running attempts if ``cancel``) and stop
        the retry timer and the group writer (after it has written what it holds)."""
        try:
            self.executor.shutdown(cancel=cancel)
        except Exception:
            log.exception("nbflow: shutting down executor %r failed", self.executor)
        if self._timer is not None:
            self._timer.stop()
        if self._writer is not None:
            self._writer.close()
