"""Executors by name: ``flow.run(executor="threads")``, ``nbflow run --executor``,
``%flow run --executor``.

Each name maps to a factory and to what front ends need to know about it before
one exists (its capabilities). Adding an executor is one module holding its class
plus one ``register_executor`` line; the command line, the magics and the launcher
read their choices and questions here.

>>> from nbflow.executor import ThreadExecutor
>>> register_executor("one-thread", lambda max_workers: ThreadExecutor(1), summary="demo")
>>> executor_info("one-thread").inline, "one-thread" in executor_names()
(False, True)
>>> resolve_executor("one-thread", None).name
'threads'
>>> unregister_executor("one-thread")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nbflow.errors import NbflowError, did_you_mean
from nbflow.executor.base import Executor
from nbflow.executor.local import check_max_workers
from nbflow.seam import Registry, check_factory

__all__ = [
    "ExecutorInfo",
    "executor_info",
    "executor_names",
    "register_executor",
    "resolve_executor",
    "unregister_executor",
]

Factory = Callable[[int | None], Executor]


@dataclass(frozen=True)
class ExecutorInfo:
    """A registered executor: how to make one and what it can do.

    ``factory(max_workers)`` returns a new executor; it may be given as
    ``"module:attribute"``, imported at the first run that asks for it, so that
    registering an executor never imports its dependencies (Dask, joblib).

    Capabilities, for callers that must decide before an executor exists:

    - ``inline``: attempts run in the thread that submits them (one at a time).
    - ``other_processes``: attempts run in other processes, so task functions and
      their inputs are pickled (the launcher then pickles a script's module by value).
    - ``remote_values``: results stay where they were computed until fetched
      (see ``RemoteValues``).
    """

    name: str
    factory: Factory | str
    summary: str = ""
    inline: bool = False
    other_processes: bool = False
    remote_values: bool = False

    def create(self, max_workers: int | None) -> Executor:
        """A new executor of this kind for a run with at most ``max_workers`` at a time."""
        factory = self.factory
        if isinstance(factory, str):
            module, _, attribute = factory.partition(":")
            factory = getattr(importlib.import_module(module), attribute)
        executor = factory(max_workers)
        if not isinstance(executor, Executor):
            raise NbflowError(
                f"The factory of executor '{self.name}' returned {executor!r}, which is not "
                "an executor (it needs name, inline, submit() and shutdown()). Fix the "
                f"factory given to register_executor('{self.name}', ...)."
            )
        return executor


_registry: Registry[ExecutorInfo] = Registry()


def register_executor(
    name: str,
    factory: Factory | str,
    *,
    summary: str = "",
    inline: bool = False,
    other_processes: bool = False,
    remote_values: bool = False,
    replace: bool = False,
) -> None:
    """Make ``flow.run(executor=name)`` (and ``--executor name``) use ``factory``.

    ``factory(max_workers)`` returns an executor, or is a ``"module:attribute"`` path
    to such a callable. The keyword arguments declare capabilities (see
    ``ExecutorInfo``). A name already registered is refused unless ``replace=True``.

    >>> register_executor("mine", "nbflow.executor.local:ThreadExecutor")
    >>> register_executor("mine", "nbflow.executor.local:ThreadExecutor")
    Traceback (most recent call last):
    ...
    nbflow.errors.NbflowError: Executor 'mine' is already registered; ...
    >>> unregister_executor("mine")
    """
    # The name becomes a command-line choice: no spaces, and no leading dash.
    if not isinstance(name, str) or not name or name[0] == "-" or any(c.isspace() for c in name):
        raise NbflowError(
            f"Expected an executor name to be a non-empty word (e.g. 'gpu'), but got {name!r}."
        )
    check_factory(
        factory,
        f"Expected the factory of executor '{name}' to be a callable taking max_workers "
        f"or a 'module:attribute' path, but got {factory!r}.",
    )
    info = ExecutorInfo(name, factory, summary, inline, other_processes, remote_values)
    _registry.add(
        name,
        info,
        replace=replace,
        taken=f"Executor '{name}' is already registered; pass replace=True to "
        "register_executor to replace it.",
    )


def unregister_executor(name: str) -> None:
    """Forget the executor registered as ``name``."""
    _registry.remove(name, missing=f"No executor '{name}' is registered; nothing to unregister.")


def executor_names() -> tuple[str, ...]:
    """The registered executor names, in the order they were registered.

    >>> executor_names()[:4]
    ('threads', 'processes', 'sequential', 'dask')
    """
    return _registry.names()


def executor_info(name: str) -> ExecutorInfo:
    """What is registered as ``name``; an ``NbflowError`` naming the choices if nothing is.

    >>> executor_info("processes").other_processes
    True
    """
    info = _registry.get(name)
    if info is None:
        names = executor_names()
        raise NbflowError(
            f"Unknown executor {name!r}.{did_you_mean(name, names)} "
            f"Choose one of: {', '.join(names)}, or pass an executor instance."
        )
    return info


def resolve_executor(spec: Any, max_workers: int | None) -> Executor:
    """An executor for ``flow.run(executor=..., max_workers=...)``: a registered name,
    or an executor instance (then ``max_workers`` must be left out)."""
    try:
        check_max_workers(max_workers)
    except ValueError as exc:
        raise NbflowError(str(exc)) from None
    if isinstance(spec, str):
        return executor_info(spec).create(max_workers)
    if isinstance(spec, Executor):
        if max_workers is not None:
            raise NbflowError(
                "max_workers= applies to executors given by name; set it on the "
                f"instance instead (e.g. {type(spec).__name__}(max_workers={max_workers}))."
            )
        return spec
    raise NbflowError(
        f"Expected executor to be one of {', '.join(map(repr, executor_names()))} or an "
        f"executor instance, but got {spec!r}."
    )


# The built-in executors. Factories are paths so that joblib and Dask load only when
# a run asks for them.
register_executor(
    "threads",
    "nbflow.executor.local:ThreadExecutor",
    summary="a pool of threads in this process",
)
register_executor(
    "processes",
    "nbflow.executor.processes:ProcessExecutor",
    summary="worker processes from joblib's loky, tasks and inputs must pickle",
    other_processes=True,
)
register_executor(
    "sequential",
    "nbflow.executor.local:sequential_executor",
    summary="one task at a time, in the calling thread",
    inline=True,
)
register_executor(
    "dask",
    "nbflow.executor.dask:dask_executor",
    summary="a local Dask cluster, results stay on its workers",
    other_processes=True,
    remote_values=True,
)
