"""Attempts on Dask distributed: one ``client.submit`` per attempt, values left on the
workers.

A successful outcome's ``value`` is the attempt's Dask future (a handle): the
scheduler passes it to downstream attempts as it is, Dask moves the data between
workers, and ``fetch`` brings values to this process only when asked for
(``run.result``, or the result store when the workers cannot reach it). The worker
side is ``dask_worker.run_attempt``; its reports arrive as worker events on one
topic per client and are handled, in order, by one thread per client (never in the
client's event loop, which the scheduler's callbacks could block).
"""

from __future__ import annotations

import itertools
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from nbflow.errors import (
    SUCCESS,
    NbflowError,
    RemoteError,
    TaskTimeoutError,
    WorkerDiedError,
)
from nbflow.executor.dask_cluster import (
    address_client,
    import_distributed,
    local_client,
    warm_client,
)
from nbflow.executor.dask_store import CachedValue, bind, store_ref, workers_reach
from nbflow.executor.dask_worker import Spec, StoreRef, interrupt, run_attempt
from nbflow.executor.worker import Attempt, Outcome, Promise, failure, ship
from nbflow.store.file import FileStore
from nbflow.timer import Timer

log = logging.getLogger("nbflow")


def _check_count(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise NbflowError(f"Expected {name} to be an int >= 1 or None, but got {value!r}.")


# -- one router per client: events and future callbacks to the executors, in order --
@dataclass(eq=False)
class _Job:
    attempt: Attempt
    promise: Promise
    executor: DaskExecutor
    submitted: float = field(default_factory=time.time)
    future: Any = None
    starts: list[tuple[float, str, int]] = field(default_factory=list)


class _Router:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.topic = f"nbflow-{client.id}"
        self.prefix = secrets.token_hex(4)
        self.jobs: dict[int, _Job] = {}
        self.lock = threading.RLock()
        self.ids = itertools.count()
        self.inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.timer = Timer("dask")
        self.thread = threading.Thread(target=self._loop, name="nbflow-dask-results", daemon=True)
        self.thread.start()
        client.subscribe_topic(self.topic, self._on_event)

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        self.inbox.put(("event", event[1]))  # in the client's event loop: hand over only

    def _loop(self) -> None:
        while True:
            item = self.inbox.get()
            try:
                if item[0] == "event":
                    self._on_report(item[1])
                elif item[0] == "done":
                    self._on_future(item[1], item[2])
                else:
                    self._on_deadline(item[1], item[2])
            except Exception as exc:
                log.exception("nbflow: handling a Dask report failed")
                self._fail(item[1]["k"] if item[0] == "event" else item[1], exc)

    def _fail(self, token: int, exc: Exception) -> None:
        """An attempt whose report could not be handled (e.g. its error cannot be
        unpickled here) still gets an outcome: the run never waits forever."""
        with self.lock:
            job = self.jobs.get(token)
        if job is not None:
            error = RemoteError(
                f"Task '{job.attempt.label}': its outcome could not be read in this process "
                f"({type(exc).__name__}: {exc})."
            )
            self._finish(token, job, failure(error, job.submitted))

    def _on_report(self, msg: dict[str, Any]) -> None:
        token = msg["k"]
        with self.lock:
            job = self.jobs.get(token)
        if job is None:
            if "s" in msg:
                log.info("nbflow: Dask is recomputing a finished attempt (its worker was lost).")
            return
        if "s" in msg:
            job.starts.append((msg["s"], msg["w"], msg["p"]))
            timeout = job.attempt.timeout
            if timeout is not None:
                waited = max(0.0, min(time.time() - msg["s"], timeout))
                count = len(job.starts)
                self.timer.call_at(
                    time.monotonic() + timeout - waited,
                    lambda: self.inbox.put(("deadline", token, count)),
                )
            return
        import cloudpickle

        outcome: Outcome = cloudpickle.loads(msg["o"])
        if outcome.error is None:
            outcome.value = job.future
        elif isinstance(outcome.error, SUCCESS):
            outcome.error.result = job.future
        if msg.get("n"):
            outcome.warning = f"Task '{job.attempt.label}': {msg['n']}"
        self._finish(token, job, outcome, (msg["w"], msg["p"]))

    def _lost(
        self, job: _Job, outcome: Outcome, final: tuple[str, int] | None
    ) -> list[tuple[float, float, str]]:
        """Runs that started but whose worker was lost, so Dask ran the attempt again:
        every run but the one that reported the outcome (``final``: its worker and pid;
        None when no run reported, e.g. Dask gave up: then all runs but the last)."""
        runs = [r for r in job.starts if (r[1], r[2]) != final] if final else job.starts[:-1]
        ends = [r[0] for r in runs[1:]] + [outcome.start][: len(runs)]
        return [
            (
                start,
                max(start, end),
                f"Task '{job.attempt.label}': Dask worker {worker} (pid {pid}) was lost "
                "while running it; Dask ran it again on another worker.",
            )
            for (start, worker, pid), end in zip(runs, ends, strict=True)
        ]

    def _finish(
        self, token: int, job: _Job, outcome: Outcome, final: tuple[str, int] | None = None
    ) -> None:
        with self.lock:
            if self.jobs.pop(token, None) is None:
                return
        try:
            if job.starts:
                outcome.lost = self._lost(job, outcome, final) or None
        finally:  # whatever happens, the attempt gets its outcome: a run never hangs
            job.promise.set_result(outcome)

    def _on_future(self, token: int, future: Any) -> None:
        with self.lock:
            job = self.jobs.get(token)
        if job is None:
            return
        status = future.status
        if status == "finished":  # the end report cannot be missing; be safe if it is
            self._finish(token, job, Outcome(value=future, start=job.submitted, end=time.time()))
            return
        if status == "cancelled":
            outcome = failure(RemoteError("cancelled"), job.submitted)
        else:
            exc = future.exception()
            label = job.attempt.label
            if type(exc).__name__ == "KilledWorker":
                error: BaseException = WorkerDiedError(
                    f"Task '{label}': Dask gave up on it after the workers running it died "
                    f"({exc}). This is a crash in native code, os._exit() or the system "
                    "killing a worker for using too much memory."
                )
            elif isinstance(exc, TaskTimeoutError):
                error = TaskTimeoutError(f"Task '{label}' timed out after {job.attempt.timeout}s.")
            else:
                error = RemoteError(
                    f"Task '{label}': Dask could not run it or keep its result: "
                    f"{type(exc).__name__}: {exc}"
                )
            started = job.starts[-1][0] if job.starts else job.submitted
            outcome = failure(error, started, timed_out=isinstance(error, TaskTimeoutError))
        self._finish(token, job, outcome)

    def _on_deadline(self, token: int, count: int) -> None:
        with self.lock:
            job = self.jobs.get(token)
        if job is None or len(job.starts) != count:
            return  # finished, or run again since: that run has its own deadline
        timeout = job.attempt.timeout
        assert timeout is not None
        start, worker, pid = job.starts[-1]
        outcome = failure(
            TaskTimeoutError(
                f"Task '{job.attempt.label}' timed out after {timeout:g}s on Dask worker "
                f"{worker} (pid {pid}); its Dask future was cancelled."
            ),
            start,
            timed_out=True,
        )
        self._finish(token, job, outcome, (worker, pid))
        job.future.cancel()


_routers: dict[str, _Router] = {}
_routers_lock = threading.Lock()


def _router(client: Any) -> _Router:
    with _routers_lock:
        router = _routers.get(client.id)
        if router is None:
            router = _routers[client.id] = _Router(client)
        return router


class DaskExecutor:
    """Runs attempts on a Dask distributed cluster; results stay on the workers.

    With no ``address`` and no ``client`` it starts a ``LocalCluster`` on 127.0.0.1
    (``n_workers`` worker processes of ``threads_per_worker`` threads), kept warm for
    the session and closed at exit. With a scheduler ``address`` or a
    ``distributed.Client`` it uses that cluster and never closes it.

    >>> DaskExecutor(n_workers=2, threads_per_worker=1)
    DaskExecutor(n_workers=2, threads_per_worker=1)
    """

    name = "dask"
    inline = False

    def __init__(
        self,
        address: str | None = None,
        client: Any = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
    ) -> None:
        if address is not None and not isinstance(address, str):
            raise NbflowError(
                f"Expected address to be a Dask scheduler address such as "
                f"'tcp://10.0.0.5:8786', but got {address!r}."
            )
        if address is not None and client is not None:
            raise NbflowError("Give DaskExecutor an address or a client, not both.")
        _check_count("n_workers", n_workers)
        _check_count("threads_per_worker", threads_per_worker)
        if (address is not None or client is not None) and (
            n_workers is not None or threads_per_worker is not None
        ):
            raise NbflowError(
                "n_workers and threads_per_worker size the local cluster nbflow starts; "
                "with an address or a client the cluster is yours: size it where you start it."
            )
        if client is not None:
            distributed = import_distributed()
            if not isinstance(client, distributed.Client):
                raise NbflowError(
                    f"Expected client to be a distributed.Client, but got {type(client).__name__}."
                )
            if client.asynchronous:
                raise NbflowError(
                    "DaskExecutor needs a synchronous distributed.Client (asynchronous=False)."
                )
        self.address = address
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self._client = client
        self._given = client is not None
        self._stores: dict[int, StoreRef] = {}

    def __repr__(self) -> str:
        if self.address is not None:
            return f"DaskExecutor(address={self.address!r})"
        if self._given:
            return f"DaskExecutor(client={self._client!r})"
        return (
            f"DaskExecutor(n_workers={self.n_workers}, "
            f"threads_per_worker={self.threads_per_worker})"
        )

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` attempts are submitted to (connects on first use)."""
        if self._given:
            if self._client.status != "running":
                raise NbflowError(
                    f"The distributed.Client given to DaskExecutor is {self._client.status}; "
                    "give it a running client (or no client, for a local cluster)."
                )
            return self._client
        if self._client is None or self._client.status != "running":
            if self.address is not None:
                self._client = address_client(self.address)
            else:
                self._client = local_client(self.n_workers, self.threads_per_worker)
        return self._client

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's URL, once connected (None before, or without one)."""
        client = self._client
        if client is None and self.address is None:
            # The warm cluster the next attempt would use (a fully cached run submits none).
            client = warm_client(self.n_workers, self.threads_per_worker)
        if client is None:
            return None
        return client.dashboard_link or None

    def submit(self, attempt: Attempt) -> Promise:
        client = self.client
        router = _router(client)
        promise = Promise()
        token = next(router.ids)
        job = _Job(attempt, promise, self)
        store = key = expire = None
        if attempt.cache is not None:
            cache_store, key, expire = attempt.cache
            store = self._store_ref(cache_store)
        spec = Spec(
            router.topic,
            token,
            attempt.task_name,
            attempt.label,
            attempt.number,
            attempt.timeout,
            attempt.log_prints,
            store,
            key,
            expire,
            attempt.nout,
        )
        with router.lock:
            router.jobs[token] = job
            try:
                job.future = client.submit(
                    run_attempt,
                    ship(attempt.fn),
                    bind(attempt.args, client),
                    bind(attempt.kwargs, client),
                    spec,
                    key=f"{attempt.task_name}-{router.prefix}{token:x}",
                    pure=False,
                )
            except Exception as exc:  # e.g. an input that cannot be serialised
                del router.jobs[token]
                promise.set_result(failure(exc, job.submitted))
                return promise
        job.future.add_done_callback(lambda f: router.inbox.put(("done", token, f)))
        return promise

    def _store_ref(self, store: Any) -> StoreRef | None:
        # Workers reach a file store by its folder and a store with a worker_store() (a
        # bucket) over the network; results of a run on any other store come back here
        # and the scheduler keeps them (the outcome is not persisted).
        if not isinstance(store, FileStore) and not callable(getattr(store, "worker_store", None)):
            return None
        ref = self._stores.get(id(store))
        if ref is None:
            ref = self._stores[id(store)] = store_ref(store)
        return ref

    def load(self, store: Any, key: str) -> Any:
        """A handle to the cached value ``key``, left in the store until a worker needs
        it, when the workers reach the store; else None: the scheduler reads it here."""
        client = self.client
        ref = self._store_ref(store)
        if ref is None or not workers_reach(client, ref):
            return None
        router = _router(client)
        return CachedValue(store, ref, key, f"load-{router.prefix}{next(router.ids):x}")

    def fetch(self, values: list[Any]) -> list[Any]:
        """The values behind ``values`` (Dask futures among them), in one round trip."""
        values = [v.value() if type(v) is CachedValue else v for v in values]
        if not any(type(v).__name__ == "Future" for v in values):
            return values
        return list(self.client.gather(values))

    def shutdown(self, cancel: bool = False) -> None:
        """End this executor's part in a run; the cluster stays warm. With ``cancel``,
        its attempts still queued or running are cancelled on the cluster."""
        if not cancel or self._client is None:
            return
        router = _routers.get(self._client.id)
        if router is None:
            return
        with router.lock:
            mine = [(t, j) for t, j in router.jobs.items() if j.executor is self]
        futures = [j.future for _, j in mine if j.future is not None]
        if futures:
            self._client.cancel(futures)
            # Dask does not stop a task that is running: interrupt its Python code.
            try:
                self._client.run(interrupt, router.topic, [t for t, _ in mine])
            except Exception:
                log.debug("nbflow: interrupting cancelled attempts failed", exc_info=True)
        for token, job in mine:
            router._finish(token, job, failure(RemoteError("cancelled"), job.submitted))


def dask_executor(max_workers: int | None = None) -> DaskExecutor:
    """The executor registered as "dask": a local cluster of ``max_workers`` workers.

    Checks first that ``distributed`` is installed, so a missing extra is reported
    before anything starts.
    """
    import_distributed()
    return DaskExecutor(n_workers=max_workers)


__all__ = ["DaskExecutor", "dask_executor", "import_distributed"]
