"""Errors, warnings and the two control-flow signals tasks may raise.

Every message says what happened, where, and how to fix it.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterable


class NbflowError(Exception):
    """Base class of every error nbflow raises itself."""


class NbflowWarning(UserWarning):
    """Base class of nbflow's warnings (filter them with this category)."""


class TaskDefinitionError(NbflowError, TypeError):
    """A task was defined or called with options or arguments that cannot work."""


class FlowError(NbflowError, ValueError):
    """The graph of a flow was built in a way that cannot work."""


class CycleError(FlowError):
    """An edge would close a cycle in a flow."""


class RunError(NbflowError, RuntimeError):
    """A run was used in a way that cannot work (e.g. the result of an unfinished task)."""


class TaskTimeoutError(NbflowError, TimeoutError):
    """An attempt of a task ran longer than its ``timeout``."""


class WorkerDiedError(NbflowError, RuntimeError):
    """The worker process running an attempt died (crash, ``os._exit``, out-of-memory kill)."""


class UpstreamFailedError(NbflowError, RuntimeError):
    """A task did not run because an upstream task did not succeed."""


class CancelledError(NbflowError, RuntimeError):
    """A task did not finish because its run was cancelled."""


class RemoteError(NbflowError, RuntimeError):
    """An exception raised in a worker process that could not be sent back as itself."""


class Signal(Exception):  # noqa: N818 - the names follow Prefect 1's signals
    """Base of the signals a task raises to end itself with a given state."""

    # The traceback shown for the signal when it stands for an earlier failure (a
    # notebook cell that failed before and has not changed), instead of its own.
    user_traceback: str | None = None

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class SKIP(Signal):
    """Raise inside a task to end it ``skipped`` (its downstream is skipped too).

    >>> from nbflow import task, SKIP
    >>> @task(cache=False)
    ... def maybe(x):
    ...     if x is None:
    ...         raise SKIP("no input today")
    ...     return x
    >>> maybe(None) is None
    True
    """


class FAIL(Signal):
    """Raise inside a task to fail it at once, with no further retries."""


class SUCCESS(Signal):
    """Raise inside a task to end it at once as a success, with ``result`` as its value.

    >>> from nbflow import task, SUCCESS
    >>> @task(cache=False)
    ... def early():
    ...     raise SUCCESS("nothing to do", result=0)
    >>> early()
    0
    """

    def __init__(self, message: str = "", result: object = None) -> None:
        super().__init__(message)
        self.result = result


class RETRY(Signal):
    """Raise inside a task to retry it now (it counts against the task's ``retries``)."""


class LOOP(Signal):
    """Raise inside a task to run it again at once, with ``result`` as
    ``nbflow.context.get("task_loop_result")`` and the iteration's number as
    ``nbflow.context.get("task_loop_count")`` (2 on the second run). A loop is not a
    retry: it does not count against ``retries``, and waits for no ``retry_delay``.

    >>> from nbflow import task, LOOP, context
    >>> @task(cache=False)
    ... def accumulate(x):
    ...     total = context.get("task_loop_result", 0) + x
    ...     if context.get("task_loop_count", 1) < 5:
    ...         raise LOOP(result=total)
    ...     return total
    >>> accumulate(10)
    50
    """

    def __init__(self, message: str = "", result: object = None) -> None:
        super().__init__(message)
        self.result = result


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``" Did you mean 'x'?"`` suffix for an error message, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` that points at the code that called
    nbflow (a notebook cell, a script), however deep in nbflow the warning is raised.
    Where no such code is on the stack (a worker thread's callback), the caller of the
    function that warns, as ``stacklevel=2`` would."""
    import sysconfig

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame = sys._getframe(1)  # the function that calls warnings.warn
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back
        level += 1
    filename = frame.f_code.co_filename
    paths = sysconfig.get_paths()
    libraries = tuple({paths["stdlib"], paths["purelib"], paths["platlib"]})
    if filename.startswith(package) or filename.startswith((*libraries, "<frozen")):
        return 2
    return level
