"""The deferred graph: ``Flow``, its ``Node`` handles and ``Edge`` records.

A flow is plain data: nodes (a task plus how it is called) and edges. Building it
runs nothing; ``flow.run()`` hands it to the scheduler.
"""

from __future__ import annotations

import contextvars
import graphlib
import inspect
import io
import itertools
import operator
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbflow.errors import CycleError, FlowError, TaskDefinitionError, did_you_mean
from nbflow.graph.options import check_hooks
from nbflow.graph.task import Task, node_refusal, unmapped

if TYPE_CHECKING:
    import graphviz

    from nbflow.engine.run import FlowRun

_current: contextvars.ContextVar[Flow | None] = contextvars.ContextVar("nbflow_flow", default=None)
_registry: weakref.WeakValueDictionary[str, Flow] = weakref.WeakValueDictionary()
# The condition nodes of the ``case`` blocks open in this context (see nbflow.graph.control).
active_case: contextvars.ContextVar[tuple[Node, ...]] = contextvars.ContextVar(
    "nbflow_case", default=()
)
_ids = itertools.count(1)
FlowHook = Callable[[Any, Any], Any]


def _getitem(value: Any, key: Any) -> Any:
    return value[key]


_GETITEM: Task[Any, Any] = Task(_getitem, name="getitem", cache=False)


def _and(a: Any, b: Any) -> Any:
    return a and b


def _or(a: Any, b: Any) -> Any:
    return a or b


# The tasks an operator on a node builds (Prefect 1's operator tasks), by symbol.
_symbols: dict[str, Callable[..., Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
    "@": operator.matmul,
    "^": operator.xor,
    "<<": operator.lshift,
    ">>": operator.rshift,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "not": operator.not_,
    "and": _and,
    "or": _or,
}
_OPERATORS: dict[str, Task[Any, Any]] = {
    symbol: Task(fn, name=fn.__name__.strip("_"), cache=False) for symbol, fn in _symbols.items()
}


def current_flow() -> Flow | None:
    """The flow whose ``with`` block is active in this context, if any."""
    return _current.get()


def registered_flow(name: str) -> Flow | None:
    """The latest flow built in this process under ``name``."""
    return _registry.get(name)


class Node:
    """A task's place in a flow: what calling a task inside ``with Flow`` returns.

    A node is a handle, not a value: it refuses ``bool()``, iteration, indexing and
    arithmetic with a message that says to run the flow.
    """

    __slots__ = ("__weakref__", "id", "name", "task")

    def __init__(self, task: Task[Any, Any], name: str) -> None:
        self.task = task
        self.name = name
        self.id = next(_ids)

    def __repr__(self) -> str:
        return f"<Node '{self.name}' of task '{self.task.name}'>"

    def __bool__(self) -> bool:
        raise TypeError(node_refusal(self, "a truth test (if/and/or)"))

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(node_refusal(self, "iteration or unpacking"))

    def __len__(self) -> int:
        raise TypeError(node_refusal(self, "len()"))

    def __getitem__(self, key: Any) -> Node:
        """A node selecting ``result[key]``, inside ``with Flow``: ``node["a"]``, ``node[0]``."""
        flow = current_flow()
        if flow is None or self not in flow._calls:
            raise TypeError(
                node_refusal(self, "indexing outside its flow's 'with' block")
                + " Inside 'with flow:', node[key] makes a node that selects from its result."
            )
        try:
            hash(key)
        except TypeError:
            raise TypeError(
                f"Cannot index node '{self.name}' with {key!r}: use a hashable key "
                "(an int, a string, a tuple)."
            ) from None
        return flow.add_call(
            _GETITEM.with_options(name=f"{self.name}[{key!r}]"),
            (self, key),
            {},
            mapped=False,
            wait_for=None,
        )

    def __getattr__(self, item: str) -> Any:
        if item.startswith("__"):
            raise AttributeError(item)
        raise AttributeError(node_refusal(self, f"attribute access (.{item})"))

    def __float__(self) -> float:
        raise TypeError(node_refusal(self, "float()"))

    def __int__(self) -> int:
        raise TypeError(node_refusal(self, "int()"))

    def __index__(self) -> int:
        raise TypeError(node_refusal(self, "an index"))

    def _operate(self, symbol: str, *args: Any) -> Node:
        """A node computing ``symbol`` on the results, inside ``with Flow`` (Prefect 1's
        operators: ``x + 1``, ``x < y``)."""
        flow = current_flow()
        if flow is None or self not in flow._calls:
            raise TypeError(
                node_refusal(self, f"'{symbol}' outside its flow's 'with' block")
                + f" Inside 'with flow:', '{symbol}' makes a node that computes it."
            )
        shown = [a.name if isinstance(a, Node) else repr(a) for a in args]
        label = f"{symbol} {shown[0]}" if len(args) == 1 else f"{shown[0]} {symbol} {shown[1]}"
        return flow.add_call(
            _OPERATORS[symbol].with_options(name=label), args, {}, mapped=False, wait_for=None
        )

    def __add__(self, other: Any) -> Node:
        return self._operate("+", self, other)

    def __radd__(self, other: Any) -> Node:
        return self._operate("+", other, self)

    def __sub__(self, other: Any) -> Node:
        return self._operate("-", self, other)

    def __rsub__(self, other: Any) -> Node:
        return self._operate("-", other, self)

    def __mul__(self, other: Any) -> Node:
        return self._operate("*", self, other)

    def __rmul__(self, other: Any) -> Node:
        return self._operate("*", other, self)

    def __truediv__(self, other: Any) -> Node:
        return self._operate("/", self, other)

    def __rtruediv__(self, other: Any) -> Node:
        return self._operate("/", other, self)

    def __floordiv__(self, other: Any) -> Node:
        return self._operate("//", self, other)

    def __rfloordiv__(self, other: Any) -> Node:
        return self._operate("//", other, self)

    def __mod__(self, other: Any) -> Node:
        return self._operate("%", self, other)

    def __rmod__(self, other: Any) -> Node:
        return self._operate("%", other, self)

    def __pow__(self, other: Any) -> Node:
        return self._operate("**", self, other)

    def __rpow__(self, other: Any) -> Node:
        return self._operate("**", other, self)

    def __matmul__(self, other: Any) -> Node:
        return self._operate("@", self, other)

    def __rmatmul__(self, other: Any) -> Node:
        return self._operate("@", other, self)

    # As in Prefect 1: ``&`` is a logical and, ``a | b`` makes ``b`` wait for ``a``.
    def __and__(self, other: Any) -> Node:
        return self._operate("and", self, other)

    def __rand__(self, other: Any) -> Node:
        return self._operate("and", other, self)

    def __or__(self, other: Any) -> Any:
        """``a | b``: ``b`` waits for ``a`` (an ordering edge); returns ``b``'s node."""
        self.set_downstream(other)
        return other

    def __ror__(self, other: Any) -> Node:
        """``a | b`` where ``a`` is a task: ``b`` (this node) waits for ``a``."""
        return self.set_upstream(other)

    def __xor__(self, other: Any) -> Node:
        return self._operate("^", self, other)

    def __rxor__(self, other: Any) -> Node:
        return self._operate("^", other, self)

    def __lshift__(self, other: Any) -> Node:
        return self._operate("<<", self, other)

    def __rlshift__(self, other: Any) -> Node:
        return self._operate("<<", other, self)

    def __rshift__(self, other: Any) -> Node:
        return self._operate(">>", self, other)

    def __rrshift__(self, other: Any) -> Node:
        return self._operate(">>", other, self)

    def __lt__(self, other: Any) -> Node:
        return self._operate("<", self, other)

    def __le__(self, other: Any) -> Node:
        return self._operate("<=", self, other)

    def __gt__(self, other: Any) -> Node:
        return self._operate(">", self, other)

    def __ge__(self, other: Any) -> Node:
        return self._operate(">=", self, other)

    # ``==`` and ``!=`` keep their identity meaning: nodes are dictionary keys everywhere
    # (Prefect 1 keeps them too, for the same reason). These methods build the tasks.
    def is_equal(self, other: Any) -> Node:
        """A node computing ``result == other`` (``node == other`` compares nodes)."""
        return self._operate("==", self, other)

    def is_not_equal(self, other: Any) -> Node:
        """A node computing ``result != other``."""
        return self._operate("!=", self, other)

    def not_(self) -> Node:
        """A node computing ``not result`` (``not node`` is a truth test, refused)."""
        return self._operate("not", self)

    def and_(self, other: Any) -> Node:
        """A node computing ``result and other``."""
        return self._operate("and", self, other)

    def or_(self, other: Any) -> Node:
        """A node computing ``result or other``."""
        return self._operate("or", self, other)

    def __neg__(self) -> Any:
        raise TypeError(node_refusal(self, "arithmetic"))

    __pos__ = __abs__ = __invert__ = __neg__

    def __contains__(self, item: Any) -> bool:
        raise TypeError(node_refusal(self, "'in'"))

    def set_upstream(
        self, task: Any, flow: Flow | None = None, key: str | None = None, mapped: bool = False
    ) -> Node:
        """Make this node wait for ``task`` (with ``key``: take it as that argument);
        returns this node, for chaining."""
        _flow_of(self, flow, "set_upstream").add_edge(task, self, key=key, mapped=mapped)
        return self

    def set_downstream(
        self, task: Any, flow: Flow | None = None, key: str | None = None, mapped: bool = False
    ) -> Node:
        """Make ``task`` wait for this node (with ``key``: take it as that argument);
        returns this node, for chaining."""
        _flow_of(self, flow, "set_downstream").add_edge(self, task, key=key, mapped=mapped)
        return self

    def set_dependencies(
        self,
        flow: Flow | None = None,
        upstream_tasks: Iterable[Any] | None = None,
        downstream_tasks: Iterable[Any] | None = None,
        keyword_tasks: Mapping[str, Any] | None = None,
        mapped: bool = False,
    ) -> Node:
        """``flow.set_dependencies(this node, ...)`` (default: the ``with Flow`` block)."""
        _flow_of(self, flow, "set_dependencies").set_dependencies(
            self, upstream_tasks, downstream_tasks, keyword_tasks, mapped
        )
        return self


@dataclass(frozen=True, slots=True)
class Edge:
    """An edge of a flow: data (``key`` names the argument) or ordering (``key=None``)."""

    upstream: Node
    downstream: Node
    key: str | None = None
    mapped: bool = False


@dataclass(frozen=True, slots=True)
class MapSource:
    """An argument a mapped node iterates over: a list literal or an upstream node.

    ``flat``: the node of a ``flatten``, one child per element of the upstream's lists
    (of each child's list, for a mapped upstream); such a child takes its element, or
    the state of the upstream child it comes from, without running anything.
    """

    source: Any  # Node or list
    flat: bool = False


@dataclass(slots=True)
class Call:
    """How a node's task is called: arguments may hold nodes, also inside containers."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    mapped: bool = False
    # Upstream nodes a mapped node iterates over without taking their values (mapped
    # ordering edges, Prefect 1's mapped ``upstream_tasks``): child i waits for child i
    # of a mapped one; a node that is not mapped gives one child per item of its value.
    over: tuple[Node, ...] = ()

    def copy(self) -> Call:
        return Call(self.args, dict(self.kwargs), self.mapped, self.over)

    def mapped_inputs(self) -> list[tuple[str, MapSource]]:
        """What a mapped call iterates over, by argument (``after NAME`` for ``over``)."""
        found = [
            (str(key), value)
            for key, value in (*enumerate(self.args), *self.kwargs.items())
            if isinstance(value, MapSource)
        ]
        found.extend((f"after {n.name}", MapSource(n)) for n in self.over)
        return found


_CONTAINERS = (list, tuple, dict, set, frozenset)


def iter_nodes(value: Any) -> Iterator[Node]:
    """The nodes found in an argument, also inside lists, tuples, dicts and sets."""
    if isinstance(value, Node):
        yield value
    elif isinstance(value, MapSource):
        yield from iter_nodes(value.source)
    elif type(value) in _CONTAINERS:
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            yield from iter_nodes(item)


class Nodes(tuple[Node, ...]):
    """A flow's nodes; ``task in flow.tasks`` also holds for a task the flow calls."""

    __slots__ = ()

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Task):
            return any(n.task is item for n in self)
        return tuple.__contains__(self, item)


class Flow:
    """A graph of tasks, built by calling tasks inside ``with Flow(...)`` or directly.

    >>> from nbflow import Flow, task
    >>> @task(cache=False)
    ... def inc(x):
    ...     return x + 1
    >>> with Flow("doc") as flow:
    ...     a = inc(1)
    ...     b = inc(a)
    >>> run = flow.run(executor="sequential")
    >>> run.result(b)
    3
    >>> [n.name for n in flow.sorted()]
    ['inc', 'inc-2']
    """

    def __init__(
        self,
        name: str,
        tasks: Iterable[Task[Any, Any] | Node] | None = None,
        *,
        on_failure: FlowHook | Iterable[FlowHook] | None = None,
        on_success: FlowHook | Iterable[FlowHook] | None = None,
        on_state_change: FlowHook | Iterable[FlowHook] | None = None,
        state_handlers: Callable[..., Any] | Iterable[Callable[..., Any]] | None = None,
        terminal_state_handler: Callable[..., Any] | None = None,
        reference_tasks: Iterable[Task[Any, Any] | Node | str] | None = None,
        _register: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise FlowError(f"Expected the flow name to be a non-empty string, but got {name!r}.")
        self.name = name
        self.on_failure = _flow_hooks(name, "on_failure", on_failure)
        self.on_success = _flow_hooks(name, "on_success", on_success)
        self.on_state_change = check_hooks(
            f"Flow '{name}'",
            "on_state_change",
            on_state_change,
            "hook(task, task_run, old_state, new_state), also called as "
            "hook(flow, flow_run, old_state, new_state) for the run's own changes",
            FlowError,
        )
        # Prefect 1's flow state handlers: the flow's own transitions, not its tasks'.
        self.state_handlers = check_hooks(
            f"Flow '{name}'",
            "state_handlers",
            state_handlers,
            "handler(flow, old_state, new_state)",
            FlowError,
        )
        if terminal_state_handler is not None and not callable(terminal_state_handler):
            raise FlowError(
                f"Flow '{name}': expected terminal_state_handler to be a callable "
                "handler(flow, state, reference_task_runs) returning a State or None, but "
                f"got {terminal_state_handler!r}."
            )
        # Prefect 1's terminal state handler: may change the run's final state.
        self.terminal_state_handler = terminal_state_handler
        self._reference: tuple[Node, ...] | None = None
        self._parameters: tuple[int, dict[str, Any]] | None = None  # by version
        self._calls: dict[Node, Call] = {}
        self._by_name: dict[str, Node] = {}
        self._names: dict[Node, str] = {}
        self._next_suffix: dict[str, int] = {}
        self._up: dict[Node, dict[Node, None]] = {}
        self._down: dict[Node, dict[Node, None]] = {}
        self._edges: dict[Edge, None] = {}
        self._tokens: list[contextvars.Token[Flow | None]] = []
        self.version = 0
        for t in tasks or ():
            self.add_task(t)
        if reference_tasks is not None:  # of the tasks given with tasks=
            self.set_reference_tasks(reference_tasks)
        if _register:
            _registry[name] = self

    # -- context ---------------------------------------------------------------
    def __enter__(self) -> Flow:
        self._tokens.append(_current.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._tokens.pop())

    def __repr__(self) -> str:
        return f"<Flow '{self.name}': {len(self._calls)} tasks, {len(self._edges)} edges>"

    # -- inspection ------------------------------------------------------------
    @property
    def tasks(self) -> Nodes:
        """The nodes of the flow, in the order they were added (``task in flow.tasks``
        also asks whether the flow calls ``task``)."""
        return Nodes(self._calls)

    @property
    def edges(self) -> tuple[Edge, ...]:
        """The edges of the flow, in the order they were added."""
        return tuple(self._edges)

    def name_of(self, node: Node) -> str:
        """The name of ``node`` in this flow (unique within it)."""
        return self._names.get(node, node.name)

    def parameters(self) -> dict[str, Any]:
        """The flow's ``Parameter`` tasks by name."""
        found = self._parameters
        if found is None or found[0] != self.version:  # asked by every run: kept
            declared = {n.task.name: n.task for n in self._calls if _is_parameter(n.task)}
            found = self._parameters = (self.version, declared)
        return dict(found[1])

    @property
    def terminal_tasks(self) -> tuple[Node, ...]:
        """The nodes no other node waits for, in the order they were added."""
        return tuple(n for n in self._calls if not self._down[n])

    @property
    def reference_tasks(self) -> tuple[Node, ...]:
        """The nodes whose states decide the flow run's state (``run.ok``): those given
        to ``set_reference_tasks``, else the terminal tasks (Prefect 1's default)."""
        return self._reference if self._reference is not None else self.terminal_tasks

    def set_reference_tasks(self, tasks: Iterable[Node | Task[Any, Any] | str]) -> None:
        """Make the flow's ``ok``/``state`` depend on these tasks only (e.g. not on a
        cleanup task that runs whatever happened). An empty list goes back to the
        default: the terminal tasks.

        >>> from nbflow import Flow, task
        >>> @task(cache=False)
        ... def work():
        ...     raise ValueError("broken")
        >>> @task(cache=False, trigger="all_finished")
        ... def cleanup(_):
        ...     return "cleaned"
        >>> with Flow("ref") as flow:
        ...     done = cleanup(work())
        >>> flow.run(executor="sequential").ok  # decided by the terminal task, cleanup
        True
        >>> flow.set_reference_tasks([flow.node(work)])
        >>> flow.run(executor="sequential").ok
        False
        """
        if isinstance(tasks, (Node, Task, str)):
            tasks = [tasks]
        elif not isinstance(tasks, Iterable):
            raise FlowError(
                f"Flow '{self.name}': set_reference_tasks() expects a list of tasks or "
                f"nodes, but got {tasks!r}."
            )
        nodes = tuple(dict.fromkeys(self.node(t) for t in tasks))
        self._reference = nodes or None

    def call(self, node: Node | Task[Any, Any] | str) -> Call:
        """How ``node`` is called in this flow."""
        return self._calls[self.node(node)]

    def replace_call(self, node: Node | Task[Any, Any] | str, call: Call) -> None:
        """Call ``node`` with other arguments that hold no nodes (e.g. a parameter's
        value for one run). Its edges stay as they are."""
        if any(True for _ in iter_nodes((call.args, call.kwargs))):
            raise FlowError(
                f"Flow '{self.name}': replace_call() takes arguments without nodes; "
                "to add edges, call the task inside 'with flow:' instead."
            )
        self._calls[self.node(node)] = call
        self.version += 1

    def upstream(self, node: Node | Task[Any, Any] | str) -> tuple[Node, ...]:
        """The nodes ``node`` depends on."""
        return tuple(self._up[self.node(node)])

    def wiring(self) -> Iterator[tuple[Node, Call, str, Iterable[Node]]]:
        """Each node in ``sorted`` order with its call, its name and the nodes it
        depends on: what planning a run reads, without a lookup per question."""
        calls, names, up = self._calls, self._names, self._up
        for n in self.sorted():
            yield n, calls[n], names.get(n, n.name), up[n]

    def downstream(self, node: Node | Task[Any, Any] | str) -> tuple[Node, ...]:
        """The nodes that depend on ``node``."""
        return tuple(self._down[self.node(node)])

    def sorted(self) -> tuple[Node, ...]:
        """The nodes in an order where every node comes after its upstream nodes: in
        waves, each the nodes whose upstream nodes are all in earlier waves, in the
        order they were added (raises graphlib.CycleError for a cycle)."""
        order = {n: i for i, n in enumerate(self._calls)}
        up, down = self._up, self._down
        waiting: dict[Node, int] = {}
        wave: list[Node] = []
        for n in self._calls:
            count = len(up[n])
            if count:
                waiting[n] = count
            else:
                wave.append(n)
        out: list[Node] = []
        while wave:
            out.extend(wave)
            ready: list[Node] = []
            for n in wave:
                for d in down[n]:
                    left = waiting[d] - 1
                    waiting[d] = left
                    if not left:
                        ready.append(d)
            ready.sort(key=order.__getitem__)
            wave = ready
        if len(out) == len(order):
            return tuple(out)
        return self._sorted_by_graphlib(order)  # a cycle: graphlib names it

    def _sorted_by_graphlib(self, order: dict[Node, int]) -> tuple[Node, ...]:
        sorter: graphlib.TopologicalSorter[Node] = graphlib.TopologicalSorter()
        for n in self._calls:
            sorter.add(n, *self._up[n])
        sorter.prepare()
        out: list[Node] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=order.__getitem__)
            out.extend(ready)
            sorter.done(*ready)
        return tuple(out)

    def node(self, ref: Node | Task[Any, Any] | str) -> Node:
        """The node ``ref`` stands for: a node of this flow, a task in it once, or a name."""
        if isinstance(ref, Node):
            if ref not in self._calls:
                raise FlowError(f"Node '{ref.name}' is not part of flow '{self.name}'.")
            return ref
        if isinstance(ref, str):
            found = self._by_name.get(ref)
            if found is None:
                raise FlowError(
                    f"Flow '{self.name}' has no task named '{ref}'."
                    f"{did_you_mean(ref, self._by_name)}"
                )
            return found
        if isinstance(ref, Task):
            nodes = [n for n in self._calls if n.task is ref]
            if len(nodes) == 1:
                return nodes[0]
            if not nodes:
                raise FlowError(f"Task '{ref.name}' is not part of flow '{self.name}'.")
            names = ", ".join(f"'{self.name_of(n)}'" for n in nodes)
            raise FlowError(
                f"Task '{ref.name}' appears {len(nodes)} times in flow '{self.name}' "
                f"(nodes {names}); use the node returned when it was added."
            )
        raise FlowError(
            f"Expected a node, a task or a task name of flow '{self.name}', but got {ref!r}."
        )

    # -- building --------------------------------------------------------------
    def add_task(self, task: Task[Any, Any] | Node, *, new: bool = False) -> Node:
        """Add a task as a node (or return its node if it is already in the flow once).

        ``new=True`` always adds another node of the same task.
        """
        if isinstance(task, Node):
            if task not in self._calls:
                self._insert(task, Call())
            return task
        if not isinstance(task, Task):
            raise FlowError(
                f"Flow '{self.name}' can only hold tasks, but got {task!r}; "
                "decorate the function with @task first."
            )
        if not new:
            existing = [n for n in self._calls if n.task is task]
            if existing:
                return self.node(task)  # the one node, or an error naming them all
        node = Node(task, self._free_name(task.name))
        self._insert(node, Call())
        try:
            for condition in _case_conditions(self):  # added inside case(..., flow=flow)
                self._link(condition, node)
                self._edges[Edge(condition, node)] = None
        except BaseException:
            self._remove(node)
            raise
        return node

    def add_edge(
        self,
        upstream_task: Node | Task[Any, Any],
        downstream_task: Node | Task[Any, Any],
        key: str | None = None,
        mapped: bool = False,
    ) -> Edge:
        """Add an ordering edge, or with ``key`` a data edge into that argument.

        The keywords are Prefect 1's: ``add_edge(upstream_task=a, downstream_task=b, key="x")``.
        """
        _refuse_edge_into_parameter(self, downstream_task)
        up = self._resolve(upstream_task)
        down = self._resolve(downstream_task)
        call = self._calls[down]
        if key is None:
            self._link(up, down)
            if mapped and up not in call.over:
                # A mapped ordering edge: ``down`` runs once per item (or child) of
                # ``up``, without taking its values.
                call.over = (*call.over, up)
                call.mapped = True
            edge = Edge(up, down, None, mapped)
            self._edges[edge] = None
            self.version += 1
            return edge
        self._check_key(down, key)
        if key in call.kwargs:
            raise FlowError(
                f"Argument '{key}' of '{down.name}' in flow '{self.name}' is already set; "
                "each argument takes one value."
            )
        self._link(up, down)
        call.kwargs[key] = MapSource(up) if mapped else up
        if mapped:
            call.mapped = True
        edge = Edge(up, down, key, mapped)
        self._edges[edge] = None
        self.version += 1
        return edge

    def set_dependencies(
        self,
        task: Node | Task[Any, Any],
        upstream_tasks: Iterable[Node | Task[Any, Any]] | None = None,
        downstream_tasks: Iterable[Node | Task[Any, Any]] | None = None,
        keyword_tasks: Mapping[str, Any] | None = None,
        mapped: bool = False,
    ) -> Node:
        """Add ``task`` (if needed) with ordering edges and keyword inputs.

        A value of ``keyword_tasks`` that is not a task or node is a constant input;
        ``downstream_tasks`` wait for ``task``.

        >>> from nbflow import Flow, task
        >>> @task(cache=False)
        ... def add(x, y):
        ...     return x + y
        >>> flow = Flow("imperative")
        >>> node = flow.set_dependencies(add, keyword_tasks={"x": 1, "y": 2})
        >>> flow.run(executor="sequential").result(node)
        3
        """
        if upstream_tasks or keyword_tasks:
            _refuse_edge_into_parameter(self, task)
        node = self._resolve(task)
        for up in _as_list(upstream_tasks, "upstream_tasks", keep_unmapped=True):
            if isinstance(up, unmapped):  # not mapped over, even with mapped=True
                self.add_edge(up.value, node)
            else:
                self.add_edge(up, node, mapped=mapped)
        for down in _as_list(downstream_tasks, "downstream_tasks"):
            self.add_edge(node, down)
        for key, value in (keyword_tasks or {}).items():
            if isinstance(value, unmapped) and isinstance(value.value, (Node, Task)):
                self.add_edge(value.value, node, key=key)
            elif isinstance(value, (Node, Task)):
                self.add_edge(value, node, key=key, mapped=mapped)
            else:
                self._check_key(node, key)
                call = self._calls[node]
                if key in call.kwargs:
                    raise FlowError(
                        f"Argument '{key}' of '{node.name}' in flow '{self.name}' is already set."
                    )
                if mapped:
                    call.kwargs[key] = MapSource(_literal_items(node.task, key, value))
                    call.mapped = True
                else:
                    call.kwargs[key] = value
                self.version += 1
        return node

    def chain(self, *tasks: Node | Task[Any, Any]) -> list[Edge]:
        """Order ``tasks`` one after another with ordering edges (Prefect 1's ``chain``).

        >>> from nbflow import Flow, task
        >>> @task(cache=False)
        ... def step():
        ...     return 1
        >>> flow = Flow("chained")
        >>> a, b, c = (flow.add_task(step, new=True) for _ in range(3))
        >>> [flow.name_of(n) for n in flow.sorted()] == ["step", "step-2", "step-3"]
        True
        >>> len(flow.chain(c, b, a)), [flow.name_of(n) for n in flow.sorted()]
        (2, ['step-3', 'step-2', 'step'])
        """
        if len(tasks) < 2:
            raise FlowError(
                f"Flow '{self.name}': chain() orders two or more tasks, e.g. flow.chain(a, b, c)."
            )
        return [self.add_edge(a, b) for a, b in itertools.pairwise(tasks)]

    def update(self, other: Flow, *, merge_parameters: bool = False) -> None:
        """Merge the nodes and edges of ``other`` into this flow.

        A task both flows hold once, added as a task (``add_task``, ``set_dependencies``,
        a ``Parameter``) and called alike, becomes one node: its edges join the graphs.
        Two different parameters of one name are refused, unless ``merge_parameters=True``:
        then ``other``'s takes the place of this flow's (as in Prefect 1).
        """
        if not isinstance(other, Flow):
            raise FlowError(f"Flow.update() expects a Flow, but got {other!r}.")
        same: dict[Node, Node] = {}
        for node in other._calls:
            if node not in self._calls:
                found = self._shared_node(node, other)
                if found is not None:
                    same[node] = found
        replaced: dict[Node, Node] = {}
        mine = {n.task.name: n for n in self._calls if _is_parameter(n.task)}
        for node in other._calls:
            clash = mine.get(node.task.name)
            if clash is None or clash is node or node in same or not _is_parameter(node.task):
                continue
            if not merge_parameters:
                raise FlowError(
                    f"Flow '{self.name}' already has a parameter named '{node.task.name}', "
                    f"and so has flow '{other.name}'; parameter names are unique in a flow. "
                    "Use one Parameter in both, or flow.update(other, merge_parameters=True) "
                    "to keep the other flow's."
                )
            replaced[clash] = node
        if replaced:
            self._swap(replaced)
        for node, call in other._calls.items():
            if node in same:
                self._calls[same[node]].kwargs.update(_translated(call, same).kwargs)
            elif node not in self._calls:
                self._insert(node, _translated(call, same), link=False)
        for edge in other._edges:
            up = same.get(edge.upstream, edge.upstream)
            down = same.get(edge.downstream, edge.downstream)
            self._link(up, down)
            self._edges[Edge(up, down, edge.key, edge.mapped)] = None
        self.version += 1

    def _swap(self, swap: Mapping[Node, Node]) -> None:
        """Put each new node of ``swap`` in the place of its old one, edges included."""

        def new(node: Node) -> Node:
            return swap.get(node, node)

        self._calls = {new(n): _translated(c, swap) for n, c in self._calls.items()}
        self._names = {new(n): name for n, name in self._names.items()}
        self._by_name = {name: new(n) for name, n in self._by_name.items()}
        self._up = {new(n): {new(u): None for u in ups} for n, ups in self._up.items()}
        self._down = {new(n): {new(d): None for d in downs} for n, downs in self._down.items()}
        self._edges = {
            Edge(new(e.upstream), new(e.downstream), e.key, e.mapped): None for e in self._edges
        }
        if self._reference is not None:
            self._reference = tuple(new(n) for n in self._reference)

    def _shared_node(self, node: Node, other: Flow) -> Node | None:
        """The node of this flow that ``node`` of ``other`` stands for: the same task,
        once in each flow, whose two calls can be one (no positional arguments, no
        argument given by both)."""
        mine = [n for n in self._calls if n.task is node.task]
        theirs = [n for n in other._calls if n.task is node.task]
        if len(mine) != 1 or len(theirs) != 1:
            return None
        a, b = self._calls[mine[0]], other._calls[node]
        if a.args or b.args or a.mapped != b.mapped or a.kwargs.keys() & b.kwargs.keys():
            return None  # two different calls of one task
        return mine[0]

    def copy(self) -> Flow:
        """A new flow with the same nodes and edges (not registered under the name)."""
        new = Flow(
            self.name,
            on_failure=self.on_failure,
            on_success=self.on_success,
            on_state_change=self.on_state_change,
            state_handlers=self.state_handlers,
            terminal_state_handler=self.terminal_state_handler,
            _register=False,
        )
        new.update(self)
        new._reference = self._reference
        return new

    # -- running ---------------------------------------------------------------
    def run(
        self,
        executor: Any = None,
        max_workers: int | None = None,
        background: bool = False,
        show: bool | None = None,
        **options: Any,
    ) -> FlowRun:
        """Run the flow; returns a ``FlowRun`` (at once if ``background=True``).

        ``executor`` is "threads" (default), "processes", "sequential", or an
        executor instance such as ``ThreadExecutor(max_workers=4)``. ``show``: in a
        notebook (an IPython kernel with a front end) the live widget is displayed
        unless ``show=False``; elsewhere nothing is displayed, even with ``show=True``.
        Options left out take their defaults from ``NBFLOW_EXECUTOR``, ``NBFLOW_MAX_WORKERS`` and
        ``NBFLOW_REFRESH`` when set (``nbflow run`` sets them for a notebook's kernel).
        """
        from nbflow.graph.runner import runner

        options.update(executor=executor, max_workers=max_workers, background=background)
        return runner().start(self, show, options)

    def visualize(self, run: FlowRun | None = None) -> graphviz.Digraph:
        """A graphviz drawing of the flow, coloured by state when ``run`` is given."""
        from nbflow.graph.visualize import draw

        return draw(self, run)

    # -- internals -------------------------------------------------------------
    def _free_name(self, base: str) -> str:
        if base not in self._by_name:
            return base
        i = self._next_suffix.get(base, 2)
        while f"{base}-{i}" in self._by_name:
            i += 1
        self._next_suffix[base] = i + 1
        return f"{base}-{i}"

    def _insert(self, node: Node, call: Call, link: bool = True) -> None:
        _refuse_second_parameter(self, node)
        name = node.name
        if self._by_name.get(name, node) is not node:
            name = self._free_name(name)  # merged from another flow: same name, other node
        self._calls[node] = call
        self._by_name[name] = node
        self._names[node] = name
        self._up.setdefault(node, {})
        self._down.setdefault(node, {})
        if link:
            for up in {id(n): n for n in iter_nodes((call.args, call.kwargs, call.over))}.values():
                self._link(up, node)
        self.version += 1

    def _resolve(self, ref: Node | Task[Any, Any]) -> Node:
        if isinstance(ref, Node):
            if ref not in self._calls:
                self._insert(ref, Call())
            return ref
        if isinstance(ref, Task):
            return self.add_task(ref)
        raise FlowError(f"Expected a task or a node of flow '{self.name}', but got {ref!r}.")

    def _check_key(self, node: Node, key: str) -> None:
        sig = node.task.signature
        if sig is None:
            return
        params = sig.parameters
        if key in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return
        raise TaskDefinitionError(
            f"Task '{node.task.name}' got an unexpected argument '{key}'."
            f"{did_you_mean(key, params)}"
        )

    def _link(self, up: Node, down: Node) -> None:
        if up not in self._calls:
            self._insert(up, Call())
        if up in self._up[down]:
            return
        path = self._path(down, up)
        if path is not None or up is down:
            cycle = " -> ".join(self.name_of(n) for n in [up, *(path or [down])])
            raise CycleError(
                f"Flow '{self.name}' would have a cycle: {cycle}. Remove one of these dependencies."
            )
        self._up[down][up] = None
        self._down[up][down] = None

    def _path(self, start: Node, goal: Node) -> list[Node] | None:
        """A path of downstream edges from ``start`` to ``goal``, or None."""
        parents: dict[Node, Node | None] = {start: None}
        stack = [start]
        while stack:
            n = stack.pop()
            if n is goal:
                path = [n]
                while (p := parents[path[-1]]) is not None:
                    path.append(p)
                return path[::-1]
            for d in self._down[n]:
                if d not in parents:
                    parents[d] = n
                    stack.append(d)
        return None

    def add_call(
        self,
        task: Task[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        mapped: bool,
        wait_for: Iterable[Any] | None,
    ) -> Node:
        """Add a call of ``task`` with these arguments and return its node: what
        ``task(...)`` (``mapped=False``) or ``task.map(...)`` does inside the flow.
        Nodes among the arguments become edges; ``wait_for`` adds ordering edges.
        """
        args = tuple(self._argument(task, i, a) for i, a in enumerate(args))
        kwargs = {k: self._argument(task, k, v) for k, v in kwargs.items()}
        if not mapped:  # unmapped(x) means x outside .map() too, as in Prefect 1
            args = tuple(a.value if isinstance(a, unmapped) else a for a in args)
            kwargs = {k: v.value if isinstance(v, unmapped) else v for k, v in kwargs.items()}
        keys = _bind(task, args, kwargs, mapped)
        _refuse_one_shot(task, keys, mapped)
        waits = _as_list(wait_for, keep_unmapped=True)
        # A .map() with no argument to map over maps over its wait_for tasks (but those
        # in unmapped(...)), as Prefect 1's .map(upstream_tasks=[...]) does.
        over_waits = False
        if mapped:
            over_waits = all(isinstance(v, unmapped) for v in keys.values()) and any(
                not isinstance(w, unmapped) for w in waits
            )
            if not over_waits:
                args, kwargs = _map_arguments(task, args, kwargs, keys)
            else:
                args = tuple(a.value if isinstance(a, unmapped) else a for a in args)
                kwargs = {k: v.value if isinstance(v, unmapped) else v for k, v in kwargs.items()}
        node = Node(task, self._free_name(task.name))
        call = Call(args, kwargs, mapped)
        self._calls[node] = call
        self._by_name[node.name] = node
        self._names[node] = node.name
        self._up[node] = {}
        self._down[node] = {}
        try:
            for key, value in keys.items():
                is_mapped = mapped and not isinstance(value, unmapped)
                inner = value.value if isinstance(value, unmapped) else value
                for up in iter_nodes(inner):
                    self._link(up, node)
                    self._edges[Edge(up, node, key, is_mapped)] = None
            for dep in waits:
                over = over_waits and not isinstance(dep, unmapped)
                dep = dep.value if isinstance(dep, unmapped) else dep
                up = self._resolve(self._substitute(dep))
                self._link(up, node)
                if over and up not in call.over:
                    call.over = (*call.over, up)
                self._edges[Edge(up, node, None, over)] = None
            for dep in _case_conditions(self):
                up = self._resolve(self._substitute(dep))
                self._link(up, node)
                self._edges[Edge(up, node)] = None
        except BaseException:
            self._remove(node)
            raise
        self.version += 1
        return node

    def _remove(self, node: Node) -> None:
        for up in self._up.pop(node, {}):
            self._down[up].pop(node, None)
        for down in self._down.pop(node, {}):
            self._up[down].pop(node, None)
        self._calls.pop(node, None)
        self._by_name.pop(self._names.pop(node, node.name), None)
        for edge in [e for e in self._edges if node in (e.upstream, e.downstream)]:
            del self._edges[edge]

    def _argument(self, task: Task[Any, Any], where: int | str, value: Any) -> Any:
        """``_substitute`` for one argument of a call, refusing one nested too deep for
        nbflow to walk: the flow and the run walk containers recursively, a few frames
        per level, and would fail later with a bare RecursionError."""
        limit = sys.getrecursionlimit() // DEPTH_SHARE
        try:
            return self._substitute(value, limit)
        except (_TooDeep, RecursionError):
            pass
        name = where if isinstance(where, str) else _parameter_name(task, where)
        raise TaskDefinitionError(
            f"Task '{task.name}': argument '{name}' nests lists, tuples, sets or dicts more "
            f"than {limit} levels deep, more than nbflow can walk (a third of Python's "
            f"recursion limit, {sys.getrecursionlimit()}). Flatten it, or build it inside "
            "the task."
        ) from None

    def _substitute(self, value: Any, room: int = 1 << 30) -> Any:
        """Replace tasks by their nodes (adding them if new), also inside containers
        (at most ``room`` levels deep)."""
        if room < 0:
            raise _TooDeep
        if isinstance(value, Node):
            if value not in self._calls:
                raise FlowError(
                    f"Node '{value.name}' belongs to another flow, not to '{self.name}'. "
                    "Build both parts in the same flow, or merge them with flow.update(other)."
                )
            return value
        if isinstance(value, Task):
            return self._resolve(value)
        if isinstance(value, unmapped):
            return unmapped(self._substitute(value.value, room))
        t = type(value)
        if t is list or t is tuple or t is set or t is frozenset:
            return t(self._substitute(v, room - 1) for v in value)
        if t is dict:
            return {k: self._substitute(v, room - 1) for k, v in value.items()}
        return value


def _flow_of(ref: Any, flow: Flow | None, method: str) -> Flow:
    """The flow ``ref.set_upstream``/``set_downstream`` edits: ``flow=`` or the active one."""
    if flow is None:
        flow = current_flow()
    if flow is None:
        raise FlowError(
            f"'{ref.name}'.{method}(...) needs a flow: call it inside 'with Flow(...)', or "
            f"pass it, {method}(other, flow=flow)."
        )
    if not isinstance(flow, Flow):
        raise FlowError(f"{method}(): expected flow= to be a Flow, but got {flow!r}.")
    return flow


DEPTH_SHARE = 3  # an argument may nest containers a third of the recursion limit deep


class _TooDeep(Exception):  # noqa: N818 - internal signal, never seen by users
    """An argument nests containers deeper than a call allows."""


def _parameter_name(task: Task[Any, Any], index: int) -> str:
    """The name of the parameter the ``index``-th positional argument binds to."""
    sig = task.signature
    if sig is not None:
        params = list(sig.parameters.values())
        for i, p in enumerate(params):
            if p.kind is p.VAR_POSITIONAL:
                return f"{p.name}[{index - i}]"
            if i == index and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                return p.name
    return f"arg{index}"


def _case_conditions(flow: Flow) -> tuple[Node, ...]:
    return tuple(n for n in active_case.get() if n in flow._calls)


def _is_parameter(task: Task[Any, Any]) -> bool:
    return hasattr(task, "required")  # control.Parameter, which imports this module


def _refuse_second_parameter(flow: Flow, node: Node) -> None:
    if not _is_parameter(node.task):
        return
    for other in flow._calls:
        if other.task.name == node.task.name and _is_parameter(other.task):
            if other.task is node.task:
                continue
            raise FlowError(
                f"Flow '{flow.name}' already has a parameter named '{node.task.name}'; "
                "parameter names are unique in a flow. Use the first one again, or give "
                "this one another name."
            )


def _refuse_edge_into_parameter(flow: Flow, ref: Any) -> None:
    task = ref.task if isinstance(ref, Node) else ref
    if isinstance(task, Task) and _is_parameter(task):
        raise FlowError(
            f"Flow '{flow.name}': parameter '{task.name}' cannot have upstream tasks; its "
            "value is given when the flow runs. Add the edge to the task that reads it."
        )


def _translated(call: Call, same: Mapping[Node, Node]) -> Call:
    """``call`` with the nodes of ``same`` replaced (a node joined with another flow's)."""
    if not same:
        return call.copy()

    def swap(value: Any) -> Any:
        if isinstance(value, Node):
            return same.get(value, value)
        if isinstance(value, MapSource):
            return MapSource(swap(value.source), value.flat)
        t = type(value)
        if t is list or t is tuple or t is set or t is frozenset:
            return t(swap(v) for v in value)
        if t is dict:
            return {k: swap(v) for k, v in value.items()}
        return value

    return Call(
        tuple(swap(a) for a in call.args),
        {k: swap(v) for k, v in call.kwargs.items()},
        call.mapped,
        tuple(same.get(n, n) for n in call.over),
    )


def _as_list(wait_for: Any, label: str = "wait_for", keep_unmapped: bool = False) -> list[Any]:
    if wait_for is None:
        return []
    if isinstance(wait_for, (Node, Task, unmapped)):
        wait_for = [wait_for]
    if isinstance(wait_for, (list, tuple, set, Nodes)):
        if keep_unmapped:
            return list(wait_for)
        # unmapped(t) in wait_for= is t, an ordering edge as a whole (Prefect 1 allows it).
        return [t.value if isinstance(t, unmapped) else t for t in wait_for]
    raise TaskDefinitionError(f"{label}= expects a list of tasks or nodes, but got {wait_for!r}.")


def _bind(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], mapped: bool
) -> dict[str, Any]:
    """Check the call against the signature; map each argument value to its parameter name."""
    sig = task.signature
    if sig is None:
        keys = {f"arg{i}": a for i, a in enumerate(args)}
        keys.update(kwargs)
        return keys
    params = sig.parameters
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in kwargs:
        if key not in params and not has_var_kw:
            raise TaskDefinitionError(
                f"Task '{task.name}' got an unexpected argument '{key}'.{did_you_mean(key, params)}"
            )
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise TaskDefinitionError(
            f"Task '{task.name}' cannot be called like this: {exc}. "
            f"Its signature is {task.name}{sig}."
        ) from None
    keys = {}
    for name, value in bound.arguments.items():
        kind = params[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            keys.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            for i, v in enumerate(value):
                keys[f"{name}[{i}]"] = v
        else:
            keys[name] = value
    return keys


def _literal_items(task: Task[Any, Any], key: str, value: Any) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TaskDefinitionError(
            f"Task '{task.name}'.map() maps over argument '{key}', but got "
            f"{type(value).__name__} {value!r:.40}, which is not a list. Wrap constants "
            "in unmapped(...)."
        )
    return list(value)


def _refuse_one_shot(task: Task[Any, Any], keys: dict[str, Any], mapped: bool) -> None:
    """Refuse an iterator (a generator, ``map(...)``, ``iter(...)``) as an argument: the
    first attempt would consume it and a retry or a re-run would see it empty. A mapped
    argument is read once, when the call is built, so it may be one."""
    for key, value in keys.items():
        inner = value.value if isinstance(value, unmapped) else value
        if mapped and inner is value:
            continue
        if isinstance(inner, Iterator) and not isinstance(inner, io.IOBase):
            kind = (
                "a generator"
                if inspect.isgenerator(inner)
                else f"an iterator ({type(inner).__name__})"
            )
            raise TaskDefinitionError(
                f"Task '{task.name}': argument '{key}' is {kind}, which can be read only "
                "once, so a retry or a re-run would see it empty. Pass a list instead, "
                f"e.g. {key}=list(...)."
            )


def _map_arguments(
    task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], keys: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    names = {id(v): k for k, v in keys.items()}

    def convert(value: Any) -> Any:
        if isinstance(value, unmapped):
            return value.value
        if isinstance(value, Node):
            return MapSource(value)
        return MapSource(_literal_items(task, names.get(id(value), "?"), value))

    new_args = tuple(convert(a) for a in args)
    new_kwargs = {k: convert(v) for k, v in kwargs.items()}
    if not any(isinstance(a, MapSource) for a in (*new_args, *new_kwargs.values())):
        raise TaskDefinitionError(
            f"Task '{task.name}'.map() needs at least one argument to map over, or a task "
            "in wait_for=[...] to map over; every argument is wrapped in unmapped(...)."
        )
    return new_args, new_kwargs


def _flow_hooks(name: str, option: str, value: Any) -> tuple[FlowHook, ...]:
    return check_hooks(f"Flow '{name}'", option, value, "hook(flow, flow_run)", FlowError)
