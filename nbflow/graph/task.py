"""``@task``: a function plus its run options, as immutable data."""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from nbflow.errors import TaskDefinitionError, did_you_mean
from nbflow.graph import options as _options
from nbflow.graph.options import Hook, OptionError
from nbflow.graph.triggers import Trigger

if TYPE_CHECKING:
    from nbflow.graph.flow import Node

P = ParamSpec("P")
R = TypeVar("R")


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
        retry_delay: float | _dt.timedelta | None = 0.0,
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
        # The parameters above are the table's options, with its defaults (a test
        # holds the two together); the table checks and normalises them.
        given = {k: v for k, v in locals().items() if k in _options.OPTIONS}
        if given["name"] is None:
            given["name"] = fn_name
        try:
            name = _options.check("name", given["name"], fn_name)
        except OptionError as exc:
            raise TaskDefinitionError(f"Task '{fn_name}': {exc}") from None
        try:
            values = _options.check_all(given, name)
        except OptionError as exc:
            raise TaskDefinitionError(f"Task '{name}': {exc}") from None
        object.__setattr__(self, "fn", fn)
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
        unknown = _options.unknown(options)
        if unknown is not None:
            raise TaskDefinitionError(
                f"Task '{self.name}': unknown option '{unknown}'."
                f"{did_you_mean(unknown, _options.NAMES)}"
            )
        current = {k: getattr(self, k) for k in _options.NAMES}
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
        With no argument to map over, once per item (or child) of its ``wait_for``
        tasks, without their values (Prefect 1's ``.map(upstream_tasks=[...])``).

        Inside a flow this returns one mapped node whose children are created at run
        time; outside, it runs now and returns the list of results.
        """
        return self._call(args, kwargs, mapped=True)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any], mapped: bool) -> Any:
        from nbflow.graph.flow import current_flow

        flow = current_flow()
        wait_for = kwargs.pop("wait_for", None)
        if flow is not None:
            node = flow.add_call(self, args, kwargs, mapped=mapped, wait_for=wait_for)
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

    def set_upstream(
        self, task: Any, flow: Any = None, key: str | None = None, mapped: bool = False
    ) -> Task[P, R]:
        """Make this task wait for ``task`` in ``flow`` (default: the ``with Flow`` block);
        with ``key``, take ``task``'s result as that argument (Prefect 1's method).
        Returns this task, for chaining."""
        from nbflow.graph.flow import _flow_of

        _flow_of(self, flow, "set_upstream").add_edge(task, self, key=key, mapped=mapped)
        return self

    def set_downstream(
        self, task: Any, flow: Any = None, key: str | None = None, mapped: bool = False
    ) -> Task[P, R]:
        """Make ``task`` wait for this task in ``flow`` (default: the ``with Flow`` block).
        Returns this task, for chaining."""
        from nbflow.graph.flow import _flow_of

        _flow_of(self, flow, "set_downstream").add_edge(self, task, key=key, mapped=mapped)
        return self

    def set_dependencies(
        self,
        flow: Any = None,
        upstream_tasks: Any = None,
        downstream_tasks: Any = None,
        keyword_tasks: Any = None,
        mapped: bool = False,
    ) -> Task[P, R]:
        """``flow.set_dependencies(this task, ...)`` (default: the ``with Flow`` block)."""
        from nbflow.graph.flow import _flow_of

        _flow_of(self, flow, "set_dependencies").set_dependencies(
            self, upstream_tasks, downstream_tasks, keyword_tasks, mapped
        )
        return self

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
        options = {k: getattr(self, k) for k in _options.NAMES}
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
    unknown = _options.unknown(options)
    if unknown is not None:
        where = f" for task '{getattr(fn, '__name__', fn)}'" if callable(fn) else ""
        raise TaskDefinitionError(
            f"@task got an unknown option '{unknown}'{where}."
            f"{did_you_mean(unknown, _options.NAMES)} Options are: {', '.join(_options.NAMES)}."
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
