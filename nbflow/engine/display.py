"""The seam between a run and what shows it: a registered ``Presenter``.

A run started by ``flow.run()`` or ``run.retry()`` may be shown live (the notebook
widget), and a ``FlowRun`` displays itself in a notebook. The engine asks the
registered presenter and never imports a front end; the package face registers the
widget's presenter by dotted path, imported at the first run. With none registered,
nothing is shown and a run displays as its text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from nbflow.errors import NbflowError
from nbflow.seam import Seam

if TYPE_CHECKING:
    from nbflow.engine.run import FlowRun
    from nbflow.graph.flow import Flow


class Presenter(Protocol):
    """Shows runs: live as they start, and as a display of a ``FlowRun``."""

    def start_shown(
        self, flow: Flow, show: bool | None, start: Callable[..., FlowRun], options: dict[str, Any]
    ) -> FlowRun:
        """``start(**options)``, showing the run per ``show`` (None: where a front end
        can; False: never)."""
        ...

    def mimebundle(self, run: FlowRun, include: Any, exclude: Any) -> Any:
        """What ``run`` displays as (IPython's ``_repr_mimebundle_`` protocol)."""
        ...


class Plain:
    """The presenter when no front end is registered: shows nothing, runs as text."""

    def start_shown(
        self, flow: Flow, show: bool | None, start: Callable[..., FlowRun], options: dict[str, Any]
    ) -> FlowRun:
        return start(**options)

    def mimebundle(self, run: FlowRun, include: Any, exclude: Any) -> Any:
        return {"text/plain": repr(run)}


_seam: Seam[Presenter] = Seam("presenter", default=Plain())


def register_presenter(presenter: Presenter | str) -> Presenter | str | None:
    """Make ``presenter`` (an object, or a ``"module:attribute"`` path imported when
    first needed) the one runs are shown with; returns the previous one."""
    return _seam.register(presenter)


def presenter() -> Presenter:
    """The registered presenter, imported now if it was registered by path."""
    return _seam.get()


def start_shown(
    flow: Flow, show: Any, start: Callable[..., FlowRun], options: dict[str, Any]
) -> FlowRun:
    """Start a run with ``start(**options)``, shown by the registered presenter.

    >>> from nbflow import Flow
    >>> start_shown(Flow("bad-show"), "yes", dict, {})
    Traceback (most recent call last):
    ...
    nbflow.errors.NbflowError: Expected show to be True, False or None, but got 'yes'.
    """
    if show is not None and not isinstance(show, bool):
        raise NbflowError(f"Expected show to be True, False or None, but got {show!r}.")
    return presenter().start_shown(flow, show, start, options)
