"""What a drawing needs to know about a node: is it a ``case`` condition, a
``Parameter``, a mapped task or a plain task. One answer for the live widget
(``widget/layout.py``) and ``flow.visualize()``, so both draw branches alike.

A ``case(node, value)`` block adds one condition task, ``compare``, that every task in
the block waits for: it ends skipped (and so does the block) when ``node``'s result is
not ``value``.

>>> from nbflow import Flow, Parameter, case, task
>>> @task(cache=False)
... def pick(n):
...     return n
>>> with Flow("kinds") as flow:
...     n = Parameter("n", default=1)
...     choice = pick(n)
...     with case(choice, 1) as condition:
...         later = pick.map([1, 2])
>>> {flow.name_of(node): node_kind(flow, node) for node in flow.tasks}
{'n': 'parameter', 'pick': 'task', 'case(pick == 1)': 'case', 'pick-2': 'mapped'}
>>> is_condition(condition), is_condition(choice)
(True, False)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbflow.errors import SKIP

if TYPE_CHECKING:
    from nbflow.graph.flow import Edge, Flow


def compare(value: Any, expected: Any) -> bool:
    """The function of a ``case`` condition: skip unless ``value == expected``."""
    if value != expected:
        raise SKIP(f"case not taken: the value is {value!r}, not {expected!r}")
    return True


def is_condition(node: Any) -> bool:
    """True for the condition task of a ``case`` block."""
    return getattr(node.task, "fn", None) is compare


def node_kind(flow: Flow, node: Any) -> str:
    """``case`` (a branch condition), ``parameter``, ``mapped`` or ``task``."""
    if is_condition(node):
        return "case"
    if hasattr(node.task, "required"):
        return "parameter"
    return "mapped" if flow.call(node).mapped else "task"


def edge_label(flow: Flow, edge: Edge) -> str:
    """The argument an edge feeds, unless positional or into a condition (whose own
    name says what it compares)."""
    key = edge.key
    if not key or key.startswith("arg") or is_condition(edge.downstream):
        return ""
    return key


__all__ = ["compare", "edge_label", "is_condition", "node_kind"]
