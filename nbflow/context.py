"""What a running task knows about its own run: ``nbflow.context.get(key)``.

Prefect 1's ``prefect.context`` for the keys a task reads about itself. Set by the
worker around each call of the task's function (a context variable, so each thread,
and each coroutine of an ``async def`` task, sees its own); outside a task it is empty.

Keys: ``task_name``, ``task_full_name`` (with the map index, ``inc[2]``),
``task_run_count`` (the run of this loop iteration: 1, then 2 on its first retry...),
and once the task has raised ``LOOP``: ``task_loop_count`` (2 on the second
iteration) and ``task_loop_result`` (the ``result`` given to the last ``LOOP``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_current: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "nbflow_task_context", default=_EMPTY
)


def get(key: str, default: Any = None) -> Any:
    """The value of ``key`` for the task running in this thread, or ``default``.

    >>> get("task_loop_count", 1)
    1
    """
    return _current.get().get(key, default)


def to_dict() -> dict[str, Any]:
    """A copy of the running task's context (empty outside a task)."""
    return dict(_current.get())


def enter(values: Mapping[str, Any]) -> contextvars.Token[Mapping[str, Any]]:
    """Make ``values`` the context of the code that runs next in this thread (the
    worker calls it around the task's function); ``leave(token)`` restores."""
    return _current.set(MappingProxyType(dict(values)))


def leave(token: contextvars.Token[Mapping[str, Any]]) -> None:
    _current.reset(token)
