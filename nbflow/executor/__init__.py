"""Where attempts run. One small protocol: ``submit(attempt) -> Future``, ``shutdown()``.

An executor enforces an attempt's ``timeout`` itself (each kind stops work its own
way) and always completes the future with an ``Outcome``, never an exception.

One optional capability, ``RemoteValues``: an executor with a ``fetch`` method leaves
values where they were computed. Its successful outcomes carry handles that the
scheduler passes to downstream attempts as they are, and ``fetch`` turns into values
only when they are needed here. Such an executor receives ``attempt.cache`` and
persists values where they are (``outcome.persisted``) when it can.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from nbflow.errors import NbflowError, did_you_mean
from nbflow.executor.local import SequentialExecutor, ThreadExecutor, check_max_workers
from nbflow.executor.worker import Attempt

__all__ = [
    "DaskExecutor",
    "Executor",
    "ProcessExecutor",
    "RemoteValues",
    "SequentialExecutor",
    "ThreadExecutor",
    "resolve_executor",
]

EXECUTOR_NAMES = ("threads", "processes", "sequential", "dask")


class OutcomeFuture(Protocol):
    """What ``submit`` returns: a ``Promise``, or e.g. a ``concurrent.futures.Future``."""

    def add_done_callback(self, fn: Any, /) -> None: ...

    def cancelled(self) -> bool: ...

    def result(self) -> Any: ...


@runtime_checkable
class Executor(Protocol):
    """Runs attempts. ``inline`` executors run them in the thread that submits."""

    name: str
    inline: bool

    def submit(self, attempt: Attempt) -> OutcomeFuture: ...

    def shutdown(self, cancel: bool = False) -> None: ...


@runtime_checkable
class RemoteValues(Protocol):
    """Optional: outcomes' values are handles; ``fetch`` gets the values behind them.

    Such an executor may also have ``load(store, key)``: a handle to a stored value
    that its workers read themselves (the scheduler uses it for large cache hits).
    """

    def fetch(self, values: list[Any]) -> list[Any]: ...


def __getattr__(name: str) -> Any:
    # The processes executor needs joblib, the Dask one distributed: imported when asked for.
    if name == "ProcessExecutor":
        from nbflow.executor.processes import ProcessExecutor

        return ProcessExecutor
    if name == "DaskExecutor":
        from nbflow.executor.dask import DaskExecutor

        return DaskExecutor
    raise AttributeError(name)


def resolve_executor(spec: Any, max_workers: int | None) -> Executor:
    """An executor for ``flow.run(executor=..., max_workers=...)``."""
    try:
        check_max_workers(max_workers)
    except ValueError as exc:
        raise NbflowError(str(exc)) from None
    if isinstance(spec, str):
        if spec == "threads":
            return ThreadExecutor(max_workers)
        if spec == "sequential":
            return SequentialExecutor()
        if spec == "processes":
            from nbflow.executor.processes import ProcessExecutor

            return ProcessExecutor(max_workers)
        if spec == "dask":
            from nbflow.executor.dask import DaskExecutor, import_distributed

            import_distributed()
            return DaskExecutor(n_workers=max_workers)
        raise NbflowError(
            f"Unknown executor {spec!r}.{did_you_mean(spec, EXECUTOR_NAMES)} "
            f"Choose one of: {', '.join(EXECUTOR_NAMES)}, or pass an executor instance."
        )
    if isinstance(spec, Executor):
        if max_workers is not None:
            raise NbflowError(
                "max_workers= applies to executors given by name; set it on the "
                f"instance instead (e.g. {type(spec).__name__}(max_workers={max_workers}))."
            )
        return spec
    raise NbflowError(
        f"Expected executor to be one of {', '.join(map(repr, EXECUTOR_NAMES))} or an "
        f"executor instance, but got {spec!r}."
    )
