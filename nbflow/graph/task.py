"""``@task``: a function plus its run options, as immutable data."""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from nbflow.errors import TaskDefinitionError, did_you_mean
from nbflow.graph.triggers import TRIGGERS, Trigger

if TYPE_CHECKING:
    from nbflow.graph.flow import Node

P = ParamSpec("P")
R = TypeVar("R")

Hook = Callable[[Any, Any], Any]

_OPTION_NAMES = (
    "name",
    "retries",
    "retry_delay",
    "retry_backoff",
    "retry_jitter",
    "retry_on",
    "timeout",
    "trigger",
    "cache",
    "cache_expire",
    "cache_version",
    "tags",
    "log_prints",
    "on_failure",
    "on_retry",
    "on_success",
    "on_state_change",
    "skip_on_upstream_skip",
    "nout",
)


class unmapped:  # noqa: N801 - lower case, as in Prefect 1
    """Marks an argument of ``task.map(...)`` as the same for every child.

    >>> from nbflow import task, unmapped
    >>> @task(cache=False)
    ... def scale(x, factor):
    ...     return x * factor
    >>> scale.map([1, 2, 3], unmapped(10))
    [10, 20, 30]
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"unmapped({self.value!r})"


def _seconds(task_name: str, option: str, value: Any, *, allow_zero: bool) -> float:
    if isinstance(value, _dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskDefinitionError(
            f"Task '{task_name}': expected {option} to be a number of seconds or a "
            f"datetime.timedelta, but got {value!r}."
        )
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise TaskDefinitionError(
            f"Task '{task_name}': expected {option} to be {bound} seconds, but got {value!r}."
        )
    return float(value)


def check_hooks(
    owner: str, option: str, value: Any, signature: str, error: type[Exception]
) -> tuple[Hook, ...]:
    """``value`` (None, a callable or a list of them) as a tuple of hooks."""
    if value is None:
        return ()
    hooks = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    for hook in hooks:
        if not callable(hook):
            raise error(
                f"{owner}: expected {option} to be a callable {signature} or a list of them, "
                f"but got {hook!r}."
            )
    return hooks


def _hooks(task_name: str, option: str, value: Any) -> tuple[Hook, ...]:
    return check_hooks(
        f"Task '{task_name}'", option, value, "hook(task, task_run)", TaskDefinitionError
    )


class Task(Generic[P, R]):
    """A function with its run options. Immutable: ``with_options`` returns a copy.

    Outside a ``Flow`` a call runs the function now (with retries, timeout, log
    capture and the cache) and returns its value; inside ``with Flow(...)`` a call
    adds a node to the flow and returns that node.

    >>> from nbflow import task
    >>> @task(retries=2, cache=False)
    ... def inc(x):
    ...     return x + 1
    >>> inc(1)
    2
    >>> inc.with_options(retries=5).retries
    5
    """

    fn: Callable[P, R]
    name: str
    retries: int
    retry_delay: float
    retry_backoff: float
    retry_jitter: float
    retry_on: tuple[type[BaseException], ...]
    timeout: float | None
    trigger: str | Trigger
    cache: bool
    cache_expire: float | None
    cache_version: str | None
    tags: tuple[str, ...]
    log_prints: bool
    on_failure: tuple[Hook, ...]
    on_retry: tuple[Hook, ...]
    on_success: tuple[Hook, ...]
    on_state_change: tuple[Hook, ...]
    skip_on_upstream_skip: bool
    nout: int | None

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        retries: int = 0,
        retry_delay: float | _dt.timedelta = 0.0,
        retry_backoff: float = 1.0,
        retry_jitter: float = 0.0,
        retry_on: type[BaseException] | Sequence[type[BaseException]] = (Exception,),
        timeout: float | _dt.timedelta | None = None,
        trigger: str | Trigger = "all_successful",
        cache: bool = True,
        cache_expire: float | _dt.timedelta | None = None,
        cache_version: str | int | None = None,
        tags: Iterable[str] = (),
        log_prints: bool = True,
        on_failure: Hook | Sequence[Hook] | None = None,
        on_retry: Hook | Sequence[Hook] | None = None,
        on_success: Hook | Sequence[Hook] | None = None,
        on_state_change: Hook | Sequence[Hook] | None = None,
        skip_on_upstream_skip: bool = True,
        nout: int | None = None,
    ) -> None:
        if isinstance(fn, Task):
            raise TaskDefinitionError(
                f"'{fn.name}' is already a task. To change its options, use "
                f"{fn.name}.with_options(...) instead of decorating it again."
            )
        if not callable(fn):
            raise TaskDefinitionError(
                f"@task needs a function, but got {fn!r} of type {type(fn).__name__}."
            )
        fn_name = getattr(fn, "__name__", None) or type(fn).__name__
        if name is None:
            name = fn_name
        if not isinstance(name, str) or not name.strip():
            raise TaskDefinitionError(
                f"Task '{fn_name}': expected name to be a non-empty string, but got {name!r}."
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise TaskDefinitionError(
                f"Task '{name}': expected retries to be an int >= 0, but got {retries!r}."
            )
        delay = _seconds(name, "retry_delay", retry_delay, allow_zero=True)
        if isinstance(retry_backoff, bool) or not isinstance(retry_backoff, (int, float)):
            raise TaskDefinitionError(
                f"Task '{name}': expected retry_backoff to be a number >= 1, "
                f"but got {retry_backoff!r}."
            )
        if retry_backoff < 1:
            raise TaskDefinitionError(
                f"Task '{name}': expected retry_backoff to be a number >= 1 (the factor by "
                f"which each retry delay grows), but got {retry_backoff!r}."
            )
        if (
            isinstance(retry_jitter, bool)
            or not isinstance(retry_jitter, (int, float))
            or not 0 <= retry_jitter <= 1
        ):
            raise TaskDefinitionError(
                f"Task '{name}': expected retry_jitter to be a fraction between 0 and 1, "
                f"but got {retry_jitter!r}."
            )
        on = (retry_on,) if isinstance(retry_on, type) else retry_on
        if not isinstance(on, (tuple, list)) or not all(
            isinstance(e, type) and issubclass(e, BaseException) for e in on
        ):
            raise TaskDefinitionError(
                f"Task '{name}': expected retry_on to be an exception type or a tuple of "
                f"exception types (e.g. retry_on=(OSError,)), but got {retry_on!r}."
            )
        limit = None if timeout is None else _seconds(name, "timeout", timeout, allow_zero=False)
        if not isinstance(trigger, Trigger) and trigger not in TRIGGERS:
            raise TaskDefinitionError(
                f"Task '{name}': unknown trigger {trigger!r}.{did_you_mean(str(trigger), TRIGGERS)}"
                f" Choose one of: {', '.join(TRIGGERS)}."
            )
        if not isinstance(cache, bool):
            raise TaskDefinitionError(
                f"Task '{name}': expected cache to be True or False, but got {cache!r}."
            )
        expire = (
            None
            if cache_expire is None
            else _seconds(name, "cache_expire", cache_expire, allow_zero=False)
        )
        if cache_version is not None and not isinstance(cache_version, (str, int)):
            raise TaskDefinitionError(
                f"Task '{name}': expected cache_version to be a string or an int, "
                f"but got {cache_version!r}."
            )
        tag_tuple = (tags,) if isinstance(tags, str) else tuple(tags)
        if not all(isinstance(t, str) for t in tag_tuple):
            raise TaskDefinitionError(
                f"Task '{name}': expected tags to be strings, but got {tags!r}."
            )
        if not isinstance(skip_on_upstream_skip, bool):
            raise TaskDefinitionError(
                f"Task '{name}': expected skip_on_upstream_skip to be True or False, "
                f"but got {skip_on_upstream_skip!r}."
            )
        if nout is not None and (isinstance(nout, bool) or not isinstance(nout, int) or nout < 1):
            raise TaskDefinitionError(
                f"Task '{name}': expected nout to be an int >= 1 (how many values the task "
                f"returns, to unpack a, b = {name}(...)), but got {nout!r}."
            )
        if not isinstance(log_prints, bool):
            raise TaskDefinitionError(
                f"Task '{name}': expected log_prints to be True or False, but got {log_prints!r}."
            )
        values = {
            "fn": fn,
            "name": name,
            "retries": retries,
            "retry_delay": delay,
            "retry_backoff": float(retry_backoff),
            "retry_jitter": float(retry_jitter),
            "retry_on": tuple(on),
            "timeout": limit,
            "trigger": trigger,
            "cache": cache,
            "cache_expire": expire,
            "cache_version": None if cache_version is None else str(cache_version),
            "tags": tag_tuple,
            "log_prints": log_prints,
            "on_failure": _hooks(name, "on_failure", on_failure),
            "on_retry": _hooks(name, "on_retry", on_retry),
            "on_success": _hooks(name, "on_success", on_success),
            "on_state_change": check_hooks(
                f"Task '{name}'",
                "on_state_change",
                on_state_change,
                "hook(task, task_run, old_state, new_state)",
                TaskDefinitionError,
            ),
            "skip_on_upstream_skip": skip_on_upstream_skip,
            "nout": nout,
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            object.__setattr__(self, attr, getattr(fn, attr, None))
        object.__setattr__(self, "__wrapped__", fn)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(
            f"Task '{self.name}' is immutable; use {self.name}.with_options({key}=...) "
            "to get a copy with other options."
        )

    def __delattr__(self, key: str) -> None:
        raise AttributeError(
            f"Task '{self.name}' is immutable; its option '{key}' cannot be deleted."
        )

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with some options changed.

        >>> from nbflow import task
        >>> @task
        ... def load(path): ...
        >>> load.with_options(name="load_csv", retries=3).name
        'load_csv'
        """
        unknown = [k for k in options if k not in _OPTION_NAMES]
        if unknown:
            raise TaskDefinitionError(
                f"Task '{self.name}': unknown option '{unknown[0]}'."
                f"{did_you_mean(unknown[0], _OPTION_NAMES)}"
            )
        current = {k: getattr(self, k) for k in _OPTION_NAMES}
        current.update(options)
        return Task(self.fn, **current)

    @functools.cached_property
    def signature(self) -> inspect.Signature | None:
        """The function's signature, or None where Python cannot tell it."""
        try:
            return inspect.signature(self.fn)
        except (TypeError, ValueError):
            return None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(args, kwargs, mapped=False)

    def map(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task once per element of its arguments (zipped); see ``unmapped``.

        Inside a flow this returns one mapped node whose children are created at run
        time; outside, it runs now and returns the list of results.
        """
        return self._call(args, kwargs, mapped=True)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any], mapped: bool) -> Any:
        from nbflow.graph.flow import current_flow

        flow = current_flow()
        wait_for = kwargs.pop("wait_for", None)
        if flow is not None:
            node = flow._add_call(self, args, kwargs, mapped=mapped, wait_for=wait_for)
            if self.nout is not None and not mapped:
                return tuple(node[i] for i in range(self.nout))
            return node
        if wait_for is not None:
            raise TaskDefinitionError(
                f"Task '{self.name}': wait_for= only orders tasks inside 'with Flow(...)'; "
                "outside a flow the task runs at once."
            )
        from nbflow.graph.runner import runner

        return runner().run_now(self, args, kwargs, mapped)

    def __repr__(self) -> str:
        return f"<Task '{self.name}'>"

    def __reduce__(self) -> str | tuple[Any, ...]:
        module = sys.modules.get(self.__module__ or "")
        qualname: str = getattr(self, "__qualname__", None) or ""
        # A module-level task pickles by reference, unless its module is a script's or a
        # notebook's __main__, which another process cannot import: then, like the
        # function it wraps, it travels by value.
        importable = module is not None and module.__name__ != "__main__"
        if importable and getattr(module, qualname, None) is self:
            return qualname
        options = {k: getattr(self, k) for k in _OPTION_NAMES}
        return (_rebuild_task, (self.fn, options))


def _rebuild_task(fn: Callable[..., Any], options: dict[str, Any]) -> Task[Any, Any]:
    return Task(fn, **options)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    fn: None = None,
    /,
    **options: Any,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(fn: Any = None, /, **options: Any) -> Any:
    """Make a function a task: ``@task`` or ``@task(retries=3, ...)``.

    >>> from nbflow import task
    >>> @task
    ... def double(x):
    ...     return 2 * x
    >>> double.name
    'double'
    """
    unknown = [k for k in options if k not in _OPTION_NAMES]
    if unknown:
        where = f" for task '{getattr(fn, '__name__', fn)}'" if callable(fn) else ""
        raise TaskDefinitionError(
            f"@task got an unknown option '{unknown[0]}'{where}."
            f"{did_you_mean(unknown[0], _OPTION_NAMES)} Options are: {', '.join(_OPTION_NAMES)}."
        )
    if fn is None:
        return lambda f: Task(f, **options)
    if isinstance(fn, str):
        raise TaskDefinitionError(
            f"@task got the string {fn!r} where a function was expected. "
            f"To name a task, write @task(name={fn!r})."
        )
    return Task(fn, **options)


def node_refusal(node: Node, action: str) -> str:
    """The message of a node asked to act as a value."""
    return (
        f"'{node.name}' is a node of a flow, not a value: it cannot be used for {action} "
        "while the flow is being built. Run the flow with run = flow.run() and get the "
        f"value with run.result({node.name}), or pass the node to another task."
    )
