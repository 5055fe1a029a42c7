"""The executor protocol: ``submit(attempt) -> Future``, ``shutdown()``.

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

from nbflow.executor.worker import Attempt


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
