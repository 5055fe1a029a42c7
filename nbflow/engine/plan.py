"""A flow compiled for running: per node, what it waits for and who waits for it."""

from __future__ import annotations

import weakref
from typing import Any

from nbflow.errors import TaskDefinitionError
from nbflow.graph.flow import Call, Flow, MapSource, Node, iter_nodes
from nbflow.graph.triggers import ALL_SUCCESSFUL, Trigger, as_trigger


class NodePlan:
    """One node of a flow compiled for running (a plain class with slots: a run of a new
    flow makes one per node, and a dataclass's generated init costs twice as much)."""

    __slots__ = (
        "call",
        "consumers",
        "elem_consumers",
        "elementwise",
        "flat",
        "frozen",
        "held",
        "key_memo",
        "literal",
        "mapped",
        "name",
        "node",
        "plain",
        "sources",
        "trigger",
        "whole",
    )

    def __init__(
        self, node: Node, call: Call, mapped: bool, name: str, trigger: Trigger = ALL_SUCCESSFUL
    ) -> None:
        self.node = node
        self.call = call
        self.mapped = mapped
        self.name = name
        # Upstream nodes needed as a whole (for a mapped upstream: all its children).
        self.whole: list[Node] = []
        # Mapped upstream nodes this mapped node iterates over child by child.
        self.elementwise: list[Node] = []
        # Upstream nodes (not mapped) whose value this mapped node iterates over.
        self.sources: list[Node] = []
        # Those of ``sources`` also passed whole (``unmapped(xs)`` beside ``xs`` mapped).
        self.held: list[Node] = []
        self.consumers: list[NodePlan] = []
        self.elem_consumers: list[NodePlan] = []
        # True when arguments hold no node and no MapSource: they are passed as they are.
        self.literal = True
        # The task's trigger as an object, resolved once here rather than per task run.
        self.trigger = trigger
        # The last cache key computed for this node and what it was computed from (the
        # fingerprint and the upstream keys), when its arguments cannot change otherwise.
        self.key_memo: tuple[str, tuple[Any, ...], str] | None = None
        # Whether the arguments hold only nodes and immutable plain values (None: not
        # checked yet), so that the key follows from the fingerprint and the upstream keys.
        self.frozen: bool | None = None
        # For the node of a ``flatten``: the upstream whose lists it flattens (waited for
        # as a whole); its children take their elements without running.
        self.flat: Node | None = None
        # Set by compile_plan: a node that is not mapped, under the default trigger. Once
        # its upstream tasks have all succeeded, it is ready with nothing else to decide.
        self.plain = False

    def __repr__(self) -> str:
        return f"<NodePlan '{self.name}'>"


# A flow's plans, kept while the flow lives and recompiled when its version changes.
_plans: weakref.WeakKeyDictionary[Flow, tuple[int, list[NodePlan]]] = weakref.WeakKeyDictionary()


def compile_plan(flow: Flow) -> list[NodePlan]:
    """Turn a flow into per-node plans in topological order (checks every call binds)."""
    cached = _plans.get(flow)
    if cached is not None and cached[0] == flow.version:
        return cached[1]
    plans: dict[Node, NodePlan] = {}
    checked: set[tuple[int, int, tuple[str, ...]]] = set()  # calls that bind, by shape
    for node, call, name, upstream in flow.wiring():
        task = node.task
        shape = (id(task), len(call.args), tuple(call.kwargs))
        if shape not in checked:
            _check_complete(name, node, call)  # whether it binds depends on the shape only
            checked.add(shape)
        plan = NodePlan(node, call, call.mapped, name, trigger=as_trigger(task.trigger))
        mapped_sources: list[Node] = []
        for _, value in call.mapped_inputs() if call.mapped or call.over else ():
            if isinstance(value.source, Node):
                src = value.source
                if value.flat:
                    plan.flat = src
                    continue
                if flow.call(src).mapped:
                    mapped_sources.append(src)
                elif src not in plan.sources:
                    plan.sources.append(src)
        whole: dict[Node, None] = {}
        for up in upstream:
            if up not in mapped_sources:
                whole[up] = None
        # A mapped source also used whole (e.g. unmapped(xs)) is waited for as a whole.
        for src in mapped_sources:
            if src in _whole_uses(call, src) or src in whole:
                whole[src] = None
        plan.whole = list(whole)
        if plan.sources:
            plan.held = [s for s in plan.sources if s in _whole_uses(call, s)]
        if mapped_sources:
            plan.elementwise = [s for s in dict.fromkeys(mapped_sources) if s not in whole]
        plan.literal = _literal(call)
        plan.plain = not (plan.mapped or plan.sources or plan.elementwise) and (
            plan.flat is None and plan.trigger is ALL_SUCCESSFUL
        )
        for up in plan.whole:
            plans[up].consumers.append(plan)
        for up in plan.elementwise:
            plans[up].elem_consumers.append(plan)
        plans[node] = plan
    result = list(plans.values())
    _plans[flow] = (flow.version, result)
    return result


_CONTAINERS = (list, tuple, dict, set, frozenset)


def _literal(call: Call) -> bool:
    """Whether ``call``'s arguments hold no node and no MapSource (passed as they are)."""
    for value in (*call.args, *call.kwargs.values()):
        if isinstance(value, (Node, MapSource)):
            return False
        if type(value) in _CONTAINERS and any(True for _ in iter_nodes(value)):
            return False
    return True


def _whole_uses(call: Call, src: Node) -> set[Node]:
    """Nodes used by ``call`` outside of a MapSource (as a whole value)."""
    found: set[Node] = set()
    for value in (*call.args, *call.kwargs.values()):
        if isinstance(value, MapSource):
            if not isinstance(value.source, Node):
                found.update(iter_nodes(value.source))
        else:
            found.update(iter_nodes(value))
    return found


def _check_complete(name: str, node: Node, call: Call) -> None:
    sig = node.task.signature
    if sig is None:
        return
    try:
        sig.bind(*call.args, **call.kwargs)
    except TypeError as exc:
        raise TaskDefinitionError(
            f"Task '{name}' cannot be called with the inputs the flow gives it: {exc}. "
            f"Pass them when calling the task, or with flow.set_dependencies({name}, "
            "keyword_tasks={...})."
        ) from None


def materialize(value: Any, values: dict[Node, Any], index: int | None) -> Any:
    """``value`` with each node replaced by its result and each MapSource by item ``index``."""
    if isinstance(value, Node):
        return values[value]
    if isinstance(value, MapSource):
        src = value.source
        if isinstance(src, Node):
            return values[src][index]
        return materialize(src[index], values, index)
    t = type(value)
    if t is list or t is tuple or t is set or t is frozenset:
        return t(materialize(v, values, index) for v in value)
    if t is dict:
        return {k: materialize(v, values, index) for k, v in value.items()}
    return value
