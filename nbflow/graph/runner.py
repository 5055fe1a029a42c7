"""The seam between building a graph and running it: a registered ``Runner``.

``flow.run()`` and a task called outside a flow hand their work to the runner that
was registered, so the graph never imports the engine. The package face registers the
engine's runner by dotted path; it is imported at the first run, which keeps
``import nbflow`` light.

>>> class Echo:
...     def start(self, flow, show, options):
...         return ("start", flow, options["executor"])
...     def run_now(self, task, args, kwargs, mapped):
...         return ("now", args)
>>> previous = register_runner(Echo())
>>> runner().run_now(None, (1,), {}, False)
('now', (1,))
>>> _ = register_runner(previous)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from nbflow.seam import Seam

if TYPE_CHECKING:
    from nbflow.engine.run import FlowRun
    from nbflow.graph.flow import Flow
    from nbflow.graph.task import Task


class Runner(Protocol):
    """What runs a flow (``start``) and a task called outside a flow (``run_now``)."""

    def start(self, flow: Flow, show: bool | None, options: dict[str, Any]) -> FlowRun:
        """Start a run of ``flow`` with ``flow.run()``'s options; ``show`` as there."""
        ...

    def run_now(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any], mapped: bool
    ) -> Any:
        """Run one task at once and return its value (or raise its error)."""
        ...


_seam: Seam[Runner] = Seam("runner to run flows")


def register_runner(runner: Runner | str | None) -> Runner | str | None:
    """Make ``runner`` (an object, or a ``"module:attribute"`` path imported at the first
    run) the one ``flow.run()`` uses; returns the previous one."""
    return _seam.register(runner)


def runner() -> Runner:
    """The registered runner, imported now if it was registered by path."""
    return _seam.get()
