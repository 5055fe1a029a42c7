"""The live DAG widget of a run, for notebooks (JupyterLab, Notebook 7, VS Code).

``flow.run()`` in a notebook shows it by default. Public entry points:

- ``FlowWidget(run)`` / ``FlowWidget(flow)``: the widget (``follow(run)``, ``listener``);
- ``show_run(run)``: display a widget following ``run`` (live or final);
- ``live_listener(flow)``: display a widget for a run about to start and return the
  listener to pass to ``flow.run(listeners=[...])`` (None outside a notebook).

This module is light: anywidget loads only when a widget is made.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbflow.errors import NbflowError

if TYPE_CHECKING:
    from nbflow.engine.run import FlowRun
    from nbflow.events import Listener
    from nbflow.graph.flow import Flow
    from nbflow.widget.model import FlowWidget

# Runs already shown live (or started with show=False), with the execution count of
# their cell: a run returned by that same cell displays as text, not a second widget.
_handled: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
# The widget show_run displayed for a run, to redraw its output when the run is over.
_shown: weakref.WeakKeyDictionary[Any, FlowWidget] = weakref.WeakKeyDictionary()


def in_frontend() -> bool:
    """True inside an IPython kernel that has a front end (a notebook), False in a plain
    Python process or a terminal IPython.

    >>> in_frontend()
    False
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _execution_count() -> int:
    import IPython

    shell = IPython.get_ipython()
    return int(getattr(shell, "execution_count", 0))


def live_listener(flow: Flow) -> Listener | None:
    """In a notebook, display a widget for the next run of ``flow`` and return its event
    listener (pass it to ``flow.run(listeners=[...])``); elsewhere do nothing, return None.
    ``flow.run()`` calls this unless ``show=False``.

    >>> from nbflow import Flow
    >>> live_listener(Flow("no-notebook")) is None
    True
    """
    if not in_frontend():
        return None
    from IPython.display import display

    from nbflow.widget.model import FlowWidget

    widget = FlowWidget(flow)
    widget.display_handle = display(widget, display_id=True)  # type: ignore[no-untyped-call]
    return widget.listener


def start_shown(
    flow: Flow, show: bool | None, start: Callable[..., FlowRun], options: dict[str, Any]
) -> FlowRun:
    """``start(**options)`` with the live widget of ``flow`` shown per ``show`` (None:
    in a notebook; False: never; True: in a notebook, elsewhere nothing to show).
    ``flow.run()`` and ``run.retry()`` start their runs through this (the engine checks
    ``show`` first)."""
    listener = live_listener(flow) if show is not False else None
    if listener is not None:
        options = {**options, "listeners": (*options.get("listeners", ()), listener)}
    run = start(**options)
    if listener is not None or show is False:
        mark_displayed(run)
    widget = getattr(listener, "__self__", None)
    if widget is not None and run.done:
        widget.settle()  # the output keeps the final picture
    return run


def show_run(run: FlowRun) -> FlowWidget | None:
    """Display a widget following ``run`` (live while it runs, then its final state)
    and return it; outside a notebook, display nothing and return None.

    >>> from nbflow import Flow, task
    >>> @task(cache=False)
    ... def one():
    ...     return 1
    >>> with Flow("show-doc") as flow:
    ...     one()
    <Node 'one' of task 'one'>
    >>> show_run(flow.run(show=False)) is None
    True
    """
    from nbflow.engine.run import FlowRun

    if not isinstance(run, FlowRun):
        raise NbflowError(f"show_run() needs a FlowRun (what flow.run() returns), but got {run!r}.")
    if not in_frontend():
        return None
    from IPython.display import display

    from nbflow.widget.model import FlowWidget

    widget = FlowWidget(run)
    mark_displayed(run)
    widget.display_handle = display(widget, display_id=True)  # type: ignore[no-untyped-call]
    _shown[run] = widget
    return widget


def settle(run: FlowRun) -> None:
    """Once ``run`` is over, redraw the output of the widget ``show_run`` displayed for
    it, so its fallback keeps the final picture (what a saved notebook shows where the
    widget cannot be drawn). Call it in the cell's own thread; elsewhere a no-op."""
    widget = _shown.get(run)
    if widget is not None and run.done:
        widget.settle()


def mark_displayed(run: FlowRun) -> None:
    """Note that ``run`` is shown already, or was asked not to be (``show=False``): the
    cell that started it then displays it as text. ``flow.run()`` calls this."""
    if in_frontend():
        _handled[run] = _execution_count()


def mimebundle(run: FlowRun, include: Any = None, exclude: Any = None) -> Any:
    """What a ``FlowRun`` displays as: the widget in a notebook (unless the same cell
    already shows it live), its text elsewhere. IPython's ``_repr_mimebundle_`` protocol:
    a dict, or a (data, metadata) pair."""
    text = {"text/plain": repr(run)}
    if not in_frontend():
        return text
    if _handled.get(run) == _execution_count():
        return text
    from nbflow.widget.model import FlowWidget

    bundle = FlowWidget(run)._repr_mimebundle_(include=include, exclude=exclude)
    data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
    return {**(data or {}), **text}, metadata


class WidgetPresenter:
    """The live widget as the engine's registered ``Presenter``
    (``nbflow.engine.display``): runs are shown in a notebook, as text elsewhere."""

    def start_shown(
        self, flow: Flow, show: bool | None, start: Callable[..., FlowRun], options: dict[str, Any]
    ) -> FlowRun:
        return start_shown(flow, show, start, options)

    def mimebundle(self, run: FlowRun, include: Any, exclude: Any) -> Any:
        return mimebundle(run, include, exclude)


PRESENTER = WidgetPresenter()


def __getattr__(name: str) -> Any:
    if name == "FlowWidget":
        from nbflow.widget.model import FlowWidget

        return FlowWidget
    raise AttributeError(f"module 'nbflow.widget' has no attribute '{name}'")


__all__ = [
    "PRESENTER",
    "FlowWidget",
    "WidgetPresenter",
    "in_frontend",
    "live_listener",
    "mark_displayed",
    "mimebundle",
    "settle",
    "show_run",
    "start_shown",
]
