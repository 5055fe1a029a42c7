"""Prefect 1's control-flow idioms: ``Parameter``, ``case``, ``merge``, ``switch``,
``ifelse``, ``flatten``."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from nbflow.errors import SKIP, FlowError, TaskDefinitionError
from nbflow.graph.branch import compare
from nbflow.graph.flow import Call, Flow, MapSource, Node, active_case, current_flow
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

    def __call__(self, *args: Any, flow: Flow | None = None, **kwargs: Any) -> Any:
        """The parameter's node in ``flow`` (default: the ``with Flow`` block), as in
        Prefect 1, where calling a parameter adds it and returns it."""
        if args or kwargs:
            given = ", ".join([*map(repr, args), *kwargs])
            raise TaskDefinitionError(
                f"Parameter '{self.name}' takes no arguments, but got unexpected keyword "
                f"argument or value {given}; its value is given when the flow runs: "
                f"flow.run({self.name}=...)."
            )
        target = _flow_for(f"Parameter('{self.name}')", flow)
        return target.add_task(self)

    def map(self, *args: Any, **kwargs: Any) -> Any:
        raise TaskDefinitionError(
            f"Parameter '{self.name}' cannot be mapped; map a task over it instead: "
            f"some_task.map({self.name})."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_parameter, (self.name, self.default, self.required))

    def __repr__(self) -> str:
        return f"<Parameter '{self.name}'>"


def _node_operator(name: str) -> Any:
    def operate(self: Parameter, *args: Any) -> Any:
        flow = current_flow()
        if flow is None:
            raise TypeError(
                f"Parameter '{self.name}' is not a value: its value is given when the flow "
                f"runs. Use it inside 'with Flow(...)', where {self.name}[key], "
                f"{self.name} + 1 and the like make nodes that compute them."
            )
        return getattr(flow.add_task(self), name)(*args)

    operate.__name__ = name
    operate.__doc__ = f"Inside ``with Flow``: the parameter's node's ``{name}``."
    return operate


# A parameter stands for its node inside ``with Flow``, as in Prefect 1: x["key"], x + 1.
for _name in (
    "__getitem__",
    *(f"__{op}__" for op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow")),
    *(f"__r{op}__" for op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow")),
    *(f"__{op}__" for op in ("and", "rand", "or", "ror", "xor", "lt", "le", "gt", "ge")),
    "is_equal",
    "is_not_equal",
    "not_",
    "and_",
    "or_",
):
    setattr(Parameter, _name, _node_operator(_name))


def _rebuild_parameter(name: str, default: Any, required: bool) -> Parameter:
    return Parameter(name, default, required)


# -- case / merge ----------------------------------------------------------------------


def _flow_for(what: str, flow: Flow | None) -> Flow:
    """The flow ``what`` builds into: ``flow=`` if given, else the one of ``with Flow``."""
    if flow is not None:
        if not isinstance(flow, Flow):
            raise FlowError(f"{what}(): expected flow= to be a Flow, but got {flow!r}.")
        return flow
    found = current_flow()
    if found is None:
        raise FlowError(
            f"{what}(...) is used inside 'with Flow(...)', or is given the flow it builds: "
            f"{what}(..., flow=flow)."
        )
    return found


@contextmanager
def case(node: Any, value: Any, *, flow: Flow | None = None) -> Iterator[Node]:
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

    A flow built without ``with`` passes itself: ``with case(choice, "a", flow=flow):``
    around ``flow.add_task``/``flow.set_dependencies`` calls.
    """
    flow = _flow_for("case", flow)
    if isinstance(value, (Node, Task)):
        raise TypeError(
            f"case(..., value) compares with a plain value, but got {value!r}; a task's "
            "result is not known while the flow is built. Compare inside a task instead."
        )
    test = Task(compare, name=f"case({getattr(node, 'name', node)} == {value!r})", cache=False)
    condition = flow.add_call(test, (node, value), {}, mapped=False, wait_for=None)
    token = active_case.set((*active_case.get(), condition))
    try:
        yield condition
    finally:
        active_case.reset(token)


def _first_not_none(*values: Any, cases: tuple[Any, ...] = ()) -> Any:
    # A case condition's value is True when taken and None when skipped.
    if any(taken is None for taken in cases):
        raise SKIP("the case block around this merge was not taken")
    return next((v for v in values if v is not None), None)


# not_all_skipped: the merge is skipped when every branch was (Prefect 1's merge).
_MERGE = Task(
    _first_not_none,
    name="merge",
    cache=False,
    skip_on_upstream_skip=False,
    trigger="not_all_skipped",
)


def merge(*nodes: Any, flow: Flow | None = None) -> Node:
    """The value of the first of ``nodes`` that was not skipped (Prefect 1's ``merge``);
    skipped itself when every one of them was, or when it sits in a ``case`` block
    not taken.

    >>> from nbflow import Flow, case, merge, task
    >>> @task(cache=False)
    ... def say(word):
    ...     return word
    >>> with Flow("none-taken") as flow:
    ...     with case(say("x"), "a"):
    ...         a = say("went a")
    ...     out = merge(a)
    >>> flow.run(executor="sequential")[out].state.value
    'skipped'
    """
    flow = _flow_for("merge", flow)
    if not nodes:
        raise FlowError("merge() needs the nodes of the branches to merge, e.g. merge(a, b).")
    conditions = tuple(n for n in active_case.get() if n in flow.tasks)
    kwargs = {"cases": conditions} if conditions else {}
    result: Node = flow.add_call(_MERGE, nodes, kwargs, mapped=False, wait_for=None)
    return result


# -- switch / ifelse ----------------------------------------------------------------------


def switch(
    condition: Any, cases: Mapping[Any, Any], *, flow: Flow | None = None
) -> dict[Any, Node]:
    """Run the task of ``cases`` whose key equals ``condition``'s result; the others end
    skipped, and so does what depends on them (but ``merge``). Prefect 1's ``switch``.

    The values of ``cases`` are nodes of the flow, tasks that take no arguments, lists
    of them (each waits for the condition; Prefect 1 guarded only the list) or None
    (nothing runs for that value). Returns the condition node of each case, by key.

    >>> from nbflow import Flow, merge, switch, task
    >>> @task(cache=False)
    ... def pick():
    ...     return "b"
    >>> @task(cache=False)
    ... def say(word):
    ...     return word
    >>> with Flow("switch") as flow:
    ...     a, b = say("went a"), say("went b")
    ...     _ = switch(pick(), {"a": a, "b": b})
    ...     out = merge(a, b)
    >>> flow.run(executor="sequential").result(out)
    'went b'
    """
    flow = _flow_for("switch", flow)
    if not isinstance(cases, Mapping) or not cases:
        raise FlowError(
            "switch(condition, cases) expects cases to be a non-empty dict of "
            f"{{value: task}}, but got {cases!r}."
        )
    guarded: dict[Any, list[Any]] = {}
    for value, branch in cases.items():  # all checked before the flow changes
        if branch is None:
            continue
        branches = list(branch) if isinstance(branch, (list, tuple)) else [branch]
        for b in branches:
            if not isinstance(b, (Node, Task)):
                raise FlowError(
                    f"switch(): the case {value!r} is {b!r}, not a task or a node of the flow."
                )
        guarded[value] = branches
    conditions: dict[Any, Node] = {}
    for value, branches in guarded.items():
        label = f"case({getattr(condition, 'name', condition)} == {value!r})"
        test = Task(compare, name=label, cache=False)
        node = flow.add_call(test, (condition, value), {}, mapped=False, wait_for=None)
        for b in branches:
            flow.add_edge(node, b)
        conditions[value] = node
    return conditions


def _truth(value: Any) -> bool:
    return bool(value)


_TRUTH = Task(_truth, name="bool", cache=False)


def ifelse(
    condition: Any, true_task: Any, false_task: Any, *, flow: Flow | None = None
) -> dict[Any, Node]:
    """Run ``true_task`` when ``condition``'s result is true, else ``false_task``; the
    other ends skipped. Prefect 1's ``ifelse``: ``switch`` on ``bool(condition)``.

    >>> from nbflow import Flow, ifelse, merge, task
    >>> @task(cache=False)
    ... def is_big(n):
    ...     return n > 10
    >>> @task(cache=False)
    ... def say(word):
    ...     return word
    >>> with Flow("ifelse") as flow:
    ...     big, small = say("big"), say("small")
    ...     _ = ifelse(is_big(3), big, small)
    ...     out = merge(big, small)
    >>> flow.run(executor="sequential").result(out)
    'small'
    """
    flow = _flow_for("ifelse", flow)
    name = getattr(condition, "name", condition)
    truth = flow.add_call(
        _TRUTH.with_options(name=f"bool({name})"), (condition,), {}, mapped=False, wait_for=None
    )
    return switch(truth, {True: true_task, False: false_task}, flow=flow)


# -- flatten ------------------------------------------------------------------------------


def _flatten(nested: Any) -> list[Any]:
    check_flattenable(nested)
    out: list[Any] = []
    for inner in nested:
        out.extend(flat_items(inner))
    return out


def check_flattenable(nested: Any) -> None:
    """Raise the ``TypeError`` that says ``flatten`` needs a list, unless ``nested`` is one."""
    if flat_atom(nested):
        raise TypeError(
            f"flatten() needs a list (of lists) to flatten, but got {type(nested).__name__} "
            f"{nested!r:.40}. Pass it a mapped task, or a task that returns a list."
        )


def flat_atom(value: Any) -> bool:
    """Whether ``flatten`` keeps ``value`` as one item rather than spreading it out."""
    return isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Iterable)


def flat_items(inner: Any) -> list[Any]:
    """The items one element of a flattened list gives: its own items, or itself when it
    is not a collection (as in Prefect 1)."""
    return [inner] if flat_atom(inner) else list(inner)


_FLATTEN = Task(_flatten, name="flatten", cache=False)


def _element(x: Any) -> Any:  # never called: a flatten's children take their element
    return x


_FLAT = Task(_element, name="flatten", cache=False)


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

    An item that is not a collection (a number, a string, a dict) is kept as it is:
    flattening ``[[1, 2], 3]`` gives ``[1, 2, 3]``. Flattening a task's result makes a
    mapped node, one child per element: a mapped task mapping over it element-wise
    sees each element's own state. A skipped child of ``node`` keeps its place as one
    skipped element (its value None), and a failed one as one ``upstream_failed``
    element, so only the elements that come from it are skipped or fail downstream.
    """
    flow = _flow_for("flatten", None)
    label = f"flatten({getattr(node, 'name', node)})"
    if not isinstance(node, (Node, Task)):  # a literal: flattened by a plain task
        literal: Node = flow.add_call(
            _FLATTEN.with_options(name=label), (node,), {}, mapped=False, wait_for=None
        )
        return literal
    result: Node = flow.add_call(
        _FLAT.with_options(name=label), (node,), {}, mapped=False, wait_for=None
    )
    source = flow.call(result).args[0]
    # Its edge stays; the call becomes a mapped one over the flattened source.
    flow._calls[result] = Call((MapSource(source, flat=True),), {}, True)
    flow.version += 1
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
