"""Prefect 1's control-flow idioms: ``Parameter``, ``case``, ``merge``, ``flatten``."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nbflow.errors import FlowError, TaskDefinitionError
from nbflow.graph.branch import compare
from nbflow.graph.flow import Node, active_case, current_flow
from nbflow.graph.task import Task

_NO_DEFAULT: Any = type("NoDefault", (), {"__repr__": lambda self: "<no default>"})()


def _parameter_value(value: Any) -> Any:
    return value


class Parameter(Task[Any, Any]):
    """A value given when the flow runs: ``flow.run(parameters={"n": 3})`` or ``flow.run(n=3)``.

    Used inside ``with Flow`` like a task. Its value is part of the cache keys of the
    tasks that read it.

    >>> from nbflow import Flow, Parameter, task
    >>> @task(cache=False)
    ... def double(x):
    ...     return 2 * x
    >>> with Flow("params") as flow:
    ...     n = Parameter("n", default=1)
    ...     out = double(n)
    >>> flow.run(n=21, executor="sequential").result(out)
    42
    """

    default: Any
    required: bool

    def __init__(self, name: str, default: Any = _NO_DEFAULT, required: bool | None = None) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise TaskDefinitionError(
                f"Expected a parameter name that is a Python identifier (e.g. 'n_rows'), "
                f"but got {name!r}."
            )
        if required is None:
            required = default is _NO_DEFAULT
        if not isinstance(required, bool):
            raise TaskDefinitionError(
                f"Parameter '{name}': expected required to be True or False, but got {required!r}."
            )
        super().__init__(_parameter_value, name=name, cache=False)
        object.__setattr__(self, "default", None if default is _NO_DEFAULT else default)
        object.__setattr__(self, "required", required)
        flow = current_flow()
        if flow is not None:
            flow.add_task(self)

    def with_options(self, **options: Any) -> Task[Any, Any]:
        raise TaskDefinitionError(
            f"Parameter '{self.name}' has no task options; create another Parameter instead."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_parameter, (self.name, self.default, self.required))

    def __repr__(self) -> str:
        return f"<Parameter '{self.name}'>"


def _rebuild_parameter(name: str, default: Any, required: bool) -> Parameter:
    return Parameter(name, default, required)


# -- case / merge ----------------------------------------------------------------------


@contextmanager
def case(node: Any, value: Any) -> Iterator[Node]:
    """Tasks called in this block run only when ``node``'s result equals ``value``;
    otherwise they end skipped (and so does what depends on them, but ``merge``).

    >>> from nbflow import Flow, case, merge, task
    >>> @task(cache=False)
    ... def pick():
    ...     return "b"
    >>> @task(cache=False)
    ... def say(word):
    ...     return word
    >>> with Flow("branches") as flow:
    ...     choice = pick()
    ...     with case(choice, "a"):
    ...         a = say("went a")
    ...     with case(choice, "b"):
    ...         b = say("went b")
    ...     out = merge(a, b)
    >>> flow.run(executor="sequential").result(out)
    'went b'
    """
    flow = current_flow()
    if flow is None:
        raise FlowError("case(...) is used inside 'with Flow(...)', around the tasks it guards.")
    test = Task(compare, name=f"case({getattr(node, 'name', node)} == {value!r})", cache=False)
    condition = flow.add_call(test, (node, value), {}, mapped=False, wait_for=None)
    token = active_case.set((*active_case.get(), condition))
    try:
        yield condition
    finally:
        active_case.reset(token)


def _first_not_none(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


_MERGE = Task(_first_not_none, name="merge", cache=False, skip_on_upstream_skip=False)


def merge(*nodes: Any) -> Node:
    """The value of the first of ``nodes`` that was not skipped (Prefect 1's ``merge``)."""
    flow = current_flow()
    if flow is None:
        raise FlowError("merge(...) is used inside 'with Flow(...)'.")
    if not nodes:
        raise FlowError("merge() needs the nodes of the branches to merge, e.g. merge(a, b).")
    result: Node = flow.add_call(_MERGE, nodes, {}, mapped=False, wait_for=None)
    return result


# -- flatten ------------------------------------------------------------------------------


def _flatten(nested: Any) -> list[Any]:
    out: list[Any] = []
    for inner in nested:
        if inner is None:
            continue  # a skipped child
        out.extend(inner)
    return out


_FLATTEN = Task(_flatten, name="flatten", cache=False)


def flatten(node: Any) -> Node:
    """A node with the list-of-lists result of ``node`` flattened one level, to map over.

    >>> from nbflow import Flow, flatten, task
    >>> @task(cache=False)
    ... def upto(n):
    ...     return list(range(n))
    >>> @task(cache=False)
    ... def square(x):
    ...     return x * x
    >>> with Flow("flat") as flow:
    ...     squares = square.map(flatten(upto.map([1, 2, 3])))
    >>> flow.run(executor="sequential").result(squares)
    [0, 0, 1, 0, 1, 4]
    """
    flow = current_flow()
    if flow is None:
        raise FlowError("flatten(...) is used inside 'with Flow(...)'.")
    result: Node = flow.add_call(
        _FLATTEN.with_options(name=f"flatten({getattr(node, 'name', node)})"),
        (node,),
        {},
        mapped=False,
        wait_for=None,
    )
    return result


def parameter_value(text: str) -> tuple[str, Any] | None:
    """``NAME=VALUE`` as ``--param`` gives it (papermill's way): the value read as a
    Python literal, else the text itself; None when ``text`` is not of that form.

    >>> parameter_value("n=10"), parameter_value("day=2026-11-22"), parameter_value("x")
    (('n', 10), ('day', '2026-11-22'), None)
    """
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        return None
    try:
        return name, ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return name, raw
